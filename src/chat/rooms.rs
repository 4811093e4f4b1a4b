//! The rooms this instance keeps, and what an event means for the room it names. Rooms come
//! and go with their members (`#lobby` always stays, and a room with members on another
//! instance stays too); `--max-rooms` bounds how many. One room's own business (its members,
//! notices and history) is [`Room`]'s, in `room.rs`; the chat (`chat.rs`) sends away the
//! members a walk cut off.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, warn};

use super::{Nicks, Refused, RoomRules};
use crate::bus::{Elsewhere, Event, Presence};
use crate::connection::ConnRef;
use crate::limits::LOBBY;
use crate::protocol::room_key;
use crate::room::{CutOff, Outbox, Room};
use crate::state::{Forgetful, Keeper, Saved};

/// Every room this instance keeps, by key.
#[derive(Debug)]
pub struct Rooms {
    /// Lower-cased name → the room. Ordered, so `/list` goes room by room in one order.
    by_key: BTreeMap<Rc<str>, Room>,
    rules: RoomRules,
    /// Where history goes to outlive the process: `--state-dir`'s journal, or nowhere
    /// ([`Forgetful`]). Told of every line kept, topic set and room forgotten (`state/`).
    keeper: Box<dyn Keeper>,
}

impl Rooms {
    pub fn new(rules: RoomRules) -> Rooms {
        let mut rooms = Rooms {
            by_key: BTreeMap::new(),
            rules,
            keeper: Box::new(Forgetful),
        };
        rooms.open(LOBBY);
        rooms
    }

    /// New rules (a reload): rooms made from now on follow them, and every room's history is
    /// cut to the new length now.
    pub fn set_rules(&mut self, rules: RoomRules) {
        self.rules = rules;
        for room in self.by_key.values_mut() {
            room.set_history_len(rules.history);
        }
    }

    /// The rooms `--state-dir`'s file kept (at start-up, while the keeper is still
    /// [`Forgetful`]: the journal is then made from them), or the backplane's stream holds
    /// (the keeper records each room replaced, so a restart finds what the rooms hold), as
    /// far as `--max-rooms` allows.
    pub fn restore(&mut self, saved: Vec<Saved>) {
        for saved in saved {
            let key = room_key(&saved.name).into_owned();
            if !self.by_key.contains_key(key.as_str()) && self.by_key.len() >= self.rules.max_rooms
            {
                warn!(
                    "state: room {} not restored: --max-rooms is reached",
                    saved.name
                );
                continue;
            }
            self.open_known(&saved.name);
            self.room_mut(&key).restore(saved.topic, saved.lines);
            if let Some(room) = self.by_key.get(key.as_str()) {
                self.keeper.replaced(room);
            }
        }
    }

    /// From now on, the lines kept, topics set and rooms forgotten go to `keeper`.
    pub fn keep_with(&mut self, keeper: Box<dyn Keeper>) {
        self.keeper = keeper;
    }

    /// Every room, in key order.
    pub fn all(&self) -> impl Iterator<Item = &Room> {
        self.by_key.values()
    }

    /// The keeper and the rooms it reads when it compacts (the end of the batch, its timer).
    pub fn keeper(&mut self) -> (&mut dyn Keeper, impl Iterator<Item = &Room>) {
        (&mut *self.keeper, self.by_key.values())
    }

    /// The keeper's figures, for `/metrics` (`None` without `--state-dir`).
    pub fn keeper_stats(&self) -> Option<crate::state::Stats> {
        self.keeper.stats()
    }

    /// The server is shutting down: the keeper writes what is pending and stops, so that the
    /// rooms emptying as everyone leaves are not recorded as forgotten.
    pub fn close_keeper(&mut self) {
        std::mem::replace(&mut self.keeper, Box::new(Forgetful)).close();
    }

    /// Rooms this instance keeps (`#lobby` included).
    pub fn count(&self) -> usize {
        self.by_key.len()
    }

    /// The room with this key (`protocol::room_key`).
    pub fn get(&self, key: &str) -> Option<&Room> {
        self.by_key.get(key)
    }

