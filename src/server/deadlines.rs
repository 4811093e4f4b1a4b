//! Step 4 of a turn: the timers that came due (`Server::fire_timers` routes each to its
//! owner), and what each one means for a client (`Clients`' checks).
//!
//! Timers are never cancelled (see `timers.rs`): each one checks, when it fires, whether
//! there is still something to do, and a stale one finds nothing.

use std::time::Instant;

use log::{info, warn};

use super::Server;
use super::reader::Clients;
use super::reader::Edge;
use crate::connection::{CloseReason, ConnRef, Phase};
use crate::connlog::Kind;
use crate::protocol;
use crate::timers::Timer;

impl Server {
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(timer) = self.clients.timers.pop_due(now) {
            match timer {
                Timer::Idle(r) => self.clients.check_idle(r, now),
                Timer::RateLimit(r) => {
                    let conn = self.clients.table.get_mut(r);
                    if conn.is_some_and(|c| c.input().unthrottle()) {
                        self.clients.serve_reader(r, now, Edge::Unknown);
                    }
                }
                Timer::SlowCheck(r) => self.clients.check_slow(r, now),
                Timer::Handshake(r) => self.clients.check_handshake(r),
                Timer::Linger(r) => self.clients.table.linger_over(r),
                Timer::ResumeAccept => {
                    (self.listeners).resume(&mut self.clients, self.poll.registry(), now);
                }
                Timer::ShutdownDeadline => self.exit_now = true,
                Timer::Notices => self.clients.hub.notices_fired(),
                Timer::State => self.clients.hub.state_timer(now, &mut self.clients.timers),
                Timer::LogSummary => self.clients.table.log.summarize(now),
                Timer::Bus => {
                    let Clients { hub, scratch, .. } = &mut self.clients;
                    let news = hub.bus.on_timer(self.poll.registry(), scratch, now);
                    self.clients.absorb(news);
                }
            }
        }
    }
}

impl Clients {
    /// The idle timer fired. If the client spoke since it was set, set it again for the new
    /// deadline.
    fn check_idle(&mut self, r: ConnRef, now: Instant) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let Some(conn) = self.table.get(r).filter(|c| c.is_chatting()) else {
            return;
        };
        let deadline = conn.last_heard() + idle;
        if deadline > now {
            self.timers.add(deadline, Timer::Idle(r));
            return;
        }
        if self.table.may_log(Kind::Limit, r)
            && let Some(conn) = self.table.get(r)
        {
            info!("{}: idle timeout", conn.label());
        }
        let notice = protocol::idle_disconnect(idle);
        self.hub.chat.tell(r, &notice, &mut self.table);
        self.hub.leave(r, CloseReason::Idle, &mut self.table);
    }

    /// A client's grace over `--max-output` is over: it goes if it is still behind.
    fn check_slow(&mut self, r: ConnRef, now: Instant) {
        let conn = self.table.get(r).filter(|c| c.is_chatting());
        let Some(limit) = conn.and_then(|c| self.table.rules.output.too_slow(c, now)) else {
            return;
        };
        if self.table.may_log(Kind::Limit, r)
            && let Some(conn) = self.table.get(r)
        {
            warn!(
                "{}: over {limit} bytes of output waiting for {:.1} s, disconnecting",
                conn.label(),
                self.config.output_grace.as_secs_f64()
            );
        }
        self.hub
            .end(r, CloseReason::TooSlow { limit }, &mut self.table);
    }

    /// A connection's handshake timeout: closed if its transport is still not ready. It was
    /// never in the chat, so nobody hears of it.
    fn check_handshake(&mut self, r: ConnRef) {
        let Some(conn) = self.table.get(r) else {
            return;
        };
        if *conn.phase() != Phase::Handshaking {
            return;
        }
        let (by, peer) = (conn.transport_name(), conn.peer());
        if self.table.may_log(Kind::Refused, r) {
            info!("{peer}: {by} handshake not finished in time, closing");
        }
        self.table.close(r, CloseReason::HandshakeTimeout(by));
    }
}
