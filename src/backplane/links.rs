//! The backplane's two connections to Redis, as one: connecting, the reply FIFO, decoding
//! what arrives, and reconnecting with backoff when anything goes wrong. This is the part of
//! the Redis bus that speaks Redis; `mod.rs` is the part that speaks chat.
//!
//! The two connections live and die together ([`State`]):
//!
//! ```text
//!   Connecting ──(both ready: PONG and the subscription confirmed)──► Up
//!       ▲   │                                                         │
//!       │   └─(refused, closed, timeout, error reply, garbage)─┐      │(same, or silent
//!       │                                                       ▼      ▼ for a whole TTL)
//!       └────────────(retry timer: 100 ms doubling to 5 s)──── Down { retry_at }
//! ```
//!
//! Anything unexpected from Redis (an error it should not send, a reply nobody asked for,
//! bytes that are not RESP, more output than it reads, silence) closes both connections:
//! they are re-opened from a clean state. The server never panics over what Redis says.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::{Registry, Token};
use serde::Serialize;

use super::BackplaneConfig;
use super::event::Origins;
use super::link::{Link, LinkPhase, Role};
use super::resp::{self, Value};
use crate::bus::{Claim, Event, Origin};
use crate::error::{Error, describe};
use crate::limits::{
    BACKPLANE_CONNECT_TIMEOUT, BACKPLANE_MAX_OUTPUT, BACKPLANE_RETRY_FIRST, BACKPLANE_RETRY_MAX,
};

/// Claims a nick for this instance, or refreshes the claim if it is already this instance's.
/// `KEYS[1]` the nick's key, `ARGV[1]` the instance id, `ARGV[2]` the TTL in ms. 1: ours now;
/// 0: another instance has it.
const CLAIM_SCRIPT: &str = "\
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// Deletes a nick's key only if it is still this instance's (after expiring it may have been
/// claimed by another instance, which must keep it).
const RELEASE_SCRIPT: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// The two connections, as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connecting (or re-connecting), both connections at once; given up at `deadline`.
    Connecting { deadline: Instant },
    /// Both connections ready: events are published and received.
    Up,
    /// No connection; the next attempt is at `retry_at`.
    Down { retry_at: Instant },
}

/// What one reply on the command connection is for, in the order the commands were sent.
#[derive(Debug)]
pub enum Awaiting {
    /// `PING` on connecting: `PONG` proves Redis is there and speaks RESP.
    Handshake,
    Publish,
    Claim(Claim),
    Release,
    /// A `PING` sent after the re-claims that follow a reconnect: its `PONG` means they are
    /// all answered.
    Resync,
}

impl Awaiting {
    /// The command, as the log names it.
    fn describe(&self) -> &'static str {
        match self {
            Awaiting::Handshake | Awaiting::Resync => "PING",
            Awaiting::Publish => "PUBLISH",
            Awaiting::Claim(_) => "a nick claim",
            Awaiting::Release => "a nick release",
        }
    }
}

/// What the bus asks the connections to send.
#[derive(Debug)]
pub enum Outgoing {
    Publish(Event),
    Claim(Claim),
    Release(String),
    /// Mark the end of the re-claims after a reconnect (answered by [`Happening::Resynced`]).
    Resync,
}

/// What the connections report to the bus.
#[derive(Debug)]
pub enum Happening {
    /// Both connections are ready: publish from now on, and re-claim every nick.
    Up,
    /// The backplane is gone (or could not be reached): chat is local only. `lost` are the
    /// claims that were waiting for an answer that will never come.
    Down { lost: Vec<Claim> },
    /// An event from the channel (this instance's own included).
    Event(Event),
    /// Redis answered a nick claim: `ok` if the nick is this instance's.
    Claimed { claim: Claim, ok: bool },
    /// Every re-claim sent on reconnecting is answered.
    Resynced,
}

/// What `--stats-udp` reports of the backplane, in this order.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub state: &'static str,
    pub published: u64,
    pub received: u64,
    pub reconnects: u64,
}

/// Counts since the server started.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub published: u64,
    pub received: u64,
    /// Connection attempts after the first.
    pub reconnects: u64,
}

