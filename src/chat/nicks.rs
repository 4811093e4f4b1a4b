//! The nick registry: which client goes by which nick, and which room it is in. Nicks are
//! unique in the whole chat, ignoring case (`/msg` reaches a nick in any room); the chat
//! (`chat.rs`) keeps this registry and its rooms (`rooms.rs`) in step.

use std::collections::HashMap;
use std::rc::Rc;

use log::info;

use crate::bus::Elsewhere;
use crate::connection::ConnRef;
use crate::protocol::nick_key;

#[derive(Debug)]
struct Client {
    /// Its connection's id: with the slot it is kept in (its token), its [`ConnRef`].
    id: u64,
    /// Shared with its connection, which names it in the logs.
    nick: Rc<str>,
    /// Its room's key (`protocol::room_key`), shared with the room.
    room: Rc<str>,
}

/// Every client in the chat: its nick and its room.
#[derive(Debug)]
pub struct Nicks {
    /// Every client in the chat, at its token: tokens are slab keys, so they are dense, and
    /// a vector of slots costs less per client than a map (and walks in token order).
    clients: Vec<Option<Client>>,
    /// How many of those slots hold a client.
    count: usize,
    /// Lower-cased nick → its client's token: unique in the whole chat. A nick already in
    /// lower case (every guest's) is its own key, and the key is the client's own
    /// [`Client::nick`], shared: no second copy per client.
    by_key: HashMap<Rc<str>, usize>,
    /// Guest nicks are this and a number (`Elsewhere::guest_prefix`).
    guest_prefix: String,
    next_guest: u64,
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

impl Nicks {
    pub fn new(guest_prefix: String) -> Nicks {
        Nicks {
            clients: Vec::new(),
            count: 0,
            by_key: HashMap::new(),
            guest_prefix,
            next_guest: 1,
        }
    }

    /// Clients in the chat.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The client's nick, shared (the events a client makes carry it), if `who` is in the
    /// chat.
    pub fn nick_of(&self, who: ConnRef) -> Option<&Rc<str>> {
        self.client(who).map(|c| &c.nick)
    }

    /// The key of the room `who` is in.
    pub fn room_of(&self, who: ConnRef) -> Option<&Rc<str>> {
        self.client(who).map(|c| &c.room)
    }

    /// Who goes by `nick` here (ignoring case).
    pub fn owner_of(&self, nick: &str) -> Option<ConnRef> {
        let token = *self.by_key.get(nick_key(nick).as_str())?;
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

    /// Every client, in token order: who, its nick, its room's key.
    pub fn every(&self) -> impl Iterator<Item = (ConnRef, &Rc<str>, &Rc<str>)> {
        self.clients.iter().enumerate().filter_map(|(token, slot)| {
            let c = slot.as_ref()?;
            Some((ConnRef { token, id: c.id }, &c.nick, &c.room))
        })
    }

    /// `who` is in the chat from now on, as `nick`, in the room with key `room`. Returns the
    /// nick, shared.
    pub fn add(&mut self, who: ConnRef, nick: &str, room: Rc<str>) -> &Rc<str> {
        let nick: Rc<str> = Rc::from(nick);
        self.by_key.insert(key_of(&nick), who.token);
        if who.token >= self.clients.len() {
            self.clients.resize_with(who.token + 1, || None);
        }
        let id = who.id;
        let slot = &mut self.clients[who.token];
        self.count += usize::from(slot.is_none());
        &slot.insert(Client { id, nick, room }).nick
    }

    /// `who` is out of the chat, and its nick free: its nick and its room's key, if it was in.
    pub fn remove(&mut self, who: ConnRef) -> Option<(Rc<str>, Rc<str>)> {
        let slot = self.clients.get_mut(who.token)?;
        let Client { nick, room, .. } = slot.take_if(|c| c.id == who.id)?;
        self.count -= 1;
        self.by_key.remove(nick_key(&nick).as_str());
        Some((nick, room))
    }

    /// `who` is in the room with key `room` now.
    pub fn moved(&mut self, who: ConnRef, room: Rc<str>) {
        if let Some(client) = self.client_mut(who) {
            client.room = room;
        }
    }

    /// `who` goes by `new` from now on. Returns its old nick, its new one (shared) and its
    /// room's key.
    pub fn rename(&mut self, who: ConnRef, new: &str) -> Option<(Rc<str>, Rc<str>, Rc<str>)> {
        let client = self.client_mut(who)?;
        let old = std::mem::replace(&mut client.nick, Rc::from(new));
        let (nick, room) = (Rc::clone(&client.nick), Rc::clone(&client.room));
        self.by_key.remove(nick_key(&old).as_str());
        self.by_key.insert(key_of(&nick), who.token);
        info!("token {}: {old} is now {new}", who.token);
        Some((old, nick, room))
    }

    /// Whether `nick` may be claimed by `who`: nobody else here has it, and no claim for it is
    /// waiting (a change of case only is the same nick).
    pub fn is_free_for(&self, who: ConnRef, nick: &str, bus: &dyn Elsewhere) -> bool {
        !bus.is_claiming(nick) && self.owner_of(nick).is_none_or(|owner| owner == who)
    }

    /// The next guest nick nobody here has. (Taken elsewhere is the bus's to find out.)
    pub fn free_guest_nick(&mut self) -> String {
        loop {
            let nick = format!("{}{}", self.guest_prefix, self.next_guest);
            self.next_guest += 1;
            if self.owner_of(&nick).is_none() {
                return nick;
            }
        }
    }
}
