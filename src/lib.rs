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
//! - [`server`]: the event loop. Waits for readiness, reads, fires timers, and at the end of
//!   each batch of events flushes output and frees closed slots. Start reading here.
//! - [`connection`]: one client: its socket, its [`Phase`](connection::Phase) of life, why it
//!   closed, and the two system calls (`read`, `writev`) on its socket.
//! - [`framing`]: bytes into lines, `--max-line`, and sanitising (UTF-8, control characters).
//! - [`protocol`]: what a line means ([`protocol::Command`]) and all the text the server sends.
//! - [`room`]: who is here, nicks, and who receives what. Queues output; never writes.
//! - [`write_queue`]: a client's unsent output and the partial-write bookkeeping.
//! - [`rate_limit`]: the token bucket behind `--rate`.
//! - [`timers`]: deadlines kept in a heap and turned into the poll timeout.
//! - [`tls`]: TLS (rustls) between a connection's socket and its framer and write queue, in
//!   the same loop: the handshake, decrypting reads, encrypting as the socket takes output.
//! - [`stats`]: the loop's counters, reported as JSON on a UDP socket in the same poll.
//! - [`backplane`]: `--backplane`, several instances as one chat through Redis pub/sub: two
//!   Redis connections in the same loop (RESP encoder and incremental decoder, reconnects
//!   with backoff), the events instances exchange, nick claims in Redis, who is elsewhere.
//! - [`config`], [`limits`]: the command line, and every bound with its reason.
//! - [`os`]: listening sockets and the open-file limit.
//! - [`logging`], [`error`]: log set-up, and the few errors that stop the server.
//! - [`bench`](mod@bench): `pollchat bench`, the load generator (not part of the server: it has threads).
//! - [`client`]: `pollchat connect`, a terminal client built like the server: one poll loop
//!   over stdin and the socket, TLS (rustls) between its write queue and the socket.
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

#![forbid(unsafe_code)]

pub mod backplane;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod connection;
pub mod error;
pub mod framing;
pub mod limits;
pub mod logging;
pub mod nonblocking;
pub mod os;
pub mod protocol;
pub mod rate_limit;
pub mod room;
pub mod server;
pub mod stats;
pub mod timers;
pub mod tls;
pub mod write_queue;

pub use config::Config;
pub use error::Error;
pub use server::{Server, ShutdownHandle};
