//! What a chaos run concludes: the rounds merged into one [`ChaosReport`], each promise
//! checked ([`Check`]: PASS, FAIL or SKIP), the server's descriptors and memory judged
//! across the rounds, and the report told as a summary or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::roles::PING_LIMIT;
use crate::bench::worker::latency_histogram;

/// How much more memory the server may hold after the last round than after the first.
///
/// Not compared with the cold baseline, because freed memory is not returned to the OS: after
/// one 5 s round (`--conns 100 --storm 200`, when every flood line still went to everyone)
/// the server's RSS stayed at 13.5 MB against 3.4 MB cold, yet `gdb -p PID -batch -ex 'call (int)malloc_trim(0)'` on the idle server took it
/// from 13,472 kB to 4,084 kB (and, on 2026-11-22 after eleven rounds, from 13,820 kB to
/// 4,128 kB): the memory was free, glibc kept it for reuse. So round 1 brings the allocator to
/// its high-water mark, and later rounds reuse what it kept: a leak grows round over round,
/// retention does not. Eleven rounds against one server measured after each round (KiB):
/// 12,112, 13,380, 13,628, 13,680, 14,076, 14,120, 13,812, 13,856, 13,824, 13,816, 13,820,
/// that is at most 2,008 KiB above round 1. The margin is twice that; a leak shows once it
/// passes the margin between round 1 and the last, so more rounds, or longer ones, catch
/// smaller leaks.
pub const RSS_MARGIN_KIB: u64 = 4096;

/// What happened to the connections of one role.
#[derive(Debug, Clone, Copy, Default)]
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
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.opened += other.opened;
        self.failed += other.failed;
        self.welcomed += other.welcomed;
        self.refused += other.refused;
        self.closed_by_server += other.closed_by_server;
        self.too_long += other.too_long;
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
pub(super) const PER_ROUND: [&str; 5] = [
    "exactly once",
    "one global order",
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
    /// The server's open descriptors and RSS (KiB) once the round's clients were gone, and
    /// its highest RSS during the round (with `--server-pid`).
    pub fds_end: Option<usize>,
    pub rss_kib_end: Option<u64>,
    pub rss_kib_peak: Option<u64>,
    /// The per-round promises this round broke.
    pub failed: Vec<&'static str>,
}

