//! The connection table's lists of connections to come back to without an event
//! ([`Worklists`]): the loop reads a connection until `WouldBlock` and writes it until it
//! blocks, but a budget can stop either first, and edge-triggered readiness will not say so
//! again. These lists remember such connections, and which ones have output for the end of
//! the batch. Each list names a connection at most once ([`Listed`]), and keeps its vectors
//! from batch to batch: listing costs no allocation.

use crate::connection::ConnRef;

/// Connections to visit later, each at most once however often it is added: the list keeps
/// its own "already listed" rule, one flag per token.
///
/// A list is taken whole once per batch and handed back when visited ([`Listed::recycle`]),
/// so the two vectors swap and keep their capacity: listing costs no allocation per batch.
#[derive(Debug, Default)]
pub struct Listed {
    order: Vec<ConnRef>,
    listed: Vec<bool>,
    /// The vector of the last list taken, emptied, to hold the next one.
    spare: Vec<ConnRef>,
}

impl Listed {
    /// Lists `r` unless it is listed already. Inline: every delivery lists its recipient for
    /// the flush.
    #[inline]
    pub fn add(&mut self, r: ConnRef) {
        if r.token >= self.listed.len() {
            self.listed.resize(r.token + 1, false);
        }
        if !self.listed[r.token] {
            self.listed[r.token] = true;
            self.order.push(r);
        }
    }

    /// Everything listed, oldest first; the list starts empty again. Hand the vector back
    /// with [`Listed::recycle`] once visited.
    pub fn take(&mut self) -> Vec<ConnRef> {
        for r in &self.order {
            self.listed[r.token] = false;
        }
        let next = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.order, next)
    }

    /// A taken list, visited: its vector holds the next list taken.
    pub fn recycle(&mut self, mut visited: Vec<ConnRef>) {
        visited.clear();
        if visited.capacity() > self.spare.capacity() {
            self.spare = visited;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// A slot was freed: a new connection in it may be listed (an entry left for the old one
    /// is stale, and skipped by its id).
    pub(super) fn forget(&mut self, token: usize) {
        if let Some(flag) = self.listed.get_mut(token) {
            *flag = false;
        }
    }
}

/// The lists the loop works through, besides its events.
#[derive(Debug, Default)]
pub struct Worklists {
    /// Connections with output to write at the end of this batch.
    pub(super) flush: Listed,
    /// Connections that spent their write budget with more to write: flushed next turn.
    pub(super) flush_next: Listed,
    /// Connections whose read budget ran out with input left: served again next turn.
    pub(super) ready: Listed,
    /// Connections read from or whose write queue was drained in this round or the last (the
    /// busy ones, whose framers and queues keep their room): asked at the end of each round
    /// (`ConnTable::release_buffers`).
    pub(super) active: Listed,
}

impl Worklists {
    /// Serve `r` again next turn, without waiting for an event: its input may already be
    /// there (edge-triggered readiness will not report it again).
    pub fn read_again(&mut self, r: ConnRef) {
        self.ready.add(r);
    }

    /// Connections to read again this turn.
    pub fn take_ready(&mut self) -> Vec<ConnRef> {
        self.ready.take()
    }

    /// The ready list taken by [`Worklists::take_ready`], served.
    pub fn served_ready(&mut self, served: Vec<ConnRef>) {
        self.ready.recycle(served);
    }

    /// Whether any connection has work waiting that no event will announce: input left by
    /// its read budget, or output left by its write budget. The loop must not sleep then.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.flush_next.is_empty()
    }

    /// A writable event, or output to write: flush `r` at the end of the batch.
    pub fn mark_for_flush(&mut self, r: ConnRef) {
        self.flush.add(r);
    }

    /// The end of a batch begins: connections whose write budget ran out last turn join this
    /// batch's flush list. Once per batch only, or a client with a huge backlog would be
    /// written again and again within one batch, and the budget would mean nothing.
    pub fn start_flushes(&mut self) {
        let next = self.flush_next.take();
        for &r in &next {
            self.flush.add(r);
        }
        self.flush_next.recycle(next);
    }

    /// The connections to flush now; the list starts empty again.
    pub fn take_flush_list(&mut self) -> Vec<ConnRef> {
        self.flush.take()
    }

    /// The flush list taken by [`Worklists::take_flush_list`], flushed.
    pub fn flushed(&mut self, flushed: Vec<ConnRef>) {
        self.flush.recycle(flushed);
    }

    /// A round of buffer use is over: each connection listed as active in it is asked
    /// (`busy`) whether it is busy in the next, and stays listed if so. True if any is.
    pub(super) fn end_round(&mut self, mut busy: impl FnMut(ConnRef) -> bool) -> bool {
        let round = self.active.take();
        for &r in &round {
            if busy(r) {
                self.active.add(r);
            }
        }
        self.active.recycle(round);
        !self.active.is_empty()
    }

    /// A slot was freed: its token may be listed again, for the connection that takes it.
    pub(super) fn forget(&mut self, token: usize) {
        self.ready.forget(token);
        self.flush_next.forget(token);
        self.active.forget(token);
    }
}
