//! The load generator (`pollchat-bench`, run as the built binary) against a real server: its
//! counts must be exact, so the benchmark kit cannot silently rot.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{TestServer, bench, bench_args};
use pollchat::config::HttpSettings;

/// A few hundred connections, two paced senders: every line reaches every receiver, and
/// nothing fails.
#[test]
fn bench_counts_every_delivery_to_every_receiver() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --conns 300 --senders 2 --rate 200 --duration 1 --hold 0.1"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 300, "{}", report.summary());
    assert_eq!((report.refused, report.failed, report.dropped), (0, 0, 0));
    assert_eq!(report.receivers, 298);
    assert!(report.sent >= 100, "{}", report.summary());
    assert_eq!(report.expected, report.sent * 298);
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
    assert!(report.latency_us[0] > 0 && report.latency_us[3] >= report.latency_us[0]);
}

/// `--proto ws`: the same fan-out over WebSocket (an `--http-bind` listener), counted as
/// exactly, with `--rate max`'s window waiting for every WebSocket receiver.
#[test]
fn bench_drives_websocket_clients_with_exact_counts() {
    let server = TestServer::with(|c| {
        c.quiet_joins = true;
        c.http = Some(HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))));
    });
    let addr = server.http_addr.expect("an HTTP listener").to_string();
    for load in ["--rate 200", "--rate max --window 8"] {
        let report = bench::run(&bench_args(&format!(
            "--proto ws --target {addr} --conns 60 --senders 2 {load} --duration 0.5 --hold 0"
        )))
        .expect("bench runs");
        assert_eq!(report.established, 60, "{}", report.summary());
        assert_eq!((report.refused, report.failed, report.dropped), (0, 0, 0));
        assert!(report.sent >= 10, "{}", report.summary());
        assert_eq!(report.delivered, report.sent * 58, "{}", report.summary());
    }
}

/// `--proto ws --rooms 3`: WebSocket clients `/join` their rooms in a frame, and each line
/// is counted in its own room only, as over TCP.
#[test]
fn bench_drives_websocket_clients_into_rooms() {
    let server = TestServer::with(|c| {
        c.quiet_joins = true;
        c.http = Some(HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))));
    });
    let addr = server.http_addr.expect("an HTTP listener").to_string();
    let report = bench::run(&bench_args(&format!(
        "--proto ws --target {addr} --rooms 3 --conns 33 --senders 3 --rate 200 --duration 0.5 \
         --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 33, "{}", report.summary());
    assert_eq!(report.receivers_per_room, [10, 10]);
    assert!(report.sent >= 10, "{}", report.summary());
    assert_eq!(report.expected, report.sent * 10, "{}", report.summary());
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
    assert_eq!(report.foreign, 0, "{}", report.summary());
}

/// Connections over `--max-clients` are counted as refused, not failed, and the deliveries
/// expected are those of the receivers that got in.
#[test]
fn bench_counts_refusals_separately() {
    let server = TestServer::with(|c| {
        c.quiet_joins = true;
        c.max_clients = Some(20);
    });
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --conns 30 --senders 1 --rate 50 --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 20, "{}", report.summary());
    assert_eq!((report.refused, report.failed), (10, 0));
    assert_eq!(report.delivered, report.sent * report.receivers as u64);
}

/// `pollchat-bench --json` prints one JSON object with the counts.
#[test]
fn bench_binary_prints_json() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let output = common::guard::output(
        Command::new(env!("CARGO_BIN_EXE_pollchat-bench"))
            .args(["--target", &server.addr.to_string(), "--conns", "50"])
            .args([
                "--rate",
                "100",
                "--duration",
                "0.5",
                "--hold",
                "0",
                "--json",
            ]),
    );
    assert!(output.status.success(), "{output:?}");
    let json = String::from_utf8(output.stdout).unwrap();
    assert!(json.trim_end().starts_with('{') && json.trim_end().ends_with('}'));
    for field in [
        "\"established\":50",
        "\"failed\":0",
        "\"proto\":\"pollchat\"",
    ] {
        assert!(json.contains(field), "{field} missing in {json}");
    }
}

