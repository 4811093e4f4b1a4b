//! The transport seam: what sits between a connection's socket and its lines. A transport is
//! two layers, each behind a trait of its own:
//!
//! ```text
//!   socket ◄──► Stream (plain TCP or TLS) ◄── bytes in the clear ──► Protocol ◄──► LineFramer, WriteQueue
//!                 [`Plain`], [`tls`]                           [`Lines`], [`web`], [`websocket`]
//! ```
//!
//! A **stream** carries bytes: [`Plain`] is TCP as it is (one `read(2)` into the loop's
//! scratch buffer, one `writev(2)` from the queue); [`tls`] puts rustls in between and
//! encrypts as the socket drains. A **protocol** gives those bytes meaning: [`Lines`] is the
//! chat's own (bytes are lines), [`web`] reads an HTTP request and, upgraded, becomes a
//! [`websocket`]. Any stream carries any protocol, so a listener is a pair ([`Speaks`]):
//! `--bind` is plain lines, `--tls-bind` TLS lines, `--http-bind` plain HTTP and
//! `--https-bind` HTTP over TLS; `wss://` is configuration, not a module. This is how
//! rustls (a state machine under any byte stream) and tungstenite (WebSocket over any stream)
//! are layered, and how nginx keeps its `ngx_ssl_*` handlers under every protocol.
//!
//! The loop never asks which stream or protocol it has: it reads, writes, queues a line, and
//! asks the [`Transport`] the few things that differ (where its handshake stands, does it have
//! bytes of its own to send, how does it end a stream). A new stream or protocol is one more
//! file here implementing [`Stream`] or [`Protocol`], and one more pair in the server's list
//! of listeners (`accept::listen`).
//!
//! A handshake can end in something other than the chat: an HTTP request for the page or
//! the metrics ([`Handshake::Answer`]). Such a connection is answered and closed without ever
//! joining, as a TLS connection whose handshake fails is closed without joining. And a
//! protocol can hand the connection over to another ([`Protocol::successor`]): an upgraded
//! HTTP request becomes a [`websocket`], and the request's protocol is dropped.
//!
//! What a transport does *not* decide: when to read or write (the loop does, on readiness),
//! what a line means (the room), or what the socket is registered for. Interest follows one
//! rule for every transport (writable only while a write is blocked, see
//! [`Registration`](crate::nonblocking::Registration)), computed after each flush.

pub mod tls;
pub mod web;
pub mod websocket;

use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpStream;

use crate::framing::LineFramer;
use crate::nonblocking::{Flushed, ReadOutcome};
use crate::protocol::is_http_request;
use crate::write_queue::WriteQueue;

/// One connection's transport: its stream and the protocol on it. See the module
/// documentation.
pub struct Transport {
    stream: Box<dyn Stream>,
    protocol: Box<dyn Protocol>,
}

/// What a stream hands the bytes it read in the clear to: the protocol's
/// [`Protocol::take`].
pub type Take<'a> = dyn FnMut(&mut [u8]) -> Result<(), Broken> + 'a;

/// A byte stream over the socket: plain TCP, or TLS.
pub trait Stream {
    /// Its name, for logs and close reasons ("TLS").
    fn name(&self) -> &'static str;

    /// Its own handshake is under way (TLS's): the protocol above it has not started.
    fn handshaking(&self) -> bool {
        false
    }

    /// One `read` from the socket; the bytes it yields in the clear go to `take`. `Data(n)`
    /// counts the bytes the socket gave, which may yield none at all (half a TLS record).
    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        take: &mut Take<'_>,
    ) -> Result<ReadOutcome, Broken>;

    /// Whether a read that gave fewer bytes than `scratch` holds emptied the socket. True
    /// where the whole read is one `read(2)` into `scratch` (plain TCP): a stream socket that
    /// returns less than it was asked for had no more (epoll(7)). Not for TLS: rustls reads
    /// the socket into a buffer of its own, of a size we do not see.
    fn short_read_empties(&self) -> bool {
        false
    }

    /// Whether it has bytes of its own waiting to be written (handshake messages).
    fn wants_write(&self) -> bool {
        false
    }

    /// Writes what `source` (the protocol, over the queue) has, and whatever the stream
    /// itself has to say, until everything is out or the socket says `WouldBlock`.
    fn write(&mut self, socket: &mut dyn Write, source: &mut Source<'_>) -> io::Result<Flushed>;

    /// Queues what ends the stream on purpose (TLS's `close_notify`). True if that left
    /// something to write; true once at most.
    fn close(&mut self) -> bool {
        false
    }

    /// Output taken from the protocol and not yet by the kernel (TLS: plaintext encrypted
    /// ahead of the socket).
    fn unsent(&self) -> usize {
        0
    }

    /// What was agreed in its handshake, for the log.
    fn describe(&self) -> String {
        String::new()
    }
}

