//! The chat itself: who is here, what each line does, and who must receive what.
//!
//! The room owns every [`Connection`] (in a `Slab`, whose keys are the mio tokens) and the
//! nick registry. It turns a client's line into output on other clients' [`WriteQueue`]s, but
//! it never writes to a socket. It only queues, and it notes who has new output on a flush
//! list. The loop (`server.rs`) writes to the sockets once per batch of events. So when one
//! batch holds lines from many senders, each recipient gets all of them in one system call,
//! not one call per line.
//!
//! Ordering: there is one thread and one room, and a line is appended to every recipient's
//! queue before the next line is looked at. Every client therefore sees every line in the
//! same global order. No queue is ever reordered, and a client is sent away before a line
//! is skipped for it.
//!
//! [`WriteQueue`]: crate::write_queue::WriteQueue

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use log::{debug, info, trace, warn};
use mio::Registry;
use slab::Slab;

use crate::connection::{CloseReason, ConnRef, Connection, Phase};
use crate::limits::HARD_OUTPUT_FACTOR;
use crate::protocol::{self, Command};
use crate::stats::Stats;

#[derive(Debug)]
pub struct Room {
    /// Every connection the server holds, in any phase. A slot is freed only in [`Room::reap`],
    /// at the end of a batch.
    pub conns: Slab<Connection>,
    /// Lower-cased nick → token, for every chatting connection and nobody else.
    nicks: HashMap<String, usize>,
    /// Tokens with output queued since the last flush (each at most once: see
    /// `Connection::needs_flush`).
    to_flush: Vec<usize>,
    /// Leave notices not yet sent (see [`Room::announce_departures`] for why they wait).
    departures: Vec<String>,
    /// Tokens in [`Phase::Closed`], to be removed by [`Room::reap`].
    closed: Vec<usize>,
    /// Connections per client address, for `--max-per-ip`: counted from `join` until the
    /// slot is freed in `reap` (a leaving client still holds its descriptor). Addresses
    /// with none are removed, so the map holds only addresses connected now.
    per_address: HashMap<IpAddr, usize>,
    /// TLS connections in [`Phase::Handshaking`]: held, but not in the room yet.
    handshaking: usize,
    /// The loop's counters (the room sees every line queued and every disconnect).
    pub stats: Stats,
    next_guest: u64,
    max_output: usize,
    max_line: usize,
    quiet_joins: bool,
}

impl Room {
    pub fn new(max_output: usize, max_line: usize, quiet_joins: bool) -> Room {
        Room {
            conns: Slab::new(),
            nicks: HashMap::new(),
            to_flush: Vec::new(),
            departures: Vec::new(),
            closed: Vec::new(),
            per_address: HashMap::new(),
            handshaking: 0,
            stats: Stats::default(),
            next_guest: 1,
            max_output,
            max_line,
            quiet_joins,
        }
    }

    /// Clients in the room (not counting those on their way out).
    pub fn members(&self) -> usize {
        self.nicks.len()
    }

    /// TLS clients still in their handshake.
    pub fn handshaking(&self) -> usize {
        self.handshaking
    }

    /// Connections from `addr` that joined and are not yet removed.
    pub fn connections_from(&self, addr: IpAddr) -> usize {
        self.per_address.get(&addr).copied().unwrap_or(0)
    }

    /// The connection a [`ConnRef`] names, if it is still the same connection.
    pub fn get(&mut self, r: ConnRef) -> Option<&mut Connection> {
        self.conns.get_mut(r.token).filter(|c| c.id == r.id)
    }

    /// A new client joins under a guest nick, gets the welcome line, and everyone else
    /// hears about it. Returns its token.
    pub fn join(&mut self, conn: Connection) -> usize {
        let token = self.conns.insert(conn);
        self.enter(token);
        token
    }

