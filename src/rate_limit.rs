//! Token buckets: flood control per client, connection rates per address, and the pace of
//! join and leave notices.
//!
//! Flood control: a client over its rate (`--rate`) is not disconnected and its lines are not
//! dropped. The loop simply stops reading from it until the bucket has a token again. Its
//! bytes wait in the kernel's receive buffer, then TCP's flow control makes *its* `write`s
//! block: the flooder is slowed down by the network stack itself, and nobody else notices.
//!
//! Connection rates ([`ConnectRates`], `--connect-rate`): one address opening connections
//! faster than a person reconnects is refused at once, before it costs a slot, a welcome or a
//! notice.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::limits::CONNECT_RATE_ADDRESSES;

/// `rate` tokens per second, at most `burst` saved up. One token = one line.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive (zero means "no bucket at all", see `Config`).
    pub fn new(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (now, if one is).
    pub fn next_token_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let missing = (1.0 - self.tokens).max(0.0);
        now + Duration::from_secs_f64(missing / self.rate)
    }

    /// Whether the bucket is full again: its owner has been quiet for as long as a burst
    /// takes to save up, and forgetting it costs nothing.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
    }
}

/// Addresses tracked before the first sweep.
const SWEEP_FIRST: usize = 1024;

/// `--connect-rate`: a bucket of connections per client address, in a table that forgets
/// addresses once they are idle (their bucket full again) and never holds more than
/// [`CONNECT_RATE_ADDRESSES`].
#[derive(Debug)]
pub struct ConnectRates {
    /// Connections per second per address; 0 turns the limit off.
    rate: f64,
    burst: u32,
    /// Loopback addresses are limited too (`--connect-rate-loopback`).
    loopback: bool,
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Sweep idle addresses out once the table reaches this size: twice what the last sweep
    /// left, so a sweep (O(table)) comes only after as many new addresses, amortised O(1).
    sweep_at: usize,
    /// When the last sweep was. At the cap, the next waits until a bucket could have filled
    /// again, so a storm from many addresses does not sweep on every connection.
    swept: Instant,
}

/// What [`ConnectRates::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the limit: refused, and told to wait this long.
    No {
        wait: Duration,
    },
}

impl ConnectRates {
    pub fn new(rate: f64, burst: u32, loopback: bool) -> ConnectRates {
        ConnectRates {
            rate,
            burst,
            loopback,
            buckets: HashMap::new(),
            sweep_at: SWEEP_FIRST,
            swept: Instant::now(),
        }
    }

    /// One more connection from `ip`, now.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Admit {
        if self.rate <= 0.0 || (ip.is_loopback() && !self.loopback) {
            return Admit::Yes;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.sweep_at {
            let refill = Duration::from_secs_f64(f64::from(self.burst) / self.rate);
            if self.buckets.len() < CONNECT_RATE_ADDRESSES || now >= self.swept + refill {
                self.sweep(now);
            }
            if self.buckets.len() >= CONNECT_RATE_ADDRESSES {
                // Every address here is busy: this one is let in untracked. A per-address
                // limit cannot stop a storm from more addresses than this; `--max-clients`
                // bounds what they can hold.
                return Admit::Yes;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self
            .buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, burst, now));
        if bucket.try_take(now) {
            Admit::Yes
        } else {
            let wait = bucket.next_token_at(now).saturating_duration_since(now);
            Admit::No { wait }
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| !bucket.is_full(now));
        self.sweep_at = (self.buckets.len() * 2).clamp(SWEEP_FIRST, CONNECT_RATE_ADDRESSES);
        self.swept = now;
    }
}
