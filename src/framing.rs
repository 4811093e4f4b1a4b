//! Line framing and sanitising: turns the bytes a client sends into the text lines the chat
//! relays.
//!
//! TCP is a byte stream, not a message stream: one `read` may return half a line, or ten lines
//! and a bit of the eleventh. A [`LineFramer`] belongs to each connection. The loop appends
//! whatever it reads ([`LineFramer::extend`]) and then takes whole lines out one at a time
//! ([`LineFramer::next_frame`]). Taking them one at a time lets the loop stop between two lines
//! (flood control) without losing the rest: they stay here until the client may speak again.
//!
//! The framer also enforces `--max-line`. A line that grows past the limit is dropped as soon
//! as the limit is passed, not when its newline finally arrives, and everything up to that
//! newline is thrown away as it comes in. So however long a line a client sends, the framer
//! holds at most `max_line` bytes plus one read.
//!
//! Every line goes through [`sanitize`] before the rest of the server sees it, on every
//! transport (plain, TLS and WebSocket text all reach the chat through a framer) and from the
//! backplane, so what is relayed is always valid UTF-8 without control characters: nobody can
//! move other users' cursors, change their colours or retitle their terminals with escape
//! sequences.
//!
//! **The rule for invisible characters** ([`is_forbidden`]) removes those that change how
//! the *rest* of a line is displayed, since then a line reads differently from what was sent
//! (`rtl` U+202E `evil` shows as `rtllive`, the "Trojan Source" trick):
//! - the bidirectional embeddings, overrides and isolates, U+202A-U+202E and U+2066-U+2069;
//! - the bidirectional marks U+200E, U+200F and U+061C: invisible, and they move the
//!   punctuation and digits around them;
//! - the deprecated format controls U+206A-U+206F (symmetric swapping, digit shapes), and the
//!   interlinear annotation marks U+FFF9-U+FFFB, which can hide the text between them.
//!
//! Kept: the zero-width joiner and non-joiner, U+200D and U+200C, which emoji sequences
//! (👩‍💻) and Persian and Indic spelling need, and the zero-width space U+200B, the word break
//! of Thai and Khmer. They change how neighbouring letters join or wrap, never their order, and
//! hide nothing visible; two look-alike strings matter for names, and nicks and room names
//! are ASCII letters, digits, `_` and `-` (`protocol.rs`), so none of these can be in one.
//!
//! Bytes read from a plain or TLS socket come in through [`LineFramer::extend_telnet`], which
//! first takes out Telnet's commands (`telnet.rs`) and keeps their answers for the
//! connection to queue ([`LineFramer::take_replies`]). A WebSocket's text, already framed,
//! comes in through [`LineFramer::extend`].

use crate::protocol;
use crate::telnet::{Piece, Telnet};

/// What the framer hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, decoded and sanitised, without its line ending.
    Line(String),
    /// A line longer than `max_line` was dropped. Reported once per overlong line.
    TooLong,
}

/// Splits one connection's byte stream into lines. See the module documentation.
///
/// A framer with no unfinished line holds no memory at all: its bytes and where it is in
/// them exist only while it has some (most connections, most of the time, have none; the
/// loop reads into one scratch buffer that every connection shares). A client that speaks
/// pays an allocation per read for it.
#[derive(Debug)]
pub struct LineFramer {
    /// `None` while every byte received has been handed out (unless `keep` kept its room).
    pending: Option<Box<Pending>>,
    /// `--max-line`, as 32 bits so that it and `keep` fit beside the pointer in 16 bytes.
    max_line: u32,
    /// Keep the room of `pending` when every byte is handed out: the client is busy, and its
    /// next read would only allocate it again ([`LineFramer::keep_room`]).
    keep: bool,
    /// Where the client's Telnet commands stand (two bytes: a command can be split across
    /// reads).
    telnet: Telnet,
    /// No byte has come in yet: the first read can be told apart ([`LineFramer::is_fresh`]).
    fresh: bool,
}

/// The most room a busy client's framer keeps between reads: a few ordinary reads' worth.
/// A burst that grew the buffer beyond it gives the room back once it is handed out.
const KEPT_ROOM: usize = 4 * 1024;

/// The bytes of a framer that has some.
#[derive(Debug, Default)]
struct Pending {
    /// Bytes received but not yet handed out: `buf[start..]`.
    buf: Vec<u8>,
    /// First byte of the first line not yet handed out. Consumed lines are not removed one by
    /// one (that would move the rest of the buffer once per line); the buffer is compacted
    /// once, before the next read is appended.
    start: usize,
    /// `buf[start..scanned]` has been searched and holds no newline, so a line that arrives in
    /// many small reads is scanned once, not once per read.
    scanned: usize,
    /// Inside an overlong line that was already reported: drop bytes up to the next newline.
    discarding: bool,
    /// Telnet's answers to what this read brought, until the connection takes them.
    replies: Vec<u8>,
}

