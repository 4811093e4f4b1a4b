//! `/metrics`: the server's counters in Prometheus's text exposition format (version 0.0.4),
//! the same figures `--stats-udp` reports (`stats.rs`), for a Prometheus server to scrape.
//!
//! Each metric has a `# HELP` line (what it counts) and a `# TYPE` line: a `counter` only
//! ever goes up (Prometheus takes its rate; its name ends in `_total`), a `gauge` is a level
//! now. Names start with `pollchat_`. The text is made when a scrape asks for it, from
//! counters the loop keeps anyway, so metrics cost nothing between scrapes.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::state;
use crate::stats::{Gauges, Stats};

/// Transports always listed in `pollchat_clients_by_transport`, so that a query for one finds
/// a 0 rather than nothing while it has no clients.
const TRANSPORTS: [&str; 4] = ["plain", "TLS", "WebSocket", "WebSocket over TLS"];

/// The exposition text.
pub fn render(stats: &Stats, gauges: &Gauges) -> String {
    let mut out = Exposition::default();
    levels(&mut out, stats, gauges);
    counters(&mut out, stats, gauges);
    if let Some(backplane) = &gauges.backplane {
        out.backplane(backplane.get());
    }
    if let Some(state) = &gauges.state {
        kept(&mut out, state);
    }
    out.text
}

/// `--state-dir`'s journal (`state/`): what it wrote, how long the disk kept the loop waiting.
fn kept(out: &mut Exposition, state: &state::Stats) {
    let counters = [
        (
            "state_bytes_written_total",
            "Bytes written to the state file, compactions included.",
            state.bytes_written,
        ),
        (
            "state_records_written_total",
            "Records written to the state file, compactions included.",
            state.records_written,
        ),
        (
            "state_fsyncs_total",
            "Syncs of the state file (--fsync), the loop waiting for the disk.",
            state.fsyncs,
        ),
        (
            "state_compactions_total",
            "Times the state file was rewritten from what the rooms hold.",
            state.compactions,
        ),
        (
            "state_errors_total",
            "Writes and syncs of the state file that failed (logged once).",
            state.errors,
        ),
    ];
    for (name, help, value) in counters {
        out.one(name, "counter", help, value);
    }
    let help = "Seconds the loop spent waiting for the state file's syncs.";
    out.one(
        "state_fsync_seconds_total",
        "counter",
        help,
        state.fsync_seconds,
    );
    let help = "Seconds reading the state file took at start-up.";
    out.one("state_load_seconds", "gauge", help, state.load_seconds);
    let help = "The state file's size now, in bytes.";
    out.one("state_file_bytes", "gauge", help, state.file_bytes);
}

/// The gauges: what the server holds now.
fn levels(out: &mut Exposition, stats: &Stats, gauges: &Gauges) {
    let help = "Seconds since the server started.";
    out.one("uptime_seconds", "gauge", help, stats.uptime_secs());
    let help = "Sockets the server holds now, in any phase.";
    out.one("connections", "gauge", help, gauges.connections_now);
    out.one(
        "clients",
        "gauge",
        "Clients in the chat now.",
        gauges.clients,
    );
    let mut by_transport: BTreeMap<&str, usize> = TRANSPORTS.iter().map(|&t| (t, 0)).collect();
    by_transport.extend(&gauges.clients_by_transport);
    let help = "Clients in the chat now, by transport.";
    out.labelled(
        "clients_by_transport",
        "gauge",
        help,
        "transport",
        by_transport,
    );
    let help = "Rooms this instance keeps, #lobby included.";
    out.one("rooms", "gauge", help, gauges.rooms);
}

/// The write calls on client sockets: with `lines_out_total`, the server's batching.
fn writes(out: &mut Exposition, stats: &Stats) {
    let help = "Write system calls (writev) on client sockets: lines_out_total over this is \
                the batching.";
    out.one("write_calls_total", "counter", help, stats.writes.calls);
    let help = "Bytes those write calls passed to the kernel, framing and encryption included.";
    out.one(
        "write_call_bytes_total",
        "counter",
        help,
        stats.writes.bytes,
    );
}

