//! WebSocket frames (RFC 6455, section 5): the parser for what a client sends, and the
//! headers of what the server sends. No I/O: bytes in, [`Piece`]s out.
//!
//! A frame is a header of 2 to 14 bytes (FIN bit, opcode, mask bit, payload length in 7, 16
//! or 64 bits, the 4-byte masking key) and then its payload. TCP delivers a byte stream, so a
//! read may hold half a header, or the end of one frame and three more: the [`Parser`] is a
//! push parser, fed whatever each read brought, that keeps only what it must between reads
//! (a partial header, a control frame's payload of at most 125 bytes, up to 3 bytes of a
//! UTF-8 character cut in two). Text payload is unmasked in place and handed on at once, so
//! the parser never holds a message: the line framer behind it does, bounded by `--max-line`
//! as for any other transport.
//!
//! It enforces what the RFC says a server must refuse, each with the close code the
//! connection is then failed with ([`CloseCode`]): a client frame without a mask, reserved
//! bits or opcodes, a fragmented or oversized control frame, a continuation with no message
//! to continue (or a new message inside one), text that is not UTF-8, a malformed close
//! frame; and, because the chat is text, any binary message.

use std::fmt;

/// The longest payload a control frame (close, ping, pong) may have.
pub const MAX_CONTROL: usize = 125;

/// Longest header the server writes: 2 bytes, plus 8 for a 64-bit length (no mask: only
/// clients mask).
pub const MAX_HEADER: usize = 10;

/// Close status codes the server sends (RFC 6455, section 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the purpose of the connection is fulfilled (a `/quit`, an idle timeout).
    Normal,
    /// 1001: the server is going away (shutting down).
    GoingAway,
    /// 1002: the client broke the protocol.
    ProtocolError,
    /// 1003: data of a type the server does not accept (binary, in a text chat).
    UnsupportedData,
    /// 1007: a text message that is not UTF-8.
    InvalidPayload,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
        }
    }
}

/// Codes a client may send in its close frame: those the RFC defines for use on the wire,
/// the later registered ones (1012-1014), and the ranges for libraries and applications.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a client's bytes fail the connection: the close code it gets, and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: CloseCode,
    pub why: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.why, self.code.code())
    }
}

fn protocol_error(why: &'static str) -> Violation {
    Violation {
        code: CloseCode::ProtocolError,
        why,
    }
}

const INVALID_UTF8: Violation = Violation {
    code: CloseCode::InvalidPayload,
    why: "text that is not UTF-8",
};

/// What the parser found, in the order it came.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text of the current message, unmasked and checked as UTF-8 so far (a character may be
    /// cut at the end; the next piece completes it). A message may come in many pieces.
    Text(&'a [u8]),
    /// The current text message is complete.
    End,
    /// A ping, with the payload its pong must carry.
    Ping(&'a [u8]),
    /// A close frame, with its status code if it had one. The parser reads nothing after it.
    Close(Option<u16>),
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A frame's header, decoded.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    opcode: u8,
    len: u64,
    mask: [u8; 4],
}

/// Where the parser is in the stream.
#[derive(Debug)]
enum State {
    /// Collecting a header: `have` of the `need` bytes known so far to be needed.
    Header { bytes: [u8; 14], have: usize },
    /// Inside a frame's payload, `left` bytes still to come; `pos` counts the bytes unmasked
    /// so far (the masking key repeats every 4).
    Payload { head: Head, left: u64, pos: usize },
    /// A close frame was read: the stream is over.
    Closed,
}

/// Turns the bytes a client sends into [`Piece`]s. See the module documentation.
#[derive(Debug)]
pub struct Parser {
    state: State,
    /// A text message is under way (its first frame came without FIN).
    in_message: bool,
    /// The payload of the control frame being read (at most [`MAX_CONTROL`] bytes; no buffer
    /// at all between control frames, so an idle connection's parser holds none).
    control: Vec<u8>,
    /// The start of a UTF-8 character the last text piece ended inside, and how long the
    /// whole character is.
    partial: [u8; 4],
    partial_len: usize,
    partial_need: usize,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            state: State::Header {
                bytes: [0; 14],
                have: 0,
            },
            in_message: false,
            control: Vec::new(),
            partial: [0; 4],
            partial_len: 0,
            partial_need: 0,
        }
    }
}

