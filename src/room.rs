//! The chat itself: who is here under which nick, and who must receive what.
//!
//! The room never sees a socket. Its members are [`ConnRef`]s, and it reaches them only
//! through an [`Outbox`]: queue a line for one, tell one something, let one go. The
//! connection table implements the outbox. So the room decides *what* goes *where*, and the
//! loop decides *when* bytes move: the room queues, and the loop writes once per batch.
//!
//! Ordering: there is one thread and one room, and a line is queued for every recipient
//! before the next line is looked at. Every client therefore sees every line in the same
//! global order. No queue is ever reordered, and a client is sent away before a line is
//! skipped for it.
//!
//! Everything clients say to each other is an [`Event`]. [`Room::say`] makes one and hands it
//! to the bus, and [`Room::deliver`] is the one place where an event becomes output: at once
//! for a lone server, when it comes back from Redis for a shared chat (see `bus.rs`). What
//! each command does is in `cmd/`; every text the room sends is built in `protocol.rs`.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use log::{info, trace, warn};

use crate::bus::{Bus, BusNews, Claim, Claimed, Event, Purpose, What};
use crate::connection::{CloseReason, ConnRef};
use crate::notices::{Clock, Notice, Notices};
use crate::protocol;

/// What the room may do to its members' connections, and nothing more.
pub trait Outbox {
    /// Queues a line shared by many recipients. `Err` says this line put `to` over the hard
    /// output limit and its connection is closed; the room must let it go.
    fn send(&mut self, to: ConnRef, line: &Rc<[u8]>) -> Result<(), CloseReason>;

    /// A server line, or several, for one client; `Err` as for [`Outbox::send`].
    fn tell(&mut self, to: ConnRef, text: &str) -> Result<(), CloseReason>;

    /// The client is out of the room: its connection closes once its queued lines are out.
    fn hang_up(&mut self, who: ConnRef, reason: CloseReason);

    /// The client goes by `nick` now (logs name it so).
    fn name(&mut self, who: ConnRef, nick: &str);

    /// Leave the client's next lines unread until [`Outbox::resume`]: the room cannot handle
    /// them before it has an answer (a `/nick` waiting for the bus).
    fn hold(&mut self, who: ConnRef);

    fn resume(&mut self, who: ConnRef);
}

#[derive(Debug)]
struct Member {
    conn: ConnRef,
    nick: String,
    /// The room's clock when it joined: it hears the notices of what happened after.
    since: Clock,
}

#[derive(Debug)]
pub struct Room {
    /// Every client in the room, by token. Ordered, so a broadcast reaches (and the flush at
    /// the end of the batch writes to) members in the order of their tokens, whatever the
    /// history of the map: fan-out order is a property of the room, not of a hash.
    members: BTreeMap<usize, Member>,
    /// Lower-cased nick → its member: unique among members.
    nicks: HashMap<String, ConnRef>,
    /// Leave events not yet said (see [`Room::announce_departures`] for why they wait).
    departures: Vec<Event>,
    /// Join and leave notices waiting for the end of the batch (see `notices.rs`).
    notices: Notices,
    /// Counts joins, so each member and each notice knows who was here when.
    clock: Clock,
    next_guest: u64,
    quiet_joins: bool,
}

impl Room {
    pub fn new(quiet_joins: bool) -> Room {
        Room {
            members: BTreeMap::new(),
            nicks: HashMap::new(),
            departures: Vec::new(),
            notices: Notices::new(Instant::now()),
            clock: 0,
            next_guest: 1,
            quiet_joins,
        }
    }

    /// Clients in the room.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The member's nick, if `who` is in the room.
    pub fn nick_of(&self, who: ConnRef) -> Option<&str> {
        self.member(who).map(|m| m.nick.as_str())
    }

    /// Who goes by `nick` here (ignoring case).
    pub fn owner_of(&self, nick: &str) -> Option<ConnRef> {
        self.nicks.get(&protocol::nick_key(nick)).copied()
    }

