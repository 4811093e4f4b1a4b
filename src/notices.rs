//! Join and leave notices, as the room says them: at the end of the batch, a few at a time
//! one line each, a burst in one line, and never faster than a connection storm could make
//! them cost.
//!
//! Every member hears of every other member's join and leave, so a notice costs one queued
//! line per member: N clients arriving cost O(N²), and a storm of connections that come and
//! go makes the whole room pay for each. So notices are not said when they happen:
//!
//! - They wait in [`Notices`] until the end of the batch, in order. A client that joins and
//!   leaves before its join was said costs nothing at all: both notices are dropped.
//! - A *round* at the end of the batch says everything waiting. Up to [`NOTICE_LIST`] joins
//!   (or leaves) are one line each, exactly as a small room has always seen them; more become
//!   one line: `*** 57 joined: ann, bo, cy and 54 more`.
//! - Rounds come from a token bucket ([`NOTICE_ROUNDS_BURST`], then
//!   [`NOTICE_ROUNDS_PER_SEC`]). A room with a few joins a second never waits; a storm gets
//!   a few lines a second in all, so what it costs each member is bounded by time, not by
//!   how many connections it makes, and every connection that came and went within one
//!   round's wait costs nothing.
//! - A newcomer whose join is still waiting and who speaks (or changes nick) is announced
//!   first, on its own, so nobody sees a line from someone they did not see arrive.
//!
//! Who hears a notice is who was in the room when it happened, as before: each member has the
//! room's [`Clock`] reading of when it joined, and each notice the reading of who was there.

use std::time::Instant;

use crate::bus::Origin;
use crate::limits::{NOTICE_LIST, NOTICE_ROUNDS_BURST, NOTICE_ROUNDS_PER_SEC};
use crate::protocol;
use crate::rate_limit::TokenBucket;

/// Counts joins: a member's reading says when it arrived, a notice's says who was there.
pub type Clock = u64;

/// A notice waiting for its round.
#[derive(Debug)]
struct Waiting {
    /// Whose join or leave: the event's origin (instance) and connection id.
    origin: Origin,
    conn: u64,
    nick: String,
    /// `None` for a join, the reason for a leave.
    left: Option<String>,
    /// Members who joined at or before this reading hear it.
    heard_up_to: Clock,
}

/// A line to say, and who hears it.
#[derive(Debug, PartialEq, Eq)]
pub struct Notice {
    pub line: String,
    /// Members whose join reading is at most this hear it.
    pub heard_up_to: Clock,
    /// The member it is about, who does not hear it (origin, connection id).
    pub about: Option<(Origin, u64)>,
}

#[derive(Debug)]
pub struct Notices {
    waiting: Vec<Waiting>,
    rounds: TokenBucket,
}

impl Notices {
    pub fn new(now: Instant) -> Notices {
        Notices {
            waiting: Vec::new(),
            rounds: TokenBucket::new(NOTICE_ROUNDS_PER_SEC, NOTICE_ROUNDS_BURST, now),
        }
    }

    /// Someone joined; members up to `heard_up_to` will hear of it.
    pub fn joined(&mut self, origin: Origin, conn: u64, nick: &str, heard_up_to: Clock) {
        self.waiting.push(Waiting {
            origin,
            conn,
            nick: nick.to_string(),
            left: None,
            heard_up_to,
        });
    }

    /// Someone left. If its join was never said, neither is said.
    pub fn left(
        &mut self,
        origin: Origin,
        conn: u64,
        nick: &str,
        reason: &str,
        heard_up_to: Clock,
    ) {
        if self.take_join(origin, conn).is_some() {
            return;
        }
        self.waiting.push(Waiting {
            origin,
            conn,
            nick: nick.to_string(),
            left: Some(reason.to_string()),
            heard_up_to,
        });
    }

    /// The join notice of (`origin`, `conn`), if it is still waiting: it is said now, apart
    /// from the others (its member is about to be heard from).
    pub fn take_join(&mut self, origin: Origin, conn: u64) -> Option<Notice> {
        let i = self
            .waiting
            .iter()
            .position(|w| w.left.is_none() && w.conn == conn && w.origin == origin)?;
        let join = self.waiting.remove(i);
        Some(Notice {
            line: protocol::joined(&join.nick),
            heard_up_to: join.heard_up_to,
            about: Some((join.origin, join.conn)),
        })
    }

    /// A round, if one is due: the lines to say now. `Err(at)`: notices are waiting, and the
    /// next round may come at `at`.
    pub fn round(&mut self, now: Instant) -> Result<Vec<Notice>, Instant> {
        if self.waiting.is_empty() {
            return Ok(Vec::new());
        }
        if !self.rounds.try_take(now) {
            return Err(self.rounds.next_token_at(now));
        }
        let (joins, leaves): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.left.is_none());
        let mut said = say(joins, protocol::joined_many);
        said.extend(say(leaves, protocol::left_many));
        Ok(said)
    }
}

/// One kind of notice, in order: one line each if there are few, one line for all if not.
fn say(waiting: Vec<Waiting>, many: impl Fn(&[String], usize) -> String) -> Vec<Notice> {
    if waiting.len() <= NOTICE_LIST {
        return waiting.into_iter().map(one).collect();
    }
    // Heard by whoever was there before the burst began: a newcomer within it was welcomed,
    // and `/who` tells it the rest.
    let heard_up_to = waiting.iter().map(|w| w.heard_up_to).min().unwrap_or(0);
    let named: Vec<String> = waiting[..NOTICE_LIST].iter().map(name).collect();
    vec![Notice {
        line: many(&named, waiting.len() - NOTICE_LIST),
        heard_up_to,
        about: None,
    }]
}

/// A notice's subject as a summary line names it: the nick, and why it left.
fn name(waiting: &Waiting) -> String {
    match &waiting.left {
        None => waiting.nick.clone(),
        Some(reason) => format!("{} ({reason})", waiting.nick),
    }
}

fn one(waiting: Waiting) -> Notice {
    let line = match &waiting.left {
        None => protocol::joined(&waiting.nick),
        Some(reason) => protocol::left(&waiting.nick, reason),
    };
    Notice {
        line,
        heard_up_to: waiting.heard_up_to,
        about: Some((waiting.origin, waiting.conn)),
    }
}
