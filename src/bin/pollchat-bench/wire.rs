//! What the load generator says and hears on the wire, for each protocol it can drive.
//!
//! A benchmark line carries everything a receiver needs to account for it, so no state has
//! to be shared between the sender and its receivers beyond a clock:
//!
//! ```text
//! B <sender> <seq> <sent_at_ns> <padding>
//! ```
//!
//! `sent_at_ns` is nanoseconds since the generator's start (one `Instant`, shared by all its
//! threads), so `now - sent_at_ns` at the receiver is the end-to-end latency: the sender's
//! kernel, the server, the receiver's kernel.
//!
//! - `pollchat`: the line is sent as a chat line and arrives as `<nick> B ...`. Server lines
//!   (`*** ...`: welcome, joins, "server full", a room's history around its lines) are
//!   recognised and not counted.
//! - `redis`: receivers `SUBSCRIBE` to a channel, senders `PUBLISH` to it, and the line
//!   arrives inside a RESP push `*3 $7 message $<n> <channel> $<n> <line>`. With `--rooms`
//!   there is a channel per room (`rooms.rs`).
//! - `ws`: pollchat's chat over WebSocket (`--target` is an `--http-bind` address): every
//!   connection upgrades at `/ws` first, then sends each line as one masked text frame and
//!   hears each as one unmasked text frame, `<nick> B ...` without the newline.

use std::io::Write as _;

use pollchat::backplane::resp::{self, Value};
use pollchat::protocol;

/// The server protocol the generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Pollchat,
    Redis,
    /// pollchat's chat over WebSocket, at an `--http-bind` address.
    Ws,
}

impl Proto {
    /// The name reports use, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Pollchat => "pollchat",
            Proto::Redis => "redis",
            Proto::Ws => "ws",
        }
    }

    /// Whether it is pollchat's chat (so a chatter hears every line but its own).
    pub fn is_pollchat(self) -> bool {
        matches!(self, Proto::Pollchat | Proto::Ws)
    }
}

/// The WebSocket upgrade every `ws` connection sends first.
const WS_UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// The Redis channel every connection uses.
pub const CHANNEL: &str = "pollchat-bench";

/// A benchmark line as a receiver decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u32,
    pub seq: u64,
    pub sent_at_ns: u64,
}

/// One complete thing a receiver read.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A benchmark line.
    Line(Stamp),
    /// pollchat's welcome: the connection is in the room.
    Welcome,
    /// pollchat's "server full", or its refusal to make one more room (`--max-rooms`): the
    /// connection was refused.
    Refused,
    /// pollchat's `/join` confirmation: the connection is in its room (`--rooms`).
    NowIn,
    /// Redis confirmed a subscription.
    Subscribed,
    /// pollchat's header before a room's history (`*** last N lines in #room:`): the lines
    /// until [`Incoming::HistoryEnds`] were said before this connection came in, and are
    /// not deliveries of this run.
    HistoryBegins,
    /// pollchat's footer after the history: what follows is live.
    HistoryEnds,
    /// Anything else (join notices, PUBLISH replies, other chat): read and ignored.
    Other,
}

/// The bytes a Redis receiver sends once connected: the subscription to `channel`.
pub fn redis_hello(channel: &str) -> Vec<u8> {
    resp_command(&["SUBSCRIBE", channel])
}

/// The bytes every WebSocket client sends once connected: the upgrade at `/ws`.
pub fn ws_hello() -> Vec<u8> {
    WS_UPGRADE.to_vec()
}

/// Appends a command (`/join #bench-3`) as a pollchat client sends it over `proto`: a line,
/// or over WebSocket one masked text frame.
pub fn encode_command(proto: Proto, command: &str, out: &mut Vec<u8>) {
    if proto == Proto::Ws {
        ws_client_frame(command.as_bytes(), out);
    } else {
        out.extend_from_slice(command.as_bytes());
        out.push(b'\n');
    }
}

