//! The connection table: every connection the loop holds, keyed by its token, and the
//! non-blocking bookkeeping around them. Read this next to mio's `examples/tcp_server.rs`.
//!
//! - **Tokens are slab keys.** A connection is registered with the poll under the key its
//!   slot will have ([`slab::VacantEntry::key`]) before it is inserted there, so an event's
//!   token finds its connection in O(1).
//! - **Phase changes happen here**, through the transitions `connection/mod.rs` allows: admitted
//!   to the room, leaving, closed.
//! - **Two lists with their own "already listed" rule** ([`Listed`]): the flush list
//!   (connections with new output, written once each at the end of the batch) and the ready
//!   list (connections whose read budget ran out before `WouldBlock`).
//! - **Removal is deferred to the end of the batch.** Tokens are slab keys, and the slab
//!   reuses a freed key for the next connection. If a client were removed in the middle of a
//!   batch and a new one accepted later in the same batch took its key, an event still
//!   waiting in the batch for the old client would be handled as the new client's. So a
//!   connection that ends is only marked `Closed`, events for a closed token are ignored, and
//!   [`ConnTable::reap`] frees the slots (and deregisters the sockets) once the batch is done.
//!   Anything that outlives a batch (timers, the ready list, the room) names a connection by
//!   [`ConnRef`], token and unique id, so a reused slot is never mistaken for the old one.
//!
//! The table also implements the room's [`Outbox`]: what the room queues lands here.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, trace, warn};
use mio::net::TcpStream;
use mio::{Registry, Token};
use slab::Slab;

use crate::config::Config;
use crate::connection::{CloseReason, ConnRef, Connection, Flood, Flush, Next, Phase, Read};
use crate::connlog::{ConnLog, Kind};
use crate::framing::Frame;
use crate::limits::{HARD_OUTPUT_FACTOR, LINGER};
use crate::room::Outbox;
use crate::stats::Stats;
use crate::timers::{Timer, Timers};
use crate::transport::Transport;

/// Connections to visit later, each at most once however often it is added: the list keeps
/// its own "already listed" rule, one flag per token.
///
/// A list is taken whole once per batch and handed back when visited ([`Listed::recycle`]),
/// so the two vectors swap and keep their capacity: listing costs no allocation per batch.
#[derive(Debug, Default)]
pub struct Listed {
    order: Vec<ConnRef>,
    listed: Vec<bool>,
    /// The vector of the last list taken, emptied, to hold the next one.
    spare: Vec<ConnRef>,
}

impl Listed {
    /// Lists `r` unless it is listed already. Inline: every delivery lists its recipient for
    /// the flush.
    #[inline]
    pub fn add(&mut self, r: ConnRef) {
        if r.token >= self.listed.len() {
            self.listed.resize(r.token + 1, false);
        }
        if !self.listed[r.token] {
            self.listed[r.token] = true;
            self.order.push(r);
        }
    }

