//! WebSocket (RFC 6455) as a [`Transport`]: what a connection on an `--http-bind` listener
//! becomes once its upgrade is done (`transport/web.rs` reads the request and answers it).
//! To the loop and the chat it is a connection like any other: lines in, lines out.
//!
//! Where it sits in the data path:
//!
//! ```text
//!  read side:  socket ──read──► frame::Parser (unmask, check) ──text──► LineFramer
//!                                    └──ping, close──► control frames to send
//!  write side: WriteQueue (Rc lines) ──a 2-byte header per line + the line itself,
//!              one writev──► socket
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
//! **Output stays in the shared queue.** A line is queued for a WebSocket client exactly as
//! for a plain one: a pointer to the one `Rc<[u8]>` every recipient shares. Only when the
//! socket can take it is it framed: each line's header (2 bytes for a line under 126 bytes,
//! 4 under 64 KiB) is made on the stack and goes out in the same `writev` as the line's own
//! bytes, read from the shared buffer without a copy (the newline is not sent: the message
//! ends the line). So `--max-output` judges a WebSocket client by the same queue as a plain
//! one, and no line is copied or allocated per recipient, as TLS encrypts from the same
//! queue only as its socket drains. A partial write can end inside a header: the frame in
//! flight is remembered by how much of it went out.
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

use std::io::{self, IoSlice, Read, Write};

use log::trace;
use mio::net::TcpStream;

use self::frame::{CloseCode, MAX_HEADER, Parser, Piece, Violation};
use super::{Broken, Farewell, Handshake, Rejection, Transport};
use crate::framing::LineFramer;
use crate::limits::MAX_IOVECS;
use crate::nonblocking::{Flushed, ReadOutcome, write_until_blocked};
use crate::write_queue::WriteQueue;

/// Messages framed per `writev`: two slices each (header and line).
const MESSAGES_PER_WRITE: usize = MAX_IOVECS / 2;

/// Frames of the server's own, waiting to go out between two messages: the upgrade's
/// `101 Switching Protocols` first, then a pong or the close frame.
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
        self.bytes.clear();
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
    /// Bytes of the first queued line's frame (header and line) already written: a partial
    /// write stopped inside it. Zero between messages.
    sent_of_first: usize,
    /// The client's close frame was read, with its code: the read after the one that
    /// brought it reports the end.
    peer_closed: Option<Option<u16>>,
    /// The server's close frame is queued: nothing is sent after it.
    closing: bool,
}

impl WebSocket {
    /// A WebSocket whose first bytes out are `reply` (the upgrade's `101` response).
    pub fn new(reply: &[u8]) -> WebSocket {
        let mut control = Control::default();
        control.push(reply);
        WebSocket {
            parser: Parser::default(),
            control,
            sent_of_first: 0,
            peer_closed: None,
            closing: false,
        }
    }

    /// Parses what the client sent: text into `framer` (none while the connection is
    /// leaving), a newline at the end of each message, pings answered, a close noted. A
    /// violation fails the connection: its close frame is written at once, as far as the
    /// socket takes it, and the connection is rejected.
    pub fn take(
        &mut self,
        bytes: &mut [u8],
        mut framer: Option<&mut LineFramer>,
        socket: &mut dyn Write,
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
        parsed.map_err(|violation| self.fail(&violation, socket))
    }

    /// The client broke the protocol: its close frame goes out now if it can (not inside a
    /// message already partly written), and the connection is rejected.
    fn fail(&mut self, violation: &Violation, socket: &mut dyn Write) -> Broken {
        if self.sent_of_first == 0 && !self.closing {
            self.closing = true;
            self.control
                .push(&frame::close(violation.code.code(), violation.why));
            let _ = self.control.write_to(socket);
        }
        Broken::Rejected(Rejection {
            by: "WebSocket",
            kind: "websocket_error",
            why: violation.to_string(),
        })
    }

