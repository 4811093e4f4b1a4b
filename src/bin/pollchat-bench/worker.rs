//! One load-generator thread: a mio loop of its own, driving its share of the connections.
//!
//! The generator is built like the server it measures: non-blocking sockets in one `Poll`,
//! read until `WouldBlock`, and output kept in a buffer when the socket will not take it all.
//! A generator that blocked, or that used a thread per connection, would measure itself.
//!
//! The orchestrator (`run.rs`) moves every worker through the same phases by setting
//! [`Shared::phase`]; workers only report counts back, through atomics.
//!
//! A connection is established once it is where the load needs it: a pollchat client in its
//! room (welcomed, and with `--rooms` moved by `/join`), a Redis subscriber subscribed. What
//! a room replays to a newcomer (its history, between a header and a footer) was said before
//! this connection came, maybe by an earlier run's senders: none of it is a delivery.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, SockRef, Socket, Type};

use super::Writes;
use super::rooms::{Layout, RoomCounts};
use super::window::{Tally, Windows};
use super::wire::{self, Incoming, Proto, Run, Stamp};
use pollchat::nonblocking::write_until_blocked;
use pollchat::nonblocking::{ReadOutcome, connect_finished};

/// Phases every worker goes through, in order.
pub mod phase {
    /// Opening connections at the paced rate.
    pub const CONNECT: u8 = 0;
    /// Connections held open and idle (memory is measured here).
    pub const HOLD: u8 = 1;
    /// Senders send; receivers count and time what arrives.
    pub const TRAFFIC: u8 = 2;
    /// Senders stop; receivers keep counting what is still on its way.
    pub const DRAIN: u8 = 3;
    /// Close everything and return.
    pub const STOP: u8 = 4;
}

/// What the orchestrator and every worker share.
#[derive(Debug)]
pub struct Shared {
    pub phase: AtomicU8,
    /// The clock every timestamp in a benchmark line is relative to.
    pub epoch: Instant,
    pub established: AtomicUsize,
    pub receivers_established: AtomicUsize,
    pub refused: AtomicUsize,
    pub failed: AtomicUsize,
    /// Established connections the server closed before the end.
    pub dropped: AtomicUsize,
    pub sent: AtomicU64,
    /// Workers that have seen the traffic end, and so will count no more lines sent: once
    /// all have, `sent` is final.
    pub done_sending: AtomicUsize,
    pub delivered: AtomicU64,
    /// Benchmark lines heard in a room their sender is not in: the server's bug, never a
    /// delivery.
    pub foreign: AtomicU64,
    /// Per sender: which of its lines every receiver of its room has (for `--rate max`).
    pub windows: Windows,
    /// Per room: lines sent, connections and receivers in it.
    pub rooms: RoomCounts,
}

