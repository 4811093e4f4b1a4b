//! The event loop: one thread, one `mio::Poll`, every socket the server has.
//!
//! Each turn of [`Server::run`] does the same five things, in this order:
//!
//! 1. **Wait** in `poll` until a socket is ready or the next timer is due.
//! 2. **Handle every event** of the batch: accept new clients, read from readable clients and
//!    turn their lines into output queued for others (in `room.rs`), note writable clients.
//!    With `--backplane`, read Redis's replies and hand the events they carry to the room.
//!    Nothing is written to a client yet.
//! 3. **Serve the ready list**: clients that still had unread input when their read budget
//!    ran out last turn. Edge-triggered readiness will not report them again, so the loop
//!    must remember them itself. (The backplane's Redis connections have a budget too.)
//! 4. **Fire due timers**: idle timeouts, flood control resuming, lingering closes, accept
//!    pauses, the shutdown deadline, the backplane's reconnects and nick refreshes.
//! 5. **End the batch**: send the leave notices, publish what the room has for Redis, then
//!    flush every client that has new output, once each, then free the slots of the
//!    connections that closed.
//!
//! Why write only at the end (step 5)? A batch often holds lines from several senders. Writing
//! after each line would cost every recipient one system call per line; writing once at the
//! end costs one `writev` per recipient per batch, however many lines it got. This is the
//! `beforeSleep` write of Redis.
//!
//! Why free slots only at the end? Tokens are slab keys, and the slab reuses a freed key for
//! the next connection. If a client were removed in the middle of a batch, and a new one
//! accepted later in the same batch took its key, an event still waiting in the batch for
//! the old client would be handled as the new client's. So a connection that ends is only
//! marked `Closed`; events for a closed token are ignored; the slot is freed in step 5.
//!
//! Readiness is edge-triggered (mio's only mode). "Readable" means "new data arrived since
//! you last saw `WouldBlock`". The rule is therefore to read until `WouldBlock` (and to write
//! until `WouldBlock` when output is stuck), or to remember that the socket may still be
//! ready. The ready list (step 3) is where the loop remembers that.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::backplane::{self, Backplane, Happening};
use crate::config::Config;
use crate::connection::{CloseReason, ConnRef, Connection, Phase, ReadOutcome};
use crate::error::Error;
use crate::framing::Frame;
use crate::limits::{ACCEPT_PAUSE, FD_RESERVE, LINGER, READ_BUDGET, READ_CHUNK, SHUTDOWN_GRACE};
use crate::os;
use crate::protocol;
use crate::rate_limit::TokenBucket;
use crate::room::Room;
use crate::timers::{Timer, Timers};
use crate::tls::{self, Session};
use crate::write_queue::Flushed;

/// Tokens that are not clients sit at the top of the token space; clients are slab keys,
/// which count up from 0 and never get near these.
const SIGNALS: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const STATS: Token = Token(usize::MAX - 2);
/// The backplane's two connections to Redis (`--backplane`).
const BACKPLANE_SUB: Token = Token(usize::MAX - 3);
const BACKPLANE_CMD: Token = Token(usize::MAX - 4);
const FIRST_LISTENER: usize = usize::MAX - 5;

fn listener_token(index: usize) -> Token {
    Token(FIRST_LISTENER - index)
}

/// Events fetched from the kernel per `poll` call. More events than this are simply left for
/// the next call.
const EVENTS_CAPACITY: usize = 1024;

/// The readiness the loop acts on, taken from a mio event. An error or hang-up is reported as
/// readable and writable: the next `read` or `write` returns the actual error (or the last
/// bytes before an orderly close), which is handled there, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
}

impl From<&Event> for Readiness {
    fn from(event: &Event) -> Readiness {
        Readiness {
            token: event.token(),
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed() || event.is_error(),
        }
    }
}

/// Stops a running server from another thread, as SIGTERM would (for tests and embedders).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the loop to shut down gracefully. Does nothing if the server already stopped.
    pub fn shutdown(&self) {
        let _ = self.waker.wake();
    }
}

/// A listening socket, plain or TLS.
struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
    /// Clients accepted here speak TLS (`--tls-bind`).
    tls: bool,
}

/// The whole server: the poll instance and everything registered in it.
pub struct Server {
    poll: Poll,
    listeners: Vec<Listener>,
    /// Where each listener listens, plain and TLS (kept after a shutdown closes them).
    local_addrs: Vec<(SocketAddr, bool)>,
    /// Certificate and key for TLS clients, loaded once at start-up.
    tls_config: Option<Arc<rustls::ServerConfig>>,
    signals: Option<Signals>,
    waker: Arc<Waker>,
    /// `--stats-udp`: answers a datagram `stats` with the counters as JSON.
    stats_socket: Option<UdpSocket>,
    /// `--backplane`: the connections to Redis that make several instances one chat.
    backplane: Option<Backplane>,
    room: Room,
    timers: Timers,
    /// Clients whose read budget ran out before `WouldBlock`: served again next turn.
    ready: Vec<ConnRef>,
    /// Every `read` lands here first; a connection keeps only its unfinished line.
    scratch: Box<[u8]>,
    config: Config,
    max_clients: usize,
    next_id: u64,
    /// Accepting is paused after running out of descriptors; a `ResumeAccept` timer is set.
    accept_paused: bool,
    /// Consecutive accept failures, so only the first of a run is a warning.
    accept_failures: u32,
    shutting_down: bool,
    /// Leave the loop at the end of this turn, flushed or not.
    exit_now: bool,
}

