//! Every bound pollchat has, with its value and the reason for it, in one place.
//!
//! The loop serves thousands of strangers from one thread, so everything a client can make it
//! hold (bytes of a line, bytes of unsent output, time, descriptors) has a ceiling. The
//! operator-facing ones have flags (see `config.rs`); the rest are fixed here because changing
//! them changes the design, not the deployment.

use std::time::Duration;

/// `--max-line`: longest line a client may send, in bytes, line ending excluded. Long enough
/// for any human message; short enough that a client sending an endless line cannot make the
/// server buffer more than this (plus one read) on its behalf.
pub const DEFAULT_MAX_LINE: usize = 4096;

/// `--max-output`: unsent output a client may have queued before it is disconnected as too
/// slow. One MiB is thousands of chat lines: a client that far behind has stopped reading, and
/// holding more would let a few stalled clients eat the server's memory.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

/// `--output-grace`: how long a client may stay over `--max-output` before it is judged too
/// slow. A client that reads is over the limit only for a moment after a burst: one batch
/// can queue the bursts of many senders for it before a single byte is written, and even a
/// fast reader then needs a few round trips to take them. A client that stopped reading stays
/// over. Redis judges pub/sub clients the same way (a soft limit held for some seconds).
pub const DEFAULT_OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Unsent output past which a client is disconnected at once, however long the grace, as a
/// multiple of `--max-output`: what bounds the memory a burst can make the server hold.
pub const HARD_OUTPUT_FACTOR: usize = 8;

/// `--rate`: lines per second a client may send before the server stops reading it for a
/// while. Ten a second is faster than anyone types and slower than any flood script.
pub const DEFAULT_RATE: f64 = 10.0;

/// `--burst`: lines a client may send at once after being quiet (a pasted paragraph).
pub const DEFAULT_BURST: u32 = 20;

/// Descriptors kept back from `--max-clients` when it is derived from the open-file limit:
/// stdio, the poll instance, listeners, the signal pipe, the waker, a log file, and room for
/// the over-the-limit clients we accept only to tell them the server is full.
pub const FD_RESERVE: u64 = 32;

/// Bytes read from one client per wakeup before the loop moves on to others. Edge-triggered
/// readiness asks us to read until `WouldBlock`, but a client that floods faster than we read
/// would then keep the loop to itself; past this budget it goes on the ready list and is served
/// again next turn, after everyone else has had a go.
pub const READ_BUDGET: usize = 64 * 1024;

/// Bytes written to one client per flush before the loop moves on (Redis's
/// `NET_MAX_WRITES_PER_EVENT` is the same 64 KiB). A client catching up on a backlog of
/// megabytes, with a socket that takes them as fast as they come, would otherwise keep the
/// loop writing to it alone; past the budget it is flushed again next turn.
pub const WRITE_BUDGET: usize = 64 * 1024;

/// Per-connection log lines (connects, disconnects, refusals, limits hit: see `connlog.rs`)
/// written as they happen: this many at once, then this many a second. A healthy server's
/// churn stays far below; a storm past it is summarized every `CONN_LOG_SUMMARY` instead, by
/// kind and by address (at most `CONN_LOG_ADDRESSES` of them counted).
pub const CONN_LOG_BURST: u32 = 2000;
pub const CONN_LOG_PER_SEC: f64 = 1000.0;
pub const CONN_LOG_SUMMARY: Duration = Duration::from_secs(10);
pub const CONN_LOG_ADDRESSES: usize = 1024;

/// Log lines waiting for stderr, at most (see `logging.rs`): about 2,000 lines. Past it a
/// consumer that stopped reading costs dropped log lines, counted and reported, instead of a
/// server stopped at its next log line.
pub const LOG_BUFFER: usize = 256 * 1024;