    /// Everything listed, oldest first; the list starts empty again. Hand the vector back
    /// with [`Listed::recycle`] once visited.
    pub fn take(&mut self) -> Vec<ConnRef> {
        for r in &self.order {
            self.listed[r.token] = false;
        }
        let next = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.order, next)
    }

    /// A taken list, visited: its vector holds the next list taken.
    pub fn recycle(&mut self, mut visited: Vec<ConnRef>) {
        visited.clear();
        if visited.capacity() > self.spare.capacity() {
            self.spare = visited;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// A slot was freed: a new connection in it may be listed (an entry left for the old one
    /// is stale, and skipped by its id).
    fn forget(&mut self, token: usize) {
        if let Some(flag) = self.listed.get_mut(token) {
            *flag = false;
        }
    }
}

/// The connection `r` names, if its slot still holds it (a field's borrow, so the table's
/// other fields stay usable beside it).
fn live_mut(conns: &mut Slab<Connection>, r: ConnRef) -> Option<&mut Connection> {
    conns.get_mut(r.token).filter(|c| c.id() == r.id)
}

/// The limits the table enforces, from the configuration.
#[derive(Debug, Clone)]
struct Limits {
    max_line: usize,
    max_output: usize,
    /// Eight times `--max-output`: past it a client is cut off at once.
    hard_output: usize,
    output_grace: Duration,
    /// `None` when flood control is off (`--rate 0`).
    flood: Option<Flood>,
}

/// Every connection the server holds. See the module documentation.
#[derive(Debug)]
pub struct ConnTable {
    conns: Slab<Connection>,
    /// Connections with output to write at the end of this batch.
    flush: Listed,
    /// Connections that spent their write budget with more to write: flushed next turn.
    flush_next: Listed,
    /// Connections whose read budget ran out with input left: served again next turn.
    ready: Listed,
    /// Connections read from or whose write queue was drained in this round or the last (the
    /// busy ones, whose framers and queues keep their room): asked at the end of each round
    /// ([`ConnTable::release_buffers`]).
    active: Listed,
    /// Tokens in [`Phase::Closed`], to be removed by [`ConnTable::reap`].
    closed: Vec<usize>,
    /// Connections per client address, for `--max-per-ip`: counted from admission until the
    /// slot is freed (a leaving client still holds its descriptor). Addresses with none are
    /// removed, so the map holds only addresses connected now.
    per_address: HashMap<IpAddr, usize>,
    /// Connections in [`Phase::Handshaking`]: held, but not in the room yet.
    handshaking: usize,
    next_id: u64,
    limits: Limits,
    /// The loop's counters: the table sees every byte, line and disconnect.
    pub stats: Stats,
    /// Per-connection log lines, on a budget.
    pub log: ConnLog,
}

impl ConnTable {
    pub fn new(config: &Config) -> ConnTable {
        ConnTable {
            conns: Slab::new(),
            flush: Listed::default(),
            flush_next: Listed::default(),
            ready: Listed::default(),
            active: Listed::default(),
            closed: Vec::new(),
            per_address: HashMap::new(),
            handshaking: 0,
            next_id: 1,
            limits: Limits {
                max_line: config.max_line,
                max_output: config.max_output,
                hard_output: config.max_output.saturating_mul(HARD_OUTPUT_FACTOR),
                output_grace: config.output_grace,
                flood: (config.rate > 0.0).then_some(Flood {
                    rate: config.rate,
                    burst: config.burst,
                }),
            },
            stats: Stats::default(),
            log: ConnLog::new(Instant::now()),
        }
    }

    /// Connections held, in any phase.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections whose transport handshake is under way.
    pub fn handshaking(&self) -> usize {
        self.handshaking
    }

    /// Admitted connections from `addr` not yet removed.
    pub fn connections_from(&self, addr: IpAddr) -> usize {
        self.per_address.get(&addr).copied().unwrap_or(0)
    }

    /// The connection a [`ConnRef`] names, if it is still that connection.
    pub fn get(&self, r: ConnRef) -> Option<&Connection> {
        self.conns.get(r.token).filter(|c| c.id() == r.id)
    }

    fn get_mut(&mut self, r: ConnRef) -> Option<&mut Connection> {
        live_mut(&mut self.conns, r)
    }

    /// The connection behind an event's token, unless it is gone or closed: an event for a
    /// token with no connection is spurious (mio allows them), and one for a closed
    /// connection is the reason slots are freed only at the end of the batch.
    pub fn live(&self, token: usize) -> Option<ConnRef> {
        let conn = self.conns.get(token)?;
        (!conn.is_closed()).then(|| conn.conn_ref(token))
    }

    /// Registers an accepted socket under the token its slot will have, and holds it in
    /// `Handshaking`. `None` (logged) if it cannot be registered.
    pub fn insert(
        &mut self,
        mut socket: TcpStream,
        peer: SocketAddr,
        transport: Transport,
        registry: &Registry,
        now: Instant,
    ) -> Option<ConnRef> {
        // Without TCP_NODELAY, Nagle's algorithm holds back a small write until the previous
        // one is acknowledged, and delayed ACKs make that ~40 ms per line.
        if let Err(e) = socket.set_nodelay(true) {
            debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = Connection::register(&mut socket, registry, Token(token)) {
            warn!("{peer}: cannot register connection: {e}");
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.stats.connections_total += 1;
        let conn = Connection::new(id, socket, peer, transport, self.limits.max_line, now);
        entry.insert(conn);
        self.handshaking += 1;
        Some(ConnRef { token, id })
    }

    /// Into the room's phase: `Chatting`, counted for its address. False if it is not
    /// handshaking any more.
    pub fn admit(&mut self, r: ConnRef) -> bool {
        let Some(conn) = self.get_mut(r) else {
            return false;
        };
        if !conn.start_chatting() {
            return false;
        }
        let ip = conn.peer().ip();
        self.handshaking -= 1;
        *self.per_address.entry(ip).or_insert(0) += 1;
        true
    }

    /// Told why it may not join (`line`), and closed once that line is out. It never joined,
    /// so nobody else hears of it.
    pub fn refuse(&mut self, r: ConnRef, reason: CloseReason, line: &str) {
        self.send_off(r, reason, &Rc::from(line.as_bytes()));
    }

    /// An HTTP request that is not for the chat: its answer queued as it is (the page is one
    /// buffer shared by every request), and closed once that is out. It never joins.
    pub fn answer(&mut self, r: ConnRef, status: u16, answer: &Rc<[u8]>) {
        self.send_off(r, CloseReason::Answered(status), answer);
    }

    /// Out of its handshake and leaving, with `last` as the last thing it is sent.
    fn send_off(&mut self, r: ConnRef, reason: CloseReason, last: &Rc<[u8]>) {
        let Some(conn) = self.get_mut(r) else {
            return;
        };
        let was_handshaking = *conn.phase() == Phase::Handshaking;
        if conn.start_leaving(reason) {
            self.handshaking -= usize::from(was_handshaking);
            let _ = self.send(r, last);
        }
    }

    /// Clients in the chat, counted by their transport's name (for the stats and
    /// `/metrics`): one walk over the table, made only when someone asks.
    pub fn clients_by_transport(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for (_, conn) in self.conns.iter().filter(|(_, c)| c.is_chatting()) {
            *counts.entry(conn.transport_name()).or_insert(0) += 1;
        }
        counts
    }

    /// The connection is finished: its socket is closed at the end of the batch. Idempotent.
    /// The room, if it was a member, must be told by the caller.
    pub fn close(&mut self, r: ConnRef, reason: CloseReason) {
        let Some(conn) = self.get_mut(r) else {
            return;
        };
        if let Some(was) = conn.close(reason) {
            self.handshaking -= usize::from(was == Phase::Handshaking);
            self.closed.push(r.token);
        }
    }

    /// Closes every connection still in its handshake (a shutdown: they have nothing to
    /// flush).
    pub fn close_handshakes(&mut self, reason: &CloseReason) {
        let handshaking: Vec<ConnRef> = self
            .conns
            .iter()
            .filter(|(_, c)| *c.phase() == Phase::Handshaking)
            .map(|(token, c)| c.conn_ref(token))
            .collect();
        for r in handshaking {
            self.close(r, reason.clone());
        }
    }

    /// One read. The transport's own answer (a handshake message) goes on the flush list: it
    /// is written with everyone's output at the end of the batch.
    pub fn read(&mut self, r: ConnRef, scratch: &mut [u8], now: Instant) -> Option<Read> {
        let conn = live_mut(&mut self.conns, r).filter(|c| !c.is_closed())?;
        let read = conn.read(scratch, now);
        if let Read::Bytes {
            n, first_in_round, ..
        } = read
        {
            trace!("token {}: read {n} bytes", r.token);
            if first_in_round {
                self.active.add(r);
            }
            self.stats.bytes_in += n as u64;
            if conn.wants_write() {
                self.flush.add(r);
            }
            // Telnet's answers (`telnet.rs`), queued like any line: after what is already
            // queued, under the same output limit.
            if let Some(replies) = conn.input().take_replies()
                && let Err(reason) = self.send(r, &Rc::from(replies))
            {
                return Some(Read::Failed(reason));
            }
        }
        Some(read)
    }

    /// The next thing to do with `r`'s input (see [`Next`]).
    pub fn next_line(&mut self, r: ConnRef, now: Instant) -> Next {
        let flood = self.limits.flood;
        self.get_mut(r)
            .map_or(Next::Stop, |conn| conn.next_line(now, flood))
    }

    /// The line a peer sent without a newline before it closed its side, if any.
    pub fn last_line(&mut self, r: ConnRef) -> Option<Frame> {
        self.get_mut(r)?.last_line()
    }

    /// Flood control's timer: `r` may be read again. False if it is gone or was not held.
    pub fn unthrottle(&mut self, r: ConnRef) -> bool {
        self.get_mut(r).is_some_and(|c| c.input().unthrottle())
    }

    /// Serve `r` again next turn, without waiting for an event: its input may already be
    /// there (edge-triggered readiness will not report it again).
    pub fn read_again(&mut self, r: ConnRef) {
        self.ready.add(r);
    }

    /// Connections to read again this turn.
    pub fn take_ready(&mut self) -> Vec<ConnRef> {
        self.ready.take()
    }

    /// The ready list taken by [`ConnTable::take_ready`], served.
    pub fn served_ready(&mut self, served: Vec<ConnRef>) {
        self.ready.recycle(served);
    }

    /// Whether any connection has work waiting that no event will announce: input left by
    /// its read budget, or output left by its write budget. The loop must not sleep then.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.flush_next.is_empty()
    }

    /// A writable event, or output to write: flush `r` at the end of the batch.
    pub fn mark_for_flush(&mut self, r: ConnRef) {
        self.flush.add(r);
    }

    /// The end of a batch begins: connections whose write budget ran out last turn join this
    /// batch's flush list. Once per batch only, or a client with a huge backlog would be
    /// written again and again within one batch, and the budget would mean nothing.
    pub fn start_flushes(&mut self) {
        let next = self.flush_next.take();
        for &r in &next {
            self.flush.add(r);
        }
        self.flush_next.recycle(next);
    }

    /// The connections to flush now; the list starts empty again.
    pub fn take_flush_list(&mut self) -> Vec<ConnRef> {
        self.flush.take()
    }

    /// The flush list taken by [`ConnTable::take_flush_list`], flushed.
    pub fn flushed(&mut self, flushed: Vec<ConnRef>) {
        self.flush.recycle(flushed);
    }

    /// Writes `r`'s queued output as far as its socket takes it (see
    /// [`Connection::flush`]), then judges it by `--max-output`. `Some(reason)` if the write
    /// failed and closed it: the room must let it go.
    pub fn flush(
        &mut self,
        r: ConnRef,
        registry: &Registry,
        timers: &mut Timers,
        now: Instant,
    ) -> Option<CloseReason> {
        let conn = live_mut(&mut self.conns, r).filter(|c| !c.is_closed())?;
        let unsent = conn.unsent();
        let result = conn.flush(registry, Token(r.token), &mut self.stats.writes);
        let left = conn.unsent();
        self.stats.bytes_out += unsent.saturating_sub(left) as u64;
        match result {
            Ok(Flush::Done) => {
                if unsent > 0 {
                    trace!("token {}: wrote {unsent} bytes, queue empty", r.token);
                    if conn.output().drained() {
                        self.active.add(r);
                    }
                }
                // A leaving client has had its last lines: now it can go.
                if let Phase::Leaving(reason) = conn.phase() {
                    let reason = CloseReason::clone(reason);
                    self.close(r, reason);
                }
            }
            Ok(Flush::Budget) => {
                // Not full, only over this turn's budget: no event will come, so it is
                // listed to be flushed again next turn.
                self.flush_next.add(r);
            }
            Ok(Flush::Blocked) => {
                // A partial write. The rest stays queued, and the socket is now registered for
                // writable events. It goes out when the client reads, or never, if the client
                // falls `--max-output` behind first.
                trace!(
                    "token {}: socket full, {left} of {unsent} bytes still queued",
                    r.token
                );
                // (During a shutdown the grace deadline alone decides, for everyone at once.)
                let lingers = matches!(conn.phase(), Phase::Leaving(reason) if **reason != CloseReason::Shutdown);
                if lingers && conn.output().arm_linger() {
                    timers.add(now + LINGER, Timer::Linger(r));
                }
            }
            Err(e) => {
                debug!("token {}: write failed: {e}", r.token);
                let reason = CloseReason::Failed(e.kind());
                self.close(r, reason.clone());
                return Some(reason);
            }
        }
        self.judge_output(r, timers, now);
        None
    }

    /// After a flush, whether the client is behind by more than `--max-output`, and since
    /// when. The first flush that leaves it over the limit starts its grace (a `SlowCheck`
    /// timer); a flush that brings it back under ends it.
    ///
    /// Judged here, after writing, and not when lines are queued: within one batch the loop
    /// may queue the bursts of many senders for a client before writing it a byte, and a
    /// client that reads takes them within a few round trips. Only a client that stays
    /// behind for the whole grace has stopped reading.
    fn judge_output(&mut self, r: ConnRef, timers: &mut Timers, now: Instant) {
        let (limit, grace) = (self.limits.max_output, self.limits.output_grace);
        if let Some(conn) = self.get_mut(r)
            && conn.judge_output(limit, now)
        {
            timers.add(now + grace, Timer::SlowCheck(r));
        }
    }

    /// `r`'s grace over `--max-output` is over: `Some(limit)` if it is still behind and must
    /// go. (If it caught up meanwhile and fell behind again, a later timer judges that.)
    pub fn too_slow(&self, r: ConnRef, now: Instant) -> Option<usize> {
        let conn = self.get(r).filter(|c| c.is_chatting())?;
        let since = conn.over_limit_since()?;
        (since + self.limits.output_grace <= now).then_some(self.limits.max_output)
    }

    /// When `r` will have been silent for `idle`, if it is in the room.
    pub fn idle_deadline(&self, r: ConnRef, idle: Duration) -> Option<Instant> {
        let conn = self.get(r).filter(|c| c.is_chatting())?;
        Some(conn.last_heard() + idle)
    }

    /// Whether `r` is still in its handshake.
    pub fn is_handshaking(&self, r: ConnRef) -> bool {
        self.get(r)
            .is_some_and(|c| *c.phase() == Phase::Handshaking)
    }

    /// A leaving client's linger is over: it closes, its last lines taken or not.
    pub fn linger_over(&mut self, r: ConnRef) {
        if let Some(Phase::Leaving(reason)) = self.get(r).map(Connection::phase) {
            debug!("token {}: linger over, closing", r.token);
            let reason = CloseReason::clone(reason);
            self.close(r, reason);
        }
    }

    /// Whether a log line of `kind` about `r` may be written now (see `connlog.rs`).
    pub fn may_log(&mut self, kind: Kind, r: ConnRef) -> bool {
        match self.get(r) {
            Some(conn) => {
                let ip = conn.peer().ip();
                self.log.allow(kind, ip)
            }
            None => false,
        }
    }

    /// Ends a round of buffer use (the loop asks once a second, with nothing else to do: see
    /// `memory.rs`). A client read from, or whose queue was drained, in the round is busy in
    /// the next on that side, and its framer or queue keeps its room between uses rather than
    /// allocating it for every line; one that was not gives the room back (see
    /// [`Connection::end_round`]). True if any client is busy: the loop must ask again, even
    /// if nothing else happens.
    pub fn release_buffers(&mut self) -> bool {
        let round = self.active.take();
        for &r in &round {
            if let Some(conn) = live_mut(&mut self.conns, r)
                && conn.end_round()
            {
                self.active.add(r);
            }
        }
        self.active.recycle(round);
        !self.active.is_empty()
    }

    /// Whether a timer for `r` still has a connection to act on.
    pub fn contains(&self, r: ConnRef) -> bool {
        self.get(r).is_some()
    }

    /// Every token in use, lowest first (for tests that replay a batch by hand).
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> Vec<usize> {
        self.conns.iter().map(|(token, _)| token).collect()
    }

    /// Whatever is in slot `token`, closed or not (for tests).
    #[cfg(test)]
    pub(crate) fn slot(&self, token: usize) -> Option<&Connection> {
        self.conns.get(token)
    }

    /// Frees the slots of the connections closed during the batch, and deregisters their
    /// sockets. Only here, with every event of the batch handled, may a slot be freed (see
    /// the module documentation).
    /// Returns how many it removed.
    pub fn reap(&mut self, registry: &Registry) -> usize {
        let closed = std::mem::take(&mut self.closed);
        let removed = closed.len();
        for token in closed {
            let mut conn = self.conns.remove(token);
            self.ready.forget(token);
            self.flush_next.forget(token);
            self.active.forget(token);
            if conn.is_admitted() {
                let ip = conn.peer().ip();
                if let Some(count) = self.per_address.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_address.remove(&ip);
                    }
                }
            }
            if let Err(e) = conn.deregister(registry) {
                debug!("token {token}: deregister failed: {e}");
            }
            // An answered HTTP request was never a chat client: its end is not news.
            let mut level = log::Level::Info;
            let reason = match conn.phase() {
                Phase::Closed(reason) => {
                    self.stats.count_disconnect(reason);
                    if let CloseReason::Answered(_) = **reason {
                        level = log::Level::Debug;
                    }
                    reason.to_string()
                }
                other => format!("{other:?}"),
            };
            if !log::log_enabled!(level) || !self.log.allow(Kind::Disconnect, conn.peer().ip()) {
                continue;
            }
            match conn.unsent() {
                0 => log::log!(level, "{} disconnected: {reason}", conn.label()),
                unsent => log::log!(
                    level,
                    "{} disconnected: {reason}; {unsent} bytes unsent",
                    conn.label()
                ),
            }
        }
        removed
    }
}

