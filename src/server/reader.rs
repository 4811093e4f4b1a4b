//! The read path: a readable client is read until it has no more or until its
//! [`READ_BUDGET`] is spent (why a budget: see there), and each whole line it sent is handed
//! to the chat, in order, as flood control allows.
//!
//! "Until it has no more" is usually a read that says `WouldBlock`. But a plain socket that
//! returns fewer bytes than it was asked for had no more *at that moment*, and data that
//! arrives later raises a new edge (epoll(7) says so for stream sockets). So after a fresh
//! event, a short read may end the reading without one more `read` only to hear
//! `WouldBlock`. When it may is the batching rule, decided by measuring two loads:
//!
//! - **An interactive sender** (people, the paced latency load: 100 clients × 10 lines/s):
//!   each read brings one line, and the read after it almost always says `WouldBlock`
//!   (5,988 `recvfrom` in 3 s, 2,994 of them `EAGAIN`). A short read of **one line** ends
//!   the reading: that read is saved.
//! - **A streaming sender** (a fan-out to 1,000, one `write` per line as `nc` sends): a read
//!   brings the 30-odd lines that came while the last batch was written, and relaying them
//!   to 1,000 queues takes long enough for as many more to arrive. Stopping at the short
//!   read cut every batch in half (31 lines per `writev` instead of 64, and 0.62× the
//!   deliveries/s, since per-`writev` kernel work is most of a fan-out's cost). So a short
//!   read that brought **two lines or more** is followed by one more read: it costs one
//!   `recvfrom` per batch when nothing came, and doubles the batch when something did.
//!
//! Two cases always read until the socket says so. The event said the peer closed (or the
//! socket failed): data and FIN arriving together raise one event, and the end, already
//! there, raises none of its own. Or there was no fresh event (the ready list, flood
//! control's timer): what the last event said is not known.
//!
//! The reading is done by [`Clients`]: the connections and what happens to them between
//! their reads and their writes (the chat, the bus, the timers they set). The loop hands it
//! each client's events; the listeners hand it the clients they accept; step 5 flushes what
//! it queued.

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info, warn};

use super::gauges;
use super::hub::Hub;

/// What the loop knows of the readiness it is reading on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// An event just said the socket is readable; `closing` if it also said the peer closed
    /// or the socket failed.
    Fresh { closing: bool },
    /// No event: the socket is read again because a budget or flood control stopped it.
    Unknown,
}

use crate::bus::BusNews;
use crate::cmd;
use crate::config::Config;
use crate::connection::{CloseReason, ConnRef, News, Next, Phase, Read};
use crate::connlog::Kind;
use crate::framing::Frame;
use crate::http;
use crate::limits::{READ_BUDGET, READ_CHUNK};
use crate::metrics;
use crate::protocol;
use crate::table::ConnTable;
use crate::timers::{Timer, Timers};
use crate::transport::{Answer, HTTP_ON_CHAT_PORT, Handshake};

/// The clients, from their reads to their writes.
pub(super) struct Clients {
    pub table: ConnTable,
    /// The chat and its bus (`hub.rs`).
    pub hub: Hub,
    pub timers: Timers,
    /// Every `read` lands here first; a connection keeps only its unfinished line.
    pub scratch: Box<[u8]>,
    pub config: Config,
    /// Where the chat page is (`--http-bind`), for a browser that came to the chat port;
    /// `None` once the listeners are closed.
    pub page: Option<SocketAddr>,
}

