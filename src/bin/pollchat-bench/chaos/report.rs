//! What a chaos run concludes: the rounds merged into one [`ChaosReport`], each promise
//! checked ([`Check`]: PASS, FAIL or SKIP), the server's descriptors and memory judged
//! across the rounds, and the report told as a summary (as one JSON object: `json.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::history::Replays;
use super::operator::{self, Figures, Verdicts};
use super::rooms::RoomLines;
use crate::worker::latency_histogram;
use pollchat::limits::TRIM_FREE;

/// How much more heap (anonymous memory, `RssAnon`) the server may hold after a round than
/// before round 1 (cold): what it may keep free without trimming ([`TRIM_FREE`], 4 MiB) and
/// 3 MiB more for what it keeps in use.
///
/// The server gives freed memory back (`malloc_trim` when its loop goes quiet, see
/// `memory.rs`), but only once glibc holds [`TRIM_FREE`] free: a round that ends with a little
/// less is not trimmed, by design, and the heap stays that much above what is in use. So the
/// margin must be more than that threshold. Measured on 2026-12-01 with the chaos test's
/// settings (debug build, one round at a time against one server, history on): 1,024 KiB
/// cold; after a round, 1,800 KiB when the server had trimmed, and 4,796 to 5,396 KiB when
/// it had not (its debug log showed one trim in five rounds, of 4,888,544 free bytes), which
/// a margin equal to the threshold failed about one run in three. The 2 MiB beyond it cover
/// what a round leaves in use (the lobby's history, the tables' capacity: 780 KiB there).
/// The heap and not RSS: RSS also counts the binary's code, which stays resident once it has
/// run, so a round that runs code never run before (TLS, error paths) raises RSS for good
/// without the server holding a byte more (the debug build's RSS rose 4 MB that way in one
/// run). The settle phase waits for the trim.
///
/// 3 MiB beyond the threshold since 2026-12-07: a witness now stays in each room through the
/// settle (so both rooms and their history, up to 20 flood lines of 4 KB each, are still
/// held), with an operator and its trolls beside the chatters. After a round the heap was then
/// 6,076 to 7,084 KiB over a cold 952 to 956 KiB (15 rounds, debug build, 2-core VM), and
/// 1 run in 10 went past the 2 MiB margin by 4 to 12 KiB while the round-to-round figures did
/// not grow: the kept rooms, not a leak.
pub const HEAP_MARGIN_KIB: u64 = (TRIM_FREE / 1024) as u64 + 3072;

/// What happened to the connections of one role (in the JSON report, one object per role).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub opened: u64,
    /// Could not connect at all.
    pub failed: u64,
    pub welcomed: u64,
    /// Told the server is full, or that its address has too many connections.
    pub refused: u64,
    /// Closed by the server (for chatters and pingers: after their `/quit`).
    pub closed_by_server: u64,
    /// "line too long" notices received.
    pub too_long: u64,
    /// The server was seen handling it as it must, from the client's side: a `ws-unmasked`
    /// client got a close frame with 1002, a `ws-oversized` one was answered after its
    /// `*** line too long` (so it was kept).
    pub confirmed: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.opened += other.opened;
        self.failed += other.failed;
        self.welcomed += other.welcomed;
        self.refused += other.refused;
        self.closed_by_server += other.closed_by_server;
        self.too_long += other.too_long;
        self.confirmed += other.confirmed;
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked (a run without `--server-pid` cannot see the server's resources).
    Skipped,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIP",
        }
    }
}

/// One promise checked.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// The promises checked in every round, over what its well-behaved clients recorded.
const PER_ROUND: [&str; 7] = [
    "exactly once",
    "one global order",
    "rooms kept apart",
    "history replayed",
    "clean text",
    "kept answering",
    "no well-behaved client lost",
];

/// What one round left behind, for the report.
#[derive(Debug, Clone)]
pub struct RoundFigures {
    /// From the first connect to the end of the settle phase.
    pub secs: f64,
    pub lines_sent: u64,
    pub deliveries: u64,
    /// The server's open descriptors and heap (KiB) once the round's clients were gone, and
    /// its highest heap during the round (with `--server-pid`).
    pub fds_end: Option<usize>,
    pub heap_kib_end: Option<u64>,
    pub heap_kib_peak: Option<u64>,
    /// The per-round promises this round broke.
    pub failed: Vec<&'static str>,
}

