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
//!   (`*** ...`: welcome, joins, "server full") are recognised and not counted.
//! - `redis`: receivers `SUBSCRIBE` to one channel, senders `PUBLISH` to it, and the line
//!   arrives inside a RESP push `*3 $7 message $<n> <channel> $<n> <line>`.

use std::fmt::Write as _;

use crate::backplane::resp::{self, Value};

/// The server protocol the generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Pollchat,
    Redis,
}

impl Proto {
    /// The name reports use, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Pollchat => "pollchat",
            Proto::Redis => "redis",
        }
    }
}

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
    /// pollchat's "server full": the connection was refused.
    Refused,
    /// Redis confirmed a subscription.
    Subscribed,
    /// Anything else (join notices, PUBLISH replies, other chat): read and ignored.
    Other,
}

/// The bytes a receiver sends once connected (Redis: the subscription).
pub fn receiver_hello(proto: Proto) -> Vec<u8> {
    match proto {
        Proto::Pollchat => Vec::new(),
        Proto::Redis => resp_command(&["SUBSCRIBE", CHANNEL]),
    }
}

/// Appends one benchmark line, encoded for `proto`, to `out`. `size` is the length of the
/// line's text (the padding makes it up), so both protocols carry the same payload.
pub fn encode_line(proto: Proto, stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    let mut text = String::with_capacity(size + 32);
    let _ = write!(
        text,
        "B {} {} {} ",
        stamp.sender, stamp.seq, stamp.sent_at_ns
    );
    while text.len() < size {
        text.push('x');
    }
    match proto {
        Proto::Pollchat => {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Proto::Redis => out.extend_from_slice(&resp_command(&["PUBLISH", CHANNEL, &text])),
    }
}

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
    }
}

fn decode_pollchat(buf: &[u8]) -> Option<(Incoming, usize)> {
    let end = memchr::memchr(b'\n', buf)?;
    let line = &buf[..end];
    let incoming = if line.starts_with(b"*** welcome") {
        Incoming::Welcome
    } else if line.starts_with(b"*** server full") {
        Incoming::Refused
    } else if line.starts_with(b"<") {
        // `<nick> B ...`: nicks cannot contain '>', so the text starts after the first "> ".
        match line.iter().position(|&b| b == b'>') {
            Some(i) if line.get(i + 1) == Some(&b' ') => {
                parse_stamp(&line[i + 2..]).map_or(Incoming::Other, Incoming::Line)
            }
            _ => Incoming::Other,
        }
    } else {
        Incoming::Other
    };
    Some((incoming, end + 1))
}

/// A Redis reply or push, decoded by the RESP decoder the backplane uses. Pushes
/// (`message`) carry lines; subscription confirmations say the receiver is ready; PUBLISH
/// replies and anything else are read and ignored. Bytes that are not RESP cannot come from a
/// real Redis: they are skipped whole rather than waited on forever.
fn decode_resp(buf: &[u8]) -> Option<(Incoming, usize)> {
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

/// `B <sender> <seq> <sent_at_ns> ...`, parsed straight from the bytes in one pass: this
/// runs once per delivery, millions of times a second, and decoding to `str` and splitting
/// showed up in profiles.
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
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let value = bytes[..digits].iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    match bytes.get(digits) {
        None => Some((value, &bytes[digits..])),
        Some(b' ') => Some((value, &bytes[digits + 1..])),
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
}
