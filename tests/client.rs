//! `pollchat-connect`, the terminal client, driven as a real process: lines piped into its
//! stdin, its stdout and stderr read line by line, its exit status checked. Against the
//! in-process server over plain TCP, and against `openssl s_server` for TLS (the test says
//! loudly that it skipped if `openssl` is missing).

#![allow(
    clippy::unwrap_used,
    reason = "the helpers here are test code too: a failed unwrap is a failed test"
)]

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::tls::TestCert;
use common::{ClientProcess, DEADLINE, OpensslServer, TempDir, TestServer};
use socket2::SockRef;

/// The client's welcome line, which names it.
fn welcome_nick(line: &str) -> String {
    line.strip_prefix("*** welcome to pollchat, you are ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("not a welcome line: {line:?}"))
        .to_string()
}

/// Starts `pollchat-connect` to `server` and waits for its welcome; returns it and its nick.
fn connected_client(server: &TestServer) -> (ClientProcess, String) {
    let mut client = ClientProcess::start(&[&server.addr.to_string()]);
    let welcome = client.wait_for_output("*** welcome").pop().unwrap();
    (client, welcome_nick(&welcome))
}

/// Lines typed into the client reach another client, and that client's lines are printed.
#[test]
fn connect_sends_typed_lines_and_prints_received_ones() {
    let server = TestServer::start();
    let mut bob = server.connect();
    let (mut client, nick) = connected_client(&server);
    bob.expect(&format!("*** {nick} joined"));

    client.send("hello from a terminal");
    bob.expect(&format!("<{nick}> hello from a terminal"));
    bob.send("hi back");
    client.wait_for_output(&format!("<{}> hi back", bob.nick));

    client.close_stdin();
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

/// `printf '/who\n' | pollchat-connect ...`: the answer is printed before the client exits
/// on the end of its input, with status 0 and a one-line reason.
#[test]
fn connect_prints_the_answer_to_piped_input_before_exiting_with_status_0() {
    let server = TestServer::start();
    let exit = ClientProcess::piped(&[&server.addr.to_string()], &["/who"]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(exit.stdout.len(), 2, "{exit:?}");
    assert!(
        exit.stdout[1].starts_with("*** 1 user in #lobby: guest-"),
        "{exit:?}"
    );
    assert_eq!(exit.stderr, ["pollchat: end of input; disconnected"]);
}

/// `/quit` ends the session without waiting for the end of stdin: the server's goodbye is
/// printed, and the status (3) says the user quit.
#[test]
fn connect_quit_prints_the_goodbye_and_exits_with_status_3() {
    let server = TestServer::start();
    let (mut client, _) = connected_client(&server);
    client.send("/quit see you");
    client.wait_for_output("*** bye");
    // stdin is still open: /quit alone ended the session.
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(3), "{exit:?}");
    assert_eq!(exit.stderr, ["pollchat: you quit; disconnected"]);
}

/// The server shutting down: its last line is printed, stderr says the server closed, and
/// the status is 4.
#[test]
fn connect_server_shutdown_exits_with_status_4() {
    let server = TestServer::start();
    let (mut client, _) = connected_client(&server);
    server.stop().unwrap();
    client.wait_for_output("*** server shutting down");
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(4), "{exit:?}");
    assert_eq!(exit.stderr, ["pollchat: the server closed the connection"]);
}

/// Nobody listening: one sentence on stderr, status 1, nothing on stdout.
#[test]
fn connect_refused_is_one_sentence_and_status_1() {
    // A socket bound to a port and never listening: connecting there is refused, and while
    // the socket is held no other socket can bind that port (no SO_REUSEADDR on it), so no
    // other test's server can start listening there. (A listener bound and closed again
    // left the port free for another test to take before the client connected.)
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = reserved.local_addr().unwrap().as_socket().unwrap();
    let mut client = ClientProcess::start_with(&[&addr.to_string()], Stdio::null(), &[]);
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: cannot connect to {addr}: connection refused (is the server running?)"
        )]
    );
}

/// stdin redirected from a regular file (which epoll refuses to watch) is read all the same,
/// including a last line without a newline.
#[test]
fn connect_reads_stdin_from_a_regular_file() {
    let server = TestServer::start();
    let dir = TempDir::new();
    let input = dir.file("input.txt", b"/nick filer\n/who");
    let stdin = Stdio::from(File::open(&input).unwrap());
    let mut client = ClientProcess::start_with(&[&server.addr.to_string()], stdin, &[]);
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(
        exit.stdout[1..],
        [
            "*** guest-1 is now known as filer",
            "*** 1 user in #lobby: filer"
        ]
    );
}

