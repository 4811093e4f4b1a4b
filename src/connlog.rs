//! Per-connection log lines on a budget, so a connection storm cannot make the log the
//! bottleneck.
//!
//! An operator wants a line for each connect and disconnect, each refusal and each limit a
//! client hits. In a storm those are tens of thousands a second: formatting and writing them
//! would take the loop's time, and the log would fill with them. So each such line asks
//! [`ConnLog::allow`] first. Up to [`CONN_LOG_BURST`] at once and [`CONN_LOG_PER_SEC`] a
//! second are written as they happen, which a healthy server never exceeds; past that they
//! are counted, by kind and by address, and every [`CONN_LOG_SUMMARY`] one warning says what
//! was held back: `9,862 connection log lines not written one by one in the last 10 s (4,933
//! connects, 4,929 disconnects); most from 127.0.0.1 (9,862)`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use log::warn;

use crate::connection::{CloseReason, Connection, Phase};
use crate::limits::{CONN_LOG_ADDRESSES, CONN_LOG_BURST, CONN_LOG_PER_SEC, CONN_LOG_SUMMARY};
use crate::rate_limit::TokenBucket;

/// What a per-connection log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    /// Refused as it arrived: server full, too many from its address, connecting too fast.
    Refused,
    /// A limit hit by a client: too slow, line too long, flood control, a bad handshake.
    Limit,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::Connect, "connects"),
    (Kind::Disconnect, "disconnects"),
    (Kind::Refused, "refusals"),
    (Kind::Limit, "limits hit"),
];

#[derive(Debug)]
pub struct ConnLog {
    budget: TokenBucket,
    /// Lines held back since the last summary, by kind (in [`KINDS`] order).
    held: [u64; 4],
    /// ... and by client address, for at most [`CONN_LOG_ADDRESSES`] addresses.
    by_address: HashMap<IpAddr, u64>,
    since: Instant,
    /// When the next summary is due, if lines are being held back.
    due: Option<Instant>,
    /// `due` is new: the loop has not set a timer for it yet.
    unarmed: bool,
}

impl ConnLog {
    pub fn new(now: Instant) -> ConnLog {
        ConnLog {
            budget: TokenBucket::new(CONN_LOG_PER_SEC, CONN_LOG_BURST, now),
            held: [0; 4],
            by_address: HashMap::new(),
            since: now,
            due: None,
            unarmed: false,
        }
    }

    /// Whether one more line of `kind` about a client from `addr` may be written now. If
    /// not, it is counted for the summary.
    pub fn allow(&mut self, kind: Kind, addr: IpAddr) -> bool {
        let now = Instant::now();
        if self.budget.try_take(now) {
            return true;
        }
        if let Some(i) = KINDS.iter().position(|(k, _)| *k == kind) {
            self.held[i] += 1;
        }
        if self.by_address.len() < CONN_LOG_ADDRESSES || self.by_address.contains_key(&addr) {
            *self.by_address.entry(addr).or_insert(0) += 1;
        }
        if self.due.is_none() {
            self.due = Some(now + CONN_LOG_SUMMARY);
            self.unarmed = true;
        }
        false
    }

    /// The line a connection's end is logged with, on the budget: why it closed, and what
    /// it was owed still unsent. An answered HTTP request was never a chat client: its end is
    /// not news (debug).
    pub fn disconnected(&mut self, conn: &Connection) {
        let (reason, level) = match conn.phase() {
            Phase::Closed(reason) if matches!(**reason, CloseReason::Answered(_)) => {
                (reason.to_string(), log::Level::Debug)
            }
            Phase::Closed(reason) => (reason.to_string(), log::Level::Info),
            other => (format!("{other:?}"), log::Level::Info),
        };
        if !log::log_enabled!(level) || !self.allow(Kind::Disconnect, conn.peer().ip()) {
            return;
        }
        match conn.unsent() {
            0 => log::log!(level, "{} disconnected: {reason}", conn.label()),
            unsent => log::log!(
                level,
                "{} disconnected: {reason}; {unsent} bytes unsent",
                conn.label()
            ),
        }
    }

    /// When a summary falls due, the first time it is asked (for the loop's timer).
    pub fn take_deadline(&mut self) -> Option<Instant> {
        std::mem::take(&mut self.unarmed)
            .then_some(self.due)
            .flatten()
    }

    /// The summary's deadline passed: what was held back is said, and counting starts over.
    pub fn summarize(&mut self, now: Instant) {
        if self.due.is_none_or(|due| due > now) {
            return;
        }
        let total: u64 = self.held.iter().sum();
        let kinds: Vec<String> = KINDS
            .iter()
            .zip(self.held)
            .filter(|(_, n)| *n > 0)
            .map(|((_, name), n)| format!("{} {name}", thousands(n)))
            .collect();
        let mut top: Vec<(IpAddr, u64)> = self.by_address.drain().collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<String> = top
            .iter()
            .take(3)
            .map(|(addr, n)| format!("{addr} ({})", thousands(*n)))
            .collect();
        let secs = now.saturating_duration_since(self.since).as_secs_f64();
        warn!(
            "{} connection log lines not written one by one in the last {secs:.0} s ({}); \
             most from {}",
            thousands(total),
            kinds.join(", "),
            top.join(", ")
        );
        self.held = [0; 4];
        self.since = now;
        self.due = None;
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_held_back_and_one_summary_is_due() {
        let mut log = ConnLog::new(Instant::now());
        let ip = IpAddr::from([127, 0, 0, 1]);
        let written = (0..5000).filter(|_| log.allow(Kind::Connect, ip)).count();
        assert!(written < 5000, "nothing held back");
        assert!(written as u64 >= u64::from(CONN_LOG_BURST));
        assert!(log.take_deadline().is_some());
        assert!(log.take_deadline().is_none(), "one timer per summary");
        assert_eq!(log.held[0], 5000 - written as u64);
    }

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
