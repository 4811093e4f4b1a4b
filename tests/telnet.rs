//! A `telnet` client's commands (RFC 854, 860) on the line protocol, over real sockets: what
//! Ctrl-C sends is answered byte for byte, option negotiation is refused, and no command
//! byte reaches anyone's screen.

mod common;

use pollchat::telnet::{MAX_SUBNEGOTIATION, Piece, SB, Telnet};

use common::tls::TestCert;
use common::{Client, TestServer, is_who_reply};

const IAC: u8 = pollchat::telnet::IAC;
const WILL: u8 = 0xfb;
const WONT: u8 = 0xfc;
const DO: u8 = 0xfd;
const DONT: u8 = 0xfe;
const IP: u8 = 0xf4;
const TIMING_MARK: u8 = 0x06;
const ECHO: u8 = 0x01;
const NAWS: u8 = 0x1f;

/// Ctrl-C in telnet with `hel` typed: `IAC IP IAC DO TIMING-MARK`. The timing mark is
/// answered `IAC WILL TIMING-MARK` exactly (telnet shows nothing until it is), `hel` is
/// thrown away, the next command works, and the other client sees none of it.
fn ctrl_c_then_a_command(c: &mut [Client]) {
    c[0].send_bytes(b"hel");
    c[0].send_bytes(&[IAC, IP, IAC, DO, TIMING_MARK]);
    assert_eq!(c[0].bytes(3), [IAC, WILL, TIMING_MARK]);
    c[0].send_bytes(b"/who\r\n");
    let answer = c[0].line();
    assert!(is_who_reply(&answer), "{answer:?}");
    assert_eq!(
        c[1].sync(),
        Vec::<String>::new(),
        "the other client saw something"
    );
}

/// The bug of issue 21: the line after Ctrl-C reached everyone as `<user> ����/who`.
#[test]
fn telnet_ctrl_c_is_answered_and_nothing_reaches_the_chat() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    ctrl_c_then_a_command(&mut c);
}

/// The same over the TLS listener (`telnet-ssl`, `openssl s_client` in a terminal).
#[test]
fn telnet_ctrl_c_is_answered_over_tls() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |_| {});
    let tls = server.tls_addr.expect("a TLS listener");
    let mut plain = server.connect();
    let secure = Client::connect_tls(tls, &cert);
    plain.expect(&format!("*** {} joined", secure.nick));
    let mut c = vec![secure, plain];
    ctrl_c_then_a_command(&mut c);
}

/// Options are refused (`DO ECHO` with `WONT ECHO`, `WILL NAWS` with `DONT NAWS`), and
/// refusals are never answered: the next thing the client gets is the answer to `/who`.
#[test]
fn telnet_negotiation_is_refused_and_refusals_are_not_answered() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.send_bytes(&[IAC, DO, ECHO]);
    assert_eq!(c.bytes(3), [IAC, WONT, ECHO]);
    c.send_bytes(&[IAC, WILL, NAWS]);
    assert_eq!(c.bytes(3), [IAC, DONT, NAWS]);
    c.send_bytes(&[IAC, DONT, ECHO, IAC, WONT, NAWS]);
    c.send_bytes(b"/who\n");
    let answer = c.line();
    assert!(is_who_reply(&answer), "{answer:?}");
}

/// A command split across writes (and so across reads) is still one command, and the text
/// around it is still one line; a subnegotiation inside a line is swallowed whole; `IAC
/// IAC` is a 0xFF byte, which the UTF-8 sanitiser replaces.
#[test]
fn telnet_commands_split_across_reads_and_escaped_bytes() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    for part in [&b"x"[..], &[IAC], &[DO], &[TIMING_MARK]] {
        c[0].send_bytes(part);
    }
    assert_eq!(c[0].bytes(3), [IAC, WILL, TIMING_MARK]);
    c[0].send_bytes(&[b'y', IAC, 0xfa, NAWS, 0, 80, 0, 24, IAC]);
    c[0].send_bytes(&[0xf0, b'z', b'\n']);
    c[1].expect(&format!("<{nick}> xyz"));
    c[0].send_bytes(&[b'a', IAC, IAC, b'b', b'\r', b'\n']);
    c[1].expect(&format!("<{nick}> a\u{fffd}b"));
}

