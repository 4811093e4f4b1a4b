//! One room: who is in it, in which order they hear things, its join and leave notices, and
//! its history.
//!
//! A room knows its members only as [`ConnRef`]s and reaches them only through an [`Outbox`]
//! (the connection table implements it): queue a line for one, tell one something. So the
//! room decides *what* goes to *whom*, and the loop decides *when* bytes move: the room
//! queues, and the loop writes once per batch. Nicks, commands and moving between rooms are
//! the chat's (`chat.rs`); a room is what one line said in it costs: one walk over its own
//! members, never over everyone connected.
//!
//! Ordering: there is one thread, and a line is queued for every member before the next line
//! is looked at, so every member sees the room's lines in one order. No queue is ever
//! reordered, and a member is sent away before a line is skipped for it.
//!
//! A room never lets a member go by itself: a member whose queue refused a line (it would
//! pass the hard output limit) is handed back as [`CutOff`], and the chat, which owns nicks
//! and rooms, sends it away once the walk over the members is over.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use log::trace;

use crate::bus::Origin;
use crate::connection::{CloseReason, ConnRef};
use crate::notices::{Clock, Notice, Notices};
use crate::protocol;

/// What the chat may do to its members' connections, and nothing more.
pub trait Outbox {
    /// Queues a line shared by many recipients. `Err` says this line put `to` over the hard
    /// output limit and its connection is closed; the chat must let it go.
    fn send(&mut self, to: ConnRef, line: &Rc<[u8]>) -> Result<(), CloseReason>;

    /// A server line, or several, for one client; `Err` as for [`Outbox::send`].
    fn tell(&mut self, to: ConnRef, text: &str) -> Result<(), CloseReason>;

    /// The client is out of the chat: its connection closes once its queued lines are out.
    fn hang_up(&mut self, who: ConnRef, reason: CloseReason);

    /// The client goes by `nick` now (logs name it so; the connection keeps the pointer).
    fn name(&mut self, who: ConnRef, nick: &Rc<str>);

    /// Leave the client's next lines unread until [`Outbox::resume`]: the chat cannot handle
    /// them before it has an answer (a `/nick` waiting for the bus).
    fn hold(&mut self, who: ConnRef);

    fn resume(&mut self, who: ConnRef);

    /// Where `who` connects from, and whether its transport is encrypted (for `/oper`).
    fn peer(&self, _who: ConnRef) -> Option<(IpAddr, bool)> {
        None
    }
}

/// Clients for the chat to send away, and why: members whose queue refused a line, or (from
/// `chat/moderation.rs`) clients banned or kicked.
pub type CutOff = Vec<(ConnRef, CloseReason)>;

#[derive(Debug)]
struct Member {
    /// Its connection's id: with its token, the key it is kept under, its [`ConnRef`]. (The
    /// token is not kept twice: a room of everyone has a member per client.)
    id: u64,
    /// The room's clock when it came in: it hears the notices of what happened after.
    since: Clock,
}

#[derive(Debug)]
pub struct Room {
    /// As it was first written (`#Rust`); looked up ignoring case.
    name: Rc<str>,
    /// The lower-cased name it is looked up by: the chat's key for it, and each member's
    /// record of where it is, all one allocation.
    key: Rc<str>,
    /// This instance's members, by token. Ordered, so a line reaches (and the flush at the
    /// end of the batch writes to) members in the order of their tokens, whatever the
    /// history of the map: fan-out order is a property of the room, not of a hash.
    members: BTreeMap<usize, Member>,
    /// Join and leave notices waiting for the end of the batch (see `notices.rs`).
    notices: Notices,
    /// Counts arrivals, so each member and each notice knows who was here when.
    clock: Clock,
    /// The last chat lines, oldest first, for whoever comes in next. The very lines the
    /// members' queues hold: a pointer each, no copy.
    history: VecDeque<Rc<[u8]>>,
    history_len: usize,
    /// `/topic`: kept here, so it goes with the room.
    topic: Option<String>,
}

impl Room {
    pub fn new(name: &str, history_len: usize, now: Instant) -> Room {
        Room {
            name: Rc::from(name),
            key: Rc::from(protocol::room_key(name).as_ref()),
            members: BTreeMap::new(),
            notices: Notices::new(now),
            clock: 0,
            history: VecDeque::with_capacity(history_len.min(64)),
            history_len,
            topic: None,
        }
    }

    /// `--history` changed (a reload): the oldest lines past the new length go now.
    pub fn set_history_len(&mut self, len: usize) {
        self.history_len = len;
        let excess = self.history.len().saturating_sub(len);
        self.history.drain(..excess);
    }

    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    pub fn set_topic(&mut self, topic: &str) {
        self.topic = Some(topic.to_string());
    }

