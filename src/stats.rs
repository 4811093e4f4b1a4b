//! Counters the loop keeps about itself, and the `--stats-udp` socket that reports them.
//!
//! A datagram socket sits in the same poll as the stream sockets: a datagram `stats` gets
//! one JSON datagram back. Scripts and the load generator read the server's counters this
//! way without taking a chat slot, and without the server running anything beside its loop.
//! UDP replies are best effort: one that the socket cannot send at once is dropped (the
//! asker times out and asks again), because the loop never waits.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::connection::{CloseReason, Connection};
use crate::nonblocking::WriteCalls;

/// Counts since the server started.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    /// Connections accepted (refused ones included).
    pub connections_total: u64,
    /// Lines read from clients (commands included).
    pub lines_in: u64,
    /// Lines queued for clients: every delivery of a chat line, and every server line.
    pub lines_out: u64,
    /// Bytes read from client sockets.
    pub bytes_in: u64,
    /// Bytes written to client sockets.
    pub bytes_out: u64,
    /// Write system calls on client sockets (one `writev` carries a batch of lines) and the
    /// bytes they passed, framing and encryption included: `lines_out / writes.calls` is the
    /// server's batching, the main lever on fan-out.
    pub writes: WriteCalls,
    /// Times accepting paused for lack of descriptors.
    pub accept_pauses: u64,
    /// Connections closed, by reason (see `CloseReason::kind`).
    pub disconnects: BTreeMap<&'static str, u64>,
    /// Of those, the ones that had a slot, by reason and transport: a test or an operator
    /// tells a TLS client cut off as too slow from a plain one without reading the log, whose
    /// per-connection lines a storm may hold back (`connlog.rs`).
    pub disconnects_by_transport: BTreeMap<(&'static str, &'static str), u64>,
    /// HTTP requests answered and closed (`--http-bind`; upgrades are not), by status.
    pub http_responses: BTreeMap<u16, u64>,
    /// Reloads (SIGHUP) by result, `ok` or `error`, both listed from the start.
    pub reloads: BTreeMap<&'static str, u64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            started: Instant::now(),
            connections_total: 0,
            lines_in: 0,
            lines_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            writes: WriteCalls::default(),
            accept_pauses: 0,
            disconnects: BTreeMap::new(),
            disconnects_by_transport: BTreeMap::new(),
            http_responses: BTreeMap::new(),
            reloads: BTreeMap::from([("error", 0), ("ok", 0)]),
        }
    }
}

/// What only the loop knows at the moment it is asked: how much it holds now. Reported with
/// the counters, by `--stats-udp` and by `/metrics` alike.
#[derive(Debug)]
pub struct Gauges {
    /// Every socket the server holds, in any phase.
    pub connections_now: usize,
    /// Clients in the chat.
    pub clients: usize,
    /// Clients in the chat by transport (`plain`, `TLS`, `WebSocket`, `WebSocket over TLS`).
    pub clients_by_transport: BTreeMap<&'static str, usize>,
    /// Rooms this instance keeps, `#lobby` included.
    pub rooms: usize,
    /// The bus's own counters (`--backplane`), as JSON.
    pub backplane: Option<Box<RawValue>>,
    /// Moderation actions since the start, by kind (the chat counts them: `chat/moderation.rs`).
    pub moderation: BTreeMap<&'static str, u64>,
    /// `--state-dir`'s journal, if it is on (`state/`).
    pub state: Option<crate::state::Stats>,
}

/// The reply to `stats`, field by field in the order it is sent.
#[derive(Serialize)]
struct Report<'a> {
    uptime_secs: f64,
    connections_now: usize,
    clients: usize,
    clients_by_transport: &'a BTreeMap<&'static str, usize>,
    rooms: usize,
    connections_total: u64,
    lines_in: u64,
    lines_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    write_calls: u64,
    write_call_bytes: u64,
    accept_pauses: u64,
    disconnects: &'a BTreeMap<&'static str, u64>,
    http_responses: &'a BTreeMap<u16, u64>,
    reloads: &'a BTreeMap<&'static str, u64>,
    moderation: &'a BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backplane: Option<&'a RawValue>,
}

