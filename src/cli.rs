//! The command line: the server's flags (parsed by `clap`) turned into a [`Config`]. The load
//! generator and the terminal client are binaries of their own (`pollchat-bench`,
//! `pollchat-connect`), with command lines of their own; `--help` points to them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use log::LevelFilter;

use crate::backplane::{BackplaneConfig, RedisUrl};
use crate::config::{Config, HttpSettings, Motd, TlsSettings};
use crate::limits;
use crate::operators::{Operator, parse_operator};
use crate::state::Fsync;

/// A single-threaded chat server for nc and telnet clients, built on one mio poll loop.
#[derive(Debug, Parser)]
#[command(
    name = "pollchat",
    version,
    about,
    max_term_width = 100,
    after_help = TOOLS_AFTER_HELP
)]
pub struct Cli {
    /// Read settings from this TOML file: each key is a flag's name (max-clients = 500), and
    /// flags given here win over it
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the settings (defaults, then --config's file, then flags) as a file for --config,
    /// and exit
    #[arg(long)]
    pub print_config: bool,

    // (The help is an attribute, not a doc comment: rustdoc would read `[::]` as a link.)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:7878",
        help = "Address to listen on; repeat for several (e.g. --bind 0.0.0.0:7878 --bind [::]:7878)"
    )]
    pub bind: Vec<SocketAddr>,

    /// Serve TLS too, with this certificate chain (PEM; needs --tls-key)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key for --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Address to listen on for TLS; repeat for several
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7879")]
    pub tls_bind: Vec<SocketAddr>,

    /// Serve TLS only: no plain listener (--bind is ignored)
    #[arg(long, requires = "tls_cert")]
    pub tls_only: bool,

    /// Seconds a TLS client has to finish its handshake before it is closed
    #[arg(long, value_name = "SECS",
          default_value_t = limits::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs_f64())]
    pub tls_handshake_timeout: f64,

    /// Serve HTTP on this address: the chat page at /, WebSocket clients at /ws, counters at
    /// /metrics; repeat for several (off by default)
    #[arg(long, value_name = "ADDR")]
    pub http_bind: Vec<SocketAddr>,

    /// Serve the same over TLS on this address (https:// and wss://), with --tls-cert;
    /// repeat for several (off by default)
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    pub https_bind: Vec<SocketAddr>,

    /// Seconds an HTTP connection has to send its whole request head before it is closed
    #[arg(long, value_name = "SECS",
          default_value_t = limits::DEFAULT_HTTP_HEAD_TIMEOUT.as_secs_f64())]
    pub http_head_timeout: f64,

    /// Longest line a client may send; longer lines are dropped with an error (suffixes K, M)
    #[arg(long, value_name = "BYTES", default_value = "4096", value_parser = parse_bytes)]
    pub max_line: usize,

    /// Unsent output a client may stay behind by for --output-grace before it is disconnected
    /// as too slow; eight times this disconnects at once (suffixes K, M)
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_bytes)]
    pub max_output: usize,

    /// Seconds a client may stay over --max-output before it is disconnected
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_OUTPUT_GRACE.as_secs_f64())]
    pub output_grace: f64,

    /// Most clients at once; more are told "server full" [default: open-file limit minus 32]
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,

    /// Most connections from one address; more are told so and closed (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_per_ip: usize,

    /// New connections per second one address may open before more are refused at once
    /// (0: no limit; loopback is exempt unless --connect-rate-loopback)
    #[arg(long, value_name = "PER_SEC", default_value_t = limits::DEFAULT_CONNECT_RATE)]
    pub connect_rate: f64,

    /// New connections one address may open at once before --connect-rate applies
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_CONNECT_BURST)]
    pub connect_burst: u32,

    /// Hold loopback addresses (127.0.0.0/8, ::1) to --connect-rate too
    #[arg(long)]
    pub connect_rate_loopback: bool,

    /// Lines per second per client before the server stops reading it for a while (0: no limit)
    #[arg(long, value_name = "LINES_PER_SEC", default_value_t = limits::DEFAULT_RATE)]
    pub rate: f64,

    /// Lines a client may send at once before --rate applies
    #[arg(long, value_name = "LINES", default_value_t = limits::DEFAULT_BURST)]
    pub burst: u32,

    /// Disconnect clients that send nothing for this many seconds (0: never)
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub idle_timeout: f64,

    /// Do not announce joins and leaves (they cost N lines each: use for big rooms and benchmarks)
    #[arg(long)]
    pub quiet_joins: bool,

    /// Most rooms at once, #lobby included; a /join that would make one more is refused
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_ROOMS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rooms: u64,

    /// Chat lines each room keeps and replays to whoever joins it (0: none)
    #[arg(long, value_name = "LINES", default_value_t = limits::DEFAULT_HISTORY as u64,
          value_parser = clap::value_parser!(u64).range(0..=limits::MAX_HISTORY as u64))]
    pub history: u64,

    /// Message of the day: shown as *** lines right after the welcome and on /motd (several
    /// lines allowed)
    #[arg(long, value_name = "TEXT", conflicts_with = "motd_file")]
    pub motd: Option<String>,

    /// Read the message of the day from this file (again on each SIGHUP)
    #[arg(long, value_name = "PATH")]
    pub motd_file: Option<PathBuf>,

    /// Answer the UDP datagram "stats" on this address with the server's counters as JSON
    #[arg(long, value_name = "ADDR")]
    pub stats_udp: Option<SocketAddr>,

    /// Share one chat with other instances through Redis: redis://HOST:PORT[/CHANNEL] (off by
    /// default)
    #[arg(long, value_name = "URL", value_parser = RedisUrl::parse)]
    pub backplane: Option<RedisUrl>,

    /// Seconds a nick stays claimed in Redis without a refresh (a dead instance's nicks stay
    /// taken this long)
    #[arg(long, value_name = "SECS", requires = "backplane",
          default_value_t = limits::DEFAULT_NICK_TTL.as_secs_f64())]
    pub backplane_nick_ttl: f64,

    /// About how many events the backplane's Redis Stream keeps (XADD MAXLEN ~ N): how long an
    /// instance may be cut off and still resume without missing a line
    #[arg(long, value_name = "N", requires = "backplane",
          value_parser = clap::value_parser!(u32).range(1..=200_000),
          default_value_t = limits::DEFAULT_STREAM_LEN as u32)]
    pub backplane_stream_len: u32,

    /// Keep bans in this file, so they survive a restart (rewritten whole on each change)
    #[arg(long, value_name = "PATH")]
    pub bans_file: Option<PathBuf>,

    /// Keep the rooms' history and topics in this directory, so they survive a restart (off by
    /// default)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// When --state-dir's file is synced to the disk: always (every batch), everysec (at most
    /// once a second) or no (when the kernel likes)
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Fsync::Everysec,
          requires = "state_dir")]
    pub fsync: Fsync,

    /// Log level: off, error, warn, info, debug or trace (trace logs every line)
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: LevelFilter,

    /// Also append the log to this file
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// An operator: a name and the hash `pollchat hash-password` prints; repeat for several.
    /// In the file, a table: `[operators]` with NAME = "PHC" lines
    #[arg(long, value_name = "NAME=PHC", value_parser = parse_operator)]
    pub operators: Vec<Operator>,

    /// Allow /oper over plain TCP from another machine (its password crosses the network
    /// readable)
    #[arg(long)]
    pub oper_plaintext: bool,

    /// Only operators may set a room's topic
    #[arg(long)]
    pub topic_ops_only: bool,

    #[command(subcommand)]
    pub command: Option<Subcommand>,
}