impl RoundFigures {
    /// The server's descriptors and heap after the round and its highest heap during it: all
    /// three, or none (without `--server-pid`, or once the server is gone).
    pub fn server(&self) -> Option<(usize, u64, u64)> {
        Some((self.fds_end?, self.heap_kib_end?, self.heap_kib_peak?))
    }

    /// A round's figures and the per-round promises it broke.
    fn of(round: &Round) -> RoundFigures {
        RoundFigures {
            secs: round.secs,
            lines_sent: round.lines_sent,
            deliveries: round.deliveries,
            fds_end: round.end.map(|(fds, _)| fds),
            heap_kib_end: round.end.map(|(_, rss)| rss),
            heap_kib_peak: round.heap_peak,
            failed: PER_ROUND
                .iter()
                .zip(&round.verdicts)
                .chain(
                    operator::CHECKS
                        .iter()
                        .zip(round.moderation.iter().flatten()),
                )
                .filter(|(_, verdict)| verdict.is_err())
                .map(|(&name, _)| name)
                .collect(),
        }
    }
}

/// What a chaos run saw over all its rounds, and what it concluded.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The whole run, every round and its settling.
    pub secs: f64,
    pub rounds: Vec<RoundFigures>,
    /// Counts summed over the rounds.
    pub tallies: Vec<(&'static str, Tally)>,
    pub lines_sent: u64,
    /// Of `lines_sent`, those sent by chatters on the TLS listener (`--tls-target`).
    pub lines_sent_tls: u64,
    /// Of `lines_sent`, those sent by chatters over WebSocket (`--ws-target`).
    pub lines_sent_ws: u64,
    pub deliveries: u64,
    pub expected: u64,
    /// The same figures for each room, summed over the rounds: the lobby, then the second.
    pub rooms: Vec<(&'static str, RoomLines)>,
    /// The history replayed to well-behaved clients as they entered a room.
    pub replays: Replays,
    /// Chatter lines, sender to receiver, in microseconds, over every round: p50, p99, max.
    pub latency_us: [u64; 3],
    pub pings_sent: u64,
    pub pings_answered: u64,
    /// Round trips in microseconds: p50, p99, slowest (including any never answered).
    pub ping_us: [u64; 3],
    /// The server's open descriptors and heap (KiB) before round 1 (with `--server-pid`).
    pub cold: Option<(usize, u64)>,
    /// The server's highest heap (KiB) seen during the run.
    pub heap_kib_peak: Option<u64>,
    /// The server's counters at the end (`--server-stats`), as it sent them.
    pub server_stats: Option<String>,
    /// What the operator did, summed over the rounds (with `--oper`).
    pub operator: Option<Figures>,
    pub checks: Vec<Check>,
}

impl ChaosReport {
    /// Every check passed (skipped ones do not count against).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// The outcome of the check called `name`, if there is one.
    /// (Asked by the tests; `tests/common/bench.rs` asks the same of the JSON report.)
    #[cfg(test)]
    pub fn outcome(&self, name: &str) -> Option<Outcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.outcome)
    }

    /// The room's figures summed over the rounds (zero for a room the run did not have).
    /// (Asked by the tests; `tests/common/bench.rs` asks the same of the JSON report.)
    #[cfg(test)]
    pub fn room(&self, room: &str) -> RoomLines {
        self.rooms
            .iter()
            .find(|(name, _)| *name == room)
            .map_or_else(RoomLines::default, |&(_, r)| r)
    }

    /// The role's counts summed over the rounds (zero for a role that never ran).
    /// (Asked by the tests; `tests/common/bench.rs` asks the same of the JSON report.)
    #[cfg(test)]
    pub fn tally(&self, role: &str) -> Tally {
        self.tallies
            .iter()
            .find(|(name, _)| *name == role)
            .map_or_else(Tally::default, |&(_, t)| t)
    }

    /// A human summary: the role table, the figures, each round, each check and the verdict.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        self.write_figures(&mut s);
        self.write_rounds_and_checks(&mut s);
        s
    }

    /// The summary's first part: the roles' counts, the chatters' lines, the pings, and the
    /// server before round 1.
    fn write_figures(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "chaos: {} rounds, {:.1} s; counts summed over the rounds",
            self.rounds.len(),
            self.secs
        );
        self.write_roles(s);
        let [p50, p99, max] = self.latency_us.map(|us| us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "chatter lines: {} sent ({} over TLS, {} over WebSocket), {} of {} deliveries; \
             latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
            self.lines_sent,
            self.lines_sent_tls,
            self.lines_sent_ws,
            self.deliveries,
            self.expected
        );
        for (room, r) in &self.rooms {
            let _ = writeln!(
                s,
                "  {room}: {} chatters, {} lines sent ({} over TLS, {} over WebSocket), {} of \
                 {} deliveries",
                r.chatters,
                r.lines_sent,
                r.lines_sent_tls,
                r.lines_sent_ws,
                r.deliveries,
                r.expected
            );
        }
        let h = self.replays;
        let _ = writeln!(
            s,
            "history: {} replays on entering a room, {} lines, {} of them chatter lines of \
             the round before",
            h.replays, h.lines, h.said_the_round_before
        );
        let [p50, p99, max] = self.ping_us.map(|us| us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "pings: {} sent, {} answered; round trip p50 {p50:.2} ms, p99 {p99:.2} ms, \
             slowest {max:.2} ms",
            self.pings_sent, self.pings_answered
        );
        if let Some(f) = self.operator {
            let _ = writeln!(
                s,
                "operator: {} trolls kicked, {} banned by nick and {} by address, {} clients \
                 from a banned address refused, {} bans lifted ({} trolls replaced, the \
                 server full)",
                f.kicks,
                f.nick_bans,
                f.address_bans,
                f.evaders_refused,
                f.unbans,
                f.trolls_replaced
            );
        }
        if let (Some((fds, rss)), Some(peak)) = (self.cold, self.heap_kib_peak) {
            let _ = writeln!(
                s,
                "server: {fds} descriptors and {rss} KiB heap cold (before round 1), \
                 {peak} KiB at most"
            );
        }
    }

    /// The role table: what happened to each role's connections.
    fn write_roles(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  {:<16}{:>8}{:>8}{:>10}{:>9}{:>18}{:>10}{:>11}",
            "role",
            "opened",
            "failed",
            "welcomed",
            "refused",
            "closed by server",
            "too long",
            "confirmed"
        );
        for (name, t) in &self.tallies {
            let _ = writeln!(
                s,
                "  {name:<16}{:>8}{:>8}{:>10}{:>9}{:>18}{:>10}{:>11}",
                t.opened,
                t.failed,
                t.welcomed,
                t.refused,
                t.closed_by_server,
                t.too_long,
                t.confirmed
            );
        }
    }

    /// The summary's second part: each round, the server's counters, each check and the
    /// verdict.
    fn write_rounds_and_checks(&self, s: &mut String) {
        for (i, r) in self.rounds.iter().enumerate() {
            let _ = write!(
                s,
                "round {}: {:.1} s, {} chatter lines sent, {} delivered",
                i + 1,
                r.secs,
                r.lines_sent,
                r.deliveries
            );
            if let Some((fds, end, peak)) = r.server() {
                let _ = write!(
                    s,
                    "; server heap {peak} KiB at most, then {fds} descriptors and {end} KiB"
                );
            }
            if !r.failed.is_empty() {
                let _ = write!(s, "; FAILED {}", r.failed.join(", "));
            }
            let _ = writeln!(s);
        }
        if let Some(stats) = &self.server_stats {
            let _ = writeln!(s, "server counters: {stats}");
        }
        for check in &self.checks {
            let word = check.outcome.word();
            let _ = writeln!(s, "{word}  {}: {}", check.name, check.detail);
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count();
        let verdict = if failed == 0 { "PASS" } else { "FAIL" };
        let _ = writeln!(
            s,
            "chaos: {verdict} ({failed} of {} checks failed)",
            self.checks.len()
        );
    }
}