/// `IAC AYT` (are you there) gets a sign of life.
#[test]
fn telnet_are_you_there_is_answered() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.send_bytes(&[IAC, 0xf6]);
    c.expect("*** still here");
}

// The parser alone (`src/telnet.rs`), piece by piece.

/// Every piece of `chunks`, fed one after the other into one parser.
fn pieces(chunks: &[&[u8]]) -> Vec<Piece<'static>> {
    let mut telnet = Telnet::default();
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(piece) = telnet.next(&mut input) {
            out.push(match piece {
                Piece::Text(text) => Piece::Text(text.to_vec().leak()),
                Piece::Reply(r) => Piece::Reply(r),
                Piece::Interrupt => Piece::Interrupt,
                Piece::AreYouThere => Piece::AreYouThere,
            });
        }
    }
    out
}

#[test]
fn parser_text_without_iac_is_one_piece() {
    assert_eq!(pieces(&[b"hello\r\n"]), [Piece::Text(b"hello\r\n")]);
}

#[test]
fn parser_ctrl_c_interrupts_and_the_timing_mark_is_answered() {
    let got = pieces(&[b"hel\xff\xf4\xff\xfd\x06/who\r\n"]);
    assert_eq!(
        got,
        [
            Piece::Text(b"hel"),
            Piece::Interrupt,
            Piece::Reply([IAC, WILL, TIMING_MARK]),
            Piece::Text(b"/who\r\n"),
        ]
    );
}

#[test]
fn parser_a_sequence_split_across_reads_is_kept_whole() {
    let got = pieces(&[b"a\xff", b"\xfd", b"\x01b"]);
    assert_eq!(
        got,
        [
            Piece::Text(b"a"),
            Piece::Reply([IAC, WONT, 1]),
            Piece::Text(b"b")
        ]
    );
}

#[test]
fn parser_options_are_refused_and_refusals_never_answered() {
    let got = pieces(&[b"\xff\xfd\x01\xff\xfb\x03\xff\xfe\x01\xff\xfc\x03"]);
    assert_eq!(
        got,
        [Piece::Reply([IAC, WONT, 1]), Piece::Reply([IAC, DONT, 3])]
    );
}

#[test]
fn parser_iac_iac_is_a_literal_byte() {
    assert_eq!(
        pieces(&[b"a\xff\xffb"]),
        [Piece::Text(b"a"), Piece::Text(&[IAC]), Piece::Text(b"b")]
    );
}

#[test]
fn parser_a_subnegotiation_is_swallowed_whole() {
    let got = pieces(&[b"x\xff\xfa\x1f\x00\xff\xff", b"\x00\x18\xff\xf0y"]);
    assert_eq!(got, [Piece::Text(b"x"), Piece::Text(b"y")]);
}

#[test]
fn parser_an_unfinished_subnegotiation_ends_at_its_bound() {
    let mut input = vec![IAC, SB];
    input.extend(std::iter::repeat_n(
        b'z',
        usize::from(MAX_SUBNEGOTIATION) + 1,
    ));
    input.extend(b"ok");
    assert_eq!(pieces(&[&input]), [Piece::Text(b"ok")]);
}

#[test]
fn parser_other_commands_are_swallowed() {
    let got = pieces(&[b"a\xff\xf1\xff\xf5\xff\xf6\xff\xf8b"]);
    assert_eq!(
        got,
        [
            Piece::Text(b"a"),
            Piece::AreYouThere,
            Piece::Interrupt,
            Piece::Text(b"b")
        ]
    );
}
