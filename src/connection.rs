//! One client: its socket, its read side (a [`LineFramer`]), its write side (a [`WriteQueue`]),
//! and where it is in its life ([`Phase`]).
//!
//! A `Connection` knows how to do I/O on its own socket and nothing about other clients: the
//! loop (`server.rs`) decides when to read and flush, the room (`room.rs`) decides what to
//! queue. The two system calls of the whole server are here: [`Connection::read`] and
//! [`Connection::flush`].
//!
//! A connection's life:
//!
//! ```text
//!   accept ──► Chatting ──(quit, peer closed, idle, shutdown)──► Leaving ──(queue flushed
//!                 │                                                 │        or linger over)
//!                 └──(reset, write error, too slow)──────────────────┴──► Closed ──► removed at
//!                                                                                end of batch
//! ```
//!
//! A TLS client starts in `Handshaking` instead, and enters `Chatting` (the room) only once
//! its handshake is over; garbage or a stalled handshake takes it straight to `Closed`.
//!
//! `Leaving` exists so that a client who is being sent away still gets its last lines
//! (`*** bye`, `*** server full`, ...) before the socket closes. `Closed` exists because a
//! connection must not be removed from the slab while the current batch of events may still
//! name its token (see `server.rs`).

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::framing::LineFramer;
pub use crate::nonblocking::ReadOutcome;
use crate::rate_limit::TokenBucket;
use crate::tls::Session;
use crate::write_queue::{Flushed, WriteQueue};

/// Names one connection for longer than a batch of events: the slab key plus the
/// connection's unique serial number. Timers and the ready list hold these, and a `ConnRef`
/// whose slot now holds a different connection (its `id` differs) is stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub token: usize,
    pub id: u64,
}

/// Why a connection ended. Logged when it closes, and shown to the others in the leave
/// notice (`*** alice left (REASON)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// `/quit`, with the client's reason if it gave one.
    Quit(Option<String>),
    /// The client closed its side (`read` returned 0).
    PeerClosed,
    /// The socket failed: reset by the peer, broken pipe, ...
    Failed(io::ErrorKind),
    /// Its unsent output stayed over `--max-output` for `--output-grace`, or passed eight
    /// times the limit: it stopped reading. `limit` is `--max-output` either way.
    TooSlow { limit: usize },
    /// Silent for longer than `--idle-timeout`.
    Idle,
    /// Arrived when `--max-clients` were already connected.
    ServerFull,
    /// Arrived when `--max-per-ip` connections from its address were already connected.
    TooManyFromAddress,
    /// The server is shutting down.
    Shutdown,
    /// TLS failed: rustls rejected what the client sent (not a TLS client, a bad handshake,
    /// a corrupt record). rustls's reason.
    Tls(String),
    /// A TLS client did not finish its handshake within `--tls-handshake-timeout`.
    HandshakeTimeout,
}

impl CloseReason {
    /// A short name for counting disconnects by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            CloseReason::Quit(_) => "quit",
            CloseReason::PeerClosed => "closed",
            CloseReason::Failed(io::ErrorKind::ConnectionReset) => "reset",
            CloseReason::Failed(_) => "error",
            CloseReason::TooSlow { .. } => "too_slow",
            CloseReason::Idle => "idle",
            CloseReason::ServerFull => "server_full",
            CloseReason::TooManyFromAddress => "too_many_from_address",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Tls(_) => "tls_error",
            CloseReason::HandshakeTimeout => "handshake_timeout",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Quit(None) => write!(f, "quit"),
            CloseReason::Quit(Some(reason)) => write!(f, "quit: {reason}"),
            CloseReason::PeerClosed => write!(f, "connection closed"),
            CloseReason::Failed(io::ErrorKind::ConnectionReset) => write!(f, "connection reset"),
            CloseReason::Failed(kind) => write!(f, "connection error: {kind}"),
            CloseReason::TooSlow { limit } => {
                write!(f, "too slow: over {limit} bytes of output waiting")
            }
            CloseReason::Idle => write!(f, "idle timeout"),
            CloseReason::ServerFull => write!(f, "server full"),
            CloseReason::TooManyFromAddress => write!(f, "too many connections from its address"),
            CloseReason::Shutdown => write!(f, "server shutting down"),
            CloseReason::Tls(why) => write!(f, "TLS error: {why}"),
            CloseReason::HandshakeTimeout => write!(f, "TLS handshake timed out"),
        }
    }
}

/// Where a connection is in its life. See the module documentation for the diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A TLS client whose handshake is not over: not in the room, no nick, nothing relayed.
    /// Lines it sends in the same flight as its last handshake message wait in the framer.
    Handshaking,
    /// In the room: its lines are read and relayed, it receives everyone's.
    Chatting,
    /// Out of the room, its nick released; its queued output is still being flushed. Input is
    /// read and thrown away (closing a socket with unread input makes the kernel send a reset,
    /// which can destroy the very lines we are trying to deliver).
    Leaving(CloseReason),
    /// Done. The socket is deregistered and dropped at the end of the batch.
    Closed(CloseReason),
}

