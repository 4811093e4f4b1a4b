//! The chaos scenario (`pollchat-bench --scenario chaos`) in `cargo test`: a short run against
//! the built binary, serving plain TCP, TLS and HTTP (WebSocket), with its limits set low
//! enough that the misbehaving clients hit them. The test checks that every promise held in
//! every round, and also that the limits were really hit, the TLS and WebSocket clients and
//! the second room really took part, each WebSocket misbehaviour really happened and was
//! handled, and history was really replayed, so it cannot pass by a run in which nothing
//! happened. The server is restarted on its `--state-dir` after each round (SIGTERM, then
//! SIGKILL), and each room's history must come back exactly as it was said. An operator
//! kicks and bans flooders mid-round, and every check about it holds too.

mod common;

use common::bench::chaos::{self, Outcome};
use common::tls::TestCert;
use common::{ServerProcess, TempDir, bench_args, web};
use pollchat::operators::hash_password;

/// The chaos run's operator, as the server knows it (`--operators`) and as the run logs in
/// (`--oper`).
const OPERATOR: &str = "chaos";
const PASSWORD: &str = "chaos-s3cret";

/// The address in the server's log line `listening on ADDR (NAME...)`, waited for.
fn listening(server: &mut ServerProcess, name: &str) -> String {
    let line = server.wait_for_log(&format!("({name}"));
    let (_, after) = line
        .split_once("listening on ")
        .unwrap_or_else(|| panic!("not a listening line: {line}"));
    after
        .split_once(' ')
        .map_or(after, |(addr, _)| addr)
        .to_string()
}

/// One server of the run: the built binary, and its listeners' addresses.
struct Generation {
    process: ServerProcess,
    tls: String,
    http: String,
    stats: std::net::SocketAddr,
}

impl Generation {
    fn start(args: &[&str]) -> Generation {
        let mut process = ServerProcess::start(args);
        // The listeners' lines come in this order, after the plain one and before the stats
        // line.
        let tls = listening(&mut process, "TLS");
        let http = listening(&mut process, "HTTP");
        let stats = process.stats_addr();
        Generation {
            process,
            tls,
            http,
            stats,
        }
    }

    /// The generator's flags for this server.
    fn flags(&self) -> String {
        format!(
            "--target {} --tls-target {} --ws-target {} --server-pid {} --server-stats {}",
            self.process.addr,
            self.tls,
            self.http,
            self.process.pid(),
            self.stats
        )
    }

    fn metrics(&self) -> String {
        let addr = self
            .http
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", self.http));
        web::get(addr, "/metrics").body
    }
}

/// How many of the server's log lines `matches`, said on stdout as `what: N` (shown with
/// `--nocapture`); the test fails, naming `what`, if there are none.
fn logged(log: &[String], what: &str, matches: impl Fn(&str) -> bool, summary: &str) {
    let n = log.iter().filter(|l| matches(l)).count();
    println!("{what}: {n}");
    assert!(n > 0, "no {what}:\n{summary}");
}

/// A counter summed over the run's servers, from each one's `/metrics` (0 where a server has
/// none: labelled series appear once counted). `series` is the metric's name and labels.
fn summed(metrics: &[String], series: &str) -> u64 {
    let prefix = format!("{series} ");
    metrics
        .iter()
        .filter_map(|text| text.lines().find_map(|l| l.strip_prefix(&prefix)))
        .map(|n| {
            n.parse::<u64>()
                .unwrap_or_else(|e| panic!("{prefix}{n}: {e}"))
        })
        .sum()
}

/// Connections the servers closed for `reason`, from `pollchat_disconnects_total`.
fn disconnects(metrics: &[String], reason: &str) -> u64 {
    summed(
        metrics,
        &format!("pollchat_disconnects_total{{reason=\"{reason}\"}}"),
    )
}

/// Clients on `transport` the servers cut off as too slow, from
/// `pollchat_disconnects_by_transport_total`, said on stdout as `what: N` (shown with
/// `--nocapture`); the test fails, naming `what`, if there are none. A counter, not the log:
/// the server's per-connection log lines are on a budget, which the reset storm spends, so a
/// cut it made may never be logged.
fn too_slow_on(metrics: &[String], transport: &str, what: &str, summary: &str) {
    let series = format!(
        "pollchat_disconnects_by_transport_total{{reason=\"too_slow\",transport=\"{transport}\"}}"
    );
    let n = summed(metrics, &series);
    println!("{what}: {n}");
    assert!(n > 0, "no {what}:\n{summary}\n{}", metrics.join("\n"));
}