/// The start of every Redis `PUBLISH` to `channel`, made once per room: each line sent there
/// begins with it ([`encode_published`]).
pub fn publish_head(channel: &str) -> Vec<u8> {
    let mut head = format!("*3\r\n$7\r\nPUBLISH\r\n${}\r\n", channel.len()).into_bytes();
    head.extend_from_slice(channel.as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

/// Appends one benchmark line, encoded for `proto`, to `out`. `size` is the length of the
/// line's text (the padding makes it up), so both protocols carry the same payload. Redis
/// lines go to [`CHANNEL`].
pub fn encode_line(proto: Proto, stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    encode_published(proto, PUBLISH_HEAD, stamp, size, out);
}

/// [`encode_line`], a Redis line going to the channel whose [`publish_head`] is `publish`.
/// Nothing is allocated: a sender calls this millions of times.
pub fn encode_published(
    proto: Proto,
    publish: &[u8],
    stamp: Stamp,
    size: usize,
    out: &mut Vec<u8>,
) {
    let mut head = [0u8; 64];
    let head_len = {
        let mut cursor = &mut head[..];
        // At most 2 + 10 + 20 + 20 + 3 = 55 bytes: it fits.
        let _ = write!(
            cursor,
            "B {} {} {} ",
            stamp.sender, stamp.seq, stamp.sent_at_ns
        );
        64 - cursor.len()
    };
    let text_len = head_len.max(size);
    match proto {
        Proto::Redis => {
            out.extend_from_slice(publish);
            let _ = write!(out, "${text_len}\r\n");
        }
        Proto::Ws => ws_client_header(text_len, out),
        Proto::Pollchat => {}
    }
    out.extend_from_slice(&head[..head_len]);
    out.resize(out.len() + text_len - head_len, b'x');
    match proto {
        Proto::Redis => out.extend_from_slice(b"\r\n"),
        Proto::Pollchat => out.push(b'\n'),
        // The end of the message ends the line.
        Proto::Ws => {}
    }
}

/// `payload` as one client text frame ([`ws_client_header`], then the payload as it is).
pub fn ws_client_frame(payload: &[u8], out: &mut Vec<u8>) {
    ws_client_header(payload.len(), out);
    out.extend_from_slice(payload);
}

/// A client's text frame header for `len` bytes of payload, masked with the all-zero key:
/// the payload is then sent as it is (the server unmasks it all the same, so its work is
/// what any browser's frames cost it).
fn ws_client_header(len: usize, out: &mut Vec<u8>) {
    out.push(0x81);
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
}

/// `PUBLISH pollchat-bench`, as the start of a RESP array of three bulk strings.
const PUBLISH_HEAD: &[u8] = b"*3\r\n$7\r\nPUBLISH\r\n$14\r\npollchat-bench\r\n";
/// The start of every message Redis pushes to a subscriber; the channel's length follows.
const MESSAGE_START: &[u8] = b"*3\r\n$7\r\nmessage\r\n$";

/// A RESP array of bulk strings: how every Redis command is sent.
fn resp_command(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    resp::command(&mut out, &parts);
    out
}

/// Takes the next complete message off the front of `buf`: `Some((message, bytes used))`,
/// or `None` if more bytes are needed.
pub fn decode(proto: Proto, buf: &[u8]) -> Option<(Incoming, usize)> {
    match proto {
        Proto::Pollchat => decode_pollchat(buf),
        Proto::Redis => decode_resp(buf),
        Proto::Ws => decode_ws(buf),
    }
}

fn decode_pollchat(buf: &[u8]) -> Option<(Incoming, usize)> {
    let end = memchr::memchr(b'\n', buf)?;
    let incoming = pollchat_line(&buf[..end]);
    Some((incoming, end + 1))
}

/// What a line of pollchat's (without its newline) is to the generator.
fn pollchat_line(line: &[u8]) -> Incoming {
    if line.starts_with(b"*** welcome") {
        Incoming::Welcome
    } else if line.starts_with(b"*** server full") || line.starts_with(b"*** cannot create #") {
        Incoming::Refused
    } else if line.starts_with(b"*** you are now in #") {
        Incoming::NowIn
    } else if line.starts_with(b"*** last ") && line.ends_with(b":") {
        Incoming::HistoryBegins
    } else if line == protocol::HISTORY_END.trim_end().as_bytes() {
        Incoming::HistoryEnds
    } else {
        chat_stamp(line).map_or(Incoming::Other, Incoming::Line)
    }
}

/// The stamp of a chat line `<nick> B ...` (without its newline).
pub fn chat_stamp(line: &[u8]) -> Option<Stamp> {
    // Nicks cannot contain '>', so the text starts after the first "> ".
    let close = memchr::memchr(b'>', line)?;
    (line.first() == Some(&b'<') && line.get(close + 1) == Some(&b' ')).then_some(())?;
    parse_stamp(&line[close + 2..])
}

/// The upgrade's answer (a `101` is what lets the rest come; anything else is a refusal),
/// then one server frame at a time: a text frame is a line, anything else is skipped.
fn decode_ws(buf: &[u8]) -> Option<(Incoming, usize)> {
    if buf.starts_with(b"HTTP/") {
        let end = memchr::memmem::find(buf, b"\r\n\r\n")? + 4;
        let upgraded = buf.starts_with(b"HTTP/1.1 101 ");
        return Some((
            if upgraded {
                Incoming::Other
            } else {
                Incoming::Refused
            },
            end,
        ));
    }
    let (first, payload, len) = ws_server_frame(buf)?;
    let incoming = if first == 0x81 {
        pollchat_line(payload)
    } else {
        Incoming::Other
    };
    Some((incoming, len))
}

/// One whole unmasked server frame at the front of `buf`: its first byte, its payload, and
/// its length on the wire.
pub fn ws_server_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let (len, at): (usize, usize) = match second & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        len => (usize::from(len), 2),
    };
    let end = at.checked_add(len)?;
    Some((first, buf.get(at..end)?, end))
}

