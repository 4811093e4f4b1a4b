//! Flood control: a token bucket per client, consulted before each line is handled.
//!
//! A client over its rate is not disconnected and its lines are not dropped. The loop simply
//! stops reading from it until the bucket has a token again. Its bytes wait in the kernel's
//! receive buffer, then TCP's flow control makes *its* `write`s block: the flooder is slowed
//! down by the network stack itself, and nobody else notices.

use std::time::{Duration, Instant};

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

    /// Lines per second.
    pub fn rate(&self) -> f64 {
        self.rate
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

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        let next = b.next_token_at(t0);
        assert_eq!(next - t0, Duration::from_millis(100));
        assert!(b.try_take(next));
        assert!(!b.try_take(next));
    }

    #[test]
    fn a_long_silence_saves_up_only_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 2, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.try_take(later) && b.try_take(later));
        assert!(!b.try_take(later));
    }
}
