//! The chaos scenario (`pollchat bench --scenario chaos`) in `cargo test`: a short run against
//! the built binary, with its limits set low enough that the misbehaving clients hit them.
//! The test checks that every promise held in every round, and also that the limits were
//! really hit, so it cannot pass by a run in which nothing happened.

mod common;

use common::{ServerProcess, bench_args};
use pollchat::bench::chaos::{self, ChaosReport, Outcome};

/// A counter from the server's `--stats-udp` JSON, e.g. `"too_slow":3` (0 when absent: the
/// server lists only the disconnect reasons that happened).
fn counter(report: &ChaosReport, name: &str) -> u64 {
    let stats = report
        .server_stats
        .as_deref()
        .unwrap_or_else(|| panic!("no server counters in:\n{}", report.summary()));
    let Some((_, after)) = stats.split_once(&format!("\"{name}\":")) else {
        return 0;
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|e| panic!("{name} in {stats}: {e}"))
}

/// Two short rounds against the real binary: 10 chatters and a pinger, 40 misbehaving
/// clients at once, storms of 150 connections past `--max-clients 120`, non-readers given
/// one second over a 512 KiB queue. Every promise holds in both rounds, descriptors and
/// memory come back, and the limits were really hit: storms refused, lines too long dropped,
/// non-readers cut off as too slow.
#[test]
fn chaos_keeps_every_promise_while_clients_hit_the_limits() {
    let mut server = ServerProcess::start(&[
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
    ]);
    let stats = server.stats_addr();
    let report = chaos::run(&bench_args(&format!(
        "--scenario chaos --target {} --server-pid {} --server-stats {stats} \
         --chatters 10 --conns 40 --storm 150 --duration 5 --rounds 2",
        server.addr,
        server.pid()
    )))
    .expect("the chaos scenario runs");
    let summary = report.summary();
    // Shown with `cargo test --test chaos -- --nocapture`.
    println!("{summary}");
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

    // The limits were hit. Storms went past --max-clients and were told the server is full.
    assert!(report.tally("storm").refused > 0, "{summary}");
    // Endless lines were dropped with a notice, as each went past --max-line.
    assert!(report.tally("endless line").too_long > 0, "{summary}");
    // Non-readers stayed over --max-output for the grace and were disconnected as too slow
    // (a few may reach eight times the limit first, and go at once: that is too slow too).
    assert!(counter(&report, "too_slow") > 0, "{summary}");
    let log = server.log_so_far();
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
}
