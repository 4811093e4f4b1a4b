//! The reading side of the backplane's Redis Stream, `CHANNEL:stream`: what the reader
//! connection says and what its replies mean. Every instance `XADD`s its events to the one
//! stream (`conversation.rs`); each reads it with `XREAD BLOCK` from the id of the last entry
//! it delivered, so a connection that drops and comes back goes on where it stopped:
//!
//! ```text
//!   connected, never read:  CLIENT SETNAME, XREVRANGE key + - COUNT len    (the rooms' history)
//!   connected, read before: CLIENT SETNAME, XINFO STREAM key, XREAD ...    (gap check, resume)
//!   then, reply by reply:   XREAD BLOCK ms COUNT k STREAMS key <last id>   (XINFO first if full)
//! ```
//!
//! One `XREAD` is outstanding at a time: the next goes out when its reply has been handed to
//! the chat. `BLOCK` makes Redis hold the reply until an entry comes or the block time (a
//! third of the nick TTL) runs out; the socket is non-blocking all the same, and the loop reads
//! the reply when it is ready, like any other.
//!
//! A **gap** is an entry this instance never read that the stream no longer holds: trimmed by
//! `MAXLEN` while the reader was away or too far behind. Trimming takes the oldest entries, so
//! `XINFO STREAM`'s first entry standing past the last id read means some were lost (or,
//! rarely, that the trim stopped exactly at that id: then the notice is one too many; the
//! exact answer would need Redis 7's count of entries added matched with one kept here). A
//! stream that never lost an entry (Redis restarted empty) is no gap. The check is made on
//! every resume, and after a read that came back full (the reader may be behind); a reader
//! keeping up cannot fall a whole stream behind in one round trip, unless the stream is
//! shorter than what the whole cluster adds in one.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use log::{debug, trace, warn};

use super::event::{Message, Origins};
use super::link::LinkPhase;
use super::links::Happening;
use super::resend::Resend;
use super::resp::{self, Value};
use crate::bus::What;
use crate::protocol::{self, room_key};
use crate::state::Saved;

/// Entries one `XREAD` asks for: a few hundred KiB of events at most, read in budgets.
const READ_COUNT: usize = 1000;

/// The id of a stream entry: Redis's milliseconds, and a sequence within them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId(u64, u64);

impl StreamId {
    /// Before every entry: reading from it reads the whole stream.
    const ZERO: StreamId = StreamId(0, 0);

