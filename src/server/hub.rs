//! Where the chat and the bus meet. The chat never holds the bus: it queues what it asks of
//! it, and after every call into the chat the loop has the [`Hub`] hand those requests over,
//! in order ([`Hub::forward`]); what the bus reports goes the other way ([`Hub::absorb`]).
//! Joining and leaving the chat go through here too: each is an event for the bus.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Registry;

use crate::backplane::RedisBus;
use crate::bus::{BusIo, BusNews, LocalBus, Purpose, Request};
use crate::chat::{Chat, RoomRules};
use crate::config::Config;
use crate::connection::{CloseReason, ConnRef};
use crate::connlog::Kind;
use crate::error::Error;
use crate::protocol;
use crate::room::Outbox;
use crate::state::{self, Journal};
use crate::table::ConnTable;
use crate::timers::{Timer, Timers};

fn room_rules(config: &Config) -> RoomRules {
    RoomRules {
        max_rooms: config.max_rooms,
        history: config.history,
        quiet_joins: config.quiet_joins,
    }
}

/// The chat and the bus it publishes on.
pub(super) struct Hub {
    pub chat: Chat,
    /// Where the chat's events go: here only, or to Redis (`--backplane`).
    pub bus: Box<dyn BusIo>,
    /// A `Notices` timer is set for this instant (so a storm of batches, each with notices
    /// waiting, sets one timer and not one per batch).
    notices_due: Option<Instant>,
    /// Who may join: `--max-clients` (or what the descriptors allow) and `--max-per-ip`.
    pub max_clients: usize,
    max_per_ip: usize,
    /// `--idle-timeout`, set for each client that joins.
    idle_timeout: Option<Duration>,
}

impl Hub {
    pub fn new(config: &Config, max_clients: usize) -> Result<Hub, Error> {
        let bus: Box<dyn BusIo> = match &config.backplane {
            Some(settings) => Box::new(RedisBus::new(settings.clone())?),
            None => Box::new(LocalBus),
        };
        let mut chat = Chat::new(room_rules(config), &*bus);
        chat.moderation.operators.configure(config);
        if let Some(dir) = &config.state_dir {
            let lock = state::lock(dir)?;
            let loaded = state::load(dir, config.history)?;
            chat.rooms.restore(loaded.rooms);
            let (fsync, seconds, now) = (config.fsync, loaded.seconds, Instant::now());
            let journal = Journal::new(
                dir.clone(),
                lock,
                fsync,
                seconds,
                &mut chat.rooms.all(),
                now,
            );
            chat.rooms.keep_with(Box::new(journal));
        }
        Ok(Hub {
            chat,
            bus,
            notices_due: None,
            max_clients,
            max_per_ip: config.max_per_ip,
            idle_timeout: config.idle_timeout,
        })
    }

    /// Who may join and the rooms' rules, from a reloaded configuration.
    pub fn configure(&mut self, config: &Config, max_clients: usize) {
        self.max_clients = max_clients;
        self.max_per_ip = config.max_per_ip;
        self.idle_timeout = config.idle_timeout;
        self.chat.set_rules(room_rules(config));
    }

    /// Hands what the bus reported to the chat, and sets the timers the bus asked for.
    pub fn absorb(&mut self, news: Vec<BusNews>, table: &mut ConnTable, timers: &mut Timers) {
        for news in news {
            self.chat.absorb(news, table);
            self.forward(table);
        }
        for at in self.bus.take_deadlines() {
            timers.add(at, Timer::Bus);
        }
    }

    /// The other way: what the chat asked of the bus during the call just made into it, handed
    /// over in order, and what the bus answers at once handed back (a lone server's events
    /// to deliver, a claim granted, whether a room has members elsewhere). The chat never holds
    /// the bus: after every call into the chat, the loop calls this.
    pub fn forward(&mut self, out: &mut ConnTable) {
        while let Some(request) = self.chat.next_request() {
            match request {
                Request::Publish(event) => {
                    if let Some(event) = self.bus.publish(event) {
                        self.chat.deliver(&event, out);
                    }
                }
                Request::Claim(claim) => {
                    let (who, purpose) = (claim.conn, claim.purpose);
                    match self.bus.claim(claim) {
                        Some(claim) => self.chat.claim_answered(claim, true, out),
                        // A `/nick` waits for its answer: the client's next lines stay unread.
                        None if purpose == Purpose::Rename => out.hold(who),
                        None => {}
                    }
                }
                Request::Release(nick) => self.bus.release(&nick),
                Request::Announce(news) => self.bus.announce(news),
                Request::Refreshed => self.bus.refreshed(),
                Request::RoomEmptied(key) => self.chat.forget_room(&key, &*self.bus),
            }
        }
    }

