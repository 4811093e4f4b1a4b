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
//! Everything clients say to each other (chat lines, `/me`, `/msg`, join, leave and nick
//! notices) is an [`Event`], and one function, [`Room::deliver`], turns an event into output.
//! [`Room::emit`] decides when that happens:
//!
//! - alone (no `--backplane`, or the backplane is down: "local only"), at once;
//! - with the backplane up, not at all here: the event goes to the outbox, the loop publishes
//!   it, and it is delivered when it comes back from the subscription, on every instance, this
//!   one included. Redis's order is then the one global order, and the ordering logic is the
//!   same function in both modes. The sender is skipped by its connection id, as before.
//!
//! With the backplane, nicks are claimed in Redis before they are granted (see
//! `backplane/mod.rs`): `/nick` waits for the answer, which arrives as a later event
//! ([`Room::claim_answered`]); `/who` lists the other instances' clients too, from a
//! [`Replica`].
//!
//! [`WriteQueue`]: crate::write_queue::WriteQueue

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::Registry;
use slab::Slab;

use crate::backplane::replica::Replica;
use crate::backplane::{Claim, Event, Outgoing, Purpose, What};
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
    /// Leave events not yet emitted (see [`Room::announce_departures`] for why they wait).
    departures: Vec<Event>,
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
    /// The origin of this instance's events (the backplane's instance id).
    instance: String,
    /// `Some` with `--backplane`: what the room keeps for the chat across instances.
    cluster: Option<Cluster>,
}

