//! The bus seam: where a chat event goes once the chat has made it.
//!
//! Everything clients say to each other (chat lines, `/me`, `/msg`, joins, leaves, renames)
//! is an [`Event`]. The chat never holds the bus. It queues what it wants of it as
//! [`Request`]s (publish this event, claim or release this nick), and after every call into
//! the chat the server hands them to the bus in order (`Hub::forward`). The bus knows
//! where an event goes:
//!
//! - [`LocalBus`], a lone server: nowhere else. [`Bus::publish`] hands the event straight
//!   back and the server has the chat deliver it at once.
//! - the Redis bus (`--backplane`, in `backplane/`): it publishes the event, and the event
//!   comes back from the subscription, on every instance this one included, as
//!   [`BusNews::Deliver`]. Redis's order is then the one global order, and delivery is the
//!   same function (`Chat::deliver`) in both cases.
//!
//! Rooms are the chat's business, not the bus's: an event names its room, and the bus
//! carries every room's events on one channel (see `backplane/` for why one).
//!
//! This is socket.io's adapter seam: the chat asks the same way whether it is one process or
//! many. Nicks are the other thing a shared chat must agree on, so a bus also answers nick
//! claims ([`Bus::claim`]): a lone server grants them at once, the Redis bus asks Redis and
//! answers later.
//!
//! So the chat and the bus meet in three ways, each one way round:
//!
//! ```text
//!   chat ──Request──► server ──► Bus            (publish, claim, release)
//!   chat ◄──────────  server ◄── Bus / BusIo    (handed back at once, or BusNews later)
//!   chat ──asks────► Elsewhere                  (read only: the other instances' nicks, rooms)
//! ```
//!
//! [`Elsewhere`] is what the bus knows of the other instances, lent read only to the few
//! chat functions that ask (and to `/who`, `/list`, `/msg`, `/nick`). The loop holds a
//! [`BusIo`], the same bus seen from the loop: a bus that has sockets of its own (the Redis
//! bus's two connections) has them driven there like every other socket, and reports what
//! happened as [`BusNews`] for the chat.

use std::rc::Rc;
use std::time::Instant;

use mio::{Registry, Token};
use serde_json::value::RawValue;

use crate::bans::{Ban, BanList, Mask};
use crate::connection::ConnRef;

/// Which instance an event happened on: [`Origin::HERE`] for this one; for another, the
/// number the bus gave that instance's name when it first heard of it (`backplane/`). The chat
/// asks of every line whether it is its own and whom a notice is about, so an origin is a
/// small `Copy` number, compared in one instruction, and never a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(u32);

impl Origin {
    /// This instance.
    pub const HERE: Origin = Origin(0);

    /// The `n`th other instance a bus has heard of (`n` from 1).
    pub fn other(n: u32) -> Origin {
        Origin(n.max(1))
    }

    pub fn is_here(self) -> bool {
        self == Origin::HERE
    }
}

/// One thing that happened in the chat, as every instance learns of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The instance it happened on.
    pub origin: Origin,
    /// The connection id (`Connection::id`) of the client it is about, on `origin`; `0` for
    /// events about the instance itself.
    pub conn: u64,
    pub what: What,
}

impl Event {
    /// Something that happened here, to the client with connection id `conn`.
    pub fn here(conn: u64, what: What) -> Event {
        Event {
            origin: Origin::HERE,
            conn,
            what,
        }
    }
}

/// What happened. Everything said in a room names the room (as the instance it happened on
/// spells it), so an event means the same on every instance whatever its sender did since:
/// a line said in `#rust` just before a `/join #ops` still belongs to `#rust`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A chat line. Its room and nick are the sender's own, shared: saying a line copies
    /// neither.
    Say {
        room: Rc<str>,
        nick: Rc<str>,
        text: String,
    },
    Me {
        room: Rc<str>,
        nick: Rc<str>,
        action: String,
    },
    /// A new client, in its first room.
    Joined { room: String, nick: String },
    /// A client gone, from the room it was in.
    Left {
        room: String,
        nick: String,
        reason: String,
    },
    /// `/join` or `/part`: from one room to another.
    Moved {
        nick: String,
        from: String,
        to: String,
    },
    Renamed {
        room: String,
        old: String,
        new: String,
    },
    /// To one client, in whatever room it is.
    Msg {
        from: String,
        to: String,
        text: String,
    },
    /// `/ban`: nobody matching `mask` may be here while the ban lasts.
    Ban { mask: Mask, ban: Ban },
    /// `/unban`, by that operator.
    Unban { mask: Mask, by: String },
    /// `/kick`: `nick` is disconnected by whichever instance holds it.
    Kick {
        by: String,
        nick: String,
        reason: String,
    },
    /// `/topic TEXT`: `room`'s topic, on every instance that keeps the room.
    Topic {
        room: String,
        nick: String,
        topic: String,
    },
}

