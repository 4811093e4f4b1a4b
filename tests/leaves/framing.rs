//! `framing`: bytes into lines across any cut of the reads, `--max-line` (an overlong line
//! reported once and dropped to its newline, the buffer bounded), the last line without a
//! newline, an idle framer's memory given back, sanitising (escapes, invisible reordering
//! characters, invalid UTF-8), and Telnet's Ctrl-C taken out before the framer. The check
//! that the byte test agrees with the character rule for every character stays beside the
//! code: the byte test is private.

use pollchat::framing::{Frame, LineFramer, sanitize};

fn frames(framer: &mut LineFramer) -> Vec<Frame> {
    std::iter::from_fn(|| framer.next_frame()).collect()
}

fn line(s: &str) -> Frame {
    Frame::Line(s.to_string())
}

#[test]
fn lines_split_across_reads_are_joined() {
    let mut f = LineFramer::new(100);
    f.extend(b"hel");
    assert_eq!(frames(&mut f), vec![]);
    f.extend(b"lo\nwor");
    assert_eq!(frames(&mut f), vec![line("hello")]);
    f.extend(b"ld\n\n");
    assert_eq!(frames(&mut f), vec![line("world"), line("")]);
    assert_eq!(f.buffered(), 0);
}

#[test]
fn crlf_and_lf_both_end_a_line() {
    let mut f = LineFramer::new(100);
    f.extend(b"a\r\nb\nc\r");
    assert_eq!(frames(&mut f), vec![line("a"), line("b")]);
    f.extend(b"\n");
    assert_eq!(frames(&mut f), vec![line("c")]);
}

#[test]
fn overlong_line_is_reported_once_and_dropped_to_its_newline() {
    let mut f = LineFramer::new(8);
    f.extend(b"0123456789");
    assert_eq!(frames(&mut f), vec![Frame::TooLong]);
    f.extend(&[b'x'; 10_000]);
    assert_eq!(frames(&mut f), vec![]);
    assert_eq!(f.buffered(), 0, "the tail of an overlong line is not kept");
    f.extend(b"yyy\nok\n");
    assert_eq!(frames(&mut f), vec![line("ok")]);
}

#[test]
fn overlong_line_within_one_read_is_dropped() {
    let mut f = LineFramer::new(4);
    f.extend(b"12345\nabcd\n");
    assert_eq!(frames(&mut f), vec![Frame::TooLong, line("abcd")]);
}

#[test]
fn line_of_exactly_the_limit_passes_even_with_crlf() {
    let mut f = LineFramer::new(4);
    f.extend(b"abcd\r");
    assert_eq!(frames(&mut f), vec![]);
    f.extend(b"\n");
    assert_eq!(frames(&mut f), vec![line("abcd")]);
}

#[test]
fn buffer_never_holds_more_than_the_limit_plus_one_read() {
    let mut f = LineFramer::new(4096);
    for _ in 0..1000 {
        f.extend(&[b'a'; 1000]);
        let _ = frames(&mut f);
        assert!(f.buffered() <= 4096 + 1 + 1000);
    }
}

#[test]
fn finish_hands_out_a_last_line_without_newline() {
    let mut f = LineFramer::new(100);
    f.extend(b"one\ntwo");
    assert_eq!(frames(&mut f), vec![line("one")]);
    assert_eq!(f.finish(), Some(line("two")));
    assert_eq!(f.finish(), None);
}

#[test]
fn idle_framer_gives_its_memory_back() {
    let mut f = LineFramer::new(100_000);
    f.extend(&[b'a'; 50_000]);
    f.extend(b"\n");
    assert!(matches!(f.next_frame(), Some(Frame::Line(_))));
    assert_eq!(f.next_frame(), None);
    assert_eq!(f.capacity(), 0);
    // A short line too: a client that said one thing and went quiet holds nothing.
    f.extend(b"hi\n");
    assert!(matches!(f.next_frame(), Some(Frame::Line(_))));
    assert_eq!(f.next_frame(), None);
    assert_eq!(f.capacity(), 0);
}

#[test]
fn escape_sequences_lose_their_escape() {
    assert_eq!(sanitize(b"\x1b[31mred\x1b[0m"), "[31mred[0m");
    assert_eq!(sanitize(b"\x1b]0;title\x07x"), "]0;titlex");
    assert_eq!(sanitize("a\u{9b}31mb".as_bytes()), "a31mb");
    assert_eq!(sanitize(b"tab\tkept\x7f\x00"), "tab\tkept");
}

#[test]
fn characters_that_reorder_or_hide_text_are_removed() {
    assert_eq!(sanitize("rtl\u{202e}evil".as_bytes()), "rtlevil");
    assert_eq!(
        sanitize("a\u{2067}b\u{2069}\u{200f}c\u{61c}".as_bytes()),
        "abc"
    );
    assert_eq!(sanitize("x\u{fff9}hidden\u{fffb}".as_bytes()), "xhidden");
    // Kept: joiners (an emoji sequence, Persian), the zero-width space, curly quotes.
    for kept in ["👩\u{200d}💻", "می\u{200c}خواهم", "a\u{200b}b", "“ok” — …"] {
        assert_eq!(sanitize(kept.as_bytes()), kept);
    }
}

#[test]
fn telnet_ctrl_c_discards_the_typed_line_and_answers_the_timing_mark() {
    let mut f = LineFramer::new(100);
    f.extend_telnet(b"done\r\nhel");
    f.extend_telnet(b"\xff\xf4\xff");
    assert_eq!(f.take_replies(), None);
    f.extend_telnet(b"\xfd\x06/who\r\n");
    assert_eq!(f.take_replies(), Some(b"\xff\xfb\x06".to_vec()));
    assert_eq!(frames(&mut f), vec![line("done"), line("/who")]);
    assert_eq!(f.capacity(), 0, "nothing kept once the replies are taken");
}

#[test]
fn telnet_state_fits_beside_the_pointer() {
    assert_eq!(std::mem::size_of::<LineFramer>(), 16);
}

#[test]
fn invalid_utf8_is_replaced_not_dropped() {
    assert_eq!(sanitize(b"caf\xe9 ok"), "caf\u{fffd} ok");
    assert_eq!(sanitize("héllo ✓".as_bytes()), "héllo ✓");
}
