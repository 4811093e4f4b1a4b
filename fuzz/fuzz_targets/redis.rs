//! Fuzz target: bytes from Redis, as the backplane reads them. They go through the RESP
//! decoder in reads of sizes the fuzzer chooses, and every message (and the raw input
//! itself) through the backplane's event decoder. Checks what must hold for any input:
//!
//! - nothing panics, whatever Redis (or something pretending to be it) sends;
//! - every decoded reply used at least one byte and no more than the buffer held;
//! - decoding in pieces gives the same replies as decoding the whole stream at once (a
//!   partial read is "not yet", never a different answer);
//! - an event that decodes encodes back to itself, and carries no control character.
//!
//! Run: `cargo fuzz run redis` (see "Fuzzing" in docs/tests.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pollchat::backplane::event::{Message, Origins};
use pollchat::backplane::resp::{self, Value};
use pollchat::framing::is_forbidden;

/// The replies at the front of `buf`, described, and whether it ended in garbage.
fn decode_all(buf: &[u8]) -> (Vec<String>, bool) {
    let mut replies = Vec::new();
    let mut at = 0;
    loop {
        match resp::decode(&buf[at..]) {
            Ok(Some((value, used))) => {
                assert!(
                    used > 0 && used <= buf.len() - at,
                    "used {used} of {}",
                    buf.len() - at
                );
                check_messages(&value);
                replies.push(value.describe());
                at += used;
            }
            Ok(None) => return (replies, false),
            Err(_) => return (replies, true),
        }
    }
}

/// Every bulk string in a reply is an event the reader could receive (an entry's field `e`).
fn check_messages(value: &Value<'_>) {
    match value {
        Value::Bulk(Some(bytes)) => check_event(bytes),
        Value::Array(Some(items)) => items.iter().for_each(check_messages),
        _ => {}
    }
}

fn check_event(message: &[u8]) {
    // Instance names are numbered as they are heard; this instance is "me".
    let mut origins = Origins::new("me");
    let Ok(event) = Message::decode(message, &mut origins) else {
        return;
    };
    // An event that decoded is UTF-8 with its origin's name as its second field.
    let Some(name) = std::str::from_utf8(message)
        .ok()
        .and_then(|text| text.split(' ').nth(1))
    else {
        panic!("decoded without an origin: {message:?}");
    };
    let text = event.encode(name);
    assert!(!text.chars().any(is_forbidden), "{text:?}");
    assert_eq!(
        Message::decode(text.as_bytes(), &mut origins).as_ref(),
        Ok(&event),
        "{text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    // First byte: the read size. The rest is what Redis sent.
    let [read, stream @ ..] = data else {
        return;
    };
    check_event(stream);
    let whole = decode_all(stream);

    // The same bytes as a non-blocking reader gets them: appended to a buffer a read at a
    // time, complete replies taken off the front after each read.
    let read = usize::from(*read) + 1;
    let mut buffer = Vec::new();
    let mut replies = Vec::new();
    let mut garbage = false;
    'reads: for chunk in stream.chunks(read) {
        buffer.extend_from_slice(chunk);
        loop {
            match resp::decode(&buffer) {
                Ok(Some((value, used))) => {
                    replies.push(value.describe());
                    buffer.drain(..used);
                }
                Ok(None) => break,
                Err(_) => {
                    garbage = true;
                    break 'reads;
                }
            }
        }
    }
    // A prefix of a valid reply is "not yet", never garbage, and bytes added to garbage
    // never make it valid: so the pieces and the whole agree exactly.
    assert_eq!(replies, whole.0);
    assert_eq!(garbage, whole.1, "garbage seen one way and not the other");
});
