//! `pollchat-bench --scenario chaos`: well-behaved chatters talk while strangers misbehave
//! around them, and the run says, promise by promise, whether the server kept it (PASS/FAIL).
//!
//! The generator is built like the server, a mio loop per thread: the well-behaved clients in
//! one, the strangers in another, each on its own thread during the chaos phase (so that the
//! flood never keeps the chatters from being read; the reset storms have threads of their own,
//! at nice 19). A run is `--rounds` rounds (two by default), each with fresh clients, each
//! through fixed phases bounded in time:
//!
//! 1. **baseline** (once, before round 1): the server's open descriptors and memory, cold
//!    (with `--server-pid`);
//! 2. **join**: `--chatters` chatters and one pinger per listener (plain, TLS, WebSocket)
//!    connect and are welcomed in `#lobby`; `--room-chatters` more connect and `/join` a second room,
//!    `#chaos`, and a silent witness sits in each room; the phase ends once the server has said
//!    they are there;
//! 3. **chaos** (`--duration`): each chatter sends numbered lines at `--chat-rate`; each pinger
//!    sends itself a `/msg` five times a second and times the answer; misbehaving clients
//!    come and go, up to `--conns` at once, cycling through the roles of `roles.rs`; two connect
//!    storms of `--storm` connections each, a third and two thirds of the way through; with
//!    `--oper`, an operator kicks and bans trolls one by one (below), and once the phase is
//!    over finishes with them (up to 15 s more if the machine is slow) and lifts its bans;
//! 4. **calm**: every misbehaving client vanishes; chatters stop and wait for what is in
//!    flight; once the server has let every stranger go (with `--server-pid`), each chatter
//!    says one last line, so that the rooms' history ends with lines the next round can
//!    check;
//! 5. **leave**: chatters and pingers `/quit` and wait for the server to close them;
//! 6. **settle**: wait for the server's descriptors to come back down to the cold baseline
//!    (but the witnesses'), read its memory;
//! 7. **check**: with `--restarts`, the server is restarted ([`RESTART_ASK`]); then a checker
//!    enters each room and must be replayed exactly the lines its witness heard last
//!    (`history.rs`), and the witnesses (unless the restart let them go) and the checkers
//!    `/quit`.
//!
//! With `--tls-target` and `--tls-ca`, every other chatter and a second pinger talk to the
//! server's TLS listener through a non-blocking rustls client (the same steps as
//! `pollchat-connect --tls`, from its `tls.rs`), so the checks hold TLS and plain clients to one
//! record: each TLS chatter's lines must reach every plain one, and the other way round, once
//! and in the one order. Three more misbehaving roles take their turns on the TLS port:
//! garbage instead of a handshake, a stalled handshake and a TLS client that stops reading.
//!
//! With `--ws-target` (an `--http-bind` address), every third chatter (2, 5, 8..., in both
//! rooms) and a third pinger talk WebSocket instead: they upgrade at `/ws`, send each line as
//! one masked text frame and hear each text frame as a line (the load generator's frame code,
//! `wire.rs`), and are held to the same record as the others. Four more misbehaving
//! roles take their turns on the HTTP port (with one more flooder, see `roles.rs`): an
//! unmasked frame (closed with 1002), a message over `--max-line` (told, and kept), a request
//! head never finished (closed by `--http-head-timeout`) and a WebSocket client that stops
//! reading. The flooders' doses go to plain, TLS and WebSocket non-readers in turn.
//!
//! With `--oper NAME=PASSWORD` (an operator the server knows, `--operators NAME=HASH`), one
//! more well-behaved client, the operator, `/oper`s in the join phase and watches `#chaos`.
//! In the chaos phase, one at a time, a troll connects, joins `#chaos` and floods the server
//! with `/msg`s to itself (none of it reaches the room); once the operator hears its join
//! announced it acts on it by nick: two
//! are kicked with a reason, one is banned by nick for 30 s (and the operator then fails to
//! take the nick), and one, connecting from 127.0.0.2, is banned by address (and a client
//! from there is then refused at accept); 127.0.0.1, every other client's, is never banned,
//! and with a target not on 127.0.0.1 there is no address ban. At the end of the round the
//! operator lifts its bans. Five more checks follow what the operator, the trolls and the
//! room were told (`operator.rs`); without `--oper` they are skipped. The trolls are in
//! `#chaos` because there a kick is announced on a line of its own: in the lobby, with leaves
//! by the dozen, the server says them in one summary line that names only three.
//!
//! The misbehaving clients otherwise stay in `#lobby`, so `#chaos` is a room beside a flooded
//! one: each room's chatters must get exactly that room's lines, once, in one order, and
//! nothing of the other's. Both rooms keep history, and every client entering a room is first
//! replayed its last lines: that replay is not a delivery, and is judged apart
//! (`history.rs`).
//!
//! After each round the checks in `invariants.rs` run over what its well-behaved clients
//! recorded: every round must keep every promise, and the report names the round that broke
//! one. The server's resources are judged across rounds: descriptors must be back to the cold
//! baseline after every round, and memory within
//! [`HEAP_MARGIN_KIB`](report::HEAP_MARGIN_KIB) of it (why that margin is explained there).
//!
//! Where each part is:
//!
//! - `roles.rs`: who a connection plays, and how each role behaves: as time passes, when its
//!   socket is ready, on each line from the server, once it is welcomed;
//! - `client.rs`: one connection: its socket, its TLS session, its buffers, and their I/O;
//! - `rooms.rs`: which chatter is in which room, and each room's figures;
//! - `history.rs`: where a well-behaved client is, the history it is replayed on entering a
//!   room, and the check of those replays;
//! - `event_loop.rs`: a round's one mio loop over its clients: opening them, timed actions,
//!   readiness;
//! - `round.rs`: one round's phases, 2 to 6 above, and what its well-behaved clients recorded;
//! - `operator.rs`: the operator and its trolls (`--oper`), and its five checks;
//! - `report.rs`: the rounds merged into one [`ChaosReport`], with its checks, as a summary;
//! - `json.rs`: the same report as one JSON object, for scripts.

