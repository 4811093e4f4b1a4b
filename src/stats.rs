//! Counters the loop keeps about itself, reported as one JSON object on `--stats-udp`.
//!
//! A datagram socket sits in the same poll as the stream sockets: a datagram `stats` gets
//! one JSON datagram back. Scripts and the load generator read the server's counters this
//! way without taking a chat slot, and without the server running anything beside its loop.
//! UDP replies are best effort: one that the socket cannot send at once is dropped (the
//! asker times out and asks again), because the loop never waits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// Counts since the server started.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    /// Connections accepted (refused ones included).
    pub connections_total: u64,
    /// Lines read from clients (commands included).
    pub lines_in: u64,
    /// Lines queued for clients: every delivery of a chat line, and every server line.
    pub lines_out: u64,
    /// Bytes read from client sockets.
    pub bytes_in: u64,
    /// Bytes written to client sockets.
    pub bytes_out: u64,
    /// Times accepting paused for lack of descriptors.
    pub accept_pauses: u64,
    /// Connections closed, by reason (see `CloseReason::kind`).
    pub disconnects: BTreeMap<&'static str, u64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            started: Instant::now(),
            connections_total: 0,
            lines_in: 0,
            lines_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            accept_pauses: 0,
            disconnects: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn count_disconnect(&mut self, reason: &crate::connection::CloseReason) {
        *self.disconnects.entry(reason.kind()).or_insert(0) += 1;
    }

    /// The report: these counters plus the two gauges only the loop knows, and the
    /// backplane's counters (`--backplane`) as a JSON object.
    pub fn json(&self, connections_now: usize, clients: usize, backplane: Option<&str>) -> String {
        let backplane = backplane.map_or(String::new(), |b| format!(",\"backplane\":{b}"));
        let mut disconnects = String::new();
        for (i, (reason, count)) in self.disconnects.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(disconnects, "{comma}\"{reason}\":{count}");
        }
        format!(
            "{{\"uptime_secs\":{:.3},\"connections_now\":{connections_now},\
             \"clients\":{clients},\"connections_total\":{},\"lines_in\":{},\
             \"lines_out\":{},\"bytes_in\":{},\"bytes_out\":{},\"accept_pauses\":{},\
             \"disconnects\":{{{disconnects}}}{backplane}}}",
            self.started.elapsed().as_secs_f64(),
            self.connections_total,
            self.lines_in,
            self.lines_out,
            self.bytes_in,
            self.bytes_out,
            self.accept_pauses,
        )
    }
}
