//! The chat: who is here under which nick, in which room, and what every event means for
//! them.
//!
//! The chat never sees a socket. Its clients are [`ConnRef`]s, and it reaches them only
//! through an [`Outbox`] (see `room.rs`). It owns what is true across rooms: nicks are unique
//! in the whole chat (`/msg` reaches a nick in any room), every client is in exactly one
//! room, and rooms come and go with their members (`#lobby` always stays). A [`Room`] owns
//! what is true in one: its members' order, its notices, its history.
//!
//! Everything clients say to each other is an [`Event`]. [`Chat::say`] makes one and hands it
//! to the bus, and [`Chat::deliver`] is the one place where an event becomes output: at once
//! for a lone server, when it comes back from Redis for a shared chat (see `bus.rs`). An
//! event names its room, and delivering it walks that room's members only: a line said in a
//! room of ten costs ten queued pointers however many are connected. What each command does
//! is in `cmd/`; every text the chat sends is built in `protocol.rs`.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use log::{debug, info, warn};

use crate::bus::{Bus, BusNews, Claim, Claimed, Event, Presence, Purpose, What};
use crate::connection::{CloseReason, ConnRef};
use crate::limits::LOBBY;
use crate::protocol::{self, nick_key, room_key};
use crate::room::{CutOff, Outbox, Room};

/// How rooms are bounded (`--max-rooms`, `--history`) and whether joins are announced.
#[derive(Debug, Clone, Copy)]
pub struct RoomRules {
    pub max_rooms: usize,
    pub history: usize,
    pub quiet_joins: bool,
}

#[derive(Debug)]
struct Client {
    /// Its connection's id: with the slot it is kept in (its token), its [`ConnRef`].
    id: u64,
    /// Shared with its connection, which names it in the logs.
    nick: Rc<str>,
    /// Its room's key (`protocol::room_key`), shared with the room.
    room: Rc<str>,
}

/// Why a `/join` did not move its client.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    AlreadyThere(String),
    TooManyRooms { max: usize },
}

#[derive(Debug)]
pub struct Chat {
    /// Every client in the chat, at its token: tokens are slab keys, so they are dense, and
    /// a vector of slots costs less per client than a map (and walks in token order).
    clients: Vec<Option<Client>>,
    /// How many of those slots hold a client.
    count: usize,
    /// Lower-cased nick → its client's token: unique in the whole chat. A nick already in
    /// lower case (every guest's) is its own key, and the key is the client's own
    /// [`Client::nick`], shared: no second copy per client.
    nicks: HashMap<Rc<str>, usize>,
    /// Lower-cased name → the room. Ordered, so `/list` goes room by room in one order.
    rooms: BTreeMap<Rc<str>, Room>,
    /// Leave events not yet said (see [`Chat::announce_departures`] for why they wait).
    departures: Vec<Event>,
    next_guest: u64,
    rules: RoomRules,
}

/// The key `nick` is unique under ([`nick_key`]), sharing `nick` itself when it already is
/// its own key.
fn key_of(nick: &Rc<str>) -> Rc<str> {
    if nick.bytes().any(|b| b.is_ascii_uppercase()) {
        Rc::from(nick_key(nick))
    } else {
        Rc::clone(nick)
    }
}

impl Chat {
    pub fn new(rules: RoomRules) -> Chat {
        let mut chat = Chat {
            clients: Vec::new(),
            count: 0,
            nicks: HashMap::new(),
            rooms: BTreeMap::new(),
            departures: Vec::new(),
            next_guest: 1,
            rules,
        };
        chat.open_room(LOBBY);
        chat
    }

    /// Clients in the chat.
    pub fn members(&self) -> usize {
        self.count
    }

    /// Rooms this instance keeps (`#lobby` included).
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// The client's nick, if `who` is in the chat.
    pub fn nick_of(&self, who: ConnRef) -> Option<&str> {
        self.client(who).map(|c| &*c.nick)
    }

    /// The same, shared (the events a client makes carry it).
    pub fn shared_nick_of(&self, who: ConnRef) -> Option<&Rc<str>> {
        self.client(who).map(|c| &c.nick)
    }

    /// Who goes by `nick` here (ignoring case).
    pub fn owner_of(&self, nick: &str) -> Option<ConnRef> {
        let token = *self.nicks.get(nick_key(nick).as_str())?;
        let id = self.clients.get(token)?.as_ref()?.id;
        Some(ConnRef { token, id })
    }

    fn client(&self, who: ConnRef) -> Option<&Client> {
        self.clients
            .get(who.token)?
            .as_ref()
            .filter(|c| c.id == who.id)
    }