/// A file much larger than what the client queues (and than the kernel's buffers) goes out
/// complete and in order: the client reads stdin only as fast as the server takes it.
#[test]
fn connect_sends_a_large_file_completely_and_in_order() {
    const LINES: usize = 30_000;
    let server = TestServer::start();
    let mut bob = server.connect();
    let dir = TempDir::new();
    let mut text = String::new();
    for n in 0..LINES {
        text.push_str(&format!(
            "line {n} of a long file, padded to be a bit longer\n"
        ));
    }
    let input = dir.file("big.txt", text.as_bytes());
    let stdin = Stdio::from(File::open(&input).unwrap());
    let mut client = ClientProcess::start_with(&[&server.addr.to_string()], stdin, &[]);
    let (_, joined) = bob.read_until(|l| l.ends_with(" joined"));
    let nick = joined
        .strip_prefix("*** ")
        .and_then(|l| l.strip_suffix(" joined"))
        .unwrap()
        .to_string();
    for n in 0..LINES {
        bob.expect(&format!(
            "<{nick}> line {n} of a long file, padded to be a bit longer"
        ));
    }
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

/// Into a pipe the client writes the lines exactly, with no colour codes, even for server
/// lines (which are coloured on a terminal).
#[test]
fn connect_writes_no_colour_codes_into_a_pipe() {
    let server = TestServer::start();
    let exit = ClientProcess::piped(&[&server.addr.to_string()], &["/help"]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(exit.stdout.len() > 3, "{exit:?}");
    for line in &exit.stdout {
        assert!(line.starts_with("*** "), "{line:?}");
        assert!(!line.contains('\x1b'), "{line:?}");
    }
}

/// `pollchat-connect ... | head -1`: once stdout's reader is gone, the next line received
/// ends the client quietly, with status 0 (a broken pipe is not a failure).
#[test]
fn connect_exits_quietly_with_status_0_when_stdout_is_closed() {
    let server = TestServer::start();
    let mut bob = server.connect();
    let mut child = common::Guard::spawn(
        Command::new(env!("CARGO_BIN_EXE_pollchat-connect"))
            .arg(server.addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Held until the end: stdin stays open, so only the closed stdout can end the client.
    let _stdin = child.take_stdin();
    let mut first = [0u8; 4];
    child.take_stdout().unwrap().read_exact(&mut first).unwrap();
    // That was the reader's last read: the pipe is closed now, like `head` exiting.
    bob.read_until(|l| l.ends_with(" joined"));
    let mut stderr = child.take_stderr().unwrap();
    let (tx, stderr_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
    });
    // Another test spawning a process at the wrong moment can hold a copy of the pipe's read
    // end for an instant (between its fork and its exec); a line written then fits in the
    // pipe and breaks nothing. So bob says something again until the client has exited.
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        bob.send("anyone there?");
        match child.wait_timeout(Duration::from_millis(200)) {
            Some(status) => break status,
            None => assert!(Instant::now() < deadline, "the client did not exit"),
        }
    };
    let stderr = stderr_rx.recv_timeout(DEADLINE).unwrap();
    let output = (status, &stderr);
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert!(stderr.is_empty(), "{output:?}");
}

/// Runs `pollchat-connect ADDR` on a pseudo-terminal (with util-linux `script`), with `input`
/// typed and then Ctrl-D, and returns what the terminal showed. `None` (said loudly) if
/// `script` is missing.
fn on_a_terminal(addr: &str, input: &str, env: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "\n*** SKIPPED: `script` (util-linux) is not installed; this test needs a \
             pseudo-terminal ***\n"
        );
        return None;
    }
    let command = format!("{} {addr}", env!("CARGO_BIN_EXE_pollchat-connect"));
    // Ended when the test ends: `script` first, and with it the terminal, whose hangup ends
    // the client on it.
    let mut script = common::Guard::spawn(
        Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    // `script` types this on the terminal, then Ctrl-D when its own input ends.
    let mut typing = script.take_stdin().unwrap();
    typing.write_all(input.as_bytes()).unwrap();
    drop(typing);
    let mut screen = script.take_stdout().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut shown = Vec::new();
        let _ = screen.read_to_end(&mut shown);
        let _ = tx.send(shown);
    });
    let Ok(shown) = rx.recv_timeout(DEADLINE) else {
        panic!("the client on a terminal did not finish in time");
    };
    assert!(script.wait().success());
    Some(String::from_utf8_lossy(&shown).into_owned())
}

