//! The transport seam: what sits between a connection's socket and its lines.
//!
//! A connection (`connection.rs`) reads into a line framer and
//! writes from a write queue, and it does both through its [`Transport`]:
//!
//! ```text
//!   socket ──Transport::read──► LineFramer        WriteQueue ──Transport::write──► socket
//! ```
//!
//! [`Plain`] is TCP as it is: a `read` into the framer, a `writev` from the queue. TLS
//! ([`tls`]) puts rustls in between; an `--http-bind` connection ([`web`]) reads an HTTP
//! request first and, upgraded, is a [`websocket`]. The loop never asks which one it has: it
//! reads, writes, and asks the transport the three things that differ (where its handshake
//! stands, does it have bytes of its own to send, how does it end a stream). A new transport
//! is one more file here implementing [`Transport`] and [`Listens`], and one more entry in
//! the server's list of listeners (`Server::bind`).
//!
//! A handshake can end in something other than the chat: an HTTP request for the page or
//! the metrics ([`Handshake::Answer`]). Such a connection is answered and closed without ever
//! joining, as a TLS connection whose handshake fails is closed without joining. And a
//! handshake can hand the connection over to another transport ([`Transport::successor`]):
//! an upgraded HTTP request becomes a [`websocket`], and the request's transport is dropped.
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
use crate::write_queue::WriteQueue;

/// One connection's transport. See the module documentation.
pub trait Transport {
    /// The transport's own name, for logs and close reasons ("TLS").
    fn name(&self) -> &'static str;

    /// Where its handshake stands. Plain TCP has none: done from the start. A connection is
    /// held out of the chat while it is under way.
    fn handshake(&self) -> Handshake {
        Handshake::Done
    }

    /// How the chat's lines are queued for this transport, once its handshake is done. Asked
    /// once, when it is: a transport keeps its encoding from then on.
    fn encoding(&self) -> Encoding {
        Encoding::Lines
    }

    /// One `read` from the socket. Whatever it yields for the chat goes into `framer`, or is
    /// thrown away when `framer` is `None` (the connection is leaving). `Data(n)` counts the
    /// bytes the socket gave, which may yield no line at all (half a TLS record).
    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        framer: Option<&mut LineFramer>,
    ) -> Result<ReadOutcome, Broken>;

    /// Whether a [`Transport::read`] that gave fewer bytes than `scratch` holds emptied the
    /// socket. True where the whole read is one `read(2)` into `scratch` (plain TCP): a
    /// stream socket that returns less than it was asked for had no more (epoll(7)). Not for
    /// TLS: rustls reads the socket into a buffer of its own, of a size we do not see.
    fn short_read_empties(&self) -> bool {
        false
    }

    /// Whether it has bytes of its own waiting to be written (handshake messages). The loop
    /// then flushes the connection at the end of the batch, queue or no queue.
    fn wants_write(&self) -> bool {
        false
    }

    /// Writes queued lines, and whatever the transport itself has to say, until everything is
    /// out or the socket says `WouldBlock`.
    /// `socket` is the connection's socket behind a write budget (see `Budget` in
    /// `nonblocking.rs`), which says `WouldBlock` as the socket itself would.
    fn write(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed>;

    /// The connection is leaving and its queue is written: queue what ends the stream on
    /// purpose (TLS's `close_notify`, WebSocket's close frame). True if that left something
    /// to write; asked once.
    fn close(&mut self, _farewell: Farewell<'_>) -> bool {
        false
    }

    /// Output handed to the transport and not yet taken by the kernel, beyond the queue
    /// (TLS: plaintext encrypted ahead of the socket). `--max-output` counts it too.
    fn unsent(&self) -> usize {
        0
    }

    /// What was agreed in the handshake, for the log.
    fn describe(&self) -> String {
        String::new()
    }

    /// The transport that carries the connection from now on, if this one's handshake handed
    /// it over to another (an HTTP request upgraded to WebSocket). Asked once, when the
    /// handshake is done; the connection then drops this transport, and with it whatever it
    /// held only for the handshake (the request, its parser).
    fn successor(&mut self) -> Option<Box<dyn Transport>> {
        None
    }
}