    fn client_mut(&mut self, who: ConnRef) -> Option<&mut Client> {
        self.clients
            .get_mut(who.token)?
            .as_mut()
            .filter(|c| c.id == who.id)
    }

    fn every_client(&self) -> impl Iterator<Item = (ConnRef, &Client)> {
        self.clients.iter().enumerate().filter_map(|(token, slot)| {
            let client = slot.as_ref()?;
            Some((
                ConnRef {
                    token,
                    id: client.id,
                },
                client,
            ))
        })
    }

    fn insert_client(&mut self, token: usize, client: Client) {
        if token >= self.clients.len() {
            self.clients.resize_with(token + 1, || None);
        }
        if let Some(slot) = self.clients.get_mut(token) {
            self.count += usize::from(slot.is_none());
            *slot = Some(client);
        }
    }

    fn remove_client(&mut self, who: ConnRef) -> Option<Client> {
        let slot = self.clients.get_mut(who.token)?;
        if slot.as_ref().is_some_and(|c| c.id == who.id) {
            self.count -= 1;
            slot.take()
        } else {
            None
        }
    }

    /// The room `who` is in.
    pub fn room_of(&self, who: ConnRef) -> Option<&Room> {
        self.rooms.get(&self.client(who)?.room)
    }

    /// The nicks of this instance's members of `room`.
    pub fn nicks_in<'a>(&'a self, room: &'a Room) -> impl Iterator<Item = &'a str> {
        room.members().filter_map(|who| self.nick_of(who))
    }

    /// Every room this instance keeps, with its members here.
    pub fn room_list(&self) -> impl Iterator<Item = (&str, usize)> {
        self.rooms.values().map(|room| (room.name(), room.len()))
    }

    /// A new client joins `#lobby` under a guest nick, gets the welcome line and the lobby's
    /// history, and the lobby hears about it.
    pub fn enter(&mut self, who: ConnRef, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let nick = self.free_guest_nick(bus);
        let lobby = room_key(LOBBY);
        let shared: Rc<str> = Rc::from(nick.as_str());
        self.nicks.insert(key_of(&shared), who.token);
        let room = self.room_mut(&lobby);
        room.add(who);
        let client = Client {
            id: who.id,
            nick: shared,
            room: Rc::clone(room.key()),
        };
        out.name(who, &client.nick);
        self.insert_client(who.token, client);
        self.tell(who, &protocol::welcome(&nick), bus, out);
        if let Some(greeting) = bus.greeting() {
            self.tell(who, greeting, bus, out);
        }
        self.replay(who, &lobby, bus, out);
        // A guest nick is used whatever the answer: one taken elsewhere is replaced later.
        let claim = Claim {
            conn: who,
            nick: nick.clone(),
            purpose: Purpose::Keep,
        };
        let _ = bus.claim(claim);
        let room = LOBBY.to_string();
        self.say(who, What::Joined { room, nick }, bus, out);
    }

    /// `/join`: `who` moves to `name`, which is made if it does not exist. The old room
    /// hears where it went, the new one that it came; it is told it moved, then given the new
    /// room's history, then what is said there from now on.
    pub fn join(
        &mut self,
        who: ConnRef,
        name: &str,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) -> Result<(), Refused> {
        let Some(client) = self.client(who) else {
            return Ok(());
        };
        let (key, from_key) = (room_key(name), Rc::clone(&client.room));
        if *key == *from_key {
            return Err(Refused::AlreadyThere(
                self.room_mut(&key).name().to_string(),
            ));
        }
        if !self.rooms.contains_key(key.as_ref()) {
            if self.rooms.len() >= self.rules.max_rooms {
                let max = self.rules.max_rooms;
                return Err(Refused::TooManyRooms { max });
            }
            self.open_room(name);
        }
        let from = self.room_mut(&from_key);
        from.remove(who);
        let from = from.name().to_string();
        let to = self.room_mut(&key);
        to.add(who);
        let (to, members, to_key) = (to.name().to_string(), to.len(), Rc::clone(to.key()));
        if let Some(client) = self.client_mut(who) {
            client.room = to_key;
        }
        self.tell(who, &protocol::now_in(&to, members), bus, out);
        self.replay(who, &key, bus, out);
        let nick = self.nick_of(who).unwrap_or_default().to_string();
        self.say(who, What::Moved { nick, from, to }, bus, out);
        self.forget_if_empty(&from_key, bus);
        Ok(())
    }

    /// Something `from` did that others must hear of: an event on the bus, delivered here
    /// now if the bus hands it back.
    pub fn say(&mut self, from: ConnRef, what: What, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let event = Event::here(from.id, what);
        if let Some(event) = bus.publish(event) {
            self.deliver(&event, bus, out);
        }
    }

