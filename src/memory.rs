//! Giving memory back to the operating system after a spike.
//!
//! glibc's `malloc` keeps what is freed for reuse by the process. After a spike (megabytes
//! queued for clients that stopped reading, then cut off; a storm of connections) the
//! server's RSS stays at its high-water mark for good, although the memory is free: measured
//! on 2026-12-01, three chaos rounds left the server at 10.2 MB against 4.9 MB cold, every
//! round. `malloc_trim(0)` hands the free pages back.
//!
//! Trimming walks the heap, so it is not free; it is worth doing once a spike is over and not
//! while the loop is busy reusing that memory. So the loop trims only when it is about to
//! wait in `poll` (nothing known to be ready), at most once every [`TRIM_EVERY`], and only
//! once at least [`TRIM_AFTER`] bytes have passed through and out since the last trim.
//!
//! Other allocators were tried first (README, "Dependencies"): mimalloc (v3) and jemalloc
//! both purge freed pages only during allocator activity or from background threads of their
//! own, so an idle server kept its spike; a server of one thread should not start threads
//! for its allocator.

use std::time::Instant;

use log::debug;

use crate::limits::{TRIM_AFTER, TRIM_EVERY};

/// When memory was last handed back, and how much has passed through since.
#[derive(Debug)]
pub struct Trim {
    passed: usize,
    last: Instant,
}

impl Trim {
    pub fn new(now: Instant) -> Trim {
        Trim {
            passed: 0,
            last: now,
        }
    }

    /// Output written or connections removed: memory that is free, or soon will be.
    pub fn passed(&mut self, bytes: usize) {
        self.passed = self.passed.saturating_add(bytes);
    }

    /// When a trim is waiting for its interval (enough has passed), so the loop does not
    /// sleep past it: a server that goes quiet right after a spike still trims.
    pub fn due(&self) -> Option<Instant> {
        (self.passed >= TRIM_AFTER).then_some(self.last + TRIM_EVERY)
    }

    /// The loop is about to wait: trims if enough has passed and it has been a while.
    pub fn before_waiting(&mut self, now: Instant) {
        if self.passed < TRIM_AFTER || now < self.last + TRIM_EVERY {
            return;
        }
        let started = Instant::now();
        let released = trim();
        self.passed = 0;
        self.last = now;
        debug!(
            "memory: {} in {} µs",
            if released {
                "handed back"
            } else {
                "nothing to hand back"
            },
            started.elapsed().as_micros()
        );
    }
}

/// `malloc_trim(0)`: hands the heap's free pages back to the operating system. True if any
/// were.
#[allow(
    unsafe_code,
    reason = "malloc_trim has no safe wrapper in std or in a maintained crate"
)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes a plain integer (0: keep no extra padding at the top of the
    // heap), reads and writes only the allocator's own state under the allocator's own lock,
    // and returns an int. It has no preconditions on the caller, frees nothing that is in
    // use (it only returns pages of free chunks), and is documented thread-safe (glibc
    // malloc_trim(3)). This is the only unsafe code in the crate.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_waits_for_enough_to_have_passed_and_for_its_interval() {
        let t0 = Instant::now();
        let mut trim = Trim::new(t0);
        trim.passed(TRIM_AFTER - 1);
        trim.before_waiting(t0 + TRIM_EVERY);
        assert_eq!(trim.last, t0, "trimmed before enough had passed");
        trim.passed(1);
        trim.before_waiting(t0 + TRIM_EVERY / 2);
        assert_eq!(trim.last, t0, "trimmed before its interval");
        trim.before_waiting(t0 + TRIM_EVERY);
        assert_eq!(trim.last, t0 + TRIM_EVERY);
        assert_eq!(trim.passed, 0);
    }
}
