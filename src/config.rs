//! The [`Config`] the server runs with.
//!
//! The server takes a plain struct, not the command line (that is `cli.rs`), so tests and
//! embedders build one directly (`Config { max_line: 16, ..Config::default() }`). Defaults and
//! the reasons for them live in `limits.rs`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use crate::backplane::BackplaneConfig;
use crate::limits;
use crate::operators::Operator;
use crate::state::Fsync;

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on for plain TCP (IPv4 and IPv6; port 0 picks a free port). Empty
    /// with `tls` set serves TLS only.
    pub bind: Vec<SocketAddr>,
    /// TLS listeners, with the certificate they present; `None` serves plain TCP only.
    pub tls: Option<TlsSettings>,
    /// HTTP listeners (`--http-bind`, and `--https-bind` over TLS with `tls`'s certificate):
    /// the chat page, WebSocket clients, `/metrics`; `None` serves none.
    pub http: Option<HttpSettings>,
    /// Longest line accepted, in bytes, line ending excluded.
    pub max_line: usize,
    /// Unsent output a client may stay above for `output_grace` (or exceed eightfold at
    /// any moment) before it is disconnected as too slow.
    pub max_output: usize,
    /// How long a client may stay above `max_output`.
    pub output_grace: Duration,
    /// Most clients in the room at once; `None` derives it from the open-file limit.
    pub max_clients: Option<usize>,
    /// Most connections from one client address; `0` means no limit.
    pub max_per_ip: usize,
    /// Connections per second one address may open (after `connect_burst`); `0.0` turns the
    /// limit off.
    pub connect_rate: f64,
    pub connect_burst: u32,
    /// Loopback addresses are held to `connect_rate` too (by default they are not).
    pub connect_rate_loopback: bool,
    /// Lines per second per client; `0.0` turns flood control off.
    pub rate: f64,
    /// Lines a client may send at once before `rate` applies.
    pub burst: u32,
    /// Disconnect clients silent for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// Do not announce joins and leaves.
    pub quiet_joins: bool,
    /// Most rooms kept at once, `#lobby` included (at least 1).
    pub max_rooms: usize,
    /// Chat lines each room keeps to replay to whoever joins it; `0` keeps none.
    pub history: usize,
    /// Answer `stats` datagrams on this UDP address with the counters as JSON.
    pub stats_udp: Option<SocketAddr>,
    /// `--backplane`: share the chat with other instances through Redis pub/sub.
    pub backplane: Option<BackplaneConfig>,
    /// `--bans-file`: where bans are kept across restarts; `None` keeps them in memory only.
    pub bans_file: Option<PathBuf>,
    /// `--state-dir`: where the rooms' history and topics are kept across restarts (`state/`);
    /// `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// `--fsync`: when the state file is synced to the disk.
    pub fsync: Fsync,
    /// The operators (`[operators]`): a name and its argon2 hash each.
    pub operators: Vec<Operator>,
    /// `/oper` over plain text from another machine is allowed (by default it is refused).
    pub oper_plaintext: bool,
    /// Only operators may set a room's topic.
    pub topic_ops_only: bool,
    /// Turn SIGINT/SIGTERM into a graceful shutdown. Only one server per process may, so
    /// the binary sets it and in-process tests do not.
    pub handle_signals: bool,
    /// Shown to each client right after its welcome, and on `/motd`.
    pub motd: Option<Motd>,
    /// `--log-level`, changed by a reload; `--log-file`, which only a restart changes.
    pub log_level: LevelFilter,
    pub log_file: Option<PathBuf>,
    /// The command line (program name first) that named a `--config` file, for SIGHUP to
    /// read again over that file; `None`: there is no file to reload.
    pub reload_args: Option<Vec<OsString>>,
}

/// `--motd` or `--motd-file` (read at start and on every reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Motd {
    Text(String),
    File(PathBuf),
}

/// What a TLS listener needs.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Addresses to listen on for TLS.
    pub bind: Vec<SocketAddr>,
    /// How long a client has to finish its handshake.
    pub handshake_timeout: Duration,
}

/// What an HTTP listener needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Addresses to listen on for HTTP.
    pub bind: Vec<SocketAddr>,
    /// Addresses to listen on for HTTPS (the same, over TLS: `wss://` for the page's
    /// WebSocket); needs `Config::tls` for the certificate.
    pub https_bind: Vec<SocketAddr>,
    /// How long a connection has to send its whole request head.
    pub head_timeout: Duration,
}

impl HttpSettings {
    /// HTTP on `bind`, other settings at their defaults.
    pub fn new(bind: SocketAddr) -> HttpSettings {
        HttpSettings {
            bind: vec![bind],
            https_bind: Vec::new(),
            head_timeout: limits::DEFAULT_HTTP_HEAD_TIMEOUT,
        }
    }
}

impl TlsSettings {
    /// TLS with this certificate and key on `bind`, other settings at their defaults.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, bind: SocketAddr) -> Self {
        TlsSettings {
            cert: cert.into(),
            key: key.into(),
            bind: vec![bind],
            handshake_timeout: limits::DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 7878))],
            tls: None,
            http: None,
            max_line: limits::DEFAULT_MAX_LINE,
            max_output: limits::DEFAULT_MAX_OUTPUT,
            output_grace: limits::DEFAULT_OUTPUT_GRACE,
            max_clients: None,
            max_per_ip: 0,
            connect_rate: limits::DEFAULT_CONNECT_RATE,
            connect_burst: limits::DEFAULT_CONNECT_BURST,
            connect_rate_loopback: false,
            rate: limits::DEFAULT_RATE,
            burst: limits::DEFAULT_BURST,
            idle_timeout: None,
            quiet_joins: false,
            max_rooms: limits::DEFAULT_MAX_ROOMS,
            history: limits::DEFAULT_HISTORY,
            stats_udp: None,
            backplane: None,
            bans_file: None,
            state_dir: None,
            fsync: Fsync::default(),
            operators: Vec::new(),
            oper_plaintext: false,
            topic_ops_only: false,
            handle_signals: false,
            motd: None,
            log_level: LevelFilter::Info,
            log_file: None,
            reload_args: None,
        }
    }
}
