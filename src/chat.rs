//! The chat: who is here under which nick, in which room, and what every event means for
//! them.
//!
//! The chat never sees a socket. Its clients are [`ConnRef`]s, and it reaches them only
//! through an [`Outbox`] (see `room.rs`). It owns what is true across rooms: nicks are unique
//! in the whole chat (`/msg` reaches a nick in any room), every client is in exactly one
//! room, and rooms come and go with their members (`#lobby` always stays). A [`Room`] owns
//! what is true in one: its members' order, its notices, its history. The chat keeps four
//! parts in step, each a type in `chat/`: [`Nicks`], the nick registry; [`Rooms`], the rooms
//! and what an event means for them; [`Requests`], what it asks of the bus; [`Moderation`],
//! the operators and the bans, and whom they send away.
//!
//! Everything clients say to each other is an [`Event`]. [`Chat::say`] makes one and queues
//! it for the bus; the chat never holds the bus, the server hands what it queued
//! ([`Chat::next_request`]) to the bus after every call into the chat. [`Chat::deliver`] is
//! the one place where an event becomes output: when the bus hands it back, at once for a lone
//! server, from Redis for a shared chat (see `bus.rs`). What the chat must know of the other
//! instances it asks of a read-only [`Elsewhere`], in the few functions that need it. An
//! event names its room, and delivering it walks that room's members only: a line said in a
//! room of ten costs ten queued pointers however many are connected. What each command does
//! is in `cmd/`; every text the chat sends is built in `protocol.rs`.

mod moderation;
mod nicks;
mod requests;
mod rooms;

use std::rc::Rc;
use std::time::Instant;

use log::warn;

use crate::bans::BanList;
use crate::bus::{
    BusNews, Claim, Elsewhere, Event, InstanceNews, Presence, Purpose, Request, What,
};
use crate::connection::{CloseReason, ConnRef};
use crate::limits::LOBBY;
use crate::protocol::{self, nick_key, room_key};
use crate::room::{CutOff, Outbox, Room};
pub use moderation::Moderation;
pub use nicks::Nicks;
pub use requests::Requests;
pub use rooms::Rooms;

/// How rooms are bounded (`--max-rooms`, `--history`) and whether joins are announced.
#[derive(Debug, Clone, Copy)]
pub struct RoomRules {
    pub max_rooms: usize,
    pub history: usize,
    pub quiet_joins: bool,
}

/// Why a `/join` did not move its client.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    AlreadyThere(String),
    TooManyRooms { max: usize },
}

/// The chat: its nick registry and its rooms, kept in step, and what it asks of the bus.
#[derive(Debug)]
pub struct Chat {
    /// Who is here, under which nick, in which room (`nicks.rs`).
    nicks: Nicks,
    /// The rooms this instance keeps (`rooms.rs`). Every client's room is one of them. Public
    /// for the server's end of batch and start-up, which hand their history to the keeper
    /// (`state/`) and restore it from there.
    pub rooms: Rooms,
    /// What the chat asks of the bus, for the server to hand over (`requests.rs`).
    requests: Requests,
    /// The message of the day, as server lines (`protocol::motd`); empty when there is none.
    pub motd: Rc<str>,
    /// The operators and the bans (`chat/moderation.rs`): `/oper`, the operators' commands and
    /// the configuration change them.
    pub moderation: Moderation,
}

impl Chat {
    pub fn new(rules: RoomRules, bus: &dyn Elsewhere) -> Chat {
        Chat {
            nicks: Nicks::new(bus.guest_prefix()),
            rooms: Rooms::new(rules),
            requests: Requests::new(bus.is_shared()),
            motd: Rc::from(""),
            moderation: Moderation::default(),
        }
    }

    /// Clients in the chat.
    pub fn members(&self) -> usize {
        self.nicks.count()
    }

    /// Who is here, under which nick.
    pub fn nicks(&self) -> &Nicks {
        &self.nicks
    }

    pub fn set_rules(&mut self, rules: RoomRules) {
        self.rooms.set_rules(rules);
    }

