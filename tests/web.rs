//! `--http-bind` against a real server over loopback: the HTTP routes and their errors, the
//! WebSocket upgrade and every framing rule, WebSocket clients chatting with `nc`-style ones
//! under the same limits, and `/metrics`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::tls::TestCert;
use common::web::{
    RawWs, UPGRADE, get, http, read_response, ws_client, ws_client_over, wss_raw_client,
};
use common::{Client, DEADLINE, Interactive, TestServer, peer_present};
use pollchat::Config;
use pollchat::config::HttpSettings;

/// A server with an HTTP listener too, and `tweak` applied.
fn web_server(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let server = TestServer::with(|c| {
        c.http = Some(HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))));
        tweak(c);
    });
    let http = server.http_addr.expect("an HTTP listener");
    (server, http)
}

// HTTP.

/// `GET /` is the chat page: HTML, with its length, and the connection closes after it.
#[test]
fn http_root_serves_the_page_and_closes() {
    let (_server, http) = web_server(|_| {});
    let page = get(http, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("Connection"), Some("close"));
    assert!(
        page.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        page.header("Content-Length"),
        Some(page.body.len().to_string().as_str())
    );
    assert!(page.body.contains("new WebSocket("), "not the chat page");
}

/// Any other path is 404, another method 405; both close.
#[test]
fn http_unknown_paths_and_methods_are_refused_and_closed() {
    let (_server, http_addr) = web_server(|_| {});
    assert_eq!(get(http_addr, "/nope").status, 404);
    let post = http(
        http_addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
}

/// Every byte the server sends for `request`, up to its close.
fn raw_answer(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut bytes).expect("the server closes");
    bytes
}

/// `HEAD` is answered as `GET` is, the same status and headers (the body's `Content-Length`
/// too), and then the connection closes with not one byte of body: for the page, a 404, a
/// 400 (`/ws` without an upgrade) and `/metrics` (whose counters move between two requests,
/// so its head is only checked to announce a body).
#[test]
fn http_head_is_get_without_the_body_for_every_route() {
    let (_server, addr) = web_server(|_| {});
    let ask = |method: &str, path: &str| {
        raw_answer(
            addr,
            &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        )
    };
    for (path, status) in [("/", 200), ("/nope", 404), ("/ws", 400), ("/metrics", 200)] {
        let head = String::from_utf8(ask("HEAD", path)).unwrap();
        let get = String::from_utf8(ask("GET", path)).unwrap();
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "HEAD {path}: {head}"
        );
        assert!(
            head.ends_with("\r\n\r\n") && head.find("\r\n\r\n") == Some(head.len() - 4),
            "HEAD {path}: bytes after the head: {head:?}"
        );
        let length = |text: &str| {
            let line = text.lines().find(|l| l.starts_with("Content-Length: "));
            line.unwrap()
                .trim_start_matches("Content-Length: ")
                .parse::<usize>()
                .unwrap()
        };
        if path == "/metrics" {
            assert!(length(&head) > 0, "{head}");
        } else {
            assert_eq!(&head[..head.len() - 4], get_head, "HEAD {path}");
        }
        assert_eq!(length(get_head), get_body.len(), "GET {path}");
    }
}

/// HTTP/1.1 requires `Host` (RFC 9112 section 3.2): 400 without it. HTTP/1.0 has none to
/// send, and is served.
#[test]
fn http_1_1_without_host_is_400_and_1_0_is_served() {
    let (_server, addr) = web_server(|_| {});
    let answer = http(addr, b"GET / HTTP/1.1\r\nUser-Agent: test\r\n\r\n");
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("Host"), "{}", answer.body);
    assert_eq!(http(addr, b"GET / HTTP/1.0\r\n\r\n").status, 200);
    assert_eq!(http(addr, b"GET /metrics HTTP/1.0\r\n\r\n").status, 200);
}

