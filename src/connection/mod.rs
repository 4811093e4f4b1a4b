//! One client connection: its socket and [`Transport`], its read side ([`Input`]: a
//! `LineFramer` and flood control, in `input.rs`), its write side ([`Output`]: a `WriteQueue`
//! and what the socket is registered for, in `output.rs`), and where it is in its life
//! ([`Phase`]).
//!
//! A `Connection` does I/O on its own socket and knows nothing about other clients or about
//! chat: the loop decides when to read and flush, the connection table (`table/`) decides
//! when its phase changes, and the room decides what it is sent.
//!
//! A connection's life:
//!
//! ```text
//!   accept ──► Handshaking ──(transport ready, admitted)──► Chatting
//!                   │  (refused: full, too many from its address)    │ (quit, peer closed,
//!                   │              │                                 │  idle, shutdown)
//!                   │              ▼                                 ▼
//!                   │           Leaving ◄─────────────────────────────┘
//!                   │              │ (queue flushed, or linger over)
//!                   ▼              ▼
//!   (garbage, stalled handshake, reset, write error, too slow) ──► Closed ──► removed at the
//!                                                                            end of the batch
//! ```
//!
//! Every connection starts in `Handshaking`. A plain one's handshake is over before it begins
//! ([`Transport::handshake`]), so it is admitted (or refused) at once; a TLS one waits there,
//! out of the room, until rustls is done, and an HTTP one until its request head is in. An
//! HTTP request that is not the WebSocket upgrade goes from `Handshaking` to `Leaving` with
//! its answer queued, and never joins.
//!
//! `Leaving` exists so that a client who is being sent away still gets its last lines
//! (`*** bye`, `*** server full`, ...) before the socket closes. `Closed` exists because a
//! connection must not be removed from the slab while the current batch of events may still
//! name its token (why: `table/mod.rs`).

mod input;
mod output;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

pub use self::input::Input;
pub use self::output::Output;
use crate::framing::Frame;
#[cfg(doc)]
use crate::limits::WRITE_BUDGET;
use crate::nonblocking::{ReadOutcome, WriteCalls};
use crate::transport::{Broken, Farewell, Handshake, Rejection, Transport};

/// Names one connection for longer than a batch of events: the slab key (its token) plus the
/// connection's unique serial number. Timers, the ready list and the room hold these, and a
/// `ConnRef` whose slot now holds a different connection (its `id` differs) is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Its address opened connections faster than `--connect-rate`: refused as it arrived.
    ConnectingTooFast,
    /// The server is shutting down.
    Shutdown,
    /// Its transport rejected what it sent (not a TLS client, a bad handshake, a corrupt
    /// record).
    Rejected(Rejection),
    /// Its transport's handshake was not over within the listener's timeout
    /// (`--tls-handshake-timeout`, `--http-head-timeout`). The transport's name.
    HandshakeTimeout(&'static str),
    /// An HTTP request other than the WebSocket upgrade: answered (with this status), then
    /// closed.
    Answered(u16),
    /// Banned (`/ban`), for this reason.
    Banned(String),
    /// `/kick`: "kicked by OPER (REASON)", as its room is told (`protocol::left`).
    Kicked(String),
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
            CloseReason::ConnectingTooFast => "connect_rate",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Rejected(rejection) => rejection.kind,
            CloseReason::HandshakeTimeout(_) => "handshake_timeout",
            CloseReason::Answered(_) => "http_answered",
            CloseReason::Banned(_) => "banned",
            CloseReason::Kicked(_) => "kicked",
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
            CloseReason::ConnectingTooFast => write!(f, "connecting too fast from its address"),
            CloseReason::Shutdown => write!(f, "server shutting down"),
            CloseReason::Rejected(rejection) => rejection.fmt(f),
            CloseReason::HandshakeTimeout(by) => write!(f, "{by} handshake timed out"),
            CloseReason::Answered(status) => write!(f, "answered HTTP {status}"),
            CloseReason::Banned(reason) => write!(f, "banned: {reason}"),
            CloseReason::Kicked(why) => f.write_str(why),
        }
    }
}