    /// The client's nick, if `who` is in the chat.
    pub fn nick_of(&self, who: ConnRef) -> Option<&str> {
        self.nicks.nick_of(who).map(|nick| &**nick)
    }

    /// The room `who` is in.
    pub fn room_of(&self, who: ConnRef) -> Option<&Room> {
        self.rooms.get(self.nicks.room_of(who)?)
    }

    /// The next thing the chat asks of the bus, for the server to hand over, oldest first.
    pub fn next_request(&mut self) -> Option<Request> {
        self.requests.pop()
    }

    /// A new client joins `#lobby` under a guest nick, is welcomed (with the MOTD and the bus's
    /// greeting, if any) and shown the lobby's topic and history, and the lobby hears about it.
    pub fn enter(&mut self, who: ConnRef, bus: &dyn Elsewhere, out: &mut impl Outbox) {
        let nick = self.moderation.guest_nick(&mut self.nicks);
        let lobby = room_key(LOBBY);
        let room = self.rooms.room_mut(&lobby);
        room.add(who);
        let room = Rc::clone(room.key());
        out.name(who, self.nicks.add(who, &nick, room));
        self.tell(who, &protocol::welcome(&nick), out);
        if !self.motd.is_empty() {
            self.tell(who, &Rc::clone(&self.motd), out);
        }
        if let Some(greeting) = bus.greeting() {
            self.tell(who, greeting, out);
        }
        self.show_room(who, &lobby, out);
        // A guest nick is used whatever the answer: one taken elsewhere is replaced later.
        self.requests.claim(who, nick.clone(), Purpose::Keep);
        let room = LOBBY.to_string();
        self.say(who, What::Joined { room, nick });
    }

    /// `/join`: `who` moves to `name`, which is made if it does not exist. The old room
    /// hears where it went, the new one that it came; it is told it moved, then given the new
    /// room's topic and history, then what is said there from now on.
    pub fn join(&mut self, who: ConnRef, name: &str, out: &mut impl Outbox) -> Result<(), Refused> {
        let Some(from_key) = self.nicks.room_of(who).map(Rc::clone) else {
            return Ok(());
        };
        let (from, to, members) = self.rooms.switch(who, &from_key, name)?;
        let key = room_key(&to);
        self.nicks.moved(who, self.rooms.key_of(&key));
        self.tell(who, &protocol::now_in(&to, members), out);
        self.show_room(who, &key, out);
        let nick = self.nick_of(who).unwrap_or_default().to_string();
        self.say(who, What::Moved { nick, from, to });
        self.requests.room_emptied(&self.rooms, &from_key);
        Ok(())
    }

    /// Something `from` did that others must hear of: an event for the bus, delivered here
    /// when the bus hands it back (see `bus.rs`).
    pub fn say(&mut self, from: ConnRef, what: What) {
        self.requests.publish(from.id, what);
    }

    /// A server line for one client. One that this line puts over the hard output limit is
    /// let go.
    pub fn tell(&mut self, who: ConnRef, text: &str, out: &mut impl Outbox) {
        if let Err(reason) = out.tell(who, text) {
            self.depart(who, reason, out);
        }
    }

    /// `room`'s topic and history for `who`, who just came in.
    fn show_room(&mut self, who: ConnRef, room: &str, out: &mut impl Outbox) {
        let shown = self.rooms.get(room).map_or(Ok(()), |r| r.show(who, out));
        if let Err(reason) = shown {
            self.depart(who, reason, out);
        }
    }

    /// `who` is `new` from now on: the registry changes, the old nick is released, and its
    /// room (`who` too: that is its confirmation) hears of it.
    pub fn rename(&mut self, who: ConnRef, new: &str, out: &mut impl Outbox) {
        let Some((old, nick, room)) = self.nicks.rename(who, new) else {
            return;
        };
        out.name(who, &nick);
        let old = old.to_string();
        if nick_key(&old) != nick_key(new) {
            self.requests.release(old.clone());
        }
        let room = self.rooms.room_mut(&room).name().to_string();
        let new = new.to_string();
        self.say(who, What::Renamed { room, old, new });
    }