/// A request that is not HTTP gets 400 and the close; the chat never hears of it.
#[test]
fn http_malformed_request_is_400_and_closed() {
    let (server, http_addr) = web_server(|_| {});
    let mut watcher = server.connect();
    let answer = http(http_addr, b"HELLO there\r\n\r\n");
    assert_eq!(answer.status, 400);
    let answer = http(http_addr, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n");
    assert_eq!(answer.status, 400);
    assert_eq!(watcher.sync(), Vec::<String>::new());
}

/// A head over 8 KiB gets 431 and the close, however the rest of it keeps coming.
#[test]
fn http_head_over_8_kib_is_431_and_closed() {
    let (_server, http_addr) = web_server(|_| {});
    let mut stream = TcpStream::connect(http_addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let cookie = format!("Cookie: {}\r\n", "c".repeat(1000));
    for _ in 0..9 {
        stream.write_all(cookie.as_bytes()).unwrap();
    }
    let answer = read_response(&mut stream);
    assert_eq!(answer.status, 431);
    assert_eq!(answer.header("Connection"), Some("close"));
}

/// A head that never ends (slowloris) is closed by `--http-head-timeout`, unanswered.
#[test]
fn http_head_not_finished_in_time_is_closed() {
    let (_server, http_addr) = web_server(|c| {
        c.http.as_mut().unwrap().head_timeout = Duration::from_millis(200);
    });
    let mut stream = TcpStream::connect(http_addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: 1\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "answered a head that never ended: {:?}", &buf[..n]);
}

/// `promtool check metrics`, Prometheus's own parser and linter, passes a live `/metrics`
/// (`--state-dir`'s included) taken after chat traffic (so the counters are not all zero), and fails the same body with
/// one line broken, so its pass means something.
#[test]
fn metrics_pass_promtool_check_metrics() {
    if !peer_present(
        Command::new("promtool").arg("--version"),
        "promtool (apt-get install prometheus)",
    ) {
        return;
    }
    // With --state-dir, so that its metrics are checked too.
    let state = common::TempDir::new();
    let (server, http_addr) = web_server(|c| c.state_dir = Some(state.path.clone()));
    let mut nc = server.connect();
    let mut web = ws_client(http_addr);
    nc.send("counted");
    web.expect(&format!("<{}> counted", nc.nick));
    let body = get(http_addr, "/metrics").body;
    assert!(body.contains("\npollchat_lines_in_total 1\n"), "{body}");
    assert!(
        body.contains("\npollchat_state_records_written_total 1\n"),
        "{body}"
    );
    let checked = common::web::promtool(&body);
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {checked:?}\n{body}"
    );
    let broken = body.replacen(" 1\n", " one\n", 1);
    assert!(
        !common::web::promtool(&broken).status.success(),
        "promtool passed:\n{broken}"
    );
}

/// A WebSocket client pollchat's authors did not write, Python's `websockets`
/// (`tests/peers/ws_client.py`), chats with an `nc`-style client through `/ws`: a line each
/// way, then `/quit` and a clean close (code 1000), and the script exits 0.
#[test]
fn python_websockets_client_chats_with_a_tcp_client_and_closes_cleanly() {
    let python = "/usr/bin/python3";
    if !peer_present(
        Command::new(python).args(["-c", "import websockets"]),
        "Python's websockets for /usr/bin/python3 (apt-get install python3-websockets)",
    ) {
        return;
    }
    let (server, http_addr) = web_server(|_| {});
    let mut nc = server.connect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_client.py");
    let mut peer = Interactive::spawn(
        Command::new(python)
            .arg(script)
            .arg(format!("ws://{http_addr}/ws")),
    );
    let nick = peer.wait_for_output("nick ").pop().unwrap();
    let nick = nick.trim_start_matches("nick ");
    nc.expect(&format!("*** {nick} joined"));
    nc.expect(&format!("<{nick}> hello from python"));
    nc.send("hello from nc");
    peer.wait_for_output(&format!("heard <{}> hello from nc", nc.nick));
    peer.wait_for_output("closed 1000");
    assert!(peer.wait().success());
    let (_, left) = nc.read_until(|l| l.starts_with(&format!("*** {nick} left")));
    assert_eq!(left, format!("*** {nick} left (quit)"));
}

/// `/metrics` has the stats' counters, rooms and clients by transport, in Prometheus's
/// format.
#[test]
fn metrics_expose_counters_rooms_and_websocket_clients() {
    let (server, http_addr) = web_server(|_| {});
    let mut nc = server.connect();
    let mut browser = ws_client(http_addr);
    browser.join("#web");
    nc.send("hello");
    nc.sync();
    let metrics = get(http_addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = &metrics.body;
    for line in [
        "# TYPE pollchat_lines_in_total counter",
        "# TYPE pollchat_write_calls_total counter",
        "# TYPE pollchat_write_call_bytes_total counter",
        "# TYPE pollchat_clients gauge",
        "pollchat_clients 2",
        "pollchat_clients_by_transport{transport=\"WebSocket\"} 1",
        "pollchat_clients_by_transport{transport=\"plain\"} 1",
        "pollchat_rooms 2",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    let lines_in: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("pollchat_lines_in_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(lines_in >= 3, "{lines_in}");
}

// HTTPS: the same protocol over a TLS stream.

/// `--https-bind`: the page and `/metrics` over TLS, and a `wss://` client (tungstenite over
/// rustls, trusting the test certificate) chatting with an `nc` client and a TLS line client,
/// each line framed for it as for any WebSocket, then a clean close: the close frame inside
/// TLS, then TLS's own end.
#[test]
fn https_serves_the_page_and_wss_clients_chat_with_nc_and_tls_clients() {
    let cert = TestCert::new();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = TestServer::with_tls(&cert, |c| {
        let mut web = HttpSettings::new(loopback);
        web.bind.clear();
        web.https_bind = vec![loopback];
        c.http = Some(web);
    });
    let https = server.https_addr.expect("an HTTPS listener");
    assert_eq!(
        server.http_addr, None,
        "no plain HTTP listener was asked for"
    );

    let mut page = Client::raw_tls(https, &cert);
    page.send_bytes(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let answer = String::from_utf8_lossy(&page.read_all_bytes()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:.200}");
    assert!(answer.contains("new WebSocket("), "not the chat page");

    let mut nc = server.connect();
    let mut tls = Client::connect_tls(server.tls_addr.unwrap(), &cert);
    let mut web = wss_raw_client(https, &cert);
    web.read_welcome();
    nc.read_until(|l| l == format!("*** {} joined", web.nick));
    web.send("/nick secure");
    nc.expect(&format!("*** {} is now known as secure", web.nick));
    web.send("hello over wss");
    nc.expect("<secure> hello over wss");
    tls.read_until(|l| l == "<secure> hello over wss");
    nc.send("hello back");
    web.read_until(|l| l == format!("<{}> hello back", nc.nick));

    let mut metrics = Client::raw_tls(https, &cert);
    metrics.send_bytes(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let body = String::from_utf8_lossy(&metrics.read_all_bytes()).into_owned();
    let by_transport = "pollchat_clients_by_transport{transport=\"WebSocket over TLS\"} 1";
    assert!(body.lines().any(|l| l == by_transport), "{body}");

    web.send("/quit");
    let rest = web.read_to_eof();
    assert!(rest.iter().any(|l| l.starts_with("*** bye")), "{rest:?}");
    nc.expect("*** secure left (quit)");
}

// The upgrade.

/// The upgrade is answered 101 with the accept key RFC 6455 gives for its sample key, and
/// the connection joins the chat.
#[test]
fn websocket_upgrade_answers_101_with_the_accept_key() {
    let (_server, http_addr) = web_server(|_| {});
    let mut ws = RawWs::upgrade(http_addr);
    let head = ws.read_head();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(
        ws.text()
            .starts_with("*** welcome to pollchat, you are guest-")
    );
}

/// An upgrade with another version is 426 and says which version is spoken.
#[test]
fn websocket_upgrade_of_another_version_is_426() {
    let (_server, http_addr) = web_server(|_| {});
    let answer = http(
        http_addr,
        UPGRADE.replace("Version: 13", "Version: 8").as_bytes(),
    );
    assert_eq!(answer.status, 426);
    assert_eq!(answer.header("Sec-WebSocket-Version"), Some("13"));
}

// WebSocket clients in the chat.

/// A WebSocket client and an `nc`-style client are in one room: lines both ways, nicks,
/// rooms and their history, each line one text message.
#[test]
fn websocket_and_tcp_clients_chat_in_one_room() {
    let (server, http_addr) = web_server(|_| {});
    let mut nc = server.connect();
    let mut web = ws_client(http_addr);
    nc.expect(&format!("*** {} joined", web.nick));
    web.send("/nick webby");
    web.expect(&format!("*** {} is now known as webby", web.nick));
    nc.expect(&format!("*** {} is now known as webby", web.nick));
    web.send("hello from the web");
    nc.expect("<webby> hello from the web");
    nc.send("hello back");
    web.expect(&format!("<{}> hello back", nc.nick));
    nc.join("#rust");
    nc.send("said in #rust");
    web.sync();
    web.join("#rust");
    web.expect("*** last 1 line in #rust:");
    web.expect(&format!("<{}> said in #rust", nc.nick));
    web.expect("*** end of history");
}

/// A right-to-left override (`rtl` U+202E `evil` shows as `rtllive`) and the other
/// characters that reorder a line are gone before it is relayed, whichever transport it came
/// in on and whichever it goes out on; an emoji's zero-width joiner stays.
#[test]
fn bidi_overrides_never_reach_another_client_on_tcp_or_websocket() {
    let (server, http_addr) = web_server(|_| {});
    let mut nc = server.connect();
    let mut web = ws_client(http_addr);
    nc.expect(&format!("*** {} joined", web.nick));
    nc.send("rtl\u{202E}evil \u{2067}isolated\u{2069}\u{200F}!");
    web.expect(&format!("<{}> rtlevil isolated!", nc.nick));
    web.send("rtl\u{202E}evil \u{1F469}\u{200D}\u{1F4BB}");
    nc.expect(&format!(
        "<{}> rtlevil \u{1F469}\u{200D}\u{1F4BB}",
        web.nick
    ));
}

/// A message with newlines is several lines, as on TCP.
#[test]
fn websocket_message_with_newlines_is_several_lines() {
    let (server, http_addr) = web_server(|_| {});
    let (mut nc, mut ws, nick) = nc_and_raw_ws(&server, http_addr);
    ws.send_text("one\ntwo\r\nthree");
    for text in ["one", "two", "three"] {
        nc.expect(&format!("<{nick}> {text}"));
    }
}

/// A message in fragments, with a ping between them, is one line; the ping gets a pong with
/// its payload.
#[test]
fn websocket_fragmented_message_is_one_line_and_ping_gets_its_pong() {
    let (server, http_addr) = web_server(|_| {});
    let (mut nc, mut ws, nick) = nc_and_raw_ws(&server, http_addr);
    ws.send(false, 0x1, b"frag");
    ws.send(true, 0x9, b"ping payload");
    assert_eq!(ws.frame(), (0x8A, b"ping payload".to_vec()));
    ws.send(false, 0x0, "ment".as_bytes());
    ws.send(true, 0x0, "ed \u{2713}".as_bytes());
    nc.expect(&format!("<{nick}> fragmented \u{2713}"));
}

/// A message over `--max-line`, in one frame or in fragments, gets `*** line too long` and
/// the connection stays usable.
#[test]
fn websocket_message_over_max_line_is_dropped_and_the_client_stays() {
    let (server, http_addr) = web_server(|c| c.max_line = 64);
    let (mut nc, mut ws, nick) = nc_and_raw_ws(&server, http_addr);
    let too_long = "*** line too long (over 64 bytes), dropped";
    ws.send_text(&"x".repeat(65));
    assert_eq!(ws.text_until(|t| !t.contains("joined")), too_long);
    ws.send(false, 0x1, &[b'y'; 20]);
    for _ in 0..3 {
        ws.send(false, 0x0, &[b'y'; 20]);
    }
    ws.send(true, 0x0, b"");
    assert_eq!(ws.text(), too_long);
    ws.send_text("still here");
    nc.expect(&format!("<{nick}> still here"));
}

/// A frame without a mask fails the connection with 1002; nobody else sees a line of it.
#[test]
fn websocket_unmasked_frame_closes_with_1002() {
    let (server, http_addr) = web_server(|_| {});
    let (mut nc, mut ws, nick) = nc_and_raw_ws(&server, http_addr);
    ws.send_raw(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(ws.expect_close(), 1002);
    assert!(
        nc.line()
            .starts_with(&format!("*** {nick} left (WebSocket error: "))
    );
}

/// Text that is not UTF-8 closes with 1007.
#[test]
fn websocket_invalid_utf8_closes_with_1007() {
    let (_server, http_addr) = web_server(|_| {});
    let mut ws = RawWs::connect(http_addr);
    welcome_nick(&mut ws);
    ws.send(true, 0x1, b"caf\xe9");
    assert_eq!(ws.expect_close(), 1007);
}

/// A binary message closes with 1003: the chat is text.
#[test]
fn websocket_binary_message_closes_with_1003() {
    let (_server, http_addr) = web_server(|_| {});
    let mut ws = RawWs::connect(http_addr);
    welcome_nick(&mut ws);
    ws.send(true, 0x2, b"\x00\x01\x02");
    assert_eq!(ws.expect_close(), 1003);
}

/// A reserved opcode, and a control frame over 125 bytes, are protocol errors (1002).
#[test]
fn websocket_reserved_opcode_and_long_ping_close_with_1002() {
    let (_server, http_addr) = web_server(|_| {});
    for (opcode, payload) in [(0x3, vec![]), (0x9, vec![b'p'; 126])] {
        let mut ws = RawWs::connect(http_addr);
        welcome_nick(&mut ws);
        ws.send(true, opcode, &payload);
        assert_eq!(ws.expect_close(), 1002, "opcode {opcode}");
    }
}

/// A close frame gets everything the client is owed, a close frame back with its code, and
/// then the TCP close; the others hear it left.
#[test]
fn websocket_close_frame_is_answered_then_closed() {
    let (server, http_addr) = web_server(|_| {});
    let (mut nc, mut ws, nick) = nc_and_raw_ws(&server, http_addr);
    ws.send_text("/who");
    ws.send(true, 0x8, &1001u16.to_be_bytes());
    assert!(ws.text().starts_with("*** 2 users in #lobby: "));
    assert_eq!(ws.expect_close(), 1001);
    nc.expect(&format!("*** {nick} left (connection closed)"));
}

/// `/quit` ends with the last line, a close frame 1000 and the close.
#[test]
fn websocket_quit_gets_bye_and_a_normal_close() {
    let (_server, http_addr) = web_server(|_| {});
    let mut ws = RawWs::connect(http_addr);
    welcome_nick(&mut ws);
    ws.send_text("/quit done");
    assert_eq!(ws.text(), "*** bye");
    assert_eq!(ws.expect_close(), 1000);
}

/// On shutdown a WebSocket client gets the notice, then a close frame 1001 (going away).
#[test]
fn websocket_shutdown_sends_going_away() {
    let (server, http_addr) = web_server(|_| {});
    let mut ws = RawWs::connect(http_addr);
    welcome_nick(&mut ws);
    server.stop().unwrap();
    assert_eq!(ws.text(), "*** server shutting down");
    assert_eq!(ws.expect_close(), 1001);
}

/// `--idle-timeout` holds for WebSocket clients: told, then closed with 1000.
#[test]
fn websocket_idle_client_is_disconnected() {
    let (_server, http_addr) = web_server(|c| c.idle_timeout = Some(Duration::from_millis(200)));
    let mut ws = RawWs::connect(http_addr);
    welcome_nick(&mut ws);
    assert_eq!(ws.text(), "*** disconnected: idle for 0.2 s");
    assert_eq!(ws.expect_close(), 1000);
}

/// `--max-per-ip` counts WebSocket clients with the others: one over it is told, then
/// closed.
#[test]
fn websocket_client_over_the_per_address_limit_is_refused() {
    let (server, http_addr) = web_server(|c| c.max_per_ip = 1);
    let _nc = server.connect();
    let mut ws = RawWs::connect(http_addr);
    assert_eq!(ws.text(), "*** too many connections from your address");
    assert_eq!(ws.expect_close(), 1000);
}

/// Over `--rate`, a WebSocket client is read more slowly, as any client is: every line
/// arrives, in order, and it is still there.
#[test]
fn websocket_flood_is_slowed_down_not_dropped() {
    let (server, http_addr) = web_server(|c| {
        c.rate = 50.0;
        c.burst = 5;
    });
    let mut nc = server.connect();
    let mut web = ws_client(http_addr);
    nc.expect(&format!("*** {} joined", web.nick));
    for n in 0..30 {
        web.send(&format!("flood {n}"));
    }
    for n in 0..30 {
        nc.expect(&format!("<{}> flood {n}", web.nick));
    }
    assert_eq!(web.sync(), Vec::<String>::new());
}

/// A WebSocket client that stops reading is cut off as too slow (its queue is judged as any
/// client's), and the others get every line.
#[test]
fn websocket_client_that_stops_reading_is_cut_off_and_nobody_else_loses_a_line() {
    let (server, http_addr) = web_server(|c| {
        c.max_output = 64 * 1024;
        c.output_grace = Duration::from_millis(200);
    });
    let stalled = small_buffer_ws(http_addr);
    let mut reader = server.connect();
    let mut sender = server.connect();
    reader.expect(&format!("*** {} joined", sender.nick));
    let padding = "x".repeat(1000);
    let mut sent = 0;
    let notice = loop {
        sender.send(&format!("{sent} {padding}"));
        sent += 1;
        let line = reader.line();
        if line.starts_with("*** ") {
            break line;
        }
        assert!(line.starts_with(&format!("<{}> {} ", sender.nick, sent - 1)));
        assert!(
            sent < 100_000,
            "the stalled WebSocket client was never cut off"
        );
    };
    assert_eq!(
        notice,
        format!(
            "*** {} left (too slow: over 65536 bytes of output waiting)",
            stalled.nick
        )
    );
}

/// A WebSocket client with a tiny receive buffer, that has read its welcome and reads no more.
fn small_buffer_ws(http_addr: SocketAddr) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&http_addr.into()).unwrap();
    let mut client = ws_client_over(socket.into());
    client.read_welcome();
    client
}

/// An `nc`-style client, then a raw WebSocket client it has seen join: both, and the
/// WebSocket client's nick.
fn nc_and_raw_ws(server: &TestServer, http_addr: SocketAddr) -> (Client, RawWs, String) {
    let mut nc = server.connect();
    let mut ws = RawWs::connect(http_addr);
    let nick = welcome_nick(&mut ws);
    nc.expect(&format!("*** {nick} joined"));
    (nc, ws, nick)
}

/// Reads the welcome message and returns the nick in it.
fn welcome_nick(ws: &mut RawWs) -> String {
    let welcome = ws.text();
    welcome
        .strip_prefix("*** welcome to pollchat, you are ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("not a welcome: {welcome}"))
        .to_string()
}
