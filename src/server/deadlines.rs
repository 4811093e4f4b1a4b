//! Step 4 of a turn: the timers that came due, and what each one means.
//!
//! Timers are never cancelled (see `timers.rs`): each one checks, when it fires, whether
//! there is still something to do, and a stale one finds nothing.

use std::time::Instant;

use log::{debug, info, warn};

use super::Server;
use super::reader::Edge;
use crate::connection::{CloseReason, ConnRef, Phase};
use crate::connlog::Kind;
use crate::protocol;
use crate::timers::Timer;

impl Server {
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Idle(r) => self.check_idle(r, now),
                Timer::RateLimit(r) => {
                    let conn = self.table.get_mut(r);
                    if conn.is_some_and(|c| c.input().unthrottle()) {
                        self.serve_reader(r, now, Edge::Unknown);
                    }
                }
                Timer::SlowCheck(r) => self.check_slow(r, now),
                Timer::Handshake(r) => self.check_handshake(r),
                Timer::Linger(r) => self.table.linger_over(r),
                Timer::ResumeAccept => self.resume_accepting(now),
                Timer::ShutdownDeadline => self.exit_now = true,
                Timer::Notices => self.hub.notices_fired(),
                Timer::LogSummary => self.table.log.summarize(now),
                Timer::Bus => {
                    let news = self.hub.bus.on_timer(self.poll.registry(), now);
                    self.hub.absorb(news, &mut self.table, &mut self.timers);
                }
            }
        }
    }

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
        let Some(limit) = conn.and_then(|c| self.table.output.too_slow(c, now)) else {
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

    /// Drops timers of connections that are gone, once they outnumber the live ones (see
    /// `timers.rs` for why this is needed and why it is cheap).
    pub(super) fn sweep_dead_timers(&mut self) {
        let live = self.table.len();
        if self.timers.len() <= 2 * live + 64 {
            return;
        }
        let before = self.timers.len();
        let table = &self.table;
        self.timers.retain(|timer| match timer {
            Timer::Idle(r)
            | Timer::RateLimit(r)
            | Timer::SlowCheck(r)
            | Timer::Linger(r)
            | Timer::Handshake(r) => table.get(*r).is_some(),
            Timer::ResumeAccept
            | Timer::ShutdownDeadline
            | Timer::Bus
            | Timer::Notices
            | Timer::LogSummary => true,
        });
        debug!("swept {} dead timers", before - self.timers.len());
    }
}
