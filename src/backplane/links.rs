//! The backplane's two connections to Redis, as one, through their life: connecting,
//! reading and writing, noticing silence, and reconnecting with backoff when anything goes
//! wrong. What is said on them (commands, replies, pushes) is `conversation.rs`'s; together
//! they are the part of the Redis bus that speaks Redis, and `mod.rs` the part that speaks chat.
//!
//! The two connections live and die together ([`State`]):
//!
//! ```text
//!   Connecting ──(both ready: PONG, and the stream's history or resume answered)──► Up
//!       ▲   │                                                         │
//!       │   └─(refused, closed, timeout, error reply, garbage)─┐      │(same, or silent
//!       │                                                       ▼      ▼ for a whole TTL)
//!       └────────────(retry timer: 100 ms doubling to 5 s)──── Down { retry_at }
//! ```
//!
//! Anything unexpected from Redis (an error it should not send, a reply nobody asked for,
//! bytes that are not RESP, more output than it reads, silence) closes both connections:
//! they are re-opened from a clean state. The server never panics over what Redis says.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Registry, Token};
use serde::Serialize;

use super::BackplaneConfig;
use super::conversation::{Conversation, Outgoing};
use super::event::Message;
use super::link::{Link, LinkPhase, Role};
use crate::bans::BanList;
use crate::bus::Claim;
use crate::error::{Error, describe};
use crate::limits::{
    BACKPLANE_CONNECT_TIMEOUT, BACKPLANE_MAX_OUTPUT, BACKPLANE_RETRY_FIRST, BACKPLANE_RETRY_MAX,
};

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

/// What the connections report to the bus.
#[derive(Debug)]
pub enum Happening {
    /// Both connections are ready: publish from now on, and re-claim every nick.
    Up,
    /// The backplane is gone (or could not be reached): chat is local only. `lost` are the
    /// claims that were waiting for an answer that will never come.
    Down { lost: Vec<Claim> },
    /// An event from the stream (this instance's own included).
    Heard(Message),
    /// The stream was trimmed past the last entry read here: some events were never read.
    Gap,
    /// The rooms' history, loaded from the stream as the reader first connected, and the
    /// other instances' messages of the last nick TTL in it (who is where).
    History {
        rooms: Vec<crate::state::Saved>,
        recent: Vec<Message>,
    },
    /// Redis answered a nick claim: `ok` if the nick is this instance's.
    Claimed { claim: Claim, ok: bool },
    /// Every re-claim sent on reconnecting is answered.
    Resynced,
    /// The ban hash, read as the connections came up (see `conversation.rs`).
    Bans(Option<BanList>),
}

/// What `--stats-udp` reports of the backplane, in this order.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub state: &'static str,
    pub published: u64,
    pub received: u64,
    pub reconnects: u64,
    /// Entries read after a reconnect that were added while this instance was away.
    pub resumed: u64,
    /// Times the stream was found trimmed past the last entry read.
    pub gaps: u64,
    /// Events Redis had not confirmed when the links dropped, added again once they were
    /// back (those that had landed after all came back through the stream instead).
    pub resent: u64,
    /// Events to send again dropped past [`crate::limits::BACKPLANE_MAX_RESEND`].
    pub resend_dropped: u64,
}

/// Both connections, their state, and what is said on them (a [`Conversation`]).
#[derive(Debug)]
pub struct Links {
    config: BackplaneConfig,
    /// The Redis address, resolved once at start-up (resolving is a blocking call).
    addr: SocketAddr,
    /// This instance's id, for the logs.
    instance: String,
    /// What is said on the connections: commands, replies, pushes.
    pub talk: Conversation,
    reader: Link,
    cmd: Link,
    state: State,
    /// Wait before the next attempt after a failure: doubles up to its cap, reset once up.
    backoff: Duration,
    /// The loss has been logged as a warning (once per outage; retries log at debug).
    warned: bool,
    /// A deadline the loop must set a timer for (see [`Links::take_timer`]).
    timer: Option<Instant>,
    /// When each connection last brought something from Redis (see [`Links::check_alive`]).
    heard_on_reader: Instant,
    heard_on_cmd: Instant,
    /// Connection attempts after the first.
    reconnects: u64,
}

