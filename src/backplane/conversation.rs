//! What is said on the backplane's two connections to Redis: the first command on each, the
//! commands the chat's requests become (an event is an `XADD` to the stream), and the replies
//! on the command connection matched with what they answer (a FIFO: Redis answers in order).
//! The reader connection's side, the stream read back into events, is `stream.rs`'s. Getting
//! the connections up and keeping them so is `links.rs`'s; this part never touches a socket,
//! only the connections' buffers.

use std::collections::VecDeque;
use std::time::Duration;

use log::{debug, trace};

use super::event::{Message, Origins};
use super::link::{Link, LinkPhase, Role};
use super::links::{Happening, Stats};
use super::resend::Resend;
use super::resp::{self, Value};
use super::stream::{Reader, StreamId};
use crate::bans::{Ban, BanList, now_ms};
use crate::bus::{Claim, Origin, What};

/// Claims a nick for this instance, or refreshes the claim if it is already this instance's.
/// `KEYS[1]` the nick's key, `ARGV[1]` the instance id, `ARGV[2]` the TTL in ms. 1: ours now;
/// 0: another instance has it.
const CLAIM_SCRIPT: &str = "\
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// Adds events to the stream, in order: `KEYS[1]` the stream, `ARGV[1]` its `MAXLEN ~`, the
/// rest the events. Returns the last one's id, as `XADD` does (see [`Resend::confirmed`]).
const XADD_SCRIPT: &str = "\
local id
for i = 2, #ARGV do id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i]) end
return id";

/// Deletes a nick's key only if it is still this instance's (after expiring it may have been
/// claimed by another instance, which must keep it).
const RELEASE_SCRIPT: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// What one reply on the command connection is for, in the order the commands were sent.
#[derive(Debug)]
enum Awaiting {
    /// `CLIENT SETNAME`, so that `CLIENT LIST` says whose connection it is.
    Named,
    /// `PING` on connecting: `PONG` proves Redis is there and speaks RESP.
    Handshake,
    /// An `XADD` (or a script of them), and its events: kept until Redis confirms them, to
    /// be sent again if the links drop first (see `resend.rs`).
    Publish(Vec<String>),
    Claim(Claim),
    Release,
    /// A `PING` sent after the re-claims that follow a reconnect: its `PONG` means they are
    /// all answered.
    Resync,
    /// `HSET` or `HDEL` on the ban hash.
    BanStored,
    /// `HGETALL` of the ban hash.
    Bans,
}

impl Awaiting {
    /// The command, as the log names it.
    fn describe(&self) -> &'static str {
        match self {
            Awaiting::Handshake | Awaiting::Resync => "PING",
            Awaiting::Named => "CLIENT SETNAME",
            Awaiting::Publish(_) => "XADD",
            Awaiting::Claim(_) => "a nick claim",
            Awaiting::Release => "a nick release",
            Awaiting::BanStored => "a ban's HSET or HDEL",
            Awaiting::Bans => "HGETALL of the bans",
        }
    }
}

/// What the bus asks the connections to send.
#[derive(Debug)]
pub enum Outgoing {
    Publish(Message),
    Claim(Claim),
    Release(String),
    /// Mark the end of the re-claims after a reconnect (answered by [`Happening::Resynced`]).
    Resync,
    /// Read the ban hash (answered by [`Happening::Bans`]).
    LoadBans,
}

/// The conversation with Redis: what each reply to come answers, and the names it gives.
#[derive(Debug)]
pub struct Conversation {
    /// This instance's id, unique per process: the value of its nick keys, the origin of its
    /// events.
    instance: String,
    /// The instances heard of on the channel, by name (see [`Origins`]).
    origins: Origins,
    /// What each reply still to come on the command connection is for, oldest first.
    awaiting: VecDeque<Awaiting>,
    /// The channel, the prefix of every key; `CHANNEL:nick:`, the prefix of every nick key.
    channel: String,
    nick_prefix: String,
    nick_ttl: Duration,
    /// `MAXLEN ~` of every `XADD`.
    stream_len: String,
    /// Events of this batch, waiting for [`Conversation::flush_batch`].
    batch: Vec<String>,
    /// The reader connection's side, and where in the stream it is.
    pub reader: Reader,
    /// Events Redis had not confirmed when the links dropped, to send again.
    resend: Resend,
    /// Events published since the server started.
    pub published: u64,
}

