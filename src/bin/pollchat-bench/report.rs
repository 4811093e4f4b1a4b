//! What a load run measured ([`Report`]), and the two ways it is told: a summary for people
//! and one JSON object for scripts (`scripts/` read it with python).

use std::fmt::Write as _;

use serde::Serialize;

use super::procfs::{KernelGrowth, WriteCalls};
use super::{Proto, Rate, Writes};

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub proto: Proto,
    pub conns: usize,
    pub threads: usize,
    pub established: usize,
    pub receivers: usize,
    /// `--rooms`, and the fewest and most receivers any room had.
    pub rooms: usize,
    pub receivers_per_room: [usize; 2],
    /// Senders times receivers, room by room: the pairs a line in flight can be owed to.
    pub pairs: u64,
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
    /// With `--rate max`: lines that every receiver has (all of `sent`, once drained).
    pub lines_done: u64,
    pub delivered: u64,
    /// Benchmark lines heard in a room their sender is not in: the server's leak, never
    /// counted as deliveries. Zero from a server that keeps rooms apart.
    pub foreign: u64,
    /// `sent × receivers`, room by room: what a lossless server delivers.
    pub expected: u64,
    /// Latency percentiles in microseconds: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// Server RSS in KiB before connecting, with every connection idle, at the end.
    pub rss_kib: Option<[u64; 3]>,
    /// How the kernel's memory grew from before the connections to the hold, machine-wide.
    /// On loopback both ends of every connection are in this kernel.
    pub kernel_idle: Option<KernelGrowth>,
    /// The server's CPU time while every connection sat idle (the hold), seconds, and the
    /// hold's length: near zero means the loop sleeps when there is nothing to do.
    pub server_hold_cpu_secs: Option<f64>,
    pub hold_secs: f64,
    /// The server's CPU time (user + system) during the traffic and drain phases, seconds
    /// (with `--server-pid`). Close to `traffic_secs`: the server's core was the limit.
    pub server_cpu_secs: Option<f64>,
    /// The server's write system calls during the traffic and drain, and their bytes (with
    /// `--server-pid`, from /proc/PID/io): its batching, as [`Report::lines_per_write`].
    pub server_writes: Option<WriteCalls>,
    /// How the senders wrote (`--writes`).
    pub writes: Writes,
    /// The generator's own CPU time during the traffic and drain phases, seconds. Near
    /// `traffic_secs × threads`, the generator was the limit (see [`Report::generator_bound`]).
    pub traffic_cpu_secs: f64,
    /// The part of `traffic_cpu_secs` spent in the kernel (reads, writes, loopback TCP).
    pub traffic_sys_secs: f64,
    /// CPU time the machine's virtual CPUs lost to the host during the traffic (all CPUs):
    /// on a shared virtual machine, why two runs of the same load can differ.
    pub steal_secs: f64,
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

    /// The server's core was busy at least 90% of the traffic.
    pub fn server_bound(&self) -> bool {
        self.traffic_secs > 0.0
            && self
                .server_cpu_secs
                .is_some_and(|cpu| cpu >= 0.9 * self.traffic_secs)
    }

    /// What limited the run, in words: whose CPU was the ceiling, or neither (then the load
    /// itself, a paced rate or the window's round trip, set the pace).
    pub fn limit(&self) -> &'static str {
        match (self.server_bound(), self.generator_bound()) {
            (true, true) => "server CPU and generator CPU",
            (true, false) => "server CPU",
            (false, true) => "generator CPU",
            (false, false) => "neither CPU",
        }
    }

    /// With `--rate max`: deliveries in flight at any moment, at most (window × senders ×
    /// receivers, room by room).
    pub fn in_flight(&self) -> Option<u64> {
        (self.rate == Rate::Max).then(|| self.window * self.pairs)
    }

    /// With `--rate max`: Little's law, the mean time from a line's send to its last
    /// delivery, in microseconds: deliveries in flight over deliveries per second.
    pub fn line_time_us(&self) -> Option<f64> {
        let rate = self.deliveries_per_sec();
        (rate > 0.0).then_some(1e6 * self.in_flight()? as f64 / rate)
    }

    /// Deliveries per server write call: how many lines one `writev` carried, on average.
    /// The server's other writes (its log, a stats reply) count too, so this is a floor.
    pub fn lines_per_write(&self) -> Option<f64> {
        let writes = self.server_writes?;
        (writes.calls > 0).then(|| self.delivered as f64 / writes.calls as f64)
    }

    /// Bytes per server write call.
    pub fn bytes_per_write(&self) -> Option<f64> {
        let writes = self.server_writes?;
        (writes.calls > 0).then(|| writes.bytes as f64 / writes.calls as f64)
    }

    /// Server memory per idle connection, in bytes.
    pub fn rss_per_conn(&self) -> Option<f64> {
        let [before, idle, _] = self.rss_kib?;
        (self.established > 0)
            .then(|| (idle.saturating_sub(before) * 1024) as f64 / self.established as f64)
    }

    /// Kernel memory per idle connection, in bytes, for the server's end: the growth of the
    /// socket caches over the hold, halved, since on loopback the generator's end of each
    /// connection is in the same kernel and holds the same things (a TCP socket, its inode
    /// and file, an epoll entry). An idle socket holds no buffers: TCP's buffer pages are
    /// reported beside it, machine-wide, not in it.
    pub fn kernel_per_conn(&self) -> Option<f64> {
        let growth = self.kernel_idle.as_ref()?;
        (self.established > 0).then(|| growth.sockets as f64 / (2.0 * self.established as f64))
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        self.write_traffic(&mut s);
        self.write_resources(&mut s);
        s
    }

    /// The summary's first lines: connections, traffic, lines, latency.
    fn write_traffic(&self, s: &mut String) {
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
        let writes = match self.writes {
            Writes::Line => "one write per line",
            Writes::Batch => "lines batched per write",
        };
        let _ = writeln!(
            s,
            "traffic: {} senders ({writes}), {} receivers, {rate}, {}-byte lines, {:.1} s",
            self.senders, self.receivers, self.size, self.traffic_secs
        );
        self.write_rooms(s);
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
        self.write_batching(s);
        let [p50, p99, p999, max] = self.latency_us.map(|us| us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "latency: p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms"
        );
        if let (Some(in_flight), Some(line_us)) = (self.in_flight(), self.line_time_us()) {
            let _ = writeln!(
                s,
                "window: {} of {} lines had by every receiver; {in_flight} deliveries in flight \
                 at most, so a line took {:.2} ms to reach them all (Little's law)",
                self.lines_done,
                self.sent,
                line_us / 1000.0
            );
        }
    }

    /// With `--server-pid`: the server's write calls, and deliveries and bytes per call (its
    /// batching).
    fn write_batching(&self, s: &mut String) {
        if let (Some(lines), Some(bytes), Some(w)) = (
            self.lines_per_write(),
            self.bytes_per_write(),
            self.server_writes,
        ) {
            let _ = writeln!(
                s,
                "server writes: {} calls, {lines:.1} deliveries and {bytes:.0} bytes per call",
                w.calls
            );
        }
    }

    /// With `--rooms` above 1: the rooms, and the lines that reached another room's
    /// connections (the server's bug, so it must be 0).
    fn write_rooms(&self, s: &mut String) {
        if self.rooms <= 1 {
            return;
        }
        let [fewest, most] = self.receivers_per_room;
        let leaked = if self.foreign > 0 {
            " (the server let lines out of their room)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "rooms: {} (#bench-0 .. #bench-{}), {fewest} to {most} receivers each; lines from \
             other rooms: {}{leaked}",
            self.rooms,
            self.rooms - 1,
            self.foreign,
        );
    }

    /// The server's memory, and the kernel's for its idle connections.
    fn write_memory(&self, s: &mut String) {
        if let Some([before, idle, end]) = self.rss_kib {
            let per_conn = self.rss_per_conn().unwrap_or(0.0);
            let _ = writeln!(
                s,
                "server RSS: {before} KiB before, {idle} KiB idle with {} connections \
                 ({per_conn:.0} bytes each), {end} KiB at the end",
                self.established
            );
        }
        if let (Some(kernel), Some(growth)) = (self.kernel_per_conn(), &self.kernel_idle) {
            let caches: Vec<String> = growth
                .caches
                .iter()
                .map(|(name, bytes)| format!("{name} {bytes}"))
                .collect();
            let _ = writeln!(
                s,
                "kernel memory: {kernel:.0} bytes per idle connection, the server's end (socket \
                 caches grew {} bytes for both ends; all slab {}, TCP buffers {}; most: {})",
                growth.sockets,
                growth.slab,
                growth.tcp_buffers,
                caches.join(", ")
            );
        }
    }

    /// The summary's last lines: the server's memory and CPU, the generator's CPU, and
    /// whether the generator was the limit.
    fn write_resources(&self, s: &mut String) {
        self.write_memory(s);
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
            "generator CPU: {:.2} s during the traffic ({:.2} s of it in the kernel), {:.2} s in \
             all over {:.2} s ({} threads)",
            self.traffic_cpu_secs,
            self.traffic_sys_secs,
            self.cpu_secs,
            self.wall_secs,
            self.threads
        );
        let _ = writeln!(
            s,
            "limit: {}; {:.2} s of CPU stolen by the host during the traffic",
            self.limit(),
            self.steal_secs
        );
        if self.generator_bound() {
            let _ = writeln!(
                s,
                "note: the generator was busy for over 90% of the traffic: the figures above are \
                 a lower bound for the server (try more --threads, on more cores)"
            );
        }
    }

    /// One JSON object on one line, for scripts: the figures above and those derived from
    /// them, flat.
    pub fn json(&self) -> String {
        let [p50, p99, p999, max] = self.latency_us;
        one_line(&Json {
            proto: self.proto.name(),
            conns: self.conns,
            threads: self.threads,
            established: self.established,
            receivers: self.receivers,
            rooms: self.rooms,
            receivers_per_room_min: self.receivers_per_room[0],
            receivers_per_room_max: self.receivers_per_room[1],
            refused: self.refused,
            failed: self.failed,
            dropped: self.dropped,
            connect_secs: self.connect_secs,
            connect_rate: self.connect_rate(),
            senders: self.senders,
            writes: self.writes,
            rate: self.rate,
            window: self.window,
            size: self.size,
            traffic_secs: self.traffic_secs,
            sent: self.sent,
            lines_done: self.lines_done,
            delivered: self.delivered,
            foreign_lines: self.foreign,
            expected: self.expected,
            deliveries_per_sec: self.deliveries_per_sec(),
            in_flight: self.in_flight(),
            line_time_us: self.line_time_us(),
            latency_us_p50: p50,
            latency_us_p99: p99,
            latency_us_p999: p999,
            latency_us_max: max,
            rss: self.rss_kib.map(|[before, idle, end]| RssJson {
                rss_kib_before: before,
                rss_kib_idle: idle,
                rss_kib_end: end,
                rss_bytes_per_conn: self.rss_per_conn().unwrap_or(0.0),
            }),
            kernel: self.kernel_idle.as_ref().map(|growth| KernelJson {
                kernel_bytes_per_conn: self.kernel_per_conn().unwrap_or(0.0),
                kernel_socket_cache_growth: growth.sockets,
                kernel_slab_growth: growth.slab,
                kernel_tcp_buffer_growth: growth.tcp_buffers,
                kernel_caches: growth.caches.clone(),
            }),
            server_cpu_secs: self.server_cpu_secs,
            server_writes: self.server_writes.map(|w| WritesJson {
                server_write_calls: w.calls,
                server_write_bytes: w.bytes,
                lines_per_write: self.lines_per_write().unwrap_or(0.0),
                bytes_per_write: self.bytes_per_write().unwrap_or(0.0),
            }),
            hold: self.server_hold_cpu_secs.map(|cpu| HoldJson {
                server_hold_cpu_secs: cpu,
                hold_secs: self.hold_secs,
            }),
            generator_traffic_cpu_secs: self.traffic_cpu_secs,
            generator_traffic_sys_secs: self.traffic_sys_secs,
            steal_secs: self.steal_secs,
            generator_bound: self.generator_bound(),
            server_bound: self.server_bound(),
            limit: self.limit(),
            generator_cpu_secs: self.cpu_secs,
            wall_secs: self.wall_secs,
        })
    }
}

