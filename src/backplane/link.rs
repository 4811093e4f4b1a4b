//! One connection to Redis: socket, read buffer, write buffer, and where it is in its life.
//! Like a client's connection, but with byte buffers (RESP is not line-based) and no room.
//!
//! Replies arrive in any pieces, so the read buffer keeps what is not decoded yet (see
//! `resp.rs`); a partial write keeps the rest in the write buffer, and writable interest is
//! asked for only while bytes are left (the interest rule of `nonblocking.rs`), exactly as
//! for a client.

use std::io::{self, Read};
use std::net::SocketAddr;

use log::trace;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::limits::READ_BUDGET;
use crate::nonblocking::{Registration, connect_finished, write_until_blocked};

/// Which of the two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Reader,
    Commands,
}

impl Role {
    /// As the connection's name in Redis ends.
    pub(super) fn short(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Commands => "commands",
        }
    }
}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkPhase {
    /// The non-blocking connect is under way: a writable event finishes it.
    Connecting,
    /// Connected; its first command (`PING`, or the reader's first look at the stream) is
    /// not answered yet.
    Handshake,
    Ready,
}

/// One connection to Redis: socket, read buffer, write buffer. Like a client's connection,
/// but with byte buffers (RESP is not line-based) and no room.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) role: Role,
    pub(super) token: Token,
    /// `None` while the backplane is down.
    pub(super) socket: Option<TcpStream>,
    pub(super) phase: LinkPhase,
    /// Bytes read and not yet decoded: at most one incomplete reply once decoding is done.
    pub(super) input: Vec<u8>,
    /// Bytes to send; `output[written..]` is what the socket has not taken yet.
    pub(super) output: Vec<u8>,
    pub(super) written: usize,
    /// What the socket is registered for (the interest rule of `nonblocking.rs`).
    pub(super) registration: Registration,
    /// The read budget ran out before `WouldBlock`: read again next turn without waiting for
    /// an event (none will come for bytes already there).
    pub(super) unread: bool,
}

impl Link {
    pub(super) fn new(role: Role, token: Token) -> Link {
        Link {
            role,
            token,
            socket: None,
            phase: LinkPhase::Connecting,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            registration: Registration::readable(),
            unread: false,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self.role {
            Role::Reader => "reader",
            Role::Commands => "command connection",
        }
    }

    /// Starts a non-blocking connect. Registered for writable events too: that is how the
    /// kernel says the connect finished (or failed).
    pub(super) fn open(&mut self, addr: SocketAddr, registry: &Registry) -> io::Result<()> {
        let mut socket = TcpStream::connect(addr)?;
        // Events are small; Nagle would hold each back until the previous one is acknowledged.
        socket.set_nodelay(true)?;
        registry.register(
            &mut socket,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.socket = Some(socket);
        self.phase = LinkPhase::Connecting;
        self.registration = Registration::both();
        Ok(())
    }

    pub(super) fn close(&mut self, registry: &Registry) {
        if let Some(mut socket) = self.socket.take() {
            let _ = registry.deregister(&mut socket);
        }
        self.input.clear();
        self.output.clear();
        self.written = 0;
        self.registration = Registration::readable();
        self.unread = false;
    }

    /// While connecting: `Ok(true)` once the connect has finished, `Ok(false)` if this event
    /// came early (a spurious wake-up: still connecting), the error if it failed.
    pub(super) fn finish_connect(&mut self) -> io::Result<bool> {
        let Some(socket) = &self.socket else {
            return Ok(false);
        };
        let finished = connect_finished(socket)?;
        if finished {
            self.phase = LinkPhase::Handshake;
        }
        Ok(finished)
    }

    /// Reads until `WouldBlock` (edge-triggered: no new event comes for bytes already
    /// there) or until [`READ_BUDGET`] bytes are read, as for a client, so a flood of events
    /// cannot keep the loop from the clients. `Ok(false)`: the budget ran out first, and the
    /// socket may hold more (the loop comes back next turn). Redis closing the connection is
    /// an error here: it never should.
    pub(super) fn read(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        let name = self.name();
        let Some(socket) = &mut self.socket else {
            return Ok(true);
        };
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                return Ok(false);
            }
            match socket.read(scratch) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "Redis closed the connection",
                    ));
                }
                Ok(n) => {
                    trace!("backplane {name}: read {n} bytes");
                    self.input.extend_from_slice(&scratch[..n]);
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what is buffered until done or `WouldBlock`, then asks for writable events only
    /// if bytes are left (or the connect is not finished).
    pub(super) fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let name = self.name();
        let Some(socket) = &mut self.socket else {
            return Ok(());
        };
        if self.phase != LinkPhase::Connecting {
            // An offset, not a drain: up to BACKPLANE_MAX_OUTPUT may wait here, and moving it
            // down after every partial write would cost a copy each time.
            self.written += write_until_blocked(socket, &self.output[self.written..])?;
            if self.written == self.output.len() {
                self.output.clear();
                self.written = 0;
            } else if self.written > 0 {
                trace!(
                    "backplane {name}: socket full, {} bytes still buffered",
                    self.output.len() - self.written
                );
            }
        }
        let want_writable = self.phase == LinkPhase::Connecting || self.written < self.output.len();
        self.registration
            .update(registry, socket, self.token, want_writable)
    }

    pub(super) fn unsent(&self) -> usize {
        self.output.len() - self.written
    }
}
