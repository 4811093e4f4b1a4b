//! The backplane (`--backplane redis://HOST:PORT/CHANNEL`): several pollchat instances forming
//! one chat through one Redis Stream, driven from the same poll loop as the clients.
//!
//! ```text
//!   clients ──► instance A ──XADD──►┐                        ┌──XREAD from A's last id──► A ──► its clients
//!                                    ├─► stream CHANNEL:stream┤
//!   clients ──► instance B ──XADD──►┘   (MAXLEN ~ N entries)  └──XREAD from B's last id──► B ──► its clients
//! ```
//!
//! It is the Redis implementation of the bus seam (`bus.rs`): [`RedisBus`] adds what the room
//! says to the stream and hands back, as [`BusNews`], what it reads from it. It owns two
//! non-blocking TCP connections to Redis, registered in the server's `mio::Poll` under the
//! two tokens the loop sets aside for a bus, and everything the chat needs to be shared: who
//! is on the other instances ([`Replica`]), the nick claims in flight, and
//! whether clients were told the chat is local only. Two connections, because a blocking
//! read holds its connection until it is answered:
//!
//! - the **reader** (`stream.rs`) reads the stream with `XREAD BLOCK` from the id of the last
//!   entry this instance delivered, one read at a time: every event every instance adds, its
//!   own included, in the stream's one order. It remembers that id across reconnects, so a
//!   connection that drops and comes back delivers what was said meanwhile, once, in order;
//!   if the stream was trimmed past it (a **gap**), clients are told some lines were missed.
//!   A new instance first loads the rooms' history from the stream (`XREVRANGE`), then reads
//!   on from its newest entry;
//! - the **command connection** sends `XADD CHANNEL:stream MAXLEN ~ N * e EVENT` and the nick
//!   claims, pipelined. Redis answers in order, so a FIFO (`Awaiting`, in `conversation.rs`)
//!   says what each reply is for. Events stay in it until Redis confirms them: those it had
//!   not when the links dropped are added again once the reader has caught up, unless they
//!   came back through the stream (`resend.rs`).
//!
//! Each connection (`link.rs`) keeps its own read and write buffers, exactly like a client
//! connection; the two live and die together (`links.rs`). Nothing here blocks: connects are
//! non-blocking and finished by a writable event, `XREAD BLOCK` blocks Redis's answer, not the
//! loop (the reply is read when the socket is readable, like any other), and the host name is
//! resolved once, at start-up. While Redis cannot be reached the chat runs "local only":
//! events are delivered here at once, as a lone server's are, and clients are told; they are
//! not added to the stream later. The copy of who is elsewhere is kept through the outage
//! (hidden from `/who` and `/msg`), so the rooms only others are in keep their history here,
//! and the resume fills in what was said in them meanwhile.
//!
//! Rooms share the one stream: every event names its room, and each instance delivers it to
//! its own members of that room and keeps the history of every room it knows of. One stream
//! keeps a room's lines in one order with the moves, nick claims and `HELLO`s around them,
//! costs nothing when a room appears, and lets an instance keep the history of a room it has
//! nobody in; the price is that every instance reads every room's events
//! (docs/scaling-out.md says when that would stop being the right trade).
//!
//! Nicks are claimed in Redis, which is the authority across instances: the key
//! `CHANNEL:nick:<lower-cased nick>` holds the owning instance's id, with an expiry (the nick
//! TTL) that the owner refreshes every TTL / 3. A claim is `SET key id NX PX ttl`, or a refresh
//! if the key already holds this instance's id, in one Lua script so the check and the write
//! are atomic. An instance that dies stops refreshing, and its nicks are free after the TTL.
//!
//! Bans travel as events too, and Redis keeps the list in force in the hash `CHANNEL:bans`,
//! written before each ban's event (`conversation.rs`) and read whenever the connections
//! come up, so an instance that starts, or comes back, takes the list every other one keeps.

mod conversation;
pub mod event;
mod link;
mod links;
pub mod replica;
mod resend;
pub mod resp;
mod stream;

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use log::info;
use mio::{Registry, Token};
use serde_json::value::RawValue;

