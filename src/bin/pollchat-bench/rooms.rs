//! `--rooms N`: which room each connection of a load run is in, and what each room counts.
//!
//! Connections are spread round-robin over the rooms, senders and receivers separately, so
//! that every room gets its share of both: sender `s` is in room `s % N`, the `r`-th
//! receiver in room `r % N`, and a Redis chatter's subscribed companion in its sender's
//! room. pollchat clients `/join #bench-K`; Redis clients use the channel
//! `pollchat-bench-K`, so the two servers get the same load. With one room nothing moves:
//! pollchat's clients stay in `#lobby` and Redis uses `pollchat-bench`, as before rooms.
//!
//! A line is expected only by its own room, so what a lossless server delivers is summed
//! room by room ([`RoomCounts::expected`]). A line heard in another room is the server's bug,
//! not a delivery: it is counted apart (`Shared::foreign`), so every run checks that the
//! server keeps its rooms apart.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Where connection `i` of a run is: the same answer on every worker.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    rooms: usize,
    senders: usize,
    conns: usize,
}

impl Layout {
    /// `conns` is `--conns`: connections past it are Redis companions, one per sender.
    pub fn new(rooms: usize, senders: usize, conns: usize) -> Layout {
        Layout {
            rooms: rooms.max(1),
            senders,
            conns,
        }
    }

    /// The room of connection `index` (counted as `Plan::total` counts them).
    pub fn room_of(&self, index: usize) -> usize {
        let nth = if index < self.senders {
            index
        } else if index < self.conns {
            index - self.senders
        } else {
            // A companion listens for the sender it stands beside.
            index - self.conns
        };
        nth % self.rooms
    }

    /// The room a benchmark line comes from: its sender's.
    pub fn room_of_sender(&self, sender: u32) -> usize {
        sender as usize % self.rooms
    }

    /// What a pollchat-connection says to get into `room` after the welcome; `None` with
    /// one room, whose connections stay in `#lobby`.
    pub fn join_line(&self, room: usize) -> Option<String> {
        (self.rooms > 1).then(|| format!("/join #bench-{room}"))
    }

    /// The Redis channel of `room`.
    pub fn channel(&self, room: usize) -> String {
        if self.rooms > 1 {
            format!("{}-{room}", super::wire::CHANNEL)
        } else {
            super::wire::CHANNEL.to_string()
        }
    }
}

/// One room's counts, shared by every worker.
#[derive(Debug, Default)]
pub struct RoomCount {
    /// Lines its senders sent.
    pub sent: AtomicU64,
    /// Connections in it: senders and receivers.
    pub established: AtomicUsize,
    /// Its receivers: whom each line of its senders must reach.
    pub receivers: AtomicUsize,
}

/// Every room's counts.
#[derive(Debug)]
pub struct RoomCounts(Box<[RoomCount]>);

impl RoomCounts {
    pub fn new(rooms: usize) -> RoomCounts {
        RoomCounts((0..rooms.max(1)).map(|_| RoomCount::default()).collect())
    }

    /// The counts of `room` (every room a [`Layout`] of as many rooms names is here).
    pub fn get(&self, room: usize) -> Option<&RoomCount> {
        self.0.get(room)
    }

    /// What a lossless server delivers: each room's lines times those who must hear them,
    /// summed over the rooms. `chatters`: every connection hears the lines of its room but
    /// its own (pollchat `--senders-receive`); otherwise its receivers do.
    pub fn expected(&self, chatters: bool) -> u64 {
        self.0
            .iter()
            .map(|room| {
                let hearers = if chatters {
                    room.established.load(Ordering::Relaxed).saturating_sub(1)
                } else {
                    room.receivers.load(Ordering::Relaxed)
                };
                room.sent.load(Ordering::Relaxed) * hearers as u64
            })
            .sum()
    }

    /// Senders times receivers, room by room: a window's line in flight is owed to the
    /// receivers of its own room only.
    pub fn pairs(&self) -> u64 {
        self.0
            .iter()
            .map(|room| {
                let receivers = room.receivers.load(Ordering::Relaxed);
                let senders = room
                    .established
                    .load(Ordering::Relaxed)
                    .saturating_sub(receivers);
                (senders * receivers) as u64
            })
            .sum()
    }

    /// The fewest and the most receivers any room has.
    pub fn receivers_range(&self) -> [usize; 2] {
        let receivers = self.0.iter().map(|r| r.receivers.load(Ordering::Relaxed));
        [
            receivers.clone().min().unwrap_or(0),
            receivers.max().unwrap_or(0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_and_receivers_are_spread_separately_so_each_room_has_both() {
        // 100 senders and 1,000 receivers over 100 rooms: 1 + 10 in each.
        let layout = Layout::new(100, 100, 1100);
        let mut senders = [0; 100];
        let mut receivers = [0; 100];
        for index in 0..1100 {
            if index < 100 {
                senders[layout.room_of(index)] += 1;
            } else {
                receivers[layout.room_of(index)] += 1;
            }
        }
        assert!(senders.iter().all(|&n| n == 1) && receivers.iter().all(|&n| n == 10));
        // A companion (index 1100 + s) is in the room of sender s.
        assert_eq!(layout.room_of(1100 + 37), layout.room_of_sender(37));
    }

    #[test]
    fn one_room_is_the_lobby_and_the_old_channel() {
        let layout = Layout::new(1, 2, 10);
        assert_eq!(layout.join_line(0), None);
        assert_eq!(layout.channel(0), "pollchat-bench");
        assert_eq!(
            Layout::new(4, 2, 10).join_line(3),
            Some("/join #bench-3".to_string())
        );
        assert_eq!(Layout::new(4, 2, 10).channel(3), "pollchat-bench-3");
    }

    #[test]
    fn what_is_expected_is_summed_room_by_room() {
        let counts = RoomCounts::new(2);
        for (room, (sent, established, receivers)) in
            [(10, 4, 3), (5, 3, 1)].into_iter().enumerate()
        {
            let count = counts.get(room).unwrap();
            count.sent.store(sent, Ordering::Relaxed);
            count.established.store(established, Ordering::Relaxed);
            count.receivers.store(receivers, Ordering::Relaxed);
        }
        assert_eq!(counts.expected(false), 10 * 3 + 5);
        assert_eq!(counts.expected(true), 10 * 3 + 5 * 2);
        assert_eq!(counts.pairs(), 3 + 2);
        assert_eq!(counts.receivers_range(), [1, 3]);
    }
}