/// A Redis reply or push. Benchmark lines are found by [`framed_line`] without building a
/// value; anything else is decoded by the RESP decoder the backplane uses. Subscription
/// confirmations say the receiver is ready; PUBLISH replies and anything else are read and
/// ignored. Bytes that are not RESP cannot come from a real Redis: they are skipped whole
/// rather than waited on forever.
fn decode_resp(buf: &[u8]) -> Option<(Incoming, usize)> {
    if let Some(line) = framed_line(Proto::Redis, buf) {
        return Some((Incoming::Line(line.stamp), line.len));
    }
    let (value, used) = match resp::decode(buf) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return None,
        Err(_) => return Some((Incoming::Other, buf.len())),
    };
    let incoming = match &value {
        Value::Array(Some(items)) => match items.as_slice() {
            [kind, _, payload] if kind.bytes() == Some(b"message") => payload
                .bytes()
                .and_then(parse_stamp)
                .map_or(Incoming::Other, Incoming::Line),
            [kind, ..] if kind.bytes() == Some(b"subscribe") => Incoming::Subscribed,
            _ => Incoming::Other,
        },
        _ => Incoming::Other,
    };
    Some((incoming, used))
}

/// Lines `first..first + count` of one sender, back to back, with nothing else among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub sender: u32,
    pub first: u64,
    pub count: u64,
}

/// The run of one sender's benchmark lines at the front of `buf`, and the bytes it takes;
/// `None` if `buf` does not start with a whole benchmark line. This is a fan-out receiver's
/// whole read, nearly always, so it is found without parsing every line: a sender's lines
/// all have the same length on the wire (their text is padded to `--size`) and begin with
/// the same bytes (the nick or Redis header, `B <sender> `). Each line after the first is
/// checked by those bytes and its line ending, at that stride; only the first and the last
/// are parsed, and the last one's number must be `count - 1` past the first, or the run is
/// cut to the first line and the rest is looked at again.
pub fn take_run(proto: Proto, buf: &[u8]) -> Option<(Run, usize)> {
    let first = framed_line(proto, buf)?;
    let len = first.len;
    let ending: &[u8] = match proto {
        Proto::Pollchat => b"\n",
        Proto::Redis => b"\r\n",
        // A frame's length is in its header, which `repeated` covers.
        Proto::Ws => b"",
    };
    let repeated = &buf[..first.same];
    let followers = buf[len..]
        .chunks_exact(len)
        .take_while(|line| line.starts_with(repeated) && line.ends_with(ending))
        .count();
    let mut count = 1 + followers as u64;
    let last = framed_line(proto, &buf[followers * len..]);
    if last.is_none_or(|last| last.stamp.seq != first.stamp.seq + count - 1) {
        count = 1;
    }
    let run = Run {
        sender: first.stamp.sender,
        first: first.stamp.seq,
        count,
    };
    Some((run, len * count as usize))
}

/// A benchmark line at the front of a buffer, as [`take_run`] needs it.
#[derive(Debug)]
struct Framed {
    /// Its length on the wire.
    len: usize,
    /// How many of its first bytes every line of its sender repeats.
    same: usize,
    stamp: Stamp,
}

