//! Fuzz target: bytes from a client, through framing, sanitising and command parsing, cut
//! into reads of sizes the fuzzer chooses. Checks what must hold for any input: nothing
//! panics, no line carries a control character, the framer's buffer stays bounded, and a
//! parsed nick is valid.
//!
//! Run: `cargo fuzz run framing` (see "Fuzzing" in docs/tests.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pollchat::framing::{Frame, LineFramer, is_forbidden};
use pollchat::protocol::{self, Command};

fuzz_target!(|data: &[u8]| {
    // First byte: the line limit; second: the read size. The rest is the stream.
    let [limit, read, stream @ ..] = data else {
        return;
    };
    let max_line = usize::from(*limit) + 1;
    let read = usize::from(*read) + 1;
    let mut framer = LineFramer::new(max_line);
    let check = |frame: Frame| {
        if let Frame::Line(line) = frame {
            assert!(!line.chars().any(is_forbidden), "{line:?}");
            if let Ok(Some(Command::Nick(nick))) = protocol::parse(&line) {
                assert!(protocol::is_valid_nick(nick), "{nick:?}");
            }
        }
    };
    for chunk in stream.chunks(read) {
        framer.extend(chunk);
        while let Some(frame) = framer.next_frame() {
            check(frame);
        }
        assert!(framer.buffered() <= max_line + 1);
    }
    if let Some(frame) = framer.finish() {
        check(frame);
    }
});