/// Where a connection is in its life. See the module documentation for the diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not in the room yet: its transport's handshake is under way. Lines it sends in the
    /// same flight as its last handshake message wait in the framer.
    Handshaking,
    /// In the room: its lines are read and relayed, it receives everyone's.
    Chatting,
    /// Out of the room, its nick released; its queued output is still being flushed. Input is
    /// read and thrown away (closing a socket with unread input makes the kernel send a reset,
    /// which can destroy the very lines we are trying to deliver).
    Leaving(Box<CloseReason>),
    /// Done. The socket is deregistered and dropped at the end of the batch.
    Closed(Box<CloseReason>),
}

/// What the loop may do next with a connection's input (see [`Connection::next_line`]).
#[derive(Debug)]
pub enum Next {
    /// A line (or the news that an overlong one was dropped), to relay.
    Line(Frame),
    /// No whole line is buffered: read more from the socket.
    ReadMore,
    /// Flood control: the next line may be relayed at `until`. Reading stops until then; the
    /// client's bytes wait in the kernel, and TCP pushes back on it. `first` the first time
    /// this client is held back (the one time it is worth a log line).
    Throttled { until: Instant, first: bool },
    /// Stop reading for now: closed, still throttled, or held by the room.
    Stop,
}

/// How a read went, as the loop acts on it (see [`Connection::read`]).
#[derive(Debug)]
pub enum Read {
    /// The socket gave this many bytes; `emptied` if the read was short, so the socket had no
    /// more (see [`Transport::short_read_empties`]).
    Bytes {
        n: usize,
        emptied: bool,
        /// The first read of this client in the loop's current round (see
        /// [`Connection::end_round`]): the table lists it, to be asked at the round's end.
        first_in_round: bool,
        /// What the layers around the chat's lines have to report, if anything: `None` on a
        /// plain connection's every read once it is in the chat.
        news: Option<News>,
    },
    /// Nothing more now (`WouldBlock`).
    Drained,
    /// The peer closed its side.
    Ended,
    /// The socket failed, or the transport rejected what came.
    Failed(CloseReason),
}

/// What a read brought besides bytes, from the transport and from Telnet: rare, so the plain
/// path pays one check for all of it ([`Connection::read`]) and the loop acts on it in one
/// place (`Clients::news`).
#[derive(Debug)]
pub struct News {
    /// The read completed the transport's handshake: the connection joins, or is answered.
    pub handshake_done: bool,
    /// The transport has bytes of its own to write (a handshake message, a pong).
    pub wants_write: bool,
    /// Telnet's answers to the commands in what was read (`telnet.rs`): for its queue, in
    /// order with the rest of its output.
    pub replies: Option<Vec<u8>>,
}

/// How a [`Connection::flush`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued is in the kernel.
    Done,
    /// The socket's send buffer is full: it is registered for writable events, and a
    /// writable event brings it back.
    Blocked,
    /// The write budget ([`WRITE_BUDGET`]) is spent and more is queued. The socket is not
    /// full, so no event will say it is writable: the loop flushes it again next turn.
    Budget,
}

/// Flood control's rule (`--rate`, `--burst`): the same for every client, so the table keeps
/// it and hands it to [`Connection::next_line`].
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    pub rate: f64,
    pub burst: u32,
}

impl Flood {
    /// The configuration's rule; `None` when flood control is off (`--rate 0`).
    pub fn of(config: &crate::config::Config) -> Option<Flood> {
        (config.rate > 0.0).then_some(Flood {
            rate: config.rate,
            burst: config.burst,
        })
    }
}

/// How busy one side of a connection is (its reads, its queue's drains), in the loop's
/// rounds of a second ([`Connection::end_round`]). Busy means used twice in a round, or in
/// the last round and this one: such a side keeps its buffer's room between uses rather
/// than allocating it for every line; any other gives it back, so an idle client holds none.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    /// Used in this round.
    this_round: bool,
    busy: bool,
}