/// What a stream carries: the chat's lines, or HTTP then WebSocket.
pub trait Protocol {
    /// Its name carried over a stream named `stream` ("plain", "TLS"), for logs and the
    /// counters by transport.
    fn name_over(&self, stream: &'static str) -> &'static str;

    /// Where its handshake stands (HTTP's request head). Lines have none.
    fn handshake(&self) -> Handshake {
        Handshake::Done
    }

    /// Bytes the stream read, in the clear: whatever they hold for the chat goes into
    /// `framer`, or is thrown away when `framer` is `None` (the connection is leaving).
    fn take(&mut self, bytes: &mut [u8], framer: Option<&mut LineFramer>) -> Result<(), Broken>;

    /// The peer ended its side inside the protocol (a WebSocket close frame): the next read
    /// reports the end without reading.
    fn ended(&self) -> bool {
        false
    }

    /// One of the chat's lines as this protocol sends it, for the peer's queue: the line
    /// itself for lines, shared with every other recipient's queue; a WebSocket's frame of
    /// it, made once for all WebSocket recipients. Never a copy per recipient.
    fn framed(&mut self, line: &Rc<[u8]>) -> Rc<[u8]>;

    /// Whether it has bytes of its own waiting (a pong, a close frame, the upgrade's `101`).
    fn wants_write(&self) -> bool {
        false
    }

    /// Writes the queue, and bytes of its own between two entries, into `out` until all is
    /// out or `out` says `WouldBlock`.
    fn write(&mut self, out: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        queue.write_to(out)
    }

    /// The connection is leaving and its queue is written: queue what ends the protocol on
    /// purpose (WebSocket's close frame). True if that left something to write; asked once.
    fn close(&mut self, _farewell: Farewell<'_>) -> bool {
        false
    }

    /// Bytes of its own not yet written (`--max-output` counts them too).
    fn unsent(&self) -> usize {
        0
    }

    /// What the handshake asked for, for the log.
    fn describe(&self) -> String {
        String::new()
    }

    /// The protocol that carries the connection from now on, if this one's handshake handed
    /// it over (an HTTP request upgraded to WebSocket). Asked once, when the handshake is done.
    fn successor(&mut self) -> Option<Box<dyn Protocol>> {
        None
    }
}

/// What a stream writes from: the protocol, over the connection's queue.
pub struct Source<'a> {
    pub protocol: &'a mut dyn Protocol,
    pub queue: &'a mut WriteQueue,
}

impl Source<'_> {
    /// Writes into `out` until all is out or `out` says `WouldBlock`.
    pub fn write_to(&mut self, out: &mut dyn Write) -> io::Result<Flushed> {
        self.protocol.write(out, self.queue)
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && !self.protocol.wants_write()
    }
}

impl Transport {
    pub fn new(stream: Box<dyn Stream>, protocol: Box<dyn Protocol>) -> Transport {
        Transport { stream, protocol }
    }

