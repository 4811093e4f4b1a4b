//! The generator's command line, one set of flags for both scenarios (`--scenario`): what
//! `pollchat-bench --help` lists, parsed by clap into [`BenchArgs`]. Checking that the flags
//! make sense together is the run's job (`run.rs`, `chaos/mod.rs`), which knows why.

use std::net::SocketAddr;

use serde::{Serialize, Serializer};

use super::Proto;

/// The sending rate: lines per second in total, or as fast as the window allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r)),
            _ => Err(format!(
                "{s:?} is not a positive number of lines per second or \"max\""
            )),
        }
    }
}

/// In the JSON report: the number, or `"max"`, as on the command line.
impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Rate::PerSecond(r) => serializer.serialize_f64(r),
            Rate::Max => serializer.serialize_str("max"),
        }
    }
}

/// `--oper NAME=PASSWORD`: an operator the server knows (its `--operators NAME=HASH`), for
/// the chaos run's operator (`chaos/operator.rs`).
#[derive(Clone, PartialEq, Eq)]
pub struct OperLogin {
    pub name: String,
    pub password: String,
}

impl std::str::FromStr for OperLogin {
    type Err = String;
    fn from_str(s: &str) -> Result<OperLogin, String> {
        match s.split_once('=') {
            Some((name, password))
                if !name.is_empty()
                    && !password.is_empty()
                    && !name.contains(char::is_whitespace) =>
            {
                Ok(OperLogin {
                    name: name.to_string(),
                    password: password.to_string(),
                })
            }
            _ => Err(format!(
                "{s:?} is not NAME=PASSWORD (a name without spaces)"
            )),
        }
    }
}

/// The password stays out of debug output.
impl std::fmt::Debug for OperLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperLogin({}=...)", self.name)
    }
}

/// How a sender hands its lines to its socket: the sender's write pattern decides how many lines
/// one `read` on the server finds, and so how the server batches (see `--writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Writes {
    /// One `write(2)` per line, as `nc` and people send.
    Line,
    /// Every line the window (or the pace) allows now in one `write(2)`.
    Batch,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Connections held, deliveries per second, latency, memory (the phases above).
    Load,
    /// Misbehaving clients around well-behaved chatters; PASS/FAIL per promise (`chaos/`).
    Chaos,
}

/// Measure a chat server: connections held, fan-out rate, latency, memory; or, with
/// `--scenario chaos`, whether it keeps its promises under abuse.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "pollchat-bench", version, max_term_width = 100)]
pub struct BenchArgs {
    /// load: measure; chaos: check the server's promises under misbehaving clients
    #[arg(long, value_enum, default_value_t = Scenario::Load)]
    pub scenario: Scenario,

    /// Server to load (loopback unless you mean otherwise); repeat to spread the connections
    /// round-robin over several instances of one chat (--backplane). Chaos uses the first
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub target: Vec<SocketAddr>,

    /// Protocol of the server
    #[arg(long, value_enum, default_value_t = Proto::Pollchat)]
    pub proto: Proto,

    /// Connections to open (chaos: misbehaving connections open at once)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub conns: usize,

    /// Connections opened per second (chaos: misbehaving ones)
    #[arg(long, value_name = "PER_SEC", default_value_t = 5000.0)]
    pub connect_rate: f64,

    /// Seconds to hold the connections idle before the traffic
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub hold: f64,

    /// Connections that send (the rest receive)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub senders: usize,

    /// Total lines per second from all senders, or "max"
    #[arg(long, value_name = "LINES_PER_SEC", default_value = "max")]
    pub rate: Rate,

    /// Senders are chatters too: count the lines they receive. For Redis each sender then
    /// gets a second, subscribed connection (a subscribed connection cannot PUBLISH)
    #[arg(long)]
    pub senders_receive: bool,

    /// With --rate max: lines each sender may have in flight, a line being in flight until
    /// every receiver has it (so at most window x receivers deliveries are)
    #[arg(long, value_name = "LINES", default_value_t = 64)]
    pub window: u64,

    /// How each sender writes: line (one write(2) per line, as nc and people do) or batch
    /// (every line its window or pace allows now in one write). The server's batching depends
    /// on it, so benchmark both
    #[arg(long, value_enum, default_value_t = Writes::Line)]
    pub writes: Writes,

    /// Spread senders and receivers over this many rooms, round-robin (each room gets its
    /// share of both): pollchat clients /join #bench-0 .. #bench-N-1, Redis clients use the
    /// channels pollchat-bench-0 .. -N-1. A line is expected by its own room only; one heard
    /// in another room is reported, never counted. 1: everyone in #lobby (pollchat-bench)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rooms: usize,

