//! Which chatter is in which room, and what each room's chatters sent and heard.
//!
//! The chaos run has two rooms: `#lobby`, where every client starts and every misbehaving
//! one stays, and [`SECOND_ROOM`], which only its own chatters ever join (and, with `--oper`,
//! the operator and the trolls it deals with, who say nothing there: `operator.rs`). Chatters
//! `0..--chatters` stay in the lobby; the `--room-chatters` after them `/join` the second
//! room once welcomed. A chatter line is expected by every other chatter of its room and by
//! nobody else, so the figures are kept room by room ([`RoomLines`]) and summed for the
//! report.

use serde::Serialize;

use super::client::Listener;
use super::round::ChatterLog;
use pollchat::limits::LOBBY;

/// The room beside the flooded lobby.
pub(super) const SECOND_ROOM: &str = "#chaos";

/// How many chatters each room has: the lobby's are numbered first.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) lobby: usize,
    pub(super) second: usize,
}

impl Layout {
    /// Chatters in both rooms.
    pub(super) fn total(self) -> usize {
        self.lobby + self.second
    }

    /// The room chatter `n` belongs in.
    pub(super) fn room_of(self, n: u32) -> &'static str {
        if (n as usize) < self.lobby {
            LOBBY
        } else {
            SECOND_ROOM
        }
    }

    /// Room `n` of the two: 0 the lobby, any other the second room.
    pub(super) fn room(n: u32) -> &'static str {
        if n == 0 { LOBBY } else { SECOND_ROOM }
    }

    /// Each chatter's room, by chatter number: what the checks in `invariants.rs` take.
    pub(super) fn rooms(self) -> Vec<&'static str> {
        (0..self.total())
            .map(|n| self.room_of(u32::try_from(n).unwrap_or(u32::MAX)))
            .collect()
    }

    /// Each room with its number of chatters.
    pub(super) fn each(self) -> [(&'static str, usize); 2] {
        [(LOBBY, self.lobby), (SECOND_ROOM, self.second)]
    }
}

/// One room's chatter lines: what its chatters sent, and what they heard of each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoomLines {
    pub chatters: usize,
    pub lines_sent: u64,
    /// Of `lines_sent`, those of chatters on the TLS listener.
    pub lines_sent_tls: u64,
    /// Of `lines_sent`, those of chatters over WebSocket.
    pub lines_sent_ws: u64,
    pub deliveries: u64,
    /// What a lossless server delivers: every line to every other chatter of the room.
    pub expected: u64,
}

impl RoomLines {
    /// The figures of `room`, which has `chatters` chatters, from every chatter's log.
    pub(super) fn of(room: &str, chatters: usize, logs: &[ChatterLog]) -> RoomLines {
        let mut lines = RoomLines {
            chatters,
            ..RoomLines::default()
        };
        for log in logs.iter().filter(|log| log.room == room) {
            lines.lines_sent += log.sent();
            match log.listener {
                Listener::Tls => lines.lines_sent_tls += log.sent(),
                Listener::Http => lines.lines_sent_ws += log.sent(),
                Listener::Plain => {}
            }
            lines.deliveries += log.received.len() as u64;
        }
        lines.expected = lines.lines_sent * (chatters as u64).saturating_sub(1);
        lines
    }
}

impl std::ops::AddAssign for RoomLines {
    /// Summing rounds: the same chatters each round, their lines added up.
    fn add_assign(&mut self, other: RoomLines) {
        self.chatters = self.chatters.max(other.chatters);
        self.lines_sent += other.lines_sent;
        self.lines_sent_tls += other.lines_sent_tls;
        self.lines_sent_ws += other.lines_sent_ws;
        self.deliveries += other.deliveries;
        self.expected += other.expected;
    }
}
