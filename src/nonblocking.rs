//! The rules of non-blocking I/O, each written once: what a `read` result means, how far a
//! `write` goes, when a `connect` has finished, what a socket is registered for, and the same
//! for rustls, which does no I/O of its own. The server, the terminal client, the backplane's
//! Redis connections and the load generator all use these, and this module uses none of them.
//!
//! The operating system's side of it, as mio documents it:
//!
//! - `WouldBlock` means "not ready: come back after the next readiness event". It is not an
//!   error, and it is the only way to learn that a socket is drained or full.
//! - A `read` of 0 bytes means the peer closed its side.
//! - `Interrupted` means a signal arrived during the call. It says nothing about the socket:
//!   try again.
//! - Readiness is edge-triggered: after an event, read (or write) until `WouldBlock`, or
//!   remember yourself that the socket may still be ready. mio reports a socket again only
//!   once it has said `WouldBlock` since.
//! - For a stream socket, a read that returns fewer bytes than it asked for has drained the
//!   socket just as surely (epoll(7), "Do I need to continuously read/write a file descriptor
//!   until EAGAIN when using the EPOLLET flag?"): data that arrives later raises a new edge.
//!   The one exception is the end of the stream: a FIN that came with the data, before the
//!   event was reported, raises no edge of its own. So when the event says the peer closed
//!   (`is_read_closed`), read until the 0 ([`ReadOutcome::drained`]).

use std::io::{self, IoSlice, Write};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ConnectionCommon;

/// What one non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were read.
    Data(usize),
    /// Nothing more to read now (`WouldBlock`): wait for the next readable event.
    Drained,
    /// The other side closed its end (`read` returned 0).
    Eof,
}