    /// Seconds of traffic (chaos: of misbehaviour)
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,

    /// Bytes of text per line
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,

    /// Worker threads, each with its own poll loop (at most the number of cores)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Process id of the server, to report its memory (from /proc/PID/status)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Spread connections over this many source addresses 127.0.0.1, 127.0.0.2, ... (one
    /// address has about 28,000 ephemeral ports)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub source_ips: u8,

    /// Chaos: well-behaved chatters, whose every line is checked (with --tls-target, every
    /// other one over TLS)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub chatters: usize,

    /// Chaos: more chatters, who `/join #chaos`, a room beside the flooded lobby: each room's
    /// chatters must hear exactly that room's lines
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub room_chatters: usize,

    /// Chaos: lines per second each chatter sends (keep it under the server's --rate)
    #[arg(long, value_name = "LINES_PER_SEC", default_value_t = 2.0)]
    pub chat_rate: f64,

    /// Chaos: connections in each of the two connect storms (set the server's --max-clients
    /// below chatters + conns + storm to see it refuse)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub storm: usize,

    /// Chaos: threads that connect and reset (SO_LINGER 0) as fast as they can for the whole
    /// chaos phase, each of its own beside the generator's loop (0: none)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub reset_storms: usize,

    /// Chaos: seconds within which every ping must be answered, or the server is judged to
    /// have stopped answering. 2 on a release build; a debug build on a busy machine (as
    /// `cargo test` runs it) needs more, since its own generator is slow too
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub ping_limit: f64,

    /// Chaos: rounds, each a full join, chaos, calm, leave and settle with fresh clients.
    /// Every round must keep every promise; memory after the last round is compared with
    /// memory after the first, because the allocator keeps freed memory for reuse (a leak
    /// grows round over round, retention does not). With 1, memory is compared with the
    /// server's before the run, which malloc's retention will usually fail
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub rounds: u32,

    /// Chaos: the server's --history, the lines a room replays to a newcomer: after every
    /// round a new client in each room must be replayed exactly that many of the room's last
    /// lines (fewer if the room heard fewer)
    #[arg(long, value_name = "LINES", default_value_t = pollchat::limits::DEFAULT_HISTORY)]
    pub history: usize,

    /// Chaos: after every round, have the server restarted before the history check: say
    /// "chaos: restart the server" on stdout and read one line on stdin with the restarted
    /// server's --target, --tls-target, --ws-target, --server-pid and --server-stats (those
    /// left out stay as they were). Run the server with --state-dir, so that history outlives it
    #[arg(long)]
    pub restarts: bool,

    /// Chaos: seed for the misbehaving clients' lifetimes (same seed, same schedule)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Chaos: the server's TLS listener. Every other chatter connects there, through rustls,
    /// and TLS misbehaving clients join the others (garbage instead of a handshake, a stalled
    /// handshake, a TLS client that stops reading). Needs --tls-ca
    #[arg(long, value_name = "ADDR", requires = "tls_ca")]
    pub tls_target: Option<SocketAddr>,

    /// Chaos: the PEM certificate(s) to trust for --tls-target (e.g. the server's own
    /// self-signed certificate). The name checked is the target's IP address
    #[arg(long, value_name = "PEM", requires = "tls_target")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Chaos: the server's HTTP listener (an --http-bind address). Every third chatter and
    /// one more pinger talk WebSocket there (upgrade at /ws, one masked text frame a line), and
    /// WebSocket misbehaving clients join the others (an unmasked frame, a message over
    /// --max-line, an unfinished request head, a WebSocket client that stops reading)
    #[arg(long, value_name = "ADDR")]
    pub ws_target: Option<SocketAddr>,

    /// Chaos: an operator the server knows (its --operators NAME=HASH). Each round an
    /// operator client `/oper`s in #chaos and kicks and bans flooders that join it ("trolls"),
    /// and the run checks what they, the room and the operator were told. Without it, those
    /// checks are skipped
    #[arg(long, value_name = "NAME=PASSWORD")]
    pub oper: Option<OperLogin>,

    /// The server's --stats-udp address, to report its counters at the end
    #[arg(long, value_name = "ADDR")]
    pub server_stats: Option<SocketAddr>,

    /// Print one JSON object instead of the summary
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one JSON object to this file, whatever is printed (the tests
    /// read the figures there and the summary on stdout)
    #[arg(long, value_name = "PATH")]
    pub json_file: Option<std::path::PathBuf>,
}
