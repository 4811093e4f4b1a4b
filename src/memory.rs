//! Giving memory back to the operating system after a spike.
//!
//! glibc's `malloc` keeps what is freed for reuse by the process. After a spike (megabytes
//! queued for clients that stopped reading, then cut off; a storm of connections) the
//! server's RSS stays at its high-water mark for good, although the memory is free: measured
//! on 2026-12-01, three chaos rounds left the server at 10.2 MB against 4.9 MB cold, every
//! round. `malloc_trim(0)` hands the free pages back.
//!
//! Trimming is not free: pages handed back are faulted in again the next time they are
//! needed, and under steady traffic the heap's free memory is needed again at once. So the
//! trim waits for memory that is really spare: at most once every [`TRIM_EVERY`], when the
//! loop is about to wait and something was written or freed since the last look, it asks
//! glibc how much it holds free (`mallinfo2`), and trims only if that is at least
//! [`TRIM_FREE`]. A busy server trims at most once a second, a little; a spike that is over
//! is given back within a second; an idle server is never woken for this.
//!
//! The same look first ends a round of buffer use (`ConnTable::release_buffers`): a client
//! whose queue was drained in the second before is busy, and its queue keeps its room
//! between flushes; one that was not gives the room back. (Reads follow the same rule for
//! the framer's buffer.) (Its queue gives it back as soon as
//! it is drained, unless the client is busy: an idle client holds none from the moment its
//! last line is written, and the memory is reused at once, not left in holes between other
//! clients' allocations.) While any client is busy, the next look comes a second later
//! whether or not anything happens.
//!
//! Other allocators were tried first (docs/dependencies.md, `libc`): mimalloc (v3) and jemalloc
//! both purge freed pages only during allocator activity or from background threads of their
//! own, so an idle server kept its spike; a server of one thread should not start threads
//! for its allocator.

use std::time::Instant;

use log::debug;

use crate::limits::{TRIM_EVERY, TRIM_FREE};

/// When glibc was last asked, and whether anything happened since.
#[derive(Debug)]
pub struct Trim {
    active: bool,
    last: Instant,
}

impl Trim {
    pub fn new(now: Instant) -> Trim {
        Trim {
            active: false,
            last: now,
        }
    }

    /// Output was written or connections were removed: memory may have been freed.
    pub fn activity(&mut self) {
        self.active = true;
    }

    /// When the next look is due, so the loop does not sleep past it (`None` for a server
    /// with nothing done since the last look, which may sleep as long as it likes).
    pub fn due(&self) -> Option<Instant> {
        self.active.then_some(self.last + TRIM_EVERY)
    }

    /// The loop is about to wait: if a look is due, `release` gives back what the server
    /// keeps only for reuse (the room of drained write queues), and then glibc's free memory
    /// is trimmed if it holds enough. `release` says whether it kept some back for another
    /// round (room still in use): then the next look comes a second later, activity or not.
    pub fn before_waiting(&mut self, now: Instant, release: impl FnOnce() -> bool) {
        if !self.active || now < self.last + TRIM_EVERY {
            return;
        }
        self.last = now;
        self.active = release();
        let free = free_in_heap();
        if free < TRIM_FREE {
            return;
        }
        let started = Instant::now();
        let released = trim();
        debug!(
            "memory: {free} bytes free in the heap, {} in {} µs",
            if released {
                "handed back"
            } else {
                "nothing to hand back"
            },
            started.elapsed().as_micros()
        );
    }
}

/// Bytes glibc holds free in the heap (`mallinfo2().fordblks`, its free chunks).
#[allow(
    unsafe_code,
    reason = "mallinfo2 has no safe wrapper in std or in a maintained crate"
)]
fn free_in_heap() -> usize {
    // SAFETY: mallinfo2 takes nothing, returns a plain struct of counters by value, and reads
    // the allocator's own state under the allocator's own lock (glibc mallinfo(3)): no
    // precondition on the caller, no pointer in or out.
    unsafe { libc::mallinfo2() }.fordblks
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
    // malloc_trim(3)). With `free_in_heap`, the only unsafe code in the crate.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_waits_for_activity_and_for_its_interval() {
        let t0 = Instant::now();
        let mut trim = Trim::new(t0);
        assert_eq!(trim.due(), None, "an idle server is woken for nothing");
        trim.activity();
        assert_eq!(trim.due(), Some(t0 + TRIM_EVERY));
        trim.before_waiting(t0 + TRIM_EVERY / 2, || {
            panic!("released before its interval")
        });
        assert_eq!(trim.last, t0, "looked before its interval");
        // Some room is kept for another round: the next look comes without new activity.
        trim.before_waiting(t0 + TRIM_EVERY, || true);
        assert_eq!(trim.last, t0 + TRIM_EVERY);
        assert_eq!(trim.due(), Some(t0 + 2 * TRIM_EVERY));
        trim.before_waiting(t0 + 2 * TRIM_EVERY, || false);
        assert_eq!(trim.due(), None);
    }
}