impl ConnTable {
    /// `to` is past the hard output limit: closed now, as too slow. Out of line, so the path
    /// every delivery takes stays a few comparisons and a push.
    #[cold]
    #[inline(never)]
    fn cut_off(&mut self, to: ConnRef) -> CloseReason {
        if let Some(conn) = live_mut(&mut self.conns, to)
            && self.log.allow(Kind::Limit, conn.peer().ip())
        {
            warn!(
                "{}: over {} bytes of output waiting ({HARD_OUTPUT_FACTOR} times \
                 --max-output), disconnecting (token {})",
                conn.label(),
                self.limits.hard_output,
                to.token
            );
        }
        let reason = CloseReason::TooSlow {
            limit: self.limits.max_output,
        };
        self.close(to, reason.clone());
        reason
    }
}

impl Outbox for ConnTable {
    /// Appends the line to `to`'s queue (O(1): the bytes are shared, not copied; for a
    /// WebSocket client, the line's one frame is) and lists it for the flush.
    ///
    /// Only the hard limit (eight times `--max-output`) is enforced here. Whether the client
    /// is too slow is judged after its flush, over time ([`ConnTable::flush`]): here, in the
    /// middle of a batch, nothing queued in this batch has had a chance to be written yet.
    #[inline]
    fn send(&mut self, to: ConnRef, line: &Rc<[u8]>) -> Result<(), CloseReason> {
        self.stats.lines_out += 1;
        let Some(conn) = live_mut(&mut self.conns, to).filter(|c| !c.is_closed()) else {
            return Ok(());
        };
        if conn.held() + line.len() > self.limits.hard_output {
            return Err(self.cut_off(to));
        }
        conn.send(line);
        self.flush.add(to);
        Ok(())
    }

    fn tell(&mut self, to: ConnRef, text: &str) -> Result<(), CloseReason> {
        // Counted as lines, like the rest of `lines_out` (`/help` is several).
        let lines = text.bytes().filter(|&b| b == b'\n').count() as u64;
        self.stats.lines_out += lines.saturating_sub(1);
        self.send(to, &Rc::from(text.as_bytes()))
    }

    fn hang_up(&mut self, who: ConnRef, reason: CloseReason) {
        if let Some(conn) = self.get_mut(who)
            && conn.start_leaving(reason)
        {
            self.flush.add(who);
        }
    }

    fn name(&mut self, who: ConnRef, nick: &Rc<str>) {
        if let Some(conn) = self.get_mut(who) {
            conn.set_nick(nick);
        }
    }

    fn hold(&mut self, who: ConnRef) {
        if let Some(conn) = self.get_mut(who) {
            conn.input().hold(true);
        }
    }

    /// Its next lines may already be in its framer, where no readable event will report them:
    /// it is read again next turn.
    fn resume(&mut self, who: ConnRef) {
        if let Some(conn) = self.get_mut(who)
            && conn.input().hold(false)
        {
            self.ready.add(who);
        }
    }
}
