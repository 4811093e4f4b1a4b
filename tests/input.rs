//! Bad input: every kind gets a clear answer or is cleaned, and nobody else is affected.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{Client, DEADLINE, Guard, TestServer};
use pollchat::config::HttpSettings;

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

/// Invalid UTF-8 is replaced with U+FFFD, the rest of the line kept. (Not 0xFF: that is
/// Telnet's command byte, see tests/telnet.rs.)
#[test]
fn invalid_utf8_is_replaced() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send_bytes(b"caf\xe9 \xfe\xfd ok\n");
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

/// What `curl http://127.0.0.1:PORT/` sends to the chat port.
const CURL: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// Whether `line` shows anything of an HTTP request.
fn shows_request(line: &str) -> bool {
    ["GET", "Host:", "User-Agent", "Accept"]
        .iter()
        .any(|word| line.contains(word))
}

/// Issue 21: `curl` on the chat port posted its request to the whole lobby and its history.
/// Now a first line that is an HTTP request gets one `*** ` line that says where the web
/// page is, and the close; nobody sees the request, and a newcomer is not replayed it. (It
/// joined on connect, as every plain client does, so the room may hear it come and go.)
#[test]
fn http_request_on_the_chat_port_is_answered_not_broadcast() {
    let server = TestServer::with(|c| {
        c.http = Some(HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))));
    });
    let page = server.http_addr.expect("an HTTP listener");
    let mut c = server.clients(1);
    c[0].send("before");
    let mut curl = Client::raw(server.addr);
    curl.send_bytes(CURL);
    let got = curl.read_to_eof();
    let answer = format!(
        "*** this is a chat port, not a web server: connect with nc or telnet, \
         or open http://{page}/"
    );
    assert_eq!(got.last(), Some(&answer), "{got:?}");
    assert_eq!(got.iter().filter(|l| **l == answer).count(), 1, "{got:?}");
    let seen = c[0].sync();
    assert!(!seen.iter().any(|l| shows_request(l)), "{seen:?}");
    let mut late = server.connect();
    let replayed = late.sync();
    assert!(
        replayed.iter().any(|l| l.ends_with("> before")),
        "{replayed:?}"
    );
    assert!(!replayed.iter().any(|l| shows_request(l)), "{replayed:?}");
}

/// What counts as an HTTP request line, and what is chat.
#[test]
fn http_request_lines_are_told_from_chat() {
    use pollchat::protocol::is_http_request;
    for line in [
        "GET / HTTP/1.1",
        "POST /api HTTP/1.0",
        "PRI * HTTP/2.0",
        "M-SEARCH * HTTP/1.1",
    ] {
        assert!(is_http_request(line), "{line}");
    }
    for line in [
        "GET out of here",
        "get / HTTP/1.1",
        "GET / HTTP/1.1 now",
        "GET /",
        "GET  HTTP/1.1",
        "hello world HTTP/1.1",
        "GET / HTTP/x.1",
    ] {
        assert!(!is_http_request(line), "{line}");
    }
}

/// Without `--http-bind` the answer only says what the port is.
#[test]
fn http_request_without_a_web_listener_is_told_what_the_port_is() {
    let server = TestServer::start();
    let mut curl = Client::raw(server.addr);
    curl.send_bytes(CURL);
    let got = curl.read_to_eof();
    let answer = "*** this is a chat port, not a web server: connect with nc or telnet";
    assert_eq!(got.last().map(String::as_str), Some(answer), "{got:?}");
}

/// A first line that only starts like a request is chat, and so is a request line that is
/// not the first.
#[test]
fn a_first_line_that_is_not_a_request_line_is_chat() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send("GET out of here");
    c[1].expect(&format!("<{nick}> GET out of here"));
    c[0].send("GET / HTTP/1.1");
    c[1].expect(&format!("<{nick}> GET / HTTP/1.1"));
}

/// The start of a TLS ClientHello: a handshake record (22, version 3.1) holding a
/// ClientHello (1) for TLS 1.2 (3.3), its random, and the rest of a real one.
const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\x45\x01\x00\x00\x41\x03\x03\
    \x5b\x90\x9d\x9b\x72\x0b\xbc\x0c\xbc\x2b\x92\xa8\x48\x97\xcf\xbd\
    \x39\x04\xcc\x16\x0a\x85\x03\x90\x9f\x77\x04\x33\xd4\xde\x00\x00\
    \x00\x02\xc0\x2f\x01\x00\x00\x16\x00\x0a\x00\x04\x00\x02\x00\x1d\
    \x00\x0d\x00\x04\x00\x02\x04\x01\x00\x17\x00\x00\xff\x01\x00\x01\x00";

/// A TLS client on the plain port: closed, and its bytes never reach anyone as lines. (It
/// joined on connect, as every plain client does, so the room may hear it come and go.)
#[test]
fn tls_client_hello_on_the_plain_port_is_closed_not_broadcast() {
    let server = TestServer::start();
    let mut c = server.clients(1);
    let mut tls = Client::raw(server.addr);
    tls.send_bytes(CLIENT_HELLO);
    let got = tls.read_to_eof();
    assert!(got.len() <= 1, "answered more than the welcome: {got:?}");
    let seen = c[0].sync();
    assert!(!seen.iter().any(|l| l.starts_with('<')), "{seen:?}");
}

/// `openssl s_client` against the plain port fails, and ends (when openssl is installed).
#[test]
fn openssl_s_client_on_the_plain_port_fails_cleanly() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipped");
        return;
    }
    let server = TestServer::start();
    let mut c = server.clients(1);
    let mut client = Guard::spawn(
        Command::new("openssl")
            .args(["s_client", "-connect", &server.addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let status = client.wait_timeout(DEADLINE).expect("s_client did not end");
    assert!(!status.success(), "s_client succeeded against a plain port");
    let seen = c[0].sync();
    assert!(!seen.iter().any(|l| l.starts_with('<')), "{seen:?}");
}
