//! The [`Keeper`] for `--state-dir`: records encoded as the batch keeps lines, one `write(2)`
//! at its end, `--fsync`'s policy, compaction by rewrite and rename, and the disk's errors
//! (see the module documentation of `state` for the why of each).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, error, info};

use super::format::{self, FORGOT, LINE, TOPIC};
use super::{COMPACT_MIN, FILE_NAME, Fsync, Keeper, RETRY, Stats};
use crate::error::describe;
use crate::room::Room;

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The directory's lock (`state::lock`), held for as long as the journal lives.
    _lock: Option<File>,
    path: PathBuf,
    /// Open for appending; `None` after an error, until a compaction writes the file whole.
    file: Option<File>,
    /// The batch's records, encoded, for the one write at its end.
    pending: Vec<u8>,
    pending_records: u64,
    fsync: Fsync,
    /// The file's size, and its size after the last compaction (it is compacted at twice that).
    size: u64,
    compacted: u64,
    /// Written since the last sync.
    dirty: bool,
    last_sync: Instant,
    /// After an error: when the next compaction is tried.
    retry_at: Option<Instant>,
    /// A timer is set for this instant (one at a time: a sync or a retry).
    timer: Option<Instant>,
    stats: Stats,
}

impl Journal {
    /// A journal for `dir`, whose file is written at once from `rooms` (those just restored
    /// from it): before the server listens, so no client waits for it, and so a torn tail and
    /// the lines a smaller `--history` no longer keeps are gone from the file. If that fails,
    /// the chat runs from memory and it is tried again (see `failed`).
    pub fn new(
        dir: PathBuf,
        lock: Option<File>,
        fsync: Fsync,
        load_seconds: f64,
        rooms: &mut dyn Iterator<Item = &Room>,
        now: Instant,
    ) -> Journal {
        let mut journal = Journal {
            path: dir.join(FILE_NAME),
            dir,
            _lock: lock,
            file: None,
            pending: Vec::new(),
            pending_records: 0,
            fsync,
            size: 0,
            compacted: 0,
            dirty: false,
            last_sync: now,
            retry_at: None,
            timer: None,
            stats: Stats {
                load_seconds,
                ..Stats::default()
            },
        };
        journal.compact(rooms, now);
        journal
    }

    fn record(&mut self, kind: u8, room: &str, payload: &[u8]) {
        let encoded = format::encode(kind, room, payload, &mut self.pending);
        self.pending_records += u64::from(encoded);
    }

    /// The batch's records, in one write. With no file (after an error) they are dropped: the
    /// rooms hold them, and the compaction that brings the file back writes them.
    fn write_pending(&mut self, now: Instant) {
        let (bytes, records) = (self.pending.len() as u64, self.pending_records);
        let written = match &mut self.file {
            Some(file) => file.write_all(&self.pending),
            None => Ok(()),
        };
        self.pending.clear();
        self.pending_records = 0;
        match written {
            Ok(()) if self.file.is_some() => {
                self.size += bytes;
                self.stats.bytes_written += bytes;
                self.stats.records_written += records;
                self.dirty = true;
                if self.fsync == Fsync::Always {
                    self.sync(now);
                }
            }
            Ok(()) => {}
            Err(e) => self.failed("write", &e, now),
        }
    }

    /// Waits for the disk: the loop stops here for the device's flush time.
    fn sync(&mut self, now: Instant) {
        let Some(file) = &self.file else {
            return;
        };
        let started = Instant::now();
        let synced = file.sync_data();
        let took = started.elapsed().as_secs_f64();
        debug!("state: synced in {:.3} ms", took * 1e3);
        self.stats.fsyncs += 1;
        self.stats.fsync_seconds += took;
        self.dirty = false;
        self.last_sync = now;
        if let Err(e) = synced {
            self.failed("sync", &e, now);
        }
    }