impl Parser {
    /// Whether a close frame has been read.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Parses `bytes` (unmasking text in place) and hands each piece to `found`, in order.
    /// An `Err` fails the connection; nothing after the violation was handed on.
    pub fn feed(
        &mut self,
        mut bytes: &mut [u8],
        found: &mut impl FnMut(Piece<'_>),
    ) -> Result<(), Violation> {
        while !bytes.is_empty() {
            let taken = match &mut self.state {
                State::Closed => return Ok(()),
                State::Header { .. } => self.header(bytes, found)?,
                State::Payload { .. } => self.payload(bytes, found)?,
            };
            bytes = &mut bytes[taken..];
        }
        Ok(())
    }

    /// Takes header bytes; once the header is whole, checks it and starts its payload.
    /// Returns how many bytes it took.
    fn header(
        &mut self,
        bytes: &[u8],
        found: &mut impl FnMut(Piece<'_>),
    ) -> Result<usize, Violation> {
        let State::Header { bytes: head, have } = &mut self.state else {
            return Ok(0);
        };
        let need = header_len(&head[..*have]);
        let take = (need - *have).min(bytes.len());
        head[*have..*have + take].copy_from_slice(&bytes[..take]);
        *have += take;
        // The first two bytes say how long the header is: look again with them in.
        if *have < header_len(&head[..*have]) {
            return Ok(take);
        }
        let head = decode(&head[..*have])?;
        self.check(&head)?;
        self.state = State::Payload {
            head,
            left: head.len,
            pos: 0,
        };
        if head.len == 0 {
            self.frame_done(found)?;
        }
        Ok(take)
    }

    /// The rules a header must follow, given what came before it.
    fn check(&mut self, head: &Head) -> Result<(), Violation> {
        match head.opcode {
            OP_BINARY => Err(Violation {
                code: CloseCode::UnsupportedData,
                why: "a binary message (the chat is text)",
            }),
            OP_TEXT if self.in_message => {
                Err(protocol_error("a new message inside a fragmented one"))
            }
            OP_CONTINUATION if !self.in_message => Err(protocol_error(
                "a continuation frame with no message to continue",
            )),
            OP_TEXT | OP_CONTINUATION => {
                self.in_message = !head.fin;
                Ok(())
            }
            OP_CLOSE | OP_PING | OP_PONG if !head.fin => {
                Err(protocol_error("a fragmented control frame"))
            }
            OP_CLOSE | OP_PING | OP_PONG if head.len > MAX_CONTROL as u64 => {
                Err(protocol_error("a control frame over 125 bytes"))
            }
            OP_CLOSE | OP_PING | OP_PONG => Ok(()),
            _ => Err(protocol_error("a reserved opcode")),
        }
    }

    /// Takes payload bytes of the current frame. Returns how many it took.
    fn payload(
        &mut self,
        bytes: &mut [u8],
        found: &mut impl FnMut(Piece<'_>),
    ) -> Result<usize, Violation> {
        let State::Payload { head, left, pos } = &mut self.state else {
            return Ok(0);
        };
        let take = usize::try_from(*left).map_or(bytes.len(), |left| left.min(bytes.len()));
        let chunk = &mut bytes[..take];
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte ^= head.mask[(*pos + i) % 4];
        }
        *pos += take;
        *left -= take as u64;
        let (opcode, done) = (head.opcode, *left == 0);
        if opcode >= OP_CLOSE {
            self.control.extend_from_slice(chunk);
        } else {
            self.check_utf8(chunk)?;
            if !chunk.is_empty() {
                found(Piece::Text(chunk));
            }
        }
        if done {
            self.frame_done(found)?;
        }
        Ok(take)
    }

    /// The current frame's payload is all in.
    fn frame_done(&mut self, found: &mut impl FnMut(Piece<'_>)) -> Result<(), Violation> {
        let State::Payload { head, .. } = self.state else {
            return Ok(());
        };
        self.state = State::Header {
            bytes: [0; 14],
            have: 0,
        };
        let control = std::mem::take(&mut self.control);
        let payload = control.as_slice();
        match head.opcode {
            OP_PING => found(Piece::Ping(payload)),
            OP_PONG => {}
            OP_CLOSE => {
                let code = close_code(payload)?;
                self.state = State::Closed;
                found(Piece::Close(code));
            }
            // The last frame of a text message: it must not end inside a character.
            _ if head.fin => {
                if self.partial_len > 0 {
                    return Err(INVALID_UTF8);
                }
                found(Piece::End);
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks that `text` continues the message as UTF-8. A character cut at the end is
    /// kept (its first bytes) and checked when the rest comes.
    fn check_utf8(&mut self, mut text: &[u8]) -> Result<(), Violation> {
        if self.partial_len > 0 {
            let take = (self.partial_need - self.partial_len).min(text.len());
            let end = self.partial_len + take;
            self.partial[self.partial_len..end].copy_from_slice(&text[..take]);
            self.partial_len = end;
            text = &text[take..];
            match std::str::from_utf8(&self.partial[..end]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() && text.is_empty() => return Ok(()),
                Err(_) => return Err(INVALID_UTF8),
            }
        }
        match std::str::from_utf8(text) {
            Ok(_) => Ok(()),
            // Cut short, not wrong: the character may go on in the next piece.
            Err(e) if e.error_len().is_none() => {
                let tail = &text[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len();
                self.partial_need = utf8_width(tail[0]);
                Ok(())
            }
            Err(_) => Err(INVALID_UTF8),
        }
    }
}

/// How long a UTF-8 character that starts with `lead` is (for a valid lead byte).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

/// How many bytes the header that starts with `start` has (2 until its second byte says).
fn header_len(start: &[u8]) -> usize {
    let Some(&second) = start.get(1) else {
        return 2;
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let len = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + len + mask
}

/// A whole header, decoded; the rules that need no context checked.
fn decode(bytes: &[u8]) -> Result<Head, Violation> {
    let (first, second) = (bytes[0], bytes[1]);
    if first & 0x70 != 0 {
        return Err(protocol_error(
            "reserved bits set (no extension was agreed)",
        ));
    }
    if second & 0x80 == 0 {
        return Err(protocol_error("a frame from the client without a mask"));
    }
    let (len, rest) = match second & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            &bytes[4..],
        ),
        127 => {
            let mut len = [0; 8];
            len.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(len), &bytes[10..])
        }
        len => (u64::from(len), &bytes[2..]),
    };
    if len >> 63 != 0 {
        return Err(protocol_error("a payload length with its top bit set"));
    }
    let mut mask = [0; 4];
    mask.copy_from_slice(&rest[..4]);
    Ok(Head {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        len,
        mask,
    })
}

/// The status code of a close frame's payload, checked with its reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol_error("a close frame of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(protocol_error("a close code that may not be sent"));
            }
            std::str::from_utf8(reason).map_err(|_| INVALID_UTF8)?;
            Ok(Some(code))
        }
    }
}

/// The header of an unmasked, unfragmented server frame of `opcode` with `len` bytes of
/// payload, into `out`; returns its length.
fn header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode;
    match len {
        0..=125 => {
            out[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    }
}

/// The header of a text message of `len` bytes, as the server sends every line.
pub fn text_header(len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    header(OP_TEXT, len, out)
}

/// The chat's bytes (lines ending in newlines) as the server sends them: each line one text
/// frame, without its newline (the end of the message is the end of the line). Made once
/// per line and shared by every WebSocket recipient (`websocket::Frames`).
pub fn text_frames(lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() + 4);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let mut head = [0; MAX_HEADER];
        let n = header(OP_TEXT, text.len(), &mut head);
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(text);
    }
    out
}

/// A whole pong frame answering a ping with `payload` (at most 125 bytes).
pub fn pong(payload: &[u8]) -> Vec<u8> {
    control_frame(OP_PONG, payload)
}

/// A whole close frame with `code` and as much of `reason` as fits (whole characters).
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    control_frame(OP_CLOSE, &payload)
}

fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_CONTROL)];
    let mut head = [0; MAX_HEADER];
    let n = header(opcode, payload.len(), &mut head);
    let mut frame = head[..n].to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// A frame as a client sends it (masked with `mask`), for tests and the fuzz target.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut head = [0; MAX_HEADER];
    let n = header(opcode, payload.len(), &mut head);
    head[0] = (head[0] & 0x7F) | if fin { 0x80 } else { 0 };
    head[1] |= 0x80;
    let mut frame = head[..n].to_vec();
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