use crate::bus::{
    Bus, BusIo, BusNews, Claim, Elsewhere, Event, InstanceNews, Origin, Purpose, What,
};
use crate::error::Error;
use crate::protocol::{self, nick_key};
use conversation::Outgoing;
use event::Message;
use links::{Happening, Links};
use replica::Replica;

/// Where the backplane is and how long a nick claim lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackplaneConfig {
    pub url: RedisUrl,
    /// How long a nick's key lives in Redis without a refresh: how soon the nicks of an
    /// instance that died are free again. Refreshed every third of it.
    pub nick_ttl: Duration,
    /// `MAXLEN ~` of the stream: how many events Redis keeps, for instances that come back or
    /// start (`--backplane-stream-len`).
    pub stream_len: usize,
}

impl BackplaneConfig {
    pub fn new(url: RedisUrl) -> BackplaneConfig {
        BackplaneConfig {
            url,
            nick_ttl: crate::limits::DEFAULT_NICK_TTL,
            stream_len: crate::limits::DEFAULT_STREAM_LEN,
        }
    }
}

/// `redis://HOST:PORT[/CHANNEL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    /// The prefix of every key: the stream `CHANNEL:stream`, the nick keys, the ban hash.
    pub channel: String,
}

impl RedisUrl {
    pub const DEFAULT_CHANNEL: &'static str = "pollchat";

    /// Parses the `--backplane` argument; the error is a sentence for the operator.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let usage = "expected redis://HOST:PORT or redis://HOST:PORT/CHANNEL";
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{text:?}: {usage}"))?;
        let (authority, channel) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: no port ({usage})"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a port"))?;
        let channel = if channel.is_empty() {
            RedisUrl::DEFAULT_CHANNEL
        } else {
            channel
        };
        if host.is_empty() || !channel.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{text:?}: {usage}"));
        }
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            channel: channel.to_string(),
        })
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.channel)
    }
}

/// The Redis bus: the chat shared with the other instances on the channel. See the module
/// documentation.
#[derive(Debug)]
pub struct RedisBus {
    links: Links,
    /// Both connections are ready: events are published, not delivered here directly.
    up: bool,
    /// Clients have been told the chat is local only, and are owed "back" when it is shared
    /// again.
    told_down: bool,
    /// What must go to Redis at the end of the batch.
    outbox: Vec<Outgoing>,
    /// The other instances' clients.
    replica: Replica,
    /// Lower-cased nicks a `/nick` is claiming in Redis right now: taken, locally, until the
    /// answer comes, so two local clients cannot both be granted one.
    claiming: HashSet<String>,
    /// The room is re-claiming every nick after a reconnect; a marker follows the claims, so
    /// its answer says they are all answered.
    resync_pending: bool,
    /// Part of every guest nick, from the instance id, so two instances rarely pick the same
    /// guest nick (if they do, the claim catches it).
    guest_tag: String,
    /// Claims are refreshed, and the others told this instance is alive, every third of the
    /// nick TTL, so one late or missed refresh does not let a claim expire.
    next_refresh: Instant,
    /// Deadlines to hand the loop (`BusIo::take_deadlines`).
    deadlines: Vec<Instant>,
    /// From the moment the connections come up until the ban hash is read: the bans and
    /// unbans heard meanwhile, applied again after the hash replaces the list (they may be
    /// newer than what the hash said).
    bans_since_up: Option<Vec<Event>>,
    /// Bans and unbans made while Redis was away: sent once it is back, after the hash is read.
    unsent_bans: Vec<Event>,
}

fn is_ban(what: &What) -> bool {
    matches!(what, What::Ban { .. } | What::Unban { .. })
}

impl RedisBus {
    /// Resolves Redis's address (once: a blocking call, so only at start-up) and picks this
    /// instance's id. Connecting starts with the loop (`BusIo::start`).
    pub fn new(config: BackplaneConfig) -> Result<RedisBus, Error> {
        let instance = instance_id();
        let links = Links::new(config, instance.clone())?;
        Ok(RedisBus {
            links,
            guest_tag: instance.chars().take(4).collect(),
            up: false,
            told_down: false,
            outbox: Vec::new(),
            replica: Replica::default(),
            claiming: HashSet::new(),
            resync_pending: false,
            next_refresh: Instant::now(),
            deadlines: Vec::new(),
            bans_since_up: None,
            unsent_bans: Vec::new(),
        })
    }

