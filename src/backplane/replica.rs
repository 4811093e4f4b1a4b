//! Who is on the other instances, and in which room, as far as this one has heard: what
//! `/who` and `/list` count besides the local clients, what `/msg` checks before it
//! publishes, and what keeps a room (and its history) alive here while only others are in it.
//!
//! Each instance keeps this copy itself instead of asking Redis at every `/who`, so `/who`
//! stays an immediate, local answer like every other command. It is fed by the events on
//! the channel (join, leave, rename) and corrected by each instance's `HELLO`, which lists
//! all its clients and arrives every nick TTL / 3. An instance not heard from for a whole TTL
//! is dropped with all its clients: it died without a word, and its nicks in Redis have
//! expired by then too. The copy can be briefly behind (an event in flight); the nick keys
//! in Redis, not this copy, decide who owns a nick.
//!
//! While Redis is away the copy is kept as it was, unasked by `/who` and `/msg`, and nobody
//! in it expires (nothing can be heard): the rooms it names keep their history here, and the
//! resume, which delivers every event missed once and in order, brings it up to date.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::event::Message;
use crate::bus::{InstanceNews, Origin, Presence, What};
use crate::protocol::{nick_key, room_key};

#[derive(Debug, Default)]
pub struct Replica {
    /// Instance id → its clients and when it last spoke.
    instances: HashMap<Origin, Instance>,
    /// Lower-cased room name → how many of the other instances' clients are in it: kept with
    /// every change, so "is anyone in `#ops` elsewhere?" costs one lookup, not a walk.
    rooms: HashMap<String, Elsewhere>,
}

#[derive(Debug)]
struct Instance {
    /// Lower-cased nick → the client (nick as shown, room).
    members: HashMap<String, Presence>,
    last_heard: Instant,
}

#[derive(Debug)]
struct Elsewhere {
    /// As the first instance to mention it spelled it.
    name: String,
    members: usize,
}

impl Replica {
    /// Applies a message from another instance. Returns true if that instance was unknown
    /// until now (so this one can introduce itself at once rather than after TTL / 3).
    pub fn apply(&mut self, message: &Message, now: Instant) -> bool {
        let origin = message.origin();
        if let Message::Instance(_, InstanceNews::Bye) = message {
            self.drop_instance(origin);
            return false;
        }
        let known = self.instances.contains_key(&origin);
        let instance = self.instances.entry(origin).or_insert_with(|| Instance {
            members: HashMap::new(),
            last_heard: now,
        });
        instance.last_heard = now;
        let (members, rooms) = (&mut instance.members, &mut self.rooms);
        let what = match message {
            Message::Chat(event) => &event.what,
            Message::Instance(_, InstanceNews::Hello { members: all }) => {
                for nick in members.keys().cloned().collect::<Vec<_>>() {
                    depart(members, rooms, &nick);
                }
                for Presence { nick, room } in all {
                    arrive(members, rooms, nick, room);
                }
                return !known;
            }
            Message::Instance(_, InstanceNews::Bye) => return false,
        };
        match what {
            What::Joined { room, nick } => arrive(members, rooms, nick, room),
            What::Left { nick, .. } => depart(members, rooms, nick),
            What::Moved { nick, to, .. } => {
                depart(members, rooms, nick);
                arrive(members, rooms, nick, to);
            }
            What::Renamed { room, old, new } => {
                depart(members, rooms, old);
                arrive(members, rooms, new, room);
            }
            What::Say { .. } | What::Me { .. } | What::Msg { .. } => {}
            What::Ban { .. } | What::Unban { .. } => {}
            What::Kick { .. } | What::Topic { .. } => {}
        }
        !known
    }

    /// Forgets instances silent for longer than `ttl`, and says which.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> Vec<Origin> {
        let silent: Vec<Origin> = self
            .instances
            .iter()
            .filter(|(_, i)| now.saturating_duration_since(i.last_heard) > ttl)
            .map(|(&origin, _)| origin)
            .collect();
        for &origin in &silent {
            self.drop_instance(origin);
        }
        silent
    }

    /// Every instance counts as heard from now: the backplane is back after an outage, in
    /// which this instance heard nobody, and an instance is dropped for a whole TTL of its own
    /// silence, not of this one's deafness.
    pub fn heard_all(&mut self, now: Instant) {
        for instance in self.instances.values_mut() {
            instance.last_heard = now;
        }
    }

    fn drop_instance(&mut self, origin: Origin) {
        if let Some(mut instance) = self.instances.remove(&origin) {
            for nick in instance.members.keys().cloned().collect::<Vec<_>>() {
                depart(&mut instance.members, &mut self.rooms, &nick);
            }
        }
    }

    /// Forgets whoever had `nick` elsewhere: Redis just granted it to this instance, so any
    /// holder this copy still lists is gone (an instance that died and has not expired yet).
    pub fn forget(&mut self, nick: &str) {
        for instance in self.instances.values_mut() {
            depart(&mut instance.members, &mut self.rooms, nick);
        }
    }

    /// Whether some other instance has a client under this nick (ignoring case).
    pub fn has(&self, nick: &str) -> bool {
        let key = nick_key(nick);
        self.instances
            .values()
            .any(|i| i.members.contains_key(&key))
    }

    /// The other instances' clients in `room` (ignoring case).
    pub fn nicks_in(&self, room: &str) -> impl Iterator<Item = &str> {
        let key = room_key(room);
        self.instances
            .values()
            .flat_map(|i| i.members.values())
            .filter(move |p| room_key(&p.room) == key)
            .map(|p| p.nick.as_str())
    }

    /// Every room with clients elsewhere, and how many.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, usize)> {
        self.rooms.values().map(|r| (r.name.as_str(), r.members))
    }

    /// Whether clients elsewhere are in `room` (ignoring case).
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room_key(room).as_ref())
    }
}

/// `nick` is in `room` on one instance: its members and the room counts change together.
fn arrive(
    members: &mut HashMap<String, Presence>,
    rooms: &mut HashMap<String, Elsewhere>,
    nick: &str,
    room: &str,
) {
    depart(members, rooms, nick);
    let presence = Presence {
        nick: nick.to_string(),
        room: room.to_string(),
    };
    members.insert(nick_key(nick), presence);
    rooms
        .entry(room_key(room).into_owned())
        .or_insert_with(|| Elsewhere {
            name: room.to_string(),
            members: 0,
        })
        .members += 1;
}

/// `nick` is no longer on that instance; a room nobody is in elsewhere is forgotten.
fn depart(
    members: &mut HashMap<String, Presence>,
    rooms: &mut HashMap<String, Elsewhere>,
    nick: &str,
) {
    let Some(gone) = members.remove(&nick_key(nick)) else {
        return;
    };
    let key = room_key(&gone.room);
    if let Some(room) = rooms.get_mut(key.as_ref()) {
        room.members -= 1;
        if room.members == 0 {
            rooms.remove(key.as_ref());
        }
    }
}