#[derive(Debug)]
pub struct Connection {
    /// Unique for the life of the server, unlike the slab key, which is reused.
    pub id: u64,
    pub socket: TcpStream,
    /// `Some` for a client of a TLS listener: every byte to and from `socket` goes through it.
    pub tls: Option<Box<Session>>,
    pub peer: SocketAddr,
    /// Current nick; unique among chatting connections (the room's registry says so).
    pub nick: String,
    pub phase: Phase,
    pub framer: LineFramer,
    pub output: WriteQueue,
    /// `None` when flood control is off (`--rate 0`).
    pub bucket: Option<TokenBucket>,
    /// The last time the client sent us anything: the idle timer measures from here.
    pub last_heard: Instant,
    /// Flood control stopped reading this client until a token is due; readable events are
    /// ignored meanwhile (a `RateLimit` timer resumes it).
    pub throttled: bool,
    /// `--backplane`: its `/nick` is being claimed in Redis. Its next lines wait, unread, until
    /// the answer, so they are handled in the order sent (a line after `/nick bob` is bob's).
    pub waiting_for_nick: bool,
    /// Flood control has been logged for this client (once is enough).
    pub warned_throttle: bool,
    /// Already on the room's list of connections to flush at the end of this batch.
    pub needs_flush: bool,
    /// Already on the loop's ready list (it has unread input left over from its budget).
    pub on_ready_list: bool,
    /// A `Linger` timer is set for it.
    pub linger_armed: bool,
    /// Counted in the room's connections per address (it joined; refused ones are not).
    pub counted_by_address: bool,
    /// Since when its unsent output has been over `--max-output`, as of its last flush.
    pub over_output_since: Option<Instant>,
    /// Registered for writable events too. True only while output is stuck behind a full
    /// send buffer: a socket with an empty queue that asked for writable events would wake the
    /// loop for nothing.
    writable_interest: bool,
}

impl Connection {
    pub fn new(
        id: u64,
        socket: TcpStream,
        peer: SocketAddr,
        max_line: usize,
        bucket: Option<TokenBucket>,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            socket,
            tls: None,
            peer,
            nick: String::new(),
            phase: Phase::Chatting,
            framer: LineFramer::new(max_line),
            output: WriteQueue::default(),
            bucket,
            last_heard: now,
            throttled: false,
            waiting_for_nick: false,
            warned_throttle: false,
            needs_flush: false,
            on_ready_list: false,
            linger_armed: false,
            counted_by_address: false,
            over_output_since: None,
            writable_interest: false,
        }
    }

    pub fn conn_ref(&self, token: usize) -> ConnRef {
        ConnRef { token, id: self.id }
    }

    /// How logs name the client: its address, and its nick once it has one.
    pub fn label(&self) -> String {
        if self.nick.is_empty() {
            self.peer.to_string()
        } else {
            format!("{} ({})", self.peer, self.nick)
        }
    }

    pub fn is_chatting(&self) -> bool {
        self.phase == Phase::Chatting
    }

    /// A TLS client whose handshake finished and that is not in the room yet.
    pub fn handshake_done(&self) -> bool {
        self.phase == Phase::Handshaking && self.tls.as_ref().is_some_and(|t| !t.is_handshaking())
    }

    /// Output owed to the client and not yet taken by the kernel: its queue, plus what TLS
    /// has encrypted and not yet written. `--max-output` judges this.
    pub fn unsent(&self) -> usize {
        self.output.unsent() + self.tls.as_ref().map_or(0, |t| t.unsent())
    }

    /// One `read` into `scratch`, handing the bytes to the framer.
    ///
    /// `Interrupted` (a signal arrived during the call) is retried: it says nothing about the
    /// socket. Any other error means the connection is broken and is returned.
    ///
    /// A TLS connection reads through its session, which decrypts into the framer.
    pub fn read(&mut self, scratch: &mut [u8]) -> io::Result<ReadOutcome> {
        // A leaving client's input is read only to be thrown away.
        let keep = matches!(self.phase, Phase::Chatting | Phase::Handshaking);
        if let Some(tls) = &mut self.tls {
            let framer = keep.then_some(&mut self.framer);
            return tls.read(&mut self.socket, framer, scratch);
        }
        let outcome = ReadOutcome::from_read(|| self.socket.read(scratch))?;
        if keep && let ReadOutcome::Data(n) = outcome {
            self.framer.extend(&scratch[..n]);
        }
        Ok(outcome)
    }

    /// Writes queued output until it is all sent or the socket's buffer is full, then makes
    /// the registration match: writable interest only while output is still waiting.
    ///
    /// A TLS connection writes through its session; once a leaving TLS client's queue is empty,
    /// its `close_notify` goes out last.
    pub fn flush(&mut self, registry: &Registry, token: usize) -> io::Result<Flushed> {
        let flushed = match &mut self.tls {
            None => self.output.write_to(&mut self.socket)?,
            Some(tls) => {
                let mut flushed = tls.flush(&mut self.socket, &mut self.output)?;
                if flushed == Flushed::All
                    && matches!(self.phase, Phase::Leaving(_))
                    && !tls.is_closing()
                {
                    tls.close();
                    flushed = tls.flush(&mut self.socket, &mut self.output)?;
                }
                flushed
            }
        };
        let want_writable = flushed == Flushed::Blocked;
        if want_writable != self.writable_interest {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.socket, Token(token), interest)?;
            self.writable_interest = want_writable;
        }
        Ok(flushed)
    }
}