/// On a terminal, server lines are coloured; with NO_COLOR set they are not.
#[test]
fn connect_colours_server_lines_on_a_terminal_unless_no_color() {
    let server = TestServer::start();
    let addr = server.addr.to_string();
    let Some(coloured) = on_a_terminal(&addr, "/who\n", &[]) else {
        return;
    };
    assert!(
        coloured.contains("\x1b[36m*** welcome to pollchat"),
        "{coloured:?}"
    );
    let Some(plain) = on_a_terminal(&addr, "/who\n", &[("NO_COLOR", "1")]) else {
        return;
    };
    assert!(plain.contains("*** welcome to pollchat"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

/// A server (or a relay) that sends escape sequences does not get them onto the terminal:
/// control characters are removed before a line is printed.
#[test]
fn connect_strips_escape_sequences_a_server_sends() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = ClientProcess::start(&[&addr.to_string()]);
    // accept() in a thread, so a client that never connects fails the test at the deadline.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(listener.accept());
    });
    let (mut socket, _) = rx.recv_timeout(DEADLINE).unwrap().unwrap();
    socket
        .write_all(b"*** \x1b[31mred\x1b[0m \x1b]0;title\x07text\x9b2J\r\n")
        .unwrap();
    drop(socket);
    let exit = client.wait_exit();
    // ESC and BEL are removed; the lone byte 0x9b (CSI in Latin-1) is not UTF-8, so it is
    // replaced; the CR of a CRLF ending is dropped.
    assert_eq!(exit.stdout, ["*** [31mred[0m ]0;titletext\u{fffd}2J"]);
    assert_eq!(exit.code, Some(4), "{exit:?}");
}

/// stdin is non-blocking while the client runs, and blocking again once it has exited: the
/// flag belongs to the open file description the shell shares, so it must be put back.
#[test]
fn connect_puts_stdin_back_to_blocking_when_input_ends() {
    let server = TestServer::start();
    let (ours, mut writer) = io::pipe().unwrap();
    let stdin = Stdio::from(ours.try_clone().unwrap());
    let mut client = ClientProcess::start_with(&[&server.addr.to_string()], stdin, &[]);
    client.wait_for_output("*** welcome");
    assert!(SockRef::from(&ours).nonblocking().unwrap());
    writer.write_all(b"/who\n").unwrap();
    client.wait_for_output(" in #lobby: ");
    drop(writer);
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(!SockRef::from(&ours).nonblocking().unwrap());
}

/// Ctrl-C (SIGINT) ends the client with status 130, and stdin's flag is put back on that
/// way out too.
#[test]
fn connect_puts_stdin_back_to_blocking_when_interrupted() {
    let server = TestServer::start();
    let (ours, _writer) = io::pipe().unwrap();
    let stdin = Stdio::from(ours.try_clone().unwrap());
    let mut client = ClientProcess::start_with(&[&server.addr.to_string()], stdin, &[]);
    client.wait_for_output("*** welcome");
    assert!(SockRef::from(&ours).nonblocking().unwrap());
    client.signal("INT");
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(130), "{exit:?}");
    assert_eq!(exit.stderr, ["pollchat: interrupted (SIGINT)"]);
    assert!(!SockRef::from(&ours).nonblocking().unwrap());
}

/// `--tls --ca CERT` against a TLS server with that self-signed certificate: lines go both
/// ways, and the end of input closes the session cleanly (close_notify), with status 0.
#[test]
fn connect_tls_with_ca_exchanges_lines_with_a_tls_server() {
    let certificate = TestCert::new();
    let Some(mut server) = OpensslServer::start(&certificate.cert, &certificate.key) else {
        return;
    };
    let ca = certificate.cert.to_str().unwrap();
    let mut client = ClientProcess::start(&[&server.addr.to_string(), "--tls", "--ca", ca]);
    client.send("hello over tls");
    server.wait_for_output("hello over tls");
    server.send("*** hello from the TLS server");
    client.wait_for_output("*** hello from the TLS server");
    client.close_stdin();
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    // s_server reports the close_notify it got as the end of the session.
    server.wait_for_output("DONE");
}