/// What one round recorded, once its clients are gone.
pub(super) struct Round {
    pub(super) secs: f64,
    pub(super) tallies: BTreeMap<&'static str, Tally>,
    pub(super) lines_sent: u64,
    /// Of `lines_sent`, those of chatters on the TLS listener, and over WebSocket.
    pub(super) lines_sent_tls: u64,
    pub(super) lines_sent_ws: u64,
    pub(super) deliveries: u64,
    /// What a lossless server delivers: every chatter line to every other chatter of its
    /// room.
    pub(super) expected: u64,
    /// The same figures for each room, the lobby first.
    pub(super) rooms: [(&'static str, RoomLines); 2],
    pub(super) replays: Replays,
    pub(super) latency: Histogram<u64>,
    pub(super) pings_sent: u64,
    pub(super) pings_answered: u64,
    /// The slowest round trip, a ping never answered counting as taking until the end.
    pub(super) ping_slowest: Duration,
    /// The ping limit it was judged by (`--ping-limit`).
    pub(super) ping_limit: Duration,
    pub(super) round_trip: Histogram<u64>,
    /// One per promise of [`PER_ROUND`], in that order: `Err` says how it was broken.
    pub(super) verdicts: [Result<(), String>; PER_ROUND.len()],
    /// The same for the operator's checks (`operator::CHECKS`), without `--oper` none, and
    /// what it did.
    pub(super) moderation: Option<Verdicts>,
    pub(super) operator: Figures,
    /// The server's descriptors and heap after the settle phase, and its highest heap during
    /// the round (with `--server-pid`).
    pub(super) end: Option<(usize, u64)>,
    pub(super) heap_peak: Option<u64>,
}

impl ChaosReport {
    /// Merges the rounds: counts summed, latency histograms added, and each per-round promise
    /// failed if any round broke it (the report names the round). Then the server's resources,
    /// across the rounds.
    pub(super) fn new(
        secs: f64,
        chatters: usize,
        rounds: Vec<Round>,
        cold: Option<(usize, u64)>,
        server_stats: Option<String>,
    ) -> Result<ChaosReport, String> {
        let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
        let mut replays = Replays::default();
        let mut latency = latency_histogram().map_err(|e| e.to_string())?;
        let mut round_trip = latency_histogram().map_err(|e| e.to_string())?;
        for round in &rounds {
            for (&role, &tally) in &round.tallies {
                *tallies.entry(role).or_default() += tally;
            }
            replays += round.replays;
            latency.add(&round.latency).map_err(|e| e.to_string())?;
            round_trip
                .add(&round.round_trip)
                .map_err(|e| e.to_string())?;
        }
        let sum = |figure: fn(&Round) -> u64| rounds.iter().map(figure).sum::<u64>();
        let ping_slowest = rounds
            .iter()
            .map(|r| r.ping_slowest)
            .max()
            .unwrap_or_default();
        let mut report = ChaosReport {
            secs,
            rounds: rounds.iter().map(RoundFigures::of).collect(),
            tallies: tallies.into_iter().collect(),
            lines_sent: sum(|r| r.lines_sent),
            lines_sent_tls: sum(|r| r.lines_sent_tls),
            lines_sent_ws: sum(|r| r.lines_sent_ws),
            deliveries: sum(|r| r.deliveries),
            expected: sum(|r| r.expected),
            rooms: rooms_summed(&rounds),
            replays,
            latency_us: quantiles(&latency),
            pings_sent: sum(|r| r.pings_sent),
            pings_answered: sum(|r| r.pings_answered),
            ping_us: quantiles(&round_trip),
            cold,
            heap_kib_peak: cold.map(|(_, rss)| {
                rounds
                    .iter()
                    .filter_map(|r| r.heap_peak)
                    .fold(rss, u64::max)
            }),
            server_stats,
            operator: rounds.iter().all(|r| r.moderation.is_some()).then(|| {
                let mut sum = Figures::default();
                for round in &rounds {
                    sum += round.operator;
                }
                sum
            }),
            checks: Vec::new(),
        };
        report.ping_us[2] = u64::try_from(ping_slowest.as_micros()).unwrap_or(u64::MAX);
        report.checks = per_round_checks(&report, chatters, ping_slowest, &rounds);
        let moderation: Vec<_> = rounds.iter().map(|r| r.moderation.as_ref()).collect();
        let figures = report.operator.unwrap_or_default();
        report.checks.extend(operator::checks(&moderation, figures));
        let ends: Vec<_> = rounds.iter().map(|r| r.end).collect();
        report.checks.extend(resource_checks(cold, &ends));
        Ok(report)
    }
}

/// Each room's figures summed over the rounds, in the rooms' order.
fn rooms_summed(rounds: &[Round]) -> Vec<(&'static str, RoomLines)> {
    let mut rooms: Vec<(&'static str, RoomLines)> = Vec::new();
    for &(room, lines) in rounds.iter().flat_map(|r| &r.rooms) {
        match rooms.iter_mut().find(|(name, _)| *name == room) {
            Some((_, sum)) => *sum += lines,
            None => rooms.push((room, lines)),
        }
    }
    rooms
}

/// p50, p99 and the maximum of a histogram (zeros if it is empty).
fn quantiles(h: &Histogram<u64>) -> [u64; 3] {
    if h.is_empty() {
        [0, 0, 0]
    } else {
        [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]
    }
}

/// The promises of [`PER_ROUND`], each judged over every round: a pass says what was kept
/// (from the merged figures of `report`), a failure names each round that broke it and how.
fn per_round_checks(
    report: &ChaosReport,
    chatters: usize,
    ping_slowest: Duration,
    rounds: &[Round],
) -> Vec<Check> {
    let in_every_round = if rounds.len() > 1 {
        format!("; kept in each of the {} rounds", rounds.len())
    } else {
        String::new()
    };
    PER_ROUND
        .iter()
        .zip(kept(report, chatters, ping_slowest, limit_of(rounds)))
        .enumerate()
        .map(|(i, (&name, kept))| {
            let broken: Vec<String> = (1..)
                .zip(rounds)
                .filter_map(|(r, round)| {
                    let why = round.verdicts[i].as_ref().err()?;
                    Some(format!("round {r}: {why}"))
                })
                .collect();
            if broken.is_empty() {
                Check {
                    name,
                    outcome: Outcome::Pass,
                    detail: kept + &in_every_round,
                }
            } else {
                Check {
                    name,
                    outcome: Outcome::Fail,
                    detail: broken.join("; "),
                }
            }
        })
        .collect()
}

/// What a pass of each promise of [`PER_ROUND`] says was kept, from the merged figures.
/// The ping limit the rounds were judged by (the same for every round).
fn limit_of(rounds: &[Round]) -> Duration {
    rounds.first().map_or(Duration::ZERO, |r| r.ping_limit)
}

fn kept(
    report: &ChaosReport,
    chatters: usize,
    ping_slowest: Duration,
    ping_limit: Duration,
) -> [String; 7] {
    let each_room: Vec<String> = report
        .rooms
        .iter()
        .map(|(room, r)| format!("{room} {} of {}", r.deliveries, r.expected))
        .collect();
    let rooms: Vec<&str> = report.rooms.iter().map(|&(room, _)| room).collect();
    [
        format!(
            "{} chatter lines delivered ({}), none twice",
            report.deliveries,
            each_room.join(", ")
        ),
        "in each room every chatter saw the lines in one order, each sender's as sent".into(),
        format!("no line said in {} reached the other", rooms.join(" or ")),
        report.replays.kept(),
        "every line received was UTF-8 without control characters".to_string(),
        answered(
            report.pings_answered,
            report.pings_sent,
            ping_slowest,
            ping_limit,
        ),
        format!("all {chatters} chatters and every pinger stayed until they quit"),
    ]
}

/// The reasons, each once, in the order first given, with how often it came when more than
/// once: twenty chatters not closed after `/quit` make one line, not twenty.
pub(super) fn counted(reasons: &[String]) -> String {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for reason in reasons {
        match seen.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => seen.push((reason, 1)),
        }
    }
    let said: Vec<String> = seen
        .into_iter()
        .map(|(reason, n)| match n {
            1 => reason.to_string(),
            n => format!("{reason} ({n} times)"),
        })
        .collect();
    said.join("; ")
}

/// "N of M pings answered, slowest in X ms (limit 2 s)".
pub(super) fn answered(answered: u64, sent: u64, slowest: Duration, limit: Duration) -> String {
    format!(
        "{answered} of {sent} pings answered, slowest in {:.1} ms (limit {} s)",
        slowest.as_secs_f64() * 1000.0,
        limit.as_secs_f64()
    )
}

const FDS: &str = "descriptors back to baseline";
const HEAP: &str = "memory back to baseline";

/// The server's descriptors and memory, judged across the rounds from `cold` (before round 1)
/// and `ends` (after each round's settle phase). Descriptors must be back to the cold
/// baseline after every round, and memory within [`HEAP_MARGIN_KIB`] of it.
fn resource_checks(cold: Option<(usize, u64)>, ends: &[Option<(usize, u64)>]) -> [Check; 2] {
    let all = |outcome, detail: &str| {
        [FDS, HEAP].map(|name| Check {
            name,
            outcome,
            detail: detail.to_string(),
        })
    };
    let Some((fds_cold, heap_cold)) = cold else {
        return all(
            Outcome::Skipped,
            "needs --server-pid of a server on this machine",
        );
    };
    let ends: Option<Vec<(usize, u64)>> = ends.iter().copied().collect();
    let Some(ends) = ends.filter(|e| !e.is_empty()) else {
        return all(
            Outcome::Fail,
            "the server's /proc entry went away during the run: did it exit?",
        );
    };
    let fds: Vec<usize> = ends.iter().map(|&(fds, _)| fds).collect();
    let rss: Vec<u64> = ends.iter().map(|&(_, rss)| rss).collect();
    [fds_check(fds_cold, &fds), heap_check(heap_cold, &rss)]
}

/// Descriptors after each round (at least one) against `cold`, before round 1.
fn fds_check(cold: usize, after: &[usize]) -> Check {
    let over: Vec<String> = (1..)
        .zip(after)
        .filter(|&(_, &fds)| fds > cold)
        .map(|(round, _)| format!("round {round}"))
        .collect();
    let mut detail = format!("{cold} before round 1, {} after each round", listed(after));
    if !over.is_empty() {
        let _ = write!(detail, ": still more than before after {}", over.join(", "));
    }
    Check {
        name: FDS,
        outcome: if over.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        detail,
    }
}

/// heap after each round (at least one) against `cold`, before round 1.
fn heap_check(cold: u64, after: &[u64]) -> Check {
    let over: Vec<String> = (1..)
        .zip(after)
        .filter(|&(_, &rss)| rss > cold + HEAP_MARGIN_KIB)
        .map(|(round, _)| format!("round {round}"))
        .collect();
    let mut detail = format!(
        "{cold} KiB cold, {} KiB after each round (margin {HEAP_MARGIN_KIB} KiB)",
        listed(after)
    );
    if !over.is_empty() {
        let _ = write!(detail, ": still over after {}", over.join(", "));
    }
    Check {
        name: HEAP,
        outcome: if over.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        detail,
    }
}

/// "a, b, c".
fn listed(figures: &[impl ToString]) -> String {
    let figures: Vec<String> = figures.iter().map(ToString::to_string).collect();
    figures.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round in which every promise was kept: `lines` chatter lines among 3 chatters, one
    /// latency of `latency_us`, and the server left with `end` (descriptors, heap KiB).
    fn kept_round(lines: u64, latency_us: u64, end: Option<(usize, u64)>) -> Round {
        let mut latency = latency_histogram().unwrap();
        latency.record(latency_us).unwrap();
        let mut tallies = BTreeMap::new();
        tallies.insert(
            "storm",
            Tally {
                opened: 10,
                refused: 4,
                ..Tally::default()
            },
        );
        Round {
            secs: 1.0,
            tallies,
            lines_sent: lines,
            lines_sent_tls: 0,
            lines_sent_ws: 0,
            deliveries: 2 * lines,
            expected: 2 * lines,
            rooms: [
                (
                    "#lobby",
                    RoomLines {
                        chatters: 3,
                        lines_sent: lines,
                        lines_sent_tls: 0,
                        lines_sent_ws: 0,
                        deliveries: 2 * lines,
                        expected: 2 * lines,
                    },
                ),
                ("#chaos", RoomLines::default()),
            ],
            replays: Replays {
                replays: 4,
                lines: 20,
                said_the_round_before: 12,
                ..Replays::default()
            },
            latency,
            pings_sent: 5,
            pings_answered: 5,
            ping_slowest: Duration::from_millis(3),
            ping_limit: Duration::from_secs(2),
            round_trip: latency_histogram().unwrap(),
            verdicts: PER_ROUND.map(|_| Ok(())),
            moderation: None,
            operator: Figures::default(),
            end,
            heap_peak: end.map(|(_, rss)| rss),
        }
    }

    fn report(rounds: Vec<Round>, cold: Option<(usize, u64)>) -> ChaosReport {
        ChaosReport::new(10.0, 3, rounds, cold, None).unwrap()
    }

    const COLD: Option<(usize, u64)> = Some((11, 3_400));

    /// Rounds that kept every promise and left the server with `ends` (descriptors, heap
    /// KiB), after the cold baseline [`COLD`].
    fn after_rounds(ends: &[Option<(usize, u64)>]) -> ChaosReport {
        let rounds = ends.iter().map(|&end| kept_round(10, 100, end)).collect();
        report(rounds, COLD)
    }

    fn check<'a>(report: &'a ChaosReport, name: &str) -> &'a Check {
        report.checks.iter().find(|c| c.name == name).unwrap()
    }

