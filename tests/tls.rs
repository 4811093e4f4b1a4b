//! TLS in the same loop: TLS and plain clients share one room, and a client that gets TLS
//! wrong (garbage, a stalled handshake, a stalled reader) affects nobody else.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::tls::TestCert;
use common::{Client, DEADLINE, ServerProcess, TestServer};
use socket2::{Domain, Socket, Type};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A TLS client and a plain client are in one room: each hears the other join and talk.
#[test]
fn tls_and_plain_clients_chat_with_each_other() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |_| {});
    let mut plain = server.connect();
    let mut secure = Client::connect_tls(server.tls_addr.unwrap(), &cert);
    plain.expect(&format!("*** {} joined", secure.nick));

    secure.send("hello from TLS");
    plain.expect(&format!("<{}> hello from TLS", secure.nick));
    plain.send("hello from plain TCP");
    secure.expect(&format!("<{}> hello from plain TCP", plain.nick));

    // Commands work the same way over TLS.
    secure.send(&format!("/msg {} psst", plain.nick));
    plain.expect(&format!("*{}* psst", secure.nick));
    let who = secure.sync();
    assert!(who.is_empty(), "nothing else was owed: {who:?}");
}

/// Bytes that are not a TLS handshake are rejected by rustls and the connection closed, and
/// the room never hears of it; the clients already there carry on.
#[test]
fn garbage_instead_of_a_handshake_is_closed_without_disturbing_anyone() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| c.stats_udp = Some(loopback()));
    let mut a = Client::connect_tls(server.tls_addr.unwrap(), &cert);
    let mut b = server.connect();
    a.expect(&format!("*** {} joined", b.nick));

    let mut garbage = Client::raw(server.tls_addr.unwrap());
    garbage.send("NICK hello, is this plain text?");
    // The server answers with at most a TLS alert, then closes.
    let answer = garbage.read_all_bytes();
    assert!(answer.len() < 64, "more than an alert: {answer:?}");
    assert!(
        !String::from_utf8_lossy(&answer).contains("***"),
        "server spoke to a non-TLS client: {answer:?}"
    );

    a.send("still here");
    b.expect(&format!("<{}> still here", a.nick));
    // Nobody heard of the stranger: the next thing either sees is its own /who answer.
    assert!(a.sync().is_empty());
    assert!(b.sync().is_empty());
    let stats = server.ask_stats(b"stats");
    assert!(stats.contains("\"tls_error\":1"), "{stats}");
}

/// A client that connects to the TLS port and never finishes its handshake is closed when
/// the handshake timeout runs out, and was never in the room.
#[test]
fn stalled_handshake_is_closed_after_the_timeout() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| {
        c.stats_udp = Some(loopback());
        if let Some(tls) = &mut c.tls {
            tls.handshake_timeout = Duration::from_millis(300);
        }
    });
    let mut watcher = server.connect();
    // Half of a TLS record header: a handshake that has started and then stops.
    let mut staller = TcpStream::connect(server.tls_addr.unwrap()).unwrap();
    staller.write_all(&[0x16, 0x03, 0x01]).unwrap();
    staller.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    let closed = staller.read_to_end(&mut rest);
    assert!(closed.is_ok(), "no orderly close: {closed:?}");

    let stats = server.ask_stats(b"stats");
    assert!(stats.contains("\"handshake_timeout\":1"), "{stats}");
    assert!(stats.contains("\"clients\":1"), "{stats}");
    assert!(
        watcher.sync().is_empty(),
        "the stalled client was announced"
    );
}