/// What an instance says of itself to the others, beside the chat's events: the business of a
/// shared bus, which keeps its copy of who is elsewhere from it. The chat only makes these
/// ([`Request::Announce`]) and hears of other instances' ([`BusNews::Instance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceNews {
    /// Every client of the instance and its room: said when it connects and every so often.
    Hello { members: Vec<Presence> },
    /// The instance is going away: forget its clients now.
    Bye,
}

/// One client as an instance introduces it: its nick and its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub nick: String,
    pub room: String,
}

/// A client would like a nick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub conn: ConnRef,
    pub nick: String,
    pub purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/nick`: the client becomes `nick` only if the claim is granted.
    Rename,
    /// The client already goes by `nick` (a guest nick, a refresh, a re-claim); if it turns
    /// out to be taken elsewhere, the client must be renamed.
    Keep,
}

/// What the chat asks of the bus, in the order it asks. The chat only queues these
/// (`Chat::next_request`); the server passes each one on after every call into the chat, and
/// hands back to the chat what the bus answers at once.
#[derive(Debug)]
pub enum Request {
    /// An event for every instance: [`Bus::publish`], and delivered here if handed back.
    Publish(Event),
    /// What this instance says of itself: [`Bus::announce`].
    Announce(InstanceNews),
    /// A client would like a nick: [`Bus::claim`].
    Claim(Claim),
    /// A nick this instance held is free again: [`Bus::release`].
    Release(String),
    /// The chat has done what [`BusNews::Refresh`] asked: [`Bus::refreshed`].
    Refreshed,
    /// This room (its key) has nobody here now: the chat forgets it unless the bus knows of
    /// members elsewhere ([`Elsewhere::is_room_elsewhere`]).
    RoomEmptied(Rc<str>),
}

/// What a bus reports for the chat to act on (`Chat::absorb`).
#[derive(Debug)]
pub enum BusNews {
    /// An event to deliver here (from the channel, or one that could not be published).
    Deliver(Event),
    /// Another instance introduced itself or said goodbye: rooms may live on or end elsewhere.
    Instance(InstanceNews),
    /// A claim was answered.
    Answered { claim: Claim, granted: bool },
    /// A claim will never be answered (the bus lost its connection): the chat decides it
    /// alone, as any claim is decided while the chat is local only.
    Unanswered(Claim),
    /// Claim every member's nick again and introduce this instance (the bus just connected,
    /// or it is time to refresh the claims).
    Refresh,
    /// Introduce this instance: another one just appeared.
    Introduce,
    /// A server line for everyone (the chat became local only, or shared again, or lines
    /// were missed).
    Tell(&'static str),
    /// Rooms' history and topics as the other instances have them (the backplane's stream,
    /// read as a new instance comes up): each replaces what that room holds here.
    History(Vec<crate::state::Saved>),
    /// The bans in force across the instances (the backplane's ban hash, read as it comes
    /// up): they replace this instance's. `None`: the hash is new, so this instance's bans
    /// are published to it.
    Bans(Option<BanList>),
}

/// What the chat may know of the other instances: the bus's knowledge, read only. The server
/// lends it to the few chat functions that ask (a newcomer's greeting, whether a nick is
/// being claimed, whether a room lives on elsewhere), and to `/who`, `/list` and `/msg`.
pub trait Elsewhere {
    /// Whether other instances hear this one's events (so a shutdown still announces leaves).
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether a claim for this nick (ignoring case) is waiting for its answer.
    fn is_claiming(&self, _nick: &str) -> bool {
        false
    }

    /// Whether a client on another instance goes by this nick (ignoring case).
    fn is_elsewhere(&self, _nick: &str) -> bool {
        false
    }

    /// The nicks in `room` (ignoring case) on the other instances, for `/who`.
    fn nicks_elsewhere(&self, _room: &str) -> Vec<&str> {
        Vec::new()
    }

    /// Every room with members on the other instances, and how many, for `/list`.
    fn rooms_elsewhere(&self) -> Vec<(&str, usize)> {
        Vec::new()
    }

    /// Whether other instances have members in `room` (ignoring case): while they do, the
    /// room (and its history) lives on here too.
    fn is_room_elsewhere(&self, _room: &str) -> bool {
        false
    }

    /// What every guest nick starts with (a number follows).
    fn guest_prefix(&self) -> String {
        "guest-".to_string()
    }

    /// A line every newcomer must be told first (the chat is local only for now).
    fn greeting(&self) -> Option<&'static str> {
        None
    }
}

/// The bus as the server hands it the chat's [`Request`]s. See the module documentation.
pub trait Bus: Elsewhere {
    /// An event made here. `Some(event)` hands it back to be delivered here and now; `None`
    /// means the bus took it, and it comes back as [`BusNews::Deliver`].
    fn publish(&mut self, event: Event) -> Option<Event>;

    /// A client would like a nick that is free here. `Some(claim)` hands it back granted;
    /// `None` means the answer comes later, as [`BusNews::Answered`] or, if the bus loses it,
    /// [`BusNews::Unanswered`].
    fn claim(&mut self, claim: Claim) -> Option<Claim> {
        Some(claim)
    }

    /// A nick this instance held is free again.
    fn release(&mut self, _nick: &str) {}

    /// What this instance says of itself, for the other instances (none on a lone server).
    fn announce(&mut self, _news: InstanceNews) {}

    /// The chat has done what [`BusNews::Refresh`] asked.
    fn refreshed(&mut self) {}
}

/// The bus as the loop sees it: the chat's [`Bus`], plus sockets of its own driven in the same
/// poll. Every method has a default for a bus without sockets, which has nothing to do here.
pub trait BusIo: Bus {
    /// The loop is starting; `tokens` are set aside for the bus's own sockets.
    fn start(&mut self, _registry: &Registry, _tokens: [Token; 2], _now: Instant) -> Vec<BusNews> {
        Vec::new()
    }

    /// A readiness event for one of its sockets (one of the tokens [`BusIo::start`] was
    /// given: the loop routes those here, and nothing else).
    fn ready(
        &mut self,
        _token: Token,
        _readable: bool,
        _registry: &Registry,
        _scratch: &mut [u8],
        _now: Instant,
    ) -> Vec<BusNews> {
        Vec::new()
    }

    /// Deadlines the bus wants a timer for, asked since the last call.
    fn take_deadlines(&mut self) -> Vec<Instant> {
        Vec::new()
    }

    /// One of those deadlines passed (timers are never cancelled: it may find nothing to do).
    /// A bus whose socket still had bytes when its read budget ran out asks for a deadline of
    /// now and reads on here: edge-triggered, no event will say so again, and the loop does
    /// not sleep past a due timer.
    fn on_timer(
        &mut self,
        _registry: &Registry,
        _scratch: &mut [u8],
        _now: Instant,
    ) -> Vec<BusNews> {
        Vec::new()
    }

    /// End of the batch: send what was published, once, like every other write.
    fn flush(&mut self, _registry: &Registry, _now: Instant) -> Vec<BusNews> {
        Vec::new()
    }

    /// Its counters, for `--stats-udp`: a JSON object, fields in the order they are sent.
    fn stats(&self) -> Option<Box<RawValue>> {
        None
    }
}

/// A lone server's bus: every event is delivered here, every nick free here is granted.
#[derive(Debug, Default)]
pub struct LocalBus;

impl Elsewhere for LocalBus {}

impl Bus for LocalBus {
    fn publish(&mut self, event: Event) -> Option<Event> {
        Some(event)
    }
}

impl BusIo for LocalBus {}