    const FDS: &str = "descriptors back to baseline";
    const HEAP: &str = "memory back to baseline";

    #[test]
    fn memory_back_near_the_cold_baseline_after_every_round_passes() {
        let r = after_rounds(&[Some((11, 4_400)), Some((11, 5_900)), Some((11, 4_100))]);
        assert!(r.passed(), "{}", r.summary());
    }

    #[test]
    fn memory_kept_past_the_margin_after_a_round_fails_and_names_it() {
        let kept = 3_400 + HEAP_MARGIN_KIB + 1;
        let r = after_rounds(&[Some((11, 4_000)), Some((11, kept))]);
        let memory = check(&r, HEAP);
        assert_eq!(memory.outcome, Outcome::Fail);
        assert!(
            memory.detail.ends_with("after round 2"),
            "{}",
            memory.detail
        );
        assert_eq!(r.outcome(FDS), Some(Outcome::Pass));
    }

    #[test]
    fn one_round_is_judged_against_the_cold_baseline_too() {
        let r = after_rounds(&[Some((11, 13_500))]);
        assert_eq!(r.outcome(HEAP), Some(Outcome::Fail));
        let r = after_rounds(&[Some((11, 4_000))]);
        assert_eq!(r.outcome(HEAP), Some(Outcome::Pass));
    }