    fn nick_ttl(&self) -> Duration {
        self.links.nick_ttl()
    }

    fn schedule_refresh(&mut self, now: Instant) {
        self.next_refresh = now + self.nick_ttl() / 3;
        self.deadlines.push(self.next_refresh);
    }

    /// A link's read budget ran out with bytes left: a deadline of now, so the loop does not
    /// sleep and reads on in `on_timer` (see `BusIo::on_timer`).
    fn read_on_soon(&mut self, now: Instant) {
        if self.links.has_unread() {
            self.deadlines.push(now);
        }
    }

    /// What the connections reported, as news for the chat; the bus's own state follows.
    fn absorb(&mut self, happened: Vec<Happening>, now: Instant) -> Vec<BusNews> {
        let mut news = Vec::new();
        for happening in happened {
            match happening {
                Happening::Up => {
                    // Every nick is claimed again (it may have been taken elsewhere while
                    // Redis was away), and this instance says hello. The others were silent
                    // only because this instance could not hear them: their TTL starts again.
                    self.up = true;
                    self.resync_pending = true;
                    self.replica.heard_all(now);
                    news.push(BusNews::Refresh);
                    self.outbox.push(Outgoing::LoadBans);
                    self.bans_since_up = Some(Vec::new());
                    let unsent = std::mem::take(&mut self.unsent_bans);
                    self.outbox.extend(
                        unsent
                            .into_iter()
                            .map(|e| Outgoing::Publish(Message::Chat(e))),
                    );
                }
                Happening::Bans(bans) => {
                    news.push(BusNews::Bans(bans));
                    let heard = self.bans_since_up.take().unwrap_or_default();
                    news.extend(heard.into_iter().map(BusNews::Deliver));
                }
                Happening::Down { lost } => self.went_down(lost, &mut news),
                Happening::Gap => news.push(BusNews::Tell(protocol::BACKPLANE_GAP)),
                // The copy of who is elsewhere first: the rooms they are in stay with their
                // history when the chat next asks which rooms nobody is in any more.
                Happening::History { rooms, recent } => {
                    for message in &recent {
                        self.replica.apply(message, now);
                    }
                    news.push(BusNews::History(rooms));
                }
                Happening::Heard(message) => self.heard(message, now, &mut news),
                Happening::Claimed { claim, ok } => {
                    self.claiming.remove(&nick_key(&claim.nick));
                    // Redis granted it here, so whoever this copy still lists with it is gone.
                    if ok && claim.purpose == Purpose::Rename {
                        self.replica.forget(&claim.nick);
                    }
                    news.push(BusNews::Answered { claim, granted: ok });
                }
                Happening::Resynced => {
                    if std::mem::take(&mut self.told_down) {
                        info!("backplane back: telling every client");
                        news.push(BusNews::Tell(protocol::BACKPLANE_BACK));
                    }
                }
            }
        }
        news
    }

    /// A message from the stream: the copy of who is elsewhere learns from it, a new instance
    /// is introduced to at once (not after TTL / 3), and the chat delivers the event, or hears
    /// of the other instance.
    fn heard(&mut self, message: Message, now: Instant, news: &mut Vec<BusNews>) {
        let origin = message.origin();
        if let (Some(heard), Message::Chat(event)) = (&mut self.bans_since_up, &message)
            && is_ban(&event.what)
        {
            heard.push(event.clone());
        }
        if origin.is_here() {
            // Its own events come back to be delivered; what it said of itself, it knows.
            if let Message::Chat(event) = message {
                news.push(BusNews::Deliver(event));
            }
            return;
        }
        let stranger = self.replica.apply(&message, now);
        if let Message::Instance(_, InstanceNews::Bye) = message {
            self.links.talk.forget(origin);
        }
        if stranger && self.up {
            news.push(BusNews::Introduce);
        }
        news.push(match message {
            Message::Chat(event) => BusNews::Deliver(event),
            Message::Instance(_, said) => BusNews::Instance(said),
        });
    }

