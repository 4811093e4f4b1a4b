//! A connection's read side ([`Input`]): the bytes read and not yet a whole line (its
//! [`LineFramer`]), flood control's bucket, and what else holds its lines back (flood
//! control's pause, the room's hold during a `/nick` the bus must answer). The connection
//! reads its socket into the framer through its transport; the loop asks
//! [`Connection::next_line`](super::Connection::next_line) for what to do next, which asks
//! this side once the connection is in the chat.

use std::time::Instant;

use super::{Activity, Flood, Next};
use crate::framing::{Frame, LineFramer};
use crate::rate_limit::TokenBucket;

/// The read side: bytes waiting to become lines, and what holds them back.
#[derive(Debug)]
pub struct Input {
    framer: LineFramer,
    /// Flood control's bucket. A full bucket and no bucket at all let the same lines through,
    /// so it is made (full) at the client's first line and dropped when a read finds it full
    /// again: a client that is not speaking holds none.
    bucket: Option<Box<TokenBucket>>,
    /// Flood control stopped reading this client until a token is due (a `RateLimit` timer
    /// resumes it); readable events are ignored meanwhile.
    throttled: bool,
    /// The room asked to hold its lines unread (a `/nick` waiting for the bus's answer), so
    /// they are handled in the order sent: a line after `/nick bob` is bob's.
    held: bool,
    /// Flood control has been logged for this client (once is enough).
    warned_throttle: bool,
    /// The last time the client sent us anything: the idle timer measures from here.
    last_heard: Instant,
    /// How often it is read: a busy client's framer keeps its buffer between reads.
    reads: Activity,
}

impl Input {
    pub(super) fn new(max_line: usize, now: Instant) -> Input {
        Input {
            framer: LineFramer::new(max_line),
            bucket: None,
            throttled: false,
            held: false,
            warned_throttle: false,
            last_heard: now,
            reads: Activity::default(),
        }
    }

    pub(super) fn framer(&mut self) -> &mut LineFramer {
        &mut self.framer
    }

    /// The next line, or why not (see [`Connection::next_line`](super::Connection::next_line),
    /// which asks only once the connection is in the chat). `flood` is flood control's rule,
    /// `None` when it is off (`--rate 0`).
    pub(super) fn next_line(&mut self, now: Instant, flood: Option<Flood>) -> Next {
        if self.throttled || self.held {
            return Next::Stop;
        }
        if let Some(bucket) = &mut self.bucket {
            let next = bucket.next_token_at(now);
            if next > now {
                self.throttled = true;
                let first = !std::mem::replace(&mut self.warned_throttle, true);
                return Next::Throttled { until: next, first };
            }
        }
        let Some(frame) = self.framer.next_frame() else {
            if self.bucket.as_mut().is_some_and(|b| b.is_full(now)) {
                self.bucket = None;
            }
            return Next::ReadMore;
        };
        if let Some(Flood { rate, burst }) = flood {
            self.bucket
                .get_or_insert_with(|| Box::new(TokenBucket::new(rate, burst, now)))
                .try_take(now);
        }
        Next::Line(frame)
    }

    /// A last line that came without its newline, before the end.
    pub(super) fn finish(&mut self) -> Option<Frame> {
        self.framer.finish()
    }

    /// What the client's Telnet commands, in what was just read, are answered with (see
    /// `telnet.rs`): for its queue, in order with the rest of its output.
    pub fn take_replies(&mut self) -> Option<Vec<u8>> {
        self.framer.take_replies()
    }

    /// Flood control's timer: reading may resume. False if it was not throttled.
    pub fn unthrottle(&mut self) -> bool {
        std::mem::take(&mut self.throttled)
    }

    /// Holds or releases its lines (see `Input::held`); returns whether it was held before.
    pub fn hold(&mut self, held: bool) -> bool {
        std::mem::replace(&mut self.held, held)
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// It was just read from, at `now`. The same rule as
    /// [`Output::drained`](super::Output::drained), for its framer's buffer: a second read in
    /// a round makes it busy, and a busy client's framer keeps its room between reads (a
    /// client that sends a line per read would otherwise allocate and free it for every
    /// line). True the first time in a round, as there.
    pub(super) fn was_read(&mut self, now: Instant) -> bool {
        self.last_heard = now;
        let first = self.reads.note();
        if self.reads.busy {
            self.framer.keep_room(true);
        }
        first
    }

    /// A round is over: busy in the next one if read in this one; if not, its framer gives
    /// back the room it kept.
    pub(super) fn end_round(&mut self) -> bool {
        let reading = self.reads.end_round();
        self.framer.keep_room(reading);
        reading
    }
}