    #[test]
    fn descriptors_left_open_after_a_round_fail_and_name_it() {
        let r = after_rounds(&[Some((11, 13_500)), Some((25, 13_500))]);
        let fds = check(&r, FDS);
        assert_eq!(fds.outcome, Outcome::Fail);
        assert!(fds.detail.ends_with("after round 2"), "{}", fds.detail);
    }

    #[test]
    fn a_server_that_exited_fails_the_resource_checks() {
        let r = after_rounds(&[Some((11, 13_500)), None]);
        assert_eq!(r.outcome(FDS), Some(Outcome::Fail));
        assert_eq!(r.outcome(HEAP), Some(Outcome::Fail));
    }

    #[test]
    fn resources_are_skipped_without_a_server_pid() {
        let r = report(vec![kept_round(10, 100, None)], None);
        assert!(r.passed());
        assert_eq!(r.outcome(HEAP), Some(Outcome::Skipped));
    }

    #[test]
    fn a_promise_broken_in_one_round_fails_and_names_that_round() {
        let mut broken = kept_round(10, 100, None);
        broken.verdicts[0] = Err("chatter 1 received line 3 of chatter 0 never".into());
        let r = report(vec![kept_round(10, 100, None), broken], None);
        assert!(!r.passed());
        let once = check(&r, "exactly once");
        assert_eq!(once.outcome, Outcome::Fail);
        assert_eq!(
            once.detail,
            "round 2: chatter 1 received line 3 of chatter 0 never"
        );
        assert_eq!(r.rounds[0].failed, Vec::<&str>::new());
        assert_eq!(r.rounds[1].failed, vec!["exactly once"]);
        assert!(r.json().contains("\"failed\":[\"exactly once\"]"));
    }