/// Bad arguments are refused with a reason before anything connects.
#[test]
fn bench_refuses_impossible_arguments() {
    let err = bench::run(&bench_args("--conns 2 --senders 2")).unwrap_err();
    assert!(err.contains("--senders"), "{err}");
    let err = bench::run(&bench_args("--threads 999")).unwrap_err();
    assert!(err.contains("--threads"), "{err}");
}

/// The same load over Redis pub/sub: receivers subscribe, senders publish, and the counts
/// are just as exact.
#[test]
fn bench_drives_redis_pub_sub_with_exact_counts() {
    let Some(redis) = common::RedisServer::start() else {
        return;
    };
    let addr = redis.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--proto redis --target {addr} --conns 200 --senders 2 --rate 200 --duration 1 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 200, "{}", report.summary());
    assert_eq!((report.refused, report.failed, report.dropped), (0, 0, 0));
    assert_eq!(report.receivers, 198);
    assert!(report.sent >= 100, "{}", report.summary());
    assert_eq!(report.delivered, report.sent * 198, "{}", report.summary());
}

/// Chatters (every client sends and receives): each line reaches every client but its
/// sender, and the generator expects exactly that.
#[test]
fn bench_counts_chatters_exactly() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --conns 50 --senders 50 --senders-receive \
         --rate 250 --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 50, "{}", report.summary());
    assert!(report.sent >= 50, "{}", report.summary());
    assert_eq!(report.expected, report.sent * 49);
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
}

/// Redis chatters publish on one connection and listen on a second, subscribed one.
#[test]
fn bench_counts_redis_chatters_with_companion_subscriptions() {
    let Some(redis) = common::RedisServer::start() else {
        return;
    };
    let addr = redis.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--proto redis --target {addr} --conns 50 --senders 50 --senders-receive \
         --rate 250 --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 100, "{}", report.summary());
    assert_eq!(report.receivers, 50);
    assert_eq!(report.delivered, report.sent * 50, "{}", report.summary());
}

/// `--source-ips` spreads connections over 127.0.0.1, 127.0.0.2, ...: all of them get in, and
/// the server's log shows them arriving from the extra addresses.
#[test]
fn bench_spreads_connections_over_source_addresses() {
    let mut server = common::ServerProcess::start(&["--quiet-joins", "--rate", "0"]);
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --conns 60 --source-ips 3 --rate 50 --duration 0.3 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 60, "{}", report.summary());
    assert_eq!(report.failed, 0);
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
    // Connections are made in order, round-robin over the sources.
    let log = server.log_until("127.0.0.3:");
    assert!(
        log.iter()
            .any(|l| l.contains("127.0.0.2:") && l.contains("connected as"))
    );
}

/// `--rate max`: a line is done when every receiver has it. Every line sent is done by the
/// end, every receiver got every line, and no more than window × receivers deliveries were
/// ever in flight (what the report's Little's-law figure rests on).
#[test]
fn bench_window_waits_for_every_receiver() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --conns 41 --senders 1 --rate max --window 8 --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 41, "{}", report.summary());
    assert_eq!(report.receivers, 40);
    assert!(report.sent > 8, "{}", report.summary());
    assert_eq!(report.lines_done, report.sent, "{}", report.summary());
    assert_eq!(report.delivered, report.sent * 40, "{}", report.summary());
    assert_eq!(report.in_flight(), Some(8 * 40));
}

/// The same window over Redis, whose subscribers are written in another order: the counts
/// are just as exact.
#[test]
fn bench_window_waits_for_every_redis_subscriber() {
    let Some(redis) = common::RedisServer::start() else {
        return;
    };
    let addr = redis.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--proto redis --target {addr} --conns 41 --senders 2 --rate max --window 8 \
         --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 41, "{}", report.summary());
    assert!(report.sent > 16, "{}", report.summary());
    assert_eq!(report.lines_done, report.sent, "{}", report.summary());
    assert_eq!(report.delivered, report.sent * 39, "{}", report.summary());
}

