//! `pollchat bench --scenario chaos`: well-behaved chatters talk while strangers misbehave
//! around them, and the run says, promise by promise, whether the server kept it (PASS/FAIL).
//!
//! The generator is one thread and one mio loop, built like the server. A run is
//! `--rounds` rounds (two by default), each with fresh clients, each through fixed phases
//! bounded in time:
//!
//! 1. **baseline** (once, before round 1): the server's open descriptors and memory, cold
//!    (with `--server-pid`);
//! 2. **join**: `--chatters` chatters and one pinger (two with a TLS target) connect and are
//!    welcomed;
//! 3. **chaos** (`--duration`): each chatter sends numbered lines at `--chat-rate`; each pinger
//!    sends itself a `/msg` five times a second and times the answer; misbehaving clients
//!    come and go, up to `--conns` at once, cycling through the roles of [`Role`]; two connect
//!    storms of `--storm` connections each, a third and two thirds of the way through;
//! 4. **calm**: every misbehaving client vanishes; chatters stop and wait for what is in
//!    flight;
//! 5. **leave**: chatters and pingers `/quit` and wait for the server to close them;
//! 6. **settle**: wait for the server's descriptors to come back down to the cold baseline,
//!    read its memory.
//!
//! With `--tls-target` and `--tls-ca`, every other chatter and a second pinger talk to the
//! server's TLS listener through a non-blocking rustls client (the same steps as `pollchat
//! connect --tls`, from `client/transport.rs`), so the checks hold TLS and plain clients to one
//! record: each TLS chatter's lines must reach every plain one, and the other way round, once
//! and in the one order. Three more misbehaving roles take their turns on the TLS port:
//! garbage instead of a handshake, a stalled handshake and a TLS client that stops reading.
//!
//! After each round the checks in `invariants.rs` run over what its well-behaved clients
//! recorded: every round must keep every promise, and the report names the round that broke
//! one. The server's resources are judged across rounds: descriptors must be back to the cold
//! baseline after every round, and memory after the last round must be within
//! [`RSS_MARGIN_KIB`] of memory after the first (why the first and not the cold baseline is
//! explained there).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;
use slab::Slab;
use socket2::SockRef;

use super::BenchArgs;
use super::invariants::{self, LineId};
use super::procfs::{open_fds, rss_kib};
use super::wire::{self, Incoming, Proto, Stamp};
use super::worker::{connect, flush, latency_histogram};
use crate::client::transport::{self, TransportError};
use crate::nonblocking::ReadOutcome;
use crate::nonblocking::connect_finished;
use crate::nonblocking::write_until_blocked;
use crate::nonblocking::{Plaintext, write_records};

/// How often the pinger asks the server for an answer.
const PING_EVERY: Duration = Duration::from_millis(200);
/// An answer slower than this means the server stopped answering. Generous: CI machines
/// are shared, and the pinger's answer queues behind the flood's lines like everyone's.
const PING_LIMIT: Duration = Duration::from_secs(2);
/// How long the well-behaved clients get to be welcomed, to receive what is in flight once
/// the chaos stops, and to be closed after `/quit`.
const JOIN_LIMIT: Duration = Duration::from_secs(10);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
const LEAVE_LIMIT: Duration = Duration::from_secs(5);
/// How long the server gets to close every socket once all clients are gone. Its lingering
/// closes take up to `limits::LINGER` (2 s).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
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
/// Longest a loop turn sleeps in `poll`, so timed actions (sends, pings, vanishings) are
/// punctual.
const TICK: Duration = Duration::from_millis(2);
/// Output a producing client (flooder, endless line) keeps queued: it writes as fast as the
/// server reads, but the generator does not buffer without bound either.
const PRODUCE_AHEAD: usize = 16 * 1024;
/// Bytes of padding in a flooder's line: long lines, so that what the rate limit lets through
/// still fills the queues of the clients that stopped reading.
const FLOOD_LINE: usize = 4000;
/// Receive buffer of a client that stops reading: small, so the server's queue for it fills.
const NON_READER_BUFFER: usize = 4096;
/// One flooder line in this many goes to everyone; the others are a `/msg` to one
/// non-reader. Before the server's own queue for a client that stopped reading grows at all,
/// the kernel's send buffer for its socket fills, and on loopback that buffer grows to
/// megabytes (`ss -tm` showed 2,803,712 bytes queued, `tb` 4 MiB, for a 4 KiB receive
/// buffer). Flood everyone with that much and the readers must take it too: with every line
/// broadcast at `--rate 100`, a debug build of this generator fell behind and all its
/// chatters were cut off as too slow (the server keeping its rule, not breaking a promise).
/// Aimed at one non-reader, the volume fills that one's queue while the readers get a
/// quarter of the flood.
const FLOOD_BROADCAST_EVERY: u64 = 4;
/// Send buffer of a flooder: small, so that what it sends is what the server reads now. The
/// server reads a flooder only as fast as `--rate` allows, and on loopback a socket's send
/// buffer grows to 4 MiB (`ss -tn` showed 4,166,144 bytes waiting on flooders' sockets): ten
/// seconds of flood at 100 lines/s, aimed at non-readers long gone by the time it arrives.
const FLOODER_SEND_BUFFER: usize = 64 * 1024;
/// Bytes the flooders aim at one non-reader before they move on to the next: more than its
/// kernel send buffer takes (at most `net.ipv4.tcp_wmem`'s 4 MiB by default) plus the
/// server's default `--max-output` (1 MiB). A non-reader never drains, so after its dose it
/// stays over `--max-output` until the server cuts it off, with no more flooding.
const TARGET_DOSE: usize = 6 * 1024 * 1024;
/// What a TLS staller sends: the first 3 of the 5 bytes of a TLS record header (a handshake
/// record, version 3.1), so the server has started a record and waits for the rest.
const STALLED_HEADER: &[u8] = b"\x16\x03\x01";
/// What a TLS garbage client sends instead of a ClientHello: plain text, as `nc` on the TLS
/// port would.
const NOT_A_HANDSHAKE: &[u8] = b"hello, this is plain text on the TLS port\n";

