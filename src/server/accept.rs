//! Listening and admitting ([`Listeners`]): the listening sockets, `accept` until
//! `WouldBlock` (or the budget), `--connect-rate`, the pause after running out of
//! descriptors. An accepted connection goes into the clients' table; joining the chat is
//! the hub's (`Hub::join`).
//!
//! Every listener speaks something ([`Speaks`]): a stream (plain TCP or TLS) carrying a
//! protocol (chat lines, or HTTP then WebSocket). A connection it accepts gets that transport
//! and starts in `Handshaking`. A transport
//! with no handshake is ready at once, so a plain client is admitted (or refused) in the same
//! call; one with a handshake waits until its transport says it is done, for at most the
//! listener's handshake timeout.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Registry, Token};
use rustls::ServerConfig;

use super::FIRST_LISTENER;
use super::reader::Clients;
use crate::config::Config;
use crate::connection::CloseReason;
use crate::connlog::Kind;
use crate::error::Error;
use crate::limits::{ACCEPT_BUDGET, ACCEPT_PAUSE, FD_RESERVE};
use crate::os;
use crate::protocol;
use crate::rate_limit::{Admit, ConnectRates};
use crate::timers::Timer;
use crate::transport::tls::TlsStreams;
use crate::transport::web::WebProtocols;
use crate::transport::websocket::Frames;
use crate::transport::{Lines, Plain, Speaks};

/// A listening socket and what it speaks.
pub(super) struct Listener {
    socket: TcpListener,
    pub addr: SocketAddr,
    pub speaks: Speaks,
}

pub(super) fn listener_token(index: usize) -> Token {
    Token(FIRST_LISTENER - index)
}

/// Every listener the configuration asks for, registered under its token: the one place a
/// stream and a protocol are tied to an address. `tls` is the certificate, loaded before
/// anything listens (`reload::Loaded`).
fn listen(config: &Config, tls: &Option<TlsStreams>, poll: &Poll) -> Result<Vec<Listener>, Error> {
    // Every WebSocket frames its lines in one place, so a line is framed once for all.
    let frames = Frames::default();
    let web = |head_timeout| WebProtocols {
        head_timeout,
        frames: frames.clone(),
    };
    let mut wanted: Vec<(SocketAddr, Speaks)> = Vec::new();
    for &addr in &config.bind {
        wanted.push((addr, Speaks::new(Plain, Lines)));
    }
    if let (Some(settings), Some(tls)) = (&config.tls, tls) {
        for &addr in &settings.bind {
            wanted.push((addr, Speaks::new(tls.clone(), Lines)));
        }
    }
    if let Some(settings) = &config.http {
        for &addr in &settings.bind {
            wanted.push((addr, Speaks::new(Plain, web(settings.head_timeout))));
        }
        for &addr in &settings.https_bind {
            let Some(tls) = tls else {
                return Err(Error::Tls(format!(
                    "--https-bind {addr} needs a certificate: give --tls-cert and --tls-key"
                )));
            };
            wanted.push((addr, Speaks::new(tls.clone(), web(settings.head_timeout))));
        }
    }
    let mut listeners = Vec::new();
    for (index, (addr, speaks)) in wanted.into_iter().enumerate() {
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
            speaks,
        });
    }
    if listeners.is_empty() {
        return Err(Error::NoListeners);
    }
    Ok(listeners)
}