/// Receivers count lines in runs without parsing each one; other chat among the benchmark
/// lines (a person typing in the same room) must neither be counted nor break a run's count.
#[test]
fn bench_window_counts_only_benchmark_lines_among_other_chat() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr;
    let chatter = std::thread::spawn(move || {
        let mut person = common::Client::connect(addr);
        for i in 0..40 {
            person.send(&format!("just chatting, line {i}"));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        person
    });
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --conns 31 --senders 1 --rate max --window 16 --duration 0.8 --hold 0"
    )))
    .expect("bench runs");
    drop(chatter.join().expect("the chatter thread"));
    assert_eq!(report.established, 31, "{}", report.summary());
    assert_eq!(report.lines_done, report.sent, "{}", report.summary());
    assert_eq!(report.delivered, report.sent * 30, "{}", report.summary());
}

/// `--rooms 4`, paced: senders and receivers are spread over #bench-0 .. #bench-3, each
/// receiver counts only its own room's lines, and what is expected is summed room by room
/// (here 10 or 11 receivers per room, so neither `sent × 10` nor `sent × 41` would do).
#[test]
fn bench_rooms_count_each_line_in_its_own_room_only() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --rooms 4 --conns 44 --senders 3 --rate 300 --duration 1 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 44, "{}", report.summary());
    assert_eq!((report.refused, report.failed, report.dropped), (0, 0, 0));
    assert_eq!(report.receivers, 41);
    assert_eq!(report.receivers_per_room, [10, 11]);
    assert!(report.sent >= 150, "{}", report.summary());
    // Sender 0 is in #bench-0 with 11 receivers, senders 1 and 2 in rooms of 10.
    assert!(report.expected > report.sent * 10 && report.expected < report.sent * 11);
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
    assert_eq!(report.foreign, 0, "{}", report.summary());
    assert!(report.summary().contains("lines from other rooms: 0"));
}

/// `--rooms 4 --rate max`: a sender's line is done when every receiver of its room has it
/// (it would never be, were all 40 receivers waited for), and every delivery is exact.
#[test]
fn bench_rooms_window_waits_for_the_receivers_of_its_room() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--target {addr} --rooms 4 --conns 44 --senders 4 --rate max --window 8 \
         --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 44, "{}", report.summary());
    assert_eq!(report.receivers_per_room, [10, 10]);
    assert!(report.sent > 4 * 8, "{}", report.summary());
    assert_eq!(report.lines_done, report.sent, "{}", report.summary());
    assert_eq!(report.expected, report.sent * 10);
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
    assert_eq!(report.foreign, 0, "{}", report.summary());
    assert_eq!(report.in_flight(), Some(8 * 4 * 10));
}