/// Memory is handed back to the operating system (see `memory.rs`) when glibc holds at least
/// this much free in the heap, looked at no more than once every `TRIM_EVERY`, when the loop
/// is about to wait after doing something. Below it the memory is likely to be reused soon,
/// and trimming it would only cost page faults; a spike that is over frees far more. So an
/// idle server may keep up to this much free after a spike, by design. Measured on
/// 2026-12-01 under the latency load (100 clients × 10 lines/s, `valgrind --tool=callgrind`
/// on the server): 483 instructions per delivery at 4 MiB, 651 at 1 MiB, where the trim
/// came due nearly every second and each one walked the heap for nothing.
pub const TRIM_FREE: usize = 4 * 1024 * 1024;
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Size of the one scratch buffer every `read` goes into (shared by all connections, so an
/// idle connection owns no read buffer at all, only the bytes of its unfinished line).
pub const READ_CHUNK: usize = 16 * 1024;

/// Most queued lines handed to one `write_vectored` call. Linux accepts up to 1024 (IOV_MAX);
/// 64 small lines already fill a loopback segment, and the array lives on the stack.
pub const MAX_IOVECS: usize = 64;

/// How long a client that is leaving (it quit, the server is full, it went idle) gets to take
/// the last lines we queued for it before we close the socket anyway.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long a shutdown (SIGINT/SIGTERM) waits for every client's output to be flushed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long accepting pauses after the process runs out of descriptors (EMFILE/ENFILE). The
/// pending connection stays in the kernel's backlog, so trying again at once would fail again
/// at once: that is how a loop ends up spinning at 100% CPU.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections accepted from one listener in one turn of the loop. Edge-triggered readiness
/// asks us to accept until `WouldBlock`, but in a connection storm that is thousands, and
/// every one of them costs work (a welcome, a slot) before anyone else is served. Past this
/// budget the listener is remembered and served again next turn, after everyone else has had a
/// go. Redis takes at most 1,000 per call for the same reason (`MAX_ACCEPTS_PER_CALL`).
pub const ACCEPT_BUDGET: usize = 1000;

/// Listen backlog: connections the kernel completes for us before we `accept` them. A storm of
/// thousands of connects arrives faster than one loop turn; mio's default (128) would make the
/// kernel drop SYNs silently. Linux caps it at `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: i32 = 4096;

/// `--connect-rate` / `--connect-burst`: connections per second one address may open, and how
/// many at once. Ten a second is far more than a person reconnecting, or an office behind one
/// NAT address logging in at nine; a script opening connections in a loop makes thousands.
pub const DEFAULT_CONNECT_RATE: f64 = 10.0;
pub const DEFAULT_CONNECT_BURST: u32 = 20;

/// Addresses `--connect-rate` keeps a bucket for at most. Idle ones (bucket full again) are
/// forgotten first; past this many busy ones, more addresses are let in untracked (a
/// per-address limit cannot stop a storm from more addresses than that: `--max-clients`
/// bounds what they can hold). About 64 bytes each: 4 MiB at most.
pub const CONNECT_RATE_ADDRESSES: usize = 65_536;

/// Joins (or leaves) said in one round one line each; more are one line naming this many.
/// Three is what a person reads at a glance; a small room never has more at once.
pub const NOTICE_LIST: usize = 3;

/// Rounds of join and leave notices (see `notices.rs`): this many at once, then this many a
/// second. A room where a few people come and go never waits for one; a connection storm
/// costs each member at most a few notice lines a second, however many connections it makes.
pub const NOTICE_ROUNDS_BURST: u32 = 10;
pub const NOTICE_ROUNDS_PER_SEC: f64 = 5.0;

/// Longest nick, in characters of `[A-Za-z0-9_-]`.
pub const MAX_NICK: usize = 32;

/// Longest room name after its `#`, in characters of `[A-Za-z0-9_-]` (the nick rules, so a
/// room name never holds a space either).
pub const MAX_ROOM_NAME: usize = 32;

/// The room every client starts in, and the one `/part` goes back to. It always exists.
pub const LOBBY: &str = "#lobby";

/// `--max-rooms`: most rooms this instance keeps at once, `#lobby` included. A room costs
/// little by itself (a member list and a history ring), but any client can make one with a
/// `/join`, so the number is bounded like everything else a stranger can make the server hold.
pub const DEFAULT_MAX_ROOMS: usize = 1000;

/// `--history`: chat lines each room keeps to replay to whoever joins. Twenty is a screenful:
/// enough to see what the conversation is about, few enough that a join costs little.
pub const DEFAULT_HISTORY: usize = 20;

/// Most `--history` may be. A history line is a pointer to a line every member was sent
/// anyway, but the ring keeps it alive after the queues let go: at most `--max-rooms` ×
/// this × (`--max-line` + nick) bytes.
pub const MAX_HISTORY: usize = 1000;

/// Longest message of the day (`--motd`, `--motd-file`), in bytes: every client is sent it on
/// connect, so a storm of N connections costs N times this in output. 4 KiB is some fifty
/// lines, more than a terminal shows before the chat scrolls it away.
pub const MAX_MOTD: usize = 4096;

/// `/list` puts rooms on one line up to about this many bytes, then goes on on the next: a
/// thousand rooms must not be one 30 KB line a terminal cannot show.
pub const LIST_LINE: usize = 400;

/// `--tls-handshake-timeout`: how long a TLS client has to finish its handshake. A real client
/// needs a few round trips (milliseconds); one that connects and says nothing, or dribbles a
/// hello byte by byte, holds a descriptor and rustls's buffers without ever joining. Ten
/// seconds is far beyond any real network's round trips.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest HTTP request head (`--http-bind`) the server reads: 8 KiB, what nginx and most
/// servers allow by default and far more than a browser sends (under 2 KiB, cookies
/// included). A longer one gets `431 Request Header Fields Too Large` and the close; so a
/// connection that never finishes its head holds at most this (plus one read).
pub const HTTP_HEAD_MAX: usize = 8 * 1024;

/// Headers of one request that `httparse` is given room for: 64, twice what a browser sends.
/// More get 431 too.
pub const HTTP_HEADERS_MAX: usize = 64;

/// `--http-head-timeout`: how long an HTTP connection has to send its whole request head.
/// A browser sends it in one packet; a slowloris client dribbles a header every few seconds
/// to hold a descriptor for ever. Ten seconds, like the TLS handshake, is far beyond any real
/// network's round trips.
pub const DEFAULT_HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Plaintext a TLS connection may have encrypted but not yet written: one full TLS record.
/// Output is encrypted only as the socket takes it, so everything else a TLS client is owed
/// stays in its write queue, shared with the other recipients and counted by `--max-output`.
pub const TLS_RECORDS_AHEAD: usize = 16 * 1024;

/// `--backplane-nick-ttl`: how long a nick's key lives in Redis unless its instance refreshes
/// it (every third of this). It is how long the nicks of an instance that died stay taken,
/// and how long a silent instance stays in the others' `/who`. Long enough that a busy
/// Redis or a stalled loop does not lose a live client's nick; short enough that a crashed
/// instance's users can have their nicks back when they reconnect elsewhere.
pub const DEFAULT_NICK_TTL: Duration = Duration::from_secs(15);

/// `--backplane-stream-len`: about how many events the backplane's Redis Stream keeps
/// (`XADD ... MAXLEN ~ N`). An instance cut off from Redis resumes without a gap if fewer
/// than this were added meanwhile, and a new one loads the rooms' history from them. 10,000
/// is socket.io's Redis Streams adapter's default too: at 1,000 events a second, ten seconds
/// of outage, in a few MiB of Redis memory (docs/scaling-out.md has the figure per entry).
pub const DEFAULT_STREAM_LEN: usize = 10_000;

/// How long a connect to Redis may take before the attempt counts as failed. Loopback or
/// a LAN answers in milliseconds; a silent host must not leave the backplane hanging.
pub const BACKPLANE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Wait before re-connecting to Redis after a failure: the first time, and at most. It
/// doubles in between, so a Redis restart is noticed within a few hundred milliseconds and a
/// long outage costs one attempt every few seconds.
pub const BACKPLANE_RETRY_FIRST: Duration = Duration::from_millis(100);
pub const BACKPLANE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Bytes waiting for Redis to read them before the backplane gives up on that connection and
/// re-opens it. Redis reads as fast as we write unless it is stuck; this bounds the memory
/// a stuck Redis can make the server hold (tens of thousands of events).
pub const BACKPLANE_MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// Most events kept to send again after the backplane's links drop (those Redis had not
/// confirmed, and those said while the reader catches up), and never more than
/// `--backplane-stream-len`: a few seconds of a busy cluster's chat, under 1 MiB. Past it the
/// oldest are dropped (logged once, counted): they would land long after the lines around
/// them anyway.
pub const BACKPLANE_MAX_RESEND: usize = 5_000;

/// Most bans held at once (the `bans-file`, the backplane's ban hash). Looking an address up
/// costs the same however many there are (`bans.rs`), so the bound is for memory and for
/// the file, rewritten whole on each change: 100,000 bans are a few MiB. A list longer than
/// that is a job for a firewall, not a chat server.
pub const MAX_BANS: usize = 100_000;

/// Bans `/bans` lists before saying how many more there are: its reply stays a screenful,
/// well under any client's `--max-output`.
pub const BANS_LISTED: usize = 50;

/// `/oper`: an address whose password was wrong waits this long before its next guess is
/// checked (a typo costs a second), and after `OPER_FAILURES` wrong ones, `OPER_LOCKOUT`.
/// Each check is one argon2 run on the loop's thread (some 20 ms), so these bound what
/// guessing costs everyone: 5 checks per address per 10 minutes.
pub const OPER_RETRY: Duration = Duration::from_secs(1);
pub const OPER_FAILURES: u32 = 5;
pub const OPER_LOCKOUT: Duration = Duration::from_secs(600);

/// `/oper`: addresses whose failures are counted (an IPv6 address by its /64). When all are
/// taken by addresses still locked out, a new address must wait too: many addresses guessing
/// at once get at most 256 × 5 checks per 10 minutes (some 2 ms of the loop per second),
/// rather than an unbounded map or an eviction that forgets their failures.
pub const OPER_ADDRESSES: usize = 256;
