//! The protocol of a connection accepted on an `--http-bind` or `--https-bind` listener: an
//! HTTP request first, then either a WebSocket client in the chat or an answer and the close.
//! Over plain TCP or TLS alike: this module sees the request's bytes in the clear.
//!
//! ```text
//!   accept ──► ReadingHead ──(GET /ws, a valid upgrade: 101)──► Upgraded(WebSocket) ── the chat
//!                  │
//!                  └──(any other request, a bad or oversized head)──► Answered ── closed
//! ```
//!
//! Reading the head is this protocol's handshake: the connection waits in `Handshaking`,
//! out of the chat, until the head is all in, for at most `--http-head-timeout` (a slowloris
//! client that dribbles its headers is closed by the loop's handshake timer, as a stalled TLS
//! handshake is). `http.rs` says what the head asks for. An upgrade switches this protocol
//! to [`WebSocket`], with the `101` as its first bytes out: the connection takes the
//! WebSocket over as its protocol ([`Protocol::successor`]) at the end of the read that
//! completed the head, drops this one with the request it read, and joins the chat like any
//! other. Anything else is an [`Answer`]: the loop queues it (the page, shared by every
//! request; the metrics, which only the loop can render; an error) and lets the connection
//! leave; its queue is written as it is, and then it closes.

use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use super::websocket::{Frames, WebSocket};
use super::{Answer, Broken, Farewell, Handshake, MakesProtocol, Protocol};
use crate::framing::LineFramer;
use crate::http::{self, Head, Route};
#[cfg(doc)]
use crate::limits::HTTP_HEAD_MAX;
use crate::nonblocking::Flushed;
use crate::write_queue::WriteQueue;

/// The protocol of an HTTP listener (`--http-bind`, and `--https-bind` over TLS): how long a
/// request head may take, and where every WebSocket it upgrades frames its lines.
pub struct WebProtocols {
    pub head_timeout: Duration,
    pub frames: Frames,
}

/// "HTTP", or "HTTPS" over TLS.
fn name_over(stream: &'static str) -> &'static str {
    match stream {
        "TLS" => "HTTPS",
        _ => "HTTP",
    }
}

impl MakesProtocol for WebProtocols {
    fn name_over(&self, stream: &'static str) -> &'static str {
        name_over(stream)
    }

    fn protocol(&self) -> Box<dyn Protocol> {
        Box::new(Web {
            state: State::ReadingHead(Vec::new()),
            request: String::new(),
            frames: self.frames.clone(),
        })
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
    /// end of the read that upgraded it; until then, what it has to write goes through here).
    Upgraded(Option<Box<WebSocket>>),
    /// Not for the chat: answered, its answer in the write queue; what it sends now is read
    /// and thrown away.
    Answered(Answer),
}

/// The protocol of an HTTP connection.
#[derive(Debug)]
pub struct Web {
    state: State,
    /// The request line, for the log.
    request: String,
    /// Given to the WebSocket an upgrade makes.
    frames: Frames,
}

impl Web {
    /// Bytes of the head just read: once it is whole, the connection upgrades or is answered.
    /// What came after the head of an upgrade is the client's first frames.
    fn head_bytes(&mut self, bytes: &[u8], framer: Option<&mut LineFramer>) -> Result<(), Broken> {
        // Answered: what the client sends now is thrown away.
        let State::ReadingHead(head) = &mut self.state else {
            return Ok(());
        };
        head.extend_from_slice(bytes);
        let (route, len, request, head_only) = match http::read_head(head) {
            Head::Partial => return Ok(()),
            Head::Complete {
                route,
                len,
                request,
                head_only,
            } => (route, len, request, head_only),
        };
        let mut rest = head.split_off(len.min(head.len()));
        self.request = request;
        self.state = match route {
            Route::Upgrade { accept } => {
                let reply = http::switching_protocols(&accept);
                let mut ws = Box::new(WebSocket::new(&reply, self.frames.clone()));
                let taken = ws.take(&mut rest, framer);
                self.state = State::Upgraded(Some(ws));
                return taken;
            }
            Route::Page => answer(200, http::page(head_only)),
            Route::Metrics => State::Answered(Answer::Metrics { head_only }),
            Route::Refuse(status, why) => {
                answer(status.code(), http::refusal(status, why, head_only))
            }
        };
        Ok(())
    }
}

fn answer(status: u16, bytes: Rc<[u8]>) -> State {
    State::Answered(Answer::Ready { status, bytes })
}

impl Web {
    /// The WebSocket an upgrade made, until the connection takes it over.
    fn upgraded(&mut self) -> Option<&mut WebSocket> {
        match &mut self.state {
            State::Upgraded(ws) => ws.as_deref_mut(),
            _ => None,
        }
    }
}

impl Protocol for Web {
    fn name_over(&self, stream: &'static str) -> &'static str {
        name_over(stream)
    }

    fn handshake(&self) -> Handshake {
        match &self.state {
            State::ReadingHead(_) => Handshake::Underway,
            State::Upgraded(_) => Handshake::Done,
            State::Answered(answer) => Handshake::Answer(answer.clone()),
        }
    }

    /// The head, until it is whole; after it, an answered client's bytes are thrown away.
    fn take(&mut self, bytes: &mut [u8], framer: Option<&mut LineFramer>) -> Result<(), Broken> {
        self.head_bytes(bytes, framer)
    }

    /// Not for the chat until upgraded, when the WebSocket takes over: a line meant for it
    /// before then (none is sent) would go as it is.
    fn framed(&mut self, line: &Rc<[u8]>) -> Rc<[u8]> {
        Rc::clone(line)
    }

    fn wants_write(&self) -> bool {
        matches!(&self.state, State::Upgraded(Some(ws)) if ws.wants_write())
    }

    /// An answer is in the queue as it must go out. An upgrade not yet taken over (its first
    /// frames broke the protocol) writes the WebSocket's `101` and close frame.
    fn write(&mut self, out: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        match self.upgraded() {
            Some(ws) => ws.write(out, queue),
            None => queue.write_to(out),
        }
    }

    fn close(&mut self, farewell: Farewell<'_>) -> bool {
        self.upgraded().is_some_and(|ws| ws.close(farewell))
    }

    /// The request line.
    fn describe(&self) -> String {
        self.request.clone()
    }

    /// The WebSocket an upgrade made.
    fn successor(&mut self) -> Option<Box<dyn Protocol>> {
        match &mut self.state {
            State::Upgraded(ws) => ws.take().map(|ws| ws as Box<dyn Protocol>),
            _ => None,
        }
    }
}