impl Clients {
    pub fn new(config: Config, hub: Hub, page: Option<SocketAddr>) -> Clients {
        Clients {
            table: ConnTable::new(&config),
            hub,
            timers: Timers::default(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            config,
            page,
        }
    }

    /// What the bus reported, to the chat (see [`Hub::absorb`]).
    pub fn absorb(&mut self, news: Vec<BusNews>) {
        self.hub.absorb(news, &mut self.table, &mut self.timers);
    }

    /// Reads a client's input and hands its lines to the chat until the socket has no more
    /// (see the module documentation for how that is known), the read budget is spent, flood
    /// control says wait, or the client is gone.
    pub(super) fn serve_reader(&mut self, r: ConnRef, now: Instant, edge: Edge) {
        let mut budget = READ_BUDGET;
        let mut emptied = false;
        loop {
            let Some(lines) = self.relay_lines(r, now) else {
                return;
            };
            // The batching rule (module documentation): a short read ends the reading only if
            // it brought at most one line.
            if emptied && lines <= 1 {
                return;
            }
            if budget == 0 {
                self.table.lists.read_again(r);
                return;
            }
            let Some(read) = self.table.read(r, &mut self.scratch, now) else {
                return;
            };
            match read {
                Read::Bytes {
                    n,
                    emptied: short,
                    news,
                    ..
                } => {
                    budget = budget.saturating_sub(n);
                    emptied = short && edge == (Edge::Fresh { closing: false });
                    if let Some(news) = news {
                        self.news(r, news, now);
                    }
                }
                Read::Drained => return,
                Read::Ended => return self.peer_closed(r),
                Read::Failed(reason) => {
                    match &reason {
                        CloseReason::Rejected(_) => {
                            if self.table.may_log(Kind::Refused, r) {
                                info!("{}: {reason}", self.label(r));
                            }
                        }
                        _ => debug!("token {}: read failed: {reason}", r.token),
                    }
                    if matches!(&reason, CloseReason::Rejected(why) if why.kind == HTTP_ON_CHAT_PORT)
                    {
                        return self.not_for_chat(r, reason);
                    }
                    return self.hub.end(r, reason, &mut self.table);
                }
            }
        }
    }

    /// Hands the framer's complete lines to the chat, one token of flood control each.
    /// Returns how many it handed over, or `None` when the loop must stop reading this
    /// client for now.
    fn relay_lines(&mut self, r: ConnRef, now: Instant) -> Option<usize> {
        let mut lines = 0;
        loop {
            match self.table.next_line(r, now) {
                Next::Line(frame) => {
                    self.relay(r, frame);
                    lines += 1;
                }
                Next::ReadMore => return Some(lines),
                Next::Throttled { until, first } => {
                    if first && self.table.may_log(Kind::Limit, r) {
                        warn!(
                            "{}: over {} lines/s, reading it more slowly",
                            self.label(r),
                            self.config.rate
                        );
                    }
                    self.timers.add(until, Timer::RateLimit(r));
                    return None;
                }
                Next::Stop => return None,
            }
        }
    }

    /// One line to the chat: the command it is, done.
    fn relay(&mut self, r: ConnRef, frame: Frame) {
        self.table.stats.lines_in += 1;
        match frame {
            Frame::Line(line) => {
                cmd::handle_line(&mut self.hub.chat, r, line, &*self.hub.bus, &mut self.table);
            }
            Frame::TooLong => {
                let max_line = self.config.max_line;
                if self.table.may_log(Kind::Limit, r) {
                    warn!("{}: line over {max_line} bytes dropped", self.label(r));
                }
                let text = protocol::line_too_long(max_line);
                self.hub.chat.tell(r, &text, &mut self.table);
            }
        }
        self.hub.forward(&mut self.table);
    }

    /// The client's first line was an HTTP request: one line says this is not a web server
    /// (and where the page is, with `--http-bind`), and it leaves. The request is relayed to
    /// nobody and kept in no history.
    fn not_for_chat(&mut self, r: ConnRef, reason: CloseReason) {
        let text = protocol::not_a_web_server(self.page);
        self.hub.chat.tell(r, &text, &mut self.table);
        self.hub.leave(r, reason, &mut self.table);
    }

    /// The peer will send no more, but it may still read: it gets what it is owed
    /// (`printf '/who\n' | nc -N` must print the answer), then it is closed. One that gave up
    /// before its handshake was over is owed nothing.
    fn peer_closed(&mut self, r: ConnRef) {
        let Some(conn) = self.table.get_mut(r) else {
            return;
        };
        if *conn.phase() == Phase::Handshaking {
            // (A handshake that finished in the read that brought the end was handled on that
            // read's data: see `Session::read`.)
            return self.table.close(r, CloseReason::PeerClosed);
        }
        if let Some(frame) = conn.last_line() {
            self.relay(r, frame);
        }
        self.hub.leave(r, CloseReason::PeerClosed, &mut self.table);
    }

    /// What a read brought besides bytes (see [`News`]): the one place the layers around the
    /// chat's lines show themselves on the read path.
    fn news(&mut self, r: ConnRef, news: News, now: Instant) {
        let handshake_done = news.handshake_done;
        if let Err(reason) = self.table.news(r, news) {
            return self.hub.end(r, reason, &mut self.table);
        }
        if handshake_done {
            self.handshake_done(r, now);
        }
    }

    /// A connection's transport finished its handshake: it joins the chat like a plain client
    /// just accepted (or is told, through its transport, why not), or, if it asked for
    /// something else (an HTTP request), it is answered.
    fn handshake_done(&mut self, r: ConnRef, now: Instant) {
        let Some(conn) = self.table.get(r) else {
            return;
        };
        match conn.handshake() {
            Handshake::Underway => {}
            Handshake::Done => {
                debug!(
                    "{}: {} handshake done ({})",
                    conn.peer(),
                    conn.transport_name(),
                    conn.describe_transport()
                );
                (self.hub).join(r, now, &mut self.table, &mut self.timers);
            }
            Handshake::Answer(answer) => self.answer(r, answer),
        }
    }

    /// An HTTP connection asked for something other than the chat: it is answered (the
    /// counters rendered here, where they are), then closed. It never joins.
    fn answer(&mut self, r: ConnRef, answer: Answer) {
        let (status, bytes) = match answer {
            Answer::Ready { status, bytes } => (status, bytes),
            Answer::Metrics { head_only } => (200, http::metrics(&self.metrics(), head_only)),
        };
        self.table.stats.count_http(status);
        if let Some(conn) = self.table.get(r) {
            let (peer, request) = (conn.peer(), conn.describe_transport());
            match status {
                431 if self.table.may_log(Kind::Limit, r) => {
                    warn!("{peer}: HTTP request head over the limit, answered {status}");
                }
                400..500 if self.table.may_log(Kind::Refused, r) => {
                    info!("{peer}: HTTP {request} answered {status}");
                }
                _ => debug!("{peer}: HTTP {request} answered {status}"),
            }
        }
        self.table
            .send_off(r, CloseReason::Answered(status), &bytes);
    }

    /// The counters and gauges in Prometheus's text format, for `/metrics`.
    fn metrics(&self) -> String {
        let gauges = gauges(&self.table, &self.hub.chat, &*self.hub.bus);
        metrics::render(&self.table.stats, &gauges)
    }

    /// How logs name `r`.
    fn label(&self, r: ConnRef) -> String {
        self.table
            .get(r)
            .map_or_else(|| format!("token {}", r.token), |c| c.label().to_string())
    }
}