mod client;
mod event_loop;
mod history;
mod json;
mod operator;
mod report;
mod roles;
mod rooms;
mod round;

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::BenchArgs;
use super::procfs::resources;
use super::wire::Proto;
use client::TlsTarget;
pub use report::ChaosReport;
use round::{Plan, run_round};

/// Runs the chaos scenario against the first `--target`: `--rounds` rounds, then the checks. `Err`
/// only for bad arguments or a machine that cannot run it; a server that breaks a promise
/// gives a report with a FAIL.
pub fn run(args: &BenchArgs) -> Result<ChaosReport, String> {
    if args.proto != Proto::Pollchat {
        return Err("--scenario chaos speaks pollchat's protocol only".into());
    }
    if args.chatters < 2 {
        return Err("--chatters must be at least 2 (someone has to hear them)".into());
    }
    if args.room_chatters < 2 {
        return Err(
            "--room-chatters must be at least 2 (someone in #chaos has to hear them)".into(),
        );
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let chat_interval = rate_interval(args.chat_rate, "--chat-rate")?;
    let spawn_interval = rate_interval(args.connect_rate, "--connect-rate")?;
    let tls = TlsTarget::new(args)?;
    let started = Instant::now();
    let &target = args
        .target
        .first()
        .ok_or("--target: give the server's address")?;
    // 1. Baseline, cold: what the server holds before anyone connects.
    let cold = args.server_pid.and_then(resources);
    let mut plan = Plan {
        args,
        target,
        tls,
        ws: args.ws_target,
        server_pid: args.server_pid,
        server_stats: args.server_stats,
        chat_interval,
        spawn_interval,
        cold,
    };
    let mut rounds = Vec::new();
    // What the previous round's chatters said: the history replayed in this one.
    let mut said = None;
    // The flooders' doses to each kind of non-reader: the turn goes on from round to round.
    let mut doses = [0; 3];
    for round in 1..=args.rounds {
        let (figures, heard) = run_round(&mut plan, said.as_ref(), &mut doses)
            .map_err(|e| format!("round {round}: {e}"))?;
        rounds.push(figures);
        said = Some(heard);
    }
    let secs = started.elapsed().as_secs_f64();
    let server_stats = plan.server_stats.and_then(ask_stats);
    let chatters = args.chatters + args.room_chatters;
    ChaosReport::new(secs, chatters, rounds, cold, server_stats)
}

/// What the generator says on stdout, a line of its own, when it wants the server restarted
/// (`--restarts`).
pub const RESTART_ASK: &str = "chaos: restart the server";

/// How long the generator waits for the restarted server's flags.
const RESTART_LIMIT: Duration = Duration::from_secs(60);

/// `--restarts`: asks for the server to be restarted ([`RESTART_ASK`]) and waits, up to
/// [`RESTART_LIMIT`], for the restarted server's flags on stdin; the plan then holds them,
/// and the new server's descriptors and heap as its cold baseline.
fn restart(plan: &mut Plan) -> Result<(), String> {
    println!("{RESTART_ASK}");
    std::io::stdout()
        .flush()
        .map_err(|e| format!("asking for a restart: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    let line = match rx.recv_timeout(RESTART_LIMIT) {
        Ok(Ok(line)) if !line.trim().is_empty() => line,
        Ok(Ok(_)) => return Err("stdin ended instead of giving the restarted server".into()),
        Ok(Err(e)) => return Err(format!("reading the restarted server from stdin: {e}")),
        Err(_) => {
            return Err(format!(
                "no restarted server on stdin within {} s",
                RESTART_LIMIT.as_secs()
            ));
        }
    };
    restarted(plan, &line)?;
    plan.cold = plan.server_pid.and_then(resources);
    Ok(())
}

/// Takes the restarted server's flags into the plan: `--target ADDR`, `--tls-target ADDR`,
/// `--ws-target ADDR`, `--server-pid PID`, `--server-stats ADDR`, any of them.
fn restarted(plan: &mut Plan, line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("restarted server: {flag} without a value"))?;
        let addr = || {
            value
                .parse::<SocketAddr>()
                .map_err(|e| format!("restarted server: {flag} {value}: {e}"))
        };
        match flag {
            "--target" => plan.target = addr()?,
            "--tls-target" => {
                let tls = plan
                    .tls
                    .as_mut()
                    .ok_or("restarted server: --tls-target in a run without TLS")?;
                tls.moved_to(addr()?);
            }
            "--ws-target" => plan.ws = Some(addr()?),
            "--server-stats" => plan.server_stats = Some(addr()?),
            "--server-pid" => {
                let pid = value
                    .parse()
                    .map_err(|e| format!("restarted server: --server-pid {value}: {e}"))?;
                plan.server_pid = Some(pid);
            }
            _ => {
                return Err(format!(
                    "restarted server: {flag} is not a flag a restart changes"
                ));
            }
        }
    }
    Ok(())
}

/// The interval between events at `rate` per second.
fn rate_interval(rate: f64, flag: &str) -> Result<Duration, String> {
    if rate > 0.0 && rate.is_finite() {
        Ok(Duration::from_secs_f64(1.0 / rate))
    } else {
        Err(format!("{flag} must be a positive number per second"))
    }
}

/// Asks a server's `--stats-udp` socket for its counters (three tries, a second each).
fn ask_stats(server: SocketAddr) -> Option<String> {
    let local: SocketAddr = if server.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = vec![0; 64 * 1024];
    (0..3).find_map(|_| {
        socket.send_to(b"stats", server).ok()?;
        let n = socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}