/// Who a connection plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Well-behaved: sends numbered lines at the chat rate, reads and records everything.
    Chatter(u32),
    /// Well-behaved: sends itself a `/msg` every [`PING_EVERY`] and times the answer. Pinger 0
    /// is on the plain listener; with a TLS target, pinger 1 is on the TLS one.
    Pinger(u32),
    /// Connects and resets (SO_LINGER 0): half of them as soon as connected, before the
    /// welcome; the others after the welcome and half a line.
    Vanisher,
    /// Never reads, with a small receive buffer, and names itself `nr-N` so that flooders can
    /// aim at it: the server's queue for it fills until it is cut off as too slow.
    NonReader,
    /// Sends one endless line, without a newline, as fast as the server takes it.
    Endless,
    /// Sends invalid UTF-8, NUL bytes, terminal escapes, lone `\r`, control characters.
    Garbage,
    /// Sends long lines as fast as the server takes them, far past the rate limit: one in
    /// [`FLOOD_BROADCAST_EVERY`] to everyone, the others to the current target non-reader.
    Flooder,
    /// Sends a line, then shuts down its sending half and reads until the server closes.
    HalfCloser,
    /// One of a connect storm: connects with many others at once, resets a moment later.
    Storm,
    /// On the TLS port: sends plain text instead of a ClientHello, and reads until the
    /// server closes (after an alert).
    TlsGarbage,
    /// On the TLS port: sends the first bytes of a record header, then nothing, and reads
    /// until the server's `--tls-handshake-timeout` closes it.
    TlsStaller,
    /// On the TLS port: completes its handshake, names itself `tnr-N`, then never reads, with
    /// a small receive buffer. Flooders aim at it like at a [`Role::NonReader`].
    TlsNonReader,
}

/// The misbehaving roles, in the order they are started.
const MISBEHAVING: [Role; 6] = [
    Role::Vanisher,
    Role::NonReader,
    Role::Endless,
    Role::Garbage,
    Role::Flooder,
    Role::HalfCloser,
];

/// The misbehaving roles on the TLS port, started in turn with the others when there is one.
const MISBEHAVING_TLS: [Role; 3] = [Role::TlsGarbage, Role::TlsStaller, Role::TlsNonReader];

/// What the garbage clients send, one line each: everything the sanitiser must remove.
const GARBAGE: [&[u8]; 8] = [
    b"G invalid utf-8 \xff\xfe\xc3\x28 \xed\xa0\x80\n",
    b"G nul \x00 byte\n",
    b"G escape \x1b[2J\x1b[31mred\x1b[0m\n",
    b"G lone\rcarriage return\n",
    b"G title \x1b]0;owned\x07\n",
    b"G c1 \xc2\x9b31m csi\n",
    b"\x00\x01\x02\x03\x7f\n",
    b"/nick \x1b[1mbold\n",
];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Chatter(_) => "chatter",
            Role::Pinger(_) => "pinger",
            Role::Vanisher => "vanisher",
            Role::NonReader => "non-reader",
            Role::Endless => "endless line",
            Role::Garbage => "garbage",
            Role::Flooder => "flooder",
            Role::HalfCloser => "half-closer",
            Role::Storm => "storm",
            Role::TlsGarbage => "tls-garbage",
            Role::TlsStaller => "tls-staller",
            Role::TlsNonReader => "tls-non-reader",
        }
    }

    /// Stops reading once connected (a TLS one once its handshake is over), and has a nick
    /// flooders can aim at.
    fn non_reader(self) -> bool {
        matches!(self, Role::NonReader | Role::TlsNonReader)
    }

    /// Connects to the TLS listener (with a TLS session or, to abuse it, without).
    fn on_tls_port(self) -> bool {
        matches!(
            self,
            Role::TlsGarbage | Role::TlsStaller | Role::TlsNonReader
        )
    }

    fn well_behaved(self) -> bool {
        matches!(self, Role::Chatter(_) | Role::Pinger(_))
    }

    /// How long a misbehaving client stays, in milliseconds (a range the run picks from).
    fn lifetime_ms(self) -> (u64, u64) {
        match self {
            Role::NonReader | Role::TlsNonReader => (2000, 6000),
            // Outlives a --tls-handshake-timeout of 1 or 2 s, so that the server's close is
            // seen and tallied; with a longer timeout the staller leaves first.
            Role::TlsStaller => (2500, 3000),
            // Leaves when the server closes it, at once; the lifetime is a backstop.
            Role::TlsGarbage => (2000, 2000),
            Role::Flooder => (500, 2000),
            Role::Endless => (300, 1500),
            Role::Storm => (300, 1000),
            // These leave by themselves; the lifetime is a backstop.
            Role::Vanisher | Role::HalfCloser => (2000, 2000),
            _ => (200, 1000),
        }
    }

    /// Closes with a reset rather than a FIN.
    fn resets(self) -> bool {
        matches!(
            self,
            Role::Vanisher | Role::NonReader | Role::TlsNonReader | Role::Storm
        )
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Join,
    Chaos,
    Calm,
    Leave,
}