impl Conversation {
    pub fn new(instance: &str, config: &super::BackplaneConfig) -> Conversation {
        let (channel, nick_ttl) = (&config.url.channel, config.nick_ttl);
        Conversation {
            instance: instance.to_string(),
            origins: Origins::new(instance),
            awaiting: VecDeque::new(),
            channel: channel.to_string(),
            nick_prefix: format!("{channel}:nick:"),
            nick_ttl,
            stream_len: config.stream_len.to_string(),
            batch: Vec::new(),
            reader: Reader::new(channel, nick_ttl, config.stream_len),
            resend: Resend::new(config.stream_len.min(crate::limits::BACKPLANE_MAX_RESEND)),
            published: 0,
        }
    }

    /// The counters, for `--stats-udp` and `/metrics`.
    pub fn stats(&self, state: &'static str, reconnects: u64) -> Stats {
        Stats {
            state,
            published: self.published,
            received: self.reader.received,
            reconnects,
            resumed: self.reader.resumed,
            gaps: self.reader.gaps,
            resent: self.resend.resent,
            resend_dropped: self.resend.dropped,
        }
    }

    /// An instance said goodbye or fell silent: its name is forgotten (see [`Origins`]).
    pub fn forget(&mut self, origin: Origin) {
        self.origins.forget(origin);
    }

    /// Whether replies are due on the command connection.
    pub fn is_waiting(&self) -> bool {
        !self.awaiting.is_empty()
    }

    /// The connections closed: nothing sent on them will be answered, and the claims still
    /// waiting for an answer will never have one. The events not confirmed are kept, to be
    /// sent again once the links are back (those of the batch were never sent).
    pub fn lost_claims(&mut self) -> Vec<Claim> {
        self.reader.reset();
        let mut claims = Vec::new();
        for awaiting in std::mem::take(&mut self.awaiting) {
            match awaiting {
                Awaiting::Claim(claim) => claims.push(claim),
                Awaiting::Publish(events) => self.resend.keep(events, true),
                _ => {}
            }
        }
        self.resend.keep(std::mem::take(&mut self.batch), false);
        claims
    }

    /// An event for the stream: kept for [`Conversation::flush_batch`], so that the batch's
    /// events go in one command. A ban goes into the ban hash too, before its event, for
    /// instances that come up later (see `bans_from_hash`).
    fn add(&mut self, message: Message, cmd: &mut Link) {
        let bans = format!("{}:bans", self.channel);
        let what = match &message {
            Message::Chat(event) => Some(&event.what),
            Message::Instance(..) => None,
        };
        if let Some(What::Ban { .. } | What::Unban { .. }) = what {
            self.flush_batch(cmd);
        }
        let out = &mut cmd.output;
        match what {
            Some(What::Ban { mask, ban }) => {
                let (mask, line) = (mask.to_string(), ban.line(mask));
                let parts = [&b"HSET"[..], bans.as_bytes(), b"*", b"1"];
                resp::command(
                    out,
                    &[&parts, &[mask.as_bytes(), line.as_bytes()][..]].concat(),
                );
                self.awaiting.push_back(Awaiting::BanStored);
            }
            Some(What::Unban { mask, .. }) => {
                let mask = mask.to_string();
                resp::command(out, &[b"HDEL", bans.as_bytes(), mask.as_bytes()]);
                self.awaiting.push_back(Awaiting::BanStored);
            }
            _ => {}
        }
        let payload = message.encode(&self.instance);
        trace!("backplane: adding {payload}");
        self.batch.push(payload);
    }