    /// The client leaves the chat: its nick is free, its room will hear why, and its
    /// connection closes once its last lines are out. False if it was not in the chat.
    pub fn depart(&mut self, who: ConnRef, reason: CloseReason, out: &mut impl Outbox) -> bool {
        let Some((nick, room)) = self.nicks.remove(who) else {
            return false;
        };
        let nick = nick.to_string();
        self.requests.release(nick.clone());
        self.moderation.operators.forget(who);
        let room_name = self.rooms.leave(who, &room);
        self.requests.room_emptied(&self.rooms, &room);
        self.requests.left(who.id, room_name, nick, &reason);
        out.hang_up(who, reason);
        true
    }

    /// Sends away the clients a walk handed back: over the hard output limit, banned, kicked.
    fn let_go(&mut self, cut_off: CutOff, out: &mut impl Outbox) {
        for (who, reason) in cut_off {
            self.depart(who, reason, out);
        }
    }

    /// Queues the batch's leave events ([`Requests::announce_departures`]); false if none.
    pub fn announce_departures(&mut self) -> bool {
        self.requests.announce_departures()
    }

    /// What an event means for this instance's clients: the one place where chat becomes
    /// output, for local events and for events from the bus alike. The client the event came
    /// from (same origin, same connection id) does not get its own line back. Joins and
    /// leaves wait for the end of the batch (see `notices.rs`); a newcomer whose join is
    /// still waiting is announced before anything it says.
    pub fn deliver(&mut self, event: &Event, out: &mut impl Outbox) {
        let cut_off = match &event.what {
            What::Say { room, nick, text } => {
                let line = protocol::chat_line(nick, text);
                self.rooms.chat_line(event, room, &line, out)
            }
            What::Me { room, nick, action } => {
                let line = protocol::action_line(nick, action);
                self.rooms.chat_line(event, room, &line, out)
            }
            What::Joined { room, nick } => {
                return self.rooms.arrived(event, room, nick, &self.nicks);
            }
            What::Left { room, nick, reason } => return self.went(event, room, nick, reason),
            What::Moved { nick, from, to } => {
                self.went(event, from, nick, &protocol::went_to(to));
                return self.rooms.arrived(event, to, nick, &self.nicks);
            }
            What::Renamed { room, old, new } => {
                let line = protocol::renamed(old, new);
                self.rooms.renamed(event, room, &line, out)
            }
            What::Msg { from, to, text } => {
                if let Some(to) = self.nicks.owner_of(to) {
                    self.tell(to, &protocol::private_line(from, text), out);
                }
                return;
            }
            What::Ban { mask, ban } => self.moderation.ban(mask, ban, &self.nicks, out),
            What::Unban { mask, by } => return self.moderation.unban(mask, by),
            What::Kick { by, nick, reason } => Moderation::kick(by, nick, reason, &self.nicks, out),
            What::Topic { room, nick, topic } => {
                let line = protocol::topic_set(nick, room, topic);
                self.rooms.topic(event, room, topic, &line, out)
            }
        };
        self.let_go(cut_off, out);
    }

    /// A leave, or a move out: `room` will hear of it in its next round of notices, and may
    /// be empty everywhere now.
    fn went(&mut self, event: &Event, room: &str, nick: &str, reason: &str) {
        self.rooms.went(event, room, nick, reason);
        if !event.origin.is_here() {
            self.requests.room_emptied(&self.rooms, &room_key(room));
        }
    }

    /// A round of join and leave notices in every room that has one due (the end of the
    /// batch). `Some(at)`: notices are waiting for a round at `at`.
    pub fn say_notices(&mut self, now: Instant, out: &mut impl Outbox) -> Option<Instant> {
        let (cut_off, next) = self.rooms.say_notices(now, out);
        self.let_go(cut_off, out);
        next
    }

