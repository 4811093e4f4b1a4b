//! The closed loop of `--rate max`: when a sender may send its next line.
//!
//! **A line is done when every receiver has it** (every receiver of its sender's room, with
//! `--rooms`: nobody else is meant to hear it). Each sender may have at most `--window`
//! lines that are not done, so at any moment at most `window × receivers` deliveries are in
//! flight, whatever order the server writes its receivers in. By Little's law the time from
//! a line's send to its last delivery is then, on average, `window × receivers` divided by
//! the deliveries per second: a reader can check the latency against the throughput.
//!
//! (The generator used to let one "probe" receiver acknowledge lines. pollchat writes its
//! receivers in token order, so the probe heard a batch first and the sender raced ahead of
//! the other 999; Redis writes them last-subscribed first, so the probe heard it last and the
//! loop stopped and waited on every batch. The same flag meant different loads.)
//!
//! How "every receiver has it" is counted without a table per receiver: each sender has a
//! ring of `window` counters, one per line in flight. A receiver that reads lines `a..=b` of a
//! sender adds one to each of their counters, in a [`Tally`] of its worker's that is added to
//! the ring once per batch of events (one lock per sender and batch, not one per delivery).
//! Then `done` moves on over every line whose counter has reached the number of receivers
//! (of the sender's room), clearing the counter for the line `window` later.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One sender's window, shared by every worker.
#[derive(Debug)]
pub struct Window {
    /// Lines of this sender that every receiver has: it may send line `seq` while
    /// `seq < done + window`. A copy of `Ring::done`, so the sender reads it without the lock.
    done: AtomicU64,
    ring: Mutex<Ring>,
    /// `sent_at[k % window]`: when line `k` was sent (ns since the epoch), so receivers time
    /// a run of lines without parsing each one. Written before the line goes to the socket;
    /// read by a receiver only after the kernel handed it the line (the socket's lock orders
    /// the two) and before that receiver counts it, so the slot cannot be reused under it.
    sent_at: Box<[AtomicU64]>,
    /// The receivers each line must reach: those of this sender's room, set when the traffic
    /// starts, once every receiver is in.
    receivers: AtomicU32,
}

/// The counters behind [`Window::done`].
#[derive(Debug)]
struct Ring {
    done: u64,
    /// `reached[k % window]`: receivers that have line `k`, for the lines in flight.
    reached: Box<[u32]>,
}

impl Window {
    fn new(window: u64) -> Window {
        let slots = usize::try_from(window.max(1)).unwrap_or(usize::MAX);
        Window {
            done: AtomicU64::new(0),
            ring: Mutex::new(Ring {
                done: 0,
                reached: vec![0; slots].into_boxed_slice(),
            }),
            sent_at: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            receivers: AtomicU32::new(u32::MAX),
        }
    }

    fn slots(&self) -> u64 {
        self.sent_at.len() as u64
    }

    /// Lines every receiver has.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Whether line `seq` may be sent now.
    pub fn open(&self, seq: u64) -> bool {
        seq < self.done() + self.slots()
    }

    /// The sender is about to send line `seq` at `at_ns`.
    pub fn sending(&self, seq: u64, at_ns: u64) {
        self.sent_at[(seq % self.slots()) as usize].store(at_ns, Ordering::Relaxed);
    }

    /// When line `seq` (in flight) was sent.
    pub fn sent_at(&self, seq: u64) -> u64 {
        self.sent_at[(seq % self.slots()) as usize].load(Ordering::Relaxed)
    }

    /// Receivers read lines `base..`: `counts[i]` of them have line `base + i`. Moves `done`
    /// on over every line that all its receivers now have.
    fn reached(&self, base: u64, counts: &[u32]) {
        let receivers = self.receivers.load(Ordering::Acquire);
        // A poisoned lock means a worker panicked: the run fails on joining it anyway.
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let slots = self.slots();
        for (seq, &n) in (base..).zip(counts) {
            // Lines already done can be heard again only from a receiver that joined the
            // count late; lines past the window cannot have been sent.
            if seq >= ring.done && seq < ring.done + slots {
                ring.reached[(seq % slots) as usize] += n;
            }
        }
        while ring.reached[(ring.done % slots) as usize] >= receivers {
            let slot = (ring.done % slots) as usize;
            ring.reached[slot] = 0;
            ring.done += 1;
        }
        self.done.store(ring.done, Ordering::Release);
    }
}

/// Every sender's window.
#[derive(Debug)]
pub struct Windows {
    senders: Box<[Window]>,
}

impl Windows {
    pub fn new(senders: usize, window: u64) -> Windows {
        Windows {
            senders: (0..senders).map(|_| Window::new(window)).collect(),
        }
    }