/// Without `--ca`, a self-signed certificate is not trusted: one clear sentence, status 5.
#[test]
fn connect_tls_refuses_an_untrusted_certificate_with_status_5() {
    let certificate = TestCert::new();
    let Some(server) = OpensslServer::start(&certificate.cert, &certificate.key) else {
        return;
    };
    let mut client = ClientProcess::start(&[&server.addr.to_string(), "--tls"]);
    // The refusal may come before this is typed: the client has exited, and that is fine.
    client.send_unless_gone("this line must never be sent");
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(5), "{exit:?}");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: TLS with {} failed: the server's certificate is not signed by an \
             authority this client trusts (for a self-signed server, pass its certificate \
             with --ca PEM)",
            server.addr
        )]
    );
}

/// `--insecure` connects to a server it cannot verify, and says loudly that it did not.
/// When that server closes the connection, the status is 4.
#[test]
fn connect_tls_insecure_connects_and_warns() {
    let certificate = TestCert::new();
    let Some(mut server) = OpensslServer::start(&certificate.cert, &certificate.key) else {
        return;
    };
    let mut client = ClientProcess::start(&[&server.addr.to_string(), "--tls", "--insecure"]);
    client.send("unverified but encrypted");
    server.wait_for_output("unverified but encrypted");
    server.close_stdin();
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(4), "{exit:?}");
    assert!(
        exit.stderr[0]
            .starts_with("pollchat: WARNING: --insecure: the server's certificate is NOT verified"),
        "{exit:?}"
    );
    assert_eq!(
        exit.stderr[1..],
        ["pollchat: the server closed the connection"]
    );
}

/// `--tls --ca CERT` against pollchat's own TLS listener: the client chats with a plain `nc`
/// style client through the one room, and the end of its input ends the session cleanly in
/// both directions (its close_notify, then the server's), with status 0.
#[test]
fn connect_tls_chats_through_pollchats_tls_listener_with_a_plain_client() {
    let certificate = TestCert::new();
    let server = TestServer::with_tls(&certificate, |_| {});
    let mut plain = server.connect();
    let tls_addr = server.tls_addr.unwrap().to_string();
    let ca = certificate.cert.to_str().unwrap();
    let mut client = ClientProcess::start(&[&tls_addr, "--tls", "--ca", ca]);
    let welcome = client.wait_for_output("*** welcome").pop().unwrap();
    let nick = welcome_nick(&welcome);
    plain.expect(&format!("*** {nick} joined"));

    client.send("hello over TLS");
    plain.expect(&format!("<{nick}> hello over TLS"));
    plain.send("hello over plain TCP");
    client.wait_for_output(&format!("<{}> hello over plain TCP", plain.nick));

    client.send("/who");
    client.close_stdin();
    let exit = client.wait_exit();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(exit.stdout[0].contains("2 users in #lobby"), "{exit:?}");
    plain.expect(&format!("*** {nick} left (connection closed)"));
}

/// `printf '/who\n' | pollchat-connect --tls ...`: the input ends before the handshake does,
/// and the answer is still printed before the client exits with status 0.
#[test]
fn connect_tls_prints_the_answer_to_piped_input_before_exiting_with_status_0() {
    let certificate = TestCert::new();
    let server = TestServer::with_tls(&certificate, |_| {});
    let tls_addr = server.tls_addr.unwrap().to_string();
    let ca = certificate.cert.to_str().unwrap();
    let exit = ClientProcess::piped(&[&tls_addr, "--tls", "--ca", ca], &["/who"]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(exit.stdout.len(), 2, "{exit:?}");
    assert!(exit.stdout[0].starts_with("*** welcome"), "{exit:?}");
    assert!(
        exit.stdout[1].starts_with("*** 1 user in #lobby: "),
        "{exit:?}"
    );
}

/// A `--ca` file cut short is refused before connecting, in one sentence that says what to
/// do (pki-types' own text lists the missing END line as bytes).
#[test]
fn connect_tls_ca_file_cut_short_is_one_sentence_and_status_1() {
    let certificate = TestCert::new();
    let pem = std::fs::read_to_string(&certificate.cert).unwrap();
    let cut = certificate.dir().join("cut.pem");
    std::fs::write(&cut, &pem[..pem.len() / 2]).unwrap();
    let cut = cut.to_str().unwrap();
    // Nothing listens there: the --ca file is read, and refused, before any connection.
    let exit = ClientProcess::piped(&["127.0.0.1:9", "--tls", "--ca", cut], &[]);
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: cannot read --ca {cut}: a PEM section has no END line: the file is cut \
             short, make it again"
        )]
    );
}