impl ReadOutcome {
    /// One non-blocking read through `read` (a socket's, rustls's `read_tls`, stdin's): `Data`
    /// for bytes, `Drained` for `WouldBlock`, `Eof` for 0 bytes. `Interrupted` is retried. Any
    /// other error is returned: the source is broken.
    pub fn from_read(mut read: impl FnMut() -> io::Result<usize>) -> io::Result<ReadOutcome> {
        loop {
            return match read() {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

impl ReadOutcome {
    /// Whether the reader may wait for the next readable event now: the read said
    /// `WouldBlock`, or it returned fewer bytes than the `offered` room (a stream socket had
    /// no more; see the module documentation). Not for a source whose event said the peer
    /// closed: then only `Eof` ends the reading, since no new event will come for the end.
    pub fn drained(self, offered: usize) -> bool {
        match self {
            ReadOutcome::Drained => true,
            ReadOutcome::Data(n) => n < offered,
            ReadOutcome::Eof => false,
        }
    }
}

/// How a flush of queued output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written.
    All,
    /// The socket's send buffer is full and bytes are still queued: wait for a writable event.
    Blocked,
}

/// Writes `bytes` to a non-blocking `out` until all are taken or it says `WouldBlock`, and
/// returns how many it took. The caller keeps the rest for the next writable event (the
/// partial-write rule). A writer that takes 0 bytes is broken, not full: retrying would spin.
pub fn write_until_blocked(out: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected, `Ok(false)` still under
/// way (a spurious wake-up), `Err` failed. It has finished when the socket turns writable;
/// whether it succeeded is in `SO_ERROR`, or in whether the socket has a peer.
pub fn connect_finished(stream: &TcpStream) -> io::Result<bool> {
    match (stream.take_error(), stream.peer_addr()) {
        (Ok(None), Ok(_)) => Ok(true),
        (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        (Ok(Some(e)) | Err(e), _) | (Ok(None), Err(e)) => Err(e),
    }
}

/// The interest rule, and the registration it leads to: a socket is always registered for
/// readable events, and for writable events only while output waits behind a full send
/// buffer. Asking for writable events with nothing to write would wake the loop for nothing,
/// again and again, since an idle socket is always writable.
///
/// The interest last registered is remembered, so deciding it again after every flush costs a
/// system call only when it changes (the way rustls's `tlsserver-mio` example computes its
/// interest from the connection's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registration {
    writable: bool,
}

impl Registration {
    /// A source just registered with [`Interest::READABLE`] only.
    pub fn readable() -> Registration {
        Registration { writable: false }
    }

    /// A source just registered for both (an outgoing connect: writable says it finished).
    pub fn both() -> Registration {
        Registration { writable: true }
    }

    /// Makes the registration readable plus, if `writable`, writable; re-registers only if
    /// that differs from what is registered now.
    pub fn update(
        &mut self,
        registry: &Registry,
        source: &mut impl Source,
        token: Token,
        writable: bool,
    ) -> io::Result<()> {
        if writable == self.writable {
            return Ok(());
        }
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry.reregister(source, token, interest)?;
        self.writable = writable;
        Ok(())
    }
}

/// A write budget: a writer that passes at most `left` more bytes to `out`, then says
/// `WouldBlock` as a full socket would. Whatever writes through it (a write queue, a TLS
/// session) stops there and keeps the rest, with no budget logic of its own; [`Budget::spent`]
/// then tells the caller that the socket was not full, only the budget: nothing will report
/// the socket writable again (it still is), so the caller must come back by itself.
///
/// Every write system call on a client socket goes through a budget, so it also counts them:
/// [`Budget::calls`] is how the server knows its batching (lines per `writev`).
pub struct Budget<'a> {
    out: &'a mut dyn Write,
    left: usize,
    spent: bool,
    calls: WriteCalls,
}

/// Write calls made on a socket and the bytes it took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCalls {
    pub calls: u64,
    pub bytes: u64,
}

impl<'a> Budget<'a> {
    pub fn new(out: &'a mut dyn Write, bytes: usize) -> Budget<'a> {
        Budget {
            out,
            left: bytes,
            spent: false,
            calls: WriteCalls::default(),
        }
    }

    /// Whether writing stopped because the budget ran out (and not because `out` was full).
    pub fn spent(&self) -> bool {
        self.spent
    }

    /// The write calls passed on to `out` (those that failed too), and the bytes it took.
    pub fn calls(&self) -> WriteCalls {
        self.calls
    }

    /// One `writev(2)` on the socket, counted.
    fn write_out(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls.calls += 1;
        let n = self.out.write_vectored(bufs)?;
        self.calls.bytes += n as u64;
        self.left -= n;
        Ok(n)
    }
}

impl Write for Budget<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.left == 0 && total > 0 {
            self.spent = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if total <= self.left {
            // Nearly every write: it fits, and goes through as it came.
            return self.write_out(bufs);
        }
        // Offer no more than the budget: whole slices up to it, then part of the next.
        let mut offered = [IoSlice::new(&[]); 64];
        let (mut count, mut total) = (0, 0);
        for buf in bufs.iter().take(offered.len()) {
            let take = buf.len().min(self.left - total);
            offered[count] = IoSlice::new(&buf[..take]);
            count += 1;
            total += take;
            if total == self.left {
                break;
            }
        }
        self.write_out(&offered[..count])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes the records rustls has ready (handshake messages, encrypted lines, alerts) until it
/// has none left (`true`) or the socket is full (`false`: wait for a writable event). For the
/// server's TLS sessions and the clients' (`pollchat-connect`, the chaos generator) alike.
pub fn write_records<D>(tls: &mut ConnectionCommon<D>, socket: &mut dyn Write) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            // A socket that takes nothing and says nothing is broken, not full: retrying
            // would spin.
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// rustls's plaintext side as a non-blocking writer, for `WriteQueue::write_to`. rustls says
/// "my buffer is full" by taking 0 bytes; a socket says it with `WouldBlock`, and a write
/// queue takes a 0 for a broken writer. This says it the socket's way. With a buffer limit
/// (the server's sessions) that is one record's worth, then full until [`write_records`] has
/// written it out.
pub struct Plaintext<'a, D>(pub &'a mut ConnectionCommon<D>);

impl<D> Write for Plaintext<'_, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.0.writer().write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