    /// Every member's nick.
    pub fn nicks(&self) -> impl Iterator<Item = &str> {
        self.members.values().map(|m| m.nick.as_str())
    }

    fn member(&self, who: ConnRef) -> Option<&Member> {
        self.members.get(&who.token).filter(|m| m.conn == who)
    }

    /// A new client joins under a guest nick, gets the welcome line, and everyone else hears
    /// about it.
    pub fn enter(&mut self, who: ConnRef, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let nick = self.free_guest_nick(bus);
        self.add(who, nick.clone());
        out.name(who, &nick);
        self.tell(who, &protocol::welcome(&nick), bus, out);
        if let Some(greeting) = bus.greeting() {
            self.tell(who, greeting, bus, out);
        }
        // A guest nick is used whatever the answer: one taken elsewhere is replaced later.
        let claim = Claim {
            conn: who,
            nick: nick.clone(),
            purpose: Purpose::Keep,
        };
        let _ = bus.claim(claim);
        self.say(who, What::Joined { nick }, bus, out);
    }

    fn add(&mut self, who: ConnRef, nick: String) {
        self.clock += 1;
        self.nicks.insert(protocol::nick_key(&nick), who);
        let since = self.clock;
        self.members.insert(
            who.token,
            Member {
                conn: who,
                nick,
                since,
            },
        );
    }

    /// Something `from` did that the others must hear of: an event on the bus, delivered here
    /// now if the bus hands it back.
    pub fn say(&mut self, from: ConnRef, what: What, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let event = Event::new(bus.origin(), from.id, what);
        if let Some(event) = bus.publish(event) {
            self.deliver(&event, bus, out);
        }
    }

    /// A server line for one member. One that this line puts over the hard output limit is
    /// let go.
    pub fn tell(&mut self, who: ConnRef, text: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        if let Err(reason) = out.tell(who, text) {
            self.depart(who, reason, bus, out);
        }
    }

    /// A server line for every member.
    pub fn tell_everyone(&mut self, line: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        self.broadcast(None, line, bus, out);
    }

    /// `who` is `new` from now on: the registry changes, the old nick is released, and
    /// everyone (`who` too: that is its confirmation) hears of it.
    pub fn rename(&mut self, who: ConnRef, new: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let Some(member) = self.members.get_mut(&who.token).filter(|m| m.conn == who) else {
            return;
        };
        let old = std::mem::replace(&mut member.nick, new.to_string());
        let (old_key, new_key) = (protocol::nick_key(&old), protocol::nick_key(new));
        self.nicks.remove(&old_key);
        self.nicks.insert(new_key.clone(), who);
        info!("token {}: {old} is now {new}", who.token);
        if old_key != new_key {
            bus.release(&old);
        }
        out.name(who, new);
        let new = new.to_string();
        self.say(who, What::Renamed { old, new }, bus, out);
    }

    /// The client leaves the room: its nick is free, the others will hear why, and its
    /// connection closes once its last lines are out. False if it was not in the room.
    pub fn depart(
        &mut self,
        who: ConnRef,
        reason: CloseReason,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) -> bool {
        if self.member(who).is_none() {
            return false;
        }
        let Some(Member { nick, .. }) = self.members.remove(&who.token) else {
            return false;
        };
        self.nicks.remove(&protocol::nick_key(&nick));
        bus.release(&nick);
        // On a shutdown everyone here is leaving and needs no notice; other instances'
        // clients do.
        if reason != CloseReason::Shutdown || bus.is_shared() {
            let what = What::Left {
                nick,
                reason: reason.to_string(),
            };
            self.departures.push(Event::new(bus.origin(), who.id, what));
        }
        out.hang_up(who, reason);
        true
    }