struct Client {
    stream: TcpStream,
    /// The client's TLS session, for TLS chatters and TLS non-readers: plaintext goes in and
    /// out through it (see [`write_out`] and [`receive`]). Boxed: a session is large.
    tls: Option<Box<ClientConnection>>,
    role: Role,
    /// Its line in the role table: the role's name, or `tls-chatter` for a chatter over TLS.
    kind: &'static str,
    /// Which client of its role this is (varies the behaviour within a role).
    serial: u64,
    connected: bool,
    welcomed: bool,
    /// This client asked to be closed (`/quit`, half-close): the server's close is expected.
    leaving: bool,
    /// Shut down the sending half once `output` is written (half-closers).
    shutdown_when_flushed: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    /// When a misbehaving client goes.
    until: Instant,
    /// When a chatter sends its next line, or the pinger its next ping.
    next_send: Instant,
    seq: u64,
    /// The pinger's nick, from its welcome: it sends `/msg` to itself. A non-reader's, which
    /// it chose itself: flooders send `/msg` to it.
    nick: String,
    /// A non-reader the flooders have aimed at (each gets one dose).
    aimed_at: bool,
}

/// What a chatter sent and received.
#[derive(Debug, Default)]
struct ChatterLog {
    /// Talks to the TLS listener.
    tls: bool,
    sent: u64,
    received: Vec<LineId>,
}

/// The pingers' round trips.
struct PingLog {
    sent: u64,
    answered: u64,
    /// Pings sent and not answered yet, oldest first: which pinger sent it, its number
    /// (counted over all pingers) and when. Each pinger's answers must come in the order it
    /// sent them.
    pending: VecDeque<(u32, u64, Instant)>,
    slowest: Duration,
    round_trip: Histogram<u64>,
}

/// Everything a client's handler may update besides the client itself.
struct Context {
    epoch: Instant,
    phase: Phase,
    size: usize,
    /// Time between two lines of one chatter.
    chat_interval: Duration,
    tallies: BTreeMap<&'static str, Tally>,
    chatters: Vec<ChatterLog>,
    pings: PingLog,
    latency: Histogram<u64>,
    scratch: Vec<u8>,
    /// Lines a well-behaved client received that were not clean text, and the first one.
    dirty: u64,
    first_dirty: Option<String>,
    /// Why well-behaved clients were disconnected, if any were.
    lost: Vec<String>,
    /// The non-reader the flooders aim at, until it has had its [`TARGET_DOSE`] or is gone.
    target: Option<Target>,
}

/// A non-reader the flooders aim at.
struct Target {
    key: usize,
    nick: String,
    /// Bytes of `/msg` lines the flooders have queued for it so far.
    aimed: usize,
}

/// What the handler wants done with a client.
#[derive(Debug, PartialEq, Eq)]
enum After {
    Keep,
    Close,
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
const PER_ROUND: [&str; 5] = [
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
fn json_number(n: Option<impl std::fmt::Display>) -> String {
    n.map_or_else(|| "null".to_string(), |n| n.to_string())
}

/// The run's connections and its loop.
struct Chaos {
    target: SocketAddr,
    tls: Option<TlsTarget>,
    /// The misbehaving roles started in turn: [`MISBEHAVING`], and [`MISBEHAVING_TLS`] with a
    /// TLS target.
    misbehaving: Vec<Role>,
    poll: Poll,
    events: Events,
    clients: Slab<Client>,
    ctx: Context,
    /// Misbehaving clients started so far (picks the next role and varies behaviour).
    started: u64,
    /// xorshift state: lifetimes are random but the same for the same `--seed`.
    rng: u64,
    last_timed: Instant,
}

/// The server's TLS listener and how to reach it.
#[derive(Clone)]
struct TlsTarget {
    addr: SocketAddr,
    /// Trusts `--tls-ca` (ring provider, rustls's safe defaults).
    config: Arc<ClientConfig>,
    /// The target's IP address: the name its certificate is checked against.
    name: ServerName<'static>,
}

impl TlsTarget {
    fn new(args: &BenchArgs) -> Result<Option<TlsTarget>, String> {
        let (addr, ca) = match (args.tls_target, &args.tls_ca) {
            (Some(addr), Some(ca)) => (addr, ca),
            (None, None) => return Ok(None),
            _ => return Err("--tls-target and --tls-ca go together".into()),
        };
        let config =
            transport::client_config(Some(ca), "--tls-ca", false).map_err(|e| e.to_string())?;
        Ok(Some(TlsTarget {
            addr,
            config: Arc::new(config),
            name: ServerName::from(addr.ip()),
        }))
    }

    /// A new client session, its ClientHello ready to send.
    fn session(&self) -> Result<Box<ClientConnection>, rustls::Error> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone()).map(Box::new)
    }
}

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
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let outcome = run_round(
            args,
            target,
            tls.as_ref(),
            chat_interval,
            spawn_interval,
            cold,
        )
        .map_err(|e| format!("round {round}: {e}"))?;
        rounds.push(outcome);
    }
    let secs = started.elapsed().as_secs_f64();
    let server_stats = args.server_stats.and_then(ask_stats);
    ChaosReport::new(secs, args.chatters, rounds, cold, server_stats)
}