/// A TLS client that reads slowly through a tiny receive buffer still gets every line, in
/// order: encrypted records wait for the socket and resume after partial writes.
#[test]
fn slow_tls_reader_gets_every_line_in_order() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| c.max_output = 64 << 20);
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.tls_addr.unwrap().into()).unwrap();
    let mut reader = Client::tls_over(socket.into(), &cert);
    reader.read_welcome();
    let mut sender = server.connect();
    reader.expect(&format!("*** {} joined", sender.nick));

    // Several megabytes: far more than the kernel's buffers hold for one loopback socket,
    // so the server's TLS writes stop and resume many times.
    const LINES: usize = 3000;
    let padding = "p".repeat(1000);
    let writer = std::thread::spawn(move || {
        for i in 0..LINES {
            sender.send(&format!("{i} {padding}"));
        }
        sender
    });
    for i in 0..LINES {
        let line = reader.line();
        let expected_start = format!("<guest-2> {i} ");
        assert!(line.starts_with(&expected_start), "line {i}: {line:.40}");
    }
    writer.join().unwrap();
}

/// TLS output counts against `--max-output`: a TLS client that stops reading is sent away as
/// too slow, and everyone else gets every line.
#[test]
fn tls_client_that_stops_reading_is_cut_off_and_nobody_else_loses_a_line() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| {
        c.max_output = 64 * 1024;
        c.output_grace = Duration::from_millis(200);
    });
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.tls_addr.unwrap().into()).unwrap();
    let mut stalled = Client::tls_over(socket.into(), &cert);
    stalled.read_welcome();
    let mut reader = server.connect();
    let mut sender = server.connect();
    reader.expect(&format!("*** {} joined", sender.nick));

    // The stalled client reads nothing more. The sender talks until the server gives up on
    // it, and the reader must have every line up to then.
    let padding = "x".repeat(1000);
    let mut sent = 0;
    let (before, notice) = loop {
        sender.send(&format!("{sent} {padding}"));
        sent += 1;
        // Read what arrived so far, in step with the sender.
        let line = reader.line();
        if line.starts_with("*** ") {
            break (sent, line);
        }
        assert!(line.starts_with(&format!("<{}> {} ", sender.nick, sent - 1)));
        assert!(sent < 100_000, "the stalled TLS client was never cut off");
    };
    assert_eq!(
        notice,
        format!(
            "*** {} left (too slow: over 65536 bytes of output waiting)",
            stalled.nick
        )
    );
    // The last line sent before the notice was queued for the reader too.
    reader.expect(&format!("<{}> {} {padding}", sender.nick, before - 1));
}

/// On shutdown a TLS client gets the notice and then `close_notify`: the session ends cleanly
/// (a read returns end-of-stream, not an "unexpected EOF" error).
#[test]
fn shutdown_ends_tls_sessions_with_close_notify() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |_| {});
    let mut client = Client::connect_tls(server.tls_addr.unwrap(), &cert);
    server.stop().unwrap();
    let mut rest = Vec::new();
    let mut line = String::new();
    while let Ok(Some(l)) = client.try_line() {
        line = l;
        rest.push(line.clone());
    }
    assert_eq!(line, "*** server shutting down", "{rest:?}");
    // try_line stopped at Ok(None): a clean TLS end of stream. Without close_notify rustls
    // reports UnexpectedEof, which try_line would have returned as an error.
    assert!(matches!(client.try_line(), Ok(None)));
}

/// A TLS-only server has no plain listener.
#[test]
fn tls_only_server_listens_only_for_tls() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| c.bind.clear());
    assert_eq!(server.tls_addr, Some(server.addr));
    let mut client = Client::connect_tls(server.addr, &cert);
    assert!(client.sync().is_empty());
}

