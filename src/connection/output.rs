//! A connection's write side ([`Output`]): its [`WriteQueue`], what its socket is registered
//! for, how busy the queue is, and its standing against `--max-output`. The table queues
//! lines here through the connection's transport, and at the end of the batch
//! [`Connection::flush`](super::Connection::flush) writes them through the transport, behind
//! the write budget, and makes the registration match how the write ended.

use std::io;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Registry, Token};

use super::{Activity, Flush};
use crate::limits::WRITE_BUDGET;
use crate::nonblocking::{Budget, Flushed, Registration, WriteCalls};
use crate::transport::{Farewell, Transport};
use crate::write_queue::WriteQueue;

/// The write side: lines waiting for the socket, and what the socket is registered for.
#[derive(Debug)]
pub struct Output {
    /// Its lines, as its transport queued them (`Connection::send`).
    queue: WriteQueue,
    registration: Registration,
    /// Since when its unsent output has been over `--max-output`, as of its last flush.
    over_limit_since: Option<Instant>,
    /// A `Linger` timer is set for it.
    linger_armed: bool,
    /// How often its queue is drained: a busy client's queue keeps its room between
    /// flushes, for the next line.
    drains: Activity,
}

impl Default for Output {
    fn default() -> Output {
        Output {
            queue: WriteQueue::default(),
            registration: Registration::readable(),
            over_limit_since: None,
            linger_armed: false,
            drains: Activity::default(),
        }
    }
}

impl Output {
    pub fn queue(&mut self) -> &mut WriteQueue {
        &mut self.queue
    }

    pub fn queued(&self) -> &WriteQueue {
        &self.queue
    }

    /// Writes the queue through `transport` until it is all sent, the socket's buffer is
    /// full, or [`WRITE_BUDGET`] bytes went out in this call; with a `farewell`, the
    /// transport then ends its stream. Then the registration is made to match: writable
    /// interest only while the socket itself is full. `calls` counts the write system calls
    /// made, and their bytes, however it ends.
    pub(super) fn flush(
        &mut self,
        socket: &mut TcpStream,
        transport: &mut Transport,
        farewell: Option<Farewell<'_>>,
        calls: &mut WriteCalls,
        (registry, token): (&Registry, Token),
    ) -> io::Result<Flush> {
        let mut budget = Budget::new(socket, WRITE_BUDGET);
        let flushed = transport.write(&mut budget, &mut self.queue, farewell);
        let made = budget.calls();
        calls.calls += made.calls;
        calls.bytes += made.bytes;
        let flush = match flushed? {
            Flushed::All => Flush::Done,
            Flushed::Blocked if budget.spent() => Flush::Budget,
            Flushed::Blocked => Flush::Blocked,
        };
        let blocked = flush == Flush::Blocked;
        self.registration.update(registry, socket, token, blocked)?;
        Ok(flush)
    }

    /// Its queue was just drained. A busy client's queue keeps its room for the next line
    /// (a client sent a line per batch would otherwise allocate and free it for every line);
    /// anyone else's gives it back at once, so an idle client holds nothing from the moment
    /// its welcome is written. A second drain in a round makes a client busy. True the first
    /// time in a round: the caller lists it, to be asked at the end of the round
    /// ([`Connection::end_round`](super::Connection::end_round)).
    pub fn drained(&mut self) -> bool {
        let first = self.drains.note();
        if !self.drains.busy {
            self.queue.release();
        }
        first
    }

    /// A round is over: busy in the next one if drained in this one; if not, its queue gives
    /// back the room it kept.
    pub(super) fn end_round(&mut self) -> bool {
        let writing = self.drains.end_round();
        if !writing {
            self.queue.release();
        }
        writing
    }

    /// After a flush: notes whether it is `over` `--max-output` now. True when it has just
    /// gone over, so the caller starts its grace; a flush that leaves it under ends the
    /// grace.
    pub(super) fn judge(&mut self, over: bool, now: Instant) -> bool {
        if !over {
            self.over_limit_since = None;
            false
        } else if self.over_limit_since.is_none() {
            self.over_limit_since = Some(now);
            true
        } else {
            false
        }
    }

    /// Since when it has been over `--max-output`, as of its last flush.
    pub fn over_limit_since(&self) -> Option<Instant> {
        self.over_limit_since
    }

    /// Arms the linger once: true the first time it is asked.
    pub fn arm_linger(&mut self) -> bool {
        !std::mem::replace(&mut self.linger_armed, true)
    }
}
