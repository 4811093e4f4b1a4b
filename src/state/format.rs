//! The state file's bytes: a header, then records, each framed so that a reader can tell a
//! record cut short by a crash from a file that is damaged or not pollchat's.
//!
//! ```text
//! header:  "pollchat state\n" (15 bytes, the magic)  version (1 byte)
//! record:  length (3 bytes LE, of the body)  check (1 byte)  crc32 (u32 LE, of the body)  body
//! body:    kind (1 byte)  room name length (u8)  room name  payload (the rest)
//! ```
//!
//! The check byte is the low byte of the CRC-32 of the three length bytes, so that a damaged
//! length is told from a record that runs past the end because the crash cut it.
//!
//! Kinds: a chat line kept in the room's history (payload: the line as sent, `\n` included),
//! the room's topic (payload: the topic), the room forgotten (no payload). Appending is the
//! only way the file grows, so a crash can only cut the *last* record short: a length that
//! runs past the end, or a last record whose checksum fails, is a torn tail and is dropped.
//! A record that fails its checksum with more bytes after it is damage in the middle, which
//! no crash makes: the file is refused, never repaired by guessing.

use std::fmt;

/// The first bytes of every state file: says "pollchat's" to a reader and to `head -c 15`.
pub const MAGIC: &[u8; 15] = b"pollchat state\n";
/// The format this build writes and reads. A later format gets a new number, and this build
/// refuses it rather than misreading it.
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = MAGIC.len() + 1;
/// A record's length, its check byte and the body's checksum.
const FRAME_LEN: usize = 8;
/// Largest body a record may have: what three length bytes can say. A chat line is at most
/// `--max-line` (4 KiB by default); one longer than this is kept in memory only.
pub const MAX_BODY: usize = (1 << 24) - 1;

/// What one record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A chat line kept in the room's history.
    Line { room: String, line: Vec<u8> },
    /// The room's topic, set.
    Topic { room: String, topic: String },
    /// The room went (nobody in it): its history and topic with it.
    Forgot { room: String },
}

/// The kinds of record: a line kept, a topic set, a room forgotten.
pub const LINE: u8 = 1;
pub const TOPIC: u8 = 2;
pub const FORGOT: u8 = 3;

/// Why a file cannot be read as state.
#[derive(Debug, PartialEq, Eq)]
pub enum Bad {
    /// The magic is not there: some other file.
    NotOurs,
    /// Written by a later pollchat (its version).
    Newer(u8),
    /// A record before the end is damaged (at this byte offset).
    Corrupt(usize),
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bad::NotOurs => f.write_str("is not a pollchat state file"),
            Bad::Newer(v) => write!(f, "was written by a newer pollchat (format {v})"),
            Bad::Corrupt(at) => write!(f, "is damaged at byte {at}, before its end"),
        }
    }
}

/// A file read: its records, and how many bytes at its end were a torn record, dropped.
#[derive(Debug)]
pub struct Decoded {
    pub records: Vec<Record>,
    pub torn: usize,
}

/// The header a new file starts with.
pub fn header() -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out
}

