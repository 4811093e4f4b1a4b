//! The client's connection to the server: a TCP socket, with TLS (rustls) on top when
//! `--tls` asks for it (its configuration and its reading are in `tls.rs`).
//!
//! The loop in `main.rs` sees one [`Transport`] whatever is underneath. It hands the transport
//! plaintext to send (its [`WriteQueue`]) and gets plaintext back (into a [`LineFramer`]).
//! With TLS, rustls sits between the write queue and the socket, in the shape of rustls's
//! `tlsclient-mio` example:
//!
//! ```text
//!   send:     WriteQueue ──plaintext──► rustls writer() ──records──► write_tls ──► socket
//!   receive:  socket ──► read_tls ──► process_new_packets ──► reader() ──plaintext──► framer
//! ```
//!
//! rustls does no I/O of its own: it is a state machine with a buffer on each side.
//! `write_tls` and `read_tls` are the only calls that touch the socket, and they are made when
//! the socket is ready, like any other non-blocking read or write. The handshake needs no code
//! of its own either. A new `ClientConnection` already has its hello to send (`wants_write`),
//! each answer from the server is handled by `process_new_packets`, and lines typed before the
//! handshake is over wait inside rustls until it is.
//!
//! Connecting is the one blocking step of the client (see [`connect`]).

use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream as StdStream, ToSocketAddrs};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;

use crate::CONNECT_TIMEOUT;
use crate::args::{ConnectArgs, Target};
use crate::tls::{TransportError, client_config, receive_tls, setup_bug};
use pollchat::error::describe;
use pollchat::framing::LineFramer;
use pollchat::nonblocking::ReadOutcome;
use pollchat::nonblocking::{Plaintext, write_records};
use pollchat::write_queue::{Flushed, WriteQueue};

/// What [`Transport::receive`] says (an `InvalidData` error, which a socket never gives)
/// when a connection made without `--tls` is answered in TLS.
pub const SPEAKS_TLS: &str = "the server answered in TLS";

/// How far a [`Transport::send`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything is in the kernel's hands.
    All,
    /// The socket's send buffer is full: wait for a writable event.
    SocketFull,
    /// rustls holds the lines until the handshake is over: the server's next answer (a
    /// readable event) moves it on.
    AwaitingHandshake,
}

/// The connection to the server. See the module documentation.
pub struct Transport {
    socket: TcpStream,
    /// `None` without `--tls`. Boxed: a `ClientConnection` is large, and the transport is
    /// moved around while the client is built.
    tls: Option<Box<ClientConnection>>,
    /// TLS: `close_notify` is queued (once only; rustls would send another each time).
    close_notify_queued: bool,
    /// Plain: the server's first bytes have been read (and were not TLS: see `receive`).
    heard: bool,
}

impl Transport {
    /// The socket, for registering it with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// TLS has records of its own to send: the ClientHello at the start, the rest of the
    /// handshake, an alert. They are written by [`Transport::send`] like queued lines.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// One read from the socket; whatever plaintext it yields goes into `framer`.
    ///
    /// With TLS, one `read_tls` may bring part of a record (no plaintext yet, which is
    /// `Data` all the same: the socket had bytes), a whole record, or several.
    pub fn receive(
        &mut self,
        scratch: &mut [u8],
        framer: &mut LineFramer,
    ) -> Result<ReadOutcome, TransportError> {
        let Some(tls) = &mut self.tls else {
            let outcome = ReadOutcome::from_read(|| self.socket.read(scratch))?;
            if let ReadOutcome::Data(n) = outcome {
                // A TLS server answers what a plain client sends with an alert record (type
                // 0x15, version 0x03 0x0N): shown as text, that was a lone `2`. A chat
                // server's first bytes are text, which never starts with 0x14-0x17.
                if !self.heard && matches!(scratch[..n], [0x14..=0x17, 0x03, ..] | [0x14..=0x17]) {
                    return Err(TransportError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        SPEAKS_TLS,
                    )));
                }
                self.heard = true;
                framer.extend(&scratch[..n]);
            }
            return Ok(outcome);
        };
        receive_tls(tls, &mut self.socket, scratch, |plaintext| {
            framer.extend(plaintext)
        })
    }

    /// Moves what is queued towards the server as far as it goes without waiting.
    pub fn send(&mut self, queue: &mut WriteQueue) -> Result<Sent, TransportError> {
        let Some(tls) = &mut self.tls else {
            return Ok(match queue.write_to(&mut self.socket)? {
                Flushed::All => Sent::All,
                Flushed::Blocked => Sent::SocketFull,
            });
        };
        loop {
            // Plaintext into rustls until the queue is empty or rustls's buffer is full...
            queue.write_to(&mut Plaintext(tls))?;
            // ...then records out until the socket is full or rustls has none left.
            if !write_records(tls, &mut self.socket)? {
                return Ok(Sent::SocketFull);
            }
            if queue.is_empty() && !tls.is_handshaking() {
                return Ok(Sent::All);
            }
            if tls.is_handshaking() {
                // Records can only be made once the keys are agreed; until then rustls keeps
                // the plaintext (and the queue whatever rustls could not keep).
                return Ok(Sent::AwaitingHandshake);
            }
        }
    }

    /// Closes the sending half, once everything queued has been sent: "I will send no more".
    /// The server can still send, and its last lines are still read.
    ///
    /// With TLS, a `close_notify` alert goes first: it tells the server the stream ended on
    /// purpose, where a bare FIN could be an attacker cutting the connection short.
    pub fn close_sending(&mut self) -> Result<Sent, TransportError> {
        if let Some(tls) = &mut self.tls
            && !self.close_notify_queued
        {
            tls.send_close_notify();
            self.close_notify_queued = true;
        }
        let sent = self.send(&mut WriteQueue::default())?;
        if sent == Sent::All {
            match self.socket.shutdown(Shutdown::Write) {
                // The server closed in the meantime: the read side will say so.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                other => other?,
            }
        }
        Ok(sent)
    }
}