impl RoundFigures {
    /// The server's descriptors and RSS after the round and its highest RSS during it: all
    /// three, or none (without `--server-pid`, or once the server is gone).
    pub fn server(&self) -> Option<(usize, u64, u64)> {
        Some((self.fds_end?, self.rss_kib_end?, self.rss_kib_peak?))
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
    pub deliveries: u64,
    pub expected: u64,
    /// Chatter lines, sender to receiver, in microseconds, over every round: p50, p99, max.
    pub latency_us: [u64; 3],
    pub pings_sent: u64,
    pub pings_answered: u64,
    /// Round trips in microseconds: p50, p99, slowest (including any never answered).
    pub ping_us: [u64; 3],
    /// The server's open descriptors and RSS (KiB) before round 1 (with `--server-pid`).
    pub cold: Option<(usize, u64)>,
    /// The server's highest RSS (KiB) seen during the run.
    pub rss_kib_peak: Option<u64>,
    /// The server's counters at the end (`--server-stats`), as it sent them.
    pub server_stats: Option<String>,
    pub checks: Vec<Check>,
}

impl ChaosReport {
    /// Every check passed (skipped ones do not count against).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// The outcome of the check called `name`, if there is one.
    pub fn outcome(&self, name: &str) -> Option<Outcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.outcome)
    }

    /// The role's counts summed over the rounds (zero for a role that never ran).
    pub fn tally(&self, role: &str) -> Tally {
        self.tallies
            .iter()
            .find(|(name, _)| *name == role)
            .map_or_else(Tally::default, |&(_, t)| t)
    }

    /// One JSON object on one line: the figures, each round's, and each check as
    /// `"name": "PASS"`.
    pub fn json(&self) -> String {
        let mut tallies = String::new();
        for (i, (name, t)) in self.tallies.iter().enumerate() {
            let _ = write!(
                tallies,
                "{}\"{name}\":{{\"opened\":{},\"failed\":{},\"welcomed\":{},\"refused\":{},\
                 \"closed_by_server\":{},\"too_long\":{}}}",
                if i == 0 { "" } else { "," },
                t.opened,
                t.failed,
                t.welcomed,
                t.refused,
                t.closed_by_server,
                t.too_long
            );
        }
        let mut checks = String::new();
        for (i, c) in self.checks.iter().enumerate() {
            let _ = write!(
                checks,
                "{}\"{}\":\"{}\"",
                if i == 0 { "" } else { "," },
                c.name,
                c.outcome.word()
            );
        }
        let mut rounds = String::new();
        for (i, r) in self.rounds.iter().enumerate() {
            let failed: Vec<String> = r.failed.iter().map(|name| format!("\"{name}\"")).collect();
            let _ = write!(
                rounds,
                "{}{{\"round\":{},\"secs\":{:.3},\"lines_sent\":{},\"deliveries\":{},",
                if i == 0 { "" } else { "," },
                i + 1,
                r.secs,
                r.lines_sent,
                r.deliveries
            );
            if let Some((fds, end, peak)) = r.server() {
                let _ = write!(
                    rounds,
                    "\"fds_end\":{fds},\"rss_kib_end\":{end},\"rss_kib_peak\":{peak},"
                );
            }
            let _ = write!(rounds, "\"failed\":[{}]}}", failed.join(","));
        }
        let mut server = String::new();
        if let (Some((fds_before, rss_before)), Some(peak)) = (self.cold, self.rss_kib_peak) {
            let last = self.rounds.last();
            let _ = write!(
                server,
                "\"fds_before\":{fds_before},\"fds_end\":{},\"rss_kib_before\":{rss_before},\
                 \"rss_kib_first_round\":{},\"rss_kib_peak\":{peak},\"rss_kib_end\":{},",
                json_number(last.and_then(|r| r.fds_end)),
                json_number(self.rounds.first().and_then(|r| r.rss_kib_end)),
                json_number(last.and_then(|r| r.rss_kib_end)),
            );
        }
        if let Some(stats) = &self.server_stats {
            let _ = write!(server, "\"server_stats\":{stats},");
        }
        let [p50, p99, max] = self.latency_us;
        let [ping50, ping99, ping_max] = self.ping_us;
        format!(
            "{{\"scenario\":\"chaos\",\"passed\":{},\"secs\":{:.3},\"rounds\":{},\
             \"lines_sent\":{},\"lines_sent_tls\":{},\"deliveries\":{},\"expected\":{},\
             \"latency_us_p50\":{p50},\
             \"latency_us_p99\":{p99},\"latency_us_max\":{max},\"pings_sent\":{},\
             \"pings_answered\":{},\"ping_us_p50\":{ping50},\"ping_us_p99\":{ping99},\
             \"ping_us_max\":{ping_max},{server}\"roles\":{{{tallies}}},\
             \"per_round\":[{rounds}],\"checks\":{{{checks}}}}}",
            self.passed(),
            self.secs,
            self.rounds.len(),
            self.lines_sent,
            self.lines_sent_tls,
            self.deliveries,
            self.expected,
            self.pings_sent,
            self.pings_answered,
        )
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chaos: {} rounds, {:.1} s; counts summed over the rounds",
            self.rounds.len(),
            self.secs
        );
        let _ = writeln!(
            s,
            "  {:<16}{:>8}{:>8}{:>10}{:>9}{:>18}{:>10}",
            "role", "opened", "failed", "welcomed", "refused", "closed by server", "too long"
        );
        for (name, t) in &self.tallies {
            let _ = writeln!(
                s,
                "  {name:<16}{:>8}{:>8}{:>10}{:>9}{:>18}{:>10}",
                t.opened, t.failed, t.welcomed, t.refused, t.closed_by_server, t.too_long
            );
        }
        let [p50, p99, max] = self.latency_us.map(|us| us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "chatter lines: {} sent ({} over TLS), {} of {} deliveries; latency p50 \
             {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
            self.lines_sent, self.lines_sent_tls, self.deliveries, self.expected
        );
        let [p50, p99, max] = self.ping_us.map(|us| us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "pings: {} sent, {} answered; round trip p50 {p50:.2} ms, p99 {p99:.2} ms, \
             slowest {max:.2} ms",
            self.pings_sent, self.pings_answered
        );
        if let (Some((fds, rss)), Some(peak)) = (self.cold, self.rss_kib_peak) {
            let _ = writeln!(
                s,
                "server: {fds} descriptors and {rss} KiB RSS cold (before round 1), \
                 {peak} KiB at most"
            );
        }
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
                    "; server RSS {peak} KiB at most, then {fds} descriptors and {end} KiB"
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
        s
    }
}

