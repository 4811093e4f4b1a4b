//! `write_queue`: partial writes resume where they stopped and keep the order, many lines go
//! out in few calls, a drained queue gives its room back, and a queue counts what it holds.

use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use pollchat::limits::MAX_IOVECS;
use pollchat::write_queue::{ENTRY_BYTES, Flushed, WriteQueue};

/// A writer that behaves like a non-blocking socket with a tiny send buffer: it takes at
/// most `per_call` bytes per call and says `WouldBlock` once `room` is used up.
struct Trickle {
    got: Vec<u8>,
    per_call: usize,
    room: usize,
    calls: usize,
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut budget = self.per_call.min(self.room);
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(budget);
            self.got.extend_from_slice(&b[..n]);
            budget -= n;
            taken += n;
        }
        self.room -= taken;
        Ok(taken)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn line(s: &str) -> Rc<[u8]> {
    Rc::from(s.as_bytes())
}

#[test]
fn partial_writes_resume_where_they_stopped_and_keep_order() {
    let mut q = WriteQueue::default();
    let mut expected = Vec::new();
    for i in 0..100 {
        let l = format!("line {i}\n");
        expected.extend_from_slice(l.as_bytes());
        q.push(line(&l));
    }
    let mut out = Trickle {
        got: Vec::new(),
        per_call: 7,
        room: 50,
        calls: 0,
    };
    assert_eq!(q.write_to(&mut out).unwrap(), Flushed::Blocked);
    assert_eq!(out.got.len(), 50);
    assert_eq!(q.unsent(), expected.len() - 50);
    // The socket drains; the rest goes out on the next writable event.
    out.room = usize::MAX;
    assert_eq!(q.write_to(&mut out).unwrap(), Flushed::All);
    assert_eq!(out.got, expected);
    assert!(q.is_empty());
}

/// An idle client's queue, once its welcome is written and the queue released, holds no
/// memory; a released queue takes lines again.
#[test]
fn a_released_queue_holds_no_memory() {
    let mut q = WriteQueue::default();
    q.push(line("*** welcome\n"));
    assert!(q.capacity() > 0);
    let mut out = Trickle {
        got: Vec::new(),
        per_call: usize::MAX,
        room: usize::MAX,
        calls: 0,
    };
    assert_eq!(q.write_to(&mut out).unwrap(), Flushed::All);
    assert!(q.capacity() > 0, "room kept for the next line");
    q.release();
    assert_eq!(q.capacity(), 0);
    q.push(line("*** again\n"));
    q.release();
    assert_eq!(q.unsent(), 10, "a queue with lines waiting was released");
    assert_eq!(q.write_to(&mut out).unwrap(), Flushed::All);
    assert_eq!(out.got, b"*** welcome\n*** again\n");
}

#[test]
fn a_queue_counts_the_pointers_it_holds_as_well_as_the_bytes() {
    let mut q = WriteQueue::default();
    for _ in 0..1000 {
        q.push(line("x"));
    }
    assert_eq!(q.unsent(), 1000);
    assert_eq!(q.footprint(), 1000 + 1000 * ENTRY_BYTES);
}

#[test]
fn many_small_lines_go_out_in_few_calls() {
    let mut q = WriteQueue::default();
    for _ in 0..MAX_IOVECS * 2 {
        q.push(line("hi\n"));
    }
    let mut out = Trickle {
        got: Vec::new(),
        per_call: usize::MAX,
        room: usize::MAX,
        calls: 0,
    };
    q.write_to(&mut out).unwrap();
    assert_eq!(out.calls, 2);
}

#[test]
fn one_line_shared_by_many_queues_is_not_copied() {
    let shared = line("<alice> hi\n");
    let mut queues: Vec<WriteQueue> = (0..3).map(|_| WriteQueue::default()).collect();
    for q in &mut queues {
        q.push(Rc::clone(&shared));
    }
    assert_eq!(Rc::strong_count(&shared), 4);
}

#[test]
fn a_writer_that_takes_nothing_is_an_error_not_a_spin() {
    let mut q = WriteQueue::default();
    q.push(line("x"));
    let err = q
        .write_to(&mut crate::nonblocking::TakesNothing)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
}