    /// The lines kept for whoever comes in next, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &[u8]> {
        self.history.iter().map(|line| &**line)
    }

    /// What `--state-dir` kept of this room (see `state/`), restored at start-up, or what the
    /// backplane's stream holds of it: its lines, if it has any, replace the history (the
    /// stream may hold only a topic of a room, its lines trimmed away); a topic, if it has one.
    pub fn restore(&mut self, topic: Option<String>, lines: VecDeque<Rc<[u8]>>) {
        self.topic = topic.or(self.topic.take());
        if !lines.is_empty() {
            self.history = lines;
        }
        self.set_history_len(self.history_len);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (the events said in it carry it).
    pub fn shared_name(&self) -> &Rc<str> {
        &self.name
    }

    /// The lower-cased name, shared.
    pub fn key(&self) -> &Rc<str> {
        &self.key
    }

    /// This instance's members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> impl Iterator<Item = ConnRef> + '_ {
        self.members
            .iter()
            .map(|(&token, m)| ConnRef { token, id: m.id })
    }

    fn member(&self, who: ConnRef) -> Option<&Member> {
        self.members.get(&who.token).filter(|m| m.id == who.id)
    }

    /// `who` comes in: from now on it hears what is said here.
    pub fn add(&mut self, who: ConnRef) {
        self.clock += 1;
        let since = self.clock;
        let id = who.id;
        self.members.insert(who.token, Member { id, since });
    }

    /// `who` is out. False if it was not here.
    pub fn remove(&mut self, who: ConnRef) -> bool {
        if self.member(who).is_none() {
            return false;
        }
        self.members.remove(&who.token).is_some()
    }

    /// Whether lines said here are kept for whoever comes in later (`--history` is not 0).
    pub fn keeps_history(&self) -> bool {
        self.history_len > 0
    }

    /// A chat line said here: sent to every member but its sender (the connection id
    /// `except`), and kept for whoever comes in later.
    pub fn say(&mut self, except: Option<u64>, line: &Rc<[u8]>, out: &mut impl Outbox) -> CutOff {
        if self.history_len > 0 {
            if self.history.len() == self.history_len {
                self.history.pop_front();
            }
            self.history.push_back(Rc::clone(line));
        }
        self.send_where(|m| Some(m.id) != except, line, out)
    }

    /// A server line (a rename) for every member, the one it is about included.
    pub fn tell_everyone(&self, line: &str, out: &mut impl Outbox) -> CutOff {
        self.send_where(|_| true, &Rc::from(line.as_bytes()), out)
    }

    /// What a member who just came in is shown: the topic, if there is one, then the history.
    pub fn show(&self, who: ConnRef, out: &mut impl Outbox) -> Result<(), CloseReason> {
        if let Some(topic) = &self.topic {
            out.tell(who, &protocol::topic_is(&self.name, Some(topic)))?;
        }
        self.replay(who, out)
    }

    /// The history, for a member who just came in: between a header and a footer, oldest
    /// first, queued like any other output (so it counts against `--max-output`), before
    /// anything said from now on. Nothing at all if there is none.
    pub fn replay(&self, who: ConnRef, out: &mut impl Outbox) -> Result<(), CloseReason> {
        if self.history.is_empty() {
            return Ok(());
        }
        out.tell(
            who,
            &protocol::history_header(&self.name, self.history.len()),
        )?;
        for line in &self.history {
            out.send(who, line)?;
        }
        out.tell(who, protocol::HISTORY_END)
    }

    /// One line to every member `hears` picks, allocated once and shared by their queues.
    fn send_where(
        &self,
        hears: impl Fn(&Member) -> bool,
        line: &Rc<[u8]>,
        out: &mut impl Outbox,
    ) -> CutOff {
        let mut cut_off = Vec::new();
        let mut recipients = 0usize;
        for (&token, member) in &self.members {
            if !hears(member) {
                continue;
            }
            recipients += 1;
            let to = ConnRef {
                token,
                id: member.id,
            };
            if let Err(reason) = out.send(to, line) {
                cut_off.push((to, reason));
            }
        }
        trace!(
            "{}: queued {} bytes for {recipients} clients (one allocation, shared)",
            self.name,
            line.len()
        );
        cut_off
    }

    /// A join or an arrival from another room. Who hears it: the members who were here
    /// before it. For `joiner`, one of ours already added, those that came in before it did;
    /// for another instance's client, everyone here now.
    pub fn joined(&mut self, origin: Origin, conn: u64, nick: &str, joiner: Option<ConnRef>) {
        let heard_up_to = joiner
            .and_then(|who| self.member(who))
            .map_or(self.clock, |m| m.since - 1);
        self.notices.joined(origin, conn, nick, heard_up_to);
    }

    /// A leave, or a move to another room: heard by everyone here now.
    pub fn left(&mut self, origin: Origin, conn: u64, nick: &str, reason: &str) {
        self.notices.left(origin, conn, nick, reason, self.clock);
    }

    /// The sender (`origin`, `conn`) is heard from: if its join has not been said yet, it
    /// is now, so nobody sees a line from someone they did not see arrive.
    pub fn announce_arrival(&mut self, origin: Origin, conn: u64, out: &mut impl Outbox) -> CutOff {
        match self.notices.take_join(origin, conn) {
            Some(notice) => self.say_notice(&notice, out),
            None => Vec::new(),
        }
    }

    /// A round of join and leave notices, if one is due (the end of the batch). `Err(at)`:
    /// notices are waiting for a round at `at`.
    pub fn say_notices(&mut self, now: Instant, out: &mut impl Outbox) -> Result<CutOff, Instant> {
        let notices = self.notices.round(now)?;
        let mut cut_off = Vec::new();
        for notice in &notices {
            cut_off.extend(self.say_notice(notice, out));
        }
        Ok(cut_off)
    }

    /// One notice to those who were here when it happened, except the member it is about
    /// (members are this instance's clients: a notice about another instance's client is
    /// about none of them, whatever its connection id).
    fn say_notice(&self, notice: &Notice, out: &mut impl Outbox) -> CutOff {
        let about = |m: &Member| notice.about == Some((Origin::HERE, m.id));
        let hears = |m: &Member| m.since <= notice.heard_up_to && !about(m);
        self.send_where(hears, &Rc::from(notice.line.as_bytes()), out)
    }
}
