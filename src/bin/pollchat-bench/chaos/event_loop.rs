//! A round's one mio loop, built like the server's: every client of the round in one `Poll`
//! and one `Slab`, each turn first the timed actions (sends, pings, vanishings), then one
//! poll and its events, handed to the client's role (`roles.rs`). The round (`round.rs`)
//! opens clients and runs turns until its phase is over.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;
use slab::Slab;
use socket2::SockRef;

use super::client::{After, Client, Listener, TlsTarget, WsFraming, close};
use super::roles::{
    MISBEHAVING, MISBEHAVING_TLS, MISBEHAVING_WS, Role, TARGET_DOSE, service, timed,
};
use super::rooms::{Layout, SECOND_ROOM};
use super::round::{ChatterLog, Context, Plan, Target};
use crate::BenchArgs;
use crate::worker::connect;

/// A client's TLS session or WebSocket framing, if it has one.
type Transport = (Option<Box<ClientConnection>>, Option<Box<WsFraming>>);

/// Longest a loop turn sleeps in `poll`, so timed actions (sends, pings, vanishings) are
/// punctual.
const TICK: Duration = Duration::from_millis(2);

/// The run's connections and its loop.
pub(super) struct Chaos {
    target: SocketAddr,
    tls: Option<TlsTarget>,
    /// The server's HTTP listener (`--ws-target`), if the run has one.
    ws: Option<SocketAddr>,
    /// The misbehaving roles started in turn: [`MISBEHAVING`], [`MISBEHAVING_TLS`] with a
    /// TLS target and [`MISBEHAVING_WS`] with a WebSocket one.
    pub(super) misbehaving: Vec<Role>,
    poll: Poll,
    events: Events,
    pub(super) clients: Slab<Client>,
    pub(super) ctx: Context,
    /// Misbehaving clients started so far (picks the next role and varies behaviour).
    pub(super) started: u64,
    /// xorshift state: lifetimes are random but the same for the same `--seed`.
    rng: u64,
    last_timed: Instant,
}

impl Chaos {
    /// A round's loop, with no client yet; `doses` are those of the rounds before.
    pub(super) fn new(args: &BenchArgs, plan: &Plan, doses: [u32; 3]) -> io::Result<Chaos> {
        let (target, tls, ws) = (plan.target, plan.tls.as_ref(), plan.ws);
        let mut misbehaving = MISBEHAVING.to_vec();
        if tls.is_some() {
            misbehaving.extend(MISBEHAVING_TLS);
        }
        if ws.is_some() {
            misbehaving.extend(MISBEHAVING_WS);
        }
        Ok(Chaos {
            target,
            tls: tls.cloned(),
            ws,
            misbehaving,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            clients: Slab::new(),
            ctx: Context::new(args, plan.chat_interval, doses)?,
            started: 0,
            rng: args.seed.max(1),
            last_timed: Instant::now(),
        })
    }

    /// Misbehaving clients connected now, what `--conns` caps (storms come on top).
    pub(super) fn misbehaving_now(&self) -> usize {
        self.clients
            .iter()
            .filter(|(_, c)| !c.role.well_behaved() && c.role != Role::Storm)
            .count()
    }