/// `--rooms` over Redis: a channel per room (`pollchat-bench-K`), the same load as
/// pollchat's rooms, counted just as exactly.
#[test]
fn bench_rooms_are_redis_channels() {
    let Some(redis) = common::RedisServer::start() else {
        return;
    };
    let addr = redis.addr.to_string();
    let report = bench::run(&bench_args(&format!(
        "--proto redis --target {addr} --rooms 4 --conns 44 --senders 4 --rate max --window 8 \
         --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 44, "{}", report.summary());
    assert_eq!(report.receivers_per_room, [10, 10]);
    assert_eq!(report.lines_done, report.sent, "{}", report.summary());
    assert_eq!(report.delivered, report.sent * 10, "{}", report.summary());
    assert_eq!(report.foreign, 0, "{}", report.summary());
}

/// `--rate max` needs a receiver in every room that has a sender, or that sender's window
/// could never move.
#[test]
fn bench_rooms_refuse_a_windowed_room_without_receivers() {
    let err = bench::run(&bench_args("--rooms 4 --conns 6 --senders 4 --rate max")).unwrap_err();
    assert!(err.contains("every room with a sender"), "{err}");
    let err = bench::run(&bench_args("--rooms 0")).unwrap_err();
    assert!(err.contains("--rooms"), "{err}");
}

/// A server with history: what each run's receivers are replayed on coming in (#lobby's
/// lines from a one-room run, then a room's own lines from the run before) is neither a
/// delivery nor a line from another room. Every run counts exactly, as the first did.
#[test]
fn bench_runs_again_on_a_server_with_history_and_counts_the_same() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let addr = server.addr;
    let run = |rooms: usize| {
        let report = bench::run(&bench_args(&format!(
            "--target {addr} --rooms {rooms} --conns 24 --senders 4 --rate 200 \
             --duration 0.5 --hold 0"
        )))
        .expect("bench runs");
        assert_eq!(report.established, 24, "{}", report.summary());
        assert_eq!(report.delivered, report.expected, "{}", report.summary());
        assert_eq!(report.foreign, 0, "{}", report.summary());
        report
    };
    // #lobby keeps its history: four senders' lines, which the next run's connections are
    // replayed in #lobby before they move to their rooms.
    let first = run(1);
    assert_eq!(first.expected, first.sent * 20);
    let mut newcomer = common::Client::connect(addr);
    newcomer.expect("*** last 20 lines in #lobby:");
    // A room lasts while someone is in it: one watcher per room keeps its history for the
    // third run (they read nothing; a second of paced lines fits in their sockets).
    let watchers: Vec<common::Client> = (0..4)
        .map(|k| {
            let mut watcher = common::Client::connect(addr);
            watcher.join(&format!("#bench-{k}"));
            watcher
        })
        .collect();
    let second = run(4);
    assert_eq!(second.expected, second.sent * 5);
    let mut late = common::Client::connect(addr);
    late.read_until(|l| l == "*** end of history");
    late.join("#bench-2");
    late.expect("*** last 20 lines in #bench-2:");
    let third = run(4);
    assert_eq!(third.expected, third.sent * 5);
    drop(watchers);
}

/// A server that does not keep rooms apart (every line to everyone): the generator counts
/// what reached another room and says so, and counts none of it as a delivery.
#[test]
fn bench_reports_lines_that_leak_out_of_their_room() {
    let leaky = leaky_server(6);
    let report = bench::run(&bench_args(&format!(
        "--target {leaky} --rooms 2 --conns 6 --senders 2 --rate 40 --duration 0.5 --hold 0"
    )))
    .expect("bench runs");
    assert_eq!(report.established, 6, "{}", report.summary());
    assert_eq!(report.delivered, report.expected, "{}", report.summary());
    assert_eq!(report.expected, report.sent * 2);
    // Each line reaches three connections of the other room (two receivers, one sender):
    // all but the last few lines' leaks are in by the end of the drain.
    assert!(report.foreign > report.sent, "{}", report.summary());
    assert!(report.foreign <= report.sent * 3, "{}", report.summary());
    assert!(
        report
            .summary()
            .contains("the server let lines out of their room"),
        "{}",
        report.summary()
    );
}

/// A stand-in for a chat server with no rooms: it welcomes `clients` connections, confirms
/// every `/join`, and sends every other line to every other connection. A thread per
/// connection; each ends when its connection does.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test's stand-in: a failure here is a failed test"
)]
fn leaky_server(clients: usize) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let everyone: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(clients).enumerate() {
            let Ok(mut stream) = stream else { return };
            let _ = writeln!(
                stream,
                "*** welcome to pollchat, you are guest-{i} (type /help)"
            );
            everyone
                .lock()
                .unwrap()
                .push(stream.try_clone().expect("clone"));
            let everyone = Arc::clone(&everyone);
            std::thread::spawn(move || {
                let me = stream.peer_addr().expect("peer");
                for line in BufReader::new(stream.try_clone().expect("clone")).lines() {
                    let Ok(line) = line else { return };
                    if let Some(room) = line.strip_prefix("/join ") {
                        let _ = writeln!(stream, "*** you are now in {room} (1 user)");
                        continue;
                    }
                    for other in everyone.lock().unwrap().iter_mut() {
                        if other.peer_addr().ok() != Some(me) {
                            let _ = writeln!(other, "<guest-{i}> {line}");
                        }
                    }
                }
            });
        }
    });
    addr
}