    /// The events of the batch, to the stream: one `XADD`, or, for several, a script of
    /// `XADD`s. One command, because Redis answers a reader blocked on the stream as soon as a
    /// command has added to it: after a pipeline's first `XADD`, the reader would get that one
    /// event, and the rest a round trip later.
    ///
    /// After a drop, events not confirmed wait for the reader to catch up with the stream
    /// (new ones wait behind them); then those that did not come back go first.
    pub fn flush_batch(&mut self, cmd: &mut Link) {
        let mut events = std::mem::take(&mut self.batch);
        let (resent, mut again) = (self.resend.resent, 0);
        if self.resend.is_pending() {
            if !(self.reader.caught_up() && cmd.phase == LinkPhase::Ready) {
                return self.resend.keep(events, false);
            }
            events = [self.resend.take(), events].concat();
            again = self.resend.resent - resent;
            if again > 0 {
                debug!("backplane: sending {again} events again after a drop");
            }
        }
        let (key, len) = (self.reader.key.as_bytes(), self.stream_len.as_bytes());
        let payloads = events.iter().map(String::as_bytes);
        let head: &[&[u8]] = match events.len() {
            0 => return,
            1 => &[b"XADD", key, b"MAXLEN", b"~", len, b"*", b"e"],
            _ => &[b"EVAL", XADD_SCRIPT.as_bytes(), b"1", key, len],
        };
        resp::command(
            &mut cmd.output,
            &[head, &payloads.collect::<Vec<_>>()].concat(),
        );
        self.published += events.len() as u64 - again;
        self.awaiting.push_back(Awaiting::Publish(events));
    }

    /// A nick's key in Redis.
    fn key(&self, nick: &str) -> String {
        format!("{}{}", self.nick_prefix, crate::protocol::nick_key(nick))
    }

    /// A connection's first commands, once connected: its name (`pollchat-INSTANCE-ROLE`),
    /// then a `PING`, or the reader's first read.
    pub fn greet(&mut self, role: Role, link: &mut Link) {
        let name = format!("pollchat-{}-{}", self.instance, role.short());
        match role {
            Role::Reader => self.reader.greet(name.as_bytes(), &mut link.output),
            Role::Commands => {
                resp::command(&mut link.output, &[b"CLIENT", b"SETNAME", name.as_bytes()]);
                resp::command(&mut link.output, &[b"PING"]);
                self.awaiting.push_back(Awaiting::Named);
                self.awaiting.push_back(Awaiting::Handshake);
            }
        }
    }

    /// Decodes every complete reply in a connection's read buffer; keeps an incomplete one.
    pub fn decode_all(
        &mut self,
        role: Role,
        link: &mut Link,
        out: &mut Vec<Happening>,
    ) -> Result<(), String> {
        // The buffer is taken out of the link while its replies, which borrow from it, are
        // handled with the rest of `self`; what is left is put back.
        let mut input = std::mem::take(&mut link.input);
        let mut used = 0;
        let result = loop {
            match resp::decode(&input[used..]) {
                Ok(None) => break Ok(()),
                Ok(Some((value, n))) => {
                    used += n;
                    let handled = match role {
                        Role::Reader => {
                            let (phase, output) = (&mut link.phase, &mut link.output);
                            let (origins, resend) = (&mut self.origins, &mut self.resend);
                            self.reader
                                .on_reply(value, phase, origins, resend, output, out)
                        }
                        Role::Commands => self.on_reply(value, &mut link.phase, out),
                    };
                    if let Err(reason) = handled {
                        break Err(reason);
                    }
                }
                Err(e) => break Err(format!("Redis sent something that is not RESP: {e}")),
            }
        };
        input.drain(..used);
        link.input = input;
        result
    }