    /// Every room this instance keeps, with its members here.
    pub fn list(&self) -> impl Iterator<Item = (&str, usize)> {
        self.by_key.values().map(|room| (room.name(), room.len()))
    }

    /// `/join`: `who` leaves the room with key `from` for `name`, made now if `--max-rooms`
    /// allows. Returns both rooms' names and how many are in the new one.
    pub fn switch(
        &mut self,
        who: ConnRef,
        from: &str,
        name: &str,
    ) -> Result<(String, String, usize), Refused> {
        let key = room_key(name);
        if *key == *from {
            return Err(Refused::AlreadyThere(
                self.room_mut(&key).name().to_string(),
            ));
        }
        if !self.by_key.contains_key(key.as_ref()) {
            if self.by_key.len() >= self.rules.max_rooms {
                let max = self.rules.max_rooms;
                return Err(Refused::TooManyRooms { max });
            }
            self.open(name);
        }
        let from = self.leave(who, from);
        let to = self.room_mut(&key);
        to.add(who);
        Ok((from, to.name().to_string(), to.len()))
    }

    /// `who` is out of the room with key `key`. Returns the room's name.
    pub fn leave(&mut self, who: ConnRef, key: &str) -> String {
        let room = self.room_mut(key);
        room.remove(who);
        room.name().to_string()
    }

    /// The shared key of the room with key `key` (a client's record of where it is).
    pub fn key_of(&mut self, key: &str) -> Rc<str> {
        Rc::clone(self.room_mut(key).key())
    }