impl Shared {
    pub fn new(senders: usize, window: u64, rooms: usize) -> Shared {
        Shared {
            phase: AtomicU8::new(phase::CONNECT),
            epoch: Instant::now(),
            established: AtomicUsize::new(0),
            receivers_established: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            done_sending: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            windows: Windows::new(senders, window),
            rooms: RoomCounts::new(rooms),
        }
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What one worker does; the same for all workers but for `worker`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The servers; connection `i` goes to `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
    pub proto: Proto,
    /// `--conns` plus, for Redis chatters, one subscribed companion per sender.
    pub total: usize,
    pub senders: usize,
    /// Senders count the lines they receive too (see `--senders-receive`).
    pub senders_receive: bool,
    pub threads: usize,
    pub worker: usize,
    /// Connects per second for this worker.
    pub connect_rate: f64,
    /// Source addresses to spread connections over (empty: let the kernel choose).
    pub source_ips: Vec<IpAddr>,
    pub size: usize,
    pub load: Load,
    /// One `write` per line, or every line due in one.
    pub writes: Writes,
    /// Which room each connection is in.
    pub layout: Layout,
}

/// How fast senders send.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Each sender sends one line per interval.
    Paced { interval: Duration },
    /// Each sender keeps at most `--window` lines in flight: sent, and not yet had by every
    /// receiver (`window.rs`).
    Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sender(u32),
    /// Counts every line, and holds a windowed sender's line until it has it.
    Receiver,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    /// Connected; waiting for the welcome (pollchat) or the subscription (Redis receivers).
    Joining,
    /// Welcomed and sent `/join`; waiting for pollchat to say it is in its room.
    Entering,
    Ready,
    Done,
}

struct Conn {
    stream: TcpStream,
    role: Role,
    state: State,
    /// Its room (`rooms.rs`): it counts only the lines of this room's senders.
    room: usize,
    /// Between a history header and its footer: what is read is not live.
    in_history: bool,
    /// A Redis sender's `PUBLISH` head, naming its room's channel (empty otherwise).
    publish_head: Vec<u8>,
    /// The start of a message whose end has not arrived yet.
    input: Vec<u8>,
    output: Vec<u8>,
    seq: u64,
    next_send: Instant,
}

/// A sender stops producing while this much of its output is still unsent: the server is
/// pushing back, and the generator must not buffer without bound either.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// Linux's EINPROGRESS (`io::ErrorKind::InProgress` is not stable yet). The generator reads
/// /proc and runs on Linux only.
const EINPROGRESS: i32 = 115;
/// Longest a worker sleeps in `poll`, so it notices phase changes promptly.
const TICK: Duration = Duration::from_millis(2);
/// The one buffer every read of a worker goes into. Large, so that a receiver far behind
/// catches up in few reads; a read that fills less than this has drained its socket.
const READ_CHUNK: usize = 256 * 1024;

/// An empty latency histogram: microseconds from 1 µs to 60 s, 3 significant digits. Every
/// worker's and the merged one must have the same bounds, so they all come from here.
pub fn latency_histogram() -> io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| io::Error::other(e.to_string()))
}

/// Runs one worker until the `STOP` phase; returns its latency histogram (microseconds).
pub fn run(plan: &Plan, shared: &Shared) -> io::Result<Histogram<u64>> {
    let mut rx = Receiving::new()?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    // Indexed by token. `None`: the connect could not even be started.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut traffic_started = false;
    let mine: Vec<usize> = (plan.worker..plan.total).step_by(plan.threads).collect();
    // Senders are the first connections: the loop offers only these a chance to send.
    let senders = mine.iter().take_while(|&&i| i < plan.senders).count();
    let connect_interval = Duration::from_secs_f64(1.0 / plan.connect_rate.max(1e-3));
    let mut next_connect = Instant::now();
    let mut done_sending = false;

    loop {
        let phase = shared.phase();
        if phase == phase::STOP {
            break;
        }
        // Said after this worker's last `sent.fetch_add`: a sender that read TRAFFIC just
        // before the drain began may still have been sending, and its lines count.
        if phase >= phase::DRAIN && !done_sending {
            done_sending = true;
            shared.done_sending.fetch_add(1, Ordering::Release);
        }
        let now = Instant::now();
        while phase == phase::CONNECT && conns.len() < mine.len() && next_connect <= now {
            let index = mine[conns.len()];
            match open(plan, index, &poll, conns.len()) {
                Ok(conn) => conns.push(Some(conn)),
                Err(_) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    conns.push(None);
                }
            }
            next_connect += connect_interval;
        }
        let mut wake = now + TICK;
        if phase == phase::TRAFFIC {
            let senders = conns.iter_mut().take(senders).flatten();
            wake = wake.min(offer_sends(senders, plan, shared, now, !traffic_started));
            traffic_started = true;
        }
        poll.poll(&mut events, Some(wake.saturating_duration_since(now)))?;
        for event in events.iter() {
            let Token(i) = event.token();
            if let Some(Some(conn)) = conns.get_mut(i) {
                service(conn, plan, shared, &mut rx, event.is_read_closed());
            }
        }
        rx.publish(plan, shared);
    }
    for conn in conns.iter().flatten().filter(|c| c.state != State::Done) {
        // Close with a reset: no TIME_WAIT left behind to eat ports between runs.
        let _ = SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
    }
    Ok(rx.latency)
}

/// Lets every ready sender send what its load allows now (the first time, a paced sender's
/// start is staggered first). Returns when the next paced line is due: the loop sleeps no
/// longer than that, or lines due meanwhile would go out together, late, and queue behind
/// each other in the server (the latency measured would be the generator's burst).
fn offer_sends<'a>(
    senders: impl Iterator<Item = &'a mut Conn>,
    plan: &Plan,
    shared: &Shared,
    now: Instant,
    first: bool,
) -> Instant {
    let mut due = now + TICK;
    for conn in senders.filter(|c| c.state == State::Ready) {
        if first {
            conn.next_send = first_send(conn.role, plan, now);
        }
        produce(conn, plan, shared, now);
        // (A sender whose output is full waits for the socket instead: a due time in the
        // past would make the loop spin.)
        if matches!(plan.load, Load::Paced { .. }) && conn.output.len() < MAX_PENDING_OUTPUT {
            due = due.min(conn.next_send);
        }
    }
    due
}

/// What a worker's receivers gather over one batch of events, and the buffer they read into.
struct Receiving {
    latency: Histogram<u64>,
    /// Deliveries counted in this batch (added to [`Shared::delivered`] once per batch).
    delivered: u64,
    /// Lines from another room heard in this batch (for [`Shared::foreign`]).
    foreign: u64,
    /// Lines heard in this batch, for the windows of `--rate max`.
    tally: Tally,
    scratch: Vec<u8>,
}

impl Receiving {
    fn new() -> io::Result<Receiving> {
        Ok(Receiving {
            latency: latency_histogram()?,
            delivered: 0,
            foreign: 0,
            tally: Tally::default(),
            scratch: vec![0; READ_CHUNK],
        })
    }

    /// The end of a batch: what was counted goes to the shared counts and windows, so a
    /// sender whose lines every receiver now has may send again on the next turn.
    fn publish(&mut self, plan: &Plan, shared: &Shared) {
        if self.delivered > 0 {
            shared
                .delivered
                .fetch_add(self.delivered, Ordering::Relaxed);
            self.delivered = 0;
        }
        if self.foreign > 0 {
            shared.foreign.fetch_add(self.foreign, Ordering::Relaxed);
            self.foreign = 0;
        }
        if matches!(plan.load, Load::Window) {
            self.tally.publish(&shared.windows);
        }
    }
}

impl Conn {
    fn new(stream: TcpStream, role: Role, room: usize) -> Conn {
        Conn {
            stream,
            role,
            state: State::Connecting,
            room,
            in_history: false,
            publish_head: Vec::new(),
            input: Vec::new(),
            output: Vec::new(),
            seq: 0,
            next_send: Instant::now(),
        }
    }
}

fn role(plan: &Plan, index: usize) -> Role {
    if index < plan.senders {
        Role::Sender(u32::try_from(index).unwrap_or(u32::MAX))
    } else {
        Role::Receiver
    }
}

/// Starts a non-blocking connect (from a chosen source address if there are several).
fn open(plan: &Plan, index: usize, poll: &Poll, token: usize) -> io::Result<Conn> {
    let source =
        (!plan.source_ips.is_empty()).then(|| plan.source_ips[index % plan.source_ips.len()]);
    let target = plan.targets[index % plan.targets.len()];
    let mut stream = connect(target, source, None)?;
    poll.registry().register(
        &mut stream,
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut conn = Conn::new(stream, role(plan, index), plan.layout.room_of(index));
    if plan.proto == Proto::Redis && matches!(conn.role, Role::Sender(_)) {
        conn.publish_head = wire::publish_head(&plan.layout.channel(conn.room));
    }
    Ok(conn)
}

/// Starts a non-blocking connect to `target`, from `source` if given, with a receive buffer
/// of `receive_buffer` bytes if given (set before connecting, so the window the peer sees
/// is small from the first segment). The connect completes when the socket turns writable.
pub(super) fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    receive_buffer: Option<usize>,
) -> io::Result<TcpStream> {
    if source.is_none() && receive_buffer.is_none() {
        return TcpStream::connect(target);
    }
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // The normal answer of a non-blocking connect.
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Handles readiness on one connection: completes a connect, flushes output, reads input.
/// `read_closed`: the event said the peer closed, so only a read of 0 bytes ends the reading
/// (the end came with the data, and no later event will report it).
fn service(conn: &mut Conn, plan: &Plan, shared: &Shared, rx: &mut Receiving, read_closed: bool) {
    if conn.state == State::Done {
        return;
    }
    if conn.state == State::Connecting && !finish_connect(conn, plan, shared) {
        return;
    }
    if flush(&mut conn.stream, &mut conn.output).is_err() {
        lost(conn, shared);
        return;
    }
    if read_all(conn, plan, shared, rx, read_closed) {
        lost(conn, shared);
    }
}

/// Completes a connect: the connection joins (a Redis receiver subscribes, a Redis sender
/// is ready at once). Whether it is connected.
fn finish_connect(conn: &mut Conn, plan: &Plan, shared: &Shared) -> bool {
    match connect_finished(&conn.stream) {
        Ok(true) => {}
        Ok(false) => return false,
        Err(_) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            conn.state = State::Done;
            return false;
        }
    }
    let _ = conn.stream.set_nodelay(true);
    conn.state = State::Joining;
    match (plan.proto, conn.role) {
        (Proto::Redis, Role::Receiver) => {
            conn.output = wire::redis_hello(&plan.layout.channel(conn.room));
        }
        // A Redis publisher needs no greeting: it is ready at once.
        (Proto::Redis, Role::Sender(_)) => become_ready(conn, shared),
        // Every WebSocket client upgrades first; the welcome that follows makes it ready.
        (Proto::Ws, _) => conn.output = wire::ws_hello(),
        (Proto::Pollchat, _) => {}
    }
    true
}

/// Reads what the socket has and decodes it as it comes, until the socket is drained;
/// whether the server closed the connection (or it failed). Each read goes into the worker's
/// scratch buffer after the start of a message left by the last one, so a fan-out receiver's
/// bytes are never copied, and a read that fills less than it was offered ends the reading
/// without the extra `read` that would only say `WouldBlock` (`ReadOutcome::drained`).
fn read_all(
    conn: &mut Conn,
    plan: &Plan,
    shared: &Shared,
    rx: &mut Receiving,
    read_closed: bool,
) -> bool {
    loop {
        if conn.input.len() > READ_CHUNK / 2 {
            // No message of either protocol is this long: what is kept is not one.
            conn.input.clear();
        }
        let kept = conn.input.len();
        let mut scratch = std::mem::take(&mut rx.scratch);
        scratch[..kept].copy_from_slice(&conn.input);
        let offered = scratch.len() - kept;
        let outcome = ReadOutcome::from_read(|| conn.stream.read(&mut scratch[kept..]));
        if let Ok(ReadOutcome::Data(n)) = outcome {
            let bytes = &scratch[..kept + n];
            let used = take_input(conn, plan, shared, rx, bytes);
            conn.input.clear();
            conn.input.extend_from_slice(&bytes[used..]);
        }
        rx.scratch = scratch;
        match outcome {
            // Refused: nothing more to hear.
            _ if conn.state == State::Done => return false,
            Ok(ReadOutcome::Eof) | Err(_) => return true,
            Ok(ReadOutcome::Drained) => return false,
            Ok(outcome) if outcome.drained(offered) && !read_closed => return false,
            Ok(ReadOutcome::Data(_)) => {}
        }
    }
}

/// Decodes every complete message at the front of `bytes`: welcomes and subscriptions, a
/// refusal, histories, benchmark lines (timed and counted). Returns the bytes used.
fn take_input(
    conn: &mut Conn,
    plan: &Plan,
    shared: &Shared,
    rx: &mut Receiving,
    bytes: &[u8],
) -> usize {
    // Everything decoded below arrived in this one read: one clock read and one phase
    // check serve all of it (per line, they were a sixth of the generator's time).
    let arrival = Arrival {
        now_ns: shared.now_ns(),
        counting: matches!(shared.phase(), phase::TRAFFIC | phase::DRAIN),
    };
    // A windowed receiver knows when each line in flight was sent, so a run of lines is
    // counted and timed without parsing each one.
    let runs = conn.role == Role::Receiver && matches!(plan.load, Load::Window);
    let mut used = 0;
    while used < bytes.len() {
        // A history is read line by line (it is short), so that none of it counts.
        if runs
            && !conn.in_history
            && let Some((run, n)) = wire::take_run(plan.proto, &bytes[used..])
        {
            used += n;
            receive_run(run, conn.room, plan, &arrival, shared, rx);
            continue;
        }
        let Some((incoming, n)) = wire::decode(plan.proto, &bytes[used..]) else {
            break;
        };
        used += n;
        if incoming == Incoming::Refused {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            conn.state = State::Done;
            break;
        }
        hear(conn, plan, shared, incoming, &arrival, rx);
    }
    used
}

/// What one message other than a run of lines means for the connection that read it.
fn hear(
    conn: &mut Conn,
    plan: &Plan,
    shared: &Shared,
    incoming: Incoming,
    arrival: &Arrival,
    rx: &mut Receiving,
) {
    match incoming {
        Incoming::Welcome if conn.state == State::Joining => enter_room(conn, plan, shared),
        Incoming::Subscribed if conn.state == State::Joining => become_ready(conn, shared),
        Incoming::NowIn if conn.state == State::Entering => become_ready(conn, shared),
        Incoming::HistoryBegins => conn.in_history = true,
        Incoming::HistoryEnds => conn.in_history = false,
        Incoming::Line(stamp) if !conn.in_history => {
            receive(conn.role, conn.room, plan, stamp, arrival, rx);
        }
        _ => {}
    }
}

/// A welcomed pollchat client goes to its room; with one room it is there (`#lobby`).
fn enter_room(conn: &mut Conn, plan: &Plan, shared: &Shared) {
    let Some(join) = plan.layout.join_line(conn.room) else {
        become_ready(conn, shared);
        return;
    };
    wire::encode_command(plan.proto, &join, &mut conn.output);
    conn.state = State::Entering;
    // Sent now: no writable edge will come to flush it. Should the write fail, the next read
    // fails too, and the connection is counted lost there.
    let _ = flush(&mut conn.stream, &mut conn.output);
}

fn become_ready(conn: &mut Conn, shared: &Shared) {
    conn.state = State::Ready;
    shared.established.fetch_add(1, Ordering::Relaxed);
    let room = shared.rooms.get(conn.room);
    if let Some(room) = room {
        room.established.fetch_add(1, Ordering::Relaxed);
    }
    if conn.role == Role::Receiver {
        shared.receivers_established.fetch_add(1, Ordering::Relaxed);
        if let Some(room) = room {
            room.receivers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The server closed an established connection, or a connect failed late.
fn lost(conn: &mut Conn, shared: &Shared) {
    if conn.state == State::Ready {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    } else if conn.state != State::Done {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    }
    conn.state = State::Done;
}

/// When a read's input arrived, and whether the run is counting deliveries.
struct Arrival {
    now_ns: u64,
    counting: bool,
}

/// A benchmark line reached a connection in `room`: count and time it if this run counts
/// what that connection hears, and note it for its sender's window (receivers only). A line
/// from another room is no delivery, but the server's leak.
fn receive(
    role: Role,
    room: usize,
    plan: &Plan,
    stamp: Stamp,
    arrival: &Arrival,
    rx: &mut Receiving,
) {
    if plan.layout.room_of_sender(stamp.sender) != room {
        rx.foreign += 1;
        return;
    }
    let counts = match role {
        Role::Receiver => true,
        // A pollchat sender hears the other senders; a delivery only for chatters.
        Role::Sender(_) => plan.senders_receive,
    };
    if !counts || !arrival.counting {
        return;
    }
    let micros = arrival.now_ns.saturating_sub(stamp.sent_at_ns) / 1000;
    rx.latency.saturating_record(micros.max(1));
    rx.delivered += 1;
    if role == Role::Receiver && matches!(plan.load, Load::Window) {
        rx.tally.add(stamp.sender, stamp.seq, 1);
    }
}

/// A run of one sender's lines reached a windowed receiver in `room`: each is timed from
/// when its sender sent it (its window remembers), counted, and noted for the window. A run
/// from another room is the server's leak, as in [`receive`].
fn receive_run(
    run: Run,
    room: usize,
    plan: &Plan,
    arrival: &Arrival,
    shared: &Shared,
    rx: &mut Receiving,
) {
    if plan.layout.room_of_sender(run.sender) != room {
        rx.foreign += run.count;
        return;
    }
    let Some(window) = shared.windows.get(run.sender) else {
        return;
    };
    if !arrival.counting {
        return;
    }
    // A sender writes a burst of lines within a microsecond or two, so a run's latencies
    // come in long stretches of one value: each stretch is one histogram update.
    let mut stretch = (0, 0);
    for seq in run.first..run.first + run.count {
        let micros = (arrival.now_ns.saturating_sub(window.sent_at(seq)) / 1000).max(1);
        if micros != stretch.0 {
            rx.latency.saturating_record_n(stretch.0.max(1), stretch.1);
            stretch = (micros, 0);
        }
        stretch.1 += 1;
    }
    rx.latency.saturating_record_n(stretch.0.max(1), stretch.1);
    rx.delivered += run.count;
    rx.tally.add(run.sender, run.first, run.count);
}

/// When a paced sender sends its first line: staggered evenly over one interval. Started
/// together, 500 chatters would send in lockstep bursts of 500 lines every interval, and the
/// latency measured would be that of the bursts the generator made, not of the server.
fn first_send(role: Role, plan: &Plan, now: Instant) -> Instant {
    match (role, plan.load) {
        (Role::Sender(sender), Load::Paced { interval }) => {
            now + interval.mul_f64(f64::from(sender) / plan.senders.max(1) as f64)
        }
        _ => now,
    }
}

/// Lets a sender send what its load allows now, then flushes.
fn produce(conn: &mut Conn, plan: &Plan, shared: &Shared, now: Instant) {
    let Role::Sender(sender) = conn.role else {
        return;
    };
    let mut produced = 0u64;
    let mut broken = false;
    while conn.output.len() < MAX_PENDING_OUTPUT {
        let due = match plan.load {
            Load::Paced { .. } => conn.next_send <= now,
            Load::Window => shared.windows.get(sender).is_some_and(|w| w.open(conn.seq)),
        };
        if !due {
            break;
        }
        let stamp = Stamp {
            sender,
            seq: conn.seq,
            sent_at_ns: shared.now_ns(),
        };
        if let Some(window) = shared.windows.get(sender) {
            window.sending(stamp.seq, stamp.sent_at_ns);
        }
        wire::encode_published(
            plan.proto,
            &conn.publish_head,
            stamp,
            plan.size,
            &mut conn.output,
        );
        conn.seq += 1;
        produced += 1;
        if let Load::Paced { interval } = plan.load {
            // Catch up after a stall, but not by more than a second's worth of lines.
            conn.next_send = (conn.next_send + interval).max(now - Duration::from_secs(1));
        }
        // `--writes line`: this line goes out in a write of its own, as `nc` sends a line
        // (whatever the socket does not take waits in `output`, as it would in nc's buffer).
        if plan.writes == Writes::Line && flush(&mut conn.stream, &mut conn.output).is_err() {
            broken = true;
            break;
        }
    }
    shared.sent.fetch_add(produced, Ordering::Relaxed);
    if let Some(room) = shared.rooms.get(conn.room) {
        room.sent.fetch_add(produced, Ordering::Relaxed);
    }
    if broken || (produced > 0 && flush(&mut conn.stream, &mut conn.output).is_err()) {
        lost(conn, shared);
    }
}

/// Writes pending output until it is gone or the socket is full (kept for the next event).
pub(super) fn flush(stream: &mut TcpStream, output: &mut Vec<u8>) -> io::Result<()> {
    let written = write_until_blocked(stream, output)?;
    output.drain(..written);
    Ok(())
}