/// Why the client could not get as far as a connection.
#[derive(Debug)]
pub enum ConnectError {
    /// TLS could not be set up: the `--ca` file could not be read or holds no certificate,
    /// or HOST is not a name a certificate can be checked against.
    Setup(String),
    /// The host did not resolve, or no address accepted a connection.
    Connect { target: Target, error: io::Error },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Setup(message) => f.write_str(message),
            ConnectError::Connect { target, error } => {
                let hint = match error.kind() {
                    io::ErrorKind::ConnectionRefused => " (is the server running?)",
                    io::ErrorKind::TimedOut => " (no answer: is the address right?)",
                    _ => "",
                };
                write!(f, "cannot connect to {target}: {}{hint}", describe(error))
            }
        }
    }
}

/// Connects to the server (and starts TLS when asked to).
///
/// The TCP connect blocks, on purpose. Until it is done the client has nothing else to do:
/// stdin is not read before there is somewhere to send it, and resolving the host name
/// (`getaddrinfo`) blocks anyway. A non-blocking connect would add a state ("connecting")
/// to the loop for nothing. Everything after this is non-blocking, the TLS handshake too.
pub fn connect(args: &ConnectArgs) -> Result<Transport, ConnectError> {
    // The TLS set-up comes first, so a bad --ca file is reported before any connection.
    let tls = if args.tls {
        let config = tls_config(args)?;
        let name = ServerName::try_from(args.server.host.clone()).map_err(|_| {
            ConnectError::Setup(format!(
                "{:?} is not a host name or address TLS can check a certificate against: \
                 connect to a name the server's certificate is for",
                args.server.host
            ))
        })?;
        let connection = ClientConnection::new(Arc::new(config), name)
            .map_err(|_| ConnectError::Setup(setup_bug()))?;
        Some(Box::new(connection))
    } else {
        None
    };
    let failed = |error| ConnectError::Connect {
        target: args.server.clone(),
        error,
    };
    let stream = connect_tcp(&args.server).map_err(failed)?;
    // Without TCP_NODELAY, Nagle's algorithm holds a typed line back until the previous one is
    // acknowledged (the server sets it for the same reason).
    stream.set_nodelay(true).map_err(failed)?;
    stream.set_nonblocking(true).map_err(failed)?;
    Ok(Transport {
        socket: TcpStream::from_std(stream),
        tls,
        close_notify_queued: false,
        heard: false,
    })
}

/// Tries each address the host resolves to, in order, and returns the first connection.
fn connect_tcp(target: &Target) -> io::Result<StdStream> {
    let mut last_error = None;
    for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
        match StdStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("the name has no address")))
}

/// The rustls client configuration `--tls`, `--ca` and `--insecure` ask for.
fn tls_config(args: &ConnectArgs) -> Result<ClientConfig, ConnectError> {
    client_config(args.ca.as_deref(), "--ca", args.insecure).map_err(ConnectError::Setup)
}