impl LineFramer {
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            pending: None,
            max_line: u32::try_from(max_line).unwrap_or(u32::MAX),
            keep: false,
            telnet: Telnet::default(),
            fresh: true,
        }
    }

    /// Appends bytes of the line protocol, as read from a plain socket or out of TLS:
    /// Telnet's commands are taken out on the way (`telnet.rs`). An interrupt (Ctrl-C)
    /// throws away the line typed so far; answers wait for [`LineFramer::take_replies`].
    pub fn extend_telnet(&mut self, data: &[u8]) {
        self.fresh = false;
        let mut input = data;
        while let Some(piece) = self.telnet.next(&mut input) {
            match piece {
                Piece::Text(text) => self.extend(text),
                Piece::Interrupt => {
                    if let Some(pending) = self.pending.as_deref_mut() {
                        pending.discard_partial();
                    }
                }
                Piece::Reply(bytes) => self.replies().extend_from_slice(&bytes),
                Piece::AreYouThere => {
                    self.replies()
                        .extend_from_slice(protocol::STILL_HERE.as_bytes());
                }
            }
        }
    }

    fn replies(&mut self) -> &mut Vec<u8> {
        &mut self.pending.get_or_insert_with(Box::default).replies
    }

    /// What Telnet's commands in the bytes given since the last call are answered with, to be
    /// queued in order with the connection's other output. `None` (nearly always): nothing.
    pub fn take_replies(&mut self) -> Option<Vec<u8>> {
        let pending = self.pending.as_deref_mut()?;
        if pending.replies.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut pending.replies))
    }

    /// Whether no byte has come in yet.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Appends bytes just read from the socket. Take every available frame out before the next
    /// `extend`: that is what keeps the buffer bounded.
    pub fn extend(&mut self, data: &[u8]) {
        self.pending.get_or_insert_with(Box::default).extend(data);
    }

    /// Whether to keep the buffer's room between reads once everything is handed out (a
    /// busy client), or to give it back (any other: an idle client holds no buffer). Given
    /// back at once if it is not to be kept and holds nothing.
    pub fn keep_room(&mut self, keep: bool) {
        self.keep = keep;
        if !keep && self.pending.as_deref().is_some_and(Pending::is_spent) {
            self.pending = None;
        }
    }

    /// The next complete line, or `None` when more bytes are needed ("not enough data yet" is
    /// the normal state of a stream, not an error).
    pub fn next_frame(&mut self) -> Option<Frame> {
        let pending = self.pending.as_deref_mut()?;
        let frame = pending.next_frame(self.max_line as usize);
        if pending.is_spent() && !self.keep {
            self.pending = None;
        }
        frame
    }

    /// The peer closed its side: the last line may have no newline (`printf 'hi' | nc`).
    /// Hands it out if there is one.
    pub fn finish(&mut self) -> Option<Frame> {
        let pending = self.pending.as_deref_mut()?;
        let frame = pending.finish(self.max_line as usize);
        if pending.is_spent() {
            self.pending = None;
        }
        frame
    }

    /// Bytes currently held (for tests and for reasoning about memory).
    pub fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.buf.len() - p.start)
    }

    /// Heap bytes reserved by the buffer.
    pub fn capacity(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.buf.capacity())
    }
}

