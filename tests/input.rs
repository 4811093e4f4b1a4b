//! Bad input: every kind gets a clear answer or is cleaned, and nobody else is affected.

mod common;

use common::TestServer;

/// A line over `--max-line` gets an error, is not relayed, and the connection stays usable.
#[test]
fn overlong_line_gets_an_error_and_the_connection_stays_usable() {
    let server = TestServer::with(|c| c.max_line = 16);
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send(&"x".repeat(17));
    c[0].expect("*** line too long (over 16 bytes), dropped");
    c[0].send(&"y".repeat(16));
    c[1].expect(&format!("<{nick}> {}", "y".repeat(16)));
}

/// Megabytes without a newline: one error, the tail is thrown away as it arrives, and the
/// next line goes through.
#[test]
fn endless_line_is_dropped_up_to_its_newline() {
    let server = TestServer::with(|c| c.max_line = 1024);
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    let junk = vec![b'z'; 4 * 1024 * 1024];
    c[0].send_bytes(&junk);
    c[0].send_bytes(b"still junk\nafter\n");
    c[0].expect("*** line too long (over 1024 bytes), dropped");
    c[1].expect(&format!("<{nick}> after"));
    assert_eq!(c[0].sync(), Vec::<String>::new(), "reported more than once");
}

/// Invalid UTF-8 is replaced with U+FFFD, the rest of the line kept.
#[test]
fn invalid_utf8_is_replaced() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send_bytes(b"caf\xe9 \xff\xfe ok\n");
    c[1].expect(&format!("<{nick}> caf\u{fffd} \u{fffd}\u{fffd} ok"));
}

/// Control characters (escape sequences, NUL, DEL, C1) never reach another terminal.
#[test]
fn escape_sequences_are_stripped_before_relaying() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send_bytes("\x1b[2J\x1b]0;pwned\x07red\x00\x7f \u{9b}1m\tend\n".as_bytes());
    c[1].expect(&format!("<{nick}> [2J]0;pwnedred 1m\tend"));
}

/// Telnet's `\r\n` line endings are accepted; a lone `\r` inside a line is removed.
#[test]
fn crlf_line_endings_are_accepted() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send_bytes(b"one\r\ntw\ro\r\n/who\r\n");
    c[1].expect(&format!("<{nick}> one"));
    c[1].expect(&format!("<{nick}> two"));
    let who = format!("*** 2 users in #lobby: {}, {}", c[0].nick, c[1].nick);
    c[0].expect(&who);
}

/// A line sent one byte per write is reassembled.
#[test]
fn line_sent_byte_by_byte_is_reassembled() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    for b in b"slowly typed\n" {
        c[0].send_bytes(&[*b]);
    }
    c[1].expect(&format!("<{nick}> slowly typed"));
}

/// Blank lines are not relayed.
#[test]
fn blank_lines_are_not_relayed() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    c[0].send_bytes(b"\n   \n\t\n");
    assert_eq!(c[1].sync(), Vec::<String>::new());
}
