//! WebSocket (RFC 6455) as a [`Protocol`]: what a connection on an `--http-bind` or
//! `--https-bind` listener becomes once its upgrade is done (`transport/web.rs` reads the
//! request and answers it). To the loop and the chat it is a connection like any other:
//! lines in, lines out; to its stream (plain TCP or TLS) it is bytes.
//!
//! Where it sits in the data path:
//!
//! ```text
//!  read side:  stream ──bytes──► frame::Parser (unmask, check) ──text──► LineFramer
//!                                    └──ping, close──► control frames to send
//!  write side: the room's Rc line ──Frames: framed once──► Rc frame in every WebSocket
//!              recipient's WriteQueue ──one writev──► stream
//! ```
//!
//! **One text message is one line, each way.** The text of a client's message goes to the
//! line framer as it arrives, and a newline is added at the end of the message, so a message
//! is a line, and one with newlines in it is several, as on TCP. `--max-line` is then the
//! framer's, as for every transport: a message longer than that (in one frame or in many)
//! gets `*** line too long`, its bytes are dropped as they come, and the connection stays
//! usable. (RFC 6455 would also allow closing with 1009; a chat user who pasted too much is
//! better told and kept, with their nick and room, than cut off and reconnected as a guest.)
//!
//! **Output stays zero-copy.** A line is framed once, not once per recipient: every
//! WebSocket shares one [`Frames`] (made by the server with its listeners), and the first
//! WebSocket recipient of a line makes its frame (a 2-byte
//! header for a line under 126 bytes, 4 under 64 KiB, then the text without its newline: the
//! end of the message is the end of the line) into one `Rc<[u8]>` that every other WebSocket
//! recipient's queue points to, as every plain recipient's points to the line. So the write
//! side is a plain queue's: many frames in one `writev`, partial writes resumed where they
//! stopped, and `--max-output` judges a WebSocket client by the same queue as any other.
//!
//! **Control frames** the server must send (a pong, the close frame) wait in a small buffer
//! of their own and go out between two messages, never inside one. A ping gets a pong with
//! its payload; a newer ping replaces a pong not yet sent (the RFC allows answering the last
//! one only), so a client that pings and never reads holds at most two.
//!
//! **Ending.** A client's close frame is answered with a close frame (its own code echoed)
//! once what it is owed is written, and then the TCP connection closes: to the loop it is
//! the peer closing its side. A server that ends a client (quit, idle, shutdown) sends the
//! last lines, then a close frame (1000, or 1001 on shutdown) with the reason, then closes.
//! A client that breaks the protocol gets a close frame with the code the RFC names for what
//! it did, at once, and the TCP close.

pub mod frame;

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;

use log::trace;

use self::frame::{CloseCode, Parser, Piece, Violation};
use super::{Broken, Farewell, Protocol, Rejection};
use crate::framing::LineFramer;
use crate::nonblocking::{Flushed, write_until_blocked};
use crate::write_queue::WriteQueue;

/// The last line framed, and its frame: shared by every WebSocket of the server, so a line
/// is framed once however many WebSocket clients it goes to. The room hands the same `Rc`
/// line to every member in turn, so one entry is enough. The entry holds its line too, so
/// the address it is known by cannot be freed and reused by another line while it is kept.
#[derive(Debug, Clone, Default)]
pub struct Frames(Rc<RefCell<Option<Framed>>>);

/// A line, and its frames.
#[derive(Debug)]
struct Framed {
    line: Rc<[u8]>,
    frames: Rc<[u8]>,
}

impl Frames {
    /// `line` as text frames, one per line in it, without the newlines.
    pub fn frame(&self, line: &Rc<[u8]>) -> Rc<[u8]> {
        let mut last = self.0.borrow_mut();
        match &*last {
            Some(framed) if Rc::ptr_eq(&framed.line, line) => Rc::clone(&framed.frames),
            _ => {
                let frames: Rc<[u8]> = frame::text_frames(line).into();
                *last = Some(Framed {
                    line: Rc::clone(line),
                    frames: Rc::clone(&frames),
                });
                frames
            }
        }
    }
}

/// Frames of the server's own, waiting to go out between two messages: the upgrade's
/// `101 Switching Protocols` first, then a pong or the close frame. Freed once written: an
/// idle WebSocket holds no buffer.
#[derive(Debug, Default)]
struct Control {
    bytes: Vec<u8>,
    written: usize,
    /// Where an unsent pong starts in `bytes`, so a newer ping can replace it.
    pong_at: Option<usize>,
}

impl Control {
    fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
    }

    fn pong(&mut self, payload: &[u8]) {
        if let Some(at) = self.pong_at.filter(|&at| at >= self.written) {
            self.bytes.truncate(at);
        }
        self.pong_at = Some(self.bytes.len());
        self.bytes.extend_from_slice(&frame::pong(payload));
    }

    fn unsent(&self) -> usize {
        self.bytes.len() - self.written
    }

    /// Writes what is waiting; true once all of it is out.
    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<bool> {
        if self.unsent() == 0 {
            return Ok(true);
        }
        self.written += write_until_blocked(&mut &mut *out, &self.bytes[self.written..])?;
        if self.unsent() > 0 {
            return Ok(false);
        }
        self.bytes = Vec::new();
        self.written = 0;
        self.pong_at = None;
        Ok(true)
    }
}