/// How a transport wants the chat's lines in its write queue (see [`Encoded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As the chat made them: bytes, each line ending in a newline (plain TCP; TLS, which
    /// encrypts from the queue as the socket drains).
    Lines,
    /// Each line one WebSocket text frame, header and text, without its newline.
    WebSocket,
}

/// A line in the encoding of each recipient's transport, made once per line however many
/// recipients share that encoding.
///
/// The room hands the same `Rc` line to every member in turn, so one entry is enough: the
/// first WebSocket recipient of a line frames it, and the others get a pointer to that frame,
/// as plain recipients get a pointer to the line. The entry holds its line too, so the
/// address it is known by cannot be freed and reused by another line while it is kept.
#[derive(Debug, Default)]
pub struct Encoded {
    last: Option<Framed>,
}

/// A line, and its frames.
#[derive(Debug)]
struct Framed {
    line: Rc<[u8]>,
    frames: Rc<[u8]>,
}

impl Encoded {
    /// `line` as `encoding` wants it.
    #[inline]
    pub fn get(&mut self, encoding: Encoding, line: &Rc<[u8]>) -> Rc<[u8]> {
        match encoding {
            Encoding::Lines => Rc::clone(line),
            Encoding::WebSocket => match &self.last {
                Some(last) if Rc::ptr_eq(&last.line, line) => Rc::clone(&last.frames),
                _ => {
                    let frames: Rc<[u8]> = websocket::frame::text_frames(line).into();
                    self.last = Some(Framed {
                        line: Rc::clone(line),
                        frames: Rc::clone(&frames),
                    });
                    frames
                }
            },
        }
    }

    /// The batch is over: the last line and its frame are not kept past it.
    pub fn forget(&mut self) {
        self.last = None;
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
    /// An answer the transport made (a page, an error), sent as it is. `status` is HTTP's,
    /// for the counters and the log.
    Ready { status: u16, bytes: Rc<[u8]> },
    /// The server's counters, which only the loop has (`/metrics`).
    Metrics,
}

/// Why the server ends a stream, for a transport that can tell its peer (WebSocket's close
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
    /// The transport rejected what the peer sent (not TLS, a bad record, ...). It has already
    /// told the peer, if its protocol has a way to.
    Rejected(Rejection),
}

/// Why the peer was refused by its transport, as a close reason says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The transport's name ("TLS").
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

/// What a listener speaks: it makes the [`Transport`] of each connection it accepts.
pub trait Listens {
    /// The transport's name, as [`Transport::name`] says it ("plain", "TLS").
    fn name(&self) -> &'static str;

    /// A transport for a connection just accepted. An error is logged, and the connection
    /// dropped.
    fn transport(&self) -> Result<Box<dyn Transport>, String>;

    /// How long a connection may take over its handshake before it is closed; `None` for a
    /// transport without one.
    fn handshake_timeout(&self) -> Option<Duration> {
        None
    }
}

/// TCP as it is: bytes in, bytes out.
#[derive(Debug, Default)]
pub struct Plain;

impl Transport for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        framer: Option<&mut LineFramer>,
    ) -> Result<ReadOutcome, Broken> {
        let outcome = ReadOutcome::from_read(|| socket.read(scratch)).map_err(Broken::Io)?;
        if let (ReadOutcome::Data(n), Some(framer)) = (outcome, framer) {
            if framer.is_fresh() && is_tls_hello(&scratch[..n]) {
                return Err(Broken::Rejected(Rejection {
                    by: "chat port",
                    kind: "tls_on_plain_port",
                    why: "a TLS handshake on the plain port".to_string(),
                }));
            }
            framer.extend_telnet(&scratch[..n]);
        }
        Ok(outcome)
    }

    fn short_read_empties(&self) -> bool {
        true
    }

    fn write(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        queue.write_to(socket)
    }
}

/// Whether a connection's first bytes are a TLS handshake record (type 22, version 3.x): a
/// TLS client on the plain port, closed rather than read as chat (its bytes are not text).
fn is_tls_hello(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, 0x00..=0x04, ..])
}

/// A plain TCP listener (`--bind`).
#[derive(Debug, Default)]
pub struct PlainListener;

impl Listens for PlainListener {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn transport(&self) -> Result<Box<dyn Transport>, String> {
        Ok(Box::new(Plain))
    }
}