impl Pending {
    fn extend(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn next_frame(&mut self, max_line: usize) -> Option<Frame> {
        loop {
            // memchr compares 16 or 32 bytes per instruction; a byte loop was a quarter of
            // the framing benchmark.
            let newline = memchr::memchr(b'\n', &self.buf[self.scanned..]);
            let Some(offset) = newline else {
                self.scanned = self.buf.len();
                let pending = self.buf.len() - self.start;
                if self.discarding {
                    self.clear();
                } else if pending > max_line + 1 {
                    // `+ 1`: the last byte may be the `\r` of a `\r\n` still on its way.
                    self.clear();
                    self.discarding = true;
                    return Some(Frame::TooLong);
                } else if pending == 0 {
                    self.empty();
                }
                return None;
            };
            let end = self.scanned + offset;
            let line_start = self.start;
            self.start = end + 1;
            self.scanned = self.start;
            if self.discarding {
                // The tail of a line already reported as too long.
                self.discarding = false;
                continue;
            }
            let line = strip_cr(&self.buf[line_start..end]);
            if line.len() > max_line {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(sanitize(line)));
        }
    }

    /// Throws away the line being typed (everything after the last newline), and the rest of
    /// an overlong one: the client's next byte starts a new line.
    fn discard_partial(&mut self) {
        let typed = &self.buf[self.start..];
        let keep = memchr::memrchr(b'\n', typed).map_or(self.start, |i| self.start + i + 1);
        self.buf.truncate(keep);
        self.scanned = self.scanned.min(keep);
        self.discarding = false;
    }

    fn finish(&mut self, max_line: usize) -> Option<Frame> {
        if let Some(frame) = self.next_frame(max_line) {
            return Some(frame);
        }
        if self.discarding || self.start == self.buf.len() {
            self.clear();
            return None;
        }
        let line = strip_cr(&self.buf[self.start..]);
        let frame = if line.len() > max_line {
            Frame::TooLong
        } else {
            Frame::Line(sanitize(line))
        };
        self.clear();
        Some(frame)
    }

    /// Nothing left to hand out or to drop: the framer can forget it.
    fn is_spent(&self) -> bool {
        self.buf.is_empty() && !self.discarding && self.replies.is_empty()
    }

    /// Everything was handed out: empties the buffer, keeping its room for a busy client's
    /// next read unless a burst made it large (a framer that is not keeping its room is
    /// dropped whole: `LineFramer::keep_room`).
    fn empty(&mut self) {
        if self.buf.capacity() > KEPT_ROOM {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.start = 0;
        self.scanned = 0;
    }

    /// Empties the buffer and frees it (a line being dropped keeps none either).
    fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
    }
}

/// Telnet and Windows clients end lines with `\r\n`; the `\r` is not part of the text.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Decodes a line (invalid UTF-8 becomes U+FFFD) and removes every control character but tab:
/// C0 (which includes ESC, the start of every terminal escape sequence), DEL, and C1 (which
/// includes CSI, U+009B, a one-character ESC-[ on some terminals); and the invisible
/// characters that reorder or hide text (the rule is in the module documentation).
pub fn sanitize(line: &[u8]) -> String {
    // Fast path, taken by nearly every line: valid UTF-8 with nothing to remove. Checking
    // bytes is several times faster than decoding to chars and filtering (see the figures in
    // docs/performance.md).
    if let Ok(text) = std::str::from_utf8(line)
        && !has_forbidden(text)
    {
        return text.to_owned();
    }
    String::from_utf8_lossy(line)
        .chars()
        .filter(|&c| !is_forbidden(c))
        .collect()
}

/// Whether `text` holds a character [`is_forbidden`] rejects, checked on bytes. In UTF-8 the
/// C0 controls and DEL are the single bytes 0x00-0x1F and 0x7F; the others start with a byte
/// from 0xC2 on: the C1 controls (U+0080-U+009F) are 0xC2 0x80-0x9F, U+061C is 0xD8 0x9C, the
/// U+2xxx ones 0xE2 then 0x80 or 0x81 and one more, and U+FFF9-U+FFFB 0xEF 0xBF 0xB9-0xBB.
fn has_forbidden(text: &str) -> bool {
    let bytes = text.as_bytes();
    // A branch-free pass the compiler vectorises, which passes ASCII text (nearly every line)
    // at once. It can only say "maybe" (tab, any non-ASCII); the exact check runs only then:
    // a vectorised pass for the controls, then memchr's to the few lead bytes that matter.
    let maybe = bytes.iter().fold(false, |seen, &b| {
        seen | (b < 0x20) | (b == 0x7f) | (b >= 0xc2)
    });
    if !maybe {
        return false;
    }
    let control = bytes.iter().fold(false, |seen, &b| {
        seen | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut leads =
        memchr::memchr3_iter(0xc2, 0xd8, 0xe2, bytes).chain(memchr::memchr_iter(0xef, bytes));
    control
        || leads.any(|i| match at(i) {
            0xc2 => matches!(at(i + 1), 0x80..=0x9f),
            0xd8 => at(i + 1) == 0x9c,
            0xe2 => matches!(
                (at(i + 1), at(i + 2)),
                (0x80, 0x8e | 0x8f | 0xaa..=0xae) | (0x81, 0xa6..=0xaf)
            ),
            _ => at(i + 1) == 0xbf && matches!(at(i + 2), 0xb9..=0xbb),
        })
}

/// Characters never relayed: see [`sanitize`] and the module documentation. (The controls,
/// Unicode's `Cc`, are U+0000-U+001F and U+007F-U+009F; the rest are all from U+061C on.)
pub fn is_forbidden(c: char) -> bool {
    match u32::from(c) {
        0x00..=0x08 | 0x0a..=0x1f | 0x7f..=0x9f => true,
        ..0x61c => false,
        _ => matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{206f}' | '\u{fff9}'..='\u{fffb}'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_check_agrees_with_the_char_rule_for_every_character() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(has_forbidden(&text), is_forbidden(c), "{:?}", c);
        }
    }
}
