//! `pollchat bench`: the load generator. It measures how many connections a chat server
//! holds and how fast it fans lines out, for pollchat or Redis pub/sub, with one tool and one
//! method.
//!
//! A run goes through fixed phases, each bounded in time, so it always ends by itself:
//!
//! 1. **connect** `--conns` connections at `--connect-rate` (paced, so the number measures
//!    the server, not the kernel's backlog);
//! 2. **hold** them idle for `--hold` seconds, and read the server's memory (`--server-pid`);
//! 3. **traffic**: the first `--senders` connections send `--size`-byte lines for
//!    `--duration` seconds, each at `--rate / senders` lines per second, or, with
//!    `--rate max`, as fast as the server takes them with at most `--window` lines in flight
//!    per sender. Every other connection is a receiver that counts and times each line;
//! 4. **drain**: senders stop; receivers count what is still on its way (up to 5 s);
//! 5. **stop**: every connection is closed with a reset (no TIME_WAIT left behind).
//!
//! The work is spread over `--threads` worker threads, each a mio loop of its own (see
//! `worker.rs`). Senders and receivers are spread over them round-robin, and connections
//! over the `--target`s (instances of one chat, joined by `--backplane`) round-robin too.

pub mod chaos;
pub mod invariants;
mod wire;
mod worker;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

pub use wire::Proto;
use worker::{Load, Plan, Shared, phase};

/// How long receivers may keep counting after the senders stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The sending rate: lines per second in total, or as fast as the window allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r)),
            _ => Err(format!(
                "{s:?} is not a positive number of lines per second or \"max\""
            )),
        }
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Connections held, deliveries per second, latency, memory (the phases above).
    Load,
    /// Misbehaving clients around well-behaved chatters; PASS/FAIL per promise (`chaos.rs`).
    Chaos,
}

/// Measure a chat server: connections held, fan-out rate, latency, memory; or, with
/// `--scenario chaos`, whether it keeps its promises under abuse.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// load: measure; chaos: check the server's promises under misbehaving clients
    #[arg(long, value_enum, default_value_t = Scenario::Load)]
    pub scenario: Scenario,

    /// Server to load (loopback unless you mean otherwise); repeat to spread the connections
    /// round-robin over several instances of one chat (--backplane). Chaos uses the first
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub target: Vec<SocketAddr>,

    /// Protocol of the server
    #[arg(long, value_enum, default_value_t = Proto::Pollchat)]
    pub proto: Proto,

    /// Connections to open (chaos: misbehaving connections open at once)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub conns: usize,

    /// Connections opened per second (chaos: misbehaving ones)
    #[arg(long, value_name = "PER_SEC", default_value_t = 5000.0)]
    pub connect_rate: f64,

    /// Seconds to hold the connections idle before the traffic
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub hold: f64,

    /// Connections that send (the rest receive)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub senders: usize,

    /// Total lines per second from all senders, or "max"
    #[arg(long, value_name = "LINES_PER_SEC", default_value = "max")]
    pub rate: Rate,

    /// Senders are chatters too: count the lines they receive. For Redis each sender then
    /// gets a second, subscribed connection (a subscribed connection cannot PUBLISH)
    #[arg(long)]
    pub senders_receive: bool,

    /// With --rate max: lines each sender may have in flight
    #[arg(long, value_name = "LINES", default_value_t = 64)]
    pub window: u64,

    /// Seconds of traffic (chaos: of misbehaviour)
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,

    /// Bytes of text per line
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,

    /// Worker threads, each with its own poll loop (at most the number of cores)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Process id of the server, to report its memory (from /proc/PID/status)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Spread connections over this many source addresses 127.0.0.1, 127.0.0.2, ... (one
    /// address has about 28,000 ephemeral ports)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub source_ips: u8,

    /// Chaos: well-behaved chatters, whose every line is checked (with --tls-target, every
    /// other one over TLS)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub chatters: usize,

    /// Chaos: lines per second each chatter sends (keep it under the server's --rate)
    #[arg(long, value_name = "LINES_PER_SEC", default_value_t = 2.0)]
    pub chat_rate: f64,

    /// Chaos: connections in each of the two connect storms (set the server's --max-clients
    /// below chatters + conns + storm to see it refuse)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub storm: usize,

    /// Chaos: rounds, each a full join, chaos, calm, leave and settle with fresh clients.
    /// Every round must keep every promise; memory after the last round is compared with
    /// memory after the first, because the allocator keeps freed memory for reuse (a leak
    /// grows round over round, retention does not). With 1, memory is compared with the
    /// server's before the run, which malloc's retention will usually fail
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub rounds: u32,

    /// Chaos: seed for the misbehaving clients' lifetimes (same seed, same schedule)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Chaos: the server's TLS listener. Every other chatter connects there, through rustls,
    /// and TLS misbehaving clients join the others (garbage instead of a handshake, a stalled
    /// handshake, a TLS client that stops reading). Needs --tls-ca
    #[arg(long, value_name = "ADDR", requires = "tls_ca")]
    pub tls_target: Option<SocketAddr>,

    /// Chaos: the PEM certificate(s) to trust for --tls-target (e.g. the server's own
    /// self-signed certificate). The name checked is the target's IP address
    #[arg(long, value_name = "PEM", requires = "tls_target")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// The server's --stats-udp address, to report its counters at the end
    #[arg(long, value_name = "ADDR")]
    pub server_stats: Option<SocketAddr>,

    /// Print one JSON object instead of the summary
    #[arg(long)]
    pub json: bool,
}

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