    /// Acts on what the bus reports (see [`BusNews`]).
    pub fn absorb(&mut self, news: BusNews, out: &mut impl Outbox) {
        match news {
            BusNews::Deliver(event) => self.deliver(&event, out),
            BusNews::Answered { claim, granted } => self.claim_answered(claim, granted, out),
            BusNews::Unanswered(claim) => {
                if claim.purpose == Purpose::Rename {
                    let free = self.nicks.owner_of(&claim.nick).is_none();
                    self.claim_answered(claim, free, out);
                }
            }
            BusNews::Refresh => self.requests.refresh(&self.nicks, &self.rooms),
            BusNews::Introduce => self.requests.introduce(&self.nicks, &self.rooms),
            BusNews::Bans(Some(list)) => self.replace_bans(list, out),
            BusNews::Bans(None) => self.moderation.publish_bans(&mut self.requests),
            BusNews::Instance(InstanceNews::Hello { members }) => {
                for Presence { room, .. } in members {
                    self.rooms.open_known(&room);
                }
                self.requests.rooms_emptied(&self.rooms);
            }
            BusNews::Instance(InstanceNews::Bye) => self.requests.rooms_emptied(&self.rooms),
            BusNews::Tell(line) => {
                let cut_off = self.rooms.tell_everyone(line, out);
                self.let_go(cut_off, out);
                self.requests.rooms_emptied(&self.rooms);
            }
        }
    }

    /// The bus answered a claim (at once, or later as news): a `/nick` is granted or refused;
    /// a nick a client already uses turned out to be held elsewhere, so it gets a fresh guest
    /// nick.
    pub fn claim_answered(&mut self, claim: Claim, granted: bool, out: &mut impl Outbox) {
        let Claim { conn, nick, .. } = claim;
        if claim.purpose == Purpose::Rename {
            out.resume(conn);
        }
        let current = self.nick_of(conn).map(str::to_string);
        match (claim.purpose, current) {
            (Purpose::Rename, Some(_)) if granted => self.rename(conn, &nick, out),
            (Purpose::Rename, Some(_)) => self.tell(conn, &protocol::nick_taken(&nick), out),
            (Purpose::Keep, Some(current)) if !granted && current == nick => {
                let guest = self.moderation.guest_nick(&mut self.nicks);
                let token = conn.token;
                warn!("token {token}: nick {nick} is held by another instance; now {guest}");
                self.tell(conn, &protocol::nick_taken_elsewhere(&nick, &guest), out);
                self.rename(conn, &guest, out);
                self.requests.claim(conn, guest, Purpose::Keep);
            }
            // The client left (or changed nick) while the bus was answering: a nick granted
            // to nobody goes back at once.
            (Purpose::Rename, None) if granted => self.requests.release(nick),
            _ => {}
        }
    }

    /// Replaces every ban (the bans file reloaded, the backplane's hash) and sends away the banned.
    pub fn replace_bans(&mut self, list: BanList, out: &mut impl Outbox) {
        let cut_off = self.moderation.replace_bans(list, &self.nicks, out);
        self.let_go(cut_off, out);
    }

    /// Tells every client the server is going away, and lets each go (its last lines are
    /// flushed, then it closes).
    pub fn shutdown(&mut self, out: &mut impl Outbox) {
        let everyone: Vec<ConnRef> = self.nicks.every().map(|(who, ..)| who).collect();
        for who in everyone {
            self.tell(who, protocol::SHUTTING_DOWN, out);
            self.depart(who, CloseReason::Shutdown, out);
        }
        self.requests.bye();
    }

    /// Asks the bus for a nick for `/nick`: the client is renamed when it is granted (the
    /// server holds the client's next lines if the answer is not there at once).
    pub fn claim_rename(&mut self, who: ConnRef, nick: &str) {
        self.requests.claim(who, nick.to_string(), Purpose::Rename);
    }

    /// The answer to `Request::RoomEmptied`: a room goes (with its history) once nobody is in
    /// it on any instance; `#lobby` stays.
    pub fn forget_room(&mut self, key: &str, bus: &dyn Elsewhere) {
        self.rooms.forget(key, bus);
    }
}
