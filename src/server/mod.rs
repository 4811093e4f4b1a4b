//! The event loop: one thread, one `mio::Poll`, every socket the server has.
//!
//! Each turn of [`Server::run`] does the same five things, in this order:
//!
//! 1. **Wait** in `poll` until a socket is ready or the next timer is due.
//! 2. **Handle every event** of the batch: accept new clients (`accept.rs`), read from
//!    readable clients and hand their lines to the chat (`reader.rs`), note writable ones.
//!    Events for the bus's own sockets go to the bus. Nothing is written to a client yet.
//! 3. **Serve the ready lists**: listeners and clients that still had connections to accept
//!    or input to read when their budget ran out last turn. Edge-triggered readiness will not
//!    report them again, so the loop must remember them itself.
//! 4. **Fire due timers** (`deadlines.rs`): idle timeouts, flood control resuming, lingering
//!    closes, handshakes, accept pauses, the shutdown deadline, the bus's own (a bus whose
//!    read budget ran out asks for one due at once, so the bus needs no place in step 3).
//! 5. **End the batch**: say the leave events, let the bus send what was published, then
//!    flush every client that has new output, once each, then free the slots of the
//!    connections that closed ([why then](crate::table)).
//!
//! Why write only at the end (step 5)? A batch often holds lines from several senders. Writing
//! after each line would cost every recipient one system call per line; writing once at the
//! end costs one `writev` per recipient per batch, however many lines it got. This is the
//! `beforeSleep` write of Redis. Reads come first in a turn for the same reason: everything a
//! batch brings is queued before anything is written.
//!
//! Readiness is edge-triggered (mio's only mode). "Readable" means "new data arrived since
//! you last saw `WouldBlock`". The rule is therefore to read until `WouldBlock` (and to write
//! until `WouldBlock` when output is stuck), or to remember that the socket may still be
//! ready. The ready list (step 3) is where the loop remembers that.
//!
//! The server knows three things by name: its connections ([`ConnTable`]), the chat
//! ([`Chat`]) and the bus ([`BusIo`]). It does not know which transport a connection has
//! (`transport/`), nor which bus it was given (`bus.rs`, `backplane/`). Its parts, by role:
//! `Server` (here) is the loop and routes each event to its `Owner`; `Listeners`
//! (`accept.rs`) accept; `Clients` (`reader.rs`, `deadlines.rs`) hold the connections and
//! read them; `Hub` (`hub.rs`) is where the chat and the bus meet (the chat never holds the
//! bus: after every call into the chat, `Hub::forward` hands the bus what it asked);
//! `SideSockets` (`side.rs`) are the signals, the stats socket and the log; `reload.rs` is
//! what SIGHUP changes.

mod accept;
mod deadlines;
mod hub;
mod reader;
mod reload;
mod side;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{fmt, io};

use log::{info, trace, warn};
use mio::event::Event;
use mio::{Events, Poll, Token, Waker};
use signal_hook::consts::SIGHUP;

use crate::bans::Bans;
use crate::bus::BusIo;
use crate::chat::Chat;
use crate::config::Config;
use crate::connection::CloseReason;
use crate::error::Error;
use crate::limits::SHUTDOWN_GRACE;
use crate::memory::Trim;
use crate::stats::{self, Gauges};
use crate::table::ConnTable;
use crate::timers::Timer;
use accept::Listeners;
use hub::Hub;
use reader::{Clients, Edge};
use side::SideSockets;

/// Tokens that are not clients sit at the top of the token space; clients are slab keys,
/// which count up from 0 and never get near these.
const SIGNALS: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const STATS: Token = Token(usize::MAX - 2);
/// Set aside for the bus's own sockets (the backplane's two connections to Redis).
const BUS: [Token; 2] = [Token(usize::MAX - 3), Token(usize::MAX - 4)];
/// stderr, when the log is written by the loop (see `logging.rs`).
const LOG: Token = Token(usize::MAX - 5);
/// Listener `i` is `FIRST_LISTENER - i`, counting down.
const FIRST_LISTENER: usize = usize::MAX - 6;
/// Below every listener's token: the client tokens, and far more of them than descriptors.
const LAST_CLIENT: usize = usize::MAX / 2;