/// One round, phases 2 to 6, with fresh clients (and the same `--seed`, so every round runs
/// the same schedule and only a leak makes the server hold more after it).
fn run_round(
    args: &BenchArgs,
    target: SocketAddr,
    tls: Option<&TlsTarget>,
    chat_interval: Duration,
    spawn_interval: Duration,
    cold: Option<(usize, u64)>,
) -> Result<Round, String> {
    let started = Instant::now();
    let mut chaos =
        Chaos::new(args, target, tls, chat_interval).map_err(|e| format!("cannot start: {e}"))?;
    let mut rss_peak = None;
    let mut sample_rss = |at: &mut Instant| {
        if at.elapsed() >= Duration::from_millis(100)
            && let Some(rss) = args.server_pid.and_then(rss_kib)
        {
            rss_peak = rss_peak.max(Some(rss));
            *at = Instant::now();
        }
    };
    let mut sampled = Instant::now();

    // 2. Join.
    let chatters = u32::try_from(args.chatters).unwrap_or(u32::MAX);
    for chatter in 0..chatters {
        chaos.open(Role::Chatter(chatter));
    }
    // One pinger on each listener.
    let pingers = if tls.is_some() { 2 } else { 1 };
    for pinger in 0..pingers {
        chaos.open(Role::Pinger(pinger));
    }
    let well_behaved = args.chatters + pingers as usize;
    let joined = chaos.run_until(JOIN_LIMIT, |c| {
        c.clients
            .iter()
            .filter(|(_, c)| c.role.well_behaved() && c.welcomed)
            .count()
            == well_behaved
    });
    if !joined {
        return Err(format!(
            "the {} chatters and the pingers were not all welcomed within {} s: is the server \
             running, with --max-clients and --max-per-ip above {well_behaved}?",
            args.chatters,
            JOIN_LIMIT.as_secs(),
        ));
    }

    // 3. Chaos.
    chaos.ctx.phase = Phase::Chaos;
    let chaos_started = Instant::now();
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    for (key, client) in chaos.clients.iter_mut() {
        // Chatters start staggered over one interval, not in lockstep.
        let stagger = chat_interval.mul_f64(key as f64 / (args.chatters + 1) as f64);
        client.next_send = chaos_started + stagger;
    }
    let mut storms: VecDeque<Instant> = if args.storm > 0 {
        [duration / 3, duration * 2 / 3]
            .map(|at| chaos_started + at)
            .into()
    } else {
        VecDeque::new()
    };
    let mut next_spawn = chaos_started;
    while chaos_started.elapsed() < duration {
        let now = Instant::now();
        if storms.front().is_some_and(|&at| at <= now) {
            storms.pop_front();
            for _ in 0..args.storm {
                chaos.open(Role::Storm);
            }
        }
        while next_spawn <= now && chaos.misbehaving_now() < args.conns {
            let role = chaos.misbehaving[(chaos.started % chaos.misbehaving.len() as u64) as usize];
            chaos.open(role);
            next_spawn += spawn_interval;
        }
        // Do not save up spawns while the cap holds them back.
        next_spawn = next_spawn.max(earlier(now, spawn_interval));
        chaos.turn();
        sample_rss(&mut sampled);
    }

    // 4. Calm: the strangers go; what the chatters sent must all arrive.
    chaos.ctx.phase = Phase::Calm;
    chaos.clients.retain(|_, c| {
        if !c.role.well_behaved() {
            close(c);
        }
        c.role.well_behaved()
    });
    chaos.run_until(DRAIN_LIMIT, |c| c.drained());
    sample_rss(&mut sampled);

    // 5. Leave.
    chaos.ctx.phase = Phase::Leave;
    for (_, client) in chaos.clients.iter_mut() {
        client.output.extend_from_slice(b"/quit\n");
        client.leaving = true;
        let _ = write_out(client);
    }
    chaos.run_until(LEAVE_LIMIT, |c| c.clients.is_empty());
    for client in chaos.clients.drain() {
        chaos
            .ctx
            .lost
            .push(format!("{} was not closed after /quit", client.kind));
    }

    // 6. Settle: the server closes what it still holds (lingering closes take up to 2 s).
    let settle_started = Instant::now();
    let mut end = args.server_pid.and_then(resources);
    while let (Some((fds_cold, _)), Some((fds, _))) = (cold, end) {
        if fds <= fds_cold || settle_started.elapsed() >= SETTLE_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        end = args.server_pid.and_then(resources);
    }
    let rss_peak = rss_peak.max(end.map(|(_, rss)| rss));
    Ok(chaos.into_round(started.elapsed().as_secs_f64(), end, rss_peak))
}

/// The server's open descriptors and RSS in KiB, from /proc (`None` once it has exited).
fn resources(pid: u32) -> Option<(usize, u64)> {
    Some((open_fds(pid)?, rss_kib(pid)?))
}

/// The interval between events at `rate` per second.
fn rate_interval(rate: f64, flag: &str) -> Result<Duration, String> {
    if rate > 0.0 && rate.is_finite() {
        Ok(Duration::from_secs_f64(1.0 / rate))
    } else {
        Err(format!("{flag} must be a positive number per second"))
    }
}