/// Certificate trouble stops the binary before it listens, with one sentence that names the
/// file, and a failing exit status.
#[test]
fn bad_certificate_or_key_is_one_sentence_and_a_failing_exit() {
    let cert = TestCert::new();
    let missing = cert.dir().join("missing.pem");
    let not_pem = cert.dir().join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let other = TestCert::new();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cases = [
        (
            path(&missing),
            path(&cert.key),
            "cannot read TLS certificate",
        ),
        (path(&not_pem), path(&cert.key), "holds no PEM certificate"),
        (
            path(&cert.cert),
            path(&not_pem),
            "cannot read TLS private key",
        ),
        (
            path(&cert.cert),
            path(&other.key),
            "cannot be used with certificate",
        ),
    ];
    for (cert_file, key_file, expected) in cases {
        let output = start_with_tls_files(&cert_file, &key_file);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{cert_file} {key_file}: started");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("pollchat: ") && last.contains(expected),
            "{cert_file} {key_file}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The server binary started with this certificate and key, run until it exits (it is
/// expected to refuse them and exit at once).
fn start_with_tls_files(cert_file: &str, key_file: &str) -> std::process::Output {
    common::guard::output(
        Command::new(env!("CARGO_BIN_EXE_pollchat"))
            .args(["--bind", "127.0.0.1:0", "--tls-bind", "127.0.0.1:0"])
            .args(["--tls-cert", cert_file, "--tls-key", key_file]),
    )
}

/// The sentences for a key that does not fit say what to do, and are not pki-types' or
/// rustls's `Debug` text (`MissingSectionEnd { end_marker: [45, 45, ...] }`, `KeyMismatch`).
#[test]
fn tls_key_trouble_is_a_sentence_that_says_what_to_do() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let key_pem = std::fs::read_to_string(&cert.key).unwrap();
    let cut_key = cert.dir().join("cut-key.pem");
    std::fs::write(&cut_key, &key_pem[..key_pem.len() / 2]).unwrap();
    let no_key = cert.dir().join("no-key.pem");
    std::fs::write(&no_key, "this is not a key\n").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cert_file = path(&cert.cert);
    let cases = [
        (
            path(&other.key),
            format!(
                "pollchat: the TLS key {} cannot be used with certificate {cert_file}: it is \
                 not that certificate's key; give the key the certificate was made with",
                path(&other.key)
            ),
        ),
        (
            path(&cut_key),
            format!(
                "pollchat: cannot read TLS private key {}: a PEM section has no END line: the \
                 file is cut short, make it again",
                path(&cut_key)
            ),
        ),
        (
            path(&no_key),
            format!(
                "pollchat: cannot read TLS private key {}: it holds no -----BEGIN PRIVATE \
                 KEY----- (or RSA or EC PRIVATE KEY) section; give the key the certificate \
                 was made with",
                path(&no_key)
            ),
        ),
    ];
    for (key_file, expected) in cases {
        let output = start_with_tls_files(&cert_file, &key_file);
        assert_eq!(output.status.code(), Some(1), "{key_file}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().last(), Some(expected.as_str()), "{stderr}");
    }
}

/// A real `openssl s_client` session against the binary, with a certificate made by
/// `scripts/gen-cert.sh`: openssl verifies it, gets the welcome, and chats with a plain client.
#[test]
fn openssl_s_client_chats_through_the_tls_listener_with_a_gen_cert_certificate() {
    if !common::peer_present(Command::new("openssl").arg("version"), "openssl (s_client)") {
        return;
    }
    let scratch = TestCert::new();
    let dir = scratch.dir().join("gen-cert");
    let made = common::guard::output(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gen-cert.sh")).arg(&dir),
    );
    assert!(made.status.success(), "gen-cert.sh: {made:?}");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut server = ServerProcess::start(&[
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let tls_line = server.wait_for_log("(TLS)");
    let tls_addr = tls_line.split(' ').rev().nth(1).unwrap().to_string();
    let mut plain = Client::connect(server.addr);

    let mut s_client = common::Interactive::spawn(
        Command::new("openssl")
            .args(["s_client", "-connect", &tls_addr, "-quiet"])
            .args(["-CAfile", cert.to_str().unwrap()])
            .args(["-verify_return_error", "-servername", "localhost"]),
    );
    let welcome = s_client.wait_for_output("*** welcome").pop().unwrap();
    let nick = welcome.split(' ').nth(6).unwrap().to_string();
    plain.expect(&format!("*** {nick} joined"));
    s_client.send("hello from openssl");
    plain.expect(&format!("<{nick}> hello from openssl"));
    plain.send("hello, s_client");
    s_client.wait_for_output(&format!("<{}> hello, s_client", plain.nick));
}

/// A TLS client meets the same limits as a plain one: an overlong line is dropped with the
/// same notice, and a flood is slowed down, never cut short.
#[test]
fn tls_client_meets_the_line_limit_and_flood_control_like_a_plain_one() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| {
        c.max_line = 16;
        c.rate = 20.0;
        c.burst = 2;
    });
    let mut secure = Client::connect_tls(server.tls_addr.unwrap(), &cert);
    let mut other = server.connect();
    secure.expect(&format!("*** {} joined", other.nick));

    secure.send(&"y".repeat(40));
    secure.expect("*** line too long (over 16 bytes), dropped");

    // Ten lines at once against a burst of two: all arrive, in order, paced by the server.
    let lines: Vec<String> = (0..10).map(|i| format!("flood {i}")).collect();
    secure.send(&lines.join("\n"));
    for line in &lines {
        other.expect(&format!("<{}> {line}", secure.nick));
    }
}

/// Refusals that need words are made after the handshake, encrypted: a TLS client over
/// `--max-per-ip` reads why, then gets `close_notify`. A full server closes a new TLS
/// connection before its handshake, since it cannot tell it anything.
#[test]
fn tls_refusals_are_told_encrypted_or_made_before_the_handshake() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| c.max_per_ip = 1);
    let _first = server.connect();
    let mut second = Client::raw_tls(server.tls_addr.unwrap(), &cert);
    assert_eq!(
        second.read_to_eof(),
        vec!["*** too many connections from your address".to_string()]
    );

    let full = TestServer::with_tls(&cert, |c| c.max_clients = Some(1));
    let _only = full.connect();
    let mut late = Client::raw_tls(full.tls_addr.unwrap(), &cert);
    let refused = late.try_line();
    assert!(
        refused.is_err(),
        "a full server let a TLS client in: {refused:?}"
    );
}

