//! `pollchat-bench`, the load generator, as the tests run it: the built binary, as a user
//! runs it. Its summary is read from stdout, and its figures from the JSON report it writes
//! to `--json-file`, into the few fields the tests check. The generator is a binary of its
//! own (the server's library is the server alone), so the tests see what a user sees.
//!
//! `run` and `chaos::run` answer what the generator's own functions of those names answer:
//! the report, or (exit status 1 and no report) the reason on stderr.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::TempDir;

/// How long one generator run may take before the test fails: a load run is a few seconds,
/// the chaos test's two rounds about half a minute. Generous, because CI machines are slow.
const RUN_DEADLINE: Duration = Duration::from_secs(180);

/// `pollchat-bench ARGS`, split on spaces (see [`super::bench_args`]).
#[derive(Debug, Clone)]
pub struct BenchArgs(pub Vec<String>);

/// What a load run measured: the fields of the JSON report the tests check, and the summary.
#[derive(Debug)]
pub struct Report {
    pub established: usize,
    pub receivers: usize,
    pub receivers_per_room: [usize; 2],
    pub refused: usize,
    pub failed: usize,
    pub dropped: usize,
    pub sent: u64,
    pub lines_done: u64,
    pub delivered: u64,
    pub foreign: u64,
    pub expected: u64,
    /// p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    in_flight: Option<u64>,
    summary: String,
}

impl Report {
    /// With `--rate max`: deliveries in flight at most.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// The summary the generator printed.
    pub fn summary(&self) -> String {
        self.summary.clone()
    }
}

/// The load report's JSON, as much of it as the tests read.
#[derive(Deserialize)]
struct LoadJson {
    established: usize,
    receivers: usize,
    receivers_per_room_min: usize,
    receivers_per_room_max: usize,
    refused: usize,
    failed: usize,
    dropped: usize,
    sent: u64,
    lines_done: u64,
    delivered: u64,
    foreign_lines: u64,
    expected: u64,
    in_flight: Option<u64>,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_p999: u64,
    latency_us_max: u64,
}

/// Runs a load run to its end: its report, or why it could not run.
pub fn run(args: &BenchArgs) -> Result<Report, String> {
    let (json, summary): (LoadJson, String) = run_binary(args)?;
    Ok(Report {
        established: json.established,
        receivers: json.receivers,
        receivers_per_room: [json.receivers_per_room_min, json.receivers_per_room_max],
        refused: json.refused,
        failed: json.failed,
        dropped: json.dropped,
        sent: json.sent,
        lines_done: json.lines_done,
        delivered: json.delivered,
        foreign: json.foreign_lines,
        expected: json.expected,
        latency_us: [
            json.latency_us_p50,
            json.latency_us_p99,
            json.latency_us_p999,
            json.latency_us_max,
        ],
        in_flight: json.in_flight,
        summary,
    })
}

/// `--scenario chaos`: the report of the JSON's checks, rounds, rooms and roles.
pub mod chaos {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    use super::{BenchArgs, run_binary};

    /// A check's verdict, as the report words it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
    pub enum Outcome {
        #[serde(rename = "PASS")]
        Pass,
        #[serde(rename = "FAIL")]
        Fail,
        #[serde(rename = "SKIP")]
        Skipped,
    }

    /// One check of the report.
    #[derive(Debug)]
    pub struct Check {
        pub name: String,
        pub outcome: Outcome,
    }

    /// One round's figures.
    #[derive(Debug, Deserialize)]
    pub struct Round {
        pub lines_sent: u64,
    }

    /// One room's chatter lines.
    #[derive(Debug, Default, Clone, Copy, Deserialize)]
    pub struct RoomLines {
        pub chatters: usize,
        pub lines_sent: u64,
        pub lines_sent_tls: u64,
        pub lines_sent_ws: u64,
        pub deliveries: u64,
        pub expected: u64,
    }