    /// Its name, for logs and the counters: "plain", "TLS", "HTTP", "WebSocket over TLS".
    pub fn name(&self) -> &'static str {
        self.protocol.name_over(self.stream.name())
    }

    /// Where the handshake stands: the stream's first, then the protocol's.
    pub fn handshake(&self) -> Handshake {
        if self.stream.handshaking() {
            Handshake::Underway
        } else {
            self.protocol.handshake()
        }
    }

    /// One read from the socket, its bytes through the stream into the protocol. A protocol
    /// that refuses them may have something to say first (a WebSocket close frame): one
    /// best-effort write sends it.
    pub fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        mut framer: Option<&mut LineFramer>,
    ) -> Result<ReadOutcome, Broken> {
        let Transport { stream, protocol } = &mut *self;
        if protocol.ended() {
            return Ok(ReadOutcome::Eof);
        }
        let mut take = |bytes: &mut [u8]| protocol.take(bytes, framer.as_deref_mut());
        let read = stream.read(socket, scratch, &mut take);
        if let Err(Broken::Rejected(_)) = &read {
            let mut nothing = WriteQueue::default();
            let _ = self.write(socket, &mut nothing, None);
        }
        read
    }

    /// Whether a short read emptied the socket (see [`Stream::short_read_empties`]). Not
    /// once the protocol has seen the end: the next read must report it.
    pub fn short_read_empties(&self) -> bool {
        self.stream.short_read_empties() && !self.protocol.ended()
    }

    /// Queues one of the chat's lines, as the protocol sends it.
    #[inline]
    pub fn queue(&mut self, line: &Rc<[u8]>, queue: &mut WriteQueue) {
        queue.push(self.protocol.framed(line));
    }

    pub fn wants_write(&self) -> bool {
        self.stream.wants_write() || self.protocol.wants_write()
    }

    /// Writes `queue` through the protocol and the stream. With a `farewell` (the connection
    /// is leaving), once all is out the protocol ends (WebSocket's close frame), then the
    /// stream (TLS's `close_notify`, the last thing sent), each written as it is made.
    pub fn write(
        &mut self,
        socket: &mut dyn Write,
        queue: &mut WriteQueue,
        farewell: Option<Farewell<'_>>,
    ) -> io::Result<Flushed> {
        let Transport { stream, protocol } = &mut *self;
        let mut source = Source {
            protocol: &mut **protocol,
            queue,
        };
        let mut flushed = stream.write(socket, &mut source)?;
        if let Some(farewell) = farewell {
            if flushed == Flushed::All && source.protocol.close(farewell) {
                flushed = stream.write(socket, &mut source)?;
            }
            if flushed == Flushed::All && stream.close() {
                flushed = stream.write(socket, &mut source)?;
            }
        }
        Ok(flushed)
    }

    /// Output handed to the transport and not yet taken by the kernel, beyond the queue.
    pub fn unsent(&self) -> usize {
        self.stream.unsent() + self.protocol.unsent()
    }

    /// What was agreed in the handshakes, for the log.
    pub fn describe(&self) -> String {
        let (stream, protocol) = (self.stream.describe(), self.protocol.describe());
        match (stream.is_empty(), protocol.is_empty()) {
            (_, true) => stream,
            (true, false) => protocol,
            (false, false) => format!("{protocol}; {stream}"),
        }
    }

    /// The handshake is done: the protocol hands over to its successor, if it has one.
    pub fn handshake_done(&mut self) {
        if let Some(next) = self.protocol.successor() {
            self.protocol = next;
        }
    }
}

/// Where a transport's handshake stands (see [`Transport::handshake`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Under way: the connection waits, out of the chat.
    Underway,
    /// Over: lines flow, and the connection may join the chat.
    Done,
    /// Over, and the peer asked for something other than the chat (an HTTP request that is
    /// not the WebSocket upgrade): it is answered, then closed, and never joins.
    Answer(Answer),
}

/// What a connection that is not for the chat is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An answer the protocol made (a page, an error), sent as it is. `status` is HTTP's,
    /// for the counters and the log.
    Ready { status: u16, bytes: Rc<[u8]> },
    /// The server's counters, which only the loop has (`/metrics`); `head_only` for `HEAD`.
    Metrics { head_only: bool },
}

/// Why the server ends a stream, for a protocol that can tell its peer (WebSocket's close
/// frame has a code and a reason).
#[derive(Debug, Clone, Copy)]
pub struct Farewell<'a> {
    /// The server is shutting down, rather than done with this client.
    pub going_away: bool,
    /// Why, in words (the close reason, as the log says it).
    pub why: &'a str,
}

/// How a [`Transport::read`] failed.
#[derive(Debug)]
pub enum Broken {
    /// The socket failed (reset by the peer, ...).
    Io(io::Error),
    /// The stream or the protocol rejected what the peer sent (not TLS, a bad record, a
    /// WebSocket frame the RFC forbids). It has told the peer, if it has a way to.
    Rejected(Rejection),
}

/// Why the peer was refused by its transport, as a close reason says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The layer's name ("TLS").
    pub by: &'static str,
    /// What the server counts it as (`tls_error`).
    pub kind: &'static str,
    pub why: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.by, self.why)
    }
}

/// What a listener speaks: the stream of each connection it accepts, and the protocol on it.
pub struct Speaks {
    pub stream: Box<dyn MakesStream>,
    pub protocol: Box<dyn MakesProtocol>,
}

