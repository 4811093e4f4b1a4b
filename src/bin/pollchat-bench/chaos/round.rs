//! One round, phases 2 to 6 of the module documentation (`chaos/mod.rs`): join, chaos, calm,
//! leave, settle, with fresh clients. Also what the round's clients share while it runs
//! ([`Context`]): the well-behaved clients' records and the history they were replayed, which
//! the checks are run over once the round is over, and the counts per role.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Client, Listener, TlsTarget, close, write_out};
use super::event_loop::Chaos;
use super::history::{self, Replayed, Said, Witnessed};
use super::operator::{self, Desk};
use super::report::{HEAP_MARGIN_KIB, Round, Tally, answered, counted};
use super::roles::{Role, earlier, say};
use super::rooms::{Layout, RoomLines, SECOND_ROOM};
use crate::BenchArgs;
use crate::invariants::{self, LineId};
use crate::procfs::{anon_kib, resources};
use crate::worker::latency_histogram;

/// How long the well-behaved clients get to be welcomed, to receive what is in flight once
/// the chaos stops, and to be closed after `/quit`.
const JOIN_LIMIT: Duration = Duration::from_secs(10);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
const LEAVE_LIMIT: Duration = Duration::from_secs(5);

/// How long the checkers get to be welcomed, enter their rooms and be replayed their history.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// How long the server gets to close every socket once all clients are gone. Its lingering
/// closes take up to `limits::LINGER` (2 s).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Join,
    Chaos,
    Calm,
    Leave,
}

/// What a chatter sent and received live.
#[derive(Debug)]
pub(super) struct ChatterLog {
    pub(super) room: &'static str,
    /// The listener it talks to: plain, TLS or WebSocket.
    pub(super) listener: Listener,
    /// When it sent each of its lines, as stamped on them.
    pub(super) sent_at: Vec<u64>,
    pub(super) received: Vec<LineId>,
}

impl ChatterLog {
    pub(super) fn sent(&self) -> u64 {
        self.sent_at.len() as u64
    }
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
    /// An answer slower than this means the server stopped answering (`--ping-limit`, 2 s
    /// by default: generous, since the pinger's answer queues behind the flood's lines like
    /// everyone's).
    pub(super) limit: Duration,
}

/// Everything a client's handler may update besides the client itself.
pub(super) struct Context {
    pub(super) epoch: Instant,
    pub(super) phase: Phase,
    pub(super) size: usize,
    /// Time between two lines of one chatter.
    pub(super) chat_interval: Duration,
    pub(super) tallies: BTreeMap<&'static str, Tally>,
    /// Which chatter is in which room.
    pub(super) layout: Layout,
    pub(super) chatters: Vec<ChatterLog>,
    /// Every history replay a well-behaved client got, in the order they began.
    pub(super) replays: Vec<Replayed>,
    /// Each room's last chat lines as its witness heard them, the lobby's first.
    pub(super) witnessed: Vec<Witnessed>,
    /// The server's `--history`: how many lines a witness keeps.
    pub(super) history: usize,
    /// Chat lines other than chatter lines that reached a chatter of the second room (they
    /// can only have come from the lobby), and the first one.
    pub(super) strays: u64,
    pub(super) first_stray: Option<String>,
    pub(super) pings: PingLog,
    pub(super) latency: Histogram<u64>,
    pub(super) scratch: Vec<u8>,
    /// The latest lines found clean, which other well-behaved clients get too.
    pub(super) clean: VecDeque<Vec<u8>>,
    /// Lines a well-behaved client received that were not clean text, and the first one.
    pub(super) dirty: u64,
    pub(super) first_dirty: Option<String>,
    /// Why well-behaved clients were disconnected, if any were.
    pub(super) lost: Vec<String>,
    /// The non-reader the flooders aim at, until it has had its
    /// [`TARGET_DOSE`](super::roles::TARGET_DOSE) or is gone.
    pub(super) target: Option<Target>,
    /// Whole doses given so far in the run to plain, TLS and WebSocket non-readers (indexed
    /// by [`Listener`]), carried from round to round: the next goes to the kind that had the
    /// fewest, so the kinds take turns, and a round that manages fewer doses than there are
    /// kinds leaves the turn where the next one takes it up. A dose cut short (its target
    /// left, or the round ended) does not count: its kind is due again.
    pub(super) doses: [u32; 3],
    /// A target was chosen in this round.
    pub(super) dosed: bool,
    /// The operator's doings and its trolls' fate, with `--oper` (`operator.rs`).
    pub(super) desk: Desk,
}