impl Chaos {
    fn new(
        args: &BenchArgs,
        target: SocketAddr,
        tls: Option<&TlsTarget>,
        chat_interval: Duration,
    ) -> io::Result<Chaos> {
        let pings = PingLog {
            sent: 0,
            answered: 0,
            pending: VecDeque::new(),
            slowest: Duration::ZERO,
            round_trip: latency_histogram()?,
        };
        let mut misbehaving = MISBEHAVING.to_vec();
        if tls.is_some() {
            misbehaving.extend(MISBEHAVING_TLS);
        }
        Ok(Chaos {
            target,
            tls: tls.cloned(),
            misbehaving,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            clients: Slab::new(),
            ctx: Context {
                epoch: Instant::now(),
                phase: Phase::Join,
                size: args.size,
                chat_interval,
                tallies: BTreeMap::new(),
                chatters: (0..args.chatters).map(|_| ChatterLog::default()).collect(),
                pings,
                latency: latency_histogram()?,
                scratch: vec![0; 64 * 1024],
                dirty: 0,
                first_dirty: None,
                lost: Vec::new(),
                target: None,
            },
            started: 0,
            rng: args.seed.max(1),
            last_timed: Instant::now(),
        })
    }

    fn misbehaving_now(&self) -> usize {
        self.clients
            .iter()
            .filter(|(_, c)| !c.role.well_behaved() && c.role != Role::Storm)
            .count()
    }

    /// A random number of milliseconds in `low..=high` (xorshift64).
    fn random_ms(&mut self, (low, high): (u64, u64)) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Duration::from_millis(low + self.rng % (high - low + 1))
    }

    /// Starts a client of `role` connecting.
    fn open(&mut self, role: Role) {
        let serial = if role.well_behaved() {
            0
        } else {
            self.started += 1;
            self.started
        };
        let until = Instant::now() + self.random_ms(role.lifetime_ms());
        // With a TLS listener, every other chatter and the second pinger talk TLS there; the
        // TLS roles connect there too, with a session (non-readers) or to abuse the port
        // without one (garbage, stallers).
        let tls_target = self.tls.as_ref().filter(|_| {
            role.on_tls_port()
                || matches!(role, Role::Chatter(n) if n % 2 == 1)
                || role == Role::Pinger(1)
        });
        let with_session = role.well_behaved() || role == Role::TlsNonReader;
        let kind = match role {
            Role::Chatter(_) if tls_target.is_some() => "tls-chatter",
            Role::Pinger(_) if tls_target.is_some() => "tls-pinger",
            role => role.name(),
        };
        if let (Role::Chatter(n), Some(_)) = (role, tls_target)
            && let Some(log) = self.ctx.chatters.get_mut(n as usize)
        {
            log.tls = true;
        }
        let tally = self.ctx.tallies.entry(kind).or_default();
        tally.opened += 1;
        let receive_buffer = role.non_reader().then_some(NON_READER_BUFFER);
        let addr = tls_target.map_or(self.target, |t| t.addr);
        let entry = self.clients.vacant_entry();
        let registered = connect(addr, None, receive_buffer).and_then(|mut stream| {
            if role == Role::Flooder {
                SockRef::from(&stream).set_send_buffer_size(FLOODER_SEND_BUFFER)?;
            }
            let tls = match tls_target.filter(|_| with_session) {
                Some(target) => Some(target.session().map_err(io::Error::other)?),
                None => None,
            };
            self.poll.registry().register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok((stream, tls))
        });
        match registered {
            Ok((stream, tls)) => {
                entry.insert(Client {
                    stream,
                    tls,
                    role,
                    kind,
                    serial,
                    connected: false,
                    welcomed: false,
                    leaving: false,
                    shutdown_when_flushed: false,
                    input: Vec::new(),
                    output: Vec::new(),
                    until,
                    next_send: Instant::now(),
                    seq: 0,
                    nick: String::new(),
                    aimed_at: false,
                });
            }
            Err(e) => {
                tally.failed += 1;
                if role.well_behaved() {
                    self.ctx.lost.push(format!("{kind} could not connect: {e}"));
                }
            }
        }
    }

    /// Runs loop turns until `done` holds or `limit` passes; whether `done` held.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Chaos) -> bool) -> bool {
        let started = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            if started.elapsed() >= limit {
                return false;
            }
            self.turn();
        }
    }

    /// One loop turn: timed actions (at most once a millisecond), then one poll and its
    /// events.
    fn turn(&mut self) {
        let now = Instant::now();
        if now - self.last_timed >= Duration::from_millis(1) {
            self.last_timed = now;
            self.choose_target();
            let ctx = &mut self.ctx;
            self.clients.retain(|_, client| {
                let after = timed(client, ctx, now);
                if after == After::Close {
                    close(client);
                }
                after == After::Keep
            });
        }
        if self.poll.poll(&mut self.events, Some(TICK)).is_err() {
            return;
        }
        for event in self.events.iter() {
            let Token(key) = event.token();
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            if service(client, &mut self.ctx) == After::Close {
                close(client);
                self.clients.remove(key);
            }
        }
    }

    /// Keeps the flooders' target until it has had its dose or is gone; then takes, of the
    /// connected non-readers never aimed at, the one due to stay longest, so that it has time
    /// to be cut off as too slow before it goes.
    fn choose_target(&mut self) {
        let keep = self.ctx.target.as_ref().is_some_and(|t| {
            t.aimed < TARGET_DOSE
                && self
                    .clients
                    .get(t.key)
                    .is_some_and(|c| c.role.non_reader() && c.nick == t.nick)
        });
        if keep {
            return;
        }
        self.ctx.target = self
            .clients
            .iter_mut()
            // A TLS non-reader has a nick once its handshake is over.
            .filter(|(_, c)| c.role.non_reader() && !c.nick.is_empty() && !c.aimed_at)
            .max_by_key(|(_, c)| c.until)
            .map(|(key, c)| {
                c.aimed_at = true;
                Target {
                    key,
                    nick: c.nick.clone(),
                    aimed: 0,
                }
            });
    }

    /// Every chatter has every line sent so far by the others, and every ping is answered.
    fn drained(&self) -> bool {
        let total: u64 = self.ctx.chatters.iter().map(|c| c.sent).sum();
        self.ctx
            .chatters
            .iter()
            .all(|c| c.received.len() as u64 >= total - c.sent)
            && self.ctx.pings.pending.is_empty()
    }

    /// Boils the round down to its figures and its verdict on each per-round promise.
    fn into_round(self, secs: f64, end: Option<(usize, u64)>, rss_peak: Option<u64>) -> Round {
        let ctx = self.ctx;
        let sent: Vec<u64> = ctx.chatters.iter().map(|c| c.sent).collect();
        let lines_sent_tls = ctx.chatters.iter().filter(|c| c.tls).map(|c| c.sent).sum();
        let received: Vec<Vec<LineId>> = ctx.chatters.into_iter().map(|c| c.received).collect();
        let lines_sent: u64 = sent.iter().sum();
        let pings = ctx.pings;
        // A ping never answered counts as taking until now.
        let ping_slowest = pings
            .pending
            .front()
            .map_or(pings.slowest, |(_, _, at)| pings.slowest.max(at.elapsed()));
        let verdicts = [
            invariants::exactly_once(&sent, &received).and_then(|()| {
                (lines_sent > 0)
                    .then_some(())
                    .ok_or_else(|| "the chatters sent nothing".to_string())
            }),
            invariants::one_global_order(&sent, &received),
            match &ctx.first_dirty {
                None => Ok(()),
                Some(line) => Err(format!(
                    "{} lines with control characters or invalid UTF-8, e.g. {line:?}",
                    ctx.dirty
                )),
            },
            if pings.sent > 0 && pings.answered == pings.sent && ping_slowest <= PING_LIMIT {
                Ok(())
            } else {
                Err(answered(pings.answered, pings.sent, ping_slowest))
            },
            if ctx.lost.is_empty() {
                Ok(())
            } else {
                Err(counted(&ctx.lost))
            },
        ];
        Round {
            secs,
            tallies: ctx.tallies,
            lines_sent,
            lines_sent_tls,
            deliveries: received.iter().map(|r| r.len() as u64).sum(),
            expected: lines_sent * (sent.len() as u64).saturating_sub(1),
            latency: ctx.latency,
            pings_sent: pings.sent,
            pings_answered: pings.answered,
            ping_slowest,
            round_trip: pings.round_trip,
            verdicts,
            end,
            rss_peak,
        }
    }
}