    /// A server line for one client. One that this line puts over the hard output limit is
    /// let go.
    pub fn tell(&mut self, who: ConnRef, text: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        if let Err(reason) = out.tell(who, text) {
            self.depart(who, reason, bus, out);
        }
    }

    /// A server line for every client, in every room.
    pub fn tell_everyone(&mut self, line: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let mut cut_off = Vec::new();
        for room in self.rooms.values() {
            cut_off.extend(room.tell_everyone(line, out));
        }
        self.let_go(cut_off, bus, out);
    }

    /// `room`'s history for `who`, who just came in.
    fn replay(&mut self, who: ConnRef, room: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let replayed = self.rooms.get(room).map_or(Ok(()), |r| r.replay(who, out));
        if let Err(reason) = replayed {
            self.depart(who, reason, bus, out);
        }
    }

    /// `who` is `new` from now on: the registry changes, the old nick is released, and its
    /// room (`who` too: that is its confirmation) hears of it.
    pub fn rename(&mut self, who: ConnRef, new: &str, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let Some(client) = self.client_mut(who) else {
            return;
        };
        let old = std::mem::replace(&mut client.nick, Rc::from(new)).to_string();
        let room = Rc::clone(&client.room);
        let nick = Rc::clone(&client.nick);
        let (old_key, new_key) = (nick_key(&old), nick_key(new));
        self.nicks.remove(old_key.as_str());
        self.nicks.insert(key_of(&nick), who.token);
        info!("token {}: {old} is now {new}", who.token);
        if old_key != new_key {
            bus.release(&old);
        }
        out.name(who, &nick);
        let (new, room) = (new.to_string(), self.room_mut(&room).name().to_string());
        self.say(who, What::Renamed { room, old, new }, bus, out);
    }

    /// The client leaves the chat: its nick is free, its room will hear why, and its
    /// connection closes once its last lines are out. False if it was not in the chat.
    pub fn depart(
        &mut self,
        who: ConnRef,
        reason: CloseReason,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) -> bool {
        if self.client(who).is_none() {
            return false;
        }
        let Some(Client { nick, room, .. }) = self.remove_client(who) else {
            return false;
        };
        let nick = nick.to_string();
        self.nicks.remove(nick_key(&nick).as_str());
        bus.release(&nick);
        let left = self.room_mut(&room);
        left.remove(who);
        let room_name = left.name().to_string();
        self.forget_if_empty(&room, bus);
        // On a shutdown everyone here is leaving and needs no notice; other instances'
        // clients do.
        if reason != CloseReason::Shutdown || bus.is_shared() {
            let what = What::Left {
                room: room_name,
                nick,
                reason: reason.to_string(),
            };
            self.departures.push(Event::here(who.id, what));
        }
        out.hang_up(who, reason);
        true
    }

    /// Sends away the members a room's walk found over the hard output limit.
    fn let_go(&mut self, cut_off: CutOff, bus: &mut dyn Bus, out: &mut impl Outbox) {
        for (who, reason) in cut_off {
            self.depart(who, reason, bus, out);
        }
    }