    /// The file written again from what the rooms hold: to a temporary file, synced, renamed
    /// over the old one, so that a crash at any point leaves the old file or the new one.
    fn compact(&mut self, rooms: &mut dyn Iterator<Item = &Room>, now: Instant) {
        let mut out = format::header();
        let records: u64 = rooms.map(|room| encode_room(room, &mut out)).sum();
        self.pending.clear();
        self.pending_records = 0;
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let replaced = fs::create_dir_all(&self.dir)
            .and_then(|()| File::create(&tmp))
            .and_then(|mut file| {
                file.write_all(&out)?;
                file.sync_data()?;
                fs::rename(&tmp, &self.path)?;
                // The rename is durable once the directory is synced; a file system that
                // cannot sync a directory still renamed, so that is no failure.
                let _ = File::open(&self.dir).and_then(|dir| dir.sync_all());
                Ok(file)
            });
        match replaced {
            Ok(file) => {
                if self.file.is_none() && self.stats.errors > 0 {
                    info!("state: {} written again", self.path.display());
                }
                self.file = Some(file);
                self.retry_at = None;
                self.size = out.len() as u64;
                self.compacted = self.size;
                self.dirty = false;
                self.stats.compactions += 1;
                self.stats.bytes_written += self.size;
                self.stats.records_written += records;
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.failed("write", &e, now);
            }
        }
    }

    /// The disk refused: said once (until it works again), counted always, and the chat goes
    /// on from memory. A compaction is tried again after [`RETRY`].
    fn failed(&mut self, what: &str, e: &io::Error, now: Instant) {
        self.stats.errors += 1;
        if self.file.is_some() || self.stats.errors == 1 {
            error!(
                "state: cannot {what} {}: {}; the chat goes on from memory, and history will \
                 not survive a restart until the file can be written again (tried every {} s)",
                self.path.display(),
                describe(e),
                RETRY.as_secs()
            );
        } else {
            debug!(
                "state: still cannot {what} {}: {}",
                self.path.display(),
                describe(e)
            );
        }
        self.file = None;
        self.dirty = false;
        self.retry_at = Some(now + RETRY);
    }

    /// A timer for what is due next (a retry, or an `everysec` sync), if none is set.
    fn want_timer(&mut self, now: Instant) -> Option<Instant> {
        let at = match (&self.file, self.fsync) {
            (None, _) => self.retry_at?,
            (Some(_), Fsync::Everysec) if self.dirty => {
                (self.last_sync + Duration::from_secs(1)).max(now)
            }
            _ => return None,
        };
        if self.timer.is_some() {
            return None;
        }
        self.timer = Some(at);
        Some(at)
    }

    fn grown(&self) -> bool {
        self.size > COMPACT_MIN && self.size > 2 * self.compacted
    }
}

impl Keeper for Journal {
    fn said(&mut self, room: &str, line: &[u8]) {
        self.record(LINE, room, line);
    }

    fn topic(&mut self, room: &str, topic: &str) {
        self.record(TOPIC, room, topic.as_bytes());
    }

    fn forgot(&mut self, room: &str) {
        self.record(FORGOT, room, &[]);
    }

    /// Appended like any record, so the file says it at the end of this batch, not at the
    /// next compaction: the room forgotten, then what it holds now. Loading replays them to
    /// the same room.
    fn replaced(&mut self, room: &Room) {
        self.record(FORGOT, room.name(), &[]);
        self.pending_records += encode_room(room, &mut self.pending);
    }

    fn end_batch(
        &mut self,
        rooms: &mut dyn Iterator<Item = &Room>,
        now: Instant,
    ) -> Option<Instant> {
        if !self.pending.is_empty() {
            self.write_pending(now);
        }
        if self.file.is_some() && self.grown() {
            self.compact(rooms, now);
        }
        self.want_timer(now)
    }

    fn on_timer(
        &mut self,
        rooms: &mut dyn Iterator<Item = &Room>,
        now: Instant,
    ) -> Option<Instant> {
        self.timer = None;
        match self.file {
            None if self.retry_at.is_some_and(|at| at <= now) => self.compact(rooms, now),
            Some(_) if self.dirty => self.sync(now),
            _ => {}
        }
        self.want_timer(now)
    }

    fn close(&mut self) {
        let now = Instant::now();
        self.write_pending(now);
        if self.dirty {
            self.sync(now);
        }
    }

    fn stats(&self) -> Option<Stats> {
        Some(Stats {
            file_bytes: self.size,
            ..self.stats.clone()
        })
    }
}

/// One room's records, as a compaction writes them and a replaced room is recorded: its topic,
/// then its history, oldest first. Returns how many.
fn encode_room(room: &Room, out: &mut Vec<u8>) -> u64 {
    let name = room.name();
    let topic = room
        .topic()
        .map(|topic| format::encode(TOPIC, name, topic.as_bytes(), out));
    let lines = room
        .history()
        .map(|line| format::encode(LINE, name, line, out));
    topic.into_iter().chain(lines).map(u64::from).sum()
}