/// Whose socket an event is for: decided once, from the token alone, before anything looks
/// at the event. Clients are slab keys counting up from 0; everything else has a token of its
/// own at the top of the token space. A client's event therefore costs one comparison to
/// route, whatever features the server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Client(usize),
    Listener(usize),
    /// One of the bus's sockets (with `--backplane`, its connections to Redis).
    Bus(Token),
    Signals,
    Waker,
    Stats,
    Log,
    /// A token nothing was registered under (mio allows spurious events).
    Nobody,
}

impl Owner {
    fn of(token: Token) -> Owner {
        match token {
            Token(client) if client <= LAST_CLIENT => Owner::Client(client),
            SIGNALS => Owner::Signals,
            WAKER => Owner::Waker,
            STATS => Owner::Stats,
            LOG => Owner::Log,
            token if BUS.contains(&token) => Owner::Bus(token),
            Token(listener) => match FIRST_LISTENER.checked_sub(listener) {
                Some(index) => Owner::Listener(index),
                None => Owner::Nobody,
            },
        }
    }
}

/// What a token stands for, in words, for the logs.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Owner::Client(token) => write!(f, "token {token}"),
            Owner::Listener(index) => write!(f, "listener {index}"),
            Owner::Bus(token) => write!(f, "bus socket {}", usize::MAX - token.0 - 3),
            Owner::Signals => f.write_str("signals"),
            Owner::Waker => f.write_str("waker"),
            Owner::Stats => f.write_str("stats"),
            Owner::Log => f.write_str("log"),
            Owner::Nobody => f.write_str("nobody's token"),
        }
    }
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
    /// The peer closed its side, or the socket has an error: the end is already there and
    /// will raise no edge of its own, so the socket is read until it says so.
    pub closing: bool,
}

impl From<&Event> for Readiness {
    fn from(event: &Event) -> Readiness {
        Readiness {
            token: event.token(),
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            closing: event.is_read_closed() || event.is_error(),
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

/// The whole server: the poll instance and everything registered in it.
pub struct Server {
    poll: Poll,
    /// The listening sockets and the accepting (`accept.rs`).
    listeners: Listeners,
    /// The connections, the chat and its bus, the timers (`reader.rs`).
    clients: Clients,
    /// Signals, the waker, `--stats-udp`, the log (`side.rs`).
    side: SideSockets,
    shutting_down: bool,
    /// Leave the loop at the end of this turn, flushed or not.
    exit_now: bool,
    /// When freed memory was last handed back to the operating system.
    trim: Trim,
}

/// What the loop holds now, for the stats reply and `/metrics`.
fn gauges(table: &ConnTable, chat: &Chat, bus: &dyn BusIo) -> Gauges {
    Gauges {
        connections_now: table.len(),
        clients: chat.members(),
        clients_by_transport: stats::clients_by_transport(table.iter().map(|(_, c)| c)),
        rooms: chat.rooms.count(),
        backplane: bus.stats(),
        moderation: chat.moderation.counts.clone(),
        state: chat.rooms.keeper_stats(),
    }
}

impl Server {
    /// Sets everything up (descriptor limit, listeners, signals, the bus) without serving
    /// anyone yet.
    pub fn bind(config: Config) -> Result<Server, Error> {
        let reload::Loaded {
            config,
            motd,
            tls,
            bans,
        } = reload::load(config)?;
        let poll = Poll::new().map_err(Error::Poll)?;
        let listeners = Listeners::open(&config, tls, &poll)?;
        let max_clients = accept::max_clients(config.max_clients);
        let side = SideSockets::open(&config, &poll)?;
        let mut hub = Hub::new(&config, max_clients)?;
        hub.chat.motd = motd;
        hub.chat.moderation.bans = Bans::new(config.bans_file.clone(), bans.unwrap_or_default());
        let page = listeners.speaking("HTTP").first().copied();
        Ok(Server {
            poll,
            listeners,
            clients: Clients::new(config, hub, page),
            side,
            shutting_down: false,
            exit_now: false,
            trim: Trim::new(Instant::now()),
        })
    }

    /// The plain addresses actually listened on (with the real port when `--bind` said port
    /// 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.speaking("plain")
    }

    /// The TLS addresses actually listened on (`--tls-bind`).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.speaking("TLS")
    }

    /// The HTTP addresses actually listened on (`--http-bind`).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.speaking("HTTP")
    }