    /// `r` leaves the chat (quit, peer closed, idle, a failed write): its connection closes
    /// once its last lines are out, if it still can take them.
    pub fn leave(&mut self, r: ConnRef, reason: CloseReason, table: &mut ConnTable) {
        self.chat.depart(r, reason, table);
        self.forward(table);
    }

    /// `r`'s connection is finished now (reset, read error, too slow): closed in the table,
    /// and out of the chat if it was in it.
    pub fn end(&mut self, r: ConnRef, reason: CloseReason, table: &mut ConnTable) {
        table.close(r, reason.clone());
        self.leave(r, reason, table);
    }

    /// Step 5's chat part, before the flushes: the leave events, a round of join and leave
    /// notices (or a timer for when one may come), then what the chat published goes out on
    /// the bus, once per batch like every other write. If that takes the bus down, the chat
    /// delivers the rest here; a few rounds settle it. Last, the bans file, if the batch
    /// changed the bans, and the history the batch kept, to `--state-dir`'s file.
    pub fn end_batch(
        &mut self,
        registry: &Registry,
        now: Instant,
        table: &mut ConnTable,
        timers: &mut Timers,
    ) {
        while self.chat.announce_departures() {
            self.forward(table);
        }
        let next = self.chat.say_notices(now, table);
        self.forward(table);
        if let Some(at) = next
            && self.notices_due.is_none_or(|due| at < due)
        {
            self.notices_due = Some(at);
            timers.add(at, Timer::Notices);
        }
        for _ in 0..4 {
            let news = self.bus.flush(registry, now);
            if news.is_empty() {
                break;
            }
            self.absorb(news, table, timers);
        }
        self.chat.moderation.bans.save_if_changed();
        let (keeper, mut rooms) = self.chat.rooms.keeper();
        if let Some(at) = keeper.end_batch(&mut rooms, now) {
            timers.add(at, Timer::State);
        }
    }

    /// The state journal's timer fired (`state/`): a sync, or a retry after an error.
    pub fn state_timer(&mut self, now: Instant, timers: &mut Timers) {
        let (keeper, mut rooms) = self.chat.rooms.keeper();
        if let Some(at) = keeper.on_timer(&mut rooms, now) {
            timers.add(at, Timer::State);
        }
    }

    /// The connection's transport is ready (at once, or once its handshake is over): it
    /// joins the chat, or is told, through its transport, why it may not.
    pub fn join(&mut self, r: ConnRef, now: Instant, table: &mut ConnTable, timers: &mut Timers) {
        let Some(conn) = table.get(r) else {
            return;
        };
        let peer = conn.peer();
        if let Some(reason) = self.refusal(peer, table) {
            if table.log.allow(Kind::Refused, peer.ip()) {
                warn!("{peer} refused: {reason} ({} clients)", self.chat.members());
            }
            let line = match reason {
                CloseReason::TooManyFromAddress => protocol::TOO_MANY_FROM_ADDRESS,
                _ => protocol::SERVER_FULL,
            };
            return table.send_off(r, reason, &Rc::from(line.as_bytes()));
        }
        if table.admit(r) {
            self.chat.enter(r, &*self.bus, table);
            self.forward(table);
            if let Some(nick) = self.chat.nick_of(r)
                && table.log.allow(Kind::Connect, peer.ip())
            {
                info!("{peer} connected as {nick} (token {})", r.token);
            }
            if let Some(idle) = self.idle_timeout {
                timers.add(now + idle, Timer::Idle(r));
            }
        }
    }

    /// Why a client from `peer` may not join now, if it may not.
    fn refusal(&self, peer: SocketAddr, table: &ConnTable) -> Option<CloseReason> {
        let per_ip = self.max_per_ip;
        if self.chat.members() >= self.max_clients {
            Some(CloseReason::ServerFull)
        } else if per_ip > 0 && table.census.connections_from(peer.ip()) >= per_ip {
            Some(CloseReason::TooManyFromAddress)
        } else {
            None
        }
    }

    /// The `Notices` timer fired: the next round may set another.
    pub fn notices_fired(&mut self) {
        self.notices_due = None;
    }
}