/// Appends one record of `kind`, framed, to `out`. False if it is too long for the format
/// ([`MAX_BODY`]), and nothing was written.
pub fn encode(kind: u8, room: &str, payload: &[u8], out: &mut Vec<u8>) -> bool {
    // Room names are at most 32 bytes (`limits::MAX_ROOM_NAME`); cut, never wrap, if not.
    let room = &room.as_bytes()[..room.len().min(255)];
    let body_len = 2 + room.len() + payload.len();
    if body_len > MAX_BODY {
        return false;
    }
    let start = out.len();
    let len = u32::try_from(body_len).unwrap_or(0).to_le_bytes();
    out.extend_from_slice(&len[..3]);
    out.push(length_check(&len[..3]));
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.push(room.len() as u8);
    out.extend_from_slice(room);
    out.extend_from_slice(payload);
    let crc = crc32(&out[start + FRAME_LEN..]);
    out[start + 4..start + FRAME_LEN].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Reads a whole file: its records, or why it cannot be used.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Bad> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Bad::NotOurs);
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(Bad::Newer(bytes[MAGIC.len()]));
    }
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = Decoded {
            records: Vec::new(),
            torn: rest.len(),
        };
        if rest.len() < FRAME_LEN {
            return Ok(Decoded { records, ..torn });
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
        if rest[3] != length_check(&rest[..3]) || !(2..=MAX_BODY).contains(&len) {
            // Zeros where the record should be: some file systems extend the file before
            // the data reaches the disk, and a crash between the two leaves this tail.
            if rest.iter().all(|&b| b == 0) {
                return Ok(Decoded { records, ..torn });
            }
            return Err(Bad::Corrupt(at));
        }
        let Some(body) = rest.get(FRAME_LEN..FRAME_LEN + len) else {
            // A length past the end: the write that carried the rest never happened.
            return Ok(Decoded { records, ..torn });
        };
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let last = rest.len() == FRAME_LEN + len;
        match (crc32(body) == crc, last) {
            (true, _) => records.push(parse(body).ok_or(Bad::Corrupt(at))?),
            // A last record with the wrong bytes: the length reached the disk, the data not.
            (false, true) => return Ok(Decoded { records, ..torn }),
            (false, false) => return Err(Bad::Corrupt(at)),
        }
        at += FRAME_LEN + len;
    }
    Ok(Decoded { records, torn: 0 })
}

/// The byte that vouches for a record's three length bytes.
fn length_check(len: &[u8]) -> u8 {
    crc32(len).to_le_bytes()[0]
}

/// One body whose checksum held; `None` if it still makes no sense (a kind this version does
/// not know, a room name past the body).
fn parse(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let (&room_len, rest) = rest.split_first()?;
    let room = std::str::from_utf8(rest.get(..room_len as usize)?).ok()?;
    let room = room.to_string();
    let payload = &rest[room_len as usize..];
    match kind {
        LINE => Some(Record::Line {
            room,
            line: payload.to_vec(),
        }),
        TOPIC => Some(Record::Topic {
            room,
            topic: String::from_utf8(payload.to_vec()).ok()?,
        }),
        FORGOT => Some(Record::Forgot { room }),
        _ => None,
    }
}

/// CRC-32 (IEEE 802.3, the one zlib and gzip use), a byte at a time from a table made at
/// compile time: twenty lines instead of a dependency, and fast enough (a few hundred MB/s)
/// for a file read once at start-up and records of a line each.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[Record]) -> Vec<u8> {
        let mut out = header();
        for r in records {
            let (kind, room, payload): (u8, &str, &[u8]) = match r {
                Record::Line { room, line } => (LINE, room, line),
                Record::Topic { room, topic } => (TOPIC, room, topic.as_bytes()),
                Record::Forgot { room } => (FORGOT, room, &[]),
            };
            assert!(encode(kind, room, payload, &mut out));
        }
        out
    }

    fn line(room: &str, text: &str) -> Record {
        Record::Line {
            room: room.into(),
            line: text.as_bytes().to_vec(),
        }
    }

    /// The check value every CRC-32 implementation is tested against.
    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip() {
        let records = vec![
            line("#rust", "<a> hi\n"),
            Record::Topic {
                room: "#rust".into(),
                topic: "borrowck".into(),
            },
            Record::Forgot { room: "#go".into() },
        ];
        let decoded = decode(&file(&records)).expect("decodes");
        assert_eq!((decoded.records, decoded.torn), (records, 0));
    }

    /// Every cut inside the last record is a torn tail; every flipped byte before it is damage.
    #[test]
    fn torn_tail_dropped_and_damage_refused() {
        let bytes = file(&[line("#a", "<x> one\n"), line("#a", "<x> two\n")]);
        let second = HEADER_LEN + FRAME_LEN + 2 + 2 + 8;
        for cut in second + 1..bytes.len() {
            let decoded = decode(&bytes[..cut]).expect("torn tail");
            assert_eq!((decoded.records.len(), decoded.torn), (1, cut - second));
        }
        for at in HEADER_LEN..second {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(decode(&damaged).is_err(), "flip at {at} read as good");
        }
        let mut newer = bytes.clone();
        newer[MAGIC.len()] = VERSION + 1;
        assert_eq!(decode(&newer).err(), Some(Bad::Newer(VERSION + 1)));
        assert_eq!(decode(b"[server]\n").err(), Some(Bad::NotOurs));
    }
}