    /// Frames up to [`MESSAGES_PER_WRITE`] queued lines into one `writev`. False if the
    /// socket took nothing (`WouldBlock`).
    fn write_lines(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<bool> {
        let mut lines: [&[u8]; MESSAGES_PER_WRITE] = [&[]; MESSAGES_PER_WRITE];
        let mut count = 0;
        for entry in queue.slices() {
            for line in entry.split_inclusive(|&b| b == b'\n') {
                if count == MESSAGES_PER_WRITE {
                    break;
                }
                lines[count] = line;
                count += 1;
            }
        }
        let mut headers = [[0u8; MAX_HEADER]; MESSAGES_PER_WRITE];
        let mut header_lens = [0usize; MESSAGES_PER_WRITE];
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        for i in 0..count {
            header_lens[i] = frame::text_header(text_of(lines[i]).len(), &mut headers[i]);
        }
        let mut skip = self.sent_of_first;
        for i in 0..count {
            let (head, text) = (&headers[i][..header_lens[i]], text_of(lines[i]));
            let (head, text) = skip_bytes(head, text, std::mem::take(&mut skip));
            slices[2 * i] = IoSlice::new(head);
            slices[2 * i + 1] = IoSlice::new(text);
        }
        let written = match socket.write_vectored(&slices[..2 * count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(e),
        };
        // Whole frames written take their lines off the queue; a frame cut short stays, with
        // how much of it went out.
        let (mut left, mut done) = (written + self.sent_of_first, 0);
        for i in 0..count {
            let frame_len = header_lens[i] + text_of(lines[i]).len();
            if left < frame_len {
                break;
            }
            left -= frame_len;
            done += lines[i].len();
        }
        self.sent_of_first = left;
        queue.consume(done);
        Ok(true)
    }
}

/// A queued line's text: without its newline (the end of the message is the end of the line).
fn text_of(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// `head` then `text` without their first `skip` bytes together.
fn skip_bytes<'a>(head: &'a [u8], text: &'a [u8], skip: usize) -> (&'a [u8], &'a [u8]) {
    if skip < head.len() {
        (&head[skip..], text)
    } else {
        (&[], &text[skip - head.len()..])
    }
}

impl Transport for WebSocket {
    fn name(&self) -> &'static str {
        "WebSocket"
    }

    fn handshake(&self) -> Handshake {
        Handshake::Done
    }

    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        framer: Option<&mut LineFramer>,
    ) -> Result<ReadOutcome, Broken> {
        if self.peer_closed.is_some() {
            return Ok(ReadOutcome::Eof);
        }
        let outcome = ReadOutcome::from_read(|| socket.read(scratch)).map_err(Broken::Io)?;
        if let ReadOutcome::Data(n) = outcome {
            self.take(&mut scratch[..n], framer, socket)?;
        }
        Ok(outcome)
    }

    /// One `read(2)` into the scratch buffer, as for plain TCP, unless that read brought the
    /// client's close frame: then the end is known, and the next read must report it.
    fn short_read_empties(&self) -> bool {
        self.peer_closed.is_none()
    }

    fn wants_write(&self) -> bool {
        self.control.unsent() > 0
    }

    fn write(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        loop {
            // Between two messages, the server's own frames go first.
            if self.sent_of_first == 0 {
                if !self.control.write_to(socket)? {
                    return Ok(Flushed::Blocked);
                }
                if self.closing {
                    return Ok(Flushed::All);
                }
            }
            if queue.is_empty() {
                return Ok(Flushed::All);
            }
            if !self.write_lines(socket, queue)? {
                return Ok(Flushed::Blocked);
            }
        }
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
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::frame::client_frame;
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
        let mut ws = WebSocket::new(b"");
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for i in 0..100 {
            let line = format!("<guest-{i}> {}\n", "y".repeat(i * 3));
            expected.push((0x81, line.strip_suffix('\n').unwrap().as_bytes().to_vec()));
            queue.push(Rc::from(line.as_bytes()));
        }
        // Two lines in one queue entry, as a server line of several does.
        queue.push(Rc::from(&b"*** a\n*** b\n"[..]));
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
    fn a_ping_is_answered_between_messages_with_its_payload() {
        let mut ws = WebSocket::new(b"");
        let mut framer = LineFramer::new(100);
        let mut wire = Wire {
            bytes: Vec::new(),
            room: usize::MAX,
        };
        let mut ping = client_frame(true, 0x9, b"first", [1, 2, 3, 4]);
        ping.extend(client_frame(true, 0x9, b"second", [1, 2, 3, 4]));
        ws.take(&mut ping, Some(&mut framer), &mut wire).unwrap();
        let mut queue = WriteQueue::default();
        queue.push(Rc::from(&b"hi\n"[..]));
        ws.write(&mut wire, &mut queue).unwrap();
        assert_eq!(
            frames(&wire.bytes),
            [(0x8A, b"second".to_vec()), (0x81, b"hi".to_vec())],
            "one pong, for the latest ping, before the line"
        );
    }

    #[test]
    fn a_violation_sends_its_close_frame_at_once() {
        let mut ws = WebSocket::new(b"");
        let mut wire = Wire {
            bytes: Vec::new(),
            room: usize::MAX,
        };
        let mut binary = client_frame(true, 0x2, b"\x00", [9, 9, 9, 9]);
        let err = ws.take(&mut binary, None, &mut wire).unwrap_err();
        assert!(matches!(err, Broken::Rejected(r) if r.kind == "websocket_error"));
        let sent = frames(&wire.bytes);
        assert_eq!(sent[0].0, 0x88);
        assert_eq!(sent[0].1[..2], 1003u16.to_be_bytes());
    }
}
