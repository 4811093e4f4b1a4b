//! The connection table: every connection the loop holds, keyed by its token, and the
//! non-blocking bookkeeping around them. Read this next to mio's `examples/tcp_server.rs`.
//!
//! - **Tokens are slab keys.** A connection is registered with the poll under the key its
//!   slot will have ([`slab::VacantEntry::key`]) before it is inserted there, so an event's
//!   token finds its connection in O(1).
//! - **Phase changes happen here**, through the transitions `connection/mod.rs` allows: admitted
//!   to the room, leaving, closed.
//! - **Lists of connections to come back to** ([`Worklists`], in `lists.rs`), each with its
//!   own "already listed" rule: the flush list (connections with new output, written once
//!   each at the end of the batch), the ready list (connections whose read budget ran out
//!   before `WouldBlock`), and the busy ones asked at the end of each round.
//! - **Who is connected from where** ([`Census`], in `census.rs`): connections per address
//!   for `--max-per-ip`, and those still in their handshake.
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

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, trace, warn};
use mio::net::TcpStream;
use mio::{Registry, Token};
use slab::Slab;

use crate::config::Config;
use crate::connection::{CloseReason, ConnRef, Connection, Flood, Flush, News, Next, Phase, Read};
use crate::connlog::{ConnLog, Kind};
use crate::limits::LINGER;
use crate::room::Outbox;
use crate::stats::Stats;
use crate::timers::{Timer, Timers};
use crate::transport::Transport;

mod census;
mod lists;
mod output_rule;

pub use self::census::Census;
pub use self::lists::{Listed, Worklists};
pub use self::output_rule::OutputRule;

/// The connection `r` names, if its slot still holds it (a field's borrow, so the table's
/// other fields stay usable beside it).
fn live_mut(conns: &mut Slab<Connection>, r: ConnRef) -> Option<&mut Connection> {
    conns.get_mut(r.token).filter(|c| c.id() == r.id)
}

/// The configuration's rules for connections, replaced whole by a reload: `--max-line` for the
/// connections made from then on, flood control and `--max-output` for everyone at once.
#[derive(Debug)]
pub struct ConnRules {
    /// `--max-line`, for each new connection's framer.
    pub max_line: usize,
    /// Flood control's rule; `None` when it is off (`--rate 0`).
    pub flood: Option<Flood>,
    /// `--max-output`: how far behind a client may fall, for how long.
    pub output: OutputRule,
}

impl ConnRules {
    pub fn new(config: &Config) -> ConnRules {
        ConnRules {
            max_line: config.max_line,
            flood: Flood::of(config),
            output: OutputRule::new(config),
        }
    }
}

/// Every connection the server holds. See the module documentation.
#[derive(Debug)]
pub struct ConnTable {
    conns: Slab<Connection>,
    /// The connections the loop must come back to without an event (to flush, to read).
    pub lists: Worklists,
    /// Tokens in [`Phase::Closed`], to be removed by [`ConnTable::reap`].
    closed: Vec<usize>,
    /// Who is connected from where, and who is still in a handshake.
    pub census: Census,
    next_id: u64,
    /// What every connection is held to: a reload replaces it.
    pub rules: ConnRules,
    /// The loop's counters: the table sees every byte, line and disconnect.
    pub stats: Stats,
    /// Per-connection log lines, on a budget.
    pub log: ConnLog,
}