/// A client that pipes its input sends its last handshake message, its lines, `close_notify`
/// and FIN at once, and the server may read them all in one go. Its lines are still relayed
/// and answered, and it gets everything it is owed before the server closes.
#[test]
fn lines_sent_with_the_last_handshake_message_and_the_close_are_all_answered() {
    use rustls::ClientConnection;
    use rustls::pki_types::ServerName;

    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |_| {});
    let mut listener = server.connect();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = ClientConnection::new(cert.client_config(), name).unwrap();
    let mut socket = TcpStream::connect(server.tls_addr.unwrap()).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    // The ClientHello, then the server's whole flight.
    while tls.wants_write() {
        tls.write_tls(&mut socket).unwrap();
    }
    while tls.is_handshaking() {
        tls.read_tls(&mut socket).unwrap();
        tls.process_new_packets().unwrap();
    }
    // Now our Finished, two lines and close_notify, in one write, and then FIN.
    tls.writer()
        .write_all(b"hello from a pipe\n/who\n")
        .unwrap();
    tls.send_close_notify();
    let mut flight = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut flight).unwrap();
    }
    socket.write_all(&flight).unwrap();
    socket.shutdown(std::net::Shutdown::Write).unwrap();

    let mut received = Vec::new();
    loop {
        let n = tls.read_tls(&mut socket).unwrap();
        let state = tls.process_new_packets().unwrap();
        let mut plaintext = vec![0; state.plaintext_bytes_to_read()];
        tls.reader().read_exact(&mut plaintext).unwrap();
        received.extend_from_slice(&plaintext);
        if n == 0 || state.peer_has_closed() {
            break;
        }
    }
    let received = String::from_utf8(received).unwrap();
    let lines: Vec<&str> = received.lines().collect();
    assert_eq!(lines.len(), 2, "{received:?}");
    assert!(
        lines[0].starts_with("*** welcome to pollchat, you are "),
        "{received:?}"
    );
    assert_eq!(
        lines[1],
        format!("*** 2 users in #lobby: {}, guest-2", listener.nick)
    );
    listener.expect("*** guest-2 joined");
    listener.expect("<guest-2> hello from a pipe");
}