/// A number for JSON, or `null`.
pub(super) fn json_number(n: Option<impl std::fmt::Display>) -> String {
    n.map_or_else(|| "null".to_string(), |n| n.to_string())
}

/// What one round recorded, once its clients are gone.
pub(super) struct Round {
    pub(super) secs: f64,
    pub(super) tallies: BTreeMap<&'static str, Tally>,
    pub(super) lines_sent: u64,
    /// Of `lines_sent`, those of chatters on the TLS listener.
    pub(super) lines_sent_tls: u64,
    pub(super) deliveries: u64,
    /// What a lossless server delivers: every chatter line to every other chatter.
    pub(super) expected: u64,
    pub(super) latency: Histogram<u64>,
    pub(super) pings_sent: u64,
    pub(super) pings_answered: u64,
    /// The slowest round trip, a ping never answered counting as taking until the end.
    pub(super) ping_slowest: Duration,
    pub(super) round_trip: Histogram<u64>,
    /// One per promise of [`PER_ROUND`], in that order: `Err` says how it was broken.
    pub(super) verdicts: [Result<(), String>; PER_ROUND.len()],
    /// The server's descriptors and RSS after the settle phase, and its highest RSS during
    /// the round (with `--server-pid`).
    pub(super) end: Option<(usize, u64)>,
    pub(super) rss_peak: Option<u64>,
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
        let mut latency = latency_histogram().map_err(|e| e.to_string())?;
        let mut round_trip = latency_histogram().map_err(|e| e.to_string())?;
        for round in &rounds {
            for (&role, &tally) in &round.tallies {
                *tallies.entry(role).or_default() += tally;
            }
            latency.add(&round.latency).map_err(|e| e.to_string())?;
            round_trip
                .add(&round.round_trip)
                .map_err(|e| e.to_string())?;
        }
        let sum = |figure: fn(&Round) -> u64| rounds.iter().map(figure).sum::<u64>();
        let lines_sent_tls = sum(|r| r.lines_sent_tls);
        let (lines_sent, deliveries, expected) = (
            sum(|r| r.lines_sent),
            sum(|r| r.deliveries),
            sum(|r| r.expected),
        );
        let (pings_sent, pings_answered) = (sum(|r| r.pings_sent), sum(|r| r.pings_answered));
        let ping_slowest = rounds
            .iter()
            .map(|r| r.ping_slowest)
            .max()
            .unwrap_or_default();

