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

/// Most elements in one array, and deepest nesting: the replies pollchat gets are flat
/// arrays of three (pushes) or scalars, so these only stop garbage from costing memory or
/// stack.
const MAX_ELEMENTS: usize = 1024;
const MAX_DEPTH: usize = 4;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"chan", b"a b"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$3\r\na b\r\n");
    }

    /// Every cut of a valid stream is "not yet", never an error or a wrong value; the whole
    /// stream decodes reply by reply.
    #[test]
    fn replies_decode_only_when_complete_at_any_cut() {
        let stream: &[u8] =
            b"+PONG\r\n:42\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n-ERR no\r\n";
        let expected = [
            Value::Simple(b"PONG"),
            Value::Integer(42),
            Value::Bulk(None),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"message")),
                Value::Bulk(Some(b"c")),
                Value::Bulk(Some(b"a\r\nb")),
            ])),
            Value::Error(b"ERR no"),
        ];
        let mut pos = 0;
        for want in &expected {
            let (value, used) = decode(&stream[pos..]).unwrap().unwrap();
            assert_eq!(&value, want);
            for cut in 0..used {
                assert_eq!(decode(&stream[pos..pos + cut]), Ok(None), "cut at {cut}");
            }
            pos += used;
        }
        assert_eq!(pos, stream.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_wait() {
        for garbage in [
            &b"hello\r\n"[..],
            b":12x\r\n",
            b"$5\r\nabcdefg\r\n",
            b"+OK\n",
            b"$99999999999\r\n",
            b"*-7\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(decode(garbage).is_err(), "{:?}", lossy(garbage));
        }
        assert!(decode(&[b'+'; 70_000]).is_err());
    }

    #[test]
    fn values_describe_themselves_for_the_log() {
        let (value, _) = decode(b"*3\r\n$7\r\nmessage\r\n:1\r\n$-1\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(value.describe(), "*[$\"message\", :1, nil]");
        assert_eq!(Value::Error(b"ERR x").describe(), "-ERR x");
    }
}
