//! A connection's output: lines waiting to be written, and the partial-write bookkeeping that
//! makes non-blocking writes correct.
//!
//! A non-blocking `write` may take all of what it is given, part of it, or nothing
//! (`WouldBlock`: the kernel's send buffer for that socket is full). Whatever it did not take
//! must be kept, in order, and offered again when the socket is writable. That is all this
//! module does, and it is the part most toy servers get wrong.
//!
//! Lines are queued as `Rc<[u8]>`: a chat line sent to 10,000 people is allocated once, and each
//! recipient's queue holds a pointer to it. When a queue is flushed, up to
//! [`MAX_IOVECS`] lines go to the kernel in one `write_vectored`
//! (`writev(2)`) call, so a client that fell behind by a hundred lines costs two system calls,
//! not a hundred.
//!
//! The queue never touches a socket by itself: [`WriteQueue::write_to`] takes any
//! [`std::io::Write`], which keeps it testable with a writer that takes a few bytes at a time.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::limits::MAX_IOVECS;
pub use crate::nonblocking::Flushed;

/// What one queued line costs besides its bytes: the shared pointer (address and length).
pub const ENTRY_BYTES: usize = std::mem::size_of::<Rc<[u8]>>();

/// Unsent output of one connection. See the module documentation.
///
/// Most clients are idle most of the time, and an idle client's queue is empty: so a queue
/// with nothing in it can be one null pointer, its bookkeeping and its room for entries
/// allocated only when a line comes. A drained queue keeps them, though, until it is told to
/// [`release`](WriteQueue::release) them: a client that receives a line per batch would
/// otherwise allocate and free them for every line it is sent, two allocations per delivery
/// (the connection releases them at once unless its client is busy: see
/// `Output::drained` in `connection/output.rs`).
#[derive(Debug, Default)]
pub struct WriteQueue {
    /// `None` when nothing is waiting and the room was given back.
    queued: Option<Box<Queued>>,
}

/// Entries a drained queue may keep room for until it is released: one `writev`'s worth. A
/// longer backlog's room is freed as soon as it is written.
const KEEP_ENTRIES: usize = MAX_IOVECS;

/// What a non-empty queue holds.
#[derive(Debug, Default)]
struct Queued {
    /// Lines in the order they must reach the client. Every entry is non-empty.
    lines: VecDeque<Rc<[u8]>>,
    /// Bytes at the front of `lines[0]` that the kernel already took (a partial write).
    written_of_first: usize,
    /// Bytes still to send: the sum of the entries' lengths minus `written_of_first`.
    unsent: usize,
}

impl WriteQueue {
    /// Appends a line. O(1): the bytes are shared, not copied.
    #[inline]
    pub fn push(&mut self, line: Rc<[u8]>) {
        if line.is_empty() {
            return;
        }
        let queued = match &mut self.queued {
            Some(queued) => queued,
            None => self.make_room(),
        };
        queued.unsent += line.len();
        queued.lines.push_back(line);
    }

    /// The first line since the queue was released: its bookkeeping is allocated. Out of
    /// line, so the path every delivery takes stays a few instructions.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) -> &mut Queued {
        self.queued.insert(Box::default())
    }

    /// Bytes not yet taken by the kernel.
    pub fn unsent(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.unsent)
    }

    /// What the queue holds on its client's behalf: the bytes still to send, and a shared
    /// pointer per queued line ([`ENTRY_BYTES`]). `--max-output` judges this: a queue of a
    /// million one-byte lines holds 17 MB, not 1 MB.
    #[inline]
    pub fn footprint(&self) -> usize {
        self.queued
            .as_ref()
            .map_or(0, |q| q.unsent + q.lines.len() * ENTRY_BYTES)
    }

    pub fn is_empty(&self) -> bool {
        self.unsent() == 0
    }

    /// Writes as much as `out` accepts: until the queue is empty or `out` says `WouldBlock`.
    ///
    /// With edge-triggered readiness that stopping rule matters: mio reports "writable" again
    /// only after a write has failed with `WouldBlock`, so stopping earlier with bytes left
    /// could wait forever. Any other error is returned: the connection is broken.
    pub fn write_to<W: Write + ?Sized>(&mut self, out: &mut W) -> io::Result<Flushed> {
        let Some(queued) = self.queued.as_deref_mut() else {
            return Ok(Flushed::All);
        };
        while !queued.lines.is_empty() {
            let result = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (slice, line) in slices.iter_mut().zip(&queued.lines) {
                    let skip = if count == 0 {
                        queued.written_of_first
                    } else {
                        0
                    };
                    *slice = IoSlice::new(&line[skip..]);
                    count += 1;
                }
                out.write_vectored(&slices[..count])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => queued.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if queued.lines.capacity() > KEEP_ENTRIES {
            self.queued = None;
        }
        Ok(Flushed::All)
    }

    /// A drained queue gives back its room (an idle client's queue is then one null pointer).
    /// Nothing happens to a queue with lines waiting.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.queued = None;
        }
    }

    /// Entries the queue has room for without allocating (for tests and for reasoning about
    /// memory: zero once released).
    pub fn capacity(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.lines.capacity())
    }

    /// Whether a write stopped inside the first entry: a transport that sends bytes of its
    /// own between entries (WebSocket's control frames) must wait until it is out.
    pub fn mid_entry(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| q.written_of_first > 0)
    }
}

impl Queued {
    /// Forgets the first `n` unsent bytes: whole lines are dropped, and a line the kernel took
    /// only part of stays at the front with `written_of_first` marking where to resume.
    #[inline]
    fn consume(&mut self, mut n: usize) {
        self.unsent -= n;
        while let Some(first) = self.lines.front() {
            let left_in_first = first.len() - self.written_of_first;
            if n < left_in_first {
                self.written_of_first += n;
                return;
            }
            n -= left_in_first;
            self.lines.pop_front();
            self.written_of_first = 0;
        }
    }
}