/// What the binary does instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Read a password (one line) from standard input and print its argon2 hash, for
    /// `[operators]`
    HashPassword,
}

/// The end of `pollchat --help`: where the two tools went. They were the subcommands
/// `pollchat bench` and `pollchat connect` until the server's library became the server alone.
pub const TOOLS_AFTER_HELP: &str = "\
Built beside this binary by `cargo build --release` (in target/release/):
  pollchat-connect HOST:PORT   chat from this terminal (was `pollchat connect`)
  pollchat-bench               load-test a chat server, or check its promises under abuse
                               with --scenario chaos (was `pollchat bench`)";

/// The binary that took over a subcommand pollchat used to have (`bench`, `connect`), for
/// the one line that says so when someone types the old command.
pub fn moved_subcommand(first_arg: &str) -> Option<&'static str> {
    match first_arg {
        "bench" => Some("pollchat-bench"),
        "connect" => Some("pollchat-connect"),
        _ => None,
    }
}

impl Cli {
    /// The server configuration this command line asks for.
    pub fn config(&self) -> Config {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                bind: self.tls_bind.clone(),
                handshake_timeout: Duration::from_secs_f64(
                    self.tls_handshake_timeout.clamp(0.001, 1e6),
                ),
            }),
            _ => None,
        };
        let web = !self.http_bind.is_empty() || !self.https_bind.is_empty();
        let http = web.then(|| HttpSettings {
            bind: self.http_bind.clone(),
            https_bind: self.https_bind.clone(),
            head_timeout: Duration::from_secs_f64(self.http_head_timeout.clamp(0.001, 1e6)),
        });
        Config {
            bind: if self.tls_only {
                Vec::new()
            } else {
                self.bind.clone()
            },
            tls,
            http,
            max_line: self.max_line,
            max_output: self.max_output,
            output_grace: Duration::from_secs_f64(self.output_grace.clamp(0.0, 1e6)),
            max_clients: self.max_clients,
            max_per_ip: self.max_per_ip,
            connect_rate: self.connect_rate.max(0.0),
            connect_burst: self.connect_burst.max(1),
            connect_rate_loopback: self.connect_rate_loopback,
            rate: self.rate.max(0.0),
            burst: self.burst,
            idle_timeout: (self.idle_timeout > 0.0)
                .then(|| Duration::from_secs_f64(self.idle_timeout)),
            quiet_joins: self.quiet_joins,
            max_rooms: usize::try_from(self.max_rooms).unwrap_or(usize::MAX),
            history: usize::try_from(self.history).unwrap_or(limits::MAX_HISTORY),
            stats_udp: self.stats_udp,
            backplane: self.backplane.clone().map(|url| BackplaneConfig {
                url,
                // Milliseconds are Redis's unit for the expiry; under 0.3 s the refresh
                // (every third) would be a busy loop.
                nick_ttl: Duration::from_secs_f64(self.backplane_nick_ttl.clamp(0.3, 1e6)),
                stream_len: self.backplane_stream_len as usize,
            }),
            bans_file: self.bans_file.clone(),
            state_dir: self.state_dir.clone(),
            fsync: self.fsync,
            operators: self.operators.clone(),
            oper_plaintext: self.oper_plaintext,
            topic_ops_only: self.topic_ops_only,
            handle_signals: true,
            motd: (self.motd.clone().map(Motd::Text)).or(self.motd_file.clone().map(Motd::File)),
            log_level: self.log_level,
            log_file: self.log_file.clone(),
            reload_args: None,
        }
    }
}

/// `4096`, `64K`, `64KiB`, `1M`, `1MiB` (binary units; case does not matter).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let multiplier = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("unknown unit {unit:?} (use K or M)")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size in bytes"))?;
    match n.checked_mul(multiplier) {
        Some(0) | None => Err(format!("{text:?} is out of range")),
        Some(bytes) => Ok(bytes),
    }
}