    #[test]
    fn the_same_reason_is_said_once_with_its_count() {
        let lost = [
            "chatter was not closed after /quit",
            "pinger was not closed after /quit",
        ];
        let reasons: Vec<String> = [lost[0], lost[0], lost[1], lost[0]]
            .map(String::from)
            .into();
        assert_eq!(
            counted(&reasons),
            "chatter was not closed after /quit (3 times); pinger was not closed after /quit"
        );
    }

    #[test]
    fn rounds_are_merged_counts_summed_and_latencies_combined() {
        let r = report(
            vec![kept_round(10, 100, None), kept_round(30, 9_000, None)],
            None,
        );
        assert_eq!((r.lines_sent, r.deliveries, r.expected), (40, 80, 80));
        let lobby = r.room("#lobby");
        assert_eq!(
            (lobby.chatters, lobby.lines_sent, lobby.expected),
            (3, 40, 80)
        );
        assert_eq!(
            (r.replays.replays, r.replays.said_the_round_before),
            (8, 24)
        );
        assert_eq!((r.pings_sent, r.pings_answered), (10, 10));
        assert_eq!((r.tally("storm").opened, r.tally("storm").refused), (20, 8));
        // Two samples: the median is the first round's, the maximum the second's.
        assert_eq!(r.latency_us[0], 100);
        assert!(r.latency_us[2] >= 9_000, "{:?}", r.latency_us);
    }

