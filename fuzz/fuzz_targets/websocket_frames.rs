//! Fuzz target: bytes from a WebSocket client through the frame parser, cut into reads of a
//! size the fuzzer chooses, and again in one read. Checks what must hold for any input:
//! nothing panics; a finished text message is UTF-8; a ping's payload fits a control frame;
//! nothing comes after a close; and where the reads cut makes no difference: the same
//! messages, pings and close, or the same violation.
//!
//! Run: `cargo +nightly fuzz run websocket_frames` (see "Fuzzing" in docs/tests.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pollchat::transport::websocket::frame::{MAX_CONTROL, Parser, Piece};

/// What the parser made of a stream: messages, pings and the close as one list, and how it
/// ended (the close code of a violation).
fn parse(stream: &[u8], read: usize) -> (Vec<String>, Result<(), u16>) {
    let mut parser = Parser::default();
    let mut seen = Vec::new();
    let mut text = Vec::new();
    let mut closed = false;
    let mut bytes = stream.to_vec();
    for chunk in bytes.chunks_mut(read) {
        let result = parser.feed(chunk, &mut |piece| {
            assert!(!closed, "a piece after the close: {piece:?}");
            match piece {
                Piece::Text(t) => text.extend_from_slice(t),
                Piece::End => {
                    let message = std::str::from_utf8(&text).expect("a message that is not UTF-8");
                    seen.push(format!("text {message}"));
                    text.clear();
                }
                Piece::Ping(p) => {
                    assert!(p.len() <= MAX_CONTROL);
                    seen.push(format!("ping {p:?}"));
                }
                Piece::Close(code) => {
                    closed = true;
                    seen.push(format!("close {code:?}"));
                }
            }
        });
        if let Err(violation) = result {
            return (seen, Err(violation.code.code()));
        }
        assert_eq!(parser.is_closed(), closed);
    }
    (seen, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    let [read, stream @ ..] = data else {
        return;
    };
    let read = usize::from(*read) + 1;
    let (cut, cut_result) = parse(stream, read);
    let (whole, whole_result) = parse(stream, stream.len().max(1));
    assert_eq!(
        cut_result, whole_result,
        "reads of {read} changed the verdict"
    );
    // Before a violation, text can be handed on in different pieces; the messages finished
    // before it are the same.
    if cut_result.is_ok() {
        assert_eq!(cut, whole, "reads of {read} changed what was parsed");
    }
});
