//! Where the chat and the bus meet. The chat never holds the bus: it queues what it asks of
//! it, and after every call into the chat the loop has the [`Hub`] hand those requests over,
//! in order ([`Hub::forward`]); what the bus reports goes the other way ([`Hub::absorb`]).
//! Leaving the chat goes through here too, since a departure is an event for the bus.

use std::time::Instant;

use mio::Registry;

use crate::bus::{BusIo, BusNews, Purpose, Request};
use crate::chat::Chat;
use crate::connection::{CloseReason, ConnRef};
use crate::room::Outbox;
use crate::table::ConnTable;
use crate::timers::{Timer, Timers};

/// The chat and the bus it publishes on.
pub(super) struct Hub {
    pub chat: Chat,
    /// Where the chat's events go: here only, or to Redis (`--backplane`).
    pub bus: Box<dyn BusIo>,
    /// A `Notices` timer is set for this instant (so a storm of batches, each with notices
    /// waiting, sets one timer and not one per batch).
    notices_due: Option<Instant>,
}

impl Hub {
    pub fn new(chat: Chat, bus: Box<dyn BusIo>) -> Hub {
        Hub {
            chat,
            bus,
            notices_due: None,
        }
    }

    /// Hands what the bus reported to the chat, and sets the timers the bus asked for.
    pub fn absorb(&mut self, news: Vec<BusNews>, table: &mut ConnTable, timers: &mut Timers) {
        for news in news {
            self.chat.absorb(news, table);
            self.forward(table);
        }
        for at in self.bus.take_deadlines() {
            timers.add(at, Timer::Bus);
        }
    }

    /// The other way: what the chat asked of the bus during the call just made into it, handed
    /// over in order, and what the bus answers at once handed back (a lone server's events
    /// to deliver, a claim granted, whether a room has members elsewhere). The chat never holds
    /// the bus: after every call into the chat, the loop calls this.
    pub fn forward(&mut self, out: &mut ConnTable) {
        while let Some(request) = self.chat.next_request() {
            match request {
                Request::Publish(event) => {
                    if let Some(event) = self.bus.publish(event) {
                        self.chat.deliver(&event, out);
                    }
                }
                Request::Claim(claim) => {
                    let (who, purpose) = (claim.conn, claim.purpose);
                    match self.bus.claim(claim) {
                        Some(claim) => self.chat.claim_answered(claim, true, out),
                        // A `/nick` waits for its answer: the client's next lines stay unread.
                        None if purpose == Purpose::Rename => out.hold(who),
                        None => {}
                    }
                }
                Request::Release(nick) => self.bus.release(&nick),
                Request::Refreshed => self.bus.refreshed(),
                Request::RoomEmptied(key) => self.chat.forget_room(&key, &*self.bus),
            }
        }
    }

    /// `r` leaves the chat (quit, peer closed, idle, a failed write): its connection closes
    /// once its last lines are out, if it still can take them.
    pub fn leave(&mut self, r: ConnRef, reason: CloseReason, table: &mut ConnTable) {
        self.chat.depart(r, reason, table);
        self.forward(table);
    }

    /// `r`'s connection is finished now (reset, read error, too slow): closed in the table,
    /// and out of the chat if it was in it.
    pub fn end(&mut self, r: ConnRef, reason: CloseReason, table: &mut ConnTable) {
        table.close(r, reason.clone());
        self.leave(r, reason, table);
    }

    /// Step 5's chat part, before the flushes: the leave events, a round of join and leave
    /// notices (or a timer for when one may come), then what the chat published goes out on
    /// the bus, once per batch like every other write. If that takes the bus down, the chat
    /// delivers the rest here; a few rounds settle it.
    pub fn end_batch(
        &mut self,
        registry: &Registry,
        now: Instant,
        table: &mut ConnTable,
        timers: &mut Timers,
    ) {
        while self.chat.announce_departures() {
            self.forward(table);
        }
        let next = self.chat.say_notices(now, table);
        self.forward(table);
        if let Some(at) = next
            && self.notices_due.is_none_or(|due| at < due)
        {
            self.notices_due = Some(at);
            timers.add(at, Timer::Notices);
        }
        for _ in 0..4 {
            let news = self.bus.flush(registry, now);
            if news.is_empty() {
                return;
            }
            self.absorb(news, table, timers);
        }
    }

    /// The `Notices` timer fired: the next round may set another.
    pub fn notices_fired(&mut self) {
        self.notices_due = None;
    }
}