/// The report as scripts read it: the figures of [`Report`] and those derived from them,
/// flat, in this order (serde writes the fields as declared). What needs `--server-pid` is
/// left out without it.
#[derive(Serialize)]
struct Json {
    proto: &'static str,
    conns: usize,
    threads: usize,
    established: usize,
    receivers: usize,
    rooms: usize,
    receivers_per_room_min: usize,
    receivers_per_room_max: usize,
    refused: usize,
    failed: usize,
    dropped: usize,
    connect_secs: f64,
    connect_rate: f64,
    senders: usize,
    /// `"line"` or `"batch"` (`--writes`).
    writes: Writes,
    /// The number, or `"max"`.
    rate: Rate,
    window: u64,
    size: usize,
    traffic_secs: f64,
    sent: u64,
    lines_done: u64,
    delivered: u64,
    /// Lines heard in another room than their sender's: the server's leak.
    foreign_lines: u64,
    expected: u64,
    deliveries_per_sec: f64,
    /// With `--rate max`: deliveries in flight at most, and Little's law's line time.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_time_us: Option<f64>,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_p999: u64,
    latency_us_max: u64,
    #[serde(flatten)]
    rss: Option<RssJson>,
    #[serde(flatten)]
    kernel: Option<KernelJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_secs: Option<f64>,
    #[serde(flatten)]
    server_writes: Option<WritesJson>,
    #[serde(flatten)]
    hold: Option<HoldJson>,
    generator_traffic_cpu_secs: f64,
    generator_traffic_sys_secs: f64,
    steal_secs: f64,
    generator_bound: bool,
    server_bound: bool,
    limit: &'static str,
    generator_cpu_secs: f64,
    wall_secs: f64,
}