    /// Every client's nick and room as `Hello` introduces them (`clients`: who, nick, room key).
    pub fn presences<'a>(
        &self,
        clients: impl Iterator<Item = (ConnRef, &'a Rc<str>, &'a Rc<str>)>,
    ) -> Vec<Presence> {
        let presence = |(_, nick, room): (ConnRef, &Rc<str>, &Rc<str>)| Presence {
            nick: nick.to_string(),
            room: self.get(room).map_or(LOBBY, Room::name).to_string(),
        };
        clients.map(presence).collect()
    }

    /// A room, made now. The caller has checked `--max-rooms`.
    fn open(&mut self, name: &str) {
        let room = Room::new(name, self.rules.history, Instant::now());
        debug!("room {name} opened");
        self.by_key.insert(Rc::clone(room.key()), room);
    }

    /// A room another instance has members in: kept here too (and so its history), if
    /// `--max-rooms` allows. Past the limit this instance keeps no history for it, and a
    /// `/join` here is refused as for any new room.
    pub fn open_known(&mut self, name: &str) {
        if !self.by_key.contains_key(room_key(name).as_ref())
            && self.by_key.len() < self.rules.max_rooms
        {
            self.open(name);
        }
    }

    /// The room with this key, which the caller knows exists (a client's room always does).
    pub fn room_mut(&mut self, key: &str) -> &mut Room {
        let history = self.rules.history;
        // A client's room is never forgotten while the client is in it; should that ever
        // break, the chat goes on with the room made again rather than panicking.
        self.by_key.entry(Rc::from(key)).or_insert_with(|| {
            warn!("room {key} was missing; made again");
            Room::new(key, history, Instant::now())
        })
    }

    /// A server line for every client, in every room.
    pub fn tell_everyone(&self, line: &str, out: &mut impl Outbox) -> CutOff {
        let rooms = self.by_key.values();
        rooms
            .flat_map(|room| room.tell_everyone(line, out))
            .collect()
    }

    /// A round of join and leave notices in every room that has one due (the end of the
    /// batch). `Some(at)`: notices are waiting for a round at `at`.
    pub fn say_notices(
        &mut self,
        now: Instant,
        out: &mut impl Outbox,
    ) -> (CutOff, Option<Instant>) {
        let mut next: Option<Instant> = None;
        let mut cut_off = Vec::new();
        for room in self.by_key.values_mut() {
            match room.say_notices(now, out) {
                Ok(refused) => cut_off.extend(refused),
                Err(at) => next = Some(next.map_or(at, |n| n.min(at))),
            }
        }
        (cut_off, next)
    }

    /// A chat line or `/me` said in `room`: to its members but the sender, and into its
    /// history. A room this instance does not keep has nobody here to hear it.
    pub fn chat_line(
        &mut self,
        event: &Event,
        room: &str,
        line: &Rc<[u8]>,
        out: &mut impl Outbox,
    ) -> CutOff {
        let Some(room) = self.by_key.get_mut(room_key(room).as_ref()) else {
            return Vec::new();
        };
        let except = event.origin.is_here().then_some(event.conn);
        let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
        cut_off.extend(room.say(except, line, out));
        if room.keeps_history() {
            self.keeper.said(room.name(), line);
        }
        cut_off
    }

    /// A rename: its room sees it, the renamed client included (that is its confirmation).
    pub fn renamed(
        &mut self,
        event: &Event,
        room: &str,
        line: &str,
        out: &mut impl Outbox,
    ) -> CutOff {
        let Some(room) = self.by_key.get_mut(room_key(room).as_ref()) else {
            return Vec::new();
        };
        let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
        cut_off.extend(room.tell_everyone(line, out));
        cut_off
    }

    /// A topic set in `room` (`line` says so): kept with the room, and told to it.
    pub fn topic(
        &mut self,
        event: &Event,
        room: &str,
        topic: &str,
        line: &str,
        out: &mut impl Outbox,
    ) -> CutOff {
        let Some(room) = self.by_key.get_mut(room_key(room).as_ref()) else {
            return Vec::new();
        };
        room.set_topic(topic);
        self.keeper.topic(room.name(), topic);
        let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
        cut_off.extend(room.tell_everyone(line, out));
        cut_off
    }

    /// A join, or a move in: `room` will hear of it in its next round of notices. Another
    /// instance's client can make this instance keep a room it did not have (and so its
    /// history), as far as `--max-rooms` allows.
    pub fn arrived(&mut self, event: &Event, room: &str, nick: &str, nicks: &Nicks) {
        let mine = event.origin.is_here();
        if !mine {
            self.open_known(room);
        }
        // For one of ours, already in the room: those who came in before it hear of it.
        let joiner = nicks
            .owner_of(nick)
            .filter(|who| mine && who.id == event.conn);
        if let Some(room) = self.by_key.get_mut(room_key(room).as_ref())
            && !self.rules.quiet_joins
        {
            room.joined(event.origin, event.conn, nick, joiner);
        }
    }

    /// A leave, or a move out: `room` will hear of it in its next round of notices.
    pub fn went(&mut self, event: &Event, room: &str, nick: &str, reason: &str) {
        if let Some(room) = self.by_key.get_mut(room_key(room).as_ref())
            && !self.rules.quiet_joins
        {
            room.left(event.origin, event.conn, nick, reason);
        }
    }

    /// The key of the room with key `key` if it has nobody here now and is not `#lobby`: a
    /// room that may go, if nobody elsewhere is in it either.
    pub fn emptied(&self, key: &str) -> Option<Rc<str>> {
        let room = self.by_key.get(key)?;
        let lobby = **room.key() == *room_key(LOBBY);
        (room.is_empty() && !lobby).then(|| Rc::clone(room.key()))
    }

    /// Every room's key.
    pub fn keys(&self) -> Vec<Rc<str>> {
        self.by_key.keys().map(Rc::clone).collect()
    }

    /// A room goes (with its history) once nobody is in it on any instance; `#lobby` stays.
    pub fn forget(&mut self, key: &str, elsewhere: &dyn Elsewhere) {
        let Some(room) = self.by_key.get(key) else {
            return;
        };
        if self.emptied(key).is_some() && !elsewhere.is_room_elsewhere(room.name()) {
            debug!("room {} closed: nobody is in it", room.name());
            self.keeper.forgot(room.name());
            self.by_key.remove(key);
        }
    }
}