impl Activity {
    /// Used now. True the first time in a round: the caller lists the connection, to be
    /// asked at the round's end.
    fn note(&mut self) -> bool {
        let again = std::mem::replace(&mut self.this_round, true);
        self.busy |= again;
        !again
    }

    /// The round is over: busy in the next one if used in this one.
    fn end_round(&mut self) -> bool {
        self.busy = std::mem::take(&mut self.this_round);
        self.busy
    }
}

/// One client connection. See the module documentation.
pub struct Connection {
    /// Unique for the life of the server, unlike the slab key, which is reused.
    id: u64,
    /// The client's address and port. Not a `SocketAddr`, which would also keep an IPv6 flow
    /// label and scope id that no log or limit uses: 20 bytes instead of 32, in every slot.
    peer_ip: IpAddr,
    peer_port: u16,
    /// Its nick once the chat has given it one (shared with the chat's record), for logs.
    nick: Option<Rc<str>>,
    socket: TcpStream,
    transport: Transport,
    phase: Phase,
    /// It reached `Chatting`, so it is counted in its address's connections until removed.
    admitted: bool,
    input: Input,
    output: Output,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("nick", &self.nick)
            .field("transport", &self.transport.name())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// A client as the log names it: `127.0.0.1:5000 (alice)`.
#[derive(Debug, Clone, Copy)]
pub struct Label<'a> {
    peer: SocketAddr,
    nick: Option<&'a str>,
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.nick {
            Some(nick) => write!(f, "{} ({nick})", self.peer),
            None => write!(f, "{}", self.peer),
        }
    }
}

