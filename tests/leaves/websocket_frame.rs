//! `transport::websocket::frame`: the parser of what clients send, fed any cut of a stream,
//! each rule it enforces with its close code, and the headers of what the server sends.

use pollchat::transport::websocket::frame::{
    CloseCode, MAX_CONTROL, MAX_HEADER, Parser, Piece, Violation, client_frame, close, pong,
    text_header,
};

/// The opcodes of RFC 6455 (section 5.2) the tests build frames with, as the wire has them.
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// What the parser makes of `stream`, fed `read` bytes at a time, as owned values.
fn parse(stream: &[u8], read: usize) -> (Vec<String>, Result<(), Violation>) {
    let mut parser = Parser::default();
    let mut seen = Vec::new();
    // Text is kept as bytes until the next other piece: a read may cut a character.
    let mut text = Vec::new();
    let mut bytes = stream.to_vec();
    let mut result = Ok(());
    for chunk in bytes.chunks_mut(read) {
        result = parser.feed(chunk, &mut |piece| {
            if let Piece::Text(t) = piece {
                text.extend_from_slice(t);
                return;
            }
            if !text.is_empty() {
                seen.push(format!("text {}", String::from_utf8_lossy(&text)));
                text.clear();
            }
            seen.push(match piece {
                Piece::Text(_) | Piece::End => "end".to_string(),
                Piece::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                Piece::Close(code) => format!("close {code:?}"),
            });
        });
        if result.is_err() {
            break;
        }
    }
    if !text.is_empty() {
        seen.push(format!("text {}", String::from_utf8_lossy(&text)));
    }
    (seen, result)
}

/// Text pieces of one message joined, so that a test does not depend on where reads cut.
fn joined(seen: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in seen {
        match (piece.strip_prefix("text "), out.last_mut()) {
            (Some(text), Some(last)) if last.starts_with("text ") => last.push_str(text),
            _ => out.push(piece),
        }
    }
    out
}

#[test]
fn a_masked_text_frame_is_one_message_however_the_reads_cut_it() {
    let stream = client_frame(true, OP_TEXT, "héllo wörld".as_bytes(), MASK);
    for read in 1..=stream.len() {
        let (seen, result) = parse(&stream, read);
        assert_eq!(result, Ok(()));
        assert_eq!(joined(seen), ["text héllo wörld", "end"], "reads of {read}");
    }
}

#[test]
fn fragments_make_one_message_with_control_frames_between_them() {
    let mut stream = client_frame(false, OP_TEXT, b"one ", MASK);
    stream.extend(client_frame(true, OP_PING, b"are you there", MASK));
    stream.extend(client_frame(
        false,
        OP_CONTINUATION,
        "tw\u{e9}".as_bytes(),
        MASK,
    ));
    stream.extend(client_frame(true, OP_CONTINUATION, b" three", MASK));
    let (seen, result) = parse(&stream, 5);
    assert_eq!(result, Ok(()));
    assert_eq!(
        joined(seen),
        [
            "text one ",
            "ping are you there",
            "text tw\u{e9} three",
            "end"
        ]
    );
}

#[test]
fn lengths_of_16_and_64_bits_are_read() {
    for len in [125, 126, 65_535, 65_536] {
        let payload = vec![b'x'; len];
        let frame = client_frame(true, OP_TEXT, &payload, MASK);
        if len == 65_536 {
            assert_eq!(frame[1] & 0x7F, 127);
        }
        let (seen, result) = parse(&frame, 4096);
        assert_eq!(result, Ok(()));
        let text: usize = seen
            .iter()
            .filter_map(|s| s.strip_prefix("text "))
            .map(str::len)
            .sum();
        assert_eq!(text, len);
    }
}

#[test]
fn every_rule_fails_with_its_close_code() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            {
                let mut f = client_frame(true, OP_TEXT, b"hi", MASK);
                f[1] &= 0x7F; // unmasked: and then the mask bytes are payload
                f
            },
            1002,
        ),
        (client_frame(true, OP_BINARY, b"\x00\x01", MASK), 1003),
        (client_frame(true, OP_TEXT, b"caf\xe9", MASK), 1007),
        (client_frame(true, OP_TEXT, b"\xe2\x82", MASK), 1007),
        (client_frame(true, 0x3, b"", MASK), 1002),
        (client_frame(true, OP_CONTINUATION, b"x", MASK), 1002),
        (client_frame(false, OP_PING, b"x", MASK), 1002),
        (client_frame(true, OP_PING, &[b'x'; 126], MASK), 1002),
        (client_frame(true, OP_CLOSE, b"\x03", MASK), 1002),
        (
            client_frame(true, OP_CLOSE, &1005u16.to_be_bytes(), MASK),
            1002,
        ),
        (client_frame(true, OP_CLOSE, b"\x03\xe8\xff", MASK), 1007),
        (
            {
                let mut f = client_frame(true, OP_TEXT, b"x", MASK);
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (
            {
                let mut f = client_frame(false, OP_TEXT, b"a", MASK);
                f.extend(client_frame(true, OP_TEXT, b"b", MASK));
                f
            },
            1002,
        ),
    ];
    for (stream, code) in cases {
        let (_, result) = parse(&stream, 3);
        assert_eq!(result.map_err(|v| v.code.code()), Err(code), "{stream:x?}");
    }
}

#[test]
fn a_character_cut_between_frames_is_checked_when_it_is_whole() {
    let euro = "€".as_bytes();
    let mut stream = client_frame(false, OP_TEXT, &euro[..1], MASK);
    stream.extend(client_frame(true, OP_CONTINUATION, &euro[1..], MASK));
    assert_eq!(joined(parse(&stream, 1).0), ["text €", "end"]);
    let mut bad = client_frame(false, OP_TEXT, &euro[..1], MASK);
    bad.extend(client_frame(true, OP_CONTINUATION, b"ab", MASK));
    assert_eq!(
        parse(&bad, 1).1.map_err(|v| v.code),
        Err(CloseCode::InvalidPayload)
    );
}

#[test]
fn a_close_frame_ends_the_stream() {
    let mut stream = client_frame(true, OP_CLOSE, b"\x03\xe9bye", MASK);
    stream.extend(client_frame(true, OP_TEXT, b"after", MASK));
    let (seen, result) = parse(&stream, 7);
    assert_eq!(result, Ok(()));
    assert_eq!(seen, ["close Some(1001)"]);
}

#[test]
fn server_frames_use_the_shortest_length() {
    let mut head = [0; MAX_HEADER];
    assert_eq!(text_header(5, &mut head), 2);
    assert_eq!(head[..2], [0x81, 5]);
    assert_eq!(text_header(300, &mut head), 4);
    assert_eq!(head[..4], [0x81, 126, 1, 44]);
    assert_eq!(text_header(70_000, &mut head), 10);
    let frame = close(1001, &"é".repeat(100));
    assert!(frame.len() <= 2 + MAX_CONTROL);
    assert!(
        std::str::from_utf8(&frame[4..]).is_ok(),
        "cut inside a character"
    );
    assert_eq!(pong(b"abc"), [0x8A, 3, b'a', b'b', b'c']);
}
