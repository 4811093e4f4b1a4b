//! What the chat asks of the bus, queued in order for the server to hand over (`bus.rs` says
//! how the chat, the bus and the server meet), the leave events that wait for the end of the
//! batch before they join the queue, and what the bus's own questions (`BusNews::Refresh`,
//! `BusNews::Introduce`) ask of the chat, which only the chat's nicks and rooms answer.

use std::collections::VecDeque;

use super::{Nicks, Rooms};
use crate::bus::{Claim, Event, InstanceNews, Purpose, Request, What};
use crate::connection::{CloseReason, ConnRef};

/// The chat's side of the bus: requests, oldest first.
#[derive(Debug)]
pub struct Requests {
    queue: VecDeque<Request>,
    /// Leave events (and a goodbye) not yet said (see [`Requests::announce_departures`] for
    /// why they wait).
    departures: Vec<Request>,
    /// Other instances hear this one (a shutdown still says its leaves).
    shared: bool,
}

impl Requests {
    pub fn new(shared: bool) -> Requests {
        Requests {
            queue: VecDeque::new(),
            departures: Vec::new(),
            shared,
        }
    }

    /// The oldest request, for the server to hand to the bus.
    pub fn pop(&mut self) -> Option<Request> {
        self.queue.pop_front()
    }

    /// An event about the client with connection id `conn` (`0`: about this instance).
    pub fn publish(&mut self, conn: u64, what: What) {
        self.queue
            .push_back(Request::Publish(Event::here(conn, what)));
    }

    /// Says `Hello` with every client's nick and room, so other instances know who is where.
    pub fn introduce(&mut self, nicks: &Nicks, rooms: &Rooms) {
        let members = rooms.presences(nicks.every());
        self.queue
            .push_back(Request::Announce(InstanceNews::Hello { members }));
    }

    pub fn claim(&mut self, conn: ConnRef, nick: String, purpose: Purpose) {
        let claim = Claim {
            conn,
            nick,
            purpose,
        };
        self.queue.push_back(Request::Claim(claim));
    }

    pub fn release(&mut self, nick: String) {
        self.queue.push_back(Request::Release(nick));
    }

    /// `BusNews::Refresh`: every nick here is claimed again, `Hello` said again, and, as the
    /// bus has just forgotten the instances it no longer hears from, any room may be empty now.
    pub fn refresh(&mut self, nicks: &Nicks, rooms: &Rooms) {
        for (conn, nick, _) in nicks.every() {
            self.claim(conn, nick.to_string(), Purpose::Keep);
        }
        self.introduce(nicks, rooms);
        self.queue.push_back(Request::Refreshed);
        self.rooms_emptied(rooms);
    }

    /// The room with key `key` may have nobody here now: whether it goes is the bus's to say
    /// (it may have members elsewhere).
    pub fn room_emptied(&mut self, rooms: &Rooms, key: &str) {
        if let Some(key) = rooms.emptied(key) {
            self.queue.push_back(Request::RoomEmptied(key));
        }
    }

    /// Every room may have nobody in it now: the bus forgot whole instances.
    pub fn rooms_emptied(&mut self, rooms: &Rooms) {
        for key in rooms.keys() {
            self.room_emptied(rooms, &key);
        }
    }

    /// The client with connection id `conn` left `room`: its leave waits for the end of the
    /// batch. On a shutdown everyone here is leaving and needs no notice; other instances'
    /// clients do.
    pub fn left(&mut self, conn: u64, room: String, nick: String, reason: &CloseReason) {
        if *reason != CloseReason::Shutdown || self.shared {
            let reason = reason.to_string();
            let what = What::Left { room, nick, reason };
            self.departures
                .push(Request::Publish(Event::here(conn, what)));
        }
    }

    /// This instance is going away: the others forget it at once, after its clients' leaves.
    pub fn bye(&mut self) {
        if self.shared {
            self.departures.push(Request::Announce(InstanceNews::Bye));
        }
    }

    /// Queues the leave events collected during the batch; false if there were none.
    ///
    /// They wait until here because a client can be sent away in the middle of a room's
    /// walk over its members (its queue overflowed), and announcing it there would start a
    /// walk inside a walk. A notice can itself overflow another queue and cause another
    /// departure, so the server calls this until it says there are none left.
    pub fn announce_departures(&mut self) -> bool {
        let any = !self.departures.is_empty();
        self.queue.extend(self.departures.drain(..));
        any
    }
}