    /// The HTTPS addresses actually listened on (`--https-bind`).
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.speaking("HTTPS")
    }

    /// Where `--stats-udp` answers, if it is on (with the real port when it said port 0).
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.side.stats_addr()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            waker: Arc::clone(&self.side.waker),
        }
    }

    /// Serves until shut down (a signal, or a [`ShutdownHandle`]).
    pub fn run(mut self) -> Result<(), Error> {
        for &(addr, speaks) in &self.listeners.addrs {
            match speaks {
                "plain" => info!("listening on {addr}"),
                "HTTP" | "HTTPS" => {
                    info!("listening on {addr} ({speaks}: the chat page, /ws, /metrics)");
                }
                _ => info!("listening on {addr} ({speaks})"),
            }
        }
        if let Some(addr) = self.stats_addr() {
            info!("stats on udp {addr} (send the datagram \"stats\")");
        }
        info!(
            "up to {} clients; lines up to {} bytes; output queue up to {} bytes per client",
            self.clients.hub.max_clients,
            self.clients.config.max_line,
            self.clients.config.max_output
        );
        let news = (self.clients.hub.bus).start(self.poll.registry(), BUS, Instant::now());
        self.clients.absorb(news);
        self.side.write_log();
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            self.turn(&mut events)?;
            self.side.write_log();
            if self.exit_now || (self.shutting_down && self.clients.table.is_empty()) {
                break;
            }
        }
        let left = self.clients.table.len();
        if left > 0 {
            warn!("shutdown grace period over; closing {left} connections with output unsent");
        }
        info!("server stopped");
        self.side.write_log();
        Ok(())
    }

    /// One turn of the loop: steps 1 to 5 of the module documentation.
    fn turn(&mut self, events: &mut Events) -> Result<(), Error> {
        // 1. Wait. With input known to be waiting there is work already: don't sleep.
        let waiting = !self.listeners.again.is_empty() || self.clients.table.lists.has_ready();
        let timeout = if waiting {
            Some(Duration::ZERO)
        } else {
            // About to wait: a good moment to give a spike's memory back, and if it is too
            // soon for that, a reason not to sleep past the moment it is not.
            let now = Instant::now();
            let table = &mut self.clients.table;
            self.trim.before_waiting(now, || table.release_buffers());
            let trim = self.trim.due().map(|at| at.saturating_duration_since(now));
            match (self.clients.timers.timeout(now), trim) {
                (Some(timer), Some(trim)) => Some(timer.min(trim)),
                (timer, trim) => timer.or(trim),
            }
        };
        if let Err(e) = self.poll.poll(events, timeout) {
            // A signal interrupted the wait: not an error, just wait again.
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Error::Poll(e));
        }
        let now = Instant::now();
        // 2. Every event of the batch.
        for event in events.iter() {
            self.handle(Readiness::from(event), now);
        }
        // 3. Listeners and clients left with work by their budgets last turn.
        (self.listeners).accept_leftovers(&mut self.clients, self.poll.registry(), now);
        let ready = self.clients.table.lists.take_ready();
        for &r in &ready {
            self.clients.serve_reader(r, now, Edge::Unknown);
        }
        self.clients.table.lists.served_ready(ready);
        // 4. Timers.
        self.fire_timers(now);
        // 5. Notices, writes, and freeing closed slots.
        self.end_batch(now);
        Ok(())
    }

    /// Step 2 for one event. Public only so tests can replay a crafted batch.
    #[doc(hidden)]
    pub fn handle(&mut self, ready: Readiness, now: Instant) {
        let owner = Owner::of(ready.token);
        trace!(
            "event: {owner}{}{}",
            if ready.readable { " readable" } else { "" },
            if ready.writable { " writable" } else { "" }
        );
        match owner {
            Owner::Client(token) => {
                let Some(r) = self.clients.table.live(token) else {
                    return;
                };
                if ready.writable {
                    self.clients.table.lists.mark_for_flush(r);
                }
                if ready.readable {
                    let edge = Edge::Fresh {
                        closing: ready.closing,
                    };
                    self.clients.serve_reader(r, now, edge);
                }
            }
            Owner::Listener(index) => {
                (self.listeners).accept(index, &mut self.clients, self.poll.registry(), now);
            }
            Owner::Bus(token) => {
                let Clients { hub, scratch, .. } = &mut self.clients;
                let registry = self.poll.registry();
                let news = hub.bus.ready(token, ready.readable, registry, scratch, now);
                self.clients.absorb(news);
            }
            Owner::Signals => self.on_signal(now),
            Owner::Waker => self.begin_shutdown(now),
            Owner::Stats => self.side.answer_stats(&mut self.clients),
            Owner::Log => {
                if let Some(log) = &mut self.side.log {
                    log.writable();
                }
            }
            Owner::Nobody => {}
        }
    }

    /// Step 5. Leave events first, then a round of join and leave notices (they are output
    /// too), then what the bus must send, then one flush per client with new output. A failed
    /// write ends that client, which makes a new leave event, so repeat until nothing new
    /// appears. Only then free the closed slots.
    fn end_batch(&mut self, now: Instant) {
        let Clients {
            table, hub, timers, ..
        } = &mut self.clients;
        let registry = self.poll.registry();
        let written = table.stats.bytes_out;
        table.lists.start_flushes();
        loop {
            hub.end_batch(registry, now, table, timers);
            let to_flush = table.lists.take_flush_list();
            if to_flush.is_empty() {
                table.lists.flushed(to_flush);
                break;
            }
            for &r in &to_flush {
                if let Some(reason) = table.flush(r, registry, timers, now) {
                    hub.leave(r, reason, table);
                }
            }
            table.lists.flushed(to_flush);
        }
        let removed = table.reap(registry);
        if removed > 0 || table.stats.bytes_out > written {
            self.trim.activity();
        }
        if let Some(at) = table.log.take_deadline() {
            timers.add(at, Timer::LogSummary);
        }
        timers.sweep(table.len(), |r| table.get(r).is_some());
    }

    fn on_signal(&mut self, now: Instant) {
        for signal in self.side.signals() {
            if signal == SIGHUP {
                reload::on_sighup(self);
            } else if self.shutting_down {
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
        self.listeners.close(self.poll.registry());
        self.clients.page = None;
        info!(
            "shutting down: telling {} clients, waiting up to {} s for their output",
            self.clients.hub.chat.members(),
            SHUTDOWN_GRACE.as_secs()
        );
        // Connections still in their handshake have nothing to flush: closed at once.
        let Clients {
            table, hub, timers, ..
        } = &mut self.clients;
        table.close_handshakes(&CloseReason::Shutdown);
        hub.chat.rooms.close_keeper();
        hub.chat.shutdown(table);
        hub.forward(table);
        timers.add(now + SHUTDOWN_GRACE, Timer::ShutdownDeadline);
    }
}

/// Crafted batches over real sockets: what a turn does, step by step, replayed by hand.
#[cfg(test)]
mod tests {

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream as StdStream;

    use mio::{Events, Token};
    use socket2::SockRef;

    use super::accept::listener_token;
    use super::*;
    use crate::connection::{ConnRef, Phase};
    use crate::limits::READ_BUDGET;

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
            closing: false,
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
        let old_token = server.clients.table.iter().next().expect("admitted").0;

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
            closing: true,
        };
        server.handle(late, now);
        assert!(matches!(
            server.clients.table.slot(old_token).map(|c| c.phase()),
            Some(Phase::Closed(reason)) if matches!(**reason, CloseReason::Failed(_))
        ));
        server.handle(accept, now);
        let (new_token, _) = (server.clients.table.iter())
            .find(|(_, c)| c.is_chatting())
            .expect("newcomer accepted");
        assert_ne!(new_token, old_token, "slot reused inside the batch");
        server.handle(late, now);
        assert!(
            server
                .clients
                .table
                .slot(new_token)
                .is_some_and(|c| c.is_chatting())
        );
        server.end_batch(now);

        // After the batch the old slot is free, and the newcomer is served normally.
        assert!(server.clients.table.slot(old_token).is_none());
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
        while server.clients.table.stats.connections_total < CLIENTS
            || !server.clients.table.is_empty()
        {
            assert!(Instant::now() < deadline, "clients not all served");
            server.turn(&mut events).expect("turn");
        }
        assert!(
            server.clients.timers.len() <= 64,
            "{} timers left for 0 clients",
            server.clients.timers.len()
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
        let token = server.clients.table.iter().last().expect("admitted").0;
        let conn_ref = server.clients.table.live(token).expect("admitted");
        (stream, conn_ref)
    }

    /// A short read ends the reading on a fresh event, so the read that would only say
    /// `WouldBlock` is not made; but when the event says the peer closed, the end is already
    /// in the socket and no edge will announce it, so the reading goes on to it. Two clients,
    /// each with a line and its FIN waiting: read as if the event had not said "closed", the
    /// first is still chatting; read as the real event says, the second is gone.
    #[test]
    fn a_short_read_stops_the_reading_unless_the_peer_has_closed() {
        let mut server = test_server();
        let (mut first, a) = admit_one(&mut server);
        let (mut second, b) = admit_one(&mut server);
        for stream in [&mut first, &mut second] {
            stream.write_all(b"hi\n").expect("send");
            stream
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown");
        }
        wait_for_events(&mut server, &[Token(a.token), Token(b.token)]);
        let now = Instant::now();
        server.handle(readable(Token(a.token)), now);
        let closing = Readiness {
            closing: true,
            ..readable(Token(b.token))
        };
        server.handle(closing, now);
        server.end_batch(now);
        let chatting = |r: ConnRef| {
            server
                .clients
                .table
                .slot(r.token)
                .is_some_and(|c| c.is_chatting())
        };
        assert!(chatting(a), "a short read on a fresh edge read on");
        assert!(!chatting(b), "the FIN behind the short read was not read");
    }

    /// Every token is routed to one owner by its value alone: clients from 0 up, listeners
    /// counting down from `FIRST_LISTENER`, the rest by name.
    #[test]
    fn a_token_is_routed_to_its_owner_by_its_value() {
        assert_eq!(Owner::of(Token(0)), Owner::Client(0));
        assert_eq!(Owner::of(Token(70_000)), Owner::Client(70_000));
        assert_eq!(Owner::of(listener_token(0)), Owner::Listener(0));
        assert_eq!(Owner::of(listener_token(3)), Owner::Listener(3));
        assert_eq!(Owner::of(BUS[0]), Owner::Bus(BUS[0]));
        assert_eq!(Owner::of(BUS[1]), Owner::Bus(BUS[1]));
        assert_eq!(Owner::of(SIGNALS), Owner::Signals);
        assert_eq!(Owner::of(WAKER), Owner::Waker);
        assert_eq!(Owner::of(STATS), Owner::Stats);
        assert_eq!(Owner::of(LOG), Owner::Log);
    }

    /// A bus that delivers here like [`LocalBus`], and the first time it carries a chat line
    /// makes the sender send `more`: lines that arrive *while* the server is relaying what it
    /// read, as they do from a streaming sender while a fan-out is under way.
    struct SendsMoreMidRelay {
        sender: Option<StdStream>,
        more: &'static [u8],
    }

    impl crate::bus::Elsewhere for SendsMoreMidRelay {}

    impl crate::bus::Bus for SendsMoreMidRelay {
        fn publish(&mut self, event: crate::bus::Event) -> Option<crate::bus::Event> {
            if let (crate::bus::What::Say { .. }, Some(mut sender)) =
                (&event.what, self.sender.take())
            {
                // On loopback the bytes are in the server's socket when `write` returns.
                sender.write_all(self.more).expect("send more");
            }
            Some(event)
        }
    }

    impl BusIo for SendsMoreMidRelay {}

    /// The batching rule (`reader.rs`), both halves, counted in write calls. A short read
    /// that brought two lines is followed by one more read, so the two lines that came while
    /// they were relayed go out in the same `writev` to each receiver: 4 lines, 1 write call
    /// per receiver. (Stopping at the short read, as the server did before, wrote them in
    /// two batches: half the lines per `writev` for a sender that writes line by line.) A
    /// short read of one line still ends the reading, and the line that came meanwhile is
    /// read on its own edge, in the next batch.
    #[test]
    fn lines_that_arrive_while_a_batch_is_relayed_join_the_batch() {
        const RECEIVERS: usize = 3;
        let mut server = test_server();
        let (mut sender, sender_ref) = admit_one(&mut server);
        let receivers: Vec<StdStream> = (0..RECEIVERS).map(|_| admit_one(&mut server).0).collect();
        let expect = |mut stream: &StdStream, lines: &[&str]| {
            let expected: String = lines.iter().map(|l| format!("<guest-1> {l}\n")).collect();
            let mut got = vec![0; expected.len()];
            stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
            stream.read_exact(&mut got).expect("the lines");
            assert_eq!(String::from_utf8_lossy(&got), expected);
        };

        // A streaming sender: two lines in the socket, two more arriving mid-relay.
        server.clients.hub.bus = Box::new(SendsMoreMidRelay {
            sender: Some(sender.try_clone().expect("clone")),
            more: b"three\nfour\n",
        });
        sender.write_all(b"one\n").expect("send");
        sender.write_all(b"two\n").expect("send");
        wait_for_events(&mut server, &[Token(sender_ref.token)]);
        let before = (
            server.clients.table.stats.writes.calls,
            server.clients.table.stats.lines_out,
        );
        let now = Instant::now();
        server.handle(readable(Token(sender_ref.token)), now);
        server.end_batch(now);
        let calls = server.clients.table.stats.writes.calls - before.0;
        let lines = server.clients.table.stats.lines_out - before.1;
        assert_eq!(
            (calls, lines),
            (RECEIVERS as u64, 4 * RECEIVERS as u64),
            "not one write call of 4 lines per receiver"
        );
        for receiver in &receivers {
            expect(receiver, &["one", "two", "three", "four"]);
        }

        // An interactive sender: one line read, one more arriving mid-relay. The read that
        // would have found it is saved; its own edge brings it, and it is not lost.
        server.clients.hub.bus = Box::new(SendsMoreMidRelay {
            sender: Some(sender.try_clone().expect("clone")),
            more: b"six\n",
        });
        sender.write_all(b"five\n").expect("send");
        wait_for_events(&mut server, &[Token(sender_ref.token)]);
        let before = server.clients.table.stats.lines_out;
        let now = Instant::now();
        server.handle(readable(Token(sender_ref.token)), now);
        server.end_batch(now);
        assert_eq!(
            server.clients.table.stats.lines_out - before,
            RECEIVERS as u64,
            "a one-line short read read on"
        );
        wait_for_events(&mut server, &[Token(sender_ref.token)]);
        let now = Instant::now();
        server.handle(readable(Token(sender_ref.token)), now);
        server.end_batch(now);
        for receiver in &receivers {
            expect(receiver, &["five", "six"]);
        }
    }

    /// One readiness event for a client with megabytes waiting reads only the read budget,
    /// and the client goes on the ready list instead of keeping the loop to itself; after
    /// that, every one of its lines still gets through, in order.
    #[test]
    fn flooding_client_is_read_in_budgets_and_loses_nothing() {
        let mut server = Server::bind(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            rate: 0.0,
            quiet_joins: true,
            max_line: 4096,
            max_output: usize::MAX,
            ..Config::default()
        })
        .expect("bind on loopback");
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
        assert_eq!(
            server.clients.table.lists.take_ready(),
            vec![flooder_ref],
            "budget not applied"
        );
        server.clients.table.lists.read_again(flooder_ref);
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

    /// A storm waiting in the backlog is accepted a budget at a time: one readable event
    /// accepts `ACCEPT_BUDGET` connections, and the listener is served again next turn
    /// (no new event would say it still has connections waiting) until the backlog is empty.
    #[test]
    fn a_connection_storm_is_accepted_a_budget_per_turn() {
        use crate::limits::ACCEPT_BUDGET;
        let mut server = test_server();
        let addr = server.local_addrs()[0];
        let waiting = ACCEPT_BUDGET + 200;
        let clients: Vec<StdStream> = (0..waiting)
            .map(|_| StdStream::connect(addr).expect("connect"))
            .collect();
        wait_for_events(&mut server, &[listener_token(0)]);
        let now = Instant::now();
        server.handle(readable(listener_token(0)), now);
        assert_eq!(
            server.clients.table.len(),
            ACCEPT_BUDGET,
            "accepted past the budget"
        );
        assert_eq!(server.listeners.again, vec![0], "listener not remembered");
        (server.listeners).accept_leftovers(&mut server.clients, server.poll.registry(), now);
        assert_eq!(server.clients.table.len(), waiting);
        assert!(
            server.listeners.again.is_empty(),
            "listener still listed with none left"
        );
        drop(clients);
    }

    /// 256 lines of 4 KiB queued for `r` in one batch, under the hard limit.
    fn queue_a_megabyte(server: &mut Server, r: ConnRef) {
        use crate::room::Outbox;
        let line: std::rc::Rc<[u8]> = std::rc::Rc::from(vec![b'x'; 4096]);
        for _ in 0..256 {
            server
                .clients
                .table
                .send(r, &line)
                .expect("under the hard limit");
        }
    }

    /// A client with a megabyte queued and a socket that takes it all at once still gets one
    /// write budget per turn: the rest waits for the next turn (no event would announce it),
    /// so one backlog cannot hold the loop.
    #[test]
    fn a_huge_backlog_is_written_one_budget_per_turn() {
        use crate::limits::WRITE_BUDGET;
        let mut server = test_server();
        let (_client, r) = admit_one(&mut server);
        queue_a_megabyte(&mut server, r);
        let before = server.clients.table.stats.bytes_out;
        server.end_batch(Instant::now());
        let written = server.clients.table.stats.bytes_out - before;
        assert!(
            (WRITE_BUDGET..WRITE_BUDGET + 4096).contains(&(written as usize)),
            "{written} bytes in one turn"
        );
        assert!(
            server.clients.table.lists.has_ready(),
            "the rest is not listed for next turn"
        );
        server.end_batch(Instant::now());
        assert!(
            server.clients.table.stats.bytes_out - before > written,
            "next turn wrote nothing"
        );
    }

    /// A client over `--max-output` whose socket takes all it is given is not behind by its
    /// own doing when the flush stops at the turn's write budget: its grace over the limit
    /// does not start (a loop short of processor time writes few budgets a second, and cut
    /// off readers that took every byte). A client whose socket is full still is (the slow
    /// consumer tests in `tests/limits.rs`, `tests/tls.rs`, `tests/web.rs`).
    #[test]
    fn a_backlog_stopped_by_the_write_budget_is_not_the_clients_fault() {
        let mut server = Server::bind(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            max_output: 256 * 1024,
            quiet_joins: true,
            ..Config::default()
        })
        .expect("bind on loopback");
        let (client, r) = admit_one(&mut server);
        queue_a_megabyte(&mut server, r);
        server.end_batch(Instant::now());
        let conn = server.clients.table.get(r).expect("still there");
        assert!(conn.unsent() > 256 * 1024, "the backlog went in one turn");
        assert_eq!(conn.over_limit_since(), None, "judged behind by the budget");
        drop(client);
    }

    /// The hard output limit counts what a queue holds: a line's bytes and its pointer. A
    /// queue of two-byte lines is cut off once its pointers reach the limit, long before its
    /// bytes alone would.
    #[test]
    fn a_queue_of_tiny_lines_is_cut_off_by_what_it_holds() {
        use crate::limits::HARD_OUTPUT_FACTOR;
        use crate::room::Outbox;
        let max_output = 64 * 1024;
        let mut server = Server::bind(Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            max_output,
            quiet_joins: true,
            ..Config::default()
        })
        .expect("bind on loopback");
        let (_client, r) = admit_one(&mut server);
        let line: std::rc::Rc<[u8]> = std::rc::Rc::from(&b"x\n"[..]);
        let hard = max_output * HARD_OUTPUT_FACTOR;
        let queued = (0..hard)
            .take_while(|_| server.clients.table.send(r, &line).is_ok())
            .count();
        assert!(queued * 2 < hard / 4, "{queued} lines of 2 bytes queued");
        assert!(queued * 18 >= hard / 2, "cut off early: {queued} lines");
    }
}