    /// A new TLS client: held in [`Phase::Handshaking`] until its handshake is over, then it
    /// [`enter`](Room::enter)s (or is [`turn_away`](Room::turn_away)ed). Returns its token.
    pub fn hold_for_handshake(&mut self, mut conn: Connection) -> usize {
        conn.phase = Phase::Handshaking;
        self.handshaking += 1;
        self.conns.insert(conn)
    }

    /// A connection already held (accepted, or past its TLS handshake) joins the room. No
    /// effect unless it is new or handshaking.
    pub fn enter(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.phase {
            Phase::Handshaking => self.handshaking -= 1,
            Phase::Chatting if conn.nick.is_empty() => {}
            _ => return,
        }
        conn.phase = Phase::Chatting;
        let nick = self.free_guest_nick();
        let conn = &mut self.conns[token];
        conn.nick.clone_from(&nick);
        let peer = conn.peer;
        conn.counted_by_address = true;
        *self.per_address.entry(peer.ip()).or_insert(0) += 1;
        self.nicks.insert(protocol::nick_key(&nick), token);
        info!("{peer} connected as {nick} (token {token})");
        self.send_to(token, &protocol::welcome(&nick));
        if !self.quiet_joins {
            self.broadcast(Some(token), &protocol::joined(&nick));
        }
    }

    /// A client that arrived over `--max-clients` or `--max-per-ip`: it is told why, and
    /// closed once that line is out. It never joins, so nobody else hears of it.
    pub fn refuse(&mut self, conn: Connection, reason: CloseReason) -> usize {
        let token = self.conns.insert(conn);
        self.turn_away(token, reason);
        token
    }

    /// [`Room::refuse`] for a connection already held: a TLS client refused once its
    /// handshake is over, so that it can be told why, encrypted.
    pub fn turn_away(&mut self, token: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.phase == Phase::Handshaking {
            self.handshaking -= 1;
        }
        let line = match reason {
            CloseReason::TooManyFromAddress => protocol::TOO_MANY_FROM_ADDRESS,
            _ => protocol::SERVER_FULL,
        };
        warn!(
            "{} refused: {reason} ({} clients)",
            conn.peer,
            self.nicks.len()
        );
        conn.phase = Phase::Leaving(reason);
        self.send_to(token, line);
    }