    pub(super) fn parse(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// What one reply on the reader connection is for, in the order the commands were sent.
#[derive(Debug)]
enum Awaiting {
    Named,
    /// The newest entries, for the rooms' history.
    Load,
    /// `XINFO STREAM`, checking for a gap after this id.
    Info(StreamId),
    Read,
}

/// The reader connection's side of the conversation, and where in the stream it is. Lives as
/// long as the server: the last id read survives the connection.
#[derive(Debug)]
pub struct Reader {
    /// `CHANNEL:stream`.
    pub key: String,
    /// The last entry handed to the chat; `None` until the history is loaded.
    last: Option<StreamId>,
    awaiting: VecDeque<Awaiting>,
    block_ms: String,
    ttl_ms: u64,
    /// Entries loaded for history: the stream's length, so the whole stream.
    load: String,
    /// Entries up to this id were added while this instance was away: counted as resumed.
    resume_until: Option<StreamId>,
    /// The reader has read up to the stream's end as `XINFO` gave it on resuming (or loaded
    /// the history): what did not come back of the events to send again can go now.
    synced: bool,
    /// The stream's last id when resuming: read up to it, the reader has caught up.
    catch_up_to: Option<StreamId>,
    /// Entries read since the server started; of them, resumed after a reconnect; gaps seen.
    pub received: u64,
    pub resumed: u64,
    pub gaps: u64,
}

impl Reader {
    pub fn new(channel: &str, nick_ttl: Duration, stream_len: usize) -> Reader {
        Reader {
            key: format!("{channel}:stream"),
            last: None,
            awaiting: VecDeque::new(),
            block_ms: (nick_ttl / 3).as_millis().max(100).to_string(),
            ttl_ms: u64::try_from(nick_ttl.as_millis()).unwrap_or(u64::MAX),
            load: stream_len.to_string(),
            resume_until: None,
            synced: false,
            catch_up_to: None,
            received: 0,
            resumed: 0,
            gaps: 0,
        }
    }

    /// The connection closed: no reply will come for what was sent on it.
    pub fn reset(&mut self) {
        self.awaiting.clear();
        (self.synced, self.catch_up_to) = (false, None);
    }

    /// Whether the reader has caught up with the stream since the links came back.
    pub fn caught_up(&self) -> bool {
        self.synced
    }

    /// The reader connection's first commands: load the history, or resume.
    pub fn greet(&mut self, name: &[u8], out: &mut Vec<u8>) {
        resp::command(out, &[b"CLIENT", b"SETNAME", name]);
        self.awaiting.push_back(Awaiting::Named);
        match self.last {
            None => {
                let (key, count) = (self.key.as_bytes(), self.load.as_bytes());
                resp::command(out, &[b"XREVRANGE", key, b"+", b"-", b"COUNT", count]);
                self.awaiting.push_back(Awaiting::Load);
            }
            Some(last) => {
                self.check(last, out);
                self.read(last, out);
            }
        }
    }

    fn check(&mut self, last: StreamId, out: &mut Vec<u8>) {
        resp::command(out, &[b"XINFO", b"STREAM", self.key.as_bytes()]);
        self.awaiting.push_back(Awaiting::Info(last));
    }

    fn read(&mut self, last: StreamId, out: &mut Vec<u8>) {
        let (block, count) = (self.block_ms.as_bytes(), READ_COUNT.to_string());
        let (key, last) = (self.key.as_bytes(), last.to_string());
        resp::command(
            out,
            &[
                b"XREAD",
                b"BLOCK",
                block,
                b"COUNT",
                count.as_bytes(),
                b"STREAMS",
                key,
                last.as_bytes(),
            ],
        );
        self.awaiting.push_back(Awaiting::Read);
    }

    /// One reply on the reader connection. `out` is the connection's output: the next read.
    pub fn on_reply(
        &mut self,
        value: Value<'_>,
        phase: &mut LinkPhase,
        origins: &mut Origins,
        resend: &mut Resend,
        out: &mut Vec<u8>,
        happened: &mut Vec<Happening>,
    ) -> Result<(), String> {
        let unexpected = |value: &Value<'_>| format!("unexpected reply: {}", value.describe());
        let Some(awaiting) = self.awaiting.pop_front() else {
            return Err(format!("a reply nobody asked for: {}", value.describe()));
        };
        match (awaiting, value) {
            (Awaiting::Named, Value::Simple(b"OK")) => {}
            (Awaiting::Load, Value::Array(Some(entries))) => {
                self.loaded(&entries, origins, out, happened);
                *phase = LinkPhase::Ready;
            }
            // No stream at all (a new or emptied Redis): nothing to resume, no gap to see.
            (Awaiting::Info(_), Value::Error(text)) if text.starts_with(b"ERR no such key") => {
                self.synced = true;
                *phase = LinkPhase::Ready;
            }
            (Awaiting::Info(last), Value::Array(Some(fields))) => {
                self.gap_check(last, &fields, happened);
                if *phase != LinkPhase::Ready {
                    // Resuming: caught up once read to what the stream holds now.
                    self.catch_up_to = self.resume_until;
                    self.synced = self.catch_up_to.is_none();
                }
                *phase = LinkPhase::Ready;
            }
            (Awaiting::Read, Value::Array(None)) => self.read(self.last_read(), out),
            (Awaiting::Read, Value::Array(Some(streams))) => {
                let entries = match streams.as_slice() {
                    [Value::Array(Some(stream))] => match stream.as_slice() {
                        [_, Value::Array(Some(entries))] => entries,
                        _ => return Err(unexpected(&Value::Array(Some(streams)))),
                    },
                    _ => return Err(unexpected(&Value::Array(Some(streams)))),
                };
                self.read_entries(entries, origins, resend, out, happened);
            }
            (Awaiting::Named | Awaiting::Info(_), Value::Error(text)) => {
                return Err(format!("Redis refused: {}", resp::lossy(text)));
            }
            (_, value) => return Err(unexpected(&value)),
        }
        Ok(())
    }

    /// The whole stream, newest first (`XREVRANGE`), read once by an instance that never
    /// read it: the rooms' history, who is where, and the place to read on from.
    fn loaded(
        &mut self,
        entries: &[Value<'_>],
        origins: &mut Origins,
        out: &mut Vec<u8>,
        happened: &mut Vec<Happening>,
    ) {
        let entries: Vec<_> = entries.iter().rev().filter_map(entry).collect();
        let last = entries.last().map_or(StreamId::ZERO, |(id, _)| *id);
        debug!(
            "backplane: {} entries of history, up to {last}",
            entries.len()
        );
        // Who is where now, as far as the last nick TTL of the stream says (each live
        // instance said `HELLO` in it), so that rooms with members elsewhere are kept.
        let since = StreamId(last.0.saturating_sub(self.ttl_ms), 0);
        let recent = entries.iter().filter(|(id, _)| *id >= since);
        let recent = recent.filter_map(|(_, e)| Message::decode(e, origins).ok());
        happened.push(Happening::History {
            rooms: history(&entries),
            recent: recent.filter(|m| !m.origin().is_here()).collect(),
        });
        self.last = Some(last);
        self.synced = true;
        self.read(last, out);
    }

    /// An `XREAD`'s entries: each delivered (and, while resuming, matched against the events
    /// kept to be sent again), then the next read, after a gap check if the read came back
    /// full.
    fn read_entries(
        &mut self,
        entries: &[Value<'_>],
        origins: &mut Origins,
        resend: &mut Resend,
        out: &mut Vec<u8>,
        happened: &mut Vec<Happening>,
    ) {
        for (id, payload) in entries.iter().filter_map(entry) {
            if !self.synced {
                resend.came_back(id, payload);
            }
            self.deliver(id, payload, origins, happened);
        }
        let last = self.last_read();
        if self.catch_up_to.is_some_and(|to| last >= to) {
            (self.synced, self.catch_up_to) = (true, None);
        }
        if entries.len() >= READ_COUNT {
            self.check(last, out);
        }
        self.read(last, out);
    }

    fn last_read(&self) -> StreamId {
        self.last.unwrap_or(StreamId::ZERO)
    }

    /// One entry read: handed to the chat (if it is an event), and the place to resume from.
    fn deliver(
        &mut self,
        id: StreamId,
        payload: &[u8],
        origins: &mut Origins,
        happened: &mut Vec<Happening>,
    ) {
        self.last = Some(id);
        self.received += 1;
        match self.resume_until {
            Some(until) if id <= until => self.resumed += 1,
            Some(_) => self.resume_until = None,
            None => {}
        }
        match Message::decode(payload, origins) {
            Ok(message) => {
                trace!("backplane: read {id} {}", resp::lossy(payload));
                happened.push(Happening::Heard(message));
            }
            // Someone else writing to the stream, or a newer pollchat: the connection is
            // fine, the entry is skipped.
            Err(why) => debug!(
                "backplane: skipped an entry that is not an event ({why}): {}",
                resp::lossy(payload)
            ),
        }
    }

    /// `XINFO STREAM`'s answer, a flat list of names and values: was anything after `last`
    /// trimmed away? And how far do the entries added while away go?
    fn gap_check(&mut self, last: StreamId, fields: &[Value<'_>], happened: &mut Vec<Happening>) {
        let field = |name: &[u8]| field(fields, name);
        let id = |value: Option<&Value<'_>>| value.and_then(Value::bytes).and_then(StreamId::parse);
        let newest = id(field(b"last-generated-id"));
        self.resume_until = newest.filter(|&newest| newest > last);
        // Trimming removes the oldest entries: past `last` if the first one left is newer.
        // A stream that never lost an entry (Redis 7 counts those added: as many as it
        // holds) was made anew, by a Redis that restarted empty: nothing was trimmed, what
        // the old one held is gone for every instance alike. (`max-deleted-entry-id` counts
        // only `XDEL`s, which pollchat never sends.)
        let first = match field(b"first-entry") {
            Some(Value::Array(Some(first))) => id(first.first()),
            _ => None,
        };
        let count = |name: &[u8]| match field(name) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        };
        let trimmed = match (count(b"entries-added"), count(b"length")) {
            (Some(added), Some(length)) => added > length,
            _ => true,
        };
        let gap = trimmed && first.is_some_and(|first| first > last);
        if gap {
            self.gaps += 1;
            warn!(
                "backplane: the stream was trimmed past entry {last}, the last one read here: \
                 some lines were missed"
            );
            happened.push(Happening::Gap);
        }
    }
}

/// An entry as `XREAD` and `XREVRANGE` give it, `[id, [field, value, ...]]`: its id and the
/// event (the field `e`; empty, so not an event, if another program added the entry without
/// one: it is skipped, but read past, or the reader would ask for it again and again).
fn entry<'a>(value: &'a Value<'a>) -> Option<(StreamId, &'a [u8])> {
    let Value::Array(Some(parts)) = value else {
        return None;
    };
    let [id, Value::Array(Some(fields))] = parts.as_slice() else {
        return None;
    };
    let payload = field(fields, b"e").and_then(Value::bytes);
    Some((StreamId::parse(id.bytes()?)?, payload.unwrap_or_default()))
}

/// The value after `name` in a flat list of names and values, as Redis gives a stream entry's
/// fields and `XINFO STREAM`'s answer.
fn field<'v, 'a>(fields: &'v [Value<'a>], name: &[u8]) -> Option<&'v Value<'a>> {
    fields.chunks(2).find_map(|pair| match pair {
        [n, value] if n.bytes() == Some(name) => Some(value),
        _ => None,
    })
}

/// The rooms' history as the stream has it, `entries` oldest first: each room's chat lines
/// and `/me`s, rendered as they were sent, and its last topic.
fn history(entries: &[(StreamId, &[u8])]) -> Vec<Saved> {
    let mut origins = Origins::new("");
    let mut rooms: BTreeMap<String, Saved> = BTreeMap::new();
    for (_, payload) in entries {
        let Ok(Message::Chat(event)) = Message::decode(payload, &mut origins) else {
            continue;
        };
        let (name, line, topic) = match &event.what {
            What::Say { room, nick, text } => {
                (&**room, Some(protocol::chat_line(nick, text)), None)
            }
            What::Me { room, nick, action } => {
                (&**room, Some(protocol::action_line(nick, action)), None)
            }
            What::Topic { room, topic, .. } => (room.as_str(), None, Some(topic)),
            _ => continue,
        };
        let saved = rooms.entry(room_key(name).into_owned()).or_default();
        saved.name = name.to_string();
        if let Some(line) = line {
            saved.keep_line(line, crate::limits::MAX_HISTORY);
        }
        if let Some(topic) = topic {
            saved.topic = Some(topic.clone());
        }
    }
    rooms.into_values().collect()
}
