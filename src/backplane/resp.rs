//! RESP, the Redis protocol, as far as pollchat speaks it: commands encoded as arrays of bulk
//! strings, and replies decoded incrementally from whatever bytes have arrived.
//!
//! The decoder is written for a non-blocking reader. A `read` hands over any number of bytes:
//! half a reply, or three replies and the start of a fourth. [`decode`] looks at the front of
//! the buffer and answers one of three things:
//!
//! - `Ok(Some((value, used)))`: one complete reply, which borrows from the buffer, and how many
//!   bytes it took (the caller drops them once it is done with the value);
//! - `Ok(None)`: not enough bytes yet. That is the normal outcome of a partial read, not an
//!   error: read more and call again with the same buffer, extended;
//! - `Err(_)`: these bytes are not RESP (or are absurdly large). Nothing after them can be
//!   trusted, so the caller drops the connection.
//!
//! Both the backplane (`backplane/mod.rs`) and the load generator's Redis mode
//! (`src/bin/pollchat-bench/wire.rs`) use it.

use std::fmt;

/// Largest bulk string accepted, in bytes. A chat event is a few KiB at most (`--max-line`
/// plus a header); anything near this is not a reply pollchat asked for.
pub const MAX_BULK: usize = 1024 * 1024;

/// Most elements in one array, and deepest nesting: the replies pollchat gets are scalars,
/// the ban hash (`HGETALL`: a field and a value per ban, and the hash's marker), and stream
/// entries (`XREAD`: streams of entries of an id and fields, five deep; `XREVRANGE`: at most
/// `--backplane-stream-len` of them), so these only stop garbage from costing memory or stack.
const MAX_ELEMENTS: usize = 2 * crate::limits::MAX_BANS + 2;
const MAX_DEPTH: usize = 5;

/// One decoded reply, borrowing its bytes from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `+OK`, `+PONG`.
    Simple(&'a [u8]),
    /// `-ERR ...`: Redis refused the command.
    Error(&'a [u8]),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nfoo`; `None` for the nil bulk string `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...`; `None` for the nil array `*-1`.
    Array(Option<Vec<Value<'a>>>),
}

impl Value<'_> {
    /// The value as RESP-like text for a log line, long strings cut short: `+PONG`, `:1`,
    /// `$"hello"`, `*[...]`.
    pub fn describe(&self) -> String {
        match self {
            Value::Simple(b) => format!("+{}", lossy(b)),
            Value::Error(b) => format!("-{}", lossy(b)),
            Value::Integer(n) => format!(":{n}"),
            Value::Bulk(None) | Value::Array(None) => "nil".to_string(),
            Value::Bulk(Some(b)) => format!("${:?}", lossy(b)),
            Value::Array(Some(items)) => {
                let items: Vec<String> = items.iter().map(Value::describe).collect();
                format!("*[{}]", items.join(", "))
            }
        }
    }

    /// A bulk or simple string's bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }
}

/// Bytes that are not RESP. Its text says what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends one command, an array of bulk strings, to `out`.
pub fn command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(parts.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.push(b'$');
        out.extend_from_slice(part.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// The next complete reply at the front of `buf` (see the module documentation).
pub fn decode(buf: &[u8]) -> Result<Option<(Value<'_>, usize)>, ProtocolError> {
    decode_at(buf, 0)
}

fn decode_at(buf: &[u8], depth: usize) -> Result<Option<(Value<'_>, usize)>, ProtocolError> {
    let Some((line, mut used)) = header(buf)? else {
        return Ok(None);
    };
    let Some((&kind, rest)) = line.split_first() else {
        return Err(ProtocolError(
            "an empty line where a reply was expected".into(),
        ));
    };
    let value = match kind {
        b'+' => Value::Simple(rest),
        b'-' => Value::Error(rest),
        b':' => Value::Integer(number(rest)?),
        b'$' => match length(rest, MAX_BULK)? {
            None => Value::Bulk(None),
            Some(len) => {
                // The payload is read by length (it may hold any byte), then its CRLF.
                let Some(end) = used.checked_add(len + 2).filter(|&end| end <= buf.len()) else {
                    return Ok(None);
                };
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ProtocolError("a bulk string not followed by CRLF".into()));
                }
                let payload = &buf[used..end - 2];
                used = end;
                Value::Bulk(Some(payload))
            }
        },
        b'*' => match length(rest, MAX_ELEMENTS)? {
            None => Value::Array(None),
            Some(_) if depth >= MAX_DEPTH => {
                return Err(ProtocolError("arrays nested too deep".into()));
            }
            Some(count) => {
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    let Some((item, n)) = decode_at(&buf[used..], depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    used += n;
                }
                Value::Array(Some(items))
            }
        },
        other => {
            return Err(ProtocolError(format!(
                "a reply starting with byte {other:#04x}, which is not RESP"
            )));
        }
    };
    Ok(Some((value, used)))
}

/// One CRLF-terminated header line, without the CRLF, and the bytes it used. A header longer
/// than any real one, still without its end, is garbage rather than "wait for more".
fn header(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    const LONGEST_HEADER: usize = 64 * 1024;
    let Some(end) = memchr::memchr(b'\n', buf) else {
        if buf.len() > LONGEST_HEADER {
            return Err(ProtocolError("a reply line with no end".into()));
        }
        return Ok(None);
    };
    match buf[..end].strip_suffix(b"\r") {
        Some(line) => Ok(Some((line, end + 1))),
        None => Err(ProtocolError("a line ending in LF without CR".into())),
    }
}

fn number(digits: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("{:?} is not a number", lossy(digits))))
}

/// A length: `-1` is nil (`None`); more than `max` is refused.
fn length(digits: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match number(digits)? {
        -1 => Ok(None),
        n => match usize::try_from(n) {
            Ok(len) if len <= max => Ok(Some(len)),
            _ => Err(ProtocolError(format!("a length of {n} (at most {max})"))),
        },
    }
}

/// Bytes as text for an error message, cut short.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned()
}