    /// One role's counts, summed over the rounds.
    #[derive(Debug, Default, Clone, Copy, Deserialize)]
    pub struct Tally {
        pub opened: u64,
        pub welcomed: u64,
        pub refused: u64,
        pub closed_by_server: u64,
        pub too_long: u64,
        pub confirmed: u64,
    }

    /// The history replays the run saw.
    #[derive(Debug, Clone, Copy, Deserialize)]
    pub struct Replays {
        pub replays: u64,
        pub said_the_round_before: u64,
        /// Lines replayed to a checker after a round, each as the room's witness heard it.
        pub checked: u64,
        /// Restarts of the server before the checkers came.
        pub restarts: u64,
    }

    /// What a chaos run found, as much of it as the tests read, and its summary.
    #[derive(Debug)]
    pub struct ChaosReport {
        pub lines_sent: u64,
        pub lines_sent_tls: u64,
        pub lines_sent_ws: u64,
        pub deliveries: u64,
        pub expected: u64,
        pub pings_answered: u64,
        pub replays: Replays,
        /// The server's `--stats-udp` counters, as it sent them.
        pub server_stats: Option<String>,
        pub rounds: Vec<Round>,
        pub checks: Vec<Check>,
        rooms: BTreeMap<String, RoomLines>,
        roles: BTreeMap<String, Tally>,
        passed: bool,
        summary: String,
    }

    /// The chaos report's JSON, as much of it as the tests read.
    #[derive(Deserialize)]
    struct ChaosJson {
        passed: bool,
        lines_sent: u64,
        lines_sent_tls: u64,
        lines_sent_ws: u64,
        deliveries: u64,
        expected: u64,
        rooms: BTreeMap<String, RoomLines>,
        history: Replays,
        pings_answered: u64,
        server_stats: Option<Box<RawValue>>,
        roles: BTreeMap<String, Tally>,
        per_round: Vec<Round>,
        checks: BTreeMap<String, Outcome>,
    }

    impl ChaosReport {
        /// Every check passed (skipped ones do not count against).
        pub fn passed(&self) -> bool {
            self.passed
        }

        /// The outcome of the check called `name`, if there is one.
        pub fn outcome(&self, name: &str) -> Option<Outcome> {
            self.checks
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.outcome)
        }

        /// The room's figures summed over the rounds (zero for a room the run did not have).
        pub fn room(&self, room: &str) -> RoomLines {
            self.rooms.get(room).copied().unwrap_or_default()
        }

        /// The role's counts summed over the rounds (zero for a role that never ran).
        pub fn tally(&self, role: &str) -> Tally {
            self.roles.get(role).copied().unwrap_or_default()
        }

        /// The summary the generator printed.
        pub fn summary(&self) -> String {
            self.summary.clone()
        }
    }

    /// Runs the chaos scenario to its end: its report (passed or not), or why it could not
    /// run.
    pub fn run(args: &BenchArgs) -> Result<ChaosReport, String> {
        report(run_binary(args)?)
    }

    /// As [`run`], with `--restarts`: each time the generator asks for the server to be
    /// restarted, `restart(n)` (n counting from 1) restarts it and returns the new server's
    /// flags, which the generator is given on its stdin.
    pub fn run_restarting(
        args: &BenchArgs,
        restart: impl FnMut(u32) -> String,
    ) -> Result<ChaosReport, String> {
        report(super::run_binary_restarting(args, restart)?)
    }

    fn report((json, summary): (ChaosJson, String)) -> Result<ChaosReport, String> {
        let checks = json
            .checks
            .into_iter()
            .map(|(name, outcome)| Check { name, outcome })
            .collect();
        Ok(ChaosReport {
            lines_sent: json.lines_sent,
            lines_sent_tls: json.lines_sent_tls,
            lines_sent_ws: json.lines_sent_ws,
            deliveries: json.deliveries,
            expected: json.expected,
            pings_answered: json.pings_answered,
            replays: json.history,
            server_stats: json.server_stats.map(|raw| raw.get().to_string()),
            rounds: json.per_round,
            checks,
            rooms: json.rooms,
            roles: json.roles,
            passed: json.passed,
            summary,
        })
    }
}