    /// What one line from a chatting client does.
    pub fn handle_line(&mut self, token: usize, line: &str) {
        let nick = self.conns[token].nick.clone();
        trace!("token {token} ({nick}) line {line:?}");
        let command = match protocol::parse(line) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(error) => {
                self.send_to(token, &protocol::server_line(error));
                return;
            }
        };
        match command {
            Command::Say(text) => self.broadcast(Some(token), &protocol::chat_line(&nick, text)),
            Command::Me(action) => {
                self.broadcast(Some(token), &protocol::action_line(&nick, action))
            }
            Command::Nick(new) => self.rename(token, &nick, new),
            Command::Who => {
                let mut nicks: Vec<&str> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.is_chatting())
                    .map(|(_, c)| c.nick.as_str())
                    .collect();
                let reply = protocol::who(&mut nicks);
                self.send_to(token, &reply);
            }
            Command::Msg { to, text } => match self.nicks.get(&protocol::nick_key(to)) {
                Some(&recipient) => {
                    self.send_to(recipient, &protocol::private_line(&nick, text));
                }
                None => self.send_to(token, &protocol::no_such_nick(to)),
            },
            Command::Quit(reason) => {
                self.send_to(token, protocol::BYE);
                self.leave(token, CloseReason::Quit(reason.map(str::to_string)));
            }
            Command::Help => self.send_to(token, protocol::HELP),
        }
    }

    /// The client sent a line over `--max-line`; it was dropped by the framer.
    pub fn line_too_long(&mut self, token: usize) {
        let conn = &self.conns[token];
        warn!(
            "{}: line over {} bytes dropped",
            conn.label(),
            self.max_line
        );
        self.send_to(token, &protocol::line_too_long(self.max_line));
    }

    fn rename(&mut self, token: usize, old: &str, new: &str) {
        if old == new {
            self.send_to(token, &protocol::server_line(format_args!("you are {new}")));
            return;
        }
        let new_key = protocol::nick_key(new);
        if self
            .nicks
            .get(&new_key)
            .is_some_and(|&owner| owner != token)
        {
            self.send_to(token, &protocol::nick_taken(new));
            return;
        }
        self.nicks.remove(&protocol::nick_key(old));
        self.nicks.insert(new_key, token);
        self.conns[token].nick = new.to_string();
        info!("token {token}: {old} is now {new}");
        // Everyone sees it, the renamed client included: that is its confirmation.
        self.broadcast(None, &protocol::renamed(old, new));
    }

    /// The client leaves the room but keeps its socket until its queued output is flushed
    /// (or [`LINGER`](crate::limits::LINGER) runs out). No effect unless it is chatting.
    pub fn leave(&mut self, token: usize, reason: CloseReason) {
        if self.depart(token, &reason) {
            self.conns[token].phase = Phase::Leaving(reason);
            self.mark_for_flush(token);
        }
    }

    /// The connection is finished: it leaves the room if it was in it, and its socket is
    /// closed at the end of the batch. Idempotent.
    pub fn close(&mut self, token: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if matches!(conn.phase, Phase::Closed(_)) {
            return;
        }
        if conn.phase == Phase::Handshaking {
            self.handshaking -= 1;
        }
        self.depart(token, &reason);
        self.conns[token].phase = Phase::Closed(reason);
        self.closed.push(token);
    }

    /// Takes a chatting client out of the room: frees its nick and queues the leave notice.
    /// Returns false if it was not chatting.
    fn depart(&mut self, token: usize, reason: &CloseReason) -> bool {
        let conn = &self.conns[token];
        if !conn.is_chatting() {
            return false;
        }
        self.nicks.remove(&protocol::nick_key(&conn.nick));
        if !self.quiet_joins && *reason != CloseReason::Shutdown {
            self.departures.push(protocol::left(&conn.nick, reason));
        }
        true
    }

    /// Sends the leave notices collected during the batch.
    ///
    /// They wait until here because a client can be sent away in the middle of a
    /// broadcast (its queue overflowed). Announcing it right there would start a broadcast
    /// inside a broadcast. A notice can itself overflow another queue and cause another
    /// departure, so this loops until there are none left.
    pub fn announce_departures(&mut self) {
        while !self.departures.is_empty() {
            for notice in std::mem::take(&mut self.departures) {
                self.broadcast(None, &notice);
            }
        }
    }

    /// Tells every chatting client the server is going away and moves it to `Leaving`, so
    /// the loop flushes it and then closes it.
    ///
    /// Clients still in their TLS handshake are closed at once: they have nothing to flush.
    pub fn shutdown(&mut self) {
        let handshaking: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Handshaking)
            .map(|(t, _)| t)
            .collect();
        for token in handshaking {
            self.close(token, CloseReason::Shutdown);
        }
        let tokens: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_chatting())
            .map(|(t, _)| t)
            .collect();
        for token in tokens {
            self.send_to(token, protocol::SHUTTING_DOWN);
            self.leave(token, CloseReason::Shutdown);
        }
    }

    /// One line to one client.
    pub fn send_to(&mut self, token: usize, line: &str) {
        self.stats.lines_out += line.bytes().filter(|&b| b == b'\n').count() as u64;
        let line: Rc<[u8]> = Rc::from(line.as_bytes());
        if let Err(reason) = self.enqueue(token, line) {
            self.close(token, reason);
        }
    }

    /// One line to every chatting client except `except`. The line is allocated once, and
    /// every recipient's queue shares it.
    pub fn broadcast(&mut self, except: Option<usize>, line: &str) {
        let line: Rc<[u8]> = Rc::from(line.as_bytes());
        let mut too_slow = Vec::new();
        let mut recipients = 0usize;
        for (token, conn) in &mut self.conns {
            if Some(token) == except || !conn.is_chatting() {
                continue;
            }
            recipients += 1;
            match queue_line(conn, token, Rc::clone(&line), self.max_output) {
                Ok(true) => self.to_flush.push(token),
                Ok(false) => {}
                // Not closed here: that would change the room while we walk through it.
                Err(reason) => too_slow.push((token, reason)),
            }
        }
        trace!(
            "queued {} bytes for {recipients} clients (one allocation, shared)",
            line.len()
        );
        self.stats.lines_out += recipients as u64;
        for (token, reason) in too_slow {
            self.close(token, reason);
        }
    }

    fn enqueue(&mut self, token: usize, line: Rc<[u8]>) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get_mut(token) else {
            return Ok(());
        };
        if queue_line(conn, token, line, self.max_output)? {
            self.to_flush.push(token);
        }
        Ok(())
    }

    /// Puts a connection on the flush list (a writable event, or it started leaving).
    pub fn mark_for_flush(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token)
            && !conn.needs_flush
        {
            conn.needs_flush = true;
            self.to_flush.push(token);
        }
    }

    /// The connections to flush now; the list starts empty again.
    pub fn take_flush_list(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.to_flush)
    }

    /// Removes the connections closed during the batch. Only here, with every event of the
    /// batch handled, may a slot be freed: the slab hands a freed slot to the next client it
    /// accepts. Had we freed it earlier, an event still waiting in this batch for the old
    /// connection would be delivered to the new one.
    pub fn reap(&mut self, registry: &Registry) {
        for token in std::mem::take(&mut self.closed) {
            let mut conn = self.conns.remove(token);
            if conn.counted_by_address {
                let ip = conn.peer.ip();
                if let Some(count) = self.per_address.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_address.remove(&ip);
                    }
                }
            }
            if let Err(e) = registry.deregister(&mut conn.socket) {
                debug!("token {token}: deregister failed: {e}");
            }
            let reason = match &conn.phase {
                Phase::Closed(reason) => {
                    self.stats.count_disconnect(reason);
                    reason.to_string()
                }
                other => format!("{other:?}"),
            };
            let unsent = conn.output.unsent();
            let label = conn.label();
            if unsent > 0 {
                info!("{label} disconnected: {reason}; {unsent} bytes unsent");
            } else {
                info!("{label} disconnected: {reason}");
            }
        }
    }

    fn free_guest_nick(&mut self) -> String {
        loop {
            let nick = format!("guest-{}", self.next_guest);
            self.next_guest += 1;
            if !self.nicks.contains_key(&protocol::nick_key(&nick)) {
                return nick;
            }
        }
    }
}

/// Appends `line` to one client's queue. `Ok(true)`: the connection was not yet on the
/// flush list and must be put there.
///
/// Only the hard limit (eight times `--max-output`) is enforced here. Whether the client is
/// too slow is judged after its flush, over time (see `Server::judge_output`): here, in the
/// middle of a batch, nothing queued in this batch has had a chance to be written yet.
fn queue_line(
    conn: &mut Connection,
    token: usize,
    line: Rc<[u8]>,
    max_output: usize,
) -> Result<bool, CloseReason> {
    let hard_limit = max_output.saturating_mul(HARD_OUTPUT_FACTOR);
    if conn.unsent() + line.len() > hard_limit {
        warn!(
            "{}: over {hard_limit} bytes of output waiting ({HARD_OUTPUT_FACTOR} times \
             --max-output), disconnecting (token {token})",
            conn.label()
        );
        return Err(CloseReason::TooSlow { limit: max_output });
    }
    conn.output.push(line);
    Ok(!std::mem::replace(&mut conn.needs_flush, true))
}