    /// One reply on the command connection, matched with what it answers.
    fn on_reply(
        &mut self,
        value: Value<'_>,
        phase: &mut LinkPhase,
        out: &mut Vec<Happening>,
    ) -> Result<(), String> {
        let Some(awaiting) = self.awaiting.pop_front() else {
            return Err(format!(
                "Redis sent a reply nobody asked for: {}",
                value.describe()
            ));
        };
        if let Value::Error(text) = value {
            return Err(format!(
                "Redis answered {} with an error: {}",
                awaiting.describe(),
                resp::lossy(text)
            ));
        }
        match (awaiting, value) {
            (Awaiting::Handshake, Value::Simple(b"PONG")) => *phase = LinkPhase::Ready,
            (Awaiting::Named, Value::Simple(b"OK")) => {}
            // A count (a Redis-speaking server may answer so): confirmed, with no id to note.
            (Awaiting::Publish(_), Value::Integer(_)) => {}
            (Awaiting::Publish(_), Value::Bulk(Some(id))) => {
                if let Some(id) = StreamId::parse(id) {
                    self.resend.confirmed(id);
                }
            }
            (Awaiting::Release | Awaiting::BanStored, Value::Integer(_)) => {}
            (Awaiting::Bans, Value::Array(Some(items))) => {
                out.push(Happening::Bans(bans_from_hash(&items)));
            }
            (Awaiting::Claim(claim), Value::Integer(n @ (0 | 1))) => {
                debug!(
                    "backplane: claim of {} {}",
                    claim.nick,
                    if n == 1 { "granted" } else { "refused" }
                );
                out.push(Happening::Claimed { claim, ok: n == 1 });
            }
            (Awaiting::Resync, Value::Simple(b"PONG")) => out.push(Happening::Resynced),
            (awaiting, value) => {
                return Err(format!(
                    "Redis answered {} with an unexpected {}",
                    awaiting.describe(),
                    value.describe()
                ));
            }
        }
        Ok(())
    }

    /// Writes what the chat asked for into the command connection's output (`cmd`), and
    /// notes what its reply will answer. Events wait in the batch ([`Conversation::add`]).
    pub fn send(&mut self, outgoing: Outgoing, cmd: &mut Link) {
        if let Outgoing::Publish(message) = outgoing {
            return self.add(message, cmd);
        }
        self.flush_batch(cmd);
        let ttl_ms = self.nick_ttl.as_millis().max(1).to_string();
        let out = &mut cmd.output;
        let awaiting = match outgoing {
            Outgoing::Publish(_) => return,
            Outgoing::Claim(claim) => {
                let key = self.key(&claim.nick);
                let id = self.instance.as_bytes();
                resp::command(
                    out,
                    &[
                        b"EVAL",
                        CLAIM_SCRIPT.as_bytes(),
                        b"1",
                        key.as_bytes(),
                        id,
                        ttl_ms.as_bytes(),
                    ],
                );
                Awaiting::Claim(claim)
            }
            Outgoing::Release(nick) => {
                let key = self.key(&nick);
                let id = self.instance.as_bytes();
                resp::command(
                    out,
                    &[b"EVAL", RELEASE_SCRIPT.as_bytes(), b"1", key.as_bytes(), id],
                );
                Awaiting::Release
            }
            Outgoing::Resync => {
                resp::command(out, &[b"PING"]);
                Awaiting::Resync
            }
            Outgoing::LoadBans => {
                let bans = format!("{}:bans", self.channel);
                resp::command(out, &[b"HGETALL", bans.as_bytes()]);
                Awaiting::Bans
            }
        };
        self.awaiting.push_back(awaiting);
    }
}

/// The ban hash (`CHANNEL:bans`: each field a mask, its value the ban's line, as in the bans
/// file) as `HGETALL` returns it: the bans in force, expired and unreadable ones left out.
/// The hash also holds the field `*`, written with every ban, which no mask can be: without
/// it the hash is new (or Redis lost it), and `None` asks this instance to publish its bans
/// to it; with it, the hash is the list every instance keeps, even when it holds no ban.
fn bans_from_hash(items: &[Value<'_>]) -> Option<BanList> {
    let (now, mut marked, mut bans) = (now_ms(), false, BanList::default());
    for pair in items.chunks(2) {
        let [field, value] = pair else { continue };
        if field.bytes() == Some(b"*") {
            marked = true;
            continue;
        }
        let line = String::from_utf8_lossy(value.bytes().unwrap_or_default());
        match Ban::parse_line(&line) {
            // Bans past the list's maximum are left out.
            Ok((mask, ban)) if ban.is_live(now) => _ = bans.insert(mask, ban),
            Ok(_) => {}
            Err(why) => debug!("backplane: skipped a ban ({why}): {line}"),
        }
    }
    marked.then_some(bans)
}
