//! Listening and admitting: the listeners, `accept` until `WouldBlock`, and the decision
//! whether a new connection may join the chat.
//!
//! Every listener speaks something ([`Speaks`]): a stream (plain TCP or TLS) carrying a
//! protocol (chat lines, or HTTP then WebSocket). A connection it accepts gets that transport
//! and starts in `Handshaking`. A transport
//! with no handshake is ready at once, so a plain client is admitted (or refused) in the same
//! call; one with a handshake waits until its transport says it is done, for at most the
//! listener's handshake timeout.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};

use super::reader::Clients;
use super::{FIRST_LISTENER, Server};
use crate::config::Config;
use crate::connection::CloseReason;
use crate::connlog::Kind;
use crate::error::Error;
use crate::limits::{ACCEPT_BUDGET, ACCEPT_PAUSE, FD_RESERVE};
use crate::os;
use crate::protocol;
use crate::rate_limit::Admit;
use crate::timers::Timer;
use crate::transport::tls::{self, TlsStreams};
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
/// stream and a protocol are tied to an address. Certificate problems are found before
/// anything listens.
pub(super) fn listen(config: &Config, poll: &Poll) -> Result<Vec<Listener>, Error> {
    let tls = match &config.tls {
        Some(settings) => Some(TlsStreams {
            config: tls::server_config(&settings.cert, &settings.key)?,
            handshake_timeout: settings.handshake_timeout,
        }),
        None => None,
    };
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
    if let (Some(settings), Some(tls)) = (&config.tls, &tls) {
        for &addr in &settings.bind {
            wanted.push((addr, Speaks::new(tls.clone(), Lines)));
        }
    }
    if let Some(settings) = &config.http {
        for &addr in &settings.bind {
            wanted.push((addr, Speaks::new(Plain, web(settings.head_timeout))));
        }
        for &addr in &settings.https_bind {
            let Some(tls) = &tls else {
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

impl Server {
    /// Accepts until the listener's backlog is empty (edge-triggered: one event may stand for
    /// many waiting connections), or until [`ACCEPT_BUDGET`] connections; then the listener
    /// waits on the loop's list of listeners to accept from next turn.
    pub(super) fn accept(&mut self, index: usize, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
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
            if let Some(error) = reset_already(&stream) {
                // Reset (or failed) while it waited in the backlog: a storm that connects
                // and resets faster than the loop accepts leaves most of its connections
                // here. It is counted, and costs nothing else: no slot, no welcome, no notice.
                self.clients.table.stats.connections_total += 1;
                self.clients
                    .table
                    .stats
                    .count_disconnect(&CloseReason::Failed(error.kind()));
                continue;
            }
            self.admit(index, stream, peer, now);
        }
        if !self.accept_again.contains(&index) {
            self.accept_again.push(index);
        }
    }

    /// Step 3 for the listeners: those whose budget ran out last turn.
    pub(super) fn accept_leftovers(&mut self, now: Instant) {
        for index in std::mem::take(&mut self.accept_again) {
            if !self.accept_paused && !self.shutting_down && index < self.listeners.len() {
                self.accept(index, now);
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
        self.clients.table.stats.accept_pauses += 1;
        self.clients
            .timers
            .add(now + ACCEPT_PAUSE, Timer::ResumeAccept);
    }

    /// The pause is over: accept again, on every listener, until one fails again.
    pub(super) fn resume_accepting(&mut self, now: Instant) {
        self.accept_paused = false;
        for index in 0..self.listeners.len() {
            if !self.accept_paused {
                self.accept(index, now);
            }
        }
    }

    /// A connection just accepted: into the table with its listener's transport, then into
    /// the chat if its transport has no handshake to wait for.
    ///
    /// A client whose transport has a handshake cannot be told "server full" before it has a
    /// session, so when the server is full (counting handshakes under way) it is closed at
    /// once; everything else about refusing waits for the handshake, so the client can read
    /// why.
    fn admit(&mut self, index: usize, stream: TcpStream, peer: SocketAddr, now: Instant) {
        if let Admit::No { wait } = self.connect_rates.check(peer.ip(), now) {
            return self.refuse_at_once(index, stream, peer, wait);
        }
        let speaks = &self.listeners[index].speaks;
        let timeout = speaks.handshake_timeout();
        let held = self.clients.hub.chat.members() + self.clients.table.census.handshaking();
        if timeout.is_some() && held >= self.clients.hub.max_clients {
            if self.clients.table.log.allow(Kind::Refused, peer.ip()) {
                warn!(
                    "{peer}: {} connection closed before its handshake: server full",
                    speaks.name()
                );
            }
            self.clients.table.stats.connections_total += 1;
            self.clients
                .table
                .stats
                .count_disconnect(&CloseReason::ServerFull);
            return;
        }
        let transport = match speaks.transport() {
            Ok(transport) => transport,
            Err(e) => return warn!("{peer}: {e}"),
        };
        let registry = self.poll.registry();
        let Some(r) = self
            .clients
            .table
            .insert(stream, peer, transport, registry, now)
        else {
            return;
        };
        match timeout {
            Some(timeout) => {
                debug!(
                    "{peer}: {} handshake started (token {})",
                    speaks.name(),
                    r.token
                );
                self.clients.timers.add(now + timeout, Timer::Handshake(r));
            }
            None => {
                let Clients {
                    table, hub, timers, ..
                } = &mut self.clients;
                hub.join(r, now, table, timers);
            }
        }
    }

    /// `--connect-rate`: an address connecting too fast is refused as cheaply as can be: no
    /// slot, no transport, no registration; one non-blocking write of why (for a transport
    /// without a handshake, which can read it), and the close.
    fn refuse_at_once(
        &mut self,
        index: usize,
        stream: TcpStream,
        peer: SocketAddr,
        wait: Duration,
    ) {
        if self.listeners[index].speaks.handshake_timeout().is_none() {
            let _ = (&stream).write(protocol::connecting_too_fast(wait).as_bytes());
        }
        if self.clients.table.log.allow(Kind::Refused, peer.ip()) {
            warn!("{peer} refused: {}", CloseReason::ConnectingTooFast);
        }
        self.clients.table.stats.connections_total += 1;
        self.clients
            .table
            .stats
            .count_disconnect(&CloseReason::ConnectingTooFast);
    }

    /// A shutdown: closing the listeners makes new connects fail at once instead of hanging.
    pub(super) fn close_listeners(&mut self) {
        for listener in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        self.listeners.clear();
        self.accept_again.clear();
    }
}