/// The counters: what happened since the start, each only ever going up.
fn counters(out: &mut Exposition, stats: &Stats, gauges: &Gauges) {
    let counters = [
        (
            "connections_total",
            "Connections accepted, refused ones included.",
            stats.connections_total,
        ),
        (
            "lines_in_total",
            "Lines read from clients, commands included.",
            stats.lines_in,
        ),
        (
            "lines_out_total",
            "Lines queued for clients: deliveries and server lines.",
            stats.lines_out,
        ),
        (
            "bytes_in_total",
            "Bytes read from client sockets.",
            stats.bytes_in,
        ),
        (
            "bytes_out_total",
            "Bytes of output written to clients.",
            stats.bytes_out,
        ),
        (
            "accept_pauses_total",
            "Times accepting paused for lack of descriptors.",
            stats.accept_pauses,
        ),
    ];
    for (name, help, value) in counters {
        out.one(name, "counter", help, value);
    }
    writes(out, stats);
    let help = "Connections closed, by reason.";
    out.labelled(
        "disconnects_total",
        "counter",
        help,
        "reason",
        &stats.disconnects,
    );
    let help = "Connections closed after they had a slot, by reason and transport.";
    out.header("disconnects_by_transport_total", "counter", help);
    for (&(reason, transport), value) in &stats.disconnects_by_transport {
        let labels = format!(
            "reason=\"{}\",transport=\"{}\"",
            escape(reason),
            escape(transport)
        );
        let _ = writeln!(
            out.text,
            "pollchat_disconnects_by_transport_total{{{labels}}} {value}"
        );
    }
    let help =
        "Moderation actions: oper, oper_failed, oper_refused (not checked), kick, ban, unban.";
    let actions = [
        "oper",
        "oper_failed",
        "oper_refused",
        "kick",
        "ban",
        "unban",
    ]
    .map(|a| (a, 0));
    let mut moderation: BTreeMap<&str, u64> = actions.into_iter().collect();
    moderation.extend(&gauges.moderation);
    out.labelled("moderation_total", "counter", help, "action", moderation);
    let help = "HTTP requests answered and closed (all but upgrades), by status.";
    out.labelled(
        "http_responses_total",
        "counter",
        help,
        "code",
        &stats.http_responses,
    );
    let help = "Reloads of the --config file (SIGHUP), by result.";
    out.labelled("reloads_total", "counter", help, "result", &stats.reloads);
}

/// The text being written, one metric at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP pollchat_{name} {help}");
        let _ = writeln!(self.text, "# TYPE pollchat_{name} {kind}");
    }

    /// A metric with one value.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        let _ = writeln!(self.text, "pollchat_{name} {value}");
    }

    /// A metric with one value per value of its label.
    fn labelled<K, V>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (K, V)>,
    ) where
        K: std::fmt::Display,
        V: std::fmt::Display,
    {
        self.header(name, kind, help);
        for (key, value) in values {
            let key = escape(&key.to_string());
            let _ = writeln!(self.text, "pollchat_{name}{{{label}=\"{key}\"}} {value}");
        }
    }

    /// The bus's counters (`--backplane`), from the JSON it reports: its state as a gauge
    /// per state, each number as a counter.
    fn backplane(&mut self, json: &str) {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json) else {
            return;
        };
        for (field, value) in &fields {
            match value {
                Value::String(state) => self.labelled(
                    &format!("backplane_{field}"),
                    "gauge",
                    "The backplane's state now (1 for the one it is in).",
                    field,
                    [(state, 1)],
                ),
                Value::Number(n) => self.one(
                    &format!("backplane_{field}_total"),
                    "counter",
                    "A backplane counter (see the README's Scaling out section).",
                    n,
                ),
                _ => {}
            }
        }
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
