//! Timers without threads: a heap of deadlines that the loop turns into its poll timeout.
//!
//! `Poll::poll` takes a timeout. The loop passes "time until the earliest deadline", so it
//! sleeps in the kernel until either a socket is ready or the next timer is due, then fires the
//! due timers itself. No timer thread, no signal, no lock.
//!
//! Timers are never cancelled. A timer that is no longer wanted (the client spoke, so its idle
//! timer is early; the client is gone) is recognised as stale when it fires and ignored. That
//! makes arming a timer O(log n) and cancelling free, at the price of dead entries. Those
//! must not pile up: with `--idle-timeout 3600` and a thousand connects a second, an hour of
//! dead idle timers would be millions of entries. So the loop calls [`Timers::sweep`] to
//! sweep them out whenever the heap grows past twice the number of live connections, which
//! keeps the heap O(connections) at an amortised O(1) per timer.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use log::debug;

use crate::connection::ConnRef;

/// What to do when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Check whether the client has been silent for `--idle-timeout`.
    Idle(ConnRef),
    /// A flood-controlled client has a token again: resume reading it.
    RateLimit(ConnRef),
    /// A client went over `--max-output`: if it is still over when its grace ends, it goes.
    SlowCheck(ConnRef),
    /// A leaving client had its chance to take its last lines: close it now.
    Linger(ConnRef),
    /// A connection's time to finish its transport's handshake is up: close it if it has not.
    Handshake(ConnRef),
    /// Accepting was paused for lack of descriptors: try again.
    ResumeAccept,
    /// Join and leave notices are waiting and a round may be said (see `notices.rs`): the
    /// timer only wakes the loop, whose end of batch says them.
    Notices,
    /// Per-connection log lines were held back: time to say how many (see `connlog.rs`).
    LogSummary,
    /// The shutdown grace period is over: exit whatever is still queued.
    ShutdownDeadline,
    /// The state journal asked for it (`state/`): an `everysec` sync, or a retry after an
    /// error.
    State,
    /// A deadline the bus asked for (the backplane: a reconnect, a connect timeout, a refresh
    /// of the nick claims).
    Bus,
}

impl Timer {
    /// The connection the timer is for, if it is for one.
    pub fn conn(&self) -> Option<ConnRef> {
        match *self {
            Timer::Idle(r)
            | Timer::RateLimit(r)
            | Timer::SlowCheck(r)
            | Timer::Linger(r)
            | Timer::Handshake(r) => Some(r),
            Timer::ResumeAccept
            | Timer::ShutdownDeadline
            | Timer::Bus
            | Timer::State
            | Timer::Notices
            | Timer::LogSummary => None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    /// Insertion order, so timers due at the same instant fire in the order they were set.
    seq: u64,
    timer: Timer,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Pending deadlines, earliest first.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
}

impl Timers {
    pub fn add(&mut self, at: Instant, timer: Timer) {
        self.next_seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.next_seq,
            timer,
        }));
    }

    /// How long the loop may sleep before the earliest timer is due; `None` if there is none.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse(e)| e.at.saturating_duration_since(now))
    }

    /// Removes and returns one timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        let timer = self.heap.pop().map(|Reverse(e)| e.timer);
        self.give_back();
        timer
    }

    /// Keeps only the timers for which `keep` is true (O(n); see the module documentation
    /// for when the loop calls it).
    pub fn retain(&mut self, mut keep: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|Reverse(e)| keep(&e.timer));
        self.give_back();
    }

    /// Drops the timers of connections that are gone once the heap holds more than twice as
    /// many as there are `live` connections (see the module documentation).
    pub fn sweep(&mut self, live: usize, alive: impl Fn(ConnRef) -> bool) {
        if self.heap.len() <= 2 * live + 64 {
            return;
        }
        let before = self.heap.len();
        self.retain(|timer| timer.conn().is_none_or(&alive));
        debug!("swept {} dead timers", before - self.heap.len());
    }

    /// A heap down to a quarter of its room is halved: a storm of connections leaves a
    /// handshake deadline each, 48 bytes apiece, and once they have fired the room they took
    /// is given back rather than kept for good. (Halving at a quarter, not at a half, so a
    /// heap that hovers around a size is not shrunk and grown again and again.)
    fn give_back(&mut self) {
        let room = self.heap.capacity();
        if room > 64 && self.heap.len() < room / 4 {
            self.heap.shrink_to(room / 2);
        }
    }

    /// Deadlines the heap has room for (for tests and for reasoning about memory, as
    /// `WriteQueue::capacity`).
    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