/// Both connections, the reply FIFO, the state, the counters.
#[derive(Debug)]
pub struct Links {
    config: BackplaneConfig,
    /// The Redis address, resolved once at start-up (resolving is a blocking call).
    addr: SocketAddr,
    /// This instance's id, unique per process: the value of its nick keys, the origin of its
    /// events.
    instance: String,
    /// The instances heard of on the channel, by name (see [`Origins`]).
    origins: Origins,
    sub: Link,
    cmd: Link,
    /// What each reply still to come on the command connection is for, oldest first.
    awaiting: VecDeque<Awaiting>,
    state: State,
    /// Wait before the next attempt after a failure: doubles up to its cap, reset once up.
    backoff: Duration,
    /// The loss has been logged as a warning (once per outage; retries log at debug).
    warned: bool,
    /// A deadline the loop must set a timer for (see [`Links::take_timer`]).
    timer: Option<Instant>,
    /// `CHANNEL:nick:`, the prefix of every nick key.
    nick_prefix: String,
    /// When each connection last brought something from Redis (see [`Links::check_alive`]).
    heard_on_sub: Instant,
    heard_on_cmd: Instant,
    pub counters: Counters,
}

impl Links {
    /// Resolves Redis's address (once: a blocking call, so only at start-up) and picks this
    /// instance's id. Connecting starts with [`Links::start`].
    /// An instance said goodbye or fell silent: its name is forgotten (see [`Origins`]).
    pub fn forget(&mut self, origin: Origin) {
        self.origins.forget(origin);
    }