    /// Says the leave events collected during the batch.
    ///
    /// They wait until here because a client can be sent away in the middle of a broadcast
    /// (its queue overflowed), and announcing it there would start a broadcast inside a
    /// broadcast. A notice can itself overflow another queue and cause another departure, so
    /// this loops until there are none left.
    pub fn announce_departures(&mut self, bus: &mut dyn Bus, out: &mut impl Outbox) {
        while !self.departures.is_empty() {
            for event in std::mem::take(&mut self.departures) {
                if let Some(event) = bus.publish(event) {
                    self.deliver(&event, bus, out);
                }
            }
        }
    }

    /// What an event means for this instance's clients: the one place where chat becomes
    /// output, for local events and for events from the bus alike. The client the event came
    /// from (same origin, same connection id) does not get its own line back. Joins and
    /// leaves wait for the end of the batch (see `notices.rs`); a newcomer whose join is
    /// still waiting is announced before anything it says.
    pub fn deliver(&mut self, event: &Event, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let except = (event.origin == bus.origin()).then_some(event.conn);
        let line = match &event.what {
            What::Joined { .. } | What::Left { .. } if self.quiet_joins => return,
            What::Joined { nick } => {
                let heard_up_to = self.heard_join_up_to(event, nick, except.is_some());
                return self
                    .notices
                    .joined(&event.origin, event.conn, nick, heard_up_to);
            }
            What::Left { nick, reason } => {
                let clock = self.clock;
                return self
                    .notices
                    .left(&event.origin, event.conn, nick, reason, clock);
            }
            What::Say { nick, text } => protocol::chat_line(nick, text),
            What::Me { nick, action } => protocol::action_line(nick, action),
            // Everyone sees it, the renamed client included: that is its confirmation.
            What::Renamed { old, new } => {
                self.announce_arrival(event, bus, out);
                return self.broadcast(None, &protocol::renamed(old, new), bus, out);
            }
            What::Msg { from, to, text } => {
                if let Some(to) = self.owner_of(to) {
                    self.tell(to, &protocol::private_line(from, text), bus, out);
                }
                return;
            }
            What::Hello { .. } | What::Bye => return,
        };
        self.announce_arrival(event, bus, out);
        self.broadcast(except, &line, bus, out);
    }

    /// Who hears a join: the members who were here before it (for one of ours, those that
    /// joined before it did; for another instance's, everyone here now).
    fn heard_join_up_to(&self, event: &Event, nick: &str, mine: bool) -> Clock {
        let joiner = self
            .owner_of(nick)
            .filter(|who| mine && who.id == event.conn)
            .and_then(|who| self.member(who));
        joiner.map_or(self.clock, |m| m.since - 1)
    }

    /// The sender of `event` is heard from: if its join has not been said yet, it is now.
    fn announce_arrival(&mut self, event: &Event, bus: &mut dyn Bus, out: &mut impl Outbox) {
        if let Some(notice) = self.notices.take_join(&event.origin, event.conn) {
            self.say_notice(&notice, bus, out);
        }
    }

    /// A round of join and leave notices, if one is due (the end of the batch). `Some(at)`:
    /// notices are waiting for a round at `at`.
    pub fn say_notices(
        &mut self,
        now: Instant,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) -> Option<Instant> {
        match self.notices.round(now) {
            Ok(notices) => {
                for notice in &notices {
                    self.say_notice(notice, bus, out);
                }
                None
            }
            Err(at) => Some(at),
        }
    }

    fn say_notice(&mut self, notice: &Notice, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let origin = bus.origin().to_string();
        let about = |m: &Member| {
            notice
                .about
                .as_ref()
                .is_some_and(|(o, conn)| *o == origin && *conn == m.conn.id)
        };
        let hears = |m: &Member| m.since <= notice.heard_up_to && !about(m);
        self.broadcast_where(hears, &notice.line, bus, out);
    }

    /// One line to every member except the one whose connection id is `except`. The line is
    /// allocated once, and every recipient's queue shares it.
    pub fn broadcast(
        &mut self,
        except: Option<u64>,
        line: &str,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) {
        self.broadcast_where(|m| Some(m.conn.id) != except, line, bus, out);
    }

