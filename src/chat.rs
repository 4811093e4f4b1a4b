//! The chat: who is here under which nick, in which room, and what every event means for
//! them.
//!
//! The chat never sees a socket. Its clients are [`ConnRef`]s, and it reaches them only
//! through an [`Outbox`] (see `room.rs`). It owns what is true across rooms: nicks are unique
//! in the whole chat (`/msg` reaches a nick in any room), every client is in exactly one
//! room, and rooms come and go with their members (`#lobby` always stays). A [`Room`] owns
//! what is true in one: its members' order, its notices, its history.
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use log::{debug, info, warn};

use crate::bus::{BusNews, Claim, Elsewhere, Event, Presence, Purpose, Request, What};
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
    /// What the chat asks of the bus, oldest first, for the server to pass on (see `bus.rs`).
    requests: VecDeque<Request>,
    /// Other instances hear this one (a shutdown still says its leaves).
    shared: bool,
    /// Guest nicks are this and a number (`Elsewhere::guest_prefix`).
    guest_prefix: String,
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
    pub fn new(rules: RoomRules, bus: &dyn Elsewhere) -> Chat {
        let mut chat = Chat {
            clients: Vec::new(),
            count: 0,
            nicks: HashMap::new(),
            rooms: BTreeMap::new(),
            departures: Vec::new(),
            requests: VecDeque::new(),
            shared: bus.is_shared(),
            guest_prefix: bus.guest_prefix(),
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

    /// A new client joins `#lobby` under a guest nick, gets the welcome line (and the bus's
    /// greeting, if it has one) and the lobby's history, and the lobby hears about it.
    pub fn enter(&mut self, who: ConnRef, bus: &dyn Elsewhere, out: &mut impl Outbox) {
        let nick = self.free_guest_nick();
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
        self.tell(who, &protocol::welcome(&nick), out);
        if let Some(greeting) = bus.greeting() {
            self.tell(who, greeting, out);
        }
        self.replay(who, &lobby, out);
        // A guest nick is used whatever the answer: one taken elsewhere is replaced later.
        self.claim(who, nick.clone(), Purpose::Keep);
        let room = LOBBY.to_string();
        self.say(who, What::Joined { room, nick });
    }

    /// `/join`: `who` moves to `name`, which is made if it does not exist. The old room
    /// hears where it went, the new one that it came; it is told it moved, then given the new
    /// room's history, then what is said there from now on.
    pub fn join(&mut self, who: ConnRef, name: &str, out: &mut impl Outbox) -> Result<(), Refused> {
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
        self.tell(who, &protocol::now_in(&to, members), out);
        self.replay(who, &key, out);
        let nick = self.nick_of(who).unwrap_or_default().to_string();
        self.say(who, What::Moved { nick, from, to });
        self.emptied(&from_key);
        Ok(())
    }

    /// Something `from` did that others must hear of: an event for the bus, delivered here
    /// when the bus hands it back (see `bus.rs`).
    pub fn say(&mut self, from: ConnRef, what: What) {
        let event = Event::here(from.id, what);
        self.requests.push_back(Request::Publish(event));
    }

    /// The next thing the chat asks of the bus, for the server to pass on, oldest first.
    pub fn next_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    fn claim(&mut self, conn: ConnRef, nick: String, purpose: Purpose) {
        let claim = Claim {
            conn,
            nick,
            purpose,
        };
        self.requests.push_back(Request::Claim(claim));
    }

    /// A server line for one client. One that this line puts over the hard output limit is
    /// let go.
    pub fn tell(&mut self, who: ConnRef, text: &str, out: &mut impl Outbox) {
        if let Err(reason) = out.tell(who, text) {
            self.depart(who, reason, out);
        }
    }

    /// A server line for every client, in every room.
    pub fn tell_everyone(&mut self, line: &str, out: &mut impl Outbox) {
        let mut cut_off = Vec::new();
        for room in self.rooms.values() {
            cut_off.extend(room.tell_everyone(line, out));
        }
        self.let_go(cut_off, out);
    }

    /// `room`'s history for `who`, who just came in.
    fn replay(&mut self, who: ConnRef, room: &str, out: &mut impl Outbox) {
        let replayed = self.rooms.get(room).map_or(Ok(()), |r| r.replay(who, out));
        if let Err(reason) = replayed {
            self.depart(who, reason, out);
        }
    }

    /// `who` is `new` from now on: the registry changes, the old nick is released, and its
    /// room (`who` too: that is its confirmation) hears of it.
    pub fn rename(&mut self, who: ConnRef, new: &str, out: &mut impl Outbox) {
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
            self.requests.push_back(Request::Release(old.clone()));
        }
        out.name(who, &nick);
        let (new, room) = (new.to_string(), self.room_mut(&room).name().to_string());
        self.say(who, What::Renamed { room, old, new });
    }

    /// The client leaves the chat: its nick is free, its room will hear why, and its
    /// connection closes once its last lines are out. False if it was not in the chat.
    pub fn depart(&mut self, who: ConnRef, reason: CloseReason, out: &mut impl Outbox) -> bool {
        if self.client(who).is_none() {
            return false;
        }
        let Some(Client { nick, room, .. }) = self.remove_client(who) else {
            return false;
        };
        let nick = nick.to_string();
        self.nicks.remove(nick_key(&nick).as_str());
        self.requests.push_back(Request::Release(nick.clone()));
        let left = self.room_mut(&room);
        left.remove(who);
        let room_name = left.name().to_string();
        self.emptied(&room);
        // On a shutdown everyone here is leaving and needs no notice; other instances'
        // clients do.
        if reason != CloseReason::Shutdown || self.shared {
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
    fn let_go(&mut self, cut_off: CutOff, out: &mut impl Outbox) {
        for (who, reason) in cut_off {
            self.depart(who, reason, out);
        }
    }

    /// Hands the bus the leave events collected during the batch; false if there were none.
    ///
    /// They wait until here because a client can be sent away in the middle of a room's
    /// walk over its members (its queue overflowed), and announcing it there would start a
    /// walk inside a walk. A notice can itself overflow another queue and cause another
    /// departure, so the server calls this until it says there are none left.
    pub fn announce_departures(&mut self) -> bool {
        let any = !self.departures.is_empty();
        let events = self.departures.drain(..).map(Request::Publish);
        self.requests.extend(events);
        any
    }

    /// What an event means for this instance's clients: the one place where chat becomes
    /// output, for local events and for events from the bus alike. The client the event came
    /// from (same origin, same connection id) does not get its own line back. Joins and
    /// leaves wait for the end of the batch (see `notices.rs`); a newcomer whose join is
    /// still waiting is announced before anything it says.
    pub fn deliver(&mut self, event: &Event, out: &mut impl Outbox) {
        let mine = event.origin.is_here();
        match &event.what {
            What::Say { room, nick, text } => {
                self.chat_line(event, room, &protocol::chat_line(nick, text), out);
            }
            What::Me { room, nick, action } => {
                self.chat_line(event, room, &protocol::action_line(nick, action), out);
            }
            What::Joined { room, nick } => self.arrived(event, room, nick),
            What::Left { room, nick, reason } => self.went(event, room, nick, reason),
            What::Moved { nick, from, to } => {
                self.went(event, from, nick, &protocol::went_to(to));
                self.arrived(event, to, nick);
            }
            // Its room sees it, the renamed client included: that is its confirmation.
            What::Renamed { room, old, new } => {
                let Some(room) = self.rooms.get_mut(room_key(room).as_ref()) else {
                    return;
                };
                let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
                cut_off.extend(room.tell_everyone(&protocol::renamed(old, new), out));
                self.let_go(cut_off, out);
            }
            What::Msg { from, to, text } => {
                if let Some(to) = self.owner_of(to) {
                    self.tell(to, &protocol::private_line(from, text), out);
                }
            }
            What::Hello { members } if !mine => {
                for Presence { room, .. } in members {
                    self.open_known_room(room);
                }
                self.forget_empty_rooms();
            }
            What::Hello { .. } => {}
            What::Bye => self.forget_empty_rooms(),
        }
    }

    /// A chat line or `/me` said in `room`: to its members but the sender, and into its
    /// history. A room this instance does not keep has nobody here to hear it.
    fn chat_line(&mut self, event: &Event, room: &str, line: &Rc<[u8]>, out: &mut impl Outbox) {
        let Some(room) = self.rooms.get_mut(room_key(room).as_ref()) else {
            return;
        };
        let except = event.origin.is_here().then_some(event.conn);
        let mut cut_off = room.announce_arrival(event.origin, event.conn, out);
        cut_off.extend(room.say(except, line, out));
        self.let_go(cut_off, out);
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
    fn went(&mut self, event: &Event, room: &str, nick: &str, reason: &str) {
        let key = room_key(room);
        if let Some(room) = self.rooms.get_mut(key.as_ref())
            && !self.rules.quiet_joins
        {
            room.left(event.origin, event.conn, nick, reason);
        }
        if !event.origin.is_here() {
            self.emptied(&key);
        }
    }

    /// A round of join and leave notices in every room that has one due (the end of the
    /// batch). `Some(at)`: notices are waiting for a round at `at`.
    pub fn say_notices(&mut self, now: Instant, out: &mut impl Outbox) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut cut_off = Vec::new();
        for room in self.rooms.values_mut() {
            match room.say_notices(now, out) {
                Ok(refused) => cut_off.extend(refused),
                Err(at) => next = Some(next.map_or(at, |n| n.min(at))),
            }
        }
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
                    let free = self.owner_of(&claim.nick).is_none();
                    self.claim_answered(claim, free, out);
                }
            }
            BusNews::Refresh => {
                let claims: Vec<(ConnRef, String)> = self
                    .every_client()
                    .map(|(conn, c)| (conn, c.nick.to_string()))
                    .collect();
                for (conn, nick) in claims {
                    self.claim(conn, nick, Purpose::Keep);
                }
                self.introduce();
                self.requests.push_back(Request::Refreshed);
                // The bus has just forgotten the instances it no longer hears from.
                self.forget_empty_rooms();
            }
            BusNews::Introduce => self.introduce(),
            BusNews::Tell(line) => {
                self.tell_everyone(line, out);
                self.forget_empty_rooms();
            }
        }
    }

    /// Says `Hello` with every client's nick and room, so other instances know who is where.
    fn introduce(&mut self) {
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
        self.requests
            .push_back(Request::Publish(Event::here(0, What::Hello { members })));
    }

    /// The bus answered a claim (at once, or later as news): a `/nick` is granted or refused;
    /// a nick a client already uses turned out to be held elsewhere, so it gets a fresh guest
    /// nick.
    pub fn claim_answered(&mut self, claim: Claim, granted: bool, out: &mut impl Outbox) {
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
            (Purpose::Rename, Some(_)) if granted => self.rename(conn, &nick, out),
            (Purpose::Rename, Some(_)) => self.tell(conn, &protocol::nick_taken(&nick), out),
            (Purpose::Keep, Some(current)) if !granted && current == nick => {
                let guest = self.free_guest_nick();
                warn!(
                    "token {}: nick {nick} is held by another instance; now {guest}",
                    conn.token
                );
                self.tell(conn, &protocol::nick_taken_elsewhere(&nick, &guest), out);
                self.rename(conn, &guest, out);
                self.claim(conn, guest, Purpose::Keep);
            }
            // The client left (or changed nick) while the bus was answering: a nick granted
            // to nobody goes back at once.
            (Purpose::Rename, None) if granted => self.requests.push_back(Request::Release(nick)),
            _ => {}
        }
    }

    /// Tells every client the server is going away, and lets each go (its last lines are
    /// flushed, then it closes).
    pub fn shutdown(&mut self, out: &mut impl Outbox) {
        let everyone: Vec<ConnRef> = self.every_client().map(|(who, _)| who).collect();
        for who in everyone {
            self.tell(who, protocol::SHUTTING_DOWN, out);
            self.depart(who, CloseReason::Shutdown, out);
        }
        // The other instances forget this one at once, after its clients' leave events.
        if self.shared {
            self.departures.push(Event::here(0, What::Bye));
        }
    }

    /// The next guest nick nobody here has. (Taken elsewhere is the bus's to find out.)
    fn free_guest_nick(&mut self) -> String {
        loop {
            let nick = format!("{}{}", self.guest_prefix, self.next_guest);
            self.next_guest += 1;
            if self.owner_of(&nick).is_none() {
                return nick;
            }
        }
    }

    /// Whether `nick` may be claimed by `who`: nobody else here has it, and no claim for it is
    /// waiting (a change of case only is the same nick).
    pub fn is_free_for(&self, who: ConnRef, nick: &str, bus: &dyn Elsewhere) -> bool {
        !bus.is_claiming(nick) && self.owner_of(nick).is_none_or(|owner| owner == who)
    }

    /// Asks the bus for a nick for `/nick`: the client is renamed when it is granted (the
    /// server holds the client's next lines if the answer is not there at once).
    pub fn claim_rename(&mut self, who: ConnRef, nick: &str) {
        self.claim(who, nick.to_string(), Purpose::Rename);
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

    /// A room that may have nobody here now: whether it goes is the bus's to say (it may
    /// have members elsewhere), so the question joins the requests (`Request::RoomEmptied`).
    fn emptied(&mut self, key: &str) {
        if let Some(room) = self.rooms.get(key)
            && room.is_empty()
            && *key != room_key(LOBBY)
        {
            let key = Rc::clone(room.key());
            self.requests.push_back(Request::RoomEmptied(key));
        }
    }

    /// [`Chat::emptied`] for every room: after the bus forgot whole instances.
    fn forget_empty_rooms(&mut self) {
        let empty: Vec<Rc<str>> = self.rooms.keys().map(Rc::clone).collect();
        for key in empty {
            self.emptied(&key);
        }
    }

    /// The answer to `Request::RoomEmptied`: a room goes (with its history) once nobody is in
    /// it on any instance; `#lobby` stays.
    pub fn forget_room(&mut self, key: &str, bus: &dyn Elsewhere) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if *key != room_key(LOBBY) && room.is_empty() && !bus.is_room_elsewhere(room.name()) {
            debug!("room {} closed: nobody is in it", room.name());
            self.rooms.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalBus;
    use crate::room::tests::Recorder;

    fn chat() -> Chat {
        let rules = RoomRules {
            max_rooms: 3,
            history: 20,
            quiet_joins: false,
        };
        Chat::new(rules, &LocalBus)
    }

    /// What the server does after every call into the chat (`Server::forward`), with the
    /// local bus, which hands every event and claim straight back.
    fn forward(chat: &mut Chat, out: &mut Recorder) {
        while let Some(request) = chat.next_request() {
            match request {
                Request::Publish(event) => chat.deliver(&event, out),
                Request::Claim(claim) => chat.claim_answered(claim, true, out),
                Request::RoomEmptied(key) => chat.forget_room(&key, &LocalBus),
                Request::Release(_) | Request::Refreshed => {}
            }
        }
    }

    /// Within one batch, before any round: a newcomer who speaks is announced first, on its
    /// own, so nobody sees a line from someone they did not see arrive; and the round at the
    /// end of the batch does not announce it again.
    #[test]
    fn a_newcomer_whose_join_is_waiting_is_announced_before_its_first_line() {
        let (mut chat, mut out) = (chat(), Recorder::default());
        let (ann, bo) = (ConnRef { token: 0, id: 1 }, ConnRef { token: 1, id: 2 });
        chat.enter(ann, &LocalBus, &mut out);
        forward(&mut chat, &mut out);
        chat.enter(bo, &LocalBus, &mut out);
        forward(&mut chat, &mut out);
        let (room, nick, text) = (LOBBY.into(), "guest-2".into(), "hi".to_string());
        chat.say(bo, What::Say { room, nick, text });
        forward(&mut chat, &mut out);
        assert!(chat.say_notices(Instant::now(), &mut out).is_none());
        assert_eq!(
            out.to(ann)[1..],
            ["*** guest-2 joined\n", "<guest-2> hi\n"],
            "{:?}",
            out.to(ann)
        );
    }

    #[test]
    fn a_room_goes_when_its_last_member_leaves_and_the_limit_counts_the_lobby() {
        let (mut chat, mut out) = (chat(), Recorder::default());
        let ann = ConnRef { token: 0, id: 1 };
        let mut join = |chat: &mut Chat, who, room| {
            let joined = chat.join(who, room, &mut out);
            forward(chat, &mut out);
            joined
        };
        chat.enter(ann, &LocalBus, &mut Recorder::default());
        assert_eq!(join(&mut chat, ann, "#a"), Ok(()));
        assert_eq!(join(&mut chat, ann, "#b"), Ok(()));
        assert_eq!(chat.rooms(), 2, "#a went when ann left it");
        assert_eq!(join(&mut chat, ann, "#c"), Ok(()));
        chat.enter(
            ConnRef { token: 1, id: 2 },
            &LocalBus,
            &mut Recorder::default(),
        );
        let bo = ConnRef { token: 1, id: 2 };
        assert_eq!(join(&mut chat, bo, "#d"), Ok(()));
        assert_eq!(chat.rooms(), 3, "#lobby, #c, #d");
        assert_eq!(
            join(&mut chat, ann, "#e"),
            Err(Refused::TooManyRooms { max: 3 })
        );
        assert_eq!(
            join(&mut chat, ann, "#C"),
            Err(Refused::AlreadyThere("#c".into()))
        );
    }
}
