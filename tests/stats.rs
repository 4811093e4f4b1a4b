//! `--stats-udp`: the loop's counters on a datagram socket in the same poll.

mod common;

use common::TestServer;

/// A `stats` datagram gets the counters as one JSON object: connections, lines and bytes in,
/// and disconnects by reason.
#[test]
fn stats_datagram_reports_the_counters() {
    let server = TestServer::with(|c| c.stats_udp = Some("127.0.0.1:0".parse().unwrap()));
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send("hi");
    c[1].expect(&format!("<{nick}> hi"));
    c[1].send("/quit");
    c[1].read_to_eof();
    c[0].sync();
    let json = server.ask_stats(b"stats\n");
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    for field in [
        "\"connections_now\":1,",
        "\"clients\":1,",
        "\"connections_total\":2,",
        // "hi", "/quit", "/who": 3 lines and 14 bytes
        "\"lines_in\":3,",
        "\"bytes_in\":14,",
        "\"disconnects\":{\"quit\":1}",
    ] {
        assert!(json.contains(field), "{field} missing in {json}");
    }
}

/// The write counters: every `writev` on a client socket, and the bytes it passed. A plain
/// client's bytes are the chat's bytes as they are, so those equal `bytes_out`; and three lines
/// sent in one write reach the other client in one call.
#[test]
fn stats_count_write_calls_and_their_bytes() {
    let server = TestServer::with(|c| c.stats_udp = Some("127.0.0.1:0".parse().unwrap()));
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[1].sync();
    let stats =
        || -> serde_json::Value { serde_json::from_str(&server.ask_stats(b"stats")).unwrap() };
    let field = |json: &serde_json::Value, name: &str| {
        json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    let before = stats();
    c[0].send("one\ntwo\nthree");
    for line in ["one", "two", "three"] {
        c[1].expect(&format!("<{nick}> {line}"));
    }
    let after = stats();
    assert_eq!(
        field(&after, "write_call_bytes"),
        field(&after, "bytes_out"),
        "{after}"
    );
    let calls = field(&after, "write_calls") - field(&before, "write_calls");
    let lines = field(&after, "lines_out") - field(&before, "lines_out");
    assert_eq!((calls, lines), (1, 3), "{before}\n{after}");
}

/// Anything but `stats` gets an error object, and the server keeps serving.
#[test]
fn stats_socket_answers_other_datagrams_with_an_error() {
    let server = TestServer::with(|c| c.stats_udp = Some("127.0.0.1:0".parse().unwrap()));
    assert_eq!(
        server.ask_stats(b"gimme"),
        "{\"error\":\"send the datagram stats\"}"
    );
    let mut a = server.connect();
    a.sync();
    assert!(server.ask_stats(b"stats").contains("\"clients\":1,"));
}