/// Runs the built `pollchat-bench` with `args` and `--json-file`: its JSON report and its
/// summary (stdout) if it wrote a report, whatever its exit status (a failed chaos run
/// reports too); otherwise what it said on stderr.
fn run_binary<T: DeserializeOwned>(args: &BenchArgs) -> Result<(T, String), String> {
    let dir = TempDir::new();
    let json_path = dir.path.join("report.json");
    let child = spawn(args, &json_path, Stdio::null());
    let (stdout, stderr) = output_with_deadline(child);
    report(&json_path, stdout, stderr)
}

/// The built `pollchat-bench` with `args`, writing its JSON report to `json_path`, its stdout
/// and stderr piped.
fn spawn(args: &BenchArgs, json_path: &Path, stdin: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pollchat-bench"))
        .args(&args.0)
        .arg("--json-file")
        .arg(json_path)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pollchat-bench")
}

/// The report at `json_path` with the `summary`, if the run wrote one; otherwise `stderr`.
fn report<T: DeserializeOwned>(
    json_path: &Path,
    summary: String,
    stderr: String,
) -> Result<(T, String), String> {
    match std::fs::read_to_string(json_path) {
        Ok(json) => Ok((parse(&json, json_path), summary)),
        Err(_) => Err(stderr),
    }
}

/// The line the generator says on stdout when it wants the server restarted (its
/// `chaos::RESTART_ASK`).
const RESTART_ASK: &str = "chaos: restart the server";

/// As [`run_binary`], for a run with `--restarts`: the generator's stdout is read line by
/// line as it comes, and each [`RESTART_ASK`] is answered on its stdin with what `restart`
/// returns; the summary is the rest of stdout.
fn run_binary_restarting<T: DeserializeOwned>(
    args: &BenchArgs,
    mut restart: impl FnMut(u32) -> String,
) -> Result<(T, String), String> {
    use std::io::{BufRead, BufReader, Write};
    let dir = TempDir::new();
    let json_path = dir.path.join("report.json");
    let mut child = spawn(args, &json_path, Stdio::piped());
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let stdout = child.stdout.take().expect("a piped stdout");
    let stderr = child.stderr.take().expect("a piped stderr");
    let running = Running(child);
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + RUN_DEADLINE;
    let mut summary = String::new();
    let mut restarts = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == RESTART_ASK => {
                restarts += 1;
                let flags = restart(restarts);
                writeln!(stdin, "{flags}").expect("give the generator the restarted server");
                stdin.flush().expect("flush the generator's stdin");
            }
            Ok(line) => {
                summary.push_str(&line);
                summary.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            // `running` is dropped on the way out: the generator is killed.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("pollchat-bench did not finish within {RUN_DEADLINE:?}")
            }
        }
    }
    let mut running = running;
    let _ = running.0.wait();
    let stderr = stderr.join().unwrap_or_default();
    report(&json_path, summary, stderr)
}

fn parse<T: DeserializeOwned>(json: &str, path: &Path) -> T {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{}: {e}:\n{json}", path.display()))
}

/// A generator process, killed if the test ends (passes or panics) while it still runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's stdout and stderr once it has exited; after [`RUN_DEADLINE`] it is killed and
/// the test fails.
fn output_with_deadline(mut child: Child) -> (String, String) {
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        let mut pipe = pipe.expect("a piped output");
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let mut running = Running(child);
    // The pipes close when the generator exits: both texts are then whole.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        let _ = tx.send((out, err));
    });
    match rx.recv_timeout(RUN_DEADLINE) {
        Ok(output) => {
            let _ = running.0.wait();
            output
        }
        // `running` is dropped on the way out: the generator is killed.
        Err(_) => panic!("pollchat-bench did not finish within {RUN_DEADLINE:?}"),
    }
}