impl Server {
    /// Sets everything up (descriptor limit, listeners, signals) without serving anyone yet.
    pub fn bind(config: Config) -> Result<Server, Error> {
        let poll = Poll::new().map_err(Error::Poll)?;
        // Certificate problems are found before anything listens: one sentence, no server.
        let tls_config = match &config.tls {
            Some(settings) => Some(tls::server_config(&settings.cert, &settings.key)?),
            None => None,
        };
        let max_clients = max_clients(config.max_clients);

        let plain = config.bind.iter().map(|&addr| (addr, false));
        let secure = config
            .tls
            .iter()
            .flat_map(|t| t.bind.iter().map(|&addr| (addr, true)));
        let mut listeners = Vec::new();
        for (index, (addr, tls)) in plain.chain(secure).enumerate() {
            let mut socket = os::listen(addr).map_err(|source| Error::Bind { addr, source })?;
            let local = socket
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            poll.registry()
                .register(&mut socket, listener_token(index), Interest::READABLE)
                .map_err(Error::Poll)?;
            listeners.push(Listener {
                socket,
                addr: local,
                tls,
            });
        }
        if listeners.is_empty() {
            return Err(Error::NoListeners);
        }
        let local_addrs = listeners.iter().map(|l| (l.addr, l.tls)).collect();

        // signal-hook's handler writes to a pipe that is registered here like any socket, so
        // a signal is one more event in the batch rather than code run at a random moment.
        let signals = if config.handle_signals {
            let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(Error::Poll)?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)
                .map_err(Error::Poll)?;
            Some(signals)
        } else {
            None
        };
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(Error::Poll)?);
        let stats_socket = match config.stats_udp {
            Some(addr) => {
                let mut socket =
                    UdpSocket::bind(addr).map_err(|source| Error::Bind { addr, source })?;
                poll.registry()
                    .register(&mut socket, STATS, Interest::READABLE)
                    .map_err(Error::Poll)?;
                Some(socket)
            }
            None => None,
        };

        let mut room = Room::new(config.max_output, config.max_line, config.quiet_joins);
        let backplane = match &config.backplane {
            Some(settings) => {
                let backplane = Backplane::new(settings.clone(), backplane::instance_id())?;
                room.join_cluster(backplane.instance(), settings.nick_ttl);
                Some(backplane)
            }
            None => None,
        };

        Ok(Server {
            poll,
            listeners,
            local_addrs,
            tls_config,
            signals,
            waker,
            stats_socket,
            backplane,
            room,
            timers: Timers::default(),
            ready: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            config,
            max_clients,
            next_id: 1,
            accept_paused: false,
            accept_failures: 0,
            shutting_down: false,
            exit_now: false,
        })
    }

    /// The plain addresses actually listened on (with the real port when `--bind` said port
    /// 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(false)
    }

    /// The TLS addresses actually listened on (`--tls-bind`).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(true)
    }

    fn addrs(&self, tls: bool) -> Vec<SocketAddr> {
        self.local_addrs
            .iter()
            .filter(|&&(_, t)| t == tls)
            .map(|&(addr, _)| addr)
            .collect()
    }

    /// Where `--stats-udp` answers, if it is on (with the real port when it said port 0).
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats_socket.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            waker: Arc::clone(&self.waker),
        }
    }

    /// Serves until shut down (a signal, or a [`ShutdownHandle`]).
    pub fn run(mut self) -> Result<(), Error> {
        for &(addr, tls) in &self.local_addrs {
            info!("listening on {addr}{}", if tls { " (TLS)" } else { "" });
        }
        if let Some(addr) = self.stats_addr() {
            info!("stats on udp {addr} (send the datagram \"stats\")");
        }
        info!(
            "up to {} clients; lines up to {} bytes; output queue up to {} bytes per client",
            self.max_clients, self.config.max_line, self.config.max_output
        );
        if self.backplane.is_some() {
            let now = Instant::now();
            self.schedule_backplane_refresh(now);
            self.drive_backplane(|backplane, registry, _, happened| {
                backplane.start(BACKPLANE_SUB, BACKPLANE_CMD, registry, now, happened);
            });
        }
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            self.turn(&mut events)?;
            if self.exit_now || (self.shutting_down && self.room.conns.is_empty()) {
                break;
            }
        }
        let left = self.room.conns.len();
        if left > 0 {
            warn!("shutdown grace period over; closing {left} connections with output unsent");
        }
        info!("server stopped");
        Ok(())
    }

    /// One turn of the loop: steps 1 to 5 of the module documentation.
    fn turn(&mut self, events: &mut Events) -> Result<(), Error> {
        // 1. Wait. With clients on the ready list there is work already: don't sleep.
        let backplane_unread = self.backplane.as_ref().is_some_and(Backplane::has_unread);
        let timeout = if self.ready.is_empty() && !backplane_unread {
            self.timers.timeout(Instant::now())
        } else {
            Some(Duration::ZERO)
        };
        if let Err(e) = self.poll.poll(events, timeout) {
            // A signal interrupted the wait: not an error, just wait again.
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Error::Poll(e));
        }
        let now = Instant::now();

        // 2. Handle every event of the batch.
        for event in events.iter() {
            self.handle(Readiness::from(event), now);
        }

        // 3. Clients left with unread input by their read budget last turn.
        for r in std::mem::take(&mut self.ready) {
            if let Some(conn) = self.room.get(r) {
                conn.on_ready_list = false;
                self.serve_reader(r.token, now);
            }
        }

        // ... and the backplane's, if its read budget ran out too.
        if backplane_unread {
            self.drive_backplane(|backplane, registry, scratch, happened| {
                backplane.serve_unread(registry, scratch, now, happened);
            });
        }

        // 4. Timers.
        self.fire_timers(now);

        // 5. Notices, writes, and freeing closed slots.
        self.end_batch(now);
        Ok(())
    }

    /// Which of the listeners `token` belongs to, if any. (After a shutdown there are none,
    /// so a late event for an old listener token is treated like any unknown token.)
    fn listener_index(&self, token: Token) -> Option<usize> {
        FIRST_LISTENER
            .checked_sub(token.0)
            .filter(|&index| index < self.listeners.len())
    }

    /// What a token stands for, in words, for the logs.
    fn token_name(&self, token: Token) -> String {
        match token {
            SIGNALS => "signals".to_string(),
            WAKER => "waker".to_string(),
            STATS => "stats".to_string(),
            BACKPLANE_SUB => "backplane subscriber".to_string(),
            BACKPLANE_CMD => "backplane commands".to_string(),
            _ => match self.listener_index(token) {
                Some(index) => format!("listener {index}"),
                None => format!("token {}", token.0),
            },
        }
    }

    /// Step 2 for one event. Public only so tests can replay a crafted batch.
    #[doc(hidden)]
    pub fn handle(&mut self, ready: Readiness, now: Instant) {
        trace!(
            "event: {}{}{}",
            self.token_name(ready.token),
            if ready.readable { " readable" } else { "" },
            if ready.writable { " writable" } else { "" }
        );
        if let Some(index) = self.listener_index(ready.token) {
            if !self.accept_paused && !self.shutting_down {
                self.accept(index, now);
            }
            return;
        }
        match ready.token {
            SIGNALS => self.on_signal(now),
            WAKER => self.begin_shutdown(now),
            STATS => self.answer_stats(),
            BACKPLANE_SUB | BACKPLANE_CMD => {
                self.drive_backplane(|backplane, registry, scratch, happened| {
                    let (token, readable) = (ready.token, ready.readable);
                    backplane.handle(token, readable, registry, scratch, now, happened);
                });
            }
            Token(token) => {
                // No connection in the slot: a spurious event, which mio allows. A closed
                // connection: its slot is kept until the end of the batch exactly so that
                // this event lands here and not on a new client.
                let Some(conn) = self.room.conns.get(token) else {
                    return;
                };
                if matches!(conn.phase, Phase::Closed(_)) {
                    return;
                }
                if ready.writable {
                    self.room.mark_for_flush(token);
                }
                if ready.readable {
                    self.serve_reader(token, now);
                }
            }
        }
    }

    /// Accepts until the listener's backlog is empty (edge-triggered: one event may stand for
    /// many waiting connections).
    fn accept(&mut self, index: usize, now: Instant) {
        let tls = self.listeners[index].tls;
        loop {
            let (stream, peer) = match self.listeners[index].socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Interrupted by a signal, or the client gave up while waiting in the
                // backlog: neither says anything about the next connection.
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue;
                }
                Err(e) => return self.pause_accepting(&e, now),
            };
            self.accept_failures = 0;
            if tls {
                self.admit_tls(stream, peer, now);
            } else {
                self.admit(stream, peer, now);
            }
        }
    }

    /// Out of descriptors (EMFILE/ENFILE) or kernel memory. The connection stays in the
    /// backlog, so retrying now would fail now, forever: a 100% CPU spin. Instead stop
    /// accepting for a moment. Clients already connected are served as usual, and one of
    /// them leaving frees a descriptor for the next attempt.
    fn pause_accepting(&mut self, error: &io::Error, now: Instant) {
        self.accept_failures += 1;
        if self.accept_failures == 1 {
            warn!(
                "cannot accept new connections: {error}; pausing accepts, retrying every {} ms",
                ACCEPT_PAUSE.as_millis()
            );
        } else {
            debug!("accept failed again: {error}");
        }
        self.accept_paused = true;
        self.room.stats.accept_pauses += 1;
        self.timers.add(now + ACCEPT_PAUSE, Timer::ResumeAccept);
    }

    /// A new plain client: registered for readable events, then into the room (or told why
    /// not).
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let Some(conn) = self.new_connection(stream, peer, now) else {
            return;
        };
        let token = self.room.conns.vacant_key();
        match self.refusal(peer) {
            Some(reason) => {
                self.room.refuse(conn, reason);
            }
            None => {
                self.room.join(conn);
                self.start_idle_timer(token, now);
            }
        }
    }

    /// A new TLS client: registered, and held out of the room until its handshake is over
    /// ([`Server::finish_handshake`]), for at most the handshake timeout.
    ///
    /// A TLS client cannot be told "server full" before it has a session, so when the server
    /// is full (counting handshakes under way) it is closed at once; everything else about
    /// refusing waits for the handshake, so the client can read why.
    fn admit_tls(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let (Some(config), Some(settings)) = (&self.tls_config, &self.config.tls) else {
            return;
        };
        let timeout = settings.handshake_timeout;
        if self.room.members() + self.room.handshaking() >= self.max_clients {
            warn!("{peer}: TLS connection closed before its handshake: server full");
            self.room.stats.connections_total += 1;
            self.room.stats.count_disconnect(&CloseReason::ServerFull);
            return;
        }
        let session = match Session::new(config) {
            Ok(session) => session,
            Err(e) => {
                warn!("{peer}: cannot start a TLS session: {e}");
                return;
            }
        };
        let Some(mut conn) = self.new_connection(stream, peer, now) else {
            return;
        };
        conn.tls = Some(Box::new(session));
        let conn_ref = conn.conn_ref(self.room.conns.vacant_key());
        self.room.hold_for_handshake(conn);
        debug!("{peer}: TLS handshake started (token {})", conn_ref.token);
        self.timers.add(now + timeout, Timer::Handshake(conn_ref));
    }

    /// Registers an accepted socket under the next free token and wraps it in a
    /// [`Connection`]; `None` (logged) if it cannot be registered.
    fn new_connection(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<Connection> {
        // Without TCP_NODELAY, Nagle's algorithm holds back a small write until the previous
        // one is acknowledged, and delayed ACKs make that ~40 ms per line.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let token = self.room.conns.vacant_key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(token), Interest::READABLE)
        {
            warn!("{peer}: cannot register connection: {e}");
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.room.stats.connections_total += 1;
        let bucket = (self.config.rate > 0.0)
            .then(|| TokenBucket::new(self.config.rate, self.config.burst, now));
        Some(Connection::new(
            id,
            stream,
            peer,
            self.config.max_line,
            bucket,
            now,
        ))
    }

    /// Why a client from `peer` may not join now, if it may not.
    fn refusal(&self, peer: SocketAddr) -> Option<CloseReason> {
        let per_ip = self.config.max_per_ip;
        if self.room.members() >= self.max_clients {
            Some(CloseReason::ServerFull)
        } else if per_ip > 0 && self.room.connections_from(peer.ip()) >= per_ip {
            Some(CloseReason::TooManyFromAddress)
        } else {
            None
        }
    }

    fn start_idle_timer(&mut self, token: usize, now: Instant) {
        if let (Some(idle), Some(conn)) = (self.config.idle_timeout, self.room.conns.get(token)) {
            let conn_ref = conn.conn_ref(token);
            self.timers.add(now + idle, Timer::Idle(conn_ref));
        }
    }

    /// A TLS client's handshake is over: it joins the room like a plain client that was just
    /// accepted (or is told, encrypted, why it may not).
    fn finish_handshake(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.room.conns.get(token) else {
            return;
        };
        let peer = conn.peer;
        if let Some(tls) = &conn.tls {
            debug!("{peer}: TLS handshake done ({})", tls.describe());
        }
        match self.refusal(peer) {
            Some(reason) => self.room.turn_away(token, reason),
            None => {
                self.room.enter(token);
                self.start_idle_timer(token, now);
            }
        }
    }

    /// Reads a client's input and hands its lines to the room until the socket says
    /// `WouldBlock`, the read budget is spent, flood control says wait, or the client is gone.
    fn serve_reader(&mut self, token: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            if !self.relay_lines(token, now) {
                return;
            }
            let Some(conn) = self.room.conns.get_mut(token) else {
                return;
            };
            if matches!(conn.phase, Phase::Closed(_)) {
                return;
            }
            if budget == 0 {
                if !conn.on_ready_list {
                    conn.on_ready_list = true;
                    self.ready.push(conn.conn_ref(token));
                }
                return;
            }
            match conn.read(&mut self.scratch) {
                Ok(ReadOutcome::Data(n)) => {
                    trace!("token {token}: read {n} bytes");
                    self.room.stats.bytes_in += n as u64;
                    budget = budget.saturating_sub(n);
                    conn.last_heard = now;
                    let tls_to_send = conn.tls.as_ref().is_some_and(|t| t.wants_write());
                    let handshake_done = conn.handshake_done();
                    if tls_to_send {
                        // Handshake messages (or an answer to a key update) to send: they go
                        // out with everyone's output at the end of the batch.
                        self.room.mark_for_flush(token);
                    }
                    if handshake_done {
                        self.finish_handshake(token, now);
                    }
                }
                Ok(ReadOutcome::Drained) => return,
                Ok(ReadOutcome::Eof) if conn.phase == Phase::Handshaking => {
                    // Gave up (or was never TLS) before its handshake: nothing is owed.
                    // (A handshake that finished in the read that brought the end was handled
                    // on that read's data: see `Session::read`.)
                    self.room.close(token, CloseReason::PeerClosed);
                    return;
                }
                Ok(ReadOutcome::Eof) => {
                    // The peer will send no more, but it may still read: flush what it is
                    // owed (`printf '/who\n' | nc -N` must print the answer), then close.
                    if conn.is_chatting()
                        && let Some(frame) = conn.framer.finish()
                    {
                        self.relay_frame(token, frame);
                    }
                    self.room.leave(token, CloseReason::PeerClosed);
                    return;
                }
                Err(e) => {
                    let reason = match Session::rejected(&e) {
                        Some(why) => {
                            info!("{}: TLS error: {why}", conn.label());
                            CloseReason::Tls(why)
                        }
                        None => {
                            debug!("token {token}: read failed: {e}");
                            CloseReason::Failed(e.kind())
                        }
                    };
                    self.room.close(token, reason);
                    return;
                }
            }
        }
    }

    /// Hands the framer's complete lines to the room, one token of flood control each.
    /// Returns false when the loop must stop reading this client for now.
    fn relay_lines(&mut self, token: usize, now: Instant) -> bool {
        loop {
            let Some(conn) = self.room.conns.get_mut(token) else {
                return false;
            };
            match conn.phase {
                Phase::Chatting => {}
                // Leaving: keep reading, but only to throw the input away. Handshaking: keep
                // reading; any lines wait in the framer until the client is in the room.
                Phase::Leaving(_) | Phase::Handshaking => return true,
                Phase::Closed(_) => return false,
            }
            if conn.throttled || conn.waiting_for_nick {
                return false;
            }
            if let Some(bucket) = &mut conn.bucket {
                let next = bucket.next_token_at(now);
                if next > now {
                    // Stop reading: its bytes wait in the kernel, and TCP pushes back on it.
                    if !conn.warned_throttle {
                        conn.warned_throttle = true;
                        warn!(
                            "{}: over {} lines/s, reading it more slowly",
                            conn.label(),
                            self.config.rate
                        );
                    }
                    conn.throttled = true;
                    let conn_ref = conn.conn_ref(token);
                    self.timers.add(next, Timer::RateLimit(conn_ref));
                    return false;
                }
            }
            let Some(frame) = conn.framer.next_frame() else {
                return true;
            };
            if let Some(bucket) = &mut conn.bucket {
                bucket.try_take(now);
            }
            self.relay_frame(token, frame);
        }
    }

    fn relay_frame(&mut self, token: usize, frame: Frame) {
        self.room.stats.lines_in += 1;
        match frame {
            Frame::Line(line) => self.room.handle_line(token, &line),
            Frame::TooLong => self.room.line_too_long(token),
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Idle(r) => self.check_idle(r, now),
                Timer::RateLimit(r) => {
                    if let Some(conn) = self.room.get(r) {
                        conn.throttled = false;
                        self.serve_reader(r.token, now);
                    }
                }
                Timer::SlowCheck(r) => self.check_slow(r, now),
                Timer::Handshake(r) => {
                    if let Some(conn) = self.room.get(r)
                        && conn.phase == Phase::Handshaking
                    {
                        info!("{}: TLS handshake not finished in time, closing", conn.peer);
                        self.room.close(r.token, CloseReason::HandshakeTimeout);
                    }
                }
                Timer::Linger(r) => {
                    if let Some(conn) = self.room.get(r)
                        && let Phase::Leaving(reason) = &conn.phase
                    {
                        debug!("token {}: linger over, closing", r.token);
                        let reason = reason.clone();
                        self.room.close(r.token, reason);
                    }
                }
                Timer::ResumeAccept => {
                    self.accept_paused = false;
                    for index in 0..self.listeners.len() {
                        if !self.accept_paused {
                            self.accept(index, now);
                        }
                    }
                }
                Timer::ShutdownDeadline => self.exit_now = true,
                Timer::Backplane => {
                    self.drive_backplane(|backplane, registry, _, happened| {
                        backplane.on_timer(registry, now, happened);
                    });
                }
                Timer::BackplaneRefresh => {
                    self.schedule_backplane_refresh(now);
                    self.drive_backplane(|backplane, registry, _, happened| {
                        backplane.check_alive(registry, now, happened);
                    });
                    self.room.refresh_nicks();
                }
            }
        }
    }

    /// Lets the backplane act (`--backplane` only: without it, nothing happens), then hands
    /// what it reports to the room. The backplane never touches the room itself: it returns
    /// [`Happening`]s, and [`Server::absorb`] is the one place they take effect.
    fn drive_backplane(
        &mut self,
        act: impl FnOnce(&mut Backplane, &mio::Registry, &mut [u8], &mut Vec<Happening>),
    ) {
        let Some(backplane) = &mut self.backplane else {
            return;
        };
        let mut happened = Vec::new();
        act(
            backplane,
            self.poll.registry(),
            &mut self.scratch,
            &mut happened,
        );
        self.absorb(happened);
    }

    /// Nick claims are refreshed, and the others told this instance is alive, every third of
    /// the nick TTL, so one late or missed refresh does not let a claim expire.
    fn schedule_backplane_refresh(&mut self, now: Instant) {
        if let Some(backplane) = &self.backplane {
            let every = backplane.nick_ttl() / 3;
            self.timers.add(now + every, Timer::BackplaneRefresh);
        }
    }

    /// Hands what the backplane reported to the room, and sets the timer it asked for.
    fn absorb(&mut self, happened: Vec<Happening>) {
        for happening in happened {
            match happening {
                Happening::Up => self.room.backplane_up(),
                Happening::Down { lost } => self.room.backplane_down(lost),
                Happening::Event(event) => self.room.deliver(&event),
                Happening::Claimed { claim, ok } => self.room.claim_answered(claim, ok),
                Happening::Resynced => self.room.backplane_resynced(),
            }
        }
        if let Some(backplane) = &mut self.backplane
            && let Some(at) = backplane.take_timer()
        {
            self.timers.add(at, Timer::Backplane);
        }
        // Clients whose `/nick` was answered read on from the next turn's ready list (their
        // next lines may already be in their framer, where no readable event will report them).
        for r in self.room.take_resumed() {
            if let Some(conn) = self.room.get(r)
                && !conn.on_ready_list
            {
                conn.on_ready_list = true;
                self.ready.push(r);
            }
        }
    }

    /// What the room wants sent to Redis goes into the backplane's buffers and out, once per
    /// batch like every other write. If that takes the backplane down, the room delivers the
    /// rest locally; a few rounds settle it.
    fn pump_backplane(&mut self, now: Instant) {
        for _ in 0..4 {
            let outbox = self.room.take_outbox();
            let Some(backplane) = &mut self.backplane else {
                return;
            };
            if outbox.is_empty() {
                return;
            }
            let mut happened = Vec::new();
            if backplane.is_up() {
                for outgoing in outbox {
                    backplane.send(outgoing);
                }
                backplane.flush(self.poll.registry(), now, &mut happened);
            } else {
                // It went down earlier in this batch: the room takes its events back.
                happened.push(Happening::Down { lost: Vec::new() });
            }
            self.absorb(happened);
        }
    }

    /// The idle timer fired. If the client spoke since it was set, set it again for the new
    /// deadline (timers are never cancelled, see `timers.rs`).
    fn check_idle(&mut self, r: ConnRef, now: Instant) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let Some(conn) = self.room.get(r) else {
            return;
        };
        if !conn.is_chatting() {
            return;
        }
        let deadline = conn.last_heard + idle;
        if deadline > now {
            self.timers.add(deadline, Timer::Idle(r));
            return;
        }
        info!("{}: idle timeout", conn.label());
        let notice = protocol::server_line(format_args!(
            "disconnected: idle for {} s",
            idle.as_secs_f64()
        ));
        self.room.send_to(r.token, &notice);
        self.room.leave(r.token, CloseReason::Idle);
    }

    /// Step 5. Leave notices first (they are output too), then one flush per client with new
    /// output. A failed write ends that client, which makes a new leave notice, so repeat
    /// until nothing new appears. Only then free the closed slots.
    fn end_batch(&mut self, now: Instant) {
        loop {
            self.room.announce_departures();
            self.pump_backplane(now);
            let to_flush = self.room.take_flush_list();
            if to_flush.is_empty() {
                break;
            }
            for token in to_flush {
                self.flush(token, now);
            }
        }
        self.room.reap(self.poll.registry());
        self.sweep_dead_timers();
    }

    /// Drops timers of connections that are gone, once they outnumber the live ones (see
    /// `timers.rs` for why this is needed and why it is cheap).
    fn sweep_dead_timers(&mut self) {
        let live = self.room.conns.len();
        if self.timers.len() <= 2 * live + 64 {
            return;
        }
        let before = self.timers.len();
        let conns = &self.room.conns;
        self.timers.retain(|timer| match timer {
            Timer::Idle(r)
            | Timer::RateLimit(r)
            | Timer::SlowCheck(r)
            | Timer::Linger(r)
            | Timer::Handshake(r) => conns.get(r.token).is_some_and(|c| c.id == r.id),
            Timer::ResumeAccept
            | Timer::ShutdownDeadline
            | Timer::Backplane
            | Timer::BackplaneRefresh => true,
        });
        debug!("swept {} dead timers", before - self.timers.len());
    }

    /// Writes one client's queued output, as far as its socket takes it.
    fn flush(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.room.conns.get_mut(token) else {
            return;
        };
        conn.needs_flush = false;
        if matches!(conn.phase, Phase::Closed(_)) {
            return;
        }
        let unsent = conn.unsent();
        let result = conn.flush(self.poll.registry(), token);
        self.room.stats.bytes_out += unsent.saturating_sub(conn.unsent()) as u64;
        match result {
            Ok(Flushed::All) => {
                if unsent > 0 {
                    trace!("token {token}: wrote {unsent} bytes, queue empty");
                }
                // A leaving client has had its last lines: now it can go.
                if let Phase::Leaving(reason) = &conn.phase {
                    let reason = reason.clone();
                    self.room.close(token, reason);
                }
            }
            Ok(Flushed::Blocked) => {
                // A partial write. The rest stays queued, and the connection is now registered
                // for writable events. It goes out when the client reads, or never, if the
                // client falls `--max-output` behind first.
                trace!(
                    "token {token}: socket full, {} of {unsent} bytes still queued",
                    conn.output.unsent()
                );
                // (During a shutdown the grace deadline alone decides, for everyone at once.)
                let lingers =
                    matches!(&conn.phase, Phase::Leaving(r) if *r != CloseReason::Shutdown);
                if lingers && !conn.linger_armed {
                    conn.linger_armed = true;
                    let conn_ref = conn.conn_ref(token);
                    self.timers.add(now + LINGER, Timer::Linger(conn_ref));
                }
            }
            Err(e) => {
                debug!("token {token}: write failed: {e}");
                self.room.close(token, CloseReason::Failed(e.kind()));
            }
        }
        self.judge_output(token, now);
    }

    /// After a flush, whether the client is behind by more than `--max-output`, and since
    /// when. The first flush that leaves it over the limit starts its grace (a `SlowCheck`
    /// timer); a flush that brings it back under ends it.
    ///
    /// Judged here, after writing, and not when lines are queued: within one batch the loop
    /// may queue the bursts of many senders for a client before writing it a byte, and a
    /// client that reads takes them within a few round trips. Only a client that stays
    /// behind for the whole grace has stopped reading.
    fn judge_output(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.room.conns.get_mut(token) else {
            return;
        };
        if !conn.is_chatting() || conn.unsent() <= self.config.max_output {
            conn.over_output_since = None;
        } else if conn.over_output_since.is_none() {
            conn.over_output_since = Some(now);
            let conn_ref = conn.conn_ref(token);
            self.timers
                .add(now + self.config.output_grace, Timer::SlowCheck(conn_ref));
        }
    }

    /// A client's grace over `--max-output` is over. If it caught up meanwhile, nothing to do
    /// (and if it fell behind again since, a later timer judges that).
    fn check_slow(&mut self, r: ConnRef, now: Instant) {
        let grace = self.config.output_grace;
        let Some(conn) = self.room.get(r) else {
            return;
        };
        let Some(since) = conn.over_output_since else {
            return;
        };
        if !conn.is_chatting() || since + grace > now {
            return;
        }
        let limit = self.config.max_output;
        warn!(
            "{}: over {limit} bytes of output waiting for {:.1} s, disconnecting",
            conn.label(),
            grace.as_secs_f64()
        );
        self.room.close(r.token, CloseReason::TooSlow { limit });
    }

    /// Datagrams on the stats socket: read until `WouldBlock` (edge-triggered, as for any
    /// socket), answer each `stats` with the counters. A reply the socket cannot take at once
    /// is dropped: the asker times out and asks again, and the loop never waits.
    fn answer_stats(&mut self) {
        let Some(socket) = &self.stats_socket else {
            return;
        };
        loop {
            let (n, from) = match socket.recv_from(&mut self.scratch) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("stats socket: {e}");
                    return;
                }
            };
            let reply = if self.scratch[..n].trim_ascii() == b"stats" {
                let backplane = self.backplane.as_ref().map(Backplane::json);
                self.room.stats.json(
                    self.room.conns.len(),
                    self.room.members(),
                    backplane.as_deref(),
                )
            } else {
                "{\"error\":\"send the datagram stats\"}".to_string()
            };
            if let Err(e) = socket.send_to(reply.as_bytes(), from) {
                debug!("stats reply to {from} dropped: {e}");
            }
        }
    }

    fn on_signal(&mut self, now: Instant) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            if self.shutting_down {
                info!("signal {signal} again: exiting now");
                self.exit_now = true;
            } else {
                info!("signal {signal}: shutting down");
                self.begin_shutdown(now);
            }
        }
    }

    /// Stop accepting, tell everyone, and give their output [`SHUTDOWN_GRACE`] to drain.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for listener in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        // Closing the listeners makes new connects fail at once instead of hanging.
        self.listeners.clear();
        info!(
            "shutting down: telling {} clients, waiting up to {} s for their output",
            self.room.members(),
            SHUTDOWN_GRACE.as_secs()
        );
        self.room.shutdown();
        self.timers
            .add(now + SHUTDOWN_GRACE, Timer::ShutdownDeadline);
    }
}

