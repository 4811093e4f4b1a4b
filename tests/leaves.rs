//! The unit tests of the library's leaf modules, run from outside the crate: one submodule per
//! leaf, each testing it through its public API (`pollchat::...`) only.
//!
//! They lived in `#[cfg(test)]` modules beside the code. They moved here so that the server
//! library reads shorter, and because these modules are leaves that the tools
//! (`pollchat-bench`, `pollchat-connect`, the fuzz targets) use too: testing them through the
//! API those users see keeps that API sufficient. A test that needs a private item stays
//! beside its code.
//!
//! The submodules live in `tests/leaves/`; each is named with `#[path]`, since a test crate's
//! root looks for its modules in `tests/` itself, where cargo would take every file for a test
//! binary of its own.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

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
