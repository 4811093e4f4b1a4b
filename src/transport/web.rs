//! The transport of a connection accepted on an `--http-bind` listener: an HTTP request
//! first, then either a WebSocket client in the chat or an answer and the close.
//!
//! ```text
//!   accept ──► ReadingHead ──(GET /ws, a valid upgrade: 101)──► Upgraded(WebSocket) ── the chat
//!                  │
//!                  └──(any other request, a bad or oversized head)──► Answered ── closed
//! ```
//!
//! Reading the head is this transport's handshake: the connection waits in `Handshaking`,
//! out of the chat, until the head is all in, for at most `--http-head-timeout` (a slowloris
//! client that dribbles its headers is closed by the loop's handshake timer, as a stalled TLS
//! handshake is). `http.rs` says what the head asks for. An upgrade switches this transport
//! to [`WebSocket`], with the `101` as its first bytes out: the connection takes the
//! WebSocket over as its transport ([`Transport::successor`]) at the end of the read that
//! completed the head, drops this one with the request it read, and joins the chat like any
//! other. Anything else is an [`Answer`]: the loop queues it (the page, shared by every
//! request; the metrics, which only the loop can render; an error) and lets the connection
//! leave; its queue is written as it is, and then it closes.

use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpStream;

use super::websocket::WebSocket;
use super::{Answer, Broken, Handshake, Listens, Transport};
use crate::framing::LineFramer;
use crate::http::{self, Head, Route};
#[cfg(doc)]
use crate::limits::HTTP_HEAD_MAX;
use crate::nonblocking::{Flushed, ReadOutcome};
use crate::write_queue::WriteQueue;

/// An HTTP listener (`--http-bind`).
pub struct WebListener {
    pub head_timeout: Duration,
}

impl Listens for WebListener {
    fn name(&self) -> &'static str {
        "HTTP"
    }

    fn transport(&self) -> Result<Box<dyn Transport>, String> {
        Ok(Box::new(Web::default()))
    }

    fn handshake_timeout(&self) -> Option<Duration> {
        Some(self.head_timeout)
    }
}

/// Where an HTTP connection is. See the module documentation.
#[derive(Debug)]
enum State {
    /// Reading the request head: what came so far (at most [`HTTP_HEAD_MAX`] plus one read:
    /// past that, `http::read_head` refuses it).
    ReadingHead(Vec<u8>),
    /// Upgraded: the WebSocket client it became, until the connection takes it over (at the
    /// end of the read that upgraded it: this transport does no I/O for it).
    Upgraded(Option<Box<WebSocket>>),
    /// Not for the chat: answered, its answer in the write queue; what it sends now is read
    /// and thrown away.
    Answered(Answer),
}

/// The transport of an HTTP connection.
#[derive(Debug)]
pub struct Web {
    state: State,
    /// The request line, for the log.
    request: String,
}

impl Default for Web {
    fn default() -> Web {
        Web {
            state: State::ReadingHead(Vec::new()),
            request: String::new(),
        }
    }
}

impl Web {
    /// Bytes of the head just read: once it is whole, the connection upgrades or is answered.
    /// What came after the head of an upgrade is the client's first frames.
    fn head_bytes(
        &mut self,
        bytes: &[u8],
        framer: Option<&mut LineFramer>,
        socket: &mut dyn Write,
    ) -> Result<(), Broken> {
        // Answered: what the client sends now is thrown away.
        let State::ReadingHead(head) = &mut self.state else {
            return Ok(());
        };
        head.extend_from_slice(bytes);
        let (route, len, request) = match http::read_head(head) {
            Head::Partial => return Ok(()),
            Head::Complete {
                route,
                len,
                request,
            } => (route, len, request),
        };
        let mut rest = head.split_off(len.min(head.len()));
        self.request = request;
        self.state = match route {
            Route::Upgrade { accept } => {
                let mut ws = WebSocket::new(&http::switching_protocols(&accept));
                ws.take(&mut rest, framer, socket)?;
                State::Upgraded(Some(Box::new(ws)))
            }
            Route::Page => answer(200, http::page()),
            Route::Metrics => State::Answered(Answer::Metrics),
            Route::Refuse(status, why) => answer(status.code(), http::refusal(status, why)),
        };
        Ok(())
    }
}

fn answer(status: u16, bytes: Rc<[u8]>) -> State {
    State::Answered(Answer::Ready { status, bytes })
}

impl Transport for Web {
    fn name(&self) -> &'static str {
        "HTTP"
    }

    fn handshake(&self) -> Handshake {
        match &self.state {
            State::ReadingHead(_) => Handshake::Underway,
            State::Upgraded(_) => Handshake::Done,
            State::Answered(answer) => Handshake::Answer(answer.clone()),
        }
    }

    /// The head, until it is whole; after it, an answered client's bytes are read and thrown
    /// away.
    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        framer: Option<&mut LineFramer>,
    ) -> Result<ReadOutcome, Broken> {
        let outcome = ReadOutcome::from_read(|| socket.read(scratch)).map_err(Broken::Io)?;
        if let ReadOutcome::Data(n) = outcome {
            self.head_bytes(&scratch[..n], framer, socket)?;
        }
        Ok(outcome)
    }

    fn short_read_empties(&self) -> bool {
        true
    }

    /// An answer is in the queue as it must go out: written as plain TCP writes.
    fn write(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        queue.write_to(socket)
    }

    /// The request line.
    fn describe(&self) -> String {
        self.request.clone()
    }

    /// The WebSocket an upgrade made.
    fn successor(&mut self) -> Option<Box<dyn Transport>> {
        match &mut self.state {
            State::Upgraded(ws) => ws.take().map(|ws| ws as Box<dyn Transport>),
            _ => None,
        }
    }
}