/// Only the pinned certificate itself is let past webpki: an `openssl req -x509`
/// certificate that is not in `--ca` (no `--ca`, or another such certificate in it) keeps
/// webpki's refusal, said as one sentence that says what to do, not as rustls's
/// `Other(OtherError(CaUsedAsEndEntity))`.
#[test]
fn connect_tls_refuses_an_unpinned_ca_certificate_in_one_sentence() {
    let Some(certificate) = TestCert::openssl_req_x509("DNS:localhost,IP:127.0.0.1") else {
        return;
    };
    let Some(another) = TestCert::openssl_req_x509("DNS:localhost,IP:127.0.0.1") else {
        return;
    };
    let server = TestServer::with_tls(&certificate, |_| {});
    let tls_addr = server.tls_addr.unwrap().to_string();
    let another_ca = another.cert.to_str().unwrap();
    for args in [
        vec![tls_addr.as_str(), "--tls"],
        vec![tls_addr.as_str(), "--tls", "--ca", another_ca],
    ] {
        let exit = ClientProcess::piped(&args, &["/who"]);
        assert_eq!(exit.code, Some(5), "{args:?}: {exit:?}");
        assert_eq!(
            exit.stderr,
            [format!(
                "pollchat: TLS with {tls_addr} failed: the server's certificate is marked as an \
                 authority (CA:TRUE, which `openssl req -x509` sets), and such a certificate is \
                 trusted only as itself: pass that exact certificate with --ca PEM"
            )],
            "{args:?}"
        );
    }
}

/// `--tls` to a plain-text port: the server's welcome is not TLS, and the client says so in
/// a sentence that says what to do, not as rustls's `InvalidContentType`.
#[test]
fn connect_tls_to_a_plain_port_is_one_sentence_and_status_5() {
    let server = TestServer::start();
    let exit = ClientProcess::piped(&[&server.addr.to_string(), "--tls"], &["/who"]);
    assert_eq!(exit.code, Some(5), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: TLS with {} failed: the server did not answer in TLS: is that a \
             plain-text port? (pollchat serves TLS on its --tls-bind port, 7879 unless told \
             otherwise; drop --tls for a plain one)",
            server.addr
        )]
    );
}

/// Without `--tls`, to a TLS port: the server's alert record is not shown as text (it was a
/// lone `2`, and status 0); one sentence says to use `--tls`, status 5.
#[test]
fn connect_without_tls_to_a_tls_port_is_one_sentence_and_status_5() {
    let certificate = TestCert::new();
    let server = TestServer::with_tls(&certificate, |_| {});
    let tls_addr = server.tls_addr.unwrap().to_string();
    let exit = ClientProcess::piped(&[&tls_addr], &["hello"]);
    assert_eq!(exit.code, Some(5), "{exit:?}");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: {tls_addr} answered in TLS: that is a TLS port, so connect with --tls \
             (and --ca PEM for a self-signed server)"
        )]
    );
}

/// `openssl` run in `dir`, for a certificate: the test fails if it does.
fn openssl(dir: &std::path::Path, args: &str) {
    let status = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args}");
}