impl Context {
    /// A round's context before anyone joins: empty records, one per chatter, and the doses
    /// of the rounds before.
    pub(super) fn new(
        args: &BenchArgs,
        chat_interval: Duration,
        doses: [u32; 3],
    ) -> io::Result<Context> {
        let layout = Layout {
            lobby: args.chatters,
            second: args.room_chatters,
        };
        let chatters = (0..layout.total())
            .map(|n| ChatterLog {
                room: layout.room_of(u32::try_from(n).unwrap_or(u32::MAX)),
                listener: Listener::Plain,
                sent_at: Vec::new(),
                received: Vec::new(),
            })
            .collect();
        let pings = PingLog {
            sent: 0,
            answered: 0,
            pending: VecDeque::new(),
            slowest: Duration::ZERO,
            round_trip: latency_histogram()?,
            limit: Duration::try_from_secs_f64(args.ping_limit).unwrap_or(Duration::MAX),
        };
        Ok(Context {
            epoch: Instant::now(),
            phase: Phase::Join,
            size: args.size,
            chat_interval,
            tallies: BTreeMap::new(),
            layout,
            chatters,
            replays: Vec::new(),
            witnessed: layout.each().map(|(room, _)| Witnessed::new(room)).into(),
            history: args.history,
            strays: 0,
            first_stray: None,
            pings,
            latency: latency_histogram()?,
            scratch: vec![0; 64 * 1024],
            clean: VecDeque::new(),
            dirty: 0,
            first_dirty: None,
            lost: Vec::new(),
            target: None,
            doses,
            dosed: false,
            desk: Desk::new(args),
        })
    }
}

/// A non-reader the flooders aim at.
pub(super) struct Target {
    pub(super) key: usize,
    pub(super) nick: String,
    /// Its kind: the listener it is on.
    pub(super) kind: Listener,
    /// Bytes of `/msg` lines the flooders have queued for it so far.
    pub(super) aimed: usize,
}

/// What every round is given, the same for each.
pub(super) struct Plan<'a> {
    pub(super) args: &'a BenchArgs,
    /// The server's plain listener (the first `--target`).
    pub(super) target: SocketAddr,
    pub(super) tls: Option<TlsTarget>,
    /// The server's HTTP listener (`--ws-target`).
    pub(super) ws: Option<SocketAddr>,
    /// The server's process and its `--stats-udp` (`--server-pid`, `--server-stats`), those
    /// of the restarted server once there is one.
    pub(super) server_pid: Option<u32>,
    pub(super) server_stats: Option<SocketAddr>,
    /// Time between two lines of one chatter, and between two misbehaving clients started.
    pub(super) chat_interval: Duration,
    pub(super) spawn_interval: Duration,
    /// The server's descriptors and heap before round 1 (or since its restart), which the
    /// settle phase waits for.
    pub(super) cold: Option<(usize, u64)>,
}