/// Runs the benchmark. Errors are the operator's (bad arguments) or the machine's.
pub fn run(args: &BenchArgs) -> Result<Report, String> {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    if args.threads == 0 || args.threads > cores {
        return Err(format!(
            "--threads must be 1 to {cores} (the number of cores)"
        ));
    }
    if args.senders > args.conns || (args.senders == args.conns && !args.senders_receive) {
        return Err(
            "--senders must be fewer than --conns (someone has to receive), \
             or equal with --senders-receive"
                .into(),
        );
    }
    if args.rate == Rate::Max && args.senders == args.conns {
        return Err("--rate max needs at least one pure receiver to pace the window".into());
    }
    if args.target.is_empty() {
        return Err("--target: give at least one server address".into());
    }
    let remote = args.target.iter().any(|t| !t.ip().is_loopback());
    if args.source_ips == 0 || (args.source_ips > 1 && remote) {
        return Err("--source-ips spreads over 127.0.0.x: only for a loopback --target".into());
    }
    let started = Instant::now();
    let cpu_before = own_cpu_secs();
    let source_ips: Vec<IpAddr> = if args.source_ips > 1 {
        (1..=args.source_ips)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect()
    } else {
        Vec::new()
    };
    let load = match args.rate {
        Rate::Max => Load::Window {
            window: args.window.max(1),
        },
        Rate::PerSecond(r) => Load::Paced {
            interval: Duration::from_secs_f64(args.senders as f64 / r),
        },
    };
    let rss_before = args.server_pid.and_then(rss_kib);
    // Redis chatters need a subscribed connection besides the one they publish on.
    let companions = if args.senders_receive && args.proto == Proto::Redis {
        args.senders
    } else {
        0
    };
    let total = args.conns + companions;
    let shared = Arc::new(Shared::new(args.senders));
    let workers: Vec<_> = (0..args.threads)
        .map(|worker| {
            let plan = Plan {
                targets: args.target.clone(),
                proto: args.proto,
                conns: args.conns,
                total,
                senders: args.senders,
                senders_receive: args.senders_receive,
                threads: args.threads,
                worker,
                connect_rate: args.connect_rate / args.threads as f64,
                source_ips: source_ips.clone(),
                size: args.size,
                load,
            };
            let shared = Arc::clone(&shared);
            thread::spawn(move || worker::run(&plan, &shared))
        })
        .collect();

    // 1. Connect, bounded by twice the paced time plus ten seconds.
    let connect_limit =
        Duration::from_secs_f64(2.0 * total as f64 / args.connect_rate) + Duration::from_secs(10);
    let settled = |s: &Shared| {
        s.established.load(Ordering::Relaxed)
            + s.refused.load(Ordering::Relaxed)
            + s.failed.load(Ordering::Relaxed)
    };
    let connect_secs = wait_until(connect_limit, || settled(&shared) >= total);

    // 2. Hold.
    shared.phase.store(phase::HOLD, Ordering::Release);
    // The server's CPU time now, and what it has used since an earlier reading.
    let server_cpu = || args.server_pid.and_then(process_cpu_secs);
    let server_cpu_since = |before: Option<f64>| Some(server_cpu()? - before?);
    let server_cpu_at_hold = server_cpu();
    let hold_started = Instant::now();
    thread::sleep(Duration::from_secs_f64(args.hold.max(0.0)));
    let hold_secs = hold_started.elapsed().as_secs_f64();
    let server_hold_cpu_secs = server_cpu_since(server_cpu_at_hold);
    let rss_idle = args.server_pid.and_then(rss_kib);

    // 3. Traffic (none at all for `--duration 0`: a memory-only run sends nothing).
    if args.duration > 0.0 {
        shared.phase.store(phase::TRAFFIC, Ordering::Release);
    }
    let traffic_started = Instant::now();
    let server_cpu_before = server_cpu();
    let own_cpu_at_traffic = own_cpu_secs();
    thread::sleep(Duration::from_secs_f64(args.duration.max(0.0)));

    // 4. Drain: stop sending, wait for what is in flight.
    shared.phase.store(phase::DRAIN, Ordering::Release);
    let receivers = shared.receivers_established.load(Ordering::Relaxed) as u64;
    let established = shared.established.load(Ordering::Relaxed) as u64;
    // Every line reaches every receiver; pollchat chatters also get every line but their own.
    let per_line = if args.senders_receive && args.proto == Proto::Pollchat {
        established.saturating_sub(1)
    } else {
        receivers
    };
    let expected = || shared.sent.load(Ordering::Relaxed) * per_line;
    wait_until(DRAIN_LIMIT, || {
        shared.delivered.load(Ordering::Relaxed) >= expected()
    });
    let traffic_secs = traffic_started.elapsed().as_secs_f64();
    let traffic_cpu_secs = own_cpu_secs() - own_cpu_at_traffic;
    let server_cpu_secs = server_cpu_since(server_cpu_before);
    let rss_end = args.server_pid.and_then(rss_kib);

    // 5. Stop.
    shared.phase.store(phase::STOP, Ordering::Release);
    let mut latency = worker::latency_histogram().map_err(|e| e.to_string())?;
    for worker in workers {
        let histogram = worker
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?
            .map_err(|e| format!("a worker failed: {e}"))?;
        latency.add(&histogram).map_err(|e| e.to_string())?;
    }
    let quantile = |q: f64| {
        if latency.is_empty() {
            0
        } else {
            latency.value_at_quantile(q)
        }
    };
    Ok(Report {
        proto: args.proto,
        conns: args.conns,
        threads: args.threads,
        established: shared.established.load(Ordering::Relaxed),
        receivers: receivers as usize,
        refused: shared.refused.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        dropped: shared.dropped.load(Ordering::Relaxed),
        connect_secs,
        senders: args.senders,
        rate: args.rate,
        window: args.window,
        size: args.size,
        traffic_secs,
        sent: shared.sent.load(Ordering::Relaxed),
        delivered: shared.delivered.load(Ordering::Relaxed),
        expected: expected(),
        latency_us: [
            quantile(0.5),
            quantile(0.99),
            quantile(0.999),
            latency.max(),
        ],
        rss_kib: match (rss_before, rss_idle, rss_end) {
            (Some(b), Some(i), Some(e)) => Some([b, i, e]),
            _ => None,
        },
        server_hold_cpu_secs,
        hold_secs,
        server_cpu_secs,
        traffic_cpu_secs,
        cpu_secs: own_cpu_secs() - cpu_before,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

/// Polls `done` every millisecond until it holds or `limit` passes; returns the seconds
/// waited. (The generator is not the server: a coarse wait here costs nothing measured.)
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> f64 {
    let started = Instant::now();
    while !done() && started.elapsed() < limit {
        thread::sleep(Duration::from_millis(1));
    }
    started.elapsed().as_secs_f64()
}

/// Resident memory of a process, in KiB, from /proc/PID/status.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time this process has used (all threads, user + system), in seconds.
fn own_cpu_secs() -> f64 {
    cpu_secs_of("self").unwrap_or(0.0)
}

/// CPU time a process has used (user + system), in seconds: how the generator judges which
/// side was the limit, and how the tests tell a sleeping loop from a spinning one.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs_of(&pid.to_string())
}

/// From /proc/PROC/stat. Clock ticks are 1/100 s on Linux.
fn cpu_secs_of(proc: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{proc}/stat")).ok()?;
    // Fields after the command name (in parentheses, possibly with spaces) start at field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}