    /// One line to every member `hears` picks, allocated once and shared by their queues.
    fn broadcast_where(
        &mut self,
        hears: impl Fn(&Member) -> bool,
        line: &str,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) {
        let line: Rc<[u8]> = Rc::from(line.as_bytes());
        let mut cut_off = Vec::new();
        let mut recipients = 0usize;
        for member in self.members.values() {
            if !hears(member) {
                continue;
            }
            recipients += 1;
            if let Err(reason) = out.send(member.conn, &line) {
                // Let go after the loop: departing changes the room we are walking through.
                cut_off.push((member.conn, reason));
            }
        }
        trace!(
            "queued {} bytes for {recipients} clients (one allocation, shared)",
            line.len()
        );
        for (who, reason) in cut_off {
            self.depart(who, reason, bus, out);
        }
    }

    /// Acts on what the bus reports (see [`BusNews`]).
    pub fn absorb(&mut self, news: BusNews, bus: &mut dyn Bus, out: &mut impl Outbox) {
        match news {
            BusNews::Deliver(event) => self.deliver(&event, bus, out),
            BusNews::Answered { claim, granted } => self.claim_answered(claim, granted, bus, out),
            BusNews::Unanswered(claim) => {
                if claim.purpose == Purpose::Rename {
                    let free = self.owner_of(&claim.nick).is_none();
                    self.claim_answered(claim, free, bus, out);
                }
            }
            BusNews::Refresh => {
                let claims: Vec<Claim> = self
                    .members
                    .values()
                    .map(|m| Claim {
                        conn: m.conn,
                        nick: m.nick.clone(),
                        purpose: Purpose::Keep,
                    })
                    .collect();
                for claim in claims {
                    let _ = bus.claim(claim);
                }
                self.introduce(bus, out);
                bus.refreshed();
            }
            BusNews::Introduce => self.introduce(bus, out),
            BusNews::Tell(line) => self.tell_everyone(line, bus, out),
        }
    }

    /// Says `Hello` with every member's nick, so other instances know who is here.
    fn introduce(&mut self, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let nicks = self.nicks().map(str::to_string).collect();
        let hello = Event::new(bus.origin(), 0, What::Hello { nicks });
        if let Some(hello) = bus.publish(hello) {
            self.deliver(&hello, bus, out);
        }
    }

    /// The bus answered a claim: a `/nick` is granted or refused; a nick a member already uses
    /// turned out to be held elsewhere, so it gets a fresh guest nick.
    fn claim_answered(
        &mut self,
        claim: Claim,
        granted: bool,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) {
        let Claim {
            conn,
            nick,
            purpose,
        } = claim;
        if purpose == Purpose::Rename {
            out.resume(conn);
        }
        let current = self.nick_of(conn).map(str::to_string);
        match (purpose, current) {
            (Purpose::Rename, Some(_)) if granted => self.rename(conn, &nick, bus, out),
            (Purpose::Rename, Some(_)) => self.tell(conn, &protocol::nick_taken(&nick), bus, out),
            (Purpose::Keep, Some(current)) if !granted && current == nick => {
                let guest = self.free_guest_nick(bus);
                warn!(
                    "token {}: nick {nick} is held by another instance; now {guest}",
                    conn.token
                );
                self.tell(
                    conn,
                    &protocol::nick_taken_elsewhere(&nick, &guest),
                    bus,
                    out,
                );
                self.rename(conn, &guest, bus, out);
                let claim = Claim {
                    conn,
                    nick: guest,
                    purpose: Purpose::Keep,
                };
                let _ = bus.claim(claim);
            }
            // The client left (or changed nick) while the bus was answering: a nick granted
            // to nobody goes back at once.
            (Purpose::Rename, None) if granted => bus.release(&nick),
            _ => {}
        }
    }