    /// Chat is local only. Events not yet sent are delivered here; claims waiting for Redis
    /// are the chat's to decide (as any claim is while Redis is away: the re-claim on its
    /// return settles conflicts); clients are told, once per outage.
    ///
    /// The copy of who is elsewhere is kept, not cleared: `/who`, `/list`, `/msg` and `/kick`
    /// do not see it while the chat is local only (the `Elsewhere` answers below), but the
    /// rooms it says others are in stay here, with their history, and the resume (every
    /// event missed, once, in order) brings the copy and those rooms up to date. Cleared, it
    /// would let the rooms nobody here is in go at the outage's first sweep, and the lines
    /// resumed for them would find no room.
    fn went_down(&mut self, lost: Vec<Claim>, news: &mut Vec<BusNews>) {
        self.up = false;
        self.resync_pending = false;
        self.claiming.clear();
        self.bans_since_up = None;
        let mut unanswered = lost;
        for outgoing in std::mem::take(&mut self.outbox) {
            match outgoing {
                Outgoing::Publish(Message::Chat(event)) => {
                    if is_ban(&event.what) {
                        self.unsent_bans.push(event.clone());
                    }
                    news.push(BusNews::Deliver(event));
                }
                Outgoing::Publish(Message::Instance(..)) => {}
                Outgoing::Claim(claim) => unanswered.push(claim),
                Outgoing::Release(_) | Outgoing::Resync | Outgoing::LoadBans => {}
            }
        }
        news.extend(unanswered.into_iter().map(BusNews::Unanswered));
        if !std::mem::replace(&mut self.told_down, true) {
            news.push(BusNews::Tell(protocol::BACKPLANE_DOWN));
        }
    }
}

impl Bus for RedisBus {
    /// Published while up: it comes back from the stream, here too. Local only, it is
    /// delivered here at once.
    fn publish(&mut self, event: Event) -> Option<Event> {
        if !self.up {
            if is_ban(&event.what) {
                self.unsent_bans.push(event.clone());
            }
            return Some(event);
        }
        self.outbox.push(Outgoing::Publish(Message::Chat(event)));
        None
    }

    /// Redis decides, and the answer comes in a later batch. Local only, nobody can be asked:
    /// granted.
    fn claim(&mut self, claim: Claim) -> Option<Claim> {
        if !self.up {
            return Some(claim);
        }
        if claim.purpose == Purpose::Rename {
            self.claiming.insert(nick_key(&claim.nick));
        }
        self.outbox.push(Outgoing::Claim(claim));
        None
    }

    /// Said on the channel while it is up; while it is down there is nobody to tell.
    fn announce(&mut self, news: InstanceNews) {
        if self.up {
            let message = Message::Instance(Origin::HERE, news);
            self.outbox.push(Outgoing::Publish(message));
        }
    }

    /// Gives a nick's key in Redis back (if Redis is away, it expires instead).
    fn release(&mut self, nick: &str) {
        if self.up {
            self.outbox.push(Outgoing::Release(nick.to_string()));
        }
    }

    fn refreshed(&mut self) {
        if std::mem::take(&mut self.resync_pending) {
            self.outbox.push(Outgoing::Resync);
        }
    }
}

impl Elsewhere for RedisBus {
    fn is_shared(&self) -> bool {
        true
    }

    fn is_claiming(&self, nick: &str) -> bool {
        self.claiming.contains(&nick_key(nick))
    }

    /// Local only, nobody elsewhere can be reached: the copy is not asked (see `went_down`).
    fn is_elsewhere(&self, nick: &str) -> bool {
        self.up && self.replica.has(nick)
    }

    fn nicks_elsewhere(&self, room: &str) -> Vec<&str> {
        if !self.up {
            return Vec::new();
        }
        self.replica.nicks_in(room).collect()
    }

    fn rooms_elsewhere(&self) -> Vec<(&str, usize)> {
        if !self.up {
            return Vec::new();
        }
        self.replica.rooms().collect()
    }

    /// Asked even while local only: a room others were in when Redis went away keeps its
    /// history here through the outage, and the resume fills in what was said in it.
    fn is_room_elsewhere(&self, room: &str) -> bool {
        self.replica.in_room(room)
    }

