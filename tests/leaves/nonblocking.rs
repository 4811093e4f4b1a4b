//! `nonblocking`: what a read result means, how a write budget stops a writer, and that a
//! writer taking nothing is broken rather than full.

use std::io::{self, IoSlice, Write};

use pollchat::nonblocking::{Budget, ReadOutcome, WriteCalls, write_until_blocked};

/// A writer that takes 0 bytes and says nothing: broken, not full (for the tests of the
/// write loops here and in `write_queue.rs`).
pub(crate) struct TakesNothing;

impl Write for TakesNothing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Ok(0)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_read_result_means_what_the_os_says() {
    assert_eq!(
        ReadOutcome::from_read(|| Ok(5)).unwrap(),
        ReadOutcome::Data(5)
    );
    assert_eq!(ReadOutcome::from_read(|| Ok(0)).unwrap(), ReadOutcome::Eof);
    let would_block = || Err(io::ErrorKind::WouldBlock.into());
    assert_eq!(
        ReadOutcome::from_read(would_block).unwrap(),
        ReadOutcome::Drained
    );
    let mut calls = 0;
    let interrupted_once = || {
        calls += 1;
        if calls == 1 {
            Err(io::ErrorKind::Interrupted.into())
        } else {
            Ok(1)
        }
    };
    assert_eq!(
        ReadOutcome::from_read(interrupted_once).unwrap(),
        ReadOutcome::Data(1)
    );
}

#[test]
fn a_budget_stops_the_writer_as_a_full_socket_would_and_says_so() {
    let mut sink = Vec::new();
    let mut budget = Budget::new(&mut sink, 10);
    let bufs = [IoSlice::new(b"123456"), IoSlice::new(b"789abc")];
    assert_eq!(budget.write_vectored(&bufs).unwrap(), 10);
    assert!(!budget.spent());
    let again = budget.write_vectored(&bufs).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::WouldBlock);
    assert!(budget.spent());
    // Only the call that reached the sink is counted: the second never left the budget.
    assert_eq!(
        budget.calls(),
        WriteCalls {
            calls: 1,
            bytes: 10
        }
    );
    assert_eq!(sink, b"123456789a");
}

#[test]
fn a_short_read_drains_a_full_one_does_not() {
    assert!(ReadOutcome::Data(10).drained(16));
    assert!(!ReadOutcome::Data(16).drained(16));
    assert!(ReadOutcome::Drained.drained(16));
    assert!(!ReadOutcome::Eof.drained(16));
}

#[test]
fn a_writer_that_takes_nothing_is_broken_not_full() {
    let err = write_until_blocked(&mut TakesNothing, b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
}