impl Connection {
    /// A connection just accepted and registered for readable events, in `Handshaking`.
    pub fn new(
        id: u64,
        socket: TcpStream,
        peer: SocketAddr,
        transport: Transport,
        max_line: usize,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            peer_ip: peer.ip(),
            peer_port: peer.port(),
            nick: None,
            socket,
            transport,
            phase: Phase::Handshaking,
            admitted: false,
            input: Input::new(max_line, now),
            output: Output::default(),
        }
    }

    /// Readies an accepted socket: `TCP_NODELAY` on (without it, Nagle's algorithm holds back
    /// a small write until the previous one is acknowledged, and delayed ACKs make that ~40 ms
    /// per line; failing that is logged, not fatal), and registered for readable events under
    /// `token` (writable interest comes and goes with blocked writes, see
    /// [`Registration`](crate::nonblocking::Registration)).
    pub fn register(socket: &mut TcpStream, registry: &Registry, token: Token) -> io::Result<()> {
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("token {}: cannot set TCP_NODELAY: {e}", token.0);
        }
        registry.register(socket, token, Interest::READABLE)
    }

    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.socket)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.peer_ip, self.peer_port)
    }

    pub fn conn_ref(&self, token: usize) -> ConnRef {
        ConnRef { token, id: self.id }
    }

    /// How logs name the client: its address, and its nick once it has one. Made when a
    /// log line is, not kept: a few bytes less for every connection.
    pub fn label(&self) -> Label<'_> {
        Label {
            peer: self.peer(),
            nick: self.nick.as_deref(),
        }
    }

    /// The chat named the client: logs say so from now on.
    pub fn set_nick(&mut self, nick: &Rc<str>) {
        self.nick = Some(Rc::clone(nick));
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn is_chatting(&self) -> bool {
        self.phase == Phase::Chatting
    }

    /// Why it is leaving, if it is.
    pub fn leaving(&self) -> Option<&CloseReason> {
        match &self.phase {
            Phase::Leaving(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    pub fn is_admitted(&self) -> bool {
        self.admitted
    }

    pub fn transport_name(&self) -> &'static str {
        self.transport.name()
    }

    /// What the transport agreed in its handshake, for the log.
    pub fn describe_transport(&self) -> String {
        self.transport.describe()
    }

    /// Where the transport's handshake stands: what the loop does with a connection whose
    /// handshake is over.
    pub fn handshake(&self) -> Handshake {
        self.transport.handshake()
    }

    // Phase changes. The table decides when; these say which changes exist.

    /// `Handshaking` → `Chatting`: the client is in the room. False from any other phase.
    pub fn start_chatting(&mut self) -> bool {
        if self.phase != Phase::Handshaking {
            return false;
        }
        self.phase = Phase::Chatting;
        self.admitted = true;
        true
    }

    /// `Handshaking` or `Chatting` → `Leaving`: its last lines go out, then it closes. False
    /// if it was already leaving or closed.
    pub fn start_leaving(&mut self, reason: CloseReason) -> bool {
        if !matches!(self.phase, Phase::Handshaking | Phase::Chatting) {
            return false;
        }
        self.phase = Phase::Leaving(Box::new(reason));
        true
    }

    /// Any phase → `Closed`; returns the phase it left, or `None` if it was closed already.
    pub fn close(&mut self, reason: CloseReason) -> Option<Phase> {
        if self.is_closed() {
            return None;
        }
        Some(std::mem::replace(
            &mut self.phase,
            Phase::Closed(Box::new(reason)),
        ))
    }

    // The read side.

    /// One read from the socket through the transport. A leaving client's input is read only
    /// to be thrown away.
    pub fn read(&mut self, scratch: &mut [u8], now: Instant) -> Read {
        let keep = matches!(self.phase, Phase::Chatting | Phase::Handshaking);
        let framer = keep.then_some(self.input.framer());
        match self.transport.read(&mut self.socket, scratch, framer) {
            Ok(outcome @ ReadOutcome::Data(n)) => Read::Bytes {
                n,
                emptied: self.transport.short_read_empties() && outcome.drained(scratch.len()),
                first_in_round: self.input.was_read(now),
                news: self.news(),
            },
            Ok(ReadOutcome::Drained) => Read::Drained,
            Ok(ReadOutcome::Eof) => Read::Ended,
            Err(Broken::Io(e)) => Read::Failed(CloseReason::Failed(e.kind())),
            Err(Broken::Rejected(rejection)) => Read::Failed(CloseReason::Rejected(rejection)),
        }
    }

    /// What the read just made brought besides bytes (see [`News`]).
    fn news(&mut self) -> Option<News> {
        let handshake_done =
            self.phase == Phase::Handshaking && self.transport.handshake() != Handshake::Underway;
        if handshake_done {
            self.transport.handshake_done();
        }
        let news = News {
            handshake_done,
            wants_write: self.transport.wants_write(),
            replies: self.input.take_replies(),
        };
        (news.handshake_done || news.wants_write || news.replies.is_some()).then_some(news)
    }

    /// The next thing to do with its input: a line to relay, or why not. `flood` is flood
    /// control's rule, `None` when it is off (`--rate 0`).
    pub fn next_line(&mut self, now: Instant, flood: Option<Flood>) -> Next {
        match self.phase {
            Phase::Chatting => {}
            // Leaving: keep reading, but only to throw the input away. Handshaking: keep
            // reading; any lines wait in the framer until the client is in the room.
            Phase::Leaving(_) | Phase::Handshaking => return Next::ReadMore,
            Phase::Closed(_) => return Next::Stop,
        }
        self.input.next_line(now, flood)
    }

    /// The peer closed its side: the last line may have come without a newline.
    pub fn last_line(&mut self) -> Option<Frame> {
        if self.is_chatting() {
            self.input.finish()
        } else {
            None
        }
    }

    // The write side.

    /// Bytes owed to the client and not yet taken by the kernel: its queue, plus what its
    /// transport holds.
    pub fn unsent(&self) -> usize {
        self.output.queued().unsent() + self.transport.unsent()
    }

    /// What its queue holds: the bytes still to send and the pointer each queued line costs.
    #[inline]
    pub fn queued(&self) -> usize {
        self.output.queued().footprint()
    }

    /// What the server holds on the client's behalf: [`Connection::queued`], plus what its
    /// transport holds. `--max-output` judges this after each flush.
    pub fn held(&self) -> usize {
        self.queued() + self.transport.unsent()
    }

    /// The read side: its framer, flood control, and whether the room holds its lines.
    pub fn input(&mut self) -> &mut Input {
        &mut self.input
    }

    /// When it last sent anything (the idle timer measures from here).
    pub fn last_heard(&self) -> Instant {
        self.input.last_heard()
    }

    /// The write side: its queue, how busy it is, and its standing against `--max-output`.
    pub fn output(&mut self) -> &mut Output {
        &mut self.output
    }

    /// Since when it has been over `--max-output`, as of its last flush.
    pub fn over_limit_since(&self) -> Option<Instant> {
        self.output.over_limit_since()
    }

    /// A round is over (the loop's once-a-second look, `memory.rs`): the client is busy in
    /// the next one if it was read or its queue drained in this one; if not, its framer and
    /// queue give back the room they kept. True if it is busy.
    pub fn end_round(&mut self) -> bool {
        let writing = self.output.end_round();
        let reading = self.input.end_round();
        writing || reading
    }

    /// Queues one of the chat's lines, as its transport wants it (WebSocket frames it, once
    /// for all its WebSocket recipients); the line itself is shared, not copied.
    #[inline]
    pub fn send(&mut self, line: &Rc<[u8]>) {
        self.transport.queue(line, self.output.queue());
    }

    /// Writes queued output until it is all sent, the socket's buffer is full, or
    /// [`WRITE_BUDGET`] bytes went out in this call (so one client with a huge backlog and a
    /// fast reader cannot hold the loop); a leaving client's transport then ends its stream
    /// (TLS's `close_notify` goes out last). Then the registration is made to match: writable
    /// interest only while the socket itself is full. `calls` counts the write system calls
    /// made, and their bytes.
    pub fn flush(
        &mut self,
        registry: &Registry,
        token: Token,
        calls: &mut WriteCalls,
    ) -> io::Result<Flush> {
        // A leaving client's transport ends its stream once its queue is out.
        let why = match &self.phase {
            Phase::Leaving(reason) => Some((reason.to_string(), **reason == CloseReason::Shutdown)),
            _ => None,
        };
        let farewell = why.as_ref().map(|(why, going_away)| Farewell {
            going_away: *going_away,
            why,
        });
        let (socket, transport) = (&mut self.socket, &mut self.transport);
        self.output
            .flush(socket, transport, farewell, calls, (registry, token))
    }

    /// After a flush: notes whether it is over `limit` by its own doing (not `taking` all the
    /// flush gave it). True when it has just gone over, so the caller starts its grace; a
    /// flush that leaves it under ends the grace.
    pub fn judge_output(&mut self, limit: usize, now: Instant, taking: bool) -> bool {
        let over = !taking && self.is_chatting() && self.held() > limit;
        self.output.judge(over, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection has a slot of this size in the table, idle or not: what goes in it is
    /// what every idle client costs. What only some connections need (why they are ending,
    /// a flood bucket, buffers, TLS or WebSocket state) is boxed or made when needed, and the
    /// slot holds a pointer. The bound: 176 bytes in a release build, 192 in a debug one
    /// (where mio's socket also carries a selector id). It was 160 until the transport became
    /// two layers, a stream and a protocol, each a pointer every client needs. A field that
    /// breaks it should be one every idle client needs.
    #[test]
    fn a_connection_slot_stays_small() {
        let size = std::mem::size_of::<Connection>();
        let bound = if cfg!(debug_assertions) { 192 } else { 176 };
        assert!(size <= bound, "a Connection is {size} bytes, over {bound}");
    }
}