/// The room's side of the backplane.
#[derive(Debug)]
struct Cluster {
    /// The backplane is up: events are published, not delivered here directly.
    up: bool,
    /// Clients have been told the chat is local only, and are owed "back" when it is shared
    /// again.
    told_down: bool,
    /// What the loop must send to Redis at the end of the batch.
    outbox: Vec<Outgoing>,
    /// The other instances' clients.
    replica: Replica,
    /// Lower-cased nicks a `/nick` is claiming in Redis right now: taken, locally, until the
    /// answer comes, so two local clients cannot both be granted one.
    claiming: HashSet<String>,
    /// Clients whose `/nick` was answered: the loop reads them again.
    resumed: Vec<ConnRef>,
    /// Part of every guest nick, from the instance id, so two instances rarely pick the same
    /// guest nick (if they do, the claim catches it).
    guest_tag: String,
    nick_ttl: Duration,
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
            instance: "local".to_string(),
            cluster: None,
        }
    }

    /// Makes this room one instance of a chat shared through the backplane. It starts local
    /// only, until [`Room::backplane_up`].
    pub fn join_cluster(&mut self, instance: &str, nick_ttl: Duration) {
        self.instance = instance.to_string();
        self.cluster = Some(Cluster {
            up: false,
            told_down: false,
            outbox: Vec::new(),
            replica: Replica::default(),
            claiming: HashSet::new(),
            resumed: Vec::new(),
            guest_tag: instance.chars().take(4).collect(),
            nick_ttl,
        });
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
        let (peer, id, conn_ref) = (conn.peer, conn.id, conn.conn_ref(token));
        conn.counted_by_address = true;
        *self.per_address.entry(peer.ip()).or_insert(0) += 1;
        self.nicks.insert(protocol::nick_key(&nick), token);
        info!("{peer} connected as {nick} (token {token})");
        self.send_to(token, &protocol::welcome(&nick));
        if self.cluster.as_ref().is_some_and(|c| c.told_down) {
            self.send_to(token, protocol::BACKPLANE_DOWN);
        }
        self.claim(conn_ref, &nick, Purpose::Keep);
        self.emit(id, What::Joined { nick });
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
        let id = self.conns[token].id;
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
            Command::Say(text) => self.emit(
                id,
                What::Say {
                    nick,
                    text: text.to_string(),
                },
            ),
            Command::Me(action) => self.emit(
                id,
                What::Me {
                    nick,
                    action: action.to_string(),
                },
            ),
            Command::Nick(new) => self.rename(token, &nick, new),
            Command::Who => {
                let mut nicks: Vec<&str> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.is_chatting())
                    .map(|(_, c)| c.nick.as_str())
                    .collect();
                if let Some(cluster) = &self.cluster {
                    nicks.extend(cluster.replica.nicks());
                }
                let reply = protocol::who(&mut nicks);
                self.send_to(token, &reply);
            }
            Command::Msg { to, text } => {
                let known = self.nicks.contains_key(&protocol::nick_key(to))
                    || self.cluster.as_ref().is_some_and(|c| c.replica.has(to));
                if known {
                    let (from, to, text) = (nick, to.to_string(), text.to_string());
                    self.emit(id, What::Msg { from, to, text });
                } else {
                    self.send_to(token, &protocol::no_such_nick(to));
                }
            }
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
        let claiming = self
            .cluster
            .as_ref()
            .is_some_and(|c| c.claiming.contains(&new_key));
        if claiming
            || self
                .nicks
                .get(&new_key)
                .is_some_and(|&owner| owner != token)
        {
            self.send_to(token, &protocol::nick_taken(new));
            return;
        }
        // Shared chat: Redis decides, and the answer comes in a later batch. (A change of
        // case only keeps the same key, which this instance already holds.)
        if let Some(cluster) = &mut self.cluster
            && cluster.up
            && new_key != protocol::nick_key(old)
        {
            cluster.claiming.insert(new_key);
            let conn = &mut self.conns[token];
            conn.waiting_for_nick = true;
            let conn_ref = conn.conn_ref(token);
            self.claim(conn_ref, new, Purpose::Rename);
            return;
        }
        self.apply_rename(token, new);
    }

    /// The client is now `new`: the registry changes, everyone (the client too: that is its
    /// confirmation) hears of it, and, in a shared chat, the old nick's key is released.
    fn apply_rename(&mut self, token: usize, new: &str) {
        let conn = &mut self.conns[token];
        let old = std::mem::replace(&mut conn.nick, new.to_string());
        let id = conn.id;
        let (old_key, new_key) = (protocol::nick_key(&old), protocol::nick_key(new));
        self.nicks.remove(&old_key);
        self.nicks.insert(new_key.clone(), token);
        info!("token {token}: {old} is now {new}");
        if old_key != new_key {
            self.release(&old);
        }
        let new = new.to_string();
        self.emit(id, What::Renamed { old, new });
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
        let (nick, id) = (conn.nick.clone(), conn.id);
        self.nicks.remove(&protocol::nick_key(&nick));
        self.release(&nick);
        // On a shutdown, everyone here is leaving and needs no notice; the other instances'
        // clients do.
        if *reason != CloseReason::Shutdown || self.cluster.is_some() {
            let reason = reason.to_string();
            let left = self.event(id, What::Left { nick, reason });
            self.departures.push(left);
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
            for event in std::mem::take(&mut self.departures) {
                self.emit_event(event);
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
        // The other instances forget this one at once, after its clients' leave events.
        if self.cluster.is_some() {
            let bye = self.event(0, What::Bye);
            self.departures.push(bye);
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

    /// One line to every chatting client except the one whose connection id is `except`.
    /// The line is allocated once, and every recipient's queue shares it.
    pub fn broadcast(&mut self, except: Option<u64>, line: &str) {
        let line: Rc<[u8]> = Rc::from(line.as_bytes());
        let mut too_slow = Vec::new();
        let mut recipients = 0usize;
        for (token, conn) in &mut self.conns {
            if Some(conn.id) == except || !conn.is_chatting() {
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

    /// Something a client did that the others must hear of: delivered now when the chat is
    /// local, published when it is shared (and delivered when it comes back).
    pub fn emit(&mut self, conn: u64, what: What) {
        let event = self.event(conn, what);
        self.emit_event(event);
    }

    /// An event of this instance: `conn` is the connection it is about (0 for the instance
    /// itself).
    fn event(&self, conn: u64, what: What) -> Event {
        Event {
            origin: self.instance.clone(),
            conn,
            what,
        }
    }

    fn emit_event(&mut self, event: Event) {
        match &mut self.cluster {
            Some(cluster) if cluster.up => cluster.outbox.push(Outgoing::Publish(event)),
            _ => self.deliver(&event),
        }
    }

    /// What an event means for this instance's clients: the one place where chat becomes
    /// output, for local events and for events from the backplane alike. The client the
    /// event came from (same instance, same connection id) does not get its own line back.
    pub fn deliver(&mut self, event: &Event) {
        let mine = event.origin == self.instance;
        let except = mine.then_some(event.conn);
        if !mine && let Some(cluster) = &mut self.cluster {
            let stranger = cluster.replica.apply(event, Instant::now());
            // A new instance: introduce this one now, so its /who is right at once.
            if stranger && cluster.up {
                let hello = self.hello();
                self.emit_event(hello);
            }
        }
        match &event.what {
            What::Say { nick, text } => self.broadcast(except, &protocol::chat_line(nick, text)),
            What::Me { nick, action } => {
                self.broadcast(except, &protocol::action_line(nick, action));
            }
            What::Joined { nick } if !self.quiet_joins => {
                self.broadcast(except, &protocol::joined(nick));
            }
            What::Left { nick, reason } if !self.quiet_joins => {
                self.broadcast(except, &protocol::left(nick, reason));
            }
            // Everyone sees it, the renamed client included: that is its confirmation.
            What::Renamed { old, new } => self.broadcast(None, &protocol::renamed(old, new)),
            What::Msg { from, to, text } => {
                if let Some(&token) = self.nicks.get(&protocol::nick_key(to)) {
                    self.send_to(token, &protocol::private_line(from, text));
                }
            }
            What::Joined { .. } | What::Left { .. } | What::Hello { .. } | What::Bye => {}
        }
    }

    /// This instance's `HELLO`: every client it has.
    fn hello(&self) -> Event {
        let nicks = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_chatting())
            .map(|(_, c)| c.nick.clone())
            .collect();
        self.event(0, What::Hello { nicks })
    }

    /// Asks Redis for a nick (shared chat, backplane up; otherwise there is nobody to ask).
    fn claim(&mut self, conn: ConnRef, nick: &str, purpose: Purpose) {
        if let Some(cluster) = &mut self.cluster
            && cluster.up
        {
            let nick = nick.to_string();
            cluster.outbox.push(Outgoing::Claim(Claim {
                conn,
                nick,
                purpose,
            }));
        }
    }

    /// Gives a nick's key in Redis back (if the backplane is down, it expires instead).
    fn release(&mut self, nick: &str) {
        if let Some(cluster) = &mut self.cluster
            && cluster.up
        {
            cluster.outbox.push(Outgoing::Release(nick.to_string()));
        }
    }

    /// Redis answered a claim.
    pub fn claim_answered(&mut self, claim: Claim, ok: bool) {
        let Claim {
            conn,
            nick,
            purpose,
        } = claim;
        if let Some(cluster) = &mut self.cluster {
            cluster.claiming.remove(&protocol::nick_key(&nick));
        }
        if purpose == Purpose::Rename
            && let Some(c) = self.get(conn)
            && std::mem::take(&mut c.waiting_for_nick)
            && let Some(cluster) = &mut self.cluster
        {
            cluster.resumed.push(conn);
        }
        let current = self
            .get(conn)
            .filter(|c| c.is_chatting())
            .map(|c| c.nick.clone());
        match (purpose, current) {
            // `/nick` granted, or refused.
            (Purpose::Rename, Some(_)) if ok => {
                if let Some(cluster) = &mut self.cluster {
                    cluster.replica.forget(&nick);
                }
                self.apply_rename(conn.token, &nick);
            }
            (Purpose::Rename, Some(_)) => self.send_to(conn.token, &protocol::nick_taken(&nick)),
            // Another instance holds a nick this client already goes by (a guest nick that
            // collided, or one taken elsewhere while Redis was away): a fresh guest nick.
            (Purpose::Keep, Some(current)) if !ok && current == nick => {
                let guest = self.free_guest_nick();
                warn!(
                    "token {}: nick {nick} is held by another instance; now {guest}",
                    conn.token
                );
                let notice = protocol::server_line(format_args!(
                    "nick \"{nick}\" is taken on another instance; you are now {guest}"
                ));
                self.send_to(conn.token, &notice);
                self.apply_rename(conn.token, &guest);
                self.claim(conn, &guest, Purpose::Keep);
            }
            // The client left (or changed nick) while Redis was answering: a nick granted to
            // nobody goes back at once.
            (Purpose::Rename, None) if ok => self.release(&nick),
            _ => {}
        }
    }

    /// The backplane is up: from now on events are published. Every client's nick is claimed
    /// again (it may have been taken elsewhere while Redis was away), this instance says hello,
    /// and a marker follows so the loop knows when every claim is answered.
    pub fn backplane_up(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.up = true;
        self.refresh_nicks();
        if let Some(cluster) = &mut self.cluster {
            cluster.outbox.push(Outgoing::Resync);
        }
    }

    /// Every nick claim made on reconnecting is answered: if clients were told the chat was
    /// local only, they hear that it is shared again.
    pub fn backplane_resynced(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if std::mem::take(&mut cluster.told_down) {
            info!("backplane back: telling {} clients", self.members());
            self.tell_everyone(protocol::BACKPLANE_BACK);
        }
    }

    /// Every TTL / 3 while up: refresh every client's nick in Redis, say hello, and forget
    /// instances not heard from for a whole TTL.
    pub fn refresh_nicks(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.replica.expire(Instant::now(), cluster.nick_ttl);
        if !cluster.up {
            return;
        }
        let chatting: Vec<(ConnRef, String)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_chatting())
            .map(|(t, c)| (c.conn_ref(t), c.nick.clone()))
            .collect();
        for (conn, nick) in chatting {
            self.claim(conn, &nick, Purpose::Keep);
        }
        let hello = self.hello();
        self.emit_event(hello);
    }

    /// The backplane is down: chat is local only. Events not yet sent are delivered here;
    /// `/nick`s waiting for Redis are granted locally (as any `/nick` is while Redis is away;
    /// the re-claim on its return settles conflicts); clients are told, once per outage.
    pub fn backplane_down(&mut self, lost: Vec<Claim>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.up = false;
        cluster.replica.clear();
        cluster.claiming.clear();
        let tell = !std::mem::replace(&mut cluster.told_down, true);
        let mut claims = lost;
        for outgoing in std::mem::take(&mut cluster.outbox) {
            match outgoing {
                Outgoing::Publish(event) => self.deliver(&event),
                Outgoing::Claim(claim) => claims.push(claim),
                Outgoing::Release(_) | Outgoing::Resync => {}
            }
        }
        for claim in claims {
            let free = !self.nicks.contains_key(&protocol::nick_key(&claim.nick));
            if claim.purpose == Purpose::Rename {
                self.claim_answered(claim, free);
            }
        }
        if tell {
            self.tell_everyone(protocol::BACKPLANE_DOWN);
        }
    }

    /// Clients to read again: their `/nick` has its answer.
    pub fn take_resumed(&mut self) -> Vec<ConnRef> {
        self.cluster
            .as_mut()
            .map_or_else(Vec::new, |c| std::mem::take(&mut c.resumed))
    }

    /// What the loop must send to Redis now.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.cluster
            .as_mut()
            .map_or_else(Vec::new, |c| std::mem::take(&mut c.outbox))
    }

    /// A server line to every chatting client.
    fn tell_everyone(&mut self, line: &str) {
        self.broadcast(None, line);
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

    /// `guest-N`; in a shared chat `guest-TAG-N`, TAG from the instance id, so that guest
    /// nicks rarely collide across instances. Rarely is enough: a guest nick is claimed in
    /// Redis like any other, and one that another instance holds is replaced.
    fn free_guest_nick(&mut self) -> String {
        loop {
            let nick = match &self.cluster {
                Some(c) => format!("guest-{}-{}", c.guest_tag, self.next_guest),
                None => format!("guest-{}", self.next_guest),
            };
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