impl ConnTable {
    pub fn new(config: &Config) -> ConnTable {
        ConnTable {
            conns: Slab::new(),
            lists: Worklists::default(),
            closed: Vec::new(),
            census: Census::default(),
            next_id: 1,
            rules: ConnRules::new(config),
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

    /// The connection a [`ConnRef`] names, if it is still that connection.
    pub fn get(&self, r: ConnRef) -> Option<&Connection> {
        self.conns.get(r.token).filter(|c| c.id() == r.id)
    }

    /// The connection a [`ConnRef`] names, if it is still that connection, to change.
    pub fn get_mut(&mut self, r: ConnRef) -> Option<&mut Connection> {
        live_mut(&mut self.conns, r)
    }

    /// Every connection held, with its token, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Connection)> {
        self.conns.iter()
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
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = Connection::register(&mut socket, registry, Token(token)) {
            warn!("{peer}: cannot register connection: {e}");
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.stats.connections_total += 1;
        let conn = Connection::new(id, socket, peer, transport, self.rules.max_line, now);
        entry.insert(conn);
        self.census.handshake_started();
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
        self.census.admitted(ip);
        true
    }

    /// Out of its handshake and leaving, with `last` as the last thing it is sent: why it
    /// may not join (`*** server full`), or the answer to an HTTP request that is not for the
    /// chat (the page is one buffer shared by every request). It never joined, so nobody else
    /// hears of it.
    pub fn send_off(&mut self, r: ConnRef, reason: CloseReason, last: &Rc<[u8]>) {
        let Some(conn) = self.get_mut(r) else {
            return;
        };
        let was_handshaking = *conn.phase() == Phase::Handshaking;
        if conn.start_leaving(reason) {
            if was_handshaking {
                self.census.handshake_ended();
            }
            let _ = self.send(r, last);
        }
    }

    /// The connection is finished: its socket is closed at the end of the batch. Idempotent.
    /// The room, if it was a member, must be told by the caller.
    pub fn close(&mut self, r: ConnRef, reason: CloseReason) {
        let Some(conn) = self.get_mut(r) else {
            return;
        };
        if let Some(was) = conn.close(reason) {
            if was == Phase::Handshaking {
                self.census.handshake_ended();
            }
            self.closed.push(r.token);
        }
    }

    /// Closes every connection still in its handshake (a shutdown: they have nothing to
    /// flush).
    pub fn close_handshakes(&mut self, reason: &CloseReason) {
        let handshaking = self
            .iter()
            .filter(|(_, c)| *c.phase() == Phase::Handshaking);
        let refs: Vec<ConnRef> = handshaking.map(|(token, c)| c.conn_ref(token)).collect();
        for r in refs {
            self.close(r, reason.clone());
        }
    }

    /// One read.
    pub fn read(&mut self, r: ConnRef, scratch: &mut [u8], now: Instant) -> Option<Read> {
        let conn = live_mut(&mut self.conns, r).filter(|c| !c.is_closed())?;
        let read = conn.read(scratch, now);
        if let Read::Bytes {
            n, first_in_round, ..
        } = read
        {
            trace!("token {}: read {n} bytes", r.token);
            if first_in_round {
                self.lists.active.add(r);
            }
            self.stats.bytes_in += n as u64;
        }
        Some(read)
    }

    /// What a read brought besides bytes, for the table: the transport's own bytes (a
    /// handshake message) go on the flush list, to be written with everyone's output at the
    /// end of the batch; Telnet's answers are queued like any line, after what is already
    /// queued, under the same output limit. `Err`: that cut the client off.
    pub fn news(&mut self, r: ConnRef, news: News) -> Result<(), CloseReason> {
        if news.wants_write {
            self.lists.flush.add(r);
        }
        match news.replies {
            Some(replies) => self.send(r, &Rc::from(replies)),
            None => Ok(()),
        }
    }

    /// The next thing to do with `r`'s input (see [`Next`]).
    pub fn next_line(&mut self, r: ConnRef, now: Instant) -> Next {
        let flood = self.rules.flood;
        self.get_mut(r)
            .map_or(Next::Stop, |conn| conn.next_line(now, flood))
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
        // Stopped by this turn's budget, not by the socket: the client is taking all it is
        // given, and a queue it is behind by is the loop's doing, not its own.
        let taking = matches!(result, Ok(Flush::Budget));
        let left = conn.unsent();
        self.stats.bytes_out += unsent.saturating_sub(left) as u64;
        match result {
            Ok(Flush::Done) => {
                if unsent > 0 {
                    trace!("token {}: wrote {unsent} bytes, queue empty", r.token);
                    if conn.output().drained() {
                        self.lists.active.add(r);
                    }
                }
                // A leaving client has had its last lines: now it can go.
                if let Some(reason) = conn.leaving().cloned() {
                    self.close(r, reason);
                }
            }
            Ok(Flush::Budget) => {
                // Not full, only over this turn's budget: no event will come, so it is
                // listed to be flushed again next turn.
                self.lists.flush_next.add(r);
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
                let lingers = conn.leaving().is_some_and(|r| *r != CloseReason::Shutdown);
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
        if let Some(conn) = live_mut(&mut self.conns, r)
            && let Some(due) = self.rules.output.judge(conn, now, taking)
        {
            timers.add(due, Timer::SlowCheck(r));
        }
        None
    }

    /// A leaving client's linger is over: it closes, its last lines taken or not.
    pub fn linger_over(&mut self, r: ConnRef) {
        if let Some(reason) = self.get(r).and_then(Connection::leaving).cloned() {
            debug!("token {}: linger over, closing", r.token);
            self.close(r, reason);
        }
    }

    /// Whether a log line of `kind` about `r` may be written now (see `connlog.rs`).
    pub fn may_log(&mut self, kind: Kind, r: ConnRef) -> bool {
        let ip = self.get(r).map(|conn| conn.peer().ip());
        ip.is_some_and(|ip| self.log.allow(kind, ip))
    }

    /// Ends a round of buffer use (the loop asks once a second, with nothing else to do: see
    /// `memory.rs`). A client read from, or whose queue was drained, in the round is busy in
    /// the next on that side, and its framer or queue keeps its room between uses rather than
    /// allocating it for every line; one that was not gives the room back (see
    /// [`Connection::end_round`]). True if any client is busy: the loop must ask again, even
    /// if nothing else happens.
    pub fn release_buffers(&mut self) -> bool {
        self.lists
            .end_round(|r| live_mut(&mut self.conns, r).is_some_and(|c| c.end_round()))
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
            self.lists.forget(token);
            if conn.is_admitted() {
                self.census.removed(conn.peer().ip());
            }
            if let Err(e) = conn.deregister(registry) {
                debug!("token {token}: deregister failed: {e}");
            }
            if let Phase::Closed(reason) = conn.phase() {
                self.stats.count_closed(reason, conn.transport_name());
            }
            self.log.disconnected(&conn);
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
        let Some(conn) = live_mut(&mut self.conns, to) else {
            return CloseReason::PeerClosed;
        };
        let reason = self.rules.output.cut_off(conn, to, &mut self.log);
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
        if self.rules.output.past_hard_limit(conn, line.len()) {
            return Err(self.cut_off(to));
        }
        conn.send(line);
        self.lists.flush.add(to);
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
            self.lists.flush.add(who);
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
            self.lists.ready.add(who);
        }
    }

    /// Transports are named "plain", "TLS", "WebSocket" and "WebSocket over TLS".
    fn peer(&self, who: ConnRef) -> Option<(std::net::IpAddr, bool)> {
        let conn = self.get(who)?;
        Some((conn.peer().ip(), conn.transport_name().ends_with("TLS")))
    }
}