/// Makes the stream of each connection a listener accepts.
pub trait MakesStream {
    fn name(&self) -> &'static str;
    /// A stream for a connection just accepted; an error is logged, and the connection dropped.
    fn stream(&self) -> Result<Box<dyn Stream>, String>;
    /// How long its handshake may take; `None` for a stream without one.
    fn handshake_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Makes the protocol of each connection a listener accepts.
pub trait MakesProtocol {
    /// Its name over a stream named `stream`, as [`Protocol::name_over`] says it.
    fn name_over(&self, stream: &'static str) -> &'static str;
    fn protocol(&self) -> Box<dyn Protocol>;
    /// How long its handshake may take, once the stream's is done.
    fn handshake_timeout(&self) -> Option<Duration> {
        None
    }
}

impl Speaks {
    pub fn new(stream: impl MakesStream + 'static, protocol: impl MakesProtocol + 'static) -> Self {
        Speaks {
            stream: Box::new(stream),
            protocol: Box::new(protocol),
        }
    }

    /// "plain", "TLS", "HTTP", "HTTPS".
    pub fn name(&self) -> &'static str {
        self.protocol.name_over(self.stream.name())
    }

    /// A transport for a connection just accepted.
    pub fn transport(&self) -> Result<Transport, String> {
        Ok(Transport::new(
            self.stream.stream()?,
            self.protocol.protocol(),
        ))
    }

    /// How long a connection may take over its handshakes (both layers') before it is
    /// closed; `None` when neither layer has one.
    pub fn handshake_timeout(&self) -> Option<Duration> {
        match (
            self.stream.handshake_timeout(),
            self.protocol.handshake_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
}

/// TCP as it is: bytes in, bytes out.
#[derive(Debug, Default)]
pub struct Plain;

impl Stream for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        take: &mut Take<'_>,
    ) -> Result<ReadOutcome, Broken> {
        let outcome = ReadOutcome::from_read(|| socket.read(scratch)).map_err(Broken::Io)?;
        if let ReadOutcome::Data(n) = outcome {
            take(&mut scratch[..n])?;
        }
        Ok(outcome)
    }

    fn short_read_empties(&self) -> bool {
        true
    }

    fn write(&mut self, socket: &mut dyn Write, source: &mut Source<'_>) -> io::Result<Flushed> {
        source.write_to(socket)
    }
}

impl MakesStream for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn stream(&self) -> Result<Box<dyn Stream>, String> {
        Ok(Box::new(Plain))
    }
}

/// The chat's own protocol: bytes are lines, each ending in a newline, both ways.
#[derive(Debug, Default)]
pub struct Lines;

impl Protocol for Lines {
    fn name_over(&self, stream: &'static str) -> &'static str {
        stream
    }

    /// Into the framer, Telnet's commands taken out on the way (`telnet.rs`). The first bytes
    /// are looked at once for another protocol's (see `wrong_protocol`).
    #[inline]
    fn take(&mut self, bytes: &mut [u8], framer: Option<&mut LineFramer>) -> Result<(), Broken> {
        if let Some(framer) = framer {
            if framer.is_fresh() {
                wrong_protocol(bytes)?;
            }
            framer.extend_telnet(bytes);
        }
        Ok(())
    }

    /// As it is: a pointer to the line every recipient shares.
    #[inline]
    fn framed(&mut self, line: &Rc<[u8]>) -> Rc<[u8]> {
        Rc::clone(line)
    }
}

/// What [`Rejection::kind`] says of an HTTP request on the chat port: the loop answers it
/// with where the page is before it closes (`reader.rs`).
pub const HTTP_ON_CHAT_PORT: &str = "http_on_chat_port";

/// A chat connection's first bytes, refused if they are another protocol's rather than read
/// as chat: a TLS handshake record (type 22, version 3.x: a TLS client on the plain port, its
/// bytes not even text), or a first line that is an HTTP request line (a browser or `curl`
/// on the chat port, whose request would otherwise be said to the room, see
/// [`is_http_request`]). Only the first read is looked at: a request line that
/// arrives in pieces (typed by hand) is chat, like `GET out of here`.
fn wrong_protocol(bytes: &[u8]) -> Result<(), Broken> {
    let (kind, why) = if matches!(bytes, [0x16, 0x03, 0x00..=0x04, ..]) {
        ("tls_on_plain_port", "a TLS handshake on the plain port")
    } else if let Some(end) = memchr::memchr(b'\n', bytes)
        && let line = &bytes[..end]
        && let Ok(line) = std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line))
        && is_http_request(line)
    {
        (HTTP_ON_CHAT_PORT, "an HTTP request")
    } else {
        return Ok(());
    };
    let by = "chat port";
    Err(Broken::Rejected(Rejection {
        by,
        kind,
        why: why.to_string(),
    }))
}

impl MakesProtocol for Lines {
    fn name_over(&self, stream: &'static str) -> &'static str {
        stream
    }

    fn protocol(&self) -> Box<dyn Protocol> {
        Box::new(Lines)
    }
}