/// One round, phases 2 to 6, with fresh clients (and the same `--seed`, so every round runs
/// the same schedule and only a leak makes the server hold more after it), then the history
/// check (after a restart of the server, with `--restarts`; the plan then holds the new
/// server). `earlier` is what the previous round's chatters said, which the history replayed
/// in this one must agree with; the round returns its own for the next. `doses` are the
/// flooders' doses to each kind of non-reader so far in the run, which the round adds to.
pub(super) fn run_round(
    plan: &mut Plan,
    earlier: Option<&Said>,
    doses: &mut [u32; 3],
) -> Result<(Round, Said), String> {
    let started = Instant::now();
    let args = plan.args;
    let cannot = |e: io::Error| format!("cannot start: {e}");
    // Two loops: the well-behaved clients' and the strangers'. During the chaos phase each
    // runs on a thread of its own, so that however long the flooders keep the strangers'
    // loop busy, the chatters are read (see `misbehave`).
    let mut chaos = Chaos::new(args, plan, *doses).map_err(cannot)?;
    let mut strangers = Chaos::new(args, plan, *doses).map_err(cannot)?;
    let mut rss = HeapPeak::new(plan.server_pid);
    join(&mut chaos, plan)?;
    misbehave(&mut chaos, &mut strangers, plan, &mut rss);
    *doses = strangers.ctx.doses;
    operator::wind_up(&mut chaos);
    calm(&mut chaos, strangers);
    last_words(&mut chaos, plan);
    rss.sample();
    leave(&mut chaos);
    // The witnesses stay, each on one of the server's descriptors.
    let end = settle(plan.server_pid, plan.cold, chaos.clients.len());
    let heap_peak = rss.peak.max(end.map(|(_, rss)| rss));
    let mut restarts = 0;
    if args.restarts {
        for (_, witness) in chaos.clients.iter_mut() {
            witness.leaving = true;
        }
        super::restart(plan)?;
        restarts = 1;
    }
    let kept = check_history(&mut chaos, plan).map_err(|e| format!("history check: {e}"))?;
    let (mut round, said) = chaos.ctx.into_round(
        started.elapsed().as_secs_f64(),
        end,
        heap_peak,
        earlier,
        kept,
    );
    round.replays.restarts = restarts;
    Ok((round, said))
}

/// After the round: a checker enters each room and is replayed its history, which must be
/// what the room's witness heard last (`history::kept_whole`); then the checkers and the
/// witnesses still there (none after a restart) `/quit`, and must be closed. The verdict,
/// with the lines checked; `Err` only if the checkers cannot start.
fn check_history(chaos: &mut Chaos, plan: &Plan) -> Result<Result<u64, String>, String> {
    let mut checkers =
        Chaos::new(plan.args, plan, [0; 3]).map_err(|e| format!("cannot start: {e}"))?;
    for room in 0..2 {
        checkers.open(Role::Checker(room));
    }
    let synced = checkers.run_until(CHECK_LIMIT, |c| {
        c.clients.iter().all(|(_, c)| c.synced) && !c.clients.is_empty()
    });
    let verdict = if synced {
        history::kept_whole(
            &chaos.ctx.witnessed,
            &checkers.ctx.replays,
            plan.args.history,
        )
    } else {
        Err(format!(
            "the checkers were not welcomed into their rooms and answered within {} s",
            CHECK_LIMIT.as_secs()
        ))
    };
    for (_, client) in chaos.clients.iter_mut().chain(checkers.clients.iter_mut()) {
        if !client.leaving {
            client.output.extend_from_slice(b"/quit\n");
            client.leaving = true;
            let _ = write_out(client);
        }
    }
    let started = Instant::now();
    while started.elapsed() < LEAVE_LIMIT
        && !(chaos.clients.is_empty() && checkers.clients.is_empty())
    {
        chaos.turn();
        checkers.turn();
    }
    for (kind, tally) in std::mem::take(&mut checkers.ctx.tallies) {
        *chaos.ctx.tallies.entry(kind).or_default() += tally;
    }
    chaos.ctx.lost.append(&mut checkers.ctx.lost);
    for client in chaos.clients.drain().chain(checkers.clients.drain()) {
        chaos
            .ctx
            .lost
            .push(format!("{} was not closed after /quit", client.name()));
    }
    Ok(verdict)
}

