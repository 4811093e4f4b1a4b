//! What the backplane sends again after its links drop: the events whose `XADD` Redis never
//! confirmed. Such an event was still in this instance's buffer, or on the wire, or added
//! by Redis with its reply lost: the first two are in no stream, the last is, and nothing
//! here can tell which. So they are kept, and once the reader, resuming from the last entry
//! it read, has caught up with the stream's end, those that came back through it (this
//! instance's own entries, matched by their exact text, which holds the instance's id and
//! the connection's) are forgotten, and the others are added again: each event once, in
//! the order it was said, after what other instances said meanwhile.
//!
//! Events the chat publishes while the resend waits for that catch-up are held behind the
//! kept ones (never sent, so never matched), so that a client's lines keep their order.

use std::collections::VecDeque;

use log::warn;

use super::stream::StreamId;

/// One event waiting to go to the stream again.
#[derive(Debug)]
struct Waiting {
    /// The event, as encoded for the stream.
    text: String,
    /// Sent before the links dropped (it may have been added): `false` for one never sent.
    sent: bool,
}

/// The events to send again, oldest first, and what Redis confirmed.
#[derive(Debug)]
pub struct Resend {
    waiting: VecDeque<Waiting>,
    /// Most events kept (the oldest go first past it): no more than the stream holds.
    limit: usize,
    /// The id Redis gave the last `XADD` it confirmed. Redis runs one connection's commands
    /// in order, so every unconfirmed event that landed has a later id: an entry up to this
    /// one is a confirmed event of this instance (read after the drop), never a kept one,
    /// even with the same text.
    confirmed: Option<StreamId>,
    /// Events dropped past `limit` have been logged (once per server).
    warned: bool,
    /// Events sent again after a drop; events dropped past `limit`.
    pub resent: u64,
    pub dropped: u64,
}

impl Resend {
    pub fn new(limit: usize) -> Resend {
        Resend {
            waiting: VecDeque::new(),
            limit: limit.max(1),
            confirmed: None,
            warned: false,
            resent: 0,
            dropped: 0,
        }
    }

    /// Whether events wait for the reader to catch up: new ones go behind them.
    pub fn is_pending(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Events to send once the reader has caught up: `sent` if they were sent before the
    /// links dropped (they may come back through the resumed read).
    pub fn keep(&mut self, events: impl IntoIterator<Item = String>, sent: bool) {
        for text in events {
            self.waiting.push_back(Waiting { text, sent });
        }
        let over = self.waiting.len().saturating_sub(self.limit);
        if over > 0 {
            self.waiting.drain(..over);
            self.dropped += over as u64;
            if !std::mem::replace(&mut self.warned, true) {
                warn!(
                    "backplane: over {} events waiting to be sent again: the oldest are \
                     dropped (counted in resend_dropped)",
                    self.limit
                );
            }
        }
    }

    /// Redis added an `XADD`'s events, the last under `id`.
    pub fn confirmed(&mut self, id: StreamId) {
        self.confirmed = Some(id);
    }

    /// An entry read while resuming: if it is a kept event (one match forgets one), it
    /// reached Redis after all and is not sent again.
    pub fn came_back(&mut self, id: StreamId, payload: &[u8]) {
        if self.waiting.is_empty() || self.confirmed.is_some_and(|c| id <= c) {
            return;
        }
        let same = |w: &Waiting| w.sent && w.text.as_bytes() == payload;
        if let Some(at) = self.waiting.iter().position(same) {
            self.waiting.remove(at);
        }
    }

    /// The reader has caught up: everything waiting, in order, to be added now.
    pub fn take(&mut self) -> Vec<String> {
        let waiting = std::mem::take(&mut self.waiting);
        self.resent += waiting.iter().filter(|w| w.sent).count() as u64;
        waiting.into_iter().map(|w| w.text).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::parse(format!("{ms}-0").as_bytes()).unwrap_or_else(|| unreachable!())
    }

    /// Kept events are a multiset: one entry read back forgets one of two equal lines.
    #[test]
    fn resend_one_entry_back_forgets_one_equal_line() {
        let mut resend = Resend::new(10);
        resend.keep(["x".to_string(), "x".to_string()], true);
        resend.came_back(id(5), b"x");
        assert_eq!(resend.take(), ["x"]);
        assert_eq!(resend.resent, 1);
    }

    /// An entry up to the last confirmed id is a confirmed line read late, not a kept one.
    #[test]
    fn resend_an_entry_up_to_the_confirmed_id_is_not_a_kept_one() {
        let mut resend = Resend::new(10);
        resend.confirmed(id(7));
        resend.keep(["x".to_string()], true);
        resend.came_back(id(7), b"x");
        assert_eq!(resend.take(), ["x"]);
    }

    /// Lines never sent cannot have landed: never matched. Past the bound, the oldest go.
    #[test]
    fn resend_unsent_lines_are_never_matched_and_the_oldest_go_past_the_bound() {
        let mut resend = Resend::new(2);
        resend.keep(["a".to_string()], true);
        resend.keep(["b".to_string(), "c".to_string()], false);
        resend.came_back(id(1), b"c");
        assert_eq!(resend.dropped, 1);
        assert_eq!(resend.take(), ["b", "c"]);
        assert_eq!(resend.resent, 0);
    }
}