    fn with_server_stats(stats: &str) -> ChaosReport {
        ChaosReport::new(
            10.0,
            3,
            vec![kept_round(10, 100, None)],
            None,
            Some(stats.into()),
        )
        .unwrap()
    }

    #[test]
    fn server_counters_are_embedded_as_the_server_sent_them() {
        let stats = r#"{"uptime_secs":7.08,"clients":0,"disconnects":{"quit":16,"reset":3}}"#;
        let json = with_server_stats(stats).json();
        assert!(
            json.contains(&format!(",\"server_stats\":{stats},")),
            "{json}"
        );
    }

    #[test]
    fn server_counters_that_are_not_json_become_a_string_and_the_report_still_parses() {
        let stats = "not \"json\" {";
        let json = with_server_stats(stats).json();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["server_stats"], stats);
    }

    #[test]
    fn json_lists_roles_and_checks_in_the_report_order() {
        let r = after_rounds(&[Some((11, 4_000)), Some((11, 4_000))]);
        let json = r.json();
        let names: Vec<String> = r
            .checks
            .iter()
            .map(|c| format!("\"{}\":\"{}\"", c.name, c.outcome.word()))
            .collect();
        let at: Vec<usize> = names
            .iter()
            .map(|n| json.find(n.as_str()).unwrap())
            .collect();
        assert!(at.is_sorted(), "{json}");
        assert!(
            json.contains(
                "\"roles\":{\"storm\":{\"opened\":20,\"failed\":0,\"welcomed\":0,\"refused\":8,"
            ),
            "{json}"
        );
        assert!(
            json.contains("\"fds_before\":11,\"fds_end\":11,\"heap_kib_before\":3400,"),
            "{json}"
        );
    }
}
