//! The chaos report as scripts read it (`--json`): one object on one line, its fields in a
//! fixed order (serde writes them as declared), the server's own counters embedded as the
//! server sent them. The figures and verdicts are `report.rs`'s; this only says them.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::history::Replays;
use super::operator::Figures;
use super::report::{ChaosReport, RoundFigures, Tally};
use super::rooms::RoomLines;
use crate::report::one_line;

impl ChaosReport {
    /// One JSON object on one line, for scripts: the figures, the server's (with
    /// `--server-pid`) and its counters (with `--server-stats`), each role's counts, each
    /// round's figures, and each check as `"name": "PASS"`.
    pub fn json(&self) -> String {
        let [latency_us_p50, latency_us_p99, latency_us_max] = self.latency_us;
        let [ping_us_p50, ping_us_p99, ping_us_max] = self.ping_us;
        let checks: Vec<(&str, &str)> = self
            .checks
            .iter()
            .map(|c| (c.name, c.outcome.word()))
            .collect();
        one_line(&Json {
            scenario: "chaos",
            passed: self.passed(),
            secs: self.secs,
            rounds: self.rounds.len(),
            lines_sent: self.lines_sent,
            lines_sent_tls: self.lines_sent_tls,
            lines_sent_ws: self.lines_sent_ws,
            deliveries: self.deliveries,
            expected: self.expected,
            rooms: Object(&self.rooms),
            history: self.replays,
            latency_us_p50,
            latency_us_p99,
            latency_us_max,
            pings_sent: self.pings_sent,
            pings_answered: self.pings_answered,
            ping_us_p50,
            ping_us_p99,
            ping_us_max,
            server: self.server_json(),
            server_stats: self.server_stats.as_deref().map(Embedded::new),
            roles: Object(&self.tallies),
            operator: self.operator,
            per_round: (1..).zip(&self.rounds).map(RoundJson::new).collect(),
            checks: Object(&checks),
        })
    }

    /// The server's descriptors and memory for the JSON report: before round 1, at most, and
    /// after the first and the last round (with `--server-pid`).
    fn server_json(&self) -> Option<ServerJson> {
        let ((fds_before, heap_kib_before), heap_kib_peak) = (self.cold?, self.heap_kib_peak?);
        let last = self.rounds.last();
        Some(ServerJson {
            fds_before,
            fds_end: last.and_then(|r| r.fds_end),
            heap_kib_before,
            heap_kib_first_round: self.rounds.first().and_then(|r| r.heap_kib_end),
            heap_kib_peak,
            heap_kib_end: last.and_then(|r| r.heap_kib_end),
        })
    }
}

/// The report as scripts read it, in this order (serde writes the fields as declared).
#[derive(Serialize)]
struct Json<'a> {
    scenario: &'static str,
    passed: bool,
    secs: f64,
    rounds: usize,
    lines_sent: u64,
    lines_sent_tls: u64,
    lines_sent_ws: u64,
    deliveries: u64,
    expected: u64,
    rooms: Object<'a, &'static str, RoomLines>,
    history: Replays,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
    pings_sent: u64,
    pings_answered: u64,
    ping_us_p50: u64,
    ping_us_p99: u64,
    ping_us_max: u64,
    #[serde(flatten)]
    server: Option<ServerJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_stats: Option<Embedded<'a>>,
    roles: Object<'a, &'static str, Tally>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<Figures>,
    per_round: Vec<RoundJson<'a>>,
    checks: Object<'a, &'a str, &'a str>,
}

/// The server's descriptors and memory across the run. The figures after a round are `null`
/// if the server was gone by then.
#[derive(Serialize)]
struct ServerJson {
    fds_before: usize,
    fds_end: Option<usize>,
    heap_kib_before: u64,
    heap_kib_first_round: Option<u64>,
    heap_kib_peak: u64,
    heap_kib_end: Option<u64>,
}

/// One round in the JSON report, numbered from 1.
#[derive(Serialize)]
struct RoundJson<'a> {
    round: usize,
    secs: f64,
    lines_sent: u64,
    deliveries: u64,
    #[serde(flatten)]
    server: Option<RoundServerJson>,
    failed: &'a [&'static str],
}

/// The server after a round: all three figures, or none (see [`RoundFigures::server`]).
#[derive(Serialize)]
struct RoundServerJson {
    fds_end: usize,
    heap_kib_end: u64,
    heap_kib_peak: u64,
}

impl<'a> RoundJson<'a> {
    fn new((round, r): (usize, &'a RoundFigures)) -> RoundJson<'a> {
        RoundJson {
            round,
            secs: r.secs,
            lines_sent: r.lines_sent,
            deliveries: r.deliveries,
            server: r
                .server()
                .map(|(fds_end, heap_kib_end, heap_kib_peak)| RoundServerJson {
                    fds_end,
                    heap_kib_end,
                    heap_kib_peak,
                }),
            failed: &r.failed,
        }
    }
}

/// The server's `--stats-udp` reply: JSON, embedded as the server sent it (its fields in its
/// order, which parsing into a `serde_json::Value` would sort); or, if it is not JSON, a
/// string, so that the report still parses.
#[derive(Serialize)]
#[serde(untagged)]
enum Embedded<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl<'a> Embedded<'a> {
    fn new(reply: &'a str) -> Embedded<'a> {
        serde_json::from_str(reply).map_or(Embedded::Text(reply), Embedded::Json)
    }
}

/// Pairs as one JSON object, in their order: the roles as the table lists them, the checks
/// as the summary does.
struct Object<'a, K, V>(&'a [(K, V)]);

impl<K: Serialize, V: Serialize> Serialize for Object<'_, K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}