        let in_every_round = if rounds.len() > 1 {
            format!("; kept in each of the {} rounds", rounds.len())
        } else {
            String::new()
        };
        let kept = [
            format!("{deliveries} of {expected} chatter lines delivered, none twice"),
            "every chatter saw the lines in one order, each sender's as sent".to_string(),
            "every line received was UTF-8 without control characters".to_string(),
            answered(pings_answered, pings_sent, ping_slowest),
            format!("all {chatters} chatters and every pinger stayed until they quit"),
        ];
        let mut checks: Vec<Check> = PER_ROUND
            .iter()
            .zip(kept)
            .enumerate()
            .map(|(i, (&name, kept))| {
                let broken: Vec<String> = rounds
                    .iter()
                    .enumerate()
                    .filter_map(|(r, round)| {
                        let why = round.verdicts[i].as_ref().err()?;
                        Some(format!("round {}: {why}", r + 1))
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
            .collect();
        let ends: Vec<_> = rounds.iter().map(|r| r.end).collect();
        checks.extend(resource_checks(cold, &ends));

        let quantiles = |h: &Histogram<u64>| {
            if h.is_empty() {
                [0, 0, 0]
            } else {
                [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]
            }
        };
        let mut ping_us = quantiles(&round_trip);
        ping_us[2] = u64::try_from(ping_slowest.as_micros()).unwrap_or(u64::MAX);
        let rss_kib_peak =
            cold.map(|(_, rss)| rounds.iter().filter_map(|r| r.rss_peak).fold(rss, u64::max));
        let figures = rounds
            .iter()
            .map(|r| RoundFigures {
                secs: r.secs,
                lines_sent: r.lines_sent,
                deliveries: r.deliveries,
                fds_end: r.end.map(|(fds, _)| fds),
                rss_kib_end: r.end.map(|(_, rss)| rss),
                rss_kib_peak: r.rss_peak,
                failed: PER_ROUND
                    .iter()
                    .zip(&r.verdicts)
                    .filter(|(_, verdict)| verdict.is_err())
                    .map(|(&name, _)| name)
                    .collect(),
            })
            .collect();
        Ok(ChaosReport {
            secs,
            rounds: figures,
            tallies: tallies.into_iter().collect(),
            lines_sent,
            lines_sent_tls,
            deliveries,
            expected,
            latency_us: quantiles(&latency),
            pings_sent,
            pings_answered,
            ping_us,
            cold,
            rss_kib_peak,
            server_stats,
            checks,
        })
    }
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
pub(super) fn answered(answered: u64, sent: u64, slowest: Duration) -> String {
    format!(
        "{answered} of {sent} pings answered, slowest in {:.1} ms (limit {} s)",
        slowest.as_secs_f64() * 1000.0,
        PING_LIMIT.as_secs()
    )
}

/// The server's descriptors and memory, judged across the rounds from `cold` (before round 1)
/// and `ends` (after each round's settle phase). Descriptors must be back to the cold
/// baseline after every round. Memory after the last round must be within [`RSS_MARGIN_KIB`]
/// of memory after the first; with one round, of the cold baseline.
pub(super) fn resource_checks(
    cold: Option<(usize, u64)>,
    ends: &[Option<(usize, u64)>],
) -> [Check; 2] {
    const FDS: &str = "descriptors back to baseline";
    const RSS: &str = "memory back to baseline";
    let all = |outcome, detail: &str| {
        [FDS, RSS].map(|name| Check {
            name,
            outcome,
            detail: detail.to_string(),
        })
    };
    let Some((fds_cold, rss_cold)) = cold else {
        return all(
            Outcome::Skipped,
            "needs --server-pid of a server on this machine",
        );
    };
    let ends: Option<Vec<(usize, u64)>> = ends.iter().copied().collect();
    let Some((ends, first, last)) = ends.as_ref().and_then(|e| Some((e, e.first()?, e.last()?)))
    else {
        return all(
            Outcome::Fail,
            "the server's /proc entry went away during the run: did it exit?",
        );
    };
    let list = |figure: fn(&(usize, u64)) -> String| {
        ends.iter().map(figure).collect::<Vec<_>>().join(", ")
    };
    let over: Vec<String> = (1..)
        .zip(ends)
        .filter(|(_, (fds, _))| *fds > fds_cold)
        .map(|(round, _)| format!("round {round}"))
        .collect();
    let mut detail = format!(
        "{fds_cold} before round 1, {} after each round",
        list(|(fds, _)| fds.to_string())
    );
    if !over.is_empty() {
        let _ = write!(detail, ": still more than before after {}", over.join(", "));
    }
    let fds = Check {
        name: FDS,
        outcome: if over.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        detail,
    };
    let (rss_first, rss_last) = (first.1, last.1);
    let (baseline, detail) = if ends.len() > 1 {
        (
            rss_first,
            format!(
                "{rss_last} KiB after round {} against {rss_first} KiB after round 1 \
                 (margin {RSS_MARGIN_KIB} KiB); {rss_cold} KiB cold, {} KiB after each round",
                ends.len(),
                list(|(_, rss)| rss.to_string())
            ),
        )
    } else {
        (
            rss_cold,
            format!(
                "{rss_last} KiB after the round against {rss_cold} KiB cold (margin \
                 {RSS_MARGIN_KIB} KiB); with one round, memory the allocator keeps for reuse \
                 counts as growth: use --rounds 2 or more"
            ),
        )
    };
    let rss = Check {
        name: RSS,
        outcome: if rss_last <= baseline + RSS_MARGIN_KIB {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        detail,
    };
    [fds, rss]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round in which every promise was kept: `lines` chatter lines among 3 chatters, one
    /// latency of `latency_us`, and the server left with `end` (descriptors, RSS KiB).
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
            deliveries: 2 * lines,
            expected: 2 * lines,
            latency,
            pings_sent: 5,
            pings_answered: 5,
            ping_slowest: Duration::from_millis(3),
            round_trip: latency_histogram().unwrap(),
            verdicts: PER_ROUND.map(|_| Ok(())),
            end,
            rss_peak: end.map(|(_, rss)| rss),
        }
    }

    fn report(rounds: Vec<Round>, cold: Option<(usize, u64)>) -> ChaosReport {
        ChaosReport::new(10.0, 3, rounds, cold, None).unwrap()
    }

    const COLD: Option<(usize, u64)> = Some((11, 3_400));

    /// Rounds that kept every promise and left the server with `ends` (descriptors, RSS
    /// KiB), after the cold baseline [`COLD`].
    fn after_rounds(ends: &[Option<(usize, u64)>]) -> ChaosReport {
        let rounds = ends.iter().map(|&end| kept_round(10, 100, end)).collect();
        report(rounds, COLD)
    }

    fn check<'a>(report: &'a ChaosReport, name: &str) -> &'a Check {
        report.checks.iter().find(|c| c.name == name).unwrap()
    }

    const FDS: &str = "descriptors back to baseline";
    const RSS: &str = "memory back to baseline";

    #[test]
    fn retention_after_round_one_is_not_a_leak() {
        let r = after_rounds(&[Some((11, 13_500)), Some((11, 12_900)), Some((11, 13_200))]);
        assert!(r.passed(), "{}", r.summary());
    }

    #[test]
    fn memory_growing_past_the_margin_after_round_one_fails() {
        let r = after_rounds(&[Some((11, 13_500)), Some((11, 13_500 + RSS_MARGIN_KIB + 1))]);
        assert_eq!(r.outcome(RSS), Some(Outcome::Fail));
        assert_eq!(r.outcome(FDS), Some(Outcome::Pass));
    }

    #[test]
    fn one_round_compares_memory_with_the_cold_baseline() {
        let r = after_rounds(&[Some((11, 13_500))]);
        let memory = check(&r, RSS);
        assert_eq!(memory.outcome, Outcome::Fail);
        assert!(memory.detail.contains("--rounds 2"), "{}", memory.detail);
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
        assert_eq!(r.outcome(RSS), Some(Outcome::Fail));
    }

    #[test]
    fn resources_are_skipped_without_a_server_pid() {
        let r = report(vec![kept_round(10, 100, None)], None);
        assert!(r.passed());
        assert_eq!(r.outcome(RSS), Some(Outcome::Skipped));
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
        assert_eq!((r.pings_sent, r.pings_answered), (10, 10));
        assert_eq!((r.tally("storm").opened, r.tally("storm").refused), (20, 8));
        // Two samples: the median is the first round's, the maximum the second's.
        assert_eq!(r.latency_us[0], 100);
        assert!(r.latency_us[2] >= 9_000, "{:?}", r.latency_us);
    }
}