/// Issue 21: an ECDSA server certificate signed by an authority, and `--ca` given another
/// authority of the same name (made again, as a test CA often is): with an RSA key, webpki
/// says the ECDSA signature does not fit its key, and the client said "signed with an
/// algorithm this client does not accept ... the server needs a new one"; with an ECDSA key,
/// the signature does not verify. Both are "not signed by the one you trust", and say so;
/// the real authority is trusted (so the chain itself is good).
#[test]
fn connect_tls_trusting_another_authority_of_the_same_name_says_it_is_not_the_signer() {
    if !common::peer_present(
        Command::new("openssl").arg("version"),
        "openssl (apt-get install openssl)",
    ) {
        return;
    }
    let dir = TempDir::new();
    let ca = "req -x509 -nodes -days 30 -subj /CN=pollchat-test-CA -newkey";
    openssl(
        &dir.path,
        &format!("{ca} ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.pem"),
    );
    openssl(
        &dir.path,
        &format!("{ca} ec -pkeyopt ec_paramgen_curve:P-256 -keyout ec.key -out ec.pem"),
    );
    openssl(
        &dir.path,
        &format!("{ca} rsa:2048 -keyout rsa.key -out rsa.pem"),
    );
    openssl(
        &dir.path,
        "req -new -nodes -subj /CN=localhost -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
         -keyout leaf.key -out leaf.csr",
    );
    dir.file(
        "leaf.ext",
        b"basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    openssl(
        &dir.path,
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
         -extfile leaf.ext -out leaf.pem",
    );
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (leaf, key) = (dir.path.join("leaf.pem"), dir.path.join("leaf.key"));
    let server = TestServer::with(|c| {
        c.tls = Some(pollchat::config::TlsSettings::new(&leaf, &key, loopback));
    });
    let tls_addr = server.tls_addr.unwrap().to_string();
    let trusting = |ca: &str| {
        let ca = dir.path.join(ca);
        ClientProcess::piped(
            &[&tls_addr, "--tls", "--ca", ca.to_str().unwrap()],
            &["/who"],
        )
    };
    assert_eq!(trusting("ca.pem").code, Some(0));
    for impostor in ["rsa.pem", "ec.pem"] {
        let exit = trusting(impostor);
        assert_eq!(exit.code, Some(5), "{impostor}: {exit:?}");
        assert_eq!(
            exit.stderr,
            [format!(
                "pollchat: TLS with {tls_addr} failed: the server's certificate is not signed \
                 by the authority this client trusts under its issuer's name (a different \
                 certificate with the same name, or the server's was altered): pass the \
                 certificate that signed it with --ca PEM, and do not trust this server \
                 until it checks"
            )],
            "{impostor}"
        );
    }
}

/// Issue 12: a certificate made the usual way, `openssl req -x509` (which marks it `CA:TRUE`),
/// and pinned with `--ca`, is trusted as the server's own, where webpki alone refuses it as
/// `CaUsedAsEndEntity`. The client chats through pollchat's TLS listener and exits 0.
#[test]
fn connect_tls_trusts_a_pinned_openssl_req_x509_certificate() {
    let Some(certificate) = TestCert::openssl_req_x509("DNS:localhost,IP:127.0.0.1") else {
        return;
    };
    assert!(
        certificate.says_ca_true(),
        "openssl no longer marks it CA:TRUE"
    );
    let server = TestServer::with_tls(&certificate, |_| {});
    let tls_addr = server.tls_addr.unwrap().to_string();
    let ca = certificate.cert.to_str().unwrap();
    let exit = ClientProcess::piped(&[&tls_addr, "--tls", "--ca", ca], &["/who"]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(exit.stdout[0].starts_with("*** welcome"), "{exit:?}");
    assert!(
        exit.stdout[1].starts_with("*** 1 user in #lobby: "),
        "{exit:?}"
    );
    assert_eq!(exit.stderr, ["pollchat: end of input; disconnected"]);
}

/// A pinned certificate is still checked for the name connected to: pinned, but for
/// another host, it is refused with a sentence naming the hosts it is for.
#[test]
fn connect_tls_refuses_a_pinned_certificate_for_another_name() {
    let Some(certificate) = TestCert::openssl_req_x509("DNS:chat.example") else {
        return;
    };
    let server = TestServer::with_tls(&certificate, |_| {});
    let tls_addr = server.tls_addr.unwrap();
    let ca = certificate.cert.to_str().unwrap();
    let exit = ClientProcess::piped(&[&tls_addr.to_string(), "--tls", "--ca", ca], &["/who"]);
    assert_eq!(exit.code, Some(5), "{exit:?}");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: TLS with {tls_addr} failed: the server's certificate is not valid for \
             127.0.0.1 (it is for chat.example): connect with a name it is for, or give the \
             server a certificate for 127.0.0.1"
        )]
    );
}

/// A pinned certificate is still checked for its dates: pinned, but expired, it is refused.
#[test]
fn connect_tls_refuses_a_pinned_certificate_that_has_expired() {
    let certificate = TestCert::expired_authority();
    let server = TestServer::with_tls(&certificate, |_| {});
    let tls_addr = server.tls_addr.unwrap();
    let ca = certificate.cert.to_str().unwrap();
    let exit = ClientProcess::piped(&[&tls_addr.to_string(), "--tls", "--ca", ca], &["/who"]);
    assert_eq!(exit.code, Some(5), "{exit:?}");
    assert_eq!(
        exit.stderr,
        [format!(
            "pollchat: TLS with {tls_addr} failed: the server's certificate has expired: the \
             server needs a new one (or this machine's clock is wrong)"
        )]
    );
}