    /// `guest-TAG-N`, TAG from the instance id, so that guest nicks rarely collide across
    /// instances. Rarely is enough: a guest nick is claimed like any other, and one that
    /// another instance holds is replaced.
    fn guest_prefix(&self) -> String {
        format!("guest-{}-", self.guest_tag)
    }

    fn greeting(&self) -> Option<&'static str> {
        self.told_down.then_some(protocol::BACKPLANE_DOWN)
    }
}

impl BusIo for RedisBus {
    fn start(&mut self, registry: &Registry, tokens: [Token; 2], now: Instant) -> Vec<BusNews> {
        self.schedule_refresh(now);
        let mut happened = Vec::new();
        self.links
            .start(tokens[0], tokens[1], registry, now, &mut happened);
        self.absorb(happened, now)
    }

    fn ready(
        &mut self,
        token: Token,
        readable: bool,
        registry: &Registry,
        scratch: &mut [u8],
        now: Instant,
    ) -> Vec<BusNews> {
        let mut happened = Vec::new();
        self.links
            .handle(token, readable, registry, scratch, now, &mut happened);
        self.read_on_soon(now);
        self.absorb(happened, now)
    }

    fn take_deadlines(&mut self) -> Vec<Instant> {
        let mut deadlines = std::mem::take(&mut self.deadlines);
        deadlines.extend(self.links.take_timer());
        deadlines
    }

    /// A reconnect or a connect timeout may be due; and every TTL / 3, while up, Redis is
    /// checked for silence, the copy of the others forgets instances not heard from for a
    /// whole TTL, and the chat refreshes every nick claim.
    fn on_timer(&mut self, registry: &Registry, scratch: &mut [u8], now: Instant) -> Vec<BusNews> {
        let mut happened = Vec::new();
        self.links
            .serve_unread(registry, scratch, now, &mut happened);
        self.read_on_soon(now);
        self.links.on_timer(registry, now, &mut happened);
        let refresh = now >= self.next_refresh;
        if refresh {
            self.schedule_refresh(now);
            self.links.check_alive(registry, now, &mut happened);
        }
        let mut news = self.absorb(happened, now);
        // Local only, nothing is heard from anyone: their silence is not news of them.
        if refresh && self.up {
            for gone in self.replica.expire(now, self.nick_ttl()) {
                self.links.talk.forget(gone);
            }
            news.push(BusNews::Refresh);
        }
        news
    }

    /// Sends what the chat published this batch. If Redis went away meanwhile, the chat takes
    /// it back and delivers it here.
    fn flush(&mut self, registry: &Registry, now: Instant) -> Vec<BusNews> {
        if self.outbox.is_empty() {
            return Vec::new();
        }
        let mut happened = Vec::new();
        if self.links.is_up() {
            for outgoing in std::mem::take(&mut self.outbox) {
                self.links.send(outgoing);
            }
            self.links.flush(registry, now, &mut happened);
        } else {
            happened.push(Happening::Down { lost: Vec::new() });
        }
        self.absorb(happened, now)
    }

    fn stats(&self) -> Option<Box<RawValue>> {
        serde_json::value::to_raw_value(&self.links.stats()).ok()
    }
}

/// An id for this process, unique among instances: the kernel's random UUID (hex, no dashes),
/// or, if that cannot be read, the process id and the time.
pub fn instance_id() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        Ok(uuid) => uuid.trim().replace('-', ""),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{:x}{nanos:x}", std::process::id())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_and_channel() {
        let url = RedisUrl::parse("redis://127.0.0.1:6379/chat").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.channel.as_str()),
            ("127.0.0.1", 6379, "chat")
        );
        let url = RedisUrl::parse("redis://localhost:6379").unwrap();
        assert_eq!(url.channel, "pollchat");
        assert_eq!(RedisUrl::parse("redis://[::1]:7000/x").unwrap().host, "::1");
        for bad in [
            "localhost:6379",
            "redis://localhost",
            "redis://:1",
            "redis://h:x/c",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_ids_are_plain_and_different() {
        let (a, b) = (instance_id(), instance_id());
        assert_ne!(a, b);
        assert!(
            a.len() >= 8 && a.bytes().all(|c| c.is_ascii_alphanumeric()),
            "{a}"
        );
    }
}