/// The server's memory: all four fields or none.
#[derive(Serialize)]
struct RssJson {
    rss_kib_before: u64,
    rss_kib_idle: u64,
    rss_kib_end: u64,
    rss_bytes_per_conn: f64,
}

/// What the idle connections cost the kernel: per connection (the server's end), and the
/// machine-wide growth it comes from, with the caches that grew most (bytes, both ends).
#[derive(Serialize)]
struct KernelJson {
    kernel_bytes_per_conn: f64,
    kernel_socket_cache_growth: i64,
    kernel_slab_growth: i64,
    kernel_tcp_buffer_growth: i64,
    kernel_caches: Vec<(String, i64)>,
}

/// The server's write calls during the traffic (all four fields or none).
#[derive(Serialize)]
struct WritesJson {
    server_write_calls: u64,
    server_write_bytes: u64,
    lines_per_write: f64,
    bytes_per_write: f64,
}

/// The server's CPU time during the hold, with the hold's length to judge it by.
#[derive(Serialize)]
struct HoldJson {
    server_hold_cpu_secs: f64,
    hold_secs: f64,
}

/// `value` as JSON on one line. serde_json fails only on a map whose keys are not strings,
/// or on a `Serialize` that fails by itself; the reports have neither, and should one ever
/// fail, the line says why and still parses.
pub(super) fn one_line(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of 10 connections, with the server's figures when `server` (as `--server-pid`
    /// gives them).
    fn report(rate: Rate, server: bool) -> Report {
        Report {
            proto: Proto::Pollchat,
            conns: 10,
            threads: 1,
            established: 10,
            receivers: 9,
            rooms: 1,
            receivers_per_room: [9, 9],
            pairs: 9,
            refused: 0,
            failed: 0,
            dropped: 0,
            connect_secs: 0.01,
            senders: 1,
            rate,
            window: 64,
            size: 64,
            traffic_secs: 1.0,
            sent: 100,
            lines_done: 100,
            delivered: 900,
            foreign: 0,
            expected: 900,
            latency_us: [100, 200, 300, 400],
            rss_kib: server.then_some([3_000, 3_100, 3_200]),
            kernel_idle: None,
            server_hold_cpu_secs: server.then_some(0.0),
            hold_secs: 1.0,
            server_cpu_secs: server.then_some(0.5),
            server_writes: server.then_some(WriteCalls {
                calls: 30,
                bytes: 900 * 80,
            }),
            writes: Writes::Line,
            traffic_cpu_secs: 0.2,
            traffic_sys_secs: 0.1,
            steal_secs: 0.0,
            cpu_secs: 0.3,
            wall_secs: 2.0,
        }
    }

    fn parsed(report: &Report) -> serde_json::Value {
        serde_json::from_str(&report.json()).unwrap()
    }

    /// The batching figure is deliveries per server write call: 900 deliveries in 30 calls.
    #[test]
    fn lines_per_write_is_deliveries_over_the_servers_write_calls() {
        let with = report(Rate::Max, true);
        assert_eq!(with.lines_per_write(), Some(30.0));
        assert!(
            with.summary()
                .contains("30 calls, 30.0 deliveries and 2400 bytes per call")
        );
        assert_eq!(report(Rate::Max, false).lines_per_write(), None);
    }

    #[test]
    fn json_gives_max_as_a_word_and_a_rate_as_a_number() {
        assert_eq!(parsed(&report(Rate::Max, false))["rate"], "max");
        assert_eq!(
            parsed(&report(Rate::PerSecond(200.0), false))["rate"],
            200.0
        );
    }

    #[test]
    fn json_leaves_out_the_server_figures_without_a_server_pid() {
        let json = report(Rate::Max, false).json();
        for key in [
            "rss_kib_before",
            "server_cpu_secs",
            "server_write_calls",
            "lines_per_write",
            "server_hold_cpu_secs",
            "hold_secs",
        ] {
            assert!(!json.contains(key), "{key} in {json}");
        }
    }

    #[test]
    fn json_puts_the_server_figures_between_latency_and_the_generator() {
        let json = report(Rate::Max, true).json();
        let order = [
            "\"latency_us_max\":400",
            "\"rss_kib_before\":3000,\"rss_kib_idle\":3100,\"rss_kib_end\":3200",
            "\"rss_bytes_per_conn\":",
            "\"server_cpu_secs\":0.5",
            "\"server_write_calls\":30,\"server_write_bytes\":72000,\"lines_per_write\":30.0",
            "\"server_hold_cpu_secs\":0.0,\"hold_secs\":1.0",
            "\"generator_traffic_cpu_secs\":",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|key| {
                json.find(key)
                    .unwrap_or_else(|| panic!("{key} not in {json}"))
            })
            .collect();
        assert!(at.is_sorted(), "{json}");
    }
}