    /// The receivers each sender's lines must reach (those of its room established when the
    /// traffic starts): `receivers_of(sender)`. A sender with none waits: a line nobody
    /// hears is never done.
    pub fn set_receivers(&self, receivers_of: impl Fn(u32) -> usize) {
        for (sender, window) in (0..).zip(&self.senders) {
            let receivers = u32::try_from(receivers_of(sender))
                .unwrap_or(u32::MAX)
                .max(1);
            window.receivers.store(receivers, Ordering::Release);
        }
    }

    pub fn get(&self, sender: u32) -> Option<&Window> {
        self.senders.get(sender as usize)
    }

    /// Lines done, over every sender.
    pub fn done(&self) -> u64 {
        self.senders.iter().map(Window::done).sum()
    }
}

/// One worker's count of the lines its receivers read in one batch of events, per sender
/// and line, until [`Tally::publish`] adds it to the shared [`Windows`].
#[derive(Debug, Default)]
pub struct Tally {
    /// Per sender: the first line counted, and how many receivers read each line from there.
    senders: Vec<(u64, Vec<u32>)>,
}

impl Tally {
    /// A receiver read lines `first..first + n` of `sender`.
    pub fn add(&mut self, sender: u32, first: u64, n: u64) {
        let sender = sender as usize;
        if self.senders.len() <= sender {
            self.senders.resize_with(sender + 1, || (0, Vec::new()));
        }
        let (base, counts) = &mut self.senders[sender];
        if counts.is_empty() {
            *base = first;
        }
        if first < *base {
            // This receiver is behind the ones counted so far: make room in front.
            let shift = usize::try_from(*base - first).unwrap_or(usize::MAX);
            counts.splice(0..0, std::iter::repeat_n(0, shift));
            *base = first;
        }
        let start = usize::try_from(first - *base).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
        if counts.len() < end {
            counts.resize(end, 0);
        }
        for count in &mut counts[start..end] {
            *count += 1;
        }
    }

    /// Adds what was counted to the shared windows and starts again.
    pub fn publish(&mut self, windows: &Windows) {
        for (sender, (base, counts)) in self.senders.iter_mut().enumerate() {
            if counts.is_empty() {
                continue;
            }
            if let Some(window) = windows.senders.get(sender) {
                window.reached(*base, counts);
            }
            counts.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(receivers: usize, window: u64) -> Windows {
        let windows = Windows::new(1, window);
        windows.set_receivers(|_| receivers);
        windows
    }

    #[test]
    fn a_line_is_done_only_when_every_receiver_has_it() {
        let windows = windows(3, 4);
        let mut tally = Tally::default();
        tally.add(0, 0, 4);
        tally.add(0, 0, 2);
        tally.publish(&windows);
        assert_eq!(windows.done(), 0, "two of three receivers");
        tally.add(0, 0, 1);
        tally.publish(&windows);
        assert_eq!(windows.done(), 1);
        let window = windows.get(0).unwrap();
        assert!(window.open(4) && !window.open(5), "window 4 past line 0");
    }

    #[test]
    fn done_moves_on_in_order_across_workers_and_batches() {
        let windows = windows(2, 4);
        let (mut a, mut b) = (Tally::default(), Tally::default());
        a.add(0, 0, 3);
        b.add(0, 0, 1);
        b.publish(&windows);
        a.publish(&windows);
        assert_eq!(windows.done(), 1);
        b.add(0, 1, 3);
        b.publish(&windows);
        assert_eq!(windows.done(), 3);
        // The ring wraps: lines 4..7 use the slots of 0..3, cleared as each was done.
        a.add(0, 3, 4);
        b.add(0, 4, 3);
        a.publish(&windows);
        b.publish(&windows);
        assert_eq!(windows.done(), 7);
        assert!(windows.get(0).unwrap().open(10) && !windows.get(0).unwrap().open(11));
    }

    #[test]
    fn each_sender_waits_for_the_receivers_of_its_own_room() {
        let windows = Windows::new(2, 4);
        windows.set_receivers(|sender| if sender == 0 { 1 } else { 3 });
        let mut tally = Tally::default();
        tally.add(0, 0, 2);
        tally.add(1, 0, 2);
        tally.add(1, 0, 2);
        tally.publish(&windows);
        assert_eq!(
            windows.get(0).unwrap().done(),
            2,
            "its one receiver has both"
        );
        assert_eq!(windows.get(1).unwrap().done(), 0, "two of three");
    }

    #[test]
    fn a_line_is_not_done_while_a_line_before_it_is_missing() {
        let windows = windows(2, 8);
        let mut tally = Tally::default();
        tally.add(0, 2, 2);
        tally.add(0, 0, 4);
        tally.publish(&windows);
        assert_eq!(windows.done(), 0, "lines 0 and 1 have one receiver");
        tally.add(0, 0, 2);
        tally.publish(&windows);
        assert_eq!(windows.done(), 4);
    }
}