/// One WebSocket connection, after its upgrade. See the module documentation.
#[derive(Debug)]
pub struct WebSocket {
    parser: Parser,
    control: Control,
    /// The last write stopped inside a queued frame: a frame of the server's own must wait
    /// for the rest of it.
    mid_frame: bool,
    /// The client's close frame was read, with its code: the read after the one that
    /// brought it reports the end.
    peer_closed: Option<Option<u16>>,
    /// The server's close frame is queued: nothing is sent after it.
    closing: bool,
    /// Where its lines are framed (see [`Frames`]).
    frames: Frames,
}

impl WebSocket {
    /// A WebSocket whose first bytes out are `reply` (the upgrade's `101` response), its
    /// lines framed in `frames`.
    pub fn new(reply: &[u8], frames: Frames) -> WebSocket {
        let mut control = Control::default();
        control.push(reply);
        WebSocket {
            parser: Parser::default(),
            control,
            mid_frame: false,
            peer_closed: None,
            closing: false,
            frames,
        }
    }

    /// Parses what the client sent: text into `framer` (none while the connection is
    /// leaving), a newline at the end of each message, pings answered, a close noted. A
    /// violation fails the connection: its close frame is queued, written at once as far
    /// as the socket takes it (see `Transport::read`), and the connection is rejected.
    fn parse(
        &mut self,
        bytes: &mut [u8],
        mut framer: Option<&mut LineFramer>,
    ) -> Result<(), Broken> {
        let WebSocket {
            parser,
            control,
            peer_closed,
            ..
        } = self;
        let parsed = parser.feed(bytes, &mut |piece| match piece {
            Piece::Text(text) => {
                if let Some(framer) = framer.as_deref_mut() {
                    framer.extend(text);
                }
            }
            Piece::End => {
                if let Some(framer) = framer.as_deref_mut() {
                    framer.extend(b"\n");
                }
            }
            Piece::Ping(payload) => control.pong(payload),
            Piece::Close(code) => *peer_closed = Some(code),
        });
        parsed.map_err(|violation| self.fail(&violation))
    }

    /// The client broke the protocol: its close frame is queued to go out at once if it can
    /// (not inside a message already partly written), and the connection is rejected.
    fn fail(&mut self, violation: &Violation) -> Broken {
        if !self.mid_frame && !self.closing {
            self.closing = true;
            self.control
                .push(&frame::close(violation.code.code(), violation.why));
        }
        Broken::Rejected(Rejection {
            by: "WebSocket",
            kind: "websocket_error",
            why: violation.to_string(),
        })
    }
}

impl Protocol for WebSocket {
    fn name_over(&self, stream: &'static str) -> &'static str {
        match stream {
            "TLS" => "WebSocket over TLS",
            _ => "WebSocket",
        }
    }

    fn take(&mut self, bytes: &mut [u8], framer: Option<&mut LineFramer>) -> Result<(), Broken> {
        self.parse(bytes, framer)
    }

    /// The client's close frame came: the end is known, and the next read reports it.
    fn ended(&self) -> bool {
        self.peer_closed.is_some()
    }

    /// The line framed once for every WebSocket recipient (see [`Frames`]).
    #[inline]
    fn framed(&mut self, line: &Rc<[u8]>) -> Rc<[u8]> {
        self.frames.frame(line)
    }

    fn wants_write(&self) -> bool {
        self.control.unsent() > 0
    }

    /// The queue holds whole frames already (see [`Frames`]): it is written as a plain one
    /// is, one `writev` for many, and the server's own frames go between two of them.
    fn write(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        let flushed = loop {
            if !queue.mid_entry() {
                if !self.control.write_to(socket)? {
                    break Flushed::Blocked;
                }
                if self.closing {
                    break Flushed::All;
                }
            }
            match queue.write_to(socket)? {
                // A ping answered while the queue was being written: its pong goes now.
                Flushed::All if self.control.unsent() > 0 => {}
                flushed => break flushed,
            }
        };
        self.mid_frame = queue.mid_entry();
        Ok(flushed)
    }

    /// The close frame: the client's own code echoed if it closed first, else 1000 (1001 on
    /// a shutdown), with the reason in words.
    fn close(&mut self, farewell: Farewell<'_>) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        let code = match self.peer_closed {
            Some(Some(code)) => code,
            Some(None) => CloseCode::Normal.code(),
            None if farewell.going_away => CloseCode::GoingAway.code(),
            None => CloseCode::Normal.code(),
        };
        trace!("WebSocket close frame {code}: {}", farewell.why);
        self.control.push(&frame::close(code, farewell.why));
        true
    }