/// Two short rounds against the real binary: 10 chatters in #lobby, 4 more in #chaos (the
/// default) and 3 pingers, spread over plain TCP, TLS and WebSocket in both rooms, 40
/// misbehaving clients at once in #lobby, storms of 150 connections past `--max-clients 120`,
/// non-readers given one second over a 512 KiB queue, TLS handshakes and HTTP request heads
/// one second. Every promise holds in both rounds, for plain, TLS and WebSocket chatters
/// alike and in each room, history replayed in round 2 holds round 1's last lines, each
/// room's history outlives a restart of the server after each round (SIGTERM, then SIGKILL,
/// with `--state-dir`) exactly,
/// descriptors and memory come back, and the limits were really hit: storms refused, lines
/// too long dropped, non-readers (a TLS one and a WebSocket one among them) cut off as too
/// slow, garbage on the TLS port rejected, stalled handshakes and unfinished request heads
/// timed out, unmasked frames closed with 1002, oversized messages refused with the client
/// kept.
#[test]
fn chaos_keeps_every_promise_while_clients_hit_the_limits() {
    let cert = TestCert::new();
    let (cert_pem, key_pem) = (cert.cert.to_string_lossy(), cert.key.to_string_lossy());
    let state = TempDir::new();
    let state_dir = state.path.to_string_lossy();
    let hash = hash_password(PASSWORD).expect("hash the operator's password");
    let operators = format!("{OPERATOR}={hash}");
    let args = [
        // The operator `/oper`s over plain TCP from 127.0.0.1: loopback needs no
        // --oper-plaintext.
        "--operators",
        &operators,
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-cert",
        &cert_pem,
        "--tls-key",
        &key_pem,
        // Short, so a stalled handshake is closed within a staller's lifetime (2.5 to 3 s).
        "--tls-handshake-timeout",
        "1",
        "--http-bind",
        "127.0.0.1:0",
        // Short, like the TLS one: a slowloris head is closed within its lifetime.
        "--http-head-timeout",
        "1",
        // Below 10 chatters + pinger + 40 + 150: each storm goes past it.
        "--max-clients",
        "120",
        // Flooders aim at one non-reader at a time: it crosses 512 KiB and mostly stays over
        // it for the grace before reaching eight times that, the hard limit (in trial runs,
        // 13 to 16 of 18 to 20 cuts came after the grace).
        "--max-output",
        "512K",
        "--output-grace",
        "1",
        // Flood control at 100 lines/s rather than 10: flooders still go past it, and what
        // it lets through fills a non-reader's kernel send buffer (megabytes on loopback)
        // and then its queue within a round.
        "--rate",
        "100",
        "--burst",
        "100",
        "--stats-udp",
        "127.0.0.1:0",
        // The rooms' history outlives each restart between rounds.
        "--state-dir",
        &state_dir,
    ];
    let mut server = Generation::start(&args);
    let (cert_pem, first) = (cert_pem.to_string(), server.flags());
    // Each server's /metrics and log, taken before it is stopped (and from the last at the
    // end): the counters start again from nothing with each.
    let (mut metrics, mut log) = (Vec::new(), Vec::new());
    // `--ping-limit 10`: the generator and the server here are debug builds, and on a machine
    // busy with other work (five busy loops on 2 cores, 2026-12-07) their pings took up to
    // 2.7 s where release builds took under 0.1 s. 10 s still catches a server that stopped
    // answering; the 2 s promise is for release builds (`scripts/soak.sh`, docs/limits.md).
    // `--restarts`: after round 1 the server is stopped with SIGTERM, after round 2 with
    // SIGKILL, and started again on the same --state-dir; a new client in each room must then
    // be replayed exactly the room's last lines of the round.
    let report = chaos::run_restarting(
        &bench_args(&format!(
            "--scenario chaos {first} --tls-ca {cert_pem} --chatters 10 --conns 40 \
             --storm 150 --duration 5 --rounds 2 --ping-limit 10 --restarts \
             --oper {OPERATOR}={PASSWORD}"
        )),
        |n| {
            metrics.push(server.metrics());
            log.extend(server.process.log_so_far());
            let signal = if n == 1 { "TERM" } else { "KILL" };
            server.process.signal(signal);
            let status = server.process.wait_exit();
            assert!(n != 1 || status.success(), "SIGTERM: {status}");
            server = Generation::start(&args);
            server.flags()
        },
    )
    .expect("the chaos scenario runs");
    metrics.push(server.metrics());
    log.extend(server.process.log_so_far());
    let summary = report.summary();
    // Shown with `cargo test --test chaos -- --nocapture`.
    println!("{summary}");
    if !report.passed() {
        // Why the server let its well-behaved clients go, if it did (they have guest nicks):
        // the disconnects it chose, not the clients' own quits, resets and closes.
        let own = [": quit", "connection reset", "connection closed"];
        let told: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("(guest-") && l.contains("disconnected: "))
            .filter(|l| !own.iter().any(|o| l.contains(o)))
            .collect();
        eprintln!(
            "the server's first disconnects of guests ({} in all):",
            told.len()
        );
        for line in told.iter().take(40) {
            eprintln!("  {line}");
        }
    }
    assert!(report.passed(), "{summary}");

    // The run was checked in full, over two rounds, with real traffic.
    assert!(
        report.checks.iter().all(|c| c.outcome == Outcome::Pass),
        "{summary}"
    );
    assert_eq!(report.rounds.len(), 2, "{summary}");
    assert!(report.rounds.iter().all(|r| r.lines_sent > 0), "{summary}");
    assert_eq!(report.deliveries, report.expected, "{summary}");
    assert!(report.pings_answered > 0, "{summary}");

    // Two rooms, each with its own lines: #chaos heard only its chatters while the lobby
    // was flooded, and nothing crossed either way.
    assert_eq!(report.outcome("rooms kept apart"), Some(Outcome::Pass));
    let (lobby, second) = (report.room("#lobby"), report.room("#chaos"));
    assert_eq!((lobby.chatters, second.chatters), (10, 4), "{summary}");
    assert!(
        second.lines_sent > 0 && second.lines_sent_tls > 0,
        "{summary}"
    );
    assert_eq!(second.deliveries, second.expected, "{summary}");
    // Round 2's clients entering the lobby were replayed its history, and it held round 1's
    // chatters' last lines (said once the strangers were gone), which the check found to be
    // the room's last, in its order. None of it counted as a delivery (exactly once above).
    assert_eq!(report.outcome("history replayed"), Some(Outcome::Pass));
    assert!(report.replays.replays > 0, "{summary}");
    assert!(report.replays.said_the_round_before > 0, "{summary}");
    // After each round the server was restarted (SIGTERM, then SIGKILL) on its --state-dir,
    // and a new client in each room was replayed exactly the room's last 20 lines as the
    // round's witnesses heard them live, in order: 2 rounds x 2 rooms x 20.
    assert_eq!(report.replays.restarts, 2, "{summary}");
    assert_eq!(report.replays.checked, 2 * 2 * 20, "{summary}");

    // The limits were hit. Storms went past --max-clients and were told the server is full.
    assert!(report.tally("storm").refused > 0, "{summary}");
    // A full-speed connect-and-reset storm ran through every chaos phase, beside all this.
    assert!(report.tally("reset storm").opened > 0, "{summary}");
    // Endless lines were dropped with a notice, as each went past --max-line.
    assert!(report.tally("endless line").too_long > 0, "{summary}");
    // Non-readers stayed over --max-output for the grace and were disconnected as too slow
    // (a few may reach eight times the limit first, and go at once: that is too slow too).
    assert!(disconnects(&metrics, "too_slow") > 0, "{summary}");
    assert!(
        log.iter()
            .any(|l| l.contains("bytes of output waiting for 1.0 s, disconnecting")),
        "no client cut off after its grace:\n{summary}"
    );
    // The others misbehaved too: garbage was sent, half-closers were answered and closed.
    assert!(report.tally("garbage").welcomed > 0, "{summary}");
    assert!(
        report.tally("half-closer").closed_by_server > 0,
        "{summary}"
    );
    assert!(report.tally("vanisher").opened > 0, "{summary}");

    // TLS chatters were in both rooms: the odd ones not over WebSocket, 1, 3, 7, 9 of the 10
    // and 13 of the 4, in both rounds, and they talked. Exactly once held above, so each of
    // their lines reached every plain and WebSocket chatter of their room (and each of those
    // lines reached them) once, in the one order.
    assert_eq!(
        report.tally("tls-chatter").welcomed,
        (4 + 1) * 2,
        "{summary}"
    );
    assert!(report.lines_sent_tls > 0, "{summary}");
    assert!(report.lines_sent_tls < report.lines_sent, "{summary}");
    assert!(second.lines_sent_tls > 0, "{summary}");
    // So were WebSocket chatters: every third, 2, 5, 8 of the 10 and 11 of the 4, upgraded at
    // /ws and held to the same checks, their lines counted apart.
    assert_eq!(
        report.tally("ws-chatter").welcomed,
        (3 + 1) * 2,
        "{summary}"
    );
    assert!(report.lines_sent_ws > 0, "{summary}");
    assert!(
        report.lines_sent_ws + report.lines_sent_tls < report.lines_sent,
        "{summary}"
    );
    assert!(
        lobby.lines_sent_ws > 0 && second.lines_sent_ws > 0,
        "{summary}"
    );
    // So were the TLS and WebSocket pingers, and "kept answering" above covers their round
    // trips with the plain pinger's.
    assert_eq!(report.tally("tls-pinger").welcomed, 2, "{summary}");
    assert_eq!(report.tally("ws-pinger").welcomed, 2, "{summary}");
    // Plain text on the TLS port was rejected after an alert, and stalled handshakes were
    // closed by the timeout: the server counted both, and the clients saw the close.
    assert!(disconnects(&metrics, "tls_error") > 0, "{summary}");
    assert!(disconnects(&metrics, "handshake_timeout") > 0, "{summary}");
    assert!(
        report.tally("tls-garbage").closed_by_server > 0,
        "{summary}"
    );
    assert!(
        report.tally("tls-staller").closed_by_server > 0,
        "{summary}"
    );
    // A TLS client that stopped reading after its handshake was cut off as too slow, like a
    // plain one (only the TLS non-readers are TLS clients the server may cut off so).
    too_slow_on(
        &metrics,
        "TLS",
        "TLS non-readers cut off as too slow",
        &summary,
    );

    // The WebSocket misbehaviours happened and were handled. Unmasked frames: the server
    // counted a WebSocket protocol error, and the clients saw its close frame with 1002.
    assert!(disconnects(&metrics, "websocket_error") > 0, "{summary}");
    assert!(report.tally("ws-unmasked").confirmed > 0, "{summary}");
    // Messages over --max-line: the clients were told the line was too long, and answered
    // after that, so they were kept.
    let oversized = report.tally("ws-oversized");
    assert!(
        oversized.too_long > 0 && oversized.confirmed > 0,
        "{summary}"
    );
    // Unfinished request heads were closed by --http-head-timeout: the clients saw the
    // close, and the server's log says why (its counters lump HTTP heads with TLS
    // handshakes as `handshake_timeout`, and some of the closes are refusals of a full
    // server).
    assert!(
        report.tally("http-slowloris").closed_by_server > 0,
        "{summary}"
    );
    logged(
        &log,
        "HTTP request heads timed out",
        |l| {
            l.contains("HTTP handshake not finished in time")
                || l.contains("disconnected: HTTP handshake timed out")
        },
        &summary,
    );
    // A WebSocket client that stopped reading was cut off as too slow.
    too_slow_on(
        &metrics,
        "WebSocket",
        "WebSocket non-readers cut off as too slow",
        &summary,
    );

    // The operator was one in both rounds and dealt with its trolls: each check of it ran and
    // passed (all passed above; by name here, so that none can go missing unnoticed), and the
    // server's log says it from its side.
    for check in [
        "operator opered",
        "kicks told and closed",
        "bans told and enforced",
        "moderation announced",
        "bans lifted",
    ] {
        assert_eq!(
            report.outcome(check),
            Some(Outcome::Pass),
            "{check}:\n{summary}"
        );
    }
    assert_eq!(report.tally("operator").welcomed, 2, "{summary}");
    logged(
        &log,
        "operators",
        |l| l.contains(&format!("is now operator {OPERATOR}")),
        &summary,
    );
    logged(
        &log,
        "trolls kicked",
        |l| l.contains("disconnected: kicked by "),
        &summary,
    );
    logged(
        &log,
        "trolls banned by nick",
        |l| l.contains(&format!("operator {OPERATOR} banned guest-")),
        &summary,
    );
    logged(
        &log,
        "connections refused from the banned 127.0.0.2",
        |l| l.contains("127.0.0.2:") && l.contains("refused: banned: "),
        &summary,
    );
    logged(
        &log,
        "bans lifted",
        |l| l.contains(&format!("operator {OPERATOR} lifted the ban on 127.0.0.2")),
        &summary,
    );
}

/// A `--tls-ca` that cannot be used stops the run with a reason naming it, before anything
/// connects (the target has no server).
#[test]
fn chaos_refuses_a_tls_ca_it_cannot_read() {
    let cert = TestCert::new();
    let empty = cert.dir().join("empty.pem");
    std::fs::write(&empty, "").expect("write an empty file");
    for (ca, says) in [
        (cert.dir().join("missing.pem"), "cannot read --tls-ca"),
        (empty, "holds no PEM certificate"),
    ] {
        let err = chaos::run(&bench_args(&format!(
            "--scenario chaos --target 127.0.0.1:1 --tls-target 127.0.0.1:1 --tls-ca {}",
            ca.display()
        )))
        .expect_err("a run with an unusable --tls-ca");
        assert!(err.contains(says) && err.contains("--tls-ca"), "{err}");
    }
}