/// `--max-clients`, or what the open-file limit allows once raised as far as it goes.
fn max_clients(requested: Option<usize>) -> usize {
    let fd_limit = match os::raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read or raise the open-file limit: {e}; assuming 1024");
            1024
        }
    };
    let allowed = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    match requested {
        Some(n) if n > allowed => {
            warn!(
                "--max-clients {n} is more than the open-file limit ({fd_limit}) allows; \
                 past about {allowed} clients, accepts will pause until descriptors free up"
            );
            n
        }
        Some(n) => n,
        None => allowed.max(1),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream as StdStream;

    use socket2::SockRef;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn test_server() -> Server {
        Server::bind(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            rate: 0.0,
            quiet_joins: true,
            ..Config::default()
        })
        .expect("bind on loopback")
    }

    /// A crafted readable event for `token`.
    fn readable(token: Token) -> Readiness {
        Readiness {
            token,
            readable: true,
            writable: false,
        }
    }

    fn read_line(stream: &StdStream) -> String {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("a line");
        line
    }

    /// Polls until the kernel has reported readiness for every token in `tokens`, so that a
    /// crafted batch replayed afterwards meets sockets in a known state.
    fn wait_for_events(server: &mut Server, tokens: &[Token]) {
        let mut events = Events::with_capacity(16);
        let mut seen = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while !tokens.iter().all(|t| seen.contains(t)) {
            assert!(Instant::now() < deadline, "no events for {tokens:?}");
            server.poll.poll(&mut events, Some(DEADLINE)).expect("poll");
            seen.extend(events.iter().map(|e| e.token()));
        }
    }

    /// A connection that ends early in a batch keeps its slot until the batch is over. A client
    /// accepted later in the same batch therefore gets another token, and an event still in
    /// the batch for the old token never reaches the newcomer.
    #[test]
    fn slot_freed_in_a_batch_is_not_reused_within_it() {
        let mut server = test_server();
        let addr = server.local_addrs()[0];
        let now = Instant::now();
        let accept = readable(listener_token(0));

        let old = StdStream::connect(addr).expect("connect");
        wait_for_events(&mut server, &[listener_token(0)]);
        server.handle(accept, now);
        server.end_batch(now);
        assert!(read_line(&old).starts_with("*** welcome"));
        let old_token = server.room.conns.iter().next().expect("one client").0;

        // The old client resets its connection and a new client connects.
        SockRef::from(&old)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
        drop(old);
        let new = StdStream::connect(addr).expect("connect");
        wait_for_events(&mut server, &[Token(old_token), listener_token(0)]);

        // One batch: the reset is found, the newcomer accepted, then a late event for the
        // old token.
        let late = Readiness {
            token: Token(old_token),
            readable: true,
            writable: true,
        };
        server.handle(late, now);
        assert!(matches!(
            server.room.conns[old_token].phase,
            Phase::Closed(CloseReason::Failed(_))
        ));
        server.handle(accept, now);
        let (new_token, _) = server
            .room
            .conns
            .iter()
            .find(|(_, c)| c.is_chatting())
            .expect("newcomer accepted");
        assert_ne!(new_token, old_token, "slot reused inside the batch");
        server.handle(late, now);
        assert!(server.room.conns[new_token].is_chatting());
        server.end_batch(now);

        // After the batch the old slot is free, and the newcomer is served normally.
        assert!(!server.room.conns.contains(old_token));
        assert!(read_line(&new).starts_with("*** welcome"));
    }

    /// With a long idle timeout, clients that come and go leave dead idle timers behind; the
    /// loop sweeps them out instead of letting the heap grow with every connection ever made.
    #[test]
    fn timers_of_departed_clients_do_not_pile_up() {
        const CLIENTS: u64 = 300;
        let mut server = Server::bind(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            idle_timeout: Some(Duration::from_secs(3600)),
            quiet_joins: true,
            ..Config::default()
        })
        .expect("bind on loopback");
        let addr = server.local_addrs()[0];
        for _ in 0..CLIENTS {
            drop(StdStream::connect(addr).expect("connect"));
        }
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let deadline = Instant::now() + DEADLINE;
        // Turn the loop until every client has been accepted and has gone again. Each turn
        // has events to handle (accepts, end-of-file) until then, so none waits an hour.
        while server.next_id <= CLIENTS || !server.room.conns.is_empty() {
            assert!(Instant::now() < deadline, "clients not all served");
            server.turn(&mut events).expect("turn");
        }
        assert!(
            server.timers.len() <= 64,
            "{} timers left for 0 clients",
            server.timers.len()
        );
    }

    /// Connects a client through the listener in one crafted batch and reads its welcome.
    fn admit_one(server: &mut Server) -> (StdStream, ConnRef) {
        let stream = StdStream::connect(server.local_addrs()[0]).expect("connect");
        wait_for_events(server, &[listener_token(0)]);
        let now = Instant::now();
        server.handle(readable(listener_token(0)), now);
        server.end_batch(now);
        assert!(read_line(&stream).starts_with("*** welcome"));
        let (token, conn) = server.room.conns.iter().last().expect("admitted");
        let conn_ref = conn.conn_ref(token);
        (stream, conn_ref)
    }

    /// One readiness event for a client with megabytes waiting reads only the read budget,
    /// and the client goes on the ready list instead of keeping the loop to itself; after
    /// that, every one of its lines still gets through, in order.
    #[test]
    fn flooding_client_is_read_in_budgets_and_loses_nothing() {
        let mut server = test_server();
        server.room = Room::new(usize::MAX, 4096, true);
        let (mut flooder, flooder_ref) = admit_one(&mut server);
        let (receiver, _) = admit_one(&mut server);

        // The flooder writes until its socket will take no more: megabytes, all waiting in
        // the kernel for the server to read.
        let line = format!("{}\n", "f".repeat(99));
        flooder.set_nonblocking(true).expect("non-blocking");
        let mut sent_lines = 0usize;
        let mut unsent_tail: &[u8] = &[];
        loop {
            match flooder.write(line.as_bytes()) {
                Ok(n) if n == line.len() => sent_lines += 1,
                Ok(n) => {
                    // Half a line went out; the rest is sent once the server has made room.
                    unsent_tail = &line.as_bytes()[n..];
                    sent_lines += 1;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("flooder write: {e}"),
            }
        }
        assert!(sent_lines * line.len() > 4 * READ_BUDGET);
        wait_for_events(&mut server, &[Token(flooder_ref.token)]);

        let now = Instant::now();
        server.handle(readable(Token(flooder_ref.token)), now);
        assert_eq!(server.ready, vec![flooder_ref], "budget not applied");
        // The tail of the half-sent line goes out from a thread, while the loop runs: written
        // here, with the loop stopped, it could wait on TCP's zero-window persist timer, whose
        // backoff grows to minutes (reading one budget does not always reopen the window).
        let tail = unsent_tail.to_vec();
        let tail_writer = std::thread::spawn(move || {
            flooder.set_nonblocking(false).expect("blocking");
            flooder.write_all(&tail).expect("write");
            flooder
        });

        // Now let the loop run as it does in production. The receiver reads in its own thread
        // (one thread cannot be both ends of a TCP connection that is full in both
        // directions), and stops the server when it has every line or its deadline passes.
        let expected_len = sent_lines * ("<guest-1> ".len() + line.len());
        let handle = server.shutdown_handle();
        let reader = std::thread::spawn(move || {
            receiver.set_read_timeout(Some(DEADLINE)).expect("timeout");
            let mut received = vec![0; expected_len];
            let result = (&receiver).read_exact(&mut received);
            handle.shutdown();
            result.map(|()| received)
        });
        server.run().expect("run");
        let _flooder = tail_writer.join().expect("tail writer");
        let received = reader
            .join()
            .expect("reader thread")
            .expect("every line reaches the receiver");
        let expected = format!("<guest-1> {line}");
        assert!(
            received
                .chunks(expected.len())
                .all(|l| l == expected.as_bytes())
        );
    }

    /// Lines handled in a batch are not written until the batch ends: a recipient's socket
    /// stays empty while events are being handled, then gets everything in one flush.
    #[test]
    fn output_waits_for_the_end_of_the_batch() {
        let mut server = test_server();
        let (mut sender, sender_ref) = admit_one(&mut server);
        let (receiver, _) = admit_one(&mut server);
        sender.write_all(b"one\ntwo\n").expect("write");
        wait_for_events(&mut server, &[Token(sender_ref.token)]);
        let now = Instant::now();
        server.handle(readable(Token(sender_ref.token)), now);
        receiver.set_nonblocking(true).expect("non-blocking");
        let mut buf = [0u8; 64];
        let early = (&receiver).read(&mut buf);
        assert!(
            matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "written before the end of the batch: {early:?}"
        );
        server.end_batch(now);
        receiver.set_nonblocking(false).expect("blocking");
        receiver.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let expected = b"<guest-1> one\n<guest-1> two\n";
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let n = (&receiver).read(&mut buf).expect("read");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, expected);
    }
}