    /// Tells every member the server is going away, and lets each go (its last lines are
    /// flushed, then it closes).
    pub fn shutdown(&mut self, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let everyone: Vec<ConnRef> = self.members.values().map(|m| m.conn).collect();
        for who in everyone {
            self.tell(who, protocol::SHUTTING_DOWN, bus, out);
            self.depart(who, CloseReason::Shutdown, bus, out);
        }
        // The other instances forget this one at once, after its clients' leave events.
        if bus.is_shared() {
            self.departures.push(Event::new(bus.origin(), 0, What::Bye));
        }
    }

    /// The next guest nick nobody here has. (Taken elsewhere is the bus's to find out.)
    fn free_guest_nick(&mut self, bus: &dyn Bus) -> String {
        loop {
            let nick = bus.guest_nick(self.next_guest);
            self.next_guest += 1;
            if self.owner_of(&nick).is_none() {
                return nick;
            }
        }
    }

    /// Whether `nick` may be claimed by `who`: nobody else here has it, and no claim for it is
    /// waiting (a change of case only is the same nick).
    pub fn is_free_for(&self, who: ConnRef, nick: &str, bus: &dyn Bus) -> bool {
        !bus.is_claiming(nick) && self.owner_of(nick).is_none_or(|owner| owner == who)
    }

    /// Asks the bus for a nick for `/nick`: `Claimed::Pending` holds the client's next lines
    /// until the answer.
    pub fn claim_rename(
        &mut self,
        who: ConnRef,
        nick: &str,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) -> Claimed {
        let claim = Claim {
            conn: who,
            nick: nick.to_string(),
            purpose: Purpose::Rename,
        };
        let claimed = bus.claim(claim);
        if claimed == Claimed::Pending {
            out.hold(who);
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalBus;

    /// An outbox that writes down what each member was sent.
    #[derive(Default)]
    struct Recorder {
        lines: Vec<(ConnRef, String)>,
    }

    impl Recorder {
        fn to(&self, who: ConnRef) -> Vec<&str> {
            self.lines
                .iter()
                .filter(|(to, _)| *to == who)
                .map(|(_, line)| line.as_str())
                .collect()
        }
    }

    impl Outbox for Recorder {
        fn send(&mut self, to: ConnRef, line: &Rc<[u8]>) -> Result<(), CloseReason> {
            let line = String::from_utf8_lossy(line).into_owned();
            self.lines.push((to, line));
            Ok(())
        }
        fn tell(&mut self, to: ConnRef, text: &str) -> Result<(), CloseReason> {
            self.lines.push((to, text.to_string()));
            Ok(())
        }
        fn hang_up(&mut self, _: ConnRef, _: CloseReason) {}
        fn name(&mut self, _: ConnRef, _: &str) {}
        fn hold(&mut self, _: ConnRef) {}
        fn resume(&mut self, _: ConnRef) {}
    }

    /// Within one batch, before any round: a newcomer who speaks is announced first, on its
    /// own, so nobody sees a line from someone they did not see arrive; and the round at the
    /// end of the batch does not announce it again.
    #[test]
    fn a_newcomer_whose_join_is_waiting_is_announced_before_its_first_line() {
        let (mut room, mut bus, mut out) = (Room::new(false), LocalBus, Recorder::default());
        let (ann, bo) = (ConnRef { token: 0, id: 1 }, ConnRef { token: 1, id: 2 });
        room.enter(ann, &mut bus, &mut out);
        room.enter(bo, &mut bus, &mut out);
        let (nick, text) = ("guest-2".to_string(), "hi".to_string());
        room.say(bo, What::Say { nick, text }, &mut bus, &mut out);
        assert!(
            room.say_notices(Instant::now(), &mut bus, &mut out)
                .is_none()
        );
        assert_eq!(
            out.to(ann)[1..],
            ["*** guest-2 joined\n", "<guest-2> hi\n"],
            "{:?}",
            out.to(ann)
        );
    }
}
