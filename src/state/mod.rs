//! `--state-dir DIR`: what pollchat keeps to outlive itself, the rooms' history and topics,
//! written from the loop without waiting on the disk more than one `write(2)` per batch.
//!
//! The seam is [`Keeper`], which the rooms (`chat/rooms.rs`) hold: a chat line kept in a
//! room's history is handed to it in one call, as are a topic set, a room forgotten, and a
//! room whose history the backplane's stream replaced (off the chat line's path). With
//! `--state-dir` off the keeper is [`Forgetful`], whose methods do nothing; the rooms never ask
//! which one they have. With it on, the keeper is a [`Journal`] (`journal.rs`), built on
//! Redis's append-only file:
//!
//! - **Appended at the end of the batch.** A record is encoded into a buffer when the line is
//!   kept; the buffer goes to the file in one `write(2)` at the end of the batch, beside the
//!   flushes to the clients (Redis writes its AOF in `beforeSleep` for the same reason: one
//!   system call per batch, not per line). A write lands in the page cache: it does not wait
//!   for the disk.
//! - **`--fsync`** says when the disk is waited for. `always`: after every batch's write, so a
//!   line acknowledged by being relayed survives a power cut; the loop stops for the disk's
//!   flush time on every batch that had lines (milliseconds on an SSD, tens on a busy disk),
//!   and every client waits with it. `everysec` (the default, as in Redis): at most once a
//!   second, when a timer set by the first write after a sync fires. There is no thread to
//!   hand the `fdatasync` to, so the loop itself stops for it once a second; a power cut loses
//!   up to a second of lines, a crash of pollchat alone loses nothing (the page cache has
//!   them). `no`: never; the kernel writes back when it likes (about 30 s on Linux).
//! - **Bounded.** When the file has grown past twice its size after the last compaction (and
//!   past [`COMPACT_MIN`]), it is written again from what the rooms hold now, whole, to a
//!   temporary file that is synced and renamed over the old one: a reader finds the old file
//!   or the new one, never half of one. This is done in the loop too (Redis forks for it):
//!   the cost is one pass over every room's history, paid once per doubling.
//! - **The disk's errors** (full, read-only, permission) are logged once and counted; the
//!   chat goes on from memory, and a compaction is tried again every [`RETRY`] until the
//!   file can be written whole again, which puts it back in step with the rooms.
//!
//! Loading (`load.rs`) is careful: a torn last record is dropped with a warning; a file
//! damaged before its end, from a newer version, or not pollchat's stops start-up with one
//! sentence, and is left as it is. The format is in `format.rs`.

pub mod format;
mod journal;
mod load;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use log::debug;

pub use journal::Journal;
pub use load::{Loaded, Saved, load};

use crate::error::{Error, describe};
use crate::room::Room;

/// The file in `--state-dir` that holds the state.
pub const FILE_NAME: &str = "pollchat.state";
/// The file in `--state-dir` whose lock says a server is using the directory.
pub const LOCK_NAME: &str = "pollchat.lock";

/// Takes `dir`'s lock, held while the returned file is open (the kernel lets it go when the
/// process ends, however it ends). Two servers on one state file would each compact the
/// other's lines away, so a lock another process holds stops start-up. A directory where the
/// lock cannot even be made is not refused here: the journal's first write fails the same way,
/// and is logged, counted and retried as any disk error is.
pub fn lock(dir: &Path) -> Result<Option<File>, Error> {
    let path = dir.join(LOCK_NAME);
    let opened = fs::create_dir_all(dir).and_then(|()| {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    });
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            debug!("state: no lock on {}: {}", path.display(), describe(&e));
            return Ok(None);
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(Error::State(format!(
            "state directory {} is in use by another pollchat (it holds {}): give each \
             instance a directory of its own",
            dir.display(),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => {
            debug!("state: no lock on {}: {}", path.display(), describe(&e));
            Ok(None)
        }
    }
}
/// A file under this size is not compacted, however much it grew: rewriting it would cost
/// more than the disk it frees.
pub const COMPACT_MIN: u64 = 256 * 1024;
/// How soon a failed write is tried again (as a compaction, which puts the file back in step).
pub const RETRY: Duration = Duration::from_secs(5);

/// `--fsync`: when the loop waits for the disk (see the module documentation for the trade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fsync {
    // (Plain comments: a doc comment here would turn `--help` into its long layout.)
    // After every batch that wrote records.
    Always,
    // At most once a second, from the loop, when a timer says so.
    #[default]
    Everysec,
    // Never: the kernel writes back when it likes.
    No,
}

/// What the rooms hand their history to. Every method has a default that does nothing, which
/// is all [`Forgetful`] is.
pub trait Keeper: std::fmt::Debug {
    /// A chat line kept in `room`'s history.
    fn said(&mut self, _room: &str, _line: &[u8]) {}

    /// `room`'s topic is set.
    fn topic(&mut self, _room: &str, _topic: &str) {}

    /// `room` went, and its history with it.
    fn forgot(&mut self, _room: &str) {}

    /// `room`'s history and topic were replaced whole (by what the backplane's stream holds
    /// of it): what it holds now, recorded as it is.
    fn replaced(&mut self, _room: &Room) {}

    /// The end of the batch: what it kept goes to the file (and a compaction, if one is due,
    /// reads `rooms`). Returns when to call [`Keeper::on_timer`], if a new timer is wanted.
    fn end_batch(
        &mut self,
        _rooms: &mut dyn Iterator<Item = &Room>,
        _now: Instant,
    ) -> Option<Instant> {
        None
    }

    /// The timer asked for fired: a sync (`everysec`) or a retry after an error is due.
    fn on_timer(
        &mut self,
        _rooms: &mut dyn Iterator<Item = &Room>,
        _now: Instant,
    ) -> Option<Instant> {
        None
    }

    /// The server is shutting down: what is pending goes out and is synced, whatever `--fsync`.
    /// Nothing is recorded after this (the rooms emptying as everyone leaves is not news).
    fn close(&mut self) {}

    /// The figures for `/metrics`; `None` when nothing is kept.
    fn stats(&self) -> Option<Stats> {
        None
    }
}

/// The keeper with `--state-dir` off: history lives in memory only.
#[derive(Debug, Default)]
pub struct Forgetful;

impl Keeper for Forgetful {}

/// What the journal has done since the start, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub bytes_written: u64,
    pub records_written: u64,
    pub fsyncs: u64,
    pub fsync_seconds: f64,
    pub compactions: u64,
    pub errors: u64,
    /// How long reading the file at start-up took.
    pub load_seconds: f64,
    /// The file's size now.
    pub file_bytes: u64,
}