    fn unsent(&self) -> usize {
        self.control.unsent()
    }

    /// The request line is gone with the HTTP transport that read it: the route says it.
    fn describe(&self) -> String {
        "GET /ws, upgraded".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use std::io::IoSlice;

    use super::frame::{client_frame, text_frames};
    use super::*;

    /// A socket that takes at most `room` bytes, then says `WouldBlock`.
    struct Wire {
        bytes: Vec<u8>,
        room: usize,
    }

    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut taken = 0;
            for b in bufs {
                let n = b.len().min(self.room - taken);
                self.bytes.extend_from_slice(&b[..n]);
                taken += n;
            }
            self.room -= taken;
            Ok(taken)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The messages a client would read from `bytes`: (opcode, payload) of each frame.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (len, start) = match bytes[1] {
                126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                127 => panic!("no line here is that long"),
                n => (usize::from(n), 2),
            };
            out.push((bytes[0], bytes[start..start + len].to_vec()));
            bytes = &bytes[start + len..];
        }
        out
    }

    #[test]
    fn queued_lines_go_out_as_one_text_frame_each_across_partial_writes() {
        let mut ws = WebSocket::new(b"", Frames::default());
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for i in 0..100 {
            let line = format!("<guest-{i}> {}\n", "y".repeat(i * 3));
            expected.push((0x81, line.strip_suffix('\n').unwrap().as_bytes().to_vec()));
            queue.push(ws.framed(&Rc::from(line.as_bytes())));
        }
        // Two lines in one queue entry, as a server line of several does.
        queue.push(Rc::from(text_frames(b"*** a\n*** b\n")));
        expected.push((0x81, b"*** a".to_vec()));
        expected.push((0x81, b"*** b".to_vec()));
        let mut wire = Wire {
            bytes: Vec::new(),
            room: 0,
        };
        loop {
            wire.room = 7;
            if ws.write(&mut wire, &mut queue).unwrap() == Flushed::All {
                break;
            }
        }
        assert!(queue.is_empty());
        let got = frames(&wire.bytes);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "frame {i}");
        }
        assert_eq!(got.len(), expected.len());
    }

    #[test]
    fn a_line_is_framed_once_for_all_its_websocket_recipients() {
        let frames = Frames::default();
        let (mut alice, mut bob) = (
            WebSocket::new(b"", frames.clone()),
            WebSocket::new(b"", frames),
        );
        let (mut to_alice, mut to_bob) = (WriteQueue::default(), WriteQueue::default());
        let line: Rc<[u8]> = Rc::from(&b"<carol> hi\n"[..]);
        to_alice.push(alice.framed(&line));
        to_bob.push(bob.framed(&line));
        // One frame, held by the cache and both queues.
        let shared = alice
            .frames
            .0
            .borrow()
            .as_ref()
            .map(|f| Rc::strong_count(&f.frames));
        assert_eq!(shared, Some(3), "framed twice");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        to_alice.write_to(&mut a).unwrap();
        to_bob.write_to(&mut b).unwrap();
        assert_eq!(a, b"\x81\x0a<carol> hi");
        assert_eq!(a, b);
        let other: Rc<[u8]> = Rc::from(&b"<bob> yo\n"[..]);
        assert_eq!(&alice.frames.frame(&other)[..], b"\x81\x08<bob> yo");
    }

    #[test]
    fn a_ping_is_answered_between_messages_with_its_payload() {
        let mut ws = WebSocket::new(b"", Frames::default());
        let mut framer = LineFramer::new(100);
        let mut wire = Wire {
            bytes: Vec::new(),
            room: usize::MAX,
        };
        let mut ping = client_frame(true, 0x9, b"first", [1, 2, 3, 4]);
        ping.extend(client_frame(true, 0x9, b"second", [1, 2, 3, 4]));
        ws.take(&mut ping, Some(&mut framer)).unwrap();
        let mut queue = WriteQueue::default();
        queue.push(Rc::from(text_frames(b"hi\n")));
        ws.write(&mut wire, &mut queue).unwrap();
        assert_eq!(
            frames(&wire.bytes),
            [(0x8A, b"second".to_vec()), (0x81, b"hi".to_vec())],
            "one pong, for the latest ping, before the line"
        );
    }

    #[test]
    fn a_violation_sends_its_close_frame_at_once() {
        let mut ws = WebSocket::new(b"", Frames::default());
        let mut wire = Wire {
            bytes: Vec::new(),
            room: usize::MAX,
        };
        let mut binary = client_frame(true, 0x2, b"\x00", [9, 9, 9, 9]);
        let err = ws.take(&mut binary, None).unwrap_err();
        ws.write(&mut wire, &mut WriteQueue::default()).unwrap();
        assert!(matches!(err, Broken::Rejected(r) if r.kind == "websocket_error"));
        let sent = frames(&wire.bytes);
        assert_eq!(sent[0].0, 0x88);
        assert_eq!(sent[0].1[..2], 1003u16.to_be_bytes());
    }
}