/// The benchmark line at the front of `buf`, if a whole one is there: pollchat's
/// `<nick> B ...\n`, Redis's `message` push on a channel of the benchmark's, or a WebSocket
/// text frame of pollchat's line.
fn framed_line(proto: Proto, buf: &[u8]) -> Option<Framed> {
    let (text_at, text_len, len) = match proto {
        Proto::Ws => {
            let (first, payload, len) = ws_server_frame(buf)?;
            let close = memchr::memchr(b'>', payload)?;
            let at = len - payload.len();
            (first == 0x81
                && payload.first() == Some(&b'<')
                && payload.get(close + 1) == Some(&b' '))
            .then_some((at + close + 2, payload.len() - close - 2, len))?
        }
        Proto::Pollchat => {
            let end = memchr::memchr(b'\n', buf)?;
            // `<nick> B ...`: nicks cannot contain '>', so the text starts after the first "> ".
            let close = memchr::memchr(b'>', &buf[..end])?;
            (buf.first() == Some(&b'<') && buf.get(close + 1) == Some(&b' ')).then_some((
                close + 2,
                end - close - 2,
                end + 1,
            ))?
        }
        Proto::Redis => {
            let text_head = message_head_len(buf)?;
            let rest = &buf[text_head..];
            let (text_len, _) = take_number_until(rest, b'\r')?;
            let text_at = text_head + digits(rest) + 2;
            let text_len = usize::try_from(text_len).ok()?;
            let len = text_at + text_len + 2;
            (buf.get(text_at - 1) == Some(&b'\n')
                && buf.get(text_len + text_at..len) == Some(b"\r\n"))
            .then_some((text_at, text_len, len))?
        }
    };
    let text = &buf[text_at..text_at + text_len];
    let stamp = parse_stamp(text)?;
    // `B <sender> `: what every line of this sender repeats after the nick or header.
    let same = text_at + 2 + digits(&text[2..]) + 1;
    Some(Framed { len, same, stamp })
}

/// How long the head of a Redis `message` push at the front of `buf` is, up to the `$`
/// before its payload's length: `*3 $7 message $<n> <channel> $`, the channel being one of
/// the benchmark's. `None` if `buf` does not start so (or not yet all of it).
fn message_head_len(buf: &[u8]) -> Option<usize> {
    let rest = buf.strip_prefix(MESSAGE_START)?;
    let (channel_len, _) = take_number_until(rest, b'\r')?;
    let channel_at = MESSAGE_START.len() + digits(rest) + 2;
    let channel_end = channel_at.checked_add(usize::try_from(channel_len).ok()?)?;
    let channel = buf.get(channel_at..channel_end)?;
    (buf.get(channel_at - 1) == Some(&b'\n')
        && channel.starts_with(CHANNEL.as_bytes())
        && buf.get(channel_end..channel_end + 3) == Some(b"\r\n$"))
    .then_some(channel_end + 3)
}

/// How many ASCII digits `bytes` starts with.
fn digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// A decimal number that ends at `end` (not consumed).
fn take_number_until(bytes: &[u8], end: u8) -> Option<(u64, &[u8])> {
    let n = digits(bytes);
    (bytes.get(n) == Some(&end)).then_some(())?;
    Some((decimal(&bytes[..n])?, &bytes[n..]))
}

/// The value of a run of ASCII digits; `None` if there are none or it overflows.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// `B <sender> <seq> <sent_at_ns> ...`, parsed straight from the bytes in one pass: on the
/// slow path this runs once per delivery, and decoding to `str` and splitting showed up in
/// profiles.
fn parse_stamp(text: &[u8]) -> Option<Stamp> {
    let rest = text.strip_prefix(b"B ")?;
    let (sender, rest) = take_number(rest)?;
    let (seq, rest) = take_number(rest)?;
    let (sent_at_ns, _) = take_number(rest)?;
    Some(Stamp {
        sender: u32::try_from(sender).ok()?,
        seq,
        sent_at_ns,
    })
}