    pub fn new(config: BackplaneConfig, instance: String) -> Result<Links, Error> {
        let url = &config.url;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::Backplane(format!(
                    "cannot resolve the backplane host {}: {}",
                    url.host,
                    describe(&e)
                ))
            })?
            .next()
            .ok_or_else(|| {
                Error::Backplane(format!("the backplane host {} has no address", url.host))
            })?;
        let nick_prefix = format!("{}:nick:", url.channel);
        Ok(Links {
            config,
            addr,
            origins: Origins::new(&instance),
            instance,
            sub: Link::new(Role::Subscriber, Token(0)),
            cmd: Link::new(Role::Commands, Token(0)),
            awaiting: VecDeque::new(),
            state: State::Down {
                retry_at: Instant::now(),
            },
            backoff: BACKPLANE_RETRY_FIRST,
            warned: false,
            timer: None,
            nick_prefix,
            heard_on_sub: Instant::now(),
            heard_on_cmd: Instant::now(),
            counters: Counters::default(),
        })
    }

    /// Starts the first connection, under these two tokens.
    pub fn start(
        &mut self,
        sub: Token,
        cmd: Token,
        registry: &Registry,
        now: Instant,
        out: &mut Vec<Happening>,
    ) {
        self.sub.token = sub;
        self.cmd.token = cmd;
        info!(
            "backplane: {} (instance {}, nick TTL {} s)",
            self.config.url,
            self.instance,
            self.config.nick_ttl.as_secs_f64()
        );
        self.connect(registry, now, out);
    }

    pub fn nick_ttl(&self) -> Duration {
        self.config.nick_ttl
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// A deadline the backplane needs a timer for, if it set one since asked.
    pub fn take_timer(&mut self) -> Option<Instant> {
        self.timer.take()
    }

    /// The counters and state, for `--stats-udp`.
    pub fn stats(&self) -> Stats {
        let state = match self.state {
            State::Connecting { .. } => "connecting",
            State::Up => "up",
            State::Down { .. } => "down",
        };
        Stats {
            state,
            published: self.counters.published,
            received: self.counters.received,
            reconnects: self.counters.reconnects,
        }
    }

    fn connect(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        debug!("backplane: connecting to {}", self.addr);
        self.state = State::Connecting {
            deadline: now + BACKPLANE_CONNECT_TIMEOUT,
        };
        self.timer = Some(now + BACKPLANE_CONNECT_TIMEOUT);
        let opened = self
            .sub
            .open(self.addr, registry)
            .and_then(|()| self.cmd.open(self.addr, registry));
        if let Err(e) = opened {
            let reason = format!("cannot connect to {}: {}", self.addr, describe(&e));
            self.fail(&reason, registry, now, out);
        }
    }

    /// A deadline passed: retry if down, give up if a connect hangs.
    /// (Timers are never cancelled; one that is no longer wanted finds nothing to do.)
    pub fn on_timer(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        match self.state {
            State::Down { retry_at } if retry_at <= now => {
                self.counters.reconnects += 1;
                self.connect(registry, now, out);
            }
            State::Connecting { deadline } if deadline <= now => {
                let reason = format!(
                    "no answer from {} within {} s",
                    self.addr,
                    BACKPLANE_CONNECT_TIMEOUT.as_secs_f64()
                );
                self.fail(&reason, registry, now, out);
            }
            _ => {}
        }
    }

    /// Every TTL / 3, while up: a Redis that hangs (stopped, or a network that drops
    /// everything) closes no connection, so silence is the only sign. This instance publishes a
    /// `HELLO` every TTL / 3 and hears it back on the subscriber, and the command connection
    /// always has replies due then; so nothing heard on either for a whole TTL means Redis is
    /// gone, and the backplane is re-opened as for any failure.
    pub fn check_alive(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        if self.state != State::Up {
            return;
        }
        let ttl = self.config.nick_ttl;
        let silent = |since: Instant| now.saturating_duration_since(since) > ttl;
        let waiting = !self.awaiting.is_empty();
        if silent(self.heard_on_sub) || (waiting && silent(self.heard_on_cmd)) {
            let reason = format!("Redis has not answered for over {} s", ttl.as_secs_f64());
            self.fail(&reason, registry, now, out);
        }
    }

    /// A readiness event for one of the two connections: finish a connect, read and decode
    /// replies, write what is waiting. Any trouble takes the backplane down.
    pub fn handle(
        &mut self,
        token: Token,
        readable: bool,
        registry: &Registry,
        scratch: &mut [u8],
        now: Instant,
        out: &mut Vec<Happening>,
    ) {
        let role = if token == self.sub.token {
            Role::Subscriber
        } else {
            Role::Commands
        };
        if let Err(reason) = self.serve(role, readable, registry, scratch, now, out) {
            self.fail(&reason, registry, now, out);
        }
    }

    /// Whether a connection still had bytes to read when its read budget ran out.
    pub fn has_unread(&self) -> bool {
        self.sub.unread || self.cmd.unread
    }

    /// Step 3 of the loop for the backplane: reads on where the budget stopped last turn.
    pub fn serve_unread(
        &mut self,
        registry: &Registry,
        scratch: &mut [u8],
        now: Instant,
        out: &mut Vec<Happening>,
    ) {
        for role in [Role::Subscriber, Role::Commands] {
            let link = self.link(role);
            if std::mem::take(&mut link.unread) {
                let token = link.token;
                self.handle(token, true, registry, scratch, now, out);
            }
        }
    }

    fn link(&mut self, role: Role) -> &mut Link {
        match role {
            Role::Subscriber => &mut self.sub,
            Role::Commands => &mut self.cmd,
        }
    }

    fn serve(
        &mut self,
        role: Role,
        readable: bool,
        registry: &Registry,
        scratch: &mut [u8],
        now: Instant,
        out: &mut Vec<Happening>,
    ) -> Result<(), String> {
        let addr = self.addr;
        let link = self.link(role);
        // An event after the backplane went down in this batch: nothing to serve.
        if link.socket.is_none() {
            return Ok(());
        }
        if link.phase == LinkPhase::Connecting {
            match link.finish_connect() {
                Ok(false) => return Ok(()),
                Ok(true) => self.greet(role),
                Err(e) => return Err(format!("cannot connect to {addr}: {}", describe(&e))),
            }
        }
        let link = self.link(role);
        if readable {
            let name = link.name();
            let before = link.input.len();
            let drained = link
                .read(scratch)
                .map_err(|e| format!("{name}: {}", describe(&e)))?;
            link.unread = !drained;
            if link.input.len() > before {
                match role {
                    Role::Subscriber => self.heard_on_sub = now,
                    Role::Commands => self.heard_on_cmd = now,
                }
            }
            self.decode_all(role, out)?;
        }
        self.flush_link(role, registry)?;
        if matches!(self.state, State::Connecting { .. })
            && self.sub.phase == LinkPhase::Ready
            && self.cmd.phase == LinkPhase::Ready
        {
            self.state = State::Up;
            (self.heard_on_sub, self.heard_on_cmd) = (now, now);
            self.backoff = BACKPLANE_RETRY_FIRST;
            self.warned = false;
            info!(
                "backplane up: {} (instance {})",
                self.config.url, self.instance
            );
            out.push(Happening::Up);
        }
        Ok(())
    }

    /// A connection's first command, once connected.
    fn greet(&mut self, role: Role) {
        match role {
            Role::Subscriber => {
                let channel = self.config.url.channel.clone();
                resp::command(&mut self.sub.output, &[b"SUBSCRIBE", channel.as_bytes()]);
            }
            Role::Commands => {
                resp::command(&mut self.cmd.output, &[b"PING"]);
                self.awaiting.push_back(Awaiting::Handshake);
            }
        }
    }

    fn flush_link(&mut self, role: Role, registry: &Registry) -> Result<(), String> {
        let link = self.link(role);
        let name = link.name();
        link.flush(registry)
            .map_err(|e| format!("{name}: {}", describe(&e)))?;
        if link.unsent() > BACKPLANE_MAX_OUTPUT {
            return Err(format!(
                "Redis is not reading: over {BACKPLANE_MAX_OUTPUT} bytes waiting for it"
            ));
        }
        Ok(())
    }

    /// Decodes every complete reply in a connection's read buffer; keeps an incomplete one.
    fn decode_all(&mut self, role: Role, out: &mut Vec<Happening>) -> Result<(), String> {
        // The buffer is taken out of the link while its replies, which borrow from it, are
        // handled with the rest of `self`; what is left is put back.
        let mut input = std::mem::take(&mut self.link(role).input);
        let mut used = 0;
        let result = loop {
            match resp::decode(&input[used..]) {
                Ok(None) => break Ok(()),
                Ok(Some((value, n))) => {
                    used += n;
                    let handled = match role {
                        Role::Subscriber => self.on_push(value, out),
                        Role::Commands => self.on_reply(value, out),
                    };
                    if let Err(reason) = handled {
                        break Err(reason);
                    }
                }
                Err(e) => break Err(format!("Redis sent something that is not RESP: {e}")),
            }
        };
        input.drain(..used);
        self.link(role).input = input;
        result
    }

    /// One message on the subscriber: the subscription's confirmation, then events.
    fn on_push(&mut self, value: Value<'_>, out: &mut Vec<Happening>) -> Result<(), String> {
        let unexpected =
            |value: &Value<'_>| format!("unexpected message from Redis: {}", value.describe());
        let Value::Array(Some(items)) = &value else {
            return Err(unexpected(&value));
        };
        match (self.sub.phase, items.as_slice()) {
            (LinkPhase::Handshake, [kind, _, Value::Integer(_)])
                if kind.bytes() == Some(b"subscribe") =>
            {
                self.sub.phase = LinkPhase::Ready;
                Ok(())
            }
            (LinkPhase::Ready, [kind, _, payload]) if kind.bytes() == Some(b"message") => {
                let payload = payload.bytes().ok_or_else(|| unexpected(&value))?;
                self.counters.received += 1;
                match Event::decode(payload, &mut self.origins) {
                    Ok(event) => {
                        trace!("backplane: received {}", resp::lossy(payload));
                        out.push(Happening::Event(event));
                    }
                    // Someone else publishing on the channel, or a newer pollchat: the
                    // connection is fine, the message is skipped.
                    Err(why) => debug!(
                        "backplane: skipped a message that is not an event ({why}): {}",
                        resp::lossy(payload)
                    ),
                }
                Ok(())
            }
            _ => Err(unexpected(&value)),
        }
    }

    /// One reply on the command connection, matched with what it answers.
    fn on_reply(&mut self, value: Value<'_>, out: &mut Vec<Happening>) -> Result<(), String> {
        let Some(awaiting) = self.awaiting.pop_front() else {
            return Err(format!(
                "Redis sent a reply nobody asked for: {}",
                value.describe()
            ));
        };
        if let Value::Error(text) = value {
            return Err(format!(
                "Redis answered {} with an error: {}",
                awaiting.describe(),
                resp::lossy(text)
            ));
        }
        match (awaiting, value) {
            (Awaiting::Handshake, Value::Simple(b"PONG")) => self.cmd.phase = LinkPhase::Ready,
            (Awaiting::Publish | Awaiting::Release, Value::Integer(_)) => {}
            (Awaiting::Claim(claim), Value::Integer(n @ (0 | 1))) => {
                debug!(
                    "backplane: claim of {} {}",
                    claim.nick,
                    if n == 1 { "granted" } else { "refused" }
                );
                out.push(Happening::Claimed { claim, ok: n == 1 });
            }
            (Awaiting::Resync, Value::Simple(b"PONG")) => out.push(Happening::Resynced),
            (awaiting, value) => {
                return Err(format!(
                    "Redis answered {} with an unexpected {}",
                    awaiting.describe(),
                    value.describe()
                ));
            }
        }
        Ok(())
    }

    /// Queues what the chat asked for on the command connection (sent by
    /// [`Links::flush`]). Only while up: the chat sends nothing otherwise.
    pub fn send(&mut self, outgoing: Outgoing) {
        if self.state != State::Up {
            return;
        }
        let ttl_ms = self.config.nick_ttl.as_millis().max(1).to_string();
        let out = &mut self.cmd.output;
        let awaiting = match outgoing {
            Outgoing::Publish(event) => {
                let payload = event.encode(&self.instance);
                trace!("backplane: publishing {payload}");
                let channel = self.config.url.channel.as_bytes();
                resp::command(out, &[b"PUBLISH", channel, payload.as_bytes()]);
                self.counters.published += 1;
                Awaiting::Publish
            }
            Outgoing::Claim(claim) => {
                let key = format!(
                    "{}{}",
                    self.nick_prefix,
                    crate::protocol::nick_key(&claim.nick)
                );
                let id = self.instance.as_bytes();
                resp::command(
                    out,
                    &[
                        b"EVAL",
                        CLAIM_SCRIPT.as_bytes(),
                        b"1",
                        key.as_bytes(),
                        id,
                        ttl_ms.as_bytes(),
                    ],
                );
                Awaiting::Claim(claim)
            }
            Outgoing::Release(nick) => {
                let key = format!("{}{}", self.nick_prefix, crate::protocol::nick_key(&nick));
                let id = self.instance.as_bytes();
                resp::command(
                    out,
                    &[b"EVAL", RELEASE_SCRIPT.as_bytes(), b"1", key.as_bytes(), id],
                );
                Awaiting::Release
            }
            Outgoing::Resync => {
                resp::command(out, &[b"PING"]);
                Awaiting::Resync
            }
        };
        self.awaiting.push_back(awaiting);
    }

    /// End of the batch: writes what was queued, on both connections.
    pub fn flush(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        if self.state == State::Up
            && let Err(reason) = self
                .flush_link(Role::Commands, registry)
                .and_then(|()| self.flush_link(Role::Subscriber, registry))
        {
            self.fail(&reason, registry, now, out);
        }
    }

    /// Closes both connections and schedules the next attempt. Claims still waiting for an
    /// answer are handed back to the chat as lost.
    fn fail(&mut self, reason: &str, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        let retry_in = self.backoff;
        if self.warned {
            debug!(
                "backplane still unavailable: {reason}; retrying in {} ms",
                retry_in.as_millis()
            );
        } else {
            warn!(
                "backplane lost: {reason}; chat is local only, retrying in {} ms",
                retry_in.as_millis()
            );
            self.warned = true;
        }
        self.sub.close(registry);
        self.cmd.close(registry);
        let lost = std::mem::take(&mut self.awaiting)
            .into_iter()
            .filter_map(|a| match a {
                Awaiting::Claim(claim) => Some(claim),
                _ => None,
            })
            .collect();
        self.state = State::Down {
            retry_at: now + retry_in,
        };
        self.timer = Some(now + retry_in);
        self.backoff = (self.backoff * 2).min(BACKPLANE_RETRY_MAX);
        out.push(Happening::Down { lost });
    }
}