/// What one round recorded, once its clients are gone.
struct Round {
    secs: f64,
    tallies: BTreeMap<&'static str, Tally>,
    lines_sent: u64,
    /// Of `lines_sent`, those of chatters on the TLS listener.
    lines_sent_tls: u64,
    deliveries: u64,
    /// What a lossless server delivers: every chatter line to every other chatter.
    expected: u64,
    latency: Histogram<u64>,
    pings_sent: u64,
    pings_answered: u64,
    /// The slowest round trip, a ping never answered counting as taking until the end.
    ping_slowest: Duration,
    round_trip: Histogram<u64>,
    /// One per promise of [`PER_ROUND`], in that order: `Err` says how it was broken.
    verdicts: [Result<(), String>; PER_ROUND.len()],
    /// The server's descriptors and RSS after the settle phase, and its highest RSS during
    /// the round (with `--server-pid`).
    end: Option<(usize, u64)>,
    rss_peak: Option<u64>,
}

impl ChaosReport {
    /// Merges the rounds: counts summed, latency histograms added, and each per-round promise
    /// failed if any round broke it (the report names the round). Then the server's resources,
    /// across the rounds.
    fn new(
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
fn counted(reasons: &[String]) -> String {
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
fn answered(answered: u64, sent: u64, slowest: Duration) -> String {
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
fn resource_checks(cold: Option<(usize, u64)>, ends: &[Option<(usize, u64)>]) -> [Check; 2] {
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

/// Closes a client's socket, with a reset for the roles that vanish that way.
fn close(client: &Client) {
    if client.role.resets() {
        let _ = SockRef::from(&client.stream).set_linger(Some(Duration::ZERO));
    }
}

/// What a client does because time passed: chatters and pingers send, producers top up
/// their output, misbehaving clients whose time is up go.
fn timed(client: &mut Client, ctx: &mut Context, now: Instant) -> After {
    if !client.connected {
        return if client.role.well_behaved() || client.until > now {
            After::Keep
        } else {
            After::Close
        };
    }
    match client.role {
        _ if !client.role.well_behaved() && client.until <= now => return After::Close,
        Role::Chatter(me) if ctx.phase == Phase::Chaos => {
            // Catch up after a stall, but never send a burst the rate limit would hold back.
            let mut budget = 4;
            while client.next_send <= now && budget > 0 {
                let stamp = Stamp {
                    sender: me,
                    seq: client.seq,
                    sent_at_ns: u64::try_from(ctx.epoch.elapsed().as_nanos()).unwrap_or(0),
                };
                wire::encode_line(Proto::Pollchat, stamp, ctx.size, &mut client.output);
                client.seq += 1;
                if let Some(log) = ctx.chatters.get_mut(me as usize) {
                    log.sent += 1;
                }
                client.next_send += ctx.chat_interval;
                budget -= 1;
            }
            client.next_send = client.next_send.max(earlier(now, ctx.chat_interval));
        }
        Role::Pinger(me)
            if ctx.phase == Phase::Chaos && client.welcomed && client.next_send <= now =>
        {
            let pings = &mut ctx.pings;
            let _ = writeln!(
                PushStr(&mut client.output),
                "/msg {} P {}",
                client.nick,
                pings.sent
            );
            pings.pending.push_back((me, pings.sent, now));
            pings.sent += 1;
            client.next_send = now + PING_EVERY;
        }
        Role::Endless if client.welcomed && client.output.len() < PRODUCE_AHEAD => {
            client.output.resize(PRODUCE_AHEAD, b'x');
        }
        Role::Flooder if client.welcomed => {
            while client.output.len() < PRODUCE_AHEAD {
                let before = client.output.len();
                let mut out = PushStr(&mut client.output);
                let aim = ctx
                    .target
                    .as_mut()
                    .filter(|_| !client.seq.is_multiple_of(FLOOD_BROADCAST_EVERY));
                if let Some(target) = &aim {
                    let _ = write!(out, "/msg {} ", target.nick);
                }
                let _ = write!(out, "F {} {} ", client.serial, client.seq);
                // One copy, not the formatter's padding one character at a time.
                client.output.extend_from_slice(&[b'x'; FLOOD_LINE]);
                client.output.push(b'\n');
                if let Some(target) = aim {
                    target.aimed += client.output.len() - before;
                }
                client.seq += 1;
            }
        }
        _ => {}
    }
    write_out(client)
}

/// Writes what a client has queued; a half-closer shuts its sending half once it is out.
fn write_out(client: &mut Client) -> After {
    if let Some(tls) = &mut client.tls {
        return match send_tls(tls, &mut client.stream, &mut client.output) {
            Ok(()) => After::Keep,
            Err(_) => After::Close,
        };
    }
    if client.output.is_empty() {
        return After::Keep;
    }
    if flush(&mut client.stream, &mut client.output).is_err() {
        return After::Close;
    }
    if client.shutdown_when_flushed && client.output.is_empty() {
        client.shutdown_when_flushed = false;
        if client.stream.shutdown(Shutdown::Write).is_err() {
            return After::Close;
        }
    }
    After::Keep
}

/// Moves a TLS client's plaintext into its session and the session's records to the socket,
/// as far as they go without waiting. Even with no plaintext there may be records to send:
/// the ClientHello, the rest of the handshake, lines the session held until it was over.
fn send_tls(
    tls: &mut ClientConnection,
    socket: &mut TcpStream,
    output: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        // rustls takes plaintext up to its buffer limit...
        let taken = write_until_blocked(&mut Plaintext(tls), output)?;
        output.drain(..taken);
        // ...and records go out until the socket is full or there are none left.
        if !write_records(tls, socket)? {
            return Ok(());
        }
        // Every record is out, so rustls has room again: go round only if it took something
        // this time (during the handshake it keeps plaintext back, and takes no more once
        // full), so the loop ends.
        if output.is_empty() || taken == 0 {
            return Ok(());
        }
    }
}

/// Reads everything the socket has for a client into its `input`, through its TLS session if
/// it has one; `Some(why)` if the server closed the connection or it failed.
fn receive(client: &mut Client, scratch: &mut [u8]) -> Option<String> {
    let Client {
        stream, tls, input, ..
    } = client;
    loop {
        let outcome = match tls {
            Some(tls) => transport::receive_tls(tls, stream, scratch, |plaintext| {
                input.extend_from_slice(plaintext);
            }),
            None => match stream.read(scratch) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => {
                    input.extend_from_slice(&scratch[..n]);
                    Ok(ReadOutcome::Data(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(TransportError::Io(e)),
            },
        };
        match outcome {
            Ok(ReadOutcome::Data(_)) => {}
            Ok(ReadOutcome::Drained) => return None,
            Ok(ReadOutcome::Eof) => return Some("the server closed the connection".into()),
            Err(TransportError::Tls(e)) => return Some(format!("TLS failed: {e}")),
            Err(TransportError::Io(_)) => return Some("the connection failed".into()),
        }
    }
}

/// Handles readiness on one client: completes its connect, writes, reads and reacts to
/// every complete line.
fn service(client: &mut Client, ctx: &mut Context) -> After {
    let tally = ctx.tallies.entry(client.kind).or_default();
    if !client.connected {
        match connect_finished(&client.stream) {
            Ok(true) => {}
            Ok(false) => return After::Keep,
            Err(e) => {
                tally.failed += 1;
                if client.role.well_behaved() {
                    ctx.lost
                        .push(format!("{} could not connect: {e}", client.kind));
                }
                return After::Close;
            }
        }
        client.connected = true;
        let _ = client.stream.set_nodelay(true);
        if client.role == Role::NonReader {
            client.nick = format!("nr-{}", client.serial);
            let _ = writeln!(PushStr(&mut client.output), "/nick {}", client.nick);
        }
        // Half the vanishers go before the server could even greet them.
        if client.role == Role::Vanisher && client.serial.is_multiple_of(2) {
            return After::Close;
        }
        match client.role {
            Role::TlsGarbage => client.output.extend_from_slice(NOT_A_HANDSHAKE),
            Role::TlsStaller => client.output.extend_from_slice(STALLED_HEADER),
            _ => {}
        }
    }
    if write_out(client) == After::Close {
        return lost(client, ctx, "writing failed");
    }
    if client.role == Role::NonReader || (client.role == Role::TlsNonReader && tls_done(client)) {
        return After::Keep;
    }
    let closed = receive(client, &mut ctx.scratch);
    if client.role == Role::TlsNonReader && tls_done(client) {
        // In from now on, and reading no more: what the server sends it piles up.
        client.nick = format!("tnr-{}", client.serial);
        let _ = writeln!(PushStr(&mut client.output), "/nick {}", client.nick);
        client.input.clear();
    }
    let mut used = 0;
    let mut after = After::Keep;
    while let Some(end) = memchr::memchr(b'\n', &client.input[used..]) {
        let line = used..used + end;
        used += end + 1;
        let line = client.input[line].to_vec();
        if on_line(client, &line, ctx) == After::Close {
            after = After::Close;
            break;
        }
    }
    client.input.drain(..used);
    if after == After::Close {
        return after;
    }
    if let Some(why) = closed {
        return lost(client, ctx, &why);
    }
    write_out(client)
}

/// The server closed a client (or the connection failed): expected for some, a broken
/// promise for a well-behaved client that did not ask to leave.
fn lost(client: &Client, ctx: &mut Context, why: &str) -> After {
    ctx.tallies.entry(client.kind).or_default().closed_by_server += 1;
    if !client.leaving && client.role.well_behaved() {
        let name = match client.role {
            Role::Chatter(n) => format!("{} {n}", client.kind),
            _ => client.kind.to_string(),
        };
        ctx.lost
            .push(format!("{name}: {why} ({:?} phase)", ctx.phase));
    }
    After::Close
}

/// Reacts to one line from the server.
fn on_line(client: &mut Client, line: &[u8], ctx: &mut Context) -> After {
    let tally = ctx.tallies.entry(client.kind).or_default();
    if client.role.well_behaved() {
        let clean = std::str::from_utf8(line).is_ok_and(invariants::is_clean_text);
        if !clean {
            ctx.dirty += 1;
            if ctx.first_dirty.is_none() {
                ctx.first_dirty = Some(String::from_utf8_lossy(line).into_owned());
            }
        }
    }
    if line.starts_with(b"*** server full") || line.starts_with(b"*** too many connections") {
        tally.refused += 1;
        if client.role.well_behaved() {
            ctx.lost
                .push(format!("{} was refused: {}", client.kind, lossy(line)));
        }
        return After::Keep;
    }
    if line.starts_with(b"*** line too long") {
        tally.too_long += 1;
    }
    if line.starts_with(b"*** welcome") && !client.welcomed {
        client.welcomed = true;
        tally.welcomed += 1;
        return welcomed(client, line);
    }
    match client.role {
        Role::Chatter(me) => {
            let mut framed = line.to_vec();
            framed.push(b'\n');
            if let Some((Incoming::Line(stamp), _)) = wire::decode(Proto::Pollchat, &framed)
                && let Some(log) = ctx.chatters.get_mut(me as usize)
            {
                log.received.push((stamp.sender, stamp.seq));
                let now_ns = u64::try_from(ctx.epoch.elapsed().as_nanos()).unwrap_or(0);
                let micros = now_ns.saturating_sub(stamp.sent_at_ns) / 1000;
                ctx.latency.saturating_record(micros.max(1));
            }
        }
        Role::Pinger(me) => {
            let prefix = format!("*{}* P ", client.nick);
            let seq = line
                .strip_prefix(prefix.as_bytes())
                .and_then(|rest| std::str::from_utf8(rest).ok()?.parse::<u64>().ok());
            let pings = &mut ctx.pings;
            // The answer counts only if it is to this pinger's oldest ping still pending.
            let oldest = pings.pending.iter().position(|&(p, _, _)| p == me);
            if let (Some(seq), Some(i)) = (seq, oldest)
                && pings.pending[i].1 == seq
                && let Some((_, _, sent)) = pings.pending.remove(i)
            {
                let rtt = sent.elapsed();
                pings.answered += 1;
                pings.slowest = pings.slowest.max(rtt);
                let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
                pings.round_trip.saturating_record(micros.max(1));
            }
        }
        _ => {}
    }
    After::Keep
}

/// A TLS client whose handshake is over (and which has no session to wait for without TLS).
fn tls_done(client: &Client) -> bool {
    client.tls.as_ref().is_some_and(|tls| !tls.is_handshaking())
}

/// What a client does once it is in the room.
fn welcomed(client: &mut Client, line: &[u8]) -> After {
    match client.role {
        Role::Pinger(_) => {
            // "*** welcome to pollchat, you are NICK (type /help for commands)"
            let text = lossy(line);
            client.nick = text
                .split_once("you are ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
        }
        Role::Vanisher => {
            client.output.extend_from_slice(b"V half a li");
            let _ = write_out(client);
            return After::Close;
        }
        Role::Garbage => {
            for line in GARBAGE {
                client.output.extend_from_slice(line);
            }
        }
        Role::HalfCloser => {
            client.output.extend_from_slice(b"H leaving half-way\n");
            client.shutdown_when_flushed = true;
            client.leaving = true;
        }
        _ => {}
    }
    write_out(client)
}

/// `at - by`, or `at` on a machine up for less than `by`.
fn earlier(at: Instant, by: Duration) -> Instant {
    at.checked_sub(by).unwrap_or(at)
}

fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// `write!` into a byte buffer.
struct PushStr<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for PushStr<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
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
