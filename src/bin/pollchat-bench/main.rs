//! `pollchat-bench`: the load generator. It measures how many connections a chat server
//! holds and how fast it fans lines out, for pollchat or Redis pub/sub, with one tool and one
//! method.
//!
//! A run goes through fixed phases, each bounded in time, so it always ends by itself:
//!
//! 1. **connect** `--conns` connections at `--connect-rate` (paced, so the number measures
//!    the server, not the kernel's backlog);
//! 2. **hold** them idle for `--hold` seconds, and read the server's memory (`--server-pid`);
//! 3. **traffic**: the first `--senders` connections send `--size`-byte lines for
//!    `--duration` seconds, each at `--rate / senders` lines per second, or, with
//!    `--rate max`, as fast as the server takes them with at most `--window` lines in flight
//!    per sender: a line is in flight until every receiver has it (`window.rs`). Every other
//!    connection is a receiver that counts and times each line;
//! 4. **drain**: senders stop; receivers count what is still on its way (up to 5 s);
//! 5. **stop**: every connection is closed with a reset (no TIME_WAIT left behind).
//!
//! The work is spread over `--threads` worker threads, each a mio loop of its own. Senders
//! and receivers are spread over them round-robin, connections over the `--target`s
//! (instances of one chat, joined by `--backplane`) round-robin too, and over `--rooms`
//! (`rooms.rs`) round-robin again.
//!
//! Where each part is:
//!
//! - `args.rs`: the flags, for both scenarios ([`BenchArgs`]);
//! - `run.rs`: the phases above, one function each, on the orchestrating thread;
//! - `worker.rs`: one worker thread's loop and its connections;
//! - `wire.rs`: what is said and heard on the wire, for each protocol ([`Proto`]);
//! - `window.rs`: the closed loop of `--rate max`, a line done when every receiver has it;
//! - `rooms.rs`: `--rooms`, which room each connection is in and what each room expects;
//! - `report.rs`: what a run measured ([`Report`]), as a summary or as JSON;
//! - `procfs.rs`: the server's memory and CPU time, and the generator's own, from /proc;
//! - [`chaos`] and [`invariants`]: `--scenario chaos`, the promises checked under abuse.

mod args;
mod chaos;
// The terminal client's TLS set-up and record reading, which the chaos run's TLS clients
// share so that they trust a certificate exactly as `pollchat-connect` does. One binary
// cannot use another's modules, so these two files of pollchat-connect's are compiled into
// this one as well (`tls.rs` says more).
mod invariants;
#[path = "../pollchat-connect/pinned.rs"]
mod pinned;
mod procfs;
mod report;
mod rooms;
mod run;
#[path = "../pollchat-connect/tls.rs"]
mod tls;
mod window;
mod wire;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use args::{BenchArgs, Rate, Scenario, Writes};
use report::Report;
use run::run;
use wire::Proto;

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    let (text, json, passed) = match report(&args) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("pollchat-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{text}");
    if let Some(path) = &args.json_file
        && let Err(e) = std::fs::write(path, json + "\n")
    {
        let e = pollchat::error::describe(&e);
        eprintln!(
            "pollchat-bench: cannot write --json-file {}: {e}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What `pollchat-bench` prints (the report as text, or as JSON with `--json`), the report
/// as JSON (for `--json-file`), and whether the run passed: a load run always does, a chaos
/// run if every check did, so scripts and CI can act on the exit status. `Err`: why it could
/// not run at all.
fn report(args: &BenchArgs) -> Result<(String, String, bool), String> {
    let (json, summary, passed) = match args.scenario {
        Scenario::Load => run(args).map(|r| (r.json(), r.summary(), true))?,
        Scenario::Chaos => chaos::run(args).map(|r| (r.json(), r.summary(), r.passed()))?,
    };
    let text = if args.json {
        format!("{json}\n")
    } else {
        summary
    };
    Ok((text, json, passed))
}