/// Phase 2, join: the chatters and one pinger per listener connect, and must all be welcomed
/// within [`JOIN_LIMIT`], and the second room's chatters be in it; `Err` says what the server
/// may be missing.
fn join(chaos: &mut Chaos, plan: &Plan) -> Result<(), String> {
    let layout = chaos.ctx.layout;
    let chatters = u32::try_from(layout.total()).unwrap_or(u32::MAX);
    for chatter in 0..chatters {
        chaos.open(Role::Chatter(chatter));
    }
    // One pinger on each listener: 0 plain, 1 TLS, 2 WebSocket.
    let pingers = [true, plan.tls.is_some(), plan.ws.is_some()];
    for (pinger, _) in (0..).zip(pingers).filter(|&(_, present)| present) {
        chaos.open(Role::Pinger(pinger));
    }
    let operator = plan.args.oper.is_some();
    if operator {
        chaos.open(Role::Operator);
    }
    // A witness in each room.
    for room in 0..2 {
        chaos.open(Role::Witness(room));
    }
    let well_behaved =
        layout.total() + pingers.iter().filter(|&&p| p).count() + usize::from(operator) + 2;
    // The second room's chatters are there once the server says so: a line said before
    // would not be theirs to hear.
    let joined = chaos.run_until(JOIN_LIMIT, |c| {
        c.clients
            .iter()
            .filter(|(_, c)| c.role.well_behaved() && c.at_home())
            .count()
            == well_behaved
    });
    if !joined {
        return Err(format!(
            "the {} chatters and the pingers were not all welcomed, and the {} of {SECOND_ROOM} \
             in it, within {} s: is the server running, with --max-clients and --max-per-ip \
             above {well_behaved}, and room for one more room?",
            layout.lobby,
            layout.second,
            JOIN_LIMIT.as_secs(),
        ));
    }
    Ok(())
}

/// Phase 3, chaos, for `--duration`: the well-behaved talk while misbehaving clients are
/// started in turn, up to `--conns` at once, and two storms of `--storm` connections come a
/// third and two thirds of the way through. The well-behaved clients' loop (`chaos`) runs on
/// a thread of its own meanwhile: in one loop with the strangers, a debug build of the
/// generator on a machine busy with other work spent seconds writing the flood and reading
/// none of what the chatters were sent, and the server, keeping its rule, cut every chatter
/// off as too slow (2026-12-07, five busy loops on 2 cores). The strangers' counts join the
/// round's once the phase is over.
fn misbehave(chaos: &mut Chaos, strangers: &mut Chaos, plan: &Plan, rss: &mut HeapPeak) {
    let args = plan.args;
    chaos.ctx.phase = Phase::Chaos;
    strangers.ctx.phase = Phase::Chaos;
    let started = Instant::now();
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let spread = (chaos.ctx.layout.total() + 1) as f64;
    for (key, client) in chaos.clients.iter_mut() {
        // Chatters start staggered over one interval, not in lockstep.
        let stagger = plan.chat_interval.mul_f64(key as f64 / spread);
        client.next_send = started + stagger;
    }
    let no_thread = std::thread::scope(|scope| {
        // Named, so that `top -H` and `perf` tell the threads apart.
        let well_behaved = std::thread::Builder::new()
            .name("well-behaved".into())
            .spawn_scoped(scope, || {
                while started.elapsed() < duration {
                    chaos.turn();
                }
            });
        // The strangers' loop at nice 5: on a busy machine the well-behaved clients' loop
        // gets three times its share of the processor, as the server reads them against
        // `--output-grace`; on an idle one, nothing changes.
        let strangers = std::thread::Builder::new()
            .name("strangers".into())
            .spawn_scoped(scope, || {
                nice_this_thread(5);
                strangers_misbehave(strangers, plan, started, duration, rss);
            });
        [well_behaved.err(), strangers.err()]
    });
    for (e, whose) in no_thread
        .into_iter()
        .zip(["well-behaved clients", "strangers"])
    {
        if let Some(e) = e {
            chaos
                .ctx
                .lost
                .push(format!("no thread for the {whose}: {e}"));
        }
    }
    for (kind, tally) in std::mem::take(&mut strangers.ctx.tallies) {
        *chaos.ctx.tallies.entry(kind).or_default() += tally;
    }
}

