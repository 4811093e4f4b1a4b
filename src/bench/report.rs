//! What a load run measured ([`Report`]), and the two ways it is told: a summary for people
//! and one JSON object for scripts (`scripts/` read it with python).

use std::fmt::Write as _;

use super::{Proto, Rate};

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub proto: Proto,
    pub conns: usize,
    pub threads: usize,
    pub established: usize,
    pub receivers: usize,
    pub refused: usize,
    pub failed: usize,
    pub dropped: usize,
    pub connect_secs: f64,
    pub senders: usize,
    pub rate: Rate,
    pub window: u64,
    pub size: usize,
    pub traffic_secs: f64,
    pub sent: u64,
    pub delivered: u64,
    /// `sent × receivers`: what a lossless server delivers.
    pub expected: u64,
    /// Latency percentiles in microseconds: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// Server RSS in KiB before connecting, with every connection idle, at the end.
    pub rss_kib: Option<[u64; 3]>,
    /// The server's CPU time while every connection sat idle (the hold), seconds, and the
    /// hold's length: near zero means the loop sleeps when there is nothing to do.
    pub server_hold_cpu_secs: Option<f64>,
    pub hold_secs: f64,
    /// The server's CPU time (user + system) during the traffic and drain phases, seconds
    /// (with `--server-pid`). Close to `traffic_secs`: the server's core was the limit.
    pub server_cpu_secs: Option<f64>,
    /// The generator's own CPU time during the traffic and drain phases, seconds. Near
    /// `traffic_secs × threads`, the generator was the limit (see [`Report::generator_bound`]).
    pub traffic_cpu_secs: f64,
    /// The generator's own CPU time (user + system), seconds, and the run's wall time.
    pub cpu_secs: f64,
    pub wall_secs: f64,
}

impl Report {
    pub fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.traffic_secs.max(1e-9)
    }

    pub fn connect_rate(&self) -> f64 {
        self.established as f64 / self.connect_secs.max(1e-9)
    }

    /// The generator's threads were busy at least 90% of the traffic: what it measured is
    /// a lower bound for the server.
    pub fn generator_bound(&self) -> bool {
        self.traffic_secs > 0.0
            && self.traffic_cpu_secs >= 0.9 * self.traffic_secs * self.threads as f64
    }

    /// Server memory per idle connection, in bytes.
    pub fn rss_per_conn(&self) -> Option<f64> {
        let [before, idle, _] = self.rss_kib?;
        (self.established > 0)
            .then(|| (idle.saturating_sub(before) * 1024) as f64 / self.established as f64)
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let proto = self.proto.name();
        let _ = writeln!(
            s,
            "connections: {} of {} established ({proto}), {} refused, {} failed, {} dropped; \
             {:.2} s ({:.0}/s)",
            self.established,
            self.conns,
            self.refused,
            self.failed,
            self.dropped,
            self.connect_secs,
            self.connect_rate()
        );
        let rate = match self.rate {
            Rate::Max => format!("max rate, window {}", self.window),
            Rate::PerSecond(r) => format!("{r} lines/s"),
        };
        let _ = writeln!(
            s,
            "traffic: {} senders, {} receivers, {rate}, {}-byte lines, {:.1} s",
            self.senders, self.receivers, self.size, self.traffic_secs
        );
        let share = if self.expected > 0 {
            100.0 * self.delivered as f64 / self.expected as f64
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "lines: {} sent, {} of {} deliveries ({share:.2}%), {:.0} deliveries/s",
            self.sent,
            self.delivered,
            self.expected,
            self.deliveries_per_sec()
        );
        let [p50, p99, p999, max] = self.latency_us.map(|us| us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "latency: p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms"
        );
        if let Some([before, idle, end]) = self.rss_kib {
            let per_conn = self.rss_per_conn().unwrap_or(0.0);
            let _ = writeln!(
                s,
                "server RSS: {before} KiB before, {idle} KiB idle with {} connections \
                 ({per_conn:.0} bytes each), {end} KiB at the end",
                self.established
            );
        }
        if let Some(hold_cpu) = self.server_hold_cpu_secs {
            let _ = writeln!(
                s,
                "server CPU while idle: {hold_cpu:.2} s over {:.2} s",
                self.hold_secs
            );
        }
        if let Some(server_cpu) = self.server_cpu_secs {
            let _ = writeln!(
                s,
                "server CPU during traffic: {server_cpu:.2} s over {:.2} s",
                self.traffic_secs
            );
        }
        let _ = writeln!(
            s,
            "generator CPU: {:.2} s during the traffic, {:.2} s in all over {:.2} s ({} threads)",
            self.traffic_cpu_secs, self.cpu_secs, self.wall_secs, self.threads
        );
        if self.generator_bound() {
            let _ = writeln!(
                s,
                "note: the generator was busy for over 90% of the traffic: the figures above are \
                 a lower bound for the server (try more --threads, on more cores)"
            );
        }
        s
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let rate = match self.rate {
            Rate::Max => "\"max\"".to_string(),
            Rate::PerSecond(r) => format!("{r}"),
        };
        let rss = match self.rss_kib {
            Some([b, i, e]) => format!(
                "\"rss_kib_before\":{b},\"rss_kib_idle\":{i},\"rss_kib_end\":{e},\
                 \"rss_bytes_per_conn\":{:.1},",
                self.rss_per_conn().unwrap_or(0.0)
            ),
            None => String::new(),
        };
        let mut server_cpu = self
            .server_cpu_secs
            .map_or(String::new(), |c| format!("\"server_cpu_secs\":{c:.3},"));
        if let Some(c) = self.server_hold_cpu_secs {
            let _ = write!(
                server_cpu,
                "\"server_hold_cpu_secs\":{c:.3},\"hold_secs\":{:.3},",
                self.hold_secs
            );
        }
        let [p50, p99, p999, max] = self.latency_us;
        format!(
            "{{\"proto\":\"{}\",\"conns\":{},\"threads\":{},\"established\":{},\
             \"receivers\":{},\"refused\":{},\"failed\":{},\"dropped\":{},\
             \"connect_secs\":{:.3},\"connect_rate\":{:.1},\"senders\":{},\"rate\":{rate},\
             \"window\":{},\"size\":{},\"traffic_secs\":{:.3},\"sent\":{},\"delivered\":{},\
             \"expected\":{},\"deliveries_per_sec\":{:.1},\"latency_us_p50\":{p50},\
             \"latency_us_p99\":{p99},\"latency_us_p999\":{p999},\"latency_us_max\":{max},\
             {rss}{server_cpu}\"generator_traffic_cpu_secs\":{:.3},\
             \"generator_bound\":{},\"generator_cpu_secs\":{:.3},\"wall_secs\":{:.3}}}",
            self.proto.name(),
            self.conns,
            self.threads,
            self.established,
            self.receivers,
            self.refused,
            self.failed,
            self.dropped,
            self.connect_secs,
            self.connect_rate(),
            self.senders,
            self.window,
            self.size,
            self.traffic_secs,
            self.sent,
            self.delivered,
            self.expected,
            self.deliveries_per_sec(),
            self.traffic_cpu_secs,
            self.generator_bound(),
            self.cpu_secs,
            self.wall_secs,
        )
    }
}
