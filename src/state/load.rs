//! Reading `--state-dir`'s file at start-up, into the rooms it describes. A torn last record is
//! dropped with a warning; anything else wrong stops start-up with one sentence that says what
//! to do, and the file is left exactly as it was.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use log::{info, warn};

use super::FILE_NAME;
use super::format::{self, Bad, Record};
use crate::error::{Error, describe};
use crate::protocol::room_key;

/// One room as the file has it.
#[derive(Debug, Default)]
pub struct Saved {
    pub name: String,
    pub topic: Option<String>,
    /// Its last lines, oldest first, at most `--history` of them.
    pub lines: VecDeque<Rc<[u8]>>,
}

impl Saved {
    /// `line` said after the others: kept, with at most `most` lines in all (the oldest go).
    pub fn keep_line(&mut self, line: Rc<[u8]>, most: usize) {
        self.lines.push_back(line);
        if self.lines.len() > most {
            self.lines.pop_front();
        }
    }
}

/// What the file held.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rooms: Vec<Saved>,
    /// How long reading and replaying the file took.
    pub seconds: f64,
}

/// Reads `dir`'s state file, keeping each room's last `history` lines. No file is an empty
/// state (a first start).
pub fn load(dir: &Path, history: usize) -> Result<Loaded, Error> {
    let started = Instant::now();
    let path = dir.join(FILE_NAME);
    let shown = path.display();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!("state: no {shown} yet; rooms start empty and are kept from now on");
            return Ok(Loaded::default());
        }
        Err(e) => {
            return Err(Error::State(format!(
                "cannot read state file {shown}: {}: fix its permissions, or move it away to \
                 start with empty rooms",
                describe(&e)
            )));
        }
    };
    let decoded = format::decode(&bytes).map_err(|bad| {
        let what_to_do = match bad {
            Bad::NotOurs => "point --state-dir at a directory of pollchat's own, or move it away",
            Bad::Newer(_) => {
                "run the pollchat that wrote it, or move it away to start with empty rooms"
            }
            Bad::Corrupt(_) => {
                "restore it from a backup, or move it away to start with empty rooms"
            }
        };
        Error::State(format!(
            "state file {shown} {bad}: {what_to_do} (it was left as it is)"
        ))
    })?;
    if decoded.torn > 0 {
        warn!(
            "state file {shown}: its last record was cut short (a crash while writing it?); \
             {} bytes dropped, everything before them loaded",
            decoded.torn
        );
    }
    let records = decoded.records.len();
    let rooms = replay(decoded.records, history);
    let seconds = started.elapsed().as_secs_f64();
    info!(
        "state: {records} records from {shown} in {:.1} ms: {} rooms",
        seconds * 1e3,
        rooms.len()
    );
    Ok(Loaded { rooms, seconds })
}

/// The records in order: what each room holds at the end.
fn replay(records: Vec<Record>, history: usize) -> Vec<Saved> {
    let mut rooms: BTreeMap<String, Saved> = BTreeMap::new();
    for record in records {
        let (Record::Line { room: name, .. }
        | Record::Topic { room: name, .. }
        | Record::Forgot { room: name }) = &record;
        let saved = rooms.entry(room_key(name).into_owned()).or_default();
        saved.name.clone_from(name);
        match record {
            Record::Line { line, .. } => {
                saved.keep_line(Rc::from(line), history);
            }
            Record::Topic { topic, .. } => saved.topic = Some(topic),
            Record::Forgot { .. } => *saved = Saved::default(),
        }
    }
    let kept = |saved: &Saved| saved.topic.is_some() || !saved.lines.is_empty();
    rooms.into_values().filter(kept).collect()
}
