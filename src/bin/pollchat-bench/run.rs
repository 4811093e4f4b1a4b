//! A load run: the phases of the module documentation (`main.rs`), one function each.
//! This thread is the orchestrator. It starts the workers, moves them all through the phases
//! by setting [`Shared::phase`], and between phases reads their counts and the server's
//! /proc figures; the workers do the I/O (`worker.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::procfs::{
    KernelMemory, WriteCalls, own_cpu_secs, own_sys_secs, process_cpu_secs, rss_kib, steal_secs,
    write_calls,
};
use super::rooms::Layout;
use super::worker::{self, Load, Plan, Shared, phase};
use super::{BenchArgs, Proto, Rate, Report};

/// How long receivers may keep counting after the senders stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// A worker thread; it hands back its latency histogram (microseconds) when it stops.
type Worker = JoinHandle<std::io::Result<Histogram<u64>>>;

/// Runs the benchmark. Errors are the operator's (bad arguments) or the machine's.
pub fn run(args: &BenchArgs) -> Result<Report, String> {
    check(args)?;
    let started = Instant::now();
    let cpu_before = own_cpu_secs();
    let rss_before = args.server_pid.and_then(rss_kib);
    let kernel_before = KernelMemory::read();
    // Redis chatters need a subscribed connection besides the one they publish on.
    let companions = if args.senders_receive && args.proto == Proto::Redis {
        args.senders
    } else {
        0
    };
    let total = args.conns + companions;
    let shared = Arc::new(Shared::new(args.senders, args.window.max(1), args.rooms));
    let workers = start_workers(args, total, &shared);
    let connect_secs = connect(args, total, &shared);
    let held = hold(args, &shared);
    let drained = drain(args, &shared, traffic(args, &shared));
    let latency = stop(&shared, workers)?;
    let sent = shared.sent.load(Ordering::Relaxed);
    Ok(Report {
        proto: args.proto,
        conns: args.conns,
        threads: args.threads,
        established: shared.established.load(Ordering::Relaxed),
        receivers: drained.receivers as usize,
        rooms: args.rooms,
        receivers_per_room: shared.rooms.receivers_range(),
        pairs: shared.rooms.pairs(),
        refused: shared.refused.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        dropped: shared.dropped.load(Ordering::Relaxed),
        connect_secs,
        senders: args.senders,
        rate: args.rate,
        window: args.window,
        size: args.size,
        traffic_secs: drained.secs,
        sent,
        lines_done: shared.windows.done(),
        delivered: shared.delivered.load(Ordering::Relaxed),
        foreign: shared.foreign.load(Ordering::Relaxed),
        expected: drained.expected,
        latency_us: percentiles(&latency),
        rss_kib: match (rss_before, held.rss_kib, drained.rss_kib) {
            (Some(b), Some(i), Some(e)) => Some([b, i, e]),
            _ => None,
        },
        kernel_idle: match (kernel_before, held.kernel) {
            (Some(before), Some(idle)) => Some(idle.growth_since(&before)),
            _ => None,
        },
        server_hold_cpu_secs: held.server_cpu_secs,
        hold_secs: held.secs,
        server_cpu_secs: drained.server_cpu_secs,
        server_writes: drained.server_writes,
        writes: args.writes,
        traffic_cpu_secs: drained.own_cpu_secs,
        traffic_sys_secs: drained.own_sys_secs,
        steal_secs: drained.steal_secs,
        cpu_secs: own_cpu_secs() - cpu_before,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

/// Refuses flags that cannot make a run, before anything connects.
fn check(args: &BenchArgs) -> Result<(), String> {
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
    if args.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    // Senders and receivers are spread over the rooms separately: the first
    // min(senders, rooms) rooms have a sender, the first min(receivers, rooms) a receiver.
    let receivers = args.conns - args.senders;
    if args.rate == Rate::Max && receivers < args.senders.min(args.rooms) {
        return Err(format!(
            "--rate max needs a pure receiver in every room with a sender, to pace its window: \
             at least {} receivers (--conns minus --senders)",
            args.senders.min(args.rooms)
        ));
    }
    if args.target.is_empty() {
        return Err("--target: give at least one server address".into());
    }
    let remote = args.target.iter().any(|t| !t.ip().is_loopback());
    if args.source_ips == 0 || (args.source_ips > 1 && remote) {
        return Err("--source-ips spreads over 127.0.0.x: only for a loopback --target".into());
    }
    Ok(())
}

/// Which room each connection is in: the workers' and the orchestrator's one answer.
fn layout(args: &BenchArgs) -> Layout {
    Layout::new(args.rooms, args.senders, args.conns)
}

/// Starts the `--threads` workers on their share of the `total` connections; they begin
/// connecting at once (the `CONNECT` phase).
fn start_workers(args: &BenchArgs, total: usize, shared: &Arc<Shared>) -> Vec<Worker> {
    let source_ips: Vec<IpAddr> = if args.source_ips > 1 {
        (1..=args.source_ips)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect()
    } else {
        Vec::new()
    };
    let load = match args.rate {
        Rate::Max => Load::Window,
        Rate::PerSecond(r) => Load::Paced {
            interval: Duration::from_secs_f64(args.senders as f64 / r),
        },
    };
    (0..args.threads)
        .map(|worker| {
            let plan = Plan {
                targets: args.target.clone(),
                proto: args.proto,
                total,
                senders: args.senders,
                senders_receive: args.senders_receive,
                threads: args.threads,
                worker,
                connect_rate: args.connect_rate / args.threads as f64,
                source_ips: source_ips.clone(),
                size: args.size,
                load,
                writes: args.writes,
                layout: layout(args),
            };
            let shared = Arc::clone(shared);
            thread::spawn(move || worker::run(&plan, &shared))
        })
        .collect()
}

/// Phase 1, connect: waits until every connection is in, refused or failed, bounded by twice the
/// paced time plus ten seconds. Returns the seconds it took.
fn connect(args: &BenchArgs, total: usize, shared: &Shared) -> f64 {
    let limit =
        Duration::from_secs_f64(2.0 * total as f64 / args.connect_rate) + Duration::from_secs(10);
    wait_until(limit, || {
        shared.established.load(Ordering::Relaxed)
            + shared.refused.load(Ordering::Relaxed)
            + shared.failed.load(Ordering::Relaxed)
            >= total
    })
}

/// What the hold measured.
struct Held {
    secs: f64,
    /// The server's CPU time over the hold: near zero means its loop sleeps when idle.
    server_cpu_secs: Option<f64>,
    /// The server's RSS with every connection idle.
    rss_kib: Option<u64>,
    /// The kernel's memory with every connection idle.
    kernel: Option<KernelMemory>,
}

/// Phase 2, hold: every connection idle for `--hold` seconds.
fn hold(args: &BenchArgs, shared: &Shared) -> Held {
    shared.phase.store(phase::HOLD, Ordering::Release);
    let server_cpu_before = server_cpu(args);
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(args.hold.max(0.0)));
    Held {
        secs: started.elapsed().as_secs_f64(),
        server_cpu_secs: server_cpu_since(args, server_cpu_before),
        rss_kib: args.server_pid.and_then(rss_kib),
        kernel: KernelMemory::read(),
    }
}

/// The clocks at the start of the traffic, which the drain reads again.
struct TrafficStart {
    at: Instant,
    server_cpu: Option<f64>,
    server_writes: Option<WriteCalls>,
    own_cpu: f64,
    own_sys: f64,
    steal: f64,
}

/// Phase 3, traffic for `--duration` seconds (none at all for `--duration 0`: a memory-only run
/// sends nothing).
fn traffic(args: &BenchArgs, shared: &Shared) -> TrafficStart {
    // Every receiver is in (or never will be): each windowed line must reach all of its room's.
    let layout = layout(args);
    shared.windows.set_receivers(|sender| {
        let room = shared.rooms.get(layout.room_of_sender(sender));
        room.map_or(0, |r| r.receivers.load(Ordering::Relaxed))
    });
    if args.duration > 0.0 {
        shared.phase.store(phase::TRAFFIC, Ordering::Release);
    }
    let start = TrafficStart {
        at: Instant::now(),
        server_cpu: server_cpu(args),
        server_writes: args.server_pid.and_then(write_calls),
        own_cpu: own_cpu_secs(),
        own_sys: own_sys_secs(),
        steal: steal_secs(),
    };
    thread::sleep(Duration::from_secs_f64(args.duration.max(0.0)));
    start
}

/// What the traffic and the drain measured, together.
struct Drained {
    receivers: u64,
    /// Deliveries a lossless server makes of the lines sent, room by room.
    expected: u64,
    secs: f64,
    own_cpu_secs: f64,
    own_sys_secs: f64,
    steal_secs: f64,
    server_cpu_secs: Option<f64>,
    /// The server's write calls during the traffic and drain.
    server_writes: Option<WriteCalls>,
    /// The server's RSS at the end.
    rss_kib: Option<u64>,
}

/// Phase 4, drain: senders stop; waits (up to [`DRAIN_LIMIT`]) for what is in flight.
fn drain(args: &BenchArgs, shared: &Shared, traffic: TrafficStart) -> Drained {
    shared.phase.store(phase::DRAIN, Ordering::Release);
    // Until every worker has seen the drain begin, one may still be sending (it read the
    // phase just before): `sent`, and with it what is expected, is final only then.
    wait_until(DRAIN_LIMIT, || {
        shared.done_sending.load(Ordering::Acquire) >= args.threads
    });
    let receivers = shared.receivers_established.load(Ordering::Relaxed) as u64;
    // Every line reaches every receiver of its room; pollchat chatters (over TCP or
    // WebSocket) also get every line of their room but their own.
    let chatters = args.senders_receive && args.proto.is_pollchat();
    let expected = shared.rooms.expected(chatters);
    wait_until(DRAIN_LIMIT, || {
        shared.delivered.load(Ordering::Relaxed) >= expected
    });
    Drained {
        receivers,
        expected,
        secs: traffic.at.elapsed().as_secs_f64(),
        own_cpu_secs: own_cpu_secs() - traffic.own_cpu,
        own_sys_secs: own_sys_secs() - traffic.own_sys,
        steal_secs: steal_secs() - traffic.steal,
        server_cpu_secs: server_cpu_since(args, traffic.server_cpu),
        server_writes: match (args.server_pid.and_then(write_calls), traffic.server_writes) {
            (Some(now), Some(before)) => Some(now.since(before)),
            _ => None,
        },
        rss_kib: args.server_pid.and_then(rss_kib),
    }
}

/// Phase 5, stop: the workers close every connection and return; their latencies, merged.
fn stop(shared: &Shared, workers: Vec<Worker>) -> Result<Histogram<u64>, String> {
    shared.phase.store(phase::STOP, Ordering::Release);
    let mut latency = worker::latency_histogram().map_err(|e| e.to_string())?;
    for worker in workers {
        let histogram = worker
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?
            .map_err(|e| format!("a worker failed: {e}"))?;
        latency.add(&histogram).map_err(|e| e.to_string())?;
    }
    Ok(latency)
}

/// p50, p99, p99.9 and the maximum of a latency histogram (zeros if it is empty).
fn percentiles(latency: &Histogram<u64>) -> [u64; 4] {
    let quantile = |q: f64| {
        if latency.is_empty() {
            0
        } else {
            latency.value_at_quantile(q)
        }
    };
    [
        quantile(0.5),
        quantile(0.99),
        quantile(0.999),
        latency.max(),
    ]
}

/// The server's CPU time now (with `--server-pid`).
fn server_cpu(args: &BenchArgs) -> Option<f64> {
    args.server_pid.and_then(process_cpu_secs)
}

/// The server's CPU time since an earlier reading.
fn server_cpu_since(args: &BenchArgs, before: Option<f64>) -> Option<f64> {
    Some(server_cpu(args)? - before?)
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
