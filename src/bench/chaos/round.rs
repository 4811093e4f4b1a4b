//! One round, phases 2 to 6 of the module documentation (`chaos/mod.rs`): join, chaos, calm,
//! leave, settle, with fresh clients. Also what the round's clients share while it runs
//! ([`Context`]): the well-behaved clients' records, which the checks are run over once the
//! round is over, and the counts per role.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{TlsTarget, close, write_out};
use super::event_loop::Chaos;
use super::report::{Round, Tally};
use super::roles::{Role, earlier};
use crate::bench::BenchArgs;
use crate::bench::invariants::LineId;
use crate::bench::procfs::{resources, rss_kib};

/// How long the well-behaved clients get to be welcomed, to receive what is in flight once
/// the chaos stops, and to be closed after `/quit`.
pub(super) const JOIN_LIMIT: Duration = Duration::from_secs(10);

pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub(super) const LEAVE_LIMIT: Duration = Duration::from_secs(5);

/// How long the server gets to close every socket once all clients are gone. Its lingering
/// closes take up to `limits::LINGER` (2 s).
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Join,
    Chaos,
    Calm,
    Leave,
}

/// What a chatter sent and received.
#[derive(Debug, Default)]
pub(super) struct ChatterLog {
    /// Talks to the TLS listener.
    pub(super) tls: bool,
    pub(super) sent: u64,
    pub(super) received: Vec<LineId>,
}

/// The pingers' round trips.
pub(super) struct PingLog {
    pub(super) sent: u64,
    pub(super) answered: u64,
    /// Pings sent and not answered yet, oldest first: which pinger sent it, its number
    /// (counted over all pingers) and when. Each pinger's answers must come in the order it
    /// sent them.
    pub(super) pending: VecDeque<(u32, u64, Instant)>,
    pub(super) slowest: Duration,
    pub(super) round_trip: Histogram<u64>,
}

/// Everything a client's handler may update besides the client itself.
pub(super) struct Context {
    pub(super) epoch: Instant,
    pub(super) phase: Phase,
    pub(super) size: usize,
    /// Time between two lines of one chatter.
    pub(super) chat_interval: Duration,
    pub(super) tallies: BTreeMap<&'static str, Tally>,
    pub(super) chatters: Vec<ChatterLog>,
    pub(super) pings: PingLog,
    pub(super) latency: Histogram<u64>,
    pub(super) scratch: Vec<u8>,
    /// Lines a well-behaved client received that were not clean text, and the first one.
    pub(super) dirty: u64,
    pub(super) first_dirty: Option<String>,
    /// Why well-behaved clients were disconnected, if any were.
    pub(super) lost: Vec<String>,
    /// The non-reader the flooders aim at, until it has had its [`TARGET_DOSE`] or is gone.
    pub(super) target: Option<Target>,
}

/// A non-reader the flooders aim at.
pub(super) struct Target {
    pub(super) key: usize,
    pub(super) nick: String,
    /// Bytes of `/msg` lines the flooders have queued for it so far.
    pub(super) aimed: usize,
}

/// One round, phases 2 to 6, with fresh clients (and the same `--seed`, so every round runs
/// the same schedule and only a leak makes the server hold more after it).
pub(super) fn run_round(
    args: &BenchArgs,
    target: SocketAddr,
    tls: Option<&TlsTarget>,
    chat_interval: Duration,
    spawn_interval: Duration,
    cold: Option<(usize, u64)>,
) -> Result<Round, String> {
    let started = Instant::now();
    let mut chaos =
        Chaos::new(args, target, tls, chat_interval).map_err(|e| format!("cannot start: {e}"))?;
    let mut rss_peak = None;
    let mut sample_rss = |at: &mut Instant| {
        if at.elapsed() >= Duration::from_millis(100)
            && let Some(rss) = args.server_pid.and_then(rss_kib)
        {
            rss_peak = rss_peak.max(Some(rss));
            *at = Instant::now();
        }
    };
    let mut sampled = Instant::now();

    // 2. Join.
    let chatters = u32::try_from(args.chatters).unwrap_or(u32::MAX);
    for chatter in 0..chatters {
        chaos.open(Role::Chatter(chatter));
    }
    // One pinger on each listener.
    let pingers = if tls.is_some() { 2 } else { 1 };
    for pinger in 0..pingers {
        chaos.open(Role::Pinger(pinger));
    }
    let well_behaved = args.chatters + pingers as usize;
    let joined = chaos.run_until(JOIN_LIMIT, |c| {
        c.clients
            .iter()
            .filter(|(_, c)| c.role.well_behaved() && c.welcomed)
            .count()
            == well_behaved
    });
    if !joined {
        return Err(format!(
            "the {} chatters and the pingers were not all welcomed within {} s: is the server \
             running, with --max-clients and --max-per-ip above {well_behaved}?",
            args.chatters,
            JOIN_LIMIT.as_secs(),
        ));
    }

    // 3. Chaos.
    chaos.ctx.phase = Phase::Chaos;
    let chaos_started = Instant::now();
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    for (key, client) in chaos.clients.iter_mut() {
        // Chatters start staggered over one interval, not in lockstep.
        let stagger = chat_interval.mul_f64(key as f64 / (args.chatters + 1) as f64);
        client.next_send = chaos_started + stagger;
    }
    let mut storms: VecDeque<Instant> = if args.storm > 0 {
        [duration / 3, duration * 2 / 3]
            .map(|at| chaos_started + at)
            .into()
    } else {
        VecDeque::new()
    };
    let mut next_spawn = chaos_started;
    while chaos_started.elapsed() < duration {
        let now = Instant::now();
        if storms.front().is_some_and(|&at| at <= now) {
            storms.pop_front();
            for _ in 0..args.storm {
                chaos.open(Role::Storm);
            }
        }
        while next_spawn <= now && chaos.misbehaving_now() < args.conns {
            let role = chaos.misbehaving[(chaos.started % chaos.misbehaving.len() as u64) as usize];
            chaos.open(role);
            next_spawn += spawn_interval;
        }
        // Do not save up spawns while the cap holds them back.
        next_spawn = next_spawn.max(earlier(now, spawn_interval));
        chaos.turn();
        sample_rss(&mut sampled);
    }

    // 4. Calm: the strangers go; what the chatters sent must all arrive.
    chaos.ctx.phase = Phase::Calm;
    chaos.clients.retain(|_, c| {
        if !c.role.well_behaved() {
            close(c);
        }
        c.role.well_behaved()
    });
    chaos.run_until(DRAIN_LIMIT, |c| c.drained());
    sample_rss(&mut sampled);

    // 5. Leave.
    chaos.ctx.phase = Phase::Leave;
    for (_, client) in chaos.clients.iter_mut() {
        client.output.extend_from_slice(b"/quit\n");
        client.leaving = true;
        let _ = write_out(client);
    }
    chaos.run_until(LEAVE_LIMIT, |c| c.clients.is_empty());
    for client in chaos.clients.drain() {
        chaos
            .ctx
            .lost
            .push(format!("{} was not closed after /quit", client.kind));
    }

    // 6. Settle: the server closes what it still holds (lingering closes take up to 2 s).
    let settle_started = Instant::now();
    let mut end = args.server_pid.and_then(resources);
    while let (Some((fds_cold, _)), Some((fds, _))) = (cold, end) {
        if fds <= fds_cold || settle_started.elapsed() >= SETTLE_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        end = args.server_pid.and_then(resources);
    }
    let rss_peak = rss_peak.max(end.map(|(_, rss)| rss));
    Ok(chaos.into_round(started.elapsed().as_secs_f64(), end, rss_peak))
}