/// The strangers' side of phase 3: misbehaving clients started in turn, the storms, the
/// reset storms beside them, until `duration` has passed since `started`.
fn strangers_misbehave(
    chaos: &mut Chaos,
    plan: &Plan,
    started: Instant,
    duration: Duration,
    rss: &mut HeapPeak,
) {
    let args = plan.args;
    let mut storms: VecDeque<Instant> = if args.storm > 0 {
        [duration / 3, duration * 2 / 3]
            .map(|at| started + at)
            .into()
    } else {
        VecDeque::new()
    };
    let reset_storms: Vec<_> = (0..args.reset_storms)
        .map(|_| reset_storm(plan.target, started + duration))
        .collect();
    let mut next_spawn = started;
    while started.elapsed() < duration {
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
            next_spawn += plan.spawn_interval;
        }
        // Do not save up spawns while the cap holds them back.
        next_spawn = next_spawn.max(earlier(now, plan.spawn_interval));
        chaos.turn();
        rss.sample();
    }
    let tally = chaos.ctx.tallies.entry("reset storm").or_default();
    for storm in reset_storms.into_iter().flatten() {
        let (opened, failed) = storm.join().unwrap_or_default();
        tally.opened += opened;
        tally.failed += failed;
    }
}

/// A full-speed connect-and-reset storm until `until`, on a thread of its own (the loop's
/// clients must not wait for it): every connection is reset (SO_LINGER 0) as soon as it is
/// made, before the server has a chance to greet it, so the server pays for the accept and
/// nothing else can. Returns the connections made and the connects that failed.
///
/// The thread runs at the lowest priority (nice 19): "as fast as it can" means with the time
/// the rest of the run leaves it. At the same priority it took most of the generator's time
/// on a machine busy with other work, before the well-behaved clients' thread, whose reads the
/// server's `--max-output` grace is counting.
fn reset_storm(
    target: SocketAddr,
    until: Instant,
) -> Result<std::thread::JoinHandle<(u64, u64)>, String> {
    let storm = move || {
        nice_this_thread(19);
        let (mut opened, mut failed) = (0, 0);
        while Instant::now() < until {
            match std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                Ok(stream) => {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    opened += 1;
                }
                Err(_) => failed += 1,
            }
        }
        (opened, failed)
    };
    std::thread::Builder::new()
        .name("reset-storm".into())
        .spawn(storm)
        .map_err(|e| e.to_string())
}

