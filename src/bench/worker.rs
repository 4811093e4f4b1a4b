//! One load-generator thread: a mio loop of its own, driving its share of the connections.
//!
//! The generator is built like the server it measures: non-blocking sockets in one `Poll`,
//! read until `WouldBlock`, and output kept in a buffer when the socket will not take it all.
//! A generator that blocked, or that used a thread per connection, would measure itself.
//!
//! The orchestrator (`bench/run.rs`) moves every worker through the same phases by setting
//! [`Shared::phase`]; workers only report counts back, through atomics.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, SockRef, Socket, Type};

use super::wire::{self, Incoming, Proto, Stamp};
use crate::nonblocking::write_until_blocked;
use crate::nonblocking::{ReadOutcome, connect_finished};

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
    pub delivered: AtomicU64,
    /// Per sender: how many of its lines the probe receiver has seen (for `--rate max`).
    pub acked: Vec<AtomicU64>,
}

impl Shared {
    pub fn new(senders: usize) -> Shared {
        Shared {
            phase: AtomicU8::new(phase::CONNECT),
            epoch: Instant::now(),
            established: AtomicUsize::new(0),
            receivers_established: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acked: (0..senders).map(|_| AtomicU64::new(0)).collect(),
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
    pub conns: usize,
    /// `conns` plus, for Redis chatters, one subscribed companion per sender.
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
}

/// How fast senders send.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Each sender sends one line per interval.
    Paced { interval: Duration },
    /// Each sender keeps `window` lines in flight (sent but not yet seen by the probe).
    Window { window: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sender(u32),
    /// The probe is the first receiver; it acknowledges lines for windowed senders.
    Receiver {
        probe: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    /// Connected; waiting for the welcome (pollchat) or the subscription (Redis receivers).
    Joining,
    Ready,
    Done,
}

struct Conn {
    stream: TcpStream,
    role: Role,
    state: State,
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

/// An empty latency histogram: microseconds from 1 µs to 60 s, 3 significant digits. Every
/// worker's and the merged one must have the same bounds, so they all come from here.
pub fn latency_histogram() -> io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| io::Error::other(e.to_string()))
}

/// Runs one worker until the `STOP` phase; returns its latency histogram (microseconds).
pub fn run(plan: &Plan, shared: &Shared) -> io::Result<Histogram<u64>> {
    let mut latency = latency_histogram()?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    // Indexed by token. `None`: the connect could not even be started.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut traffic_started = false;
    let mut scratch = vec![0u8; 64 * 1024];
    let mine: Vec<usize> = (plan.worker..plan.total).step_by(plan.threads).collect();
    let connect_interval = Duration::from_secs_f64(1.0 / plan.connect_rate.max(1e-3));
    let mut next_connect = Instant::now();

    loop {
        let phase = shared.phase();
        if phase == phase::STOP {
            break;
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
        if phase == phase::TRAFFIC {
            let ready = conns
                .iter_mut()
                .flatten()
                .filter(|c| c.state == State::Ready);
            for conn in ready {
                if !traffic_started {
                    conn.next_send = first_send(conn.role, plan, now);
                }
                produce(conn, plan, shared, now);
            }
            traffic_started = true;
        }
        poll.poll(&mut events, Some(TICK))?;
        for event in events.iter() {
            let Token(i) = event.token();
            let Some(Some(conn)) = conns.get_mut(i) else {
                continue;
            };
            service(conn, plan, shared, &mut latency, &mut scratch);
        }
    }
    for conn in conns.iter().flatten().filter(|c| c.state != State::Done) {
        // Close with a reset: no TIME_WAIT left behind to eat ports between runs.
        let _ = SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
    }
    Ok(latency)
}

impl Conn {
    fn new(stream: TcpStream, role: Role, state: State) -> Conn {
        Conn {
            stream,
            role,
            state,
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
        // The probe is the first pure receiver (companion subscriptions come after `conns`).
        Role::Receiver {
            probe: index == plan.senders && index < plan.conns,
        }
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
    Ok(Conn::new(stream, role(plan, index), State::Connecting))
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
fn service(
    conn: &mut Conn,
    plan: &Plan,
    shared: &Shared,
    latency: &mut Histogram<u64>,
    scratch: &mut [u8],
) {
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
    // Read until WouldBlock; a close is acted on only after what came before it is decoded
    // (the server's last words, such as "server full", arrive just before its FIN).
    let closed = read_all(conn, scratch);
    take_input(conn, plan, shared, latency);
    if closed {
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
    if plan.proto == Proto::Redis {
        match conn.role {
            Role::Receiver { .. } => conn.output = wire::receiver_hello(plan.proto),
            // A Redis publisher needs no greeting: it is ready at once.
            Role::Sender(_) => become_ready(conn, shared),
        }
    }
    true
}

/// Reads what the socket has into the connection's input, until `WouldBlock`; whether the
/// server closed the connection (or it failed).
fn read_all(conn: &mut Conn, scratch: &mut [u8]) -> bool {
    loop {
        match ReadOutcome::from_read(|| conn.stream.read(scratch)) {
            Ok(ReadOutcome::Data(n)) => conn.input.extend_from_slice(&scratch[..n]),
            Ok(ReadOutcome::Drained) => return false,
            Ok(ReadOutcome::Eof) | Err(_) => return true,
        }
    }
}

/// Decodes every complete message in the connection's input: welcomes and subscriptions,
/// a refusal, benchmark lines (timed and counted).
fn take_input(conn: &mut Conn, plan: &Plan, shared: &Shared, latency: &mut Histogram<u64>) {
    // Everything decoded below arrived in this one wakeup: one clock read and one phase
    // check serve all of it (per line, they were a sixth of the generator's time).
    let arrival = Arrival {
        now_ns: shared.now_ns(),
        counting: matches!(shared.phase(), phase::TRAFFIC | phase::DRAIN),
    };
    let mut delivered = 0;
    let mut used = 0;
    while let Some((incoming, n)) = wire::decode(plan.proto, &conn.input[used..]) {
        used += n;
        match incoming {
            Incoming::Welcome | Incoming::Subscribed if conn.state == State::Joining => {
                become_ready(conn, shared);
            }
            Incoming::Refused => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                conn.state = State::Done;
                return;
            }
            Incoming::Line(stamp) => {
                delivered += u64::from(receive(conn.role, plan, stamp, &arrival, shared, latency));
            }
            _ => {}
        }
    }
    shared.delivered.fetch_add(delivered, Ordering::Relaxed);
    conn.input.drain(..used);
}

fn become_ready(conn: &mut Conn, shared: &Shared) {
    conn.state = State::Ready;
    shared.established.fetch_add(1, Ordering::Relaxed);
    if matches!(conn.role, Role::Receiver { .. }) {
        shared.receivers_established.fetch_add(1, Ordering::Relaxed);
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

/// When a batch of input arrived, and whether the run is counting deliveries.
struct Arrival {
    now_ns: u64,
    counting: bool,
}

/// A benchmark line reached a receiver: time it and acknowledge it (probe only). Returns
/// whether it counts as a delivery.
fn receive(
    role: Role,
    plan: &Plan,
    stamp: Stamp,
    arrival: &Arrival,
    shared: &Shared,
    latency: &mut Histogram<u64>,
) -> bool {
    let probe = match role {
        Role::Receiver { probe } => probe,
        Role::Sender(_) if plan.senders_receive => false,
        // A pollchat sender hears the other senders; not a delivery measured in this run.
        Role::Sender(_) => return false,
    };
    if !arrival.counting {
        return false;
    }
    let micros = arrival.now_ns.saturating_sub(stamp.sent_at_ns) / 1000;
    latency.saturating_record(micros.max(1));
    if probe && let Some(acked) = shared.acked.get(stamp.sender as usize) {
        acked.fetch_max(stamp.seq + 1, Ordering::Relaxed);
    }
    true
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
    while conn.output.len() < MAX_PENDING_OUTPUT {
        let due = match plan.load {
            Load::Paced { .. } => conn.next_send <= now,
            Load::Window { window } => {
                let acked = shared
                    .acked
                    .get(sender as usize)
                    .map_or(0, |a| a.load(Ordering::Relaxed));
                conn.seq < acked + window
            }
        };
        if !due {
            break;
        }
        let stamp = Stamp {
            sender,
            seq: conn.seq,
            sent_at_ns: shared.now_ns(),
        };
        wire::encode_line(plan.proto, stamp, plan.size, &mut conn.output);
        conn.seq += 1;
        produced += 1;
        if let Load::Paced { interval } = plan.load {
            // Catch up after a stall, but not by more than a second's worth of lines.
            conn.next_send = (conn.next_send + interval).max(now - Duration::from_secs(1));
        }
    }
    shared.sent.fetch_add(produced, Ordering::Relaxed);
    if produced > 0 && flush(&mut conn.stream, &mut conn.output).is_err() {
        lost(conn, shared);
    }
}

/// Writes pending output until it is gone or the socket is full (kept for the next event).
pub(super) fn flush(stream: &mut TcpStream, output: &mut Vec<u8>) -> io::Result<()> {
    let written = write_until_blocked(stream, output)?;
    output.drain(..written);
    Ok(())
}
