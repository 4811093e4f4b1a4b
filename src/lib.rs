//! pollchat: a chat server for `nc` and `telnet` clients, written as a readable example of a
//! single-threaded, non-blocking, readiness-polling server.
//!
//! One thread runs one `mio::Poll` loop. The listener, every client socket and the signal
//! pipe are registered in it. Each client has a read buffer that frames lines and a write
//! queue that survives partial writes. A chat line is allocated once and shared by every
//! recipient's queue.
//!
//! # Map of the crate
//!
//! The loop knows connections and transports; the chat and its rooms know chat; the bus
//! knows where a line goes. Start with [`server`], then [`table`], then [`chat`] and
//! [`room`].
//!
//! - [`server`]: the event loop. Waits for readiness, accepts (`Listeners`), reads and relays
//!   (`Clients`), hands the chat's requests to the bus (`Hub`), fires timers, and at the end
//!   of each batch flushes output and frees closed slots.
//! - [`table`]: the connection table: the slab whose keys are the tokens, the flush and ready
//!   lists, phase changes, deferred removal. Every non-blocking mechanism of the plain path
//!   is here or in [`connection`].
//! - [`connection`]: one client: its socket and transport, its read side (line framer, flood
//!   control) and write side (queue, interest), its [`Phase`](connection::Phase) and why it
//!   closed.
//! - [`transport`]: what sits between a socket and its lines, in two layers: a byte stream
//!   (plain TCP, or TLS with rustls in the same loop: [`transport::tls`]) carrying a protocol
//!   (the chat's lines, or an HTTP request in [`transport::web`], then a
//!   [`transport::websocket`] client or an answer and the close). Any stream carries any
//!   protocol: `--https-bind` is TLS carrying HTTP.
//! - [`http`]: HTTP/1.1 request heads (`httparse`), the routes, the responses, the WebSocket
//!   accept key, and the chat page built into the binary.
//! - [`nonblocking`]: the rules of non-blocking I/O, each written once: read outcomes, partial
//!   writes, finished connects, the interest rule, the rustls writer. Everything uses it.
//! - [`framing`]: bytes into lines, `--max-line`, and sanitising (UTF-8, control characters).
//! - [`telnet`]: the Telnet commands a `telnet` client sends among its text (Ctrl-C, option
//!   negotiation), taken out before the framer and answered.
//! - [`write_queue`]: a client's unsent output and the partial-write bookkeeping.
//! - [`chat`]: who is here under which nick, in which room, and what each event means for
//!   them; rooms come and go with their members. Never sees a socket.
//! - [`room`]: one room: its members in order, its notices, its history, and the
//!   [`Outbox`](room::Outbox) through which all output is queued.
//! - [`cmd`]: what each command does, one file per command.
//! - [`bans`]: who may not be here (a nick, an address, a CIDR range) and until when, and the
//!   `bans-file`; `/ban` makes a ban an event, and the chat applies it (`chat/moderation.rs`).
//! - [`operators`]: the operators (`/oper`, argon2 hashes), who is one now, and the limit on
//!   guessing their passwords.
//! - [`notices`]: join and leave notices, said at the end of the batch and summarized in a
//!   burst, so a connection storm cannot make every member pay for every connection.
//! - [`protocol`]: what a line means ([`protocol::Command`]) and all the text the server sends.
//! - [`state`]: `--state-dir`, the rooms' history and topics kept in a file that outlives the
//!   process: appended once per batch, synced by `--fsync`, compacted, loaded with care.
//! - [`bus`]: the seam between the chat and the backplane: where an event goes.
//! - [`backplane`]: `--backplane`, the Redis bus: several instances as one chat through Redis
//!   pub/sub, its two connections driven in the same loop.
//! - [`rate_limit`]: the token bucket behind `--rate`.
//! - [`timers`]: deadlines kept in a heap and turned into the poll timeout.
//! - [`stats`]: the loop's counters, and the `--stats-udp` socket that reports them;
//!   [`metrics`]: the same figures for Prometheus (`/metrics`).
//! - [`config`], [`limits`]: what the server runs with, and every bound with its reason.
//! - [`cli`]: the command line, turned into a [`Config`]; [`config_file`]: its `--config` file.
//! - [`os`]: listening sockets and the open-file limit.
//! - [`logging`], [`error`]: log set-up (the log is written by the loop, never blocking it),
//!   and the few errors that stop the server.
//! - [`connlog`]: per-connection log lines on a budget, summarized in a storm.
//! - [`memory`]: giving freed memory back to the operating system once a spike is over.
//!
//! # The server, and the tools beside it
//!
//! This library is the server and nothing else. The two tools that come with it are binaries
//! of their own, each with its modules in its own directory under `src/bin/`, and they are not
//! in these docs (`cargo doc` documents them as crates of their own):
//!
//! - `pollchat-bench` (`src/bin/pollchat-bench/`): the load generator and the chaos run, with
//!   threads, latency histograms and some 7,400 lines of checks and reports. None of that is
//!   how the server works, and it was the biggest part of this crate.
//! - `pollchat-connect` (`src/bin/pollchat-connect/`): a terminal client built like the
//!   server: one poll loop over stdin and the socket, TLS (rustls) between its write queue
//!   and the socket. The chaos run's TLS clients share its `tls.rs` (see that file).
//!
//! They use this library the way any program would, and only its leaf modules: the rules of
//! [`nonblocking`] I/O, [`framing`] (and the [`telnet`] parser it runs), the [`write_queue`], RESP ([`backplane::resp`]),
//! WebSocket frames ([`transport::websocket::frame`]), the protocol's text and bounds
//! ([`protocol`], [`limits`]) and the wording of I/O errors ([`error`]). None of these imports
//! anything of the server's but each other, so each reads on its own.
//!
//! Why binaries and not modules behind a feature: a binary's modules cannot be reached from
//! the library, so the boundary is the compiler's, not a convention; `src/bin/` is where a
//! reader, and cargo, looks for programs; and each program's `--help` is about that program.
//! They used to be `pollchat bench` and `pollchat connect`; the server's binary does not run
//! them for you (`pollchat bench` says where it went), because it would have to run whatever
//! file sits beside it, which under `cargo run` can be a stale build. The `tools` feature, on
//! by default, only keeps the tools' dependencies (`hdrhistogram`, `webpki-roots`,
//! `rustls-webpki`) out of a server built with `--no-default-features`.
//!
//! # Glossary
//!
//! - **Readiness**: the kernel's word that a socket can be read or written without blocking.
//!   A readiness loop asks "which sockets are ready?" rather than waiting on one socket.
//! - **Token**: the number a socket is registered under; events carry it back. Here a
//!   client's token is its key in the connection `Slab`.
//! - **Interest**: what a socket is registered for: readable, writable, or both. pollchat
//!   asks for writable only while a client has output stuck behind a full send buffer.
//! - **WouldBlock**: the answer of a non-blocking call that would have had to wait: "not
//!   ready, come back when I say so". It is not an error.
//! - **Edge-triggered**: an event is reported when readiness *changes* (new data arrived),
//!   not for as long as it lasts. Hence the rule: after an event, read (or write) until
//!   `WouldBlock`, or remember yourself that the socket may still be ready.
//! - **Draining**: reading a socket until `WouldBlock`, so no new edge is needed.
//! - **Spurious event**: an event for a socket that turns out not to be ready, or for a token
//!   that is gone. mio allows them; the loop must shrug them off.
//! - **Partial write**: a `write` that takes only some of the bytes offered because the
//!   socket's send buffer filled up. The rest must be kept, in order, for later.
//! - **Batch**: the events one `poll` call returns, handled together before the next wait.

// No unsafe code but two glibc calls, each allowed where it is made and proved sound there
// (src/memory.rs).
#![deny(unsafe_code)]

pub mod backplane;
pub mod bans;
pub mod bus;
pub mod chat;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod connlog;
pub mod error;
pub mod framing;
pub mod http;
pub mod limits;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod nonblocking;
pub mod notices;
pub mod operators;
pub mod os;
pub mod protocol;
pub mod rate_limit;
pub mod room;
pub mod server;
pub mod state;
pub mod stats;
pub mod table;
pub mod telnet;
pub mod timers;
pub mod transport;
pub mod write_queue;

pub use config::Config;
pub use error::Error;
pub use server::{Server, ShutdownHandle};