/// Lowers the calling thread's priority to `nice`, best effort: `renice` on the thread's id
/// (from `/proc/thread-self`), since the crate has no `unsafe` to call `setpriority` itself. A
/// machine without either keeps the thread at its priority.
fn nice_this_thread(nice: u8) {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name() else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .arg(tid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Phase 4, calm: the strangers go; what the chatters sent must all arrive (within
/// [`DRAIN_LIMIT`]).
fn calm(chaos: &mut Chaos, strangers: Chaos) {
    chaos.ctx.phase = Phase::Calm;
    for (_, client) in strangers.clients.iter() {
        close(client);
    }
    drop(strangers);
    chaos.run_until(DRAIN_LIMIT, |c| c.drained());
}

/// The end of phase 4: once the server has let every stranger go, and so relayed all it ever
/// will of their lines, each chatter says one more line, which must arrive like the others.
/// The lobby's history then ends with lines the next round can judge (`history.rs`). Without
/// them it ends with the flood's leftovers: the server reads a flooder only as fast as
/// `--rate` allows, so its lines go on for seconds after it has gone. Seeing the strangers
/// gone takes the server's descriptors (`--server-pid`); without, there are no last words.
fn last_words(chaos: &mut Chaos, plan: &Plan) {
    let (Some(pid), Some((fds_cold, _))) = (plan.server_pid, plan.cold) else {
        return;
    };
    // Only the well-behaved are left, each on one descriptor of the server's.
    let staying = fds_cold + chaos.clients.len();
    chaos.run_until(SETTLE_LIMIT, |_| {
        resources(pid).is_some_and(|(fds, _)| fds <= staying)
    });
    for (_, client) in chaos.clients.iter_mut() {
        if let Role::Chatter(me) = client.role {
            say(client, &mut chaos.ctx, me);
            let _ = write_out(client);
        }
    }
    chaos.run_until(DRAIN_LIMIT, |c| c.drained());
}

/// Phase 5, leave: chatters and pingers `/quit`; the server must close each of them within
/// [`LEAVE_LIMIT`]. The witnesses stay for the history check.
fn leave(chaos: &mut Chaos) {
    chaos.ctx.phase = Phase::Leave;
    let witness = |c: &Client| matches!(c.role, Role::Witness(_));
    for (_, client) in chaos.clients.iter_mut().filter(|(_, c)| !witness(c)) {
        client.output.extend_from_slice(b"/quit\n");
        client.leaving = true;
        let _ = write_out(client);
    }
    chaos.run_until(LEAVE_LIMIT, |c| c.clients.iter().all(|(_, c)| witness(c)));
    let ctx = &mut chaos.ctx;
    chaos.clients.retain(|_, client| {
        if !witness(client) {
            ctx.lost
                .push(format!("{} was not closed after /quit", client.kind));
        }
        witness(client)
    });
}

/// Phase 6, settle: the server closes what it still holds (lingering closes take up to 2 s)
/// and gives the round's memory back (within a second of going quiet). Waits, up to
/// [`SETTLE_LIMIT`], for its descriptors to come back down to `cold` (but the `staying`
/// clients', one each) and its heap to within [`HEAP_MARGIN_KIB`] of it; returns its
/// descriptors (the staying ones' not counted) and heap then (with `--server-pid`).
fn settle(pid: Option<u32>, cold: Option<(usize, u64)>, staying: usize) -> Option<(usize, u64)> {
    let started = Instant::now();
    let mut end = pid.and_then(resources);
    while let (Some((fds_cold, heap_cold)), Some((fds, rss))) = (cold, end) {
        let back = fds <= fds_cold + staying && rss <= heap_cold + HEAP_MARGIN_KIB;
        if back || started.elapsed() >= SETTLE_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        end = pid.and_then(resources);
    }
    end.map(|(fds, rss)| (fds.saturating_sub(staying), rss))
}

/// The server's highest heap during a round, read at most every 100 ms as the loop turns.
struct HeapPeak {
    pid: Option<u32>,
    peak: Option<u64>,
    sampled: Instant,
}

impl HeapPeak {
    fn new(pid: Option<u32>) -> HeapPeak {
        HeapPeak {
            pid,
            peak: None,
            sampled: Instant::now(),
        }
    }

    fn sample(&mut self) {
        if self.sampled.elapsed() >= Duration::from_millis(100)
            && let Some(rss) = self.pid.and_then(anon_kib)
        {
            self.peak = self.peak.max(Some(rss));
            self.sampled = Instant::now();
        }
    }
}

impl Context {
    /// Boils the round down to its figures and its verdict on each per-round promise, and
    /// keeps what its chatters said for the next round's replays.
    fn into_round(
        self,
        secs: f64,
        end: Option<(usize, u64)>,
        heap_peak: Option<u64>,
        earlier: Option<&Said>,
        kept: Result<u64, String>,
    ) -> (Round, Said) {
        let ctx = self;
        let (moderation, operator) = ctx.desk.judge();
        let rooms = ctx.layout.rooms();
        let lines = ctx
            .layout
            .each()
            .map(|(room, n)| (room, RoomLines::of(room, n, &ctx.chatters)));
        let sent: Vec<u64> = ctx.chatters.iter().map(ChatterLog::sent).collect();
        let (sent_at, received): (Vec<_>, Vec<_>) = ctx
            .chatters
            .into_iter()
            .map(|c| (c.sent_at, c.received))
            .unzip();
        let strayed = (ctx.strays, ctx.first_stray.as_deref());
        let [once, order, apart] = deliveries(&sent, &rooms, &received, &lines, strayed);
        let (replayed, mut replays) = history::judge(&ctx.replays, earlier, &rooms);
        let replayed = replayed.and(kept).map(|checked| {
            replays.checked = checked;
        });
        let pings = ctx.pings;
        // A ping never answered counts as taking until now.
        let ping_slowest = pings
            .pending
            .front()
            .map_or(pings.slowest, |(_, _, at)| pings.slowest.max(at.elapsed()));
        let dirty = (ctx.dirty, ctx.first_dirty.as_deref());
        let [clean, answering, stayed] = conduct(dirty, &pings, ping_slowest, &ctx.lost);
        let verdicts = [once, order, apart, replayed, clean, answering, stayed];
        let total = |figure: fn(&RoomLines) -> u64| lines.iter().map(|(_, r)| figure(r)).sum();
        let round = Round {
            secs,
            tallies: ctx.tallies,
            lines_sent: total(|r| r.lines_sent),
            lines_sent_tls: total(|r| r.lines_sent_tls),
            lines_sent_ws: total(|r| r.lines_sent_ws),
            deliveries: total(|r| r.deliveries),
            expected: total(|r| r.expected),
            rooms: lines,
            replays,
            latency: ctx.latency,
            pings_sent: pings.sent,
            pings_answered: pings.answered,
            ping_slowest,
            ping_limit: pings.limit,
            round_trip: pings.round_trip,
            verdicts,
            moderation,
            operator,
            end,
            heap_peak,
        };
        (
            round,
            Said {
                sent_at,
                records: received,
            },
        )
    }
}

/// The verdicts on how the server treated the well-behaved clients: only clean text (`dirty`:
/// how many lines were not, and the first), every ping answered in time, nobody lost.
fn conduct(
    dirty: (u64, Option<&str>),
    pings: &PingLog,
    ping_slowest: Duration,
    lost: &[String],
) -> [Result<(), String>; 3] {
    [
        match dirty {
            (n, Some(line)) => Err(format!(
                "{n} lines with control characters or invalid UTF-8, e.g. {line:?}"
            )),
            _ => Ok(()),
        },
        if pings.sent > 0 && pings.answered == pings.sent && ping_slowest <= pings.limit {
            Ok(())
        } else {
            Err(answered(
                pings.answered,
                pings.sent,
                ping_slowest,
                pings.limit,
            ))
        },
        if lost.is_empty() {
            Ok(())
        } else {
            Err(counted(lost))
        },
    ]
}

/// The verdicts on what reached the chatters live: exactly once and in one order in each
/// room, with every room's chatters heard; and the rooms kept apart, by chatter lines and, in
/// the second room, by any other chat line (`strayed`: how many, and the first).
fn deliveries(
    sent: &[u64],
    rooms: &[&str],
    received: &[Vec<LineId>],
    lines: &[(&str, RoomLines)],
    strayed: (u64, Option<&str>),
) -> [Result<(), String>; 3] {
    let silent = lines.iter().find(|(_, r)| r.lines_sent == 0);
    [
        invariants::exactly_once(sent, rooms, received).and_then(|()| match silent {
            Some((room, _)) => Err(format!("the chatters of {room} sent nothing")),
            None => Ok(()),
        }),
        invariants::one_global_order(sent, received),
        invariants::rooms_apart(rooms, received).and_then(|()| match strayed {
            (n, Some(first)) => Err(format!(
                "{n} chat lines not of its chatters reached {SECOND_ROOM}: {first} first"
            )),
            _ => Ok(()),
        }),
    ]
}