/// Clients in the chat, counted by their transport's name (for the stats and `/metrics`):
/// one walk over the connections, made only when someone asks.
pub fn clients_by_transport<'a>(
    conns: impl Iterator<Item = &'a Connection>,
) -> BTreeMap<&'static str, usize> {
    conns
        .filter(|c| c.is_chatting())
        .fold(BTreeMap::new(), |mut counts, conn| {
            *counts.entry(conn.transport_name()).or_insert(0) += 1;
            counts
        })
}

impl Stats {
    pub fn count_disconnect(&mut self, reason: &CloseReason) {
        *self.disconnects.entry(reason.kind()).or_insert(0) += 1;
    }

    /// A connection that had a slot closed: counted by reason, and by reason and transport.
    pub fn count_closed(&mut self, reason: &CloseReason, transport: &'static str) {
        self.count_disconnect(reason);
        *self
            .disconnects_by_transport
            .entry((reason.kind(), transport))
            .or_insert(0) += 1;
    }

    /// A connection closed as it was accepted, before it had a slot.
    pub fn count_turned_away(&mut self, reason: &CloseReason) {
        self.connections_total += 1;
        self.count_disconnect(reason);
    }

    pub fn count_http(&mut self, status: u16) {
        *self.http_responses.entry(status).or_insert(0) += 1;
    }

    /// Seconds since the server started, to the millisecond.
    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_millis() as f64 / 1000.0
    }

    /// The report: these counters plus what the loop holds now, and the bus's counters if it
    /// has any.
    pub fn json(&self, gauges: &Gauges) -> String {
        let report = Report {
            uptime_secs: self.uptime_secs(),
            connections_now: gauges.connections_now,
            clients: gauges.clients,
            clients_by_transport: &gauges.clients_by_transport,
            rooms: gauges.rooms,
            connections_total: self.connections_total,
            lines_in: self.lines_in,
            lines_out: self.lines_out,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            write_calls: self.writes.calls,
            write_call_bytes: self.writes.bytes,
            accept_pauses: self.accept_pauses,
            disconnects: &self.disconnects,
            http_responses: &self.http_responses,
            reloads: &self.reloads,
            moderation: &gauges.moderation,
            backplane: gauges.backplane.as_deref(),
        };
        serde_json::to_string(&report).unwrap_or_else(|e| error_json(&e.to_string()))
    }
}

/// `{"error": ...}`, for a datagram that is not `stats`.
fn error_json(text: &str) -> String {
    serde_json::json!({ "error": text }).to_string()
}

/// `--stats-udp`: the UDP socket in the loop's poll.
#[derive(Debug)]
pub struct StatsSocket {
    socket: UdpSocket,
}

impl StatsSocket {
    pub fn bind(addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<StatsSocket> {
        let mut socket = UdpSocket::bind(addr)?;
        registry.register(&mut socket, token, Interest::READABLE)?;
        Ok(StatsSocket { socket })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Reads datagrams until `WouldBlock` (edge-triggered, as for any socket) and answers each
    /// `stats` with `report()`. A reply the socket cannot take at once is dropped: the asker
    /// asks again, and the loop never waits.
    pub fn answer(&self, scratch: &mut [u8], report: impl Fn() -> String) {
        loop {
            let (n, from) = match self.socket.recv_from(scratch) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("stats socket: {e}");
                    return;
                }
            };
            let reply = if scratch[..n].trim_ascii() == b"stats" {
                report()
            } else {
                error_json("send the datagram stats")
            };
            if let Err(e) = self.socket.send_to(reply.as_bytes(), from) {
                debug!("stats reply to {from} dropped: {e}");
            }
        }
    }
}
