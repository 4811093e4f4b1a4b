//! The unit tests of the library's modules tested through their public API, run from outside
//! the crate: one submodule per module, each using `pollchat::...` only.
//!
//! They lived in `#[cfg(test)]` modules beside the code. They moved here so that the server
//! library reads shorter (issue 20 counted the library with its unit tests), and
//! because what they test is reachable as any user of the crate reaches it. The first were
//! leaves: they use little or nothing else of the crate, and most of them (frames, the write
//! queue, the protocol, non-blocking I/O, RESP, framing) are used by the tools too
//! (`pollchat-bench`, `pollchat-connect`, the fuzz targets), so testing them through the API
//! those users see keeps that API sufficient. Others followed whose tests needed nothing
//! private either: HTTP heads and answers, the backplane's event format, the command line, the
//! Prometheus text, then the chat and its rooms (driven through the local bus). A test that
//! needs a private item stays beside its code.
//!
//! The submodules live in `tests/leaves/`; each is named with `#[path]`, since a test crate's
//! root looks for its modules in `tests/` itself, where cargo would take every file for a test
//! binary of its own.

#[path = "leaves/chat.rs"]
mod chat;

#[path = "leaves/websocket_frame.rs"]
mod websocket_frame;

#[path = "leaves/write_queue.rs"]
mod write_queue;

#[path = "leaves/nonblocking.rs"]
mod nonblocking;

#[path = "leaves/protocol.rs"]
mod protocol;

#[path = "leaves/rate_limit.rs"]
mod rate_limit;

#[path = "leaves/resp.rs"]
mod resp;

#[path = "leaves/timers.rs"]
mod timers;

#[path = "leaves/framing.rs"]
mod framing;

#[path = "leaves/http.rs"]
mod http;

#[path = "leaves/backplane_event.rs"]
mod backplane_event;

#[path = "leaves/cli.rs"]
mod cli;

#[path = "leaves/metrics.rs"]
mod metrics;

#[path = "leaves/notices.rs"]
mod notices;

#[path = "leaves/replica.rs"]
mod replica;

#[path = "leaves/tls_session.rs"]
mod tls_session;