    /// A random number of milliseconds in `low..=high` (xorshift64).
    fn random_ms(&mut self, (low, high): (u64, u64)) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Duration::from_millis(low + self.rng % (high - low + 1))
    }

    /// Starts a client of `role` connecting.
    pub(super) fn open(&mut self, role: Role) {
        let serial = if role.well_behaved() {
            0
        } else {
            self.started += 1;
            self.started
        };
        let until = Instant::now() + self.random_ms(role.lifetime_ms());
        let listener = role.listener(self.tls.is_some(), self.ws.is_some());
        let kind = role.kind(listener);
        if let Role::Chatter(n) = role
            && let Some(log) = self.ctx.chatters.get_mut(n as usize)
        {
            log.listener = listener;
        }
        // A session or framing is made before the connect: neither needs the socket yet.
        let prepared = self
            .address(listener)
            .and_then(|addr| Ok((addr, self.transport(role, listener)?)));
        let tally = self.ctx.tallies.entry(kind).or_default();
        tally.opened += 1;
        let entry = self.clients.vacant_entry();
        let registered = prepared.and_then(|(addr, (tls, ws))| {
            let mut stream = connect(addr, role.source(), role.receive_buffer())?;
            if let Some(bytes) = role.send_buffer() {
                SockRef::from(&stream).set_send_buffer_size(bytes)?;
            }
            self.poll.registry().register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok((stream, tls, ws))
        });
        match registered {
            Ok((stream, tls, ws)) => {
                let mut client = Client::new(stream, tls, ws, role, kind, serial, until);
                client.home = match role {
                    Role::Chatter(n) => self.ctx.layout.room_of(n),
                    Role::Witness(n) | Role::Checker(n) => Layout::room(n),
                    Role::Operator => SECOND_ROOM,
                    _ => client.home,
                };
                entry.insert(client);
            }
            Err(e) => {
                tally.failed += 1;
                if role.well_behaved() {
                    self.ctx.lost.push(format!("{kind} could not connect: {e}"));
                }
            }
        }
    }

    /// Where a client on `listener` connects; `Err` for one the run does not have (no role
    /// is given one).
    fn address(&self, listener: Listener) -> io::Result<SocketAddr> {
        match listener {
            Listener::Plain => Some(self.target),
            Listener::Tls => self.tls.as_ref().map(|t| t.addr),
            Listener::Http => self.ws,
        }
        .ok_or_else(|| io::Error::other("the run has no such listener"))
    }

    /// What a new client of `role` on `listener` talks through: a TLS session (its
    /// ClientHello ready), WebSocket framing (its upgrade ready), or neither, for plain
    /// clients and for those that abuse a port without speaking its protocol.
    fn transport(&self, role: Role, listener: Listener) -> io::Result<Transport> {
        match (listener, &self.tls) {
            (Listener::Tls, Some(tls)) if role.has_session() => {
                Ok((Some(tls.session().map_err(io::Error::other)?), None))
            }
            (Listener::Http, _) if role.upgrades() => {
                Ok((None, Some(Box::new(WsFraming::upgrading()))))
            }
            _ => Ok((None, None)),
        }
    }

    /// Runs loop turns until `done` holds or `limit` passes; whether `done` held.
    pub(super) fn run_until(&mut self, limit: Duration, done: impl Fn(&Chaos) -> bool) -> bool {
        let started = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            if started.elapsed() >= limit {
                return false;
            }
            self.turn();
        }
    }

    /// One loop turn: timed actions (at most once a millisecond), then one poll and its
    /// events.
    pub(super) fn turn(&mut self) {
        let now = Instant::now();
        if now - self.last_timed >= Duration::from_millis(1) {
            self.last_timed = now;
            self.choose_target();
            super::operator::act(self);
            let ctx = &mut self.ctx;
            self.clients.retain(|_, client| {
                let after = timed(client, ctx, now);
                if after == After::Close {
                    close(client);
                }
                after == After::Keep
            });
        }
        if self.poll.poll(&mut self.events, Some(TICK)).is_err() {
            return;
        }
        for event in self.events.iter() {
            let Token(key) = event.token();
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            if service(client, &mut self.ctx) == After::Close {
                close(client);
                self.clients.remove(key);
            }
        }
    }

    /// Keeps the flooders' target until it has had its dose or is gone; then takes, of the
    /// connected non-readers never aimed at, one of the kind (plain, TLS or WebSocket: the
    /// listener it is on) that has had the fewest doses, and of those the one due to stay
    /// longest, so that it has time to be cut off as too slow before it goes. Taking the
    /// kinds in turn, and going on with the turn in the next round, matters on a loaded
    /// machine, where a round's flood may manage only a dose or two: every kind must get its
    /// dose in the run. (Taken afresh each round, WebSocket first, the turn would never reach
    /// a TLS non-reader in a run that manages one dose a round; in one of ten runs of the
    /// chaos test, the server cut off only 3 clients as too slow in its two rounds.)
    fn choose_target(&mut self) {
        if let Some(t) = &self.ctx.target {
            if t.aimed >= TARGET_DOSE {
                self.ctx.doses[t.kind as usize] += 1;
            } else if self
                .clients
                .get(t.key)
                .is_some_and(|c| c.role.non_reader() && c.nick == t.nick)
            {
                return;
            }
        }
        let (tls, http) = (self.tls.is_some(), self.ws.is_some());
        let kind = |role: Role| role.listener(tls, http);
        let Context {
            doses,
            dosed,
            target,
            ..
        } = &mut self.ctx;
        let due = due_kind(*doses, tls, http);
        // The round's first dose waits for a non-reader of the kind due: a dose started on
        // another may take the whole round. (A TLS one is ready later than the others: it
        // has a handshake to finish first.)
        let first = !*dosed;
        *target = self
            .clients
            .iter_mut()
            // A TLS non-reader has a nick once its handshake is over.
            .filter(|(_, c)| c.role.non_reader() && !c.nick.is_empty() && !c.aimed_at)
            .filter(|(_, c)| !first || kind(c.role) == due)
            .max_by_key(|(_, c)| (kind(c.role) == due, c.until))
            .map(|(key, c)| {
                c.aimed_at = true;
                *dosed = true;
                Target {
                    key,
                    nick: c.nick.clone(),
                    kind: kind(c.role),
                    aimed: 0,
                }
            });
    }

    /// Every chatter has every line sent so far by the others in its room, each witness every
    /// chatter line of its room (so everything said before them too), and every ping is
    /// answered.
    pub(super) fn drained(&self) -> bool {
        let chatters = &self.ctx.chatters;
        let said_in = |room: &str| -> u64 {
            chatters
                .iter()
                .filter(|c| c.room == room)
                .map(ChatterLog::sent)
                .sum()
        };
        let totals = self
            .ctx
            .layout
            .each()
            .map(|(room, _)| (room, said_in(room)));
        let total_in = |room: &str| totals.iter().find(|(r, _)| *r == room).map_or(0, |t| t.1);
        chatters
            .iter()
            .all(|c| c.received.len() as u64 >= total_in(c.room).saturating_sub(c.sent()))
            && self
                .ctx
                .witnessed
                .iter()
                .all(|w| w.said >= total_in(w.room))
            && self.ctx.pings.pending.is_empty()
    }
}