    /// Says the leave events collected during the batch.
    ///
    /// They wait until here because a client can be sent away in the middle of a room's
    /// walk over its members (its queue overflowed), and announcing it there would start a
    /// walk inside a walk. A notice can itself overflow another queue and cause another
    /// departure, so this loops until there are none left.
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
        let mine = event.origin.is_here();
        match &event.what {
            What::Say { room, nick, text } => {
                self.chat_line(event, room, &protocol::chat_line(nick, text), bus, out);
            }
            What::Me { room, nick, action } => {
                self.chat_line(event, room, &protocol::action_line(nick, action), bus, out);
            }
            What::Joined { room, nick } => self.arrived(event, room, nick),
            What::Left { room, nick, reason } => self.went(event, room, nick, reason, bus),
            What::Moved { nick, from, to } => {
                self.went(event, from, nick, &protocol::went_to(to), bus);
                self.arrived(event, to, nick);
            }
            // Its room sees it, the renamed client included: that is its confirmation.
            What::Renamed { room, old, new } => {
                let Some(room) = self.rooms.get_mut(room_key(room).as_ref()) else {
                    return;
                };
                let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
                cut_off.extend(room.tell_everyone(&protocol::renamed(old, new), out));
                self.let_go(cut_off, bus, out);
            }
            What::Msg { from, to, text } => {
                if let Some(to) = self.owner_of(to) {
                    self.tell(to, &protocol::private_line(from, text), bus, out);
                }
            }
            What::Hello { members } if !mine => {
                for Presence { room, .. } in members {
                    self.open_known_room(room);
                }
                self.forget_empty_rooms(bus);
            }
            What::Hello { .. } => {}
            What::Bye => self.forget_empty_rooms(bus),
        }
    }

    /// A chat line or `/me` said in `room`: to its members but the sender, and into its
    /// history. A room this instance does not keep has nobody here to hear it.
    fn chat_line(
        &mut self,
        event: &Event,
        room: &str,
        line: &Rc<[u8]>,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) {
        let Some(room) = self.rooms.get_mut(room_key(room).as_ref()) else {
            return;
        };
        let except = event.origin.is_here().then_some(event.conn);
        let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
        cut_off.extend(room.say(except, line, out));
        self.let_go(cut_off, bus, out);
    }

    /// A join, or a move in: `room` will hear of it in its next round of notices. Another
    /// instance's client can make this instance keep a room it did not have (and so its
    /// history), as far as `--max-rooms` allows.
    fn arrived(&mut self, event: &Event, room: &str, nick: &str) {
        let mine = event.origin.is_here();
        if !mine {
            self.open_known_room(room);
        }
        // For one of ours, already in the room: those who came in before it hear of it.
        let joiner = self
            .owner_of(nick)
            .filter(|who| mine && who.id == event.conn);
        if self.rules.quiet_joins {
            return;
        }
        if let Some(room) = self.rooms.get_mut(room_key(room).as_ref()) {
            room.joined(event.origin, event.conn, nick, joiner);
        }
    }

    /// A leave, or a move out: `room` will hear of it in its next round of notices, and may
    /// be empty everywhere now.
    fn went(&mut self, event: &Event, room: &str, nick: &str, reason: &str, bus: &dyn Bus) {
        let key = room_key(room);
        if let Some(room) = self.rooms.get_mut(key.as_ref())
            && !self.rules.quiet_joins
        {
            room.left(event.origin, event.conn, nick, reason);
        }
        if !event.origin.is_here() {
            self.forget_if_empty(&key, bus);
        }
    }

    /// A round of join and leave notices in every room that has one due (the end of the
    /// batch). `Some(at)`: notices are waiting for a round at `at`.
    pub fn say_notices(
        &mut self,
        now: Instant,
        bus: &mut dyn Bus,
        out: &mut impl Outbox,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut cut_off = Vec::new();
        for room in self.rooms.values_mut() {
            match room.say_notices(now, out) {
                Ok(refused) => cut_off.extend(refused),
                Err(at) => next = Some(next.map_or(at, |n| n.min(at))),
            }
        }
        self.let_go(cut_off, bus, out);
        next
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
                    .every_client()
                    .map(|(conn, c)| Claim {
                        conn,
                        nick: c.nick.to_string(),
                        purpose: Purpose::Keep,
                    })
                    .collect();
                for claim in claims {
                    let _ = bus.claim(claim);
                }
                self.introduce(bus, out);
                bus.refreshed();
                // The bus has just forgotten the instances it no longer hears from.
                self.forget_empty_rooms(bus);
            }
            BusNews::Introduce => self.introduce(bus, out),
            BusNews::Tell(line) => {
                self.tell_everyone(line, bus, out);
                self.forget_empty_rooms(bus);
            }
        }
    }

    /// Says `Hello` with every client's nick and room, so other instances know who is where.
    fn introduce(&mut self, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let members = self
            .every_client()
            .map(|(_, c)| Presence {
                nick: c.nick.to_string(),
                room: self
                    .rooms
                    .get(&c.room)
                    .map_or(LOBBY, Room::name)
                    .to_string(),
            })
            .collect();
        let hello = Event::here(0, What::Hello { members });
        if let Some(hello) = bus.publish(hello) {
            self.deliver(&hello, bus, out);
        }
    }

    /// The bus answered a claim: a `/nick` is granted or refused; a nick a client already
    /// uses turned out to be held elsewhere, so it gets a fresh guest nick.
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

    /// Tells every client the server is going away, and lets each go (its last lines are
    /// flushed, then it closes).
    pub fn shutdown(&mut self, bus: &mut dyn Bus, out: &mut impl Outbox) {
        let everyone: Vec<ConnRef> = self.every_client().map(|(who, _)| who).collect();
        for who in everyone {
            self.tell(who, protocol::SHUTTING_DOWN, bus, out);
            self.depart(who, CloseReason::Shutdown, bus, out);
        }
        // The other instances forget this one at once, after its clients' leave events.
        if bus.is_shared() {
            self.departures.push(Event::here(0, What::Bye));
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

    /// A room, made now. The caller has checked `--max-rooms`.
    fn open_room(&mut self, name: &str) {
        let room = Room::new(name, self.rules.history, Instant::now());
        debug!("room {name} opened");
        self.rooms.insert(Rc::clone(room.key()), room);
    }

    /// A room another instance has members in: kept here too (and so its history), if
    /// `--max-rooms` allows. Past the limit this instance keeps no history for it, and a
    /// `/join` here is refused as for any new room.
    fn open_known_room(&mut self, name: &str) {
        if !self.rooms.contains_key(room_key(name).as_ref())
            && self.rooms.len() < self.rules.max_rooms
        {
            self.open_room(name);
        }
    }

    /// The room with this key, which the caller knows exists (a client's room always does).
    fn room_mut(&mut self, key: &str) -> &mut Room {
        let history = self.rules.history;
        // A client's room is never forgotten while the client is in it; should that ever
        // break, the chat goes on with the room made again rather than panicking.
        self.rooms.entry(Rc::from(key)).or_insert_with(|| {
            warn!("room {key} was missing; made again");
            Room::new(key, history, Instant::now())
        })
    }

    /// A room goes (with its history) once nobody is in it on any instance; `#lobby` stays.
    fn forget_if_empty(&mut self, key: &str, bus: &dyn Bus) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if *key != room_key(LOBBY) && room.is_empty() && !bus.is_room_elsewhere(room.name()) {
            debug!("room {} closed: nobody is in it", room.name());
            self.rooms.remove(key);
        }
    }

    /// [`Chat::forget_if_empty`] for every room: after the bus forgot whole instances.
    fn forget_empty_rooms(&mut self, bus: &dyn Bus) {
        let empty: Vec<Rc<str>> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.is_empty())
            .map(|(key, _)| Rc::clone(key))
            .collect();
        for key in empty {
            self.forget_if_empty(&key, bus);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalBus;
    use crate::room::tests::Recorder;

    fn chat() -> Chat {
        Chat::new(RoomRules {
            max_rooms: 3,
            history: 20,
            quiet_joins: false,
        })
    }

    /// Within one batch, before any round: a newcomer who speaks is announced first, on its
    /// own, so nobody sees a line from someone they did not see arrive; and the round at the
    /// end of the batch does not announce it again.
    #[test]
    fn a_newcomer_whose_join_is_waiting_is_announced_before_its_first_line() {
        let (mut chat, mut bus, mut out) = (chat(), LocalBus, Recorder::default());
        let (ann, bo) = (ConnRef { token: 0, id: 1 }, ConnRef { token: 1, id: 2 });
        chat.enter(ann, &mut bus, &mut out);
        chat.enter(bo, &mut bus, &mut out);
        let (room, nick, text) = (LOBBY.into(), "guest-2".into(), "hi".to_string());
        chat.say(bo, What::Say { room, nick, text }, &mut bus, &mut out);
        assert!(
            chat.say_notices(Instant::now(), &mut bus, &mut out)
                .is_none()
        );
        assert_eq!(
            out.to(ann)[1..],
            ["*** guest-2 joined\n", "<guest-2> hi\n"],
            "{:?}",
            out.to(ann)
        );
    }

    #[test]
    fn a_room_goes_when_its_last_member_leaves_and_the_limit_counts_the_lobby() {
        let (mut chat, mut bus, mut out) = (chat(), LocalBus, Recorder::default());
        let ann = ConnRef { token: 0, id: 1 };
        chat.enter(ann, &mut bus, &mut out);
        assert_eq!(chat.join(ann, "#a", &mut bus, &mut out), Ok(()));
        assert_eq!(chat.join(ann, "#b", &mut bus, &mut out), Ok(()));
        assert_eq!(chat.rooms(), 2, "#a went when ann left it");
        assert_eq!(chat.join(ann, "#c", &mut bus, &mut out), Ok(()));
        chat.enter(ConnRef { token: 1, id: 2 }, &mut bus, &mut out);
        let bo = ConnRef { token: 1, id: 2 };
        assert_eq!(chat.join(bo, "#d", &mut bus, &mut out), Ok(()));
        assert_eq!(chat.rooms(), 3, "#lobby, #c, #d");
        assert_eq!(
            chat.join(ann, "#e", &mut bus, &mut out),
            Err(Refused::TooManyRooms { max: 3 })
        );
        assert_eq!(
            chat.join(ann, "#C", &mut bus, &mut out),
            Err(Refused::AlreadyThere("#c".into()))
        );
    }
}
