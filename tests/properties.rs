//! Properties of the pure parts (framing, sanitising, command parsing), checked on inputs
//! proptest generates and shrinks: what must hold for every byte stream a client can send.

use pollchat::framing::{Frame, LineFramer, is_forbidden, sanitize};
use pollchat::protocol::{self, Command};
use proptest::prelude::*;

/// Bytes that stress framing: newlines and carriage returns often, anything else too.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(0x1b)],
        0..600,
    )
}

/// Everything a framer hands out for `chunks`, fed one read at a time, then end-of-stream.
fn frames(chunks: &[&[u8]], max_line: usize) -> Vec<Frame> {
    let mut framer = LineFramer::new(max_line);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.extend(chunk);
        out.extend(std::iter::from_fn(|| framer.next_frame()));
    }
    out.extend(framer.finish());
    out
}

proptest! {
    /// TCP may cut the stream anywhere: the lines must not depend on where.
    #[test]
    fn splitting_the_stream_anywhere_yields_the_same_lines(
        data in stream(),
        mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        max_line in 1usize..12,
    ) {
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&data[start..cut]);
            start = cut;
        }
        chunks.push(&data[start..]);
        prop_assert_eq!(frames(&chunks, max_line), frames(&[&data], max_line));
    }

    /// Nothing relayed ever holds a control character (every `String` is valid UTF-8).
    #[test]
    fn no_line_ever_carries_a_control_character(data in stream()) {
        for frame in frames(&[&data], 4096) {
            if let Frame::Line(line) = frame {
                prop_assert!(!line.chars().any(is_forbidden), "{:?}", line);
            }
        }
        prop_assert!(!sanitize(&data).chars().any(is_forbidden));
    }

    /// However a line over the limit arrives, the framer holds at most the limit (plus a
    /// possible `\r`) once it has handed out what it can.
    #[test]
    fn an_overlong_line_never_grows_the_buffer_past_the_limit(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40),
        max_line in 1usize..100,
    ) {
        let mut framer = LineFramer::new(max_line);
        for chunk in &chunks {
            framer.extend(chunk);
            while framer.next_frame().is_some() {}
            prop_assert!(framer.buffered() <= max_line + 1, "{} > {}", framer.buffered(), max_line + 1);
        }
    }

    /// Parsing never panics, and a nick that parses always follows the rules.
    #[test]
    fn command_parsing_never_panics_and_nicks_are_valid(line in "\\PC{0,80}|/[a-zA-Z]{0,6}( \\PC{0,40})?") {
        if let Ok(Some(Command::Nick(nick))) = protocol::parse(&line) {
            prop_assert!(protocol::is_valid_nick(nick));
        }
    }
}
