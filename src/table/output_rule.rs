//! `--max-output` and `--output-grace` ([`OutputRule`]): how far behind its reader a client
//! may fall, and for how long, before it is disconnected as too slow. The table asks it when
//! it queues a line (the hard limit, at once) and after every flush (the soft limit, over
//! time).

use std::time::{Duration, Instant};

use log::warn;

use crate::config::Config;
use crate::connection::{CloseReason, ConnRef, Connection};
use crate::connlog::{ConnLog, Kind};
use crate::limits::HARD_OUTPUT_FACTOR;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct OutputRule {
    max_output: usize,
    /// Eight times `--max-output`: past it a client is cut off at once.
    hard_output: usize,
    grace: Duration,
}

impl OutputRule {
    pub fn new(config: &Config) -> OutputRule {
        OutputRule {
            max_output: config.max_output,
            hard_output: config.max_output.saturating_mul(HARD_OUTPUT_FACTOR),
            grace: config.output_grace,
        }
    }

    /// Whether `more` bytes queued for `conn` would put its queue past the hard limit.
    /// Asked for every delivery, so of the queue alone: what its transport holds beyond it is
    /// a few bytes to one TLS record, counted when the flush is judged.
    #[inline]
    pub fn past_hard_limit(&self, conn: &Connection, more: usize) -> bool {
        conn.queued() + more > self.hard_output
    }

    /// `conn` went past the hard limit: why it is closed now, logged on the budget.
    pub fn cut_off(&self, conn: &Connection, to: ConnRef, log: &mut ConnLog) -> CloseReason {
        if log.allow(Kind::Limit, conn.peer().ip()) {
            warn!(
                "{}: over {} bytes of output waiting ({HARD_OUTPUT_FACTOR} times \
                 --max-output), disconnecting (token {})",
                conn.label(),
                self.hard_output,
                to.token
            );
        }
        CloseReason::TooSlow {
            limit: self.max_output,
        }
    }

    /// After a flush, whether `conn` is behind by more than `--max-output`, and since when.
    /// The first flush that leaves it over the limit starts its grace: `Some(when the grace
    /// is over)`, for a `SlowCheck` timer. A flush that brings it back under ends the grace.
    ///
    /// Judged after writing, and not when lines are queued: within one batch the loop may
    /// queue the bursts of many senders for a client before writing it a byte, and a client
    /// that reads takes them within a few round trips. Only a client that stays behind for the
    /// whole grace has stopped reading. A client whose socket still took more when the flush
    /// stopped at the turn's write budget (`taking`) is not behind by its own doing: a loop
    /// short of processor time writes few budgets a second, and would otherwise cut off, as
    /// too slow, readers that took every byte it wrote (2026-12-07, the chaos test's chatters
    /// on a machine busy with other work). It ends the grace like a flush that leaves it
    /// under; the hard limit still bounds what it may hold.
    pub fn judge(&self, conn: &mut Connection, now: Instant, taking: bool) -> Option<Instant> {
        conn.judge_output(self.max_output, now, taking)
            .then_some(now + self.grace)
    }

    /// `conn`'s grace over `--max-output` is over: `Some(limit)` if it is still behind and
    /// must go. (If it caught up meanwhile and fell behind again, a later timer judges that.)
    pub fn too_slow(&self, conn: &Connection, now: Instant) -> Option<usize> {
        let since = conn.over_limit_since()?;
        (since + self.grace <= now).then_some(self.max_output)
    }
}