impl Links {
    /// Resolves Redis's address (once: a blocking call, so only at start-up) and picks this
    /// instance's id. Connecting starts with [`Links::start`].
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
        let talk = Conversation::new(&instance, &config);
        Ok(Links {
            config,
            addr,
            talk,
            instance,
            reader: Link::new(Role::Reader, Token(0)),
            cmd: Link::new(Role::Commands, Token(0)),
            state: State::Down {
                retry_at: Instant::now(),
            },
            backoff: BACKPLANE_RETRY_FIRST,
            warned: false,
            timer: None,
            heard_on_reader: Instant::now(),
            heard_on_cmd: Instant::now(),
            reconnects: 0,
        })
    }

    /// Starts the first connection, under these two tokens.
    pub fn start(
        &mut self,
        reader: Token,
        cmd: Token,
        registry: &Registry,
        now: Instant,
        out: &mut Vec<Happening>,
    ) {
        self.reader.token = reader;
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
        self.talk.stats(state, self.reconnects)
    }

    fn connect(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        debug!("backplane: connecting to {}", self.addr);
        self.state = State::Connecting {
            deadline: now + BACKPLANE_CONNECT_TIMEOUT,
        };
        self.timer = Some(now + BACKPLANE_CONNECT_TIMEOUT);
        let opened = self
            .reader
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
                self.reconnects += 1;
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
    /// `HELLO` every TTL / 3 and reads it back from the stream (and an idle `XREAD` comes back
    /// empty every TTL / 3), and the command connection always has replies due then; so nothing heard on either for a whole TTL means Redis is
    /// gone, and the backplane is re-opened as for any failure.
    pub fn check_alive(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        if self.state != State::Up {
            return;
        }
        let ttl = self.config.nick_ttl;
        let silent = |since: Instant| now.saturating_duration_since(since) > ttl;
        let waiting = self.talk.is_waiting();
        if silent(self.heard_on_reader) || (waiting && silent(self.heard_on_cmd)) {
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
        let role = if token == self.reader.token {
            Role::Reader
        } else {
            Role::Commands
        };
        if let Err(reason) = self.serve(role, readable, registry, scratch, now, out) {
            self.fail(&reason, registry, now, out);
        }
    }

    /// Whether a connection still had bytes to read when its read budget ran out.
    pub fn has_unread(&self) -> bool {
        self.reader.unread || self.cmd.unread
    }

    /// Step 3 of the loop for the backplane: reads on where the budget stopped last turn.
    pub fn serve_unread(
        &mut self,
        registry: &Registry,
        scratch: &mut [u8],
        now: Instant,
        out: &mut Vec<Happening>,
    ) {
        for role in [Role::Reader, Role::Commands] {
            let link = link_of(&mut self.reader, &mut self.cmd, role);
            if std::mem::take(&mut link.unread) {
                let token = link.token;
                self.handle(token, true, registry, scratch, now, out);
            }
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
        let link = link_of(&mut self.reader, &mut self.cmd, role);
        // An event after the backplane went down in this batch: nothing to serve.
        if link.socket.is_none() {
            return Ok(());
        }
        if link.phase == LinkPhase::Connecting {
            match link.finish_connect() {
                Ok(false) => return Ok(()),
                Ok(true) => self.talk.greet(role, link),
                Err(e) => return Err(format!("cannot connect to {addr}: {}", describe(&e))),
            }
        }
        let link = link_of(&mut self.reader, &mut self.cmd, role);
        if readable {
            let name = link.name();
            let before = link.input.len();
            let drained = link
                .read(scratch)
                .map_err(|e| format!("{name}: {}", describe(&e)))?;
            link.unread = !drained;
            if link.input.len() > before {
                match role {
                    Role::Reader => self.heard_on_reader = now,
                    Role::Commands => self.heard_on_cmd = now,
                }
            }
            let link = link_of(&mut self.reader, &mut self.cmd, role);
            self.talk.decode_all(role, link, out)?;
        }
        self.flush_link(role, registry)?;
        if matches!(self.state, State::Connecting { .. })
            && self.reader.phase == LinkPhase::Ready
            && self.cmd.phase == LinkPhase::Ready
        {
            self.state = State::Up;
            (self.heard_on_reader, self.heard_on_cmd) = (now, now);
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

    fn flush_link(&mut self, role: Role, registry: &Registry) -> Result<(), String> {
        let link = link_of(&mut self.reader, &mut self.cmd, role);
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

    /// Queues what the chat asked for on the command connection (sent by
    /// [`Links::flush`]). Only while up: the chat sends nothing otherwise.
    pub fn send(&mut self, outgoing: Outgoing) {
        if self.state == State::Up {
            self.talk.send(outgoing, &mut self.cmd);
        }
    }

    /// End of the batch: writes what was queued, on both connections.
    pub fn flush(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Happening>) {
        self.talk.flush_batch(&mut self.cmd);
        if self.state == State::Up
            && let Err(reason) = self
                .flush_link(Role::Commands, registry)
                .and_then(|()| self.flush_link(Role::Reader, registry))
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
        self.reader.close(registry);
        self.cmd.close(registry);
        let lost = self.talk.lost_claims();
        self.state = State::Down {
            retry_at: now + retry_in,
        };
        self.timer = Some(now + retry_in);
        self.backoff = (self.backoff * 2).min(BACKPLANE_RETRY_MAX);
        out.push(Happening::Down { lost });
    }
}

/// One of the two connections, borrowed apart from the rest of [`Links`].
fn link_of<'a>(reader: &'a mut Link, cmd: &'a mut Link, role: Role) -> &'a mut Link {
    match role {
        Role::Reader => reader,
        Role::Commands => cmd,
    }
}