/// `--max-clients`, or what the open-file limit allows once raised as far as it goes.
pub(super) fn max_clients(requested: Option<usize>) -> usize {
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

/// The error a connection already has as it is accepted (`SO_ERROR`): the peer reset it
/// while it waited in the backlog. One `getsockopt`, far cheaper than admitting it and
/// learning of the reset from its first read.
fn reset_already(stream: &TcpStream) -> Option<io::Error> {
    match stream.take_error() {
        Ok(error) => error,
        Err(error) => Some(error),
    }
}

/// The listening sockets, and the state of accepting from them.
pub(super) struct Listeners {
    list: Vec<Listener>,
    /// Where each listener listens, and what it speaks (kept after a shutdown closes them).
    pub addrs: Vec<(SocketAddr, &'static str)>,
    /// Listeners whose accept budget ran out before `WouldBlock`: accepted from next turn.
    pub again: Vec<usize>,
    /// `--connect-rate`: connections per address.
    pub connect_rates: ConnectRates,
    /// The certificate every TLS listener presents, for a reload to swap.
    pub tls: Option<TlsStreams>,
    /// Accepting is paused after running out of descriptors; a `ResumeAccept` timer is set.
    paused: bool,
    /// Consecutive accept failures, so only the first of a run is a warning.
    failures: u32,
}

impl Listeners {
    pub fn open(
        config: &Config,
        tls: Option<Arc<ServerConfig>>,
        poll: &Poll,
    ) -> Result<Listeners, Error> {
        let tls = tls.zip(config.tls.as_ref());
        let tls = tls.map(|(tls, settings)| TlsStreams::new(tls, settings.handshake_timeout));
        let list = listen(config, &tls, poll)?;
        Ok(Listeners {
            tls,
            addrs: list.iter().map(|l| (l.addr, l.speaks.name())).collect(),
            list,
            again: Vec::new(),
            connect_rates: ConnectRates::new(
                config.connect_rate,
                config.connect_burst,
                config.connect_rate_loopback,
            ),
            paused: false,
            failures: 0,
        })
    }

    /// Where the listeners that speak `speaks` listen.
    pub fn speaking(&self, speaks: &str) -> Vec<SocketAddr> {
        let listening = self.addrs.iter().filter(|&&(_, s)| s == speaks);
        listening.map(|&(addr, _)| addr).collect()
    }

    /// Accepts until the listener's backlog is empty (edge-triggered: one event may stand for
    /// many waiting connections), or until [`ACCEPT_BUDGET`] connections; then the listener
    /// waits on the loop's list of listeners to accept from next turn. Nothing while paused,
    /// nor once the listeners are closed.
    pub fn accept(
        &mut self,
        index: usize,
        clients: &mut Clients,
        registry: &Registry,
        now: Instant,
    ) {
        if self.paused || index >= self.list.len() {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let (stream, peer) = match self.list[index].socket.accept() {
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
                Err(e) => return self.pause(&e, clients, now),
            };
            self.failures = 0;
            if let Some(error) = reset_already(&stream) {
                // Reset (or failed) while it waited in the backlog: a storm that connects
                // and resets faster than the loop accepts leaves most of its connections
                // here. It is counted, and costs nothing else: no slot, no welcome, no notice.
                clients
                    .table
                    .stats
                    .count_turned_away(&CloseReason::Failed(error.kind()));
                continue;
            }
            self.admit(index, stream, peer, clients, registry, now);
        }
        if !self.again.contains(&index) {
            self.again.push(index);
        }
    }

    /// Step 3 for the listeners: those whose budget ran out last turn.
    pub fn accept_leftovers(&mut self, clients: &mut Clients, registry: &Registry, now: Instant) {
        for index in std::mem::take(&mut self.again) {
            self.accept(index, clients, registry, now);
        }
    }

    /// Out of descriptors (EMFILE/ENFILE) or kernel memory. The connection stays in the
    /// backlog, so retrying now would fail now, forever: a 100% CPU spin. Instead stop
    /// accepting for a moment. Clients already connected are served as usual, and one of
    /// them leaving frees a descriptor for the next attempt.
    fn pause(&mut self, error: &io::Error, clients: &mut Clients, now: Instant) {
        self.failures += 1;
        if self.failures == 1 {
            warn!(
                "cannot accept new connections: {error}; pausing accepts, retrying every {} ms",
                ACCEPT_PAUSE.as_millis()
            );
        } else {
            debug!("accept failed again: {error}");
        }
        self.paused = true;
        clients.table.stats.accept_pauses += 1;
        clients.timers.add(now + ACCEPT_PAUSE, Timer::ResumeAccept);
    }

    /// The pause is over: accept again, on every listener, until one fails again.
    pub fn resume(&mut self, clients: &mut Clients, registry: &Registry, now: Instant) {
        self.paused = false;
        for index in 0..self.list.len() {
            self.accept(index, clients, registry, now);
        }
    }

    /// A connection just accepted: into the table with its listener's transport, then into
    /// the chat if its transport has no handshake to wait for.
    ///
    /// A client whose transport has a handshake cannot be told "server full" before it has a
    /// session, so when the server is full (counting handshakes under way) it is closed at
    /// once; everything else about refusing waits for the handshake, so the client can read
    /// why.
    fn admit(
        &mut self,
        index: usize,
        stream: TcpStream,
        peer: SocketAddr,
        clients: &mut Clients,
        registry: &Registry,
        now: Instant,
    ) {
        let Clients {
            table, hub, timers, ..
        } = clients;
        let speaks = &self.list[index].speaks;
        // A banned address (`/ban`), or one over `--connect-rate`: refused as cheaply as can
        // be: no slot, no transport, no registration; one non-blocking write of why (for a
        // transport without a handshake, which can read it), and the close.
        let refused = match hub.chat.moderation.bans.list.refusal(peer.ip()) {
            Some(ban) => Some((
                CloseReason::Banned(ban.reason.clone()),
                protocol::banned(&ban.reason),
            )),
            None => match self.connect_rates.check(peer.ip(), now) {
                Admit::No { wait } => Some((
                    CloseReason::ConnectingTooFast,
                    protocol::connecting_too_fast(wait),
                )),
                Admit::Yes => None,
            },
        };
        if let Some((reason, line)) = refused {
            if speaks.handshake_timeout().is_none() {
                let _ = (&stream).write(line.as_bytes());
            }
            if table.log.allow(Kind::Refused, peer.ip()) {
                warn!("{peer} refused: {reason}");
            }
            return table.stats.count_turned_away(&reason);
        }
        let timeout = speaks.handshake_timeout();
        let held = hub.chat.members() + table.census.handshaking();
        if timeout.is_some() && held >= hub.max_clients {
            if table.log.allow(Kind::Refused, peer.ip()) {
                warn!(
                    "{peer}: {} connection closed before its handshake: server full",
                    speaks.name()
                );
            }
            return table.stats.count_turned_away(&CloseReason::ServerFull);
        }
        let transport = match speaks.transport() {
            Ok(transport) => transport,
            Err(e) => return warn!("{peer}: {e}"),
        };
        let Some(r) = table.insert(stream, peer, transport, registry, now) else {
            return;
        };
        match timeout {
            Some(timeout) => {
                debug!(
                    "{peer}: {} handshake started (token {})",
                    speaks.name(),
                    r.token
                );
                timers.add(now + timeout, Timer::Handshake(r));
            }
            None => hub.join(r, now, table, timers),
        }
    }

    /// A shutdown: closing the listeners makes new connects fail at once instead of hanging.
    pub fn close(&mut self, registry: &Registry) {
        for listener in &mut self.list {
            let _ = registry.deregister(&mut listener.socket);
        }
        self.list.clear();
        self.again.clear();
    }
}