/// A decimal number that ends at a space (consumed) or at the end of `bytes`.
fn take_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let n = digits(bytes);
    let value = decimal(&bytes[..n])?;
    match bytes.get(n) {
        None => Some((value, &bytes[n..])),
        Some(b' ') => Some((value, &bytes[n + 1..])),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        sender: 3,
        seq: 42,
        sent_at_ns: 123_456,
    };

    #[test]
    fn ws_lines_round_trip_through_the_servers_frames() {
        let mut out = Vec::new();
        encode_line(Proto::Ws, STAMP, 200, &mut out);
        // A masked client frame with a 16-bit length: 2 + 2 + 4 bytes of header.
        assert_eq!(out[..4], [0x81, 0x80 | 126, 0, 200]);
        assert_eq!(out.len(), 8 + 200);
        // What the server sends back: the line with the sender's nick, one unmasked frame.
        let mut text = b"<guest-7> ".to_vec();
        text.extend_from_slice(&out[8..]);
        let relayed = pollchat::transport::websocket::frame::text_frames(&text);
        let mut two = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        let head = two.len();
        assert_eq!(decode(Proto::Ws, &two), Some((Incoming::Other, head)));
        two.extend_from_slice(&relayed);
        two.extend_from_slice(&relayed);
        assert_eq!(
            decode(Proto::Ws, &two[head..]),
            Some((Incoming::Line(STAMP), relayed.len()))
        );
        let (run, used) = take_run(Proto::Ws, &two[head..]).unwrap();
        assert_eq!(
            (run.count, used),
            (1, relayed.len()),
            "same seq twice is not a run"
        );
        assert_eq!(decode(Proto::Ws, &relayed[..20]), None);
    }

    #[test]
    fn pollchat_lines_round_trip_through_the_chat_format() {
        let mut out = Vec::new();
        encode_line(Proto::Pollchat, STAMP, 64, &mut out);
        assert_eq!(out.len(), 65);
        let mut relayed = b"<guest-7> ".to_vec();
        relayed.extend_from_slice(&out);
        assert_eq!(
            decode(Proto::Pollchat, &relayed),
            Some((Incoming::Line(STAMP), relayed.len()))
        );
        assert_eq!(decode(Proto::Pollchat, &relayed[..20]), None);
        assert_eq!(parse_stamp(b"B 1 2"), None);
        assert_eq!(parse_stamp(b"B 1 2 x3 "), None);
        assert_eq!(parse_stamp(b"B 1 2 99999999999999999999 "), None);
        let welcome = b"*** welcome to pollchat, you are guest-1 (type /help)\n";
        assert_eq!(
            decode(Proto::Pollchat, welcome),
            Some((Incoming::Welcome, welcome.len()))
        );
        let header = pollchat::protocol::history_header("#bench-1", 3);
        assert_eq!(
            decode(Proto::Pollchat, header.as_bytes()),
            Some((Incoming::HistoryBegins, header.len()))
        );
        let footer = pollchat::protocol::HISTORY_END.as_bytes();
        assert_eq!(
            decode(Proto::Pollchat, footer),
            Some((Incoming::HistoryEnds, footer.len()))
        );
    }

    #[test]
    fn redis_messages_are_decoded_only_when_complete() {
        let mut publish = Vec::new();
        encode_line(Proto::Redis, STAMP, 64, &mut publish);
        let payload = &publish[publish.len() - 66..publish.len() - 2];
        let mut push = format!(
            "*3\r\n$7\r\nmessage\r\n${}\r\n{CHANNEL}\r\n${}\r\n",
            CHANNEL.len(),
            payload.len()
        )
        .into_bytes();
        push.extend_from_slice(payload);
        push.extend_from_slice(b"\r\n");
        for cut in 0..push.len() {
            assert_eq!(decode(Proto::Redis, &push[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            decode(Proto::Redis, &push),
            Some((Incoming::Line(STAMP), push.len()))
        );
        let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$14\r\npollchat-bench\r\n:1\r\n";
        assert_eq!(
            decode(Proto::Redis, subscribed),
            Some((Incoming::Subscribed, subscribed.len()))
        );
        assert_eq!(
            decode(Proto::Redis, b":1000\r\n"),
            Some((Incoming::Other, 7))
        );
    }

    /// `n` lines of `sender` from `first`, as a pollchat receiver hears them from `nick`.
    fn relayed(nick: &str, sender: u32, first: u64, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in first..first + n {
            out.extend_from_slice(format!("<{nick}> ").as_bytes());
            let stamp = Stamp {
                sender,
                seq,
                sent_at_ns: 1_000_000 + seq * 997,
            };
            encode_line(Proto::Pollchat, stamp, 64, &mut out);
        }
        out
    }

    /// `n` pushes of `sender`'s lines from `first`, as a Redis subscriber hears them.
    fn pushed(sender: u32, first: u64, n: u64) -> Vec<u8> {
        pushed_on(CHANNEL, sender, first, n)
    }

    /// [`pushed`], on `channel`.
    fn pushed_on(channel: &str, sender: u32, first: u64, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in first..first + n {
            let mut publish = Vec::new();
            let stamp = Stamp {
                sender,
                seq,
                sent_at_ns: 1_000_000 + seq * 997,
            };
            encode_line(Proto::Redis, stamp, 64, &mut publish);
            let payload = &publish[publish.len() - 66..publish.len() - 2];
            let head = format!(
                "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n$",
                channel.len()
            );
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(format!("{}\r\n", payload.len()).as_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn run(sender: u32, first: u64, count: u64) -> Run {
        Run {
            sender,
            first,
            count,
        }
    }

    #[test]
    fn a_run_is_every_whole_line_of_one_sender_in_order() {
        for (proto, bytes) in [
            (Proto::Pollchat, relayed("guest-7", 0, 95, 10)),
            (Proto::Redis, pushed(0, 95, 10)),
        ] {
            // The line numbers cross from two digits to three: the padding keeps the length.
            assert_eq!(take_run(proto, &bytes), Some((run(0, 95, 10), bytes.len())));
            let cut = bytes.len() - 5;
            let (found, used) = take_run(proto, &bytes[..cut]).unwrap();
            assert_eq!(found, run(0, 95, 9), "{proto:?}: the unfinished line waits");
            assert_eq!(used, bytes.len() / 10 * 9);
        }
    }

    #[test]
    fn a_room_has_a_channel_of_its_own_and_its_lines_are_found_there() {
        let bytes = pushed_on("pollchat-bench-12", 5, 7, 3);
        assert_eq!(
            take_run(Proto::Redis, &bytes),
            Some((run(5, 7, 3), bytes.len()))
        );
        assert_eq!(publish_head(CHANNEL), PUBLISH_HEAD);
        let head = publish_head("pollchat-bench-12");
        let mut out = Vec::new();
        encode_published(Proto::Redis, &head, STAMP, 64, &mut out);
        let text = String::from_utf8(out[head.len() + 5..out.len() - 2].to_vec()).unwrap();
        assert_eq!(out, resp_command(&["PUBLISH", "pollchat-bench-12", &text]));
        // Another program's channel is not the benchmark's.
        assert_eq!(take_run(Proto::Redis, &pushed_on("news", 5, 7, 1)), None);
        let moved = b"*** you are now in #bench-3 (11 users)\n";
        assert_eq!(
            decode(Proto::Pollchat, moved),
            Some((Incoming::NowIn, moved.len()))
        );
        let full = pollchat::protocol::too_many_rooms("#bench-3", 1000);
        assert_eq!(
            decode(Proto::Pollchat, full.as_bytes()),
            Some((Incoming::Refused, full.len()))
        );
    }

    #[test]
    fn a_run_stops_at_anything_that_is_not_the_next_line_of_its_sender() {
        // A server line in the middle.
        let mut bytes = relayed("guest-7", 0, 0, 3);
        let line = bytes.len() / 3;
        bytes.extend_from_slice(b"*** guest-9 joined\n");
        bytes.extend_from_slice(&relayed("guest-7", 0, 3, 2));
        assert_eq!(
            take_run(Proto::Pollchat, &bytes),
            Some((run(0, 0, 3), 3 * line))
        );
        // Another sender's line.
        let mut bytes = relayed("guest-7", 0, 0, 2);
        bytes.extend_from_slice(&relayed("guest-8", 1, 0, 1));
        assert_eq!(
            take_run(Proto::Pollchat, &bytes),
            Some((run(0, 0, 2), 2 * line))
        );
        // A line lost between the first and the last: only the first is taken on trust.
        let mut bytes = pushed(2, 0, 2);
        bytes.extend_from_slice(&pushed(2, 3, 2));
        let push = bytes.len() / 4;
        assert_eq!(take_run(Proto::Redis, &bytes), Some((run(2, 0, 1), push)));
        assert_eq!(
            take_run(Proto::Redis, &bytes[push..]),
            Some((run(2, 1, 1), push))
        );
        // Not a benchmark line at all.
        assert_eq!(take_run(Proto::Pollchat, b"*** welcome\n"), None);
        assert_eq!(take_run(Proto::Redis, b":1000\r\n"), None);
    }

    #[test]
    fn the_publish_header_is_the_resp_command() {
        let command = resp_command(&["PUBLISH", CHANNEL, "x"]);
        assert!(command.starts_with(PUBLISH_HEAD));
        let mut out = Vec::new();
        encode_line(Proto::Redis, STAMP, 64, &mut out);
        let text = String::from_utf8(out[PUBLISH_HEAD.len() + 5..out.len() - 2].to_vec()).unwrap();
        assert_eq!(out, resp_command(&["PUBLISH", CHANNEL, &text]));
    }
}