/// The kind of non-reader (the listener it is on) due for the flooders' next dose, of those
/// the run has (`tls`, `http`), given the `doses` each kind had so far in the run: the one
/// with the fewest; on a tie WebSocket, then TLS, then plain. A loaded machine may manage only
/// a dose or two a round, and those go first to the kinds the run has only with
/// `--ws-target` and `--tls-target`, the transports whose slow-consumer path they are there
/// to try (the plain one is tried in every run).
fn due_kind(doses: [u32; 3], tls: bool, http: bool) -> Listener {
    [
        (http, Listener::Http),
        (tls, Listener::Tls),
        (true, Listener::Plain),
    ]
    .into_iter()
    .filter(|&(present, _)| present)
    .map(|(_, kind)| kind)
    // The first of the fewest: the order above breaks ties.
    .min_by_key(|&kind| doses[kind as usize])
    .unwrap_or(Listener::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doses_go_to_each_kind_of_non_reader_in_turn_websocket_first() {
        let mut doses = [0; 3];
        let mut given = Vec::new();
        for _ in 0..6 {
            let kind = due_kind(doses, true, true);
            doses[kind as usize] += 1;
            given.push(kind);
        }
        use Listener::{Http, Plain, Tls};
        assert_eq!(given, [Http, Tls, Plain, Http, Tls, Plain]);
        // A kind that fell behind (none of it was connected when its turn came) is next.
        assert_eq!(due_kind([3, 1, 2], true, true), Tls);
    }

    #[test]
    fn doses_go_only_to_kinds_the_run_has() {
        assert_eq!(due_kind([5, 0, 0], false, false), Listener::Plain);
        assert_eq!(due_kind([1, 0, 0], false, true), Listener::Http);
        assert_eq!(due_kind([0, 0, 0], true, false), Listener::Tls);
        assert_eq!(due_kind([0, 1, 0], true, false), Listener::Plain);
    }
}
