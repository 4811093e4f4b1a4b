//! The client's two ends at the person's side: stdin, read without blocking in the same poll
//! as the socket, and stdout, where received lines are shown.
//!
//! # stdin
//!
//! To read stdin in a readiness loop it must be non-blocking, and `O_NONBLOCK` is a flag of
//! the *open file description*, not of our file descriptor. When stdin is the terminal, that
//! description is the one the shell started us with and will read its next command from
//! (usually stdout and stderr too: the terminal was opened once and duplicated onto 0, 1 and
//! 2). A shell handed back a non-blocking terminal may fail its next read. So `NonBlocking`
//! puts the flag back as it found it when it is dropped, which happens on every way out of
//! the client: a normal end, an error, a panic. Signals are events in the loop (see `main.rs`)
//! and end it normally; SIGTSTP (Ctrl-Z) gives the terminal back before stopping. Only SIGKILL
//! leaves the flag behind, and nothing can help that.
//!
//! epoll refuses some files: a regular file (`pollchat-connect ... < lines.txt`) and
//! `/dev/null` cannot be registered (`EPERM`), because reading them never waits. Such a stdin
//! is simply always ready: the loop reads it whenever it has room for more to send.
//!
//! # stdout
//!
//! Received lines go through a [`Screen`]: a write queue of their own, written at the end of
//! each turn. Writes to stdout are left blocking when stdout is blocking (a pipe, a file, a
//! terminal of its own): we never set `O_NONBLOCK` on stdout, because that would change it
//! for whoever shares it. A reader that cannot keep up then holds the loop, the socket is not
//! read meanwhile, and the server's slow-reader rules (`--max-output`) deal with us. But when
//! stdout shares its description with a terminal stdin, our own `O_NONBLOCK` applies to it,
//! and a write may say `WouldBlock` (the terminal's buffer is full, or output was paused with
//! Ctrl-S). Then the rest waits in the queue, stdout is registered for writable events, and
//! the socket is not read until the screen catches up: the same backpressure, without
//! blocking the loop.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::CLIENT_MAX_LINE;
use pollchat::framing::{Frame, LineFramer};
use pollchat::nonblocking::ReadOutcome;
use pollchat::write_queue::{Flushed, WriteQueue};

/// SGR codes for server lines (cyan) and the client's own notes (dim), and the reset.
const SERVER_COLOUR: &str = "\x1b[36m";
const NOTE_COLOUR: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Sets `O_NONBLOCK` on a file's open file description, and puts back what was there before
/// when dropped. See the module documentation for why that matters.
///
/// `socket2::SockRef` is used on a descriptor that may not be a socket. Its
/// `set_nonblocking` and `nonblocking` are plain `fcntl(F_GETFL/F_SETFL)` calls, valid on any
/// descriptor, and it gives us them without `unsafe` (the crate denies it outside src/memory.rs) and without one
/// more dependency.
#[derive(Debug)]
struct NonBlocking {
    /// Our own descriptor for the description (a `dup` of stdin), kept so the flag can be
    /// put back after stdin's handle in `Input` is gone.
    file: File,
    /// Whether the description was non-blocking before we came: then there is nothing to undo.
    was_nonblocking: bool,
}

impl NonBlocking {
    fn set(file: &File) -> io::Result<NonBlocking> {
        let file = file.try_clone()?;
        let was_nonblocking = SockRef::from(&file).nonblocking()?;
        SockRef::from(&file).set_nonblocking(true)?;
        Ok(NonBlocking {
            file,
            was_nonblocking,
        })
    }

    /// Puts the flag back as it was (also done on drop).
    fn restore(&self) -> io::Result<()> {
        if self.was_nonblocking {
            return Ok(());
        }
        SockRef::from(&self.file).set_nonblocking(false)
    }

    /// Sets it again, after a [`NonBlocking::restore`] (the client was stopped and continued).
    fn reapply(&self) -> io::Result<()> {
        SockRef::from(&self.file).set_nonblocking(true)
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // Nothing useful can be done with a failure here: the client is on its way out.
        let _ = self.restore();
    }
}

/// How the loop waits for stdin.
#[derive(Debug)]
enum Readiness {
    /// Registered with the poll; non-blocking for as long as the guard lives.
    Polled(NonBlocking),
    /// epoll refused it (a regular file, `/dev/null`): reads never wait, so it is always
    /// ready, and its end is an ordinary end of file.
    AlwaysReady,
    /// No longer read (it ended, or `/quit` was typed), and no longer watched.
    Closed,
}

/// stdin: its descriptor, how the loop waits for it, and the framer that cuts it into lines.
#[derive(Debug)]
pub struct Input {
    /// A `dup` of descriptor 0. Reads go straight to `read(2)`: `std::io::Stdin` has a buffer
    /// of its own, and bytes sitting in it would be invisible to readiness events.
    file: File,
    readiness: Readiness,
    pub framer: LineFramer,
}

impl Input {
    /// Registers stdin with the poll under `token` and makes it non-blocking; or, if epoll
    /// refuses it, takes it as always ready.
    pub fn open(registry: &Registry, token: Token) -> io::Result<Input> {
        let file = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let readiness =
            match registry.register(&mut SourceFd(&file.as_raw_fd()), token, Interest::READABLE) {
                Ok(()) => Readiness::Polled(NonBlocking::set(&file)?),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Readiness::AlwaysReady,
                Err(e) => return Err(e),
            };
        Ok(Input {
            file,
            readiness,
            framer: LineFramer::new(CLIENT_MAX_LINE),
        })
    }

    /// Whether stdin needs no readiness event to be read (a regular file, `/dev/null`).
    pub fn always_ready(&self) -> bool {
        matches!(self.readiness, Readiness::AlwaysReady)
    }

    /// One read, into the framer.
    pub fn read(&mut self, scratch: &mut [u8]) -> io::Result<ReadOutcome> {
        let outcome = ReadOutcome::from_read(|| io::Read::read(&mut self.file, scratch))?;
        if let ReadOutcome::Data(n) = outcome {
            self.framer.extend(&scratch[..n]);
        }
        Ok(outcome)
    }

    /// stdin will not be read again: stop watching it, and give the terminal its flags back
    /// now rather than at exit.
    pub fn close(&mut self, registry: &Registry) {
        if let Readiness::Polled(_) = &self.readiness {
            // Fails only if it was never registered; either way it is not watched.
            let _ = registry.deregister(&mut SourceFd(&self.file.as_raw_fd()));
        }
        // Dropping the guard puts the flag back.
        self.readiness = Readiness::Closed;
    }

    /// Before the process stops (Ctrl-Z): the shell gets the terminal back as it gave it.
    pub fn suspend(&self) -> io::Result<()> {
        match &self.readiness {
            Readiness::Polled(guard) => guard.restore(),
            Readiness::AlwaysReady | Readiness::Closed => Ok(()),
        }
    }

    /// After the process is continued (`fg`): non-blocking again.
    pub fn resume(&self) -> io::Result<()> {
        match &self.readiness {
            Readiness::Polled(guard) => guard.reapply(),
            Readiness::AlwaysReady | Readiness::Closed => Ok(()),
        }
    }
}

/// Whether to colour server lines: only on a terminal, and only if `NO_COLOR` is unset or
/// empty (<https://no-color.org>). Anything read from a pipe or a file gets the plain bytes.
pub fn colour_wanted(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// stdout, and the lines waiting to be written to it. See the module documentation.
#[derive(Debug)]
pub struct Screen {
    /// A `dup` of descriptor 1: unbuffered, so a `WouldBlock` means exactly what it says
    /// (`std::io::Stdout` is line-buffered, and `print!` panics on a write error).
    file: File,
    queue: WriteQueue,
    colour: bool,
    /// stdout is registered with the poll (it was once found non-blocking and full).
    registered: bool,
    /// The last write said `WouldBlock`: wait for a writable event before the next.
    blocked: bool,
}

impl Screen {
    pub fn open() -> io::Result<Screen> {
        let stdout = io::stdout();
        let colour = colour_wanted(
            stdout.is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        Ok(Screen {
            file: File::from(stdout.as_fd().try_clone_to_owned()?),
            queue: WriteQueue::default(),
            colour,
            registered: false,
            blocked: false,
        })
    }

    /// Queues a frame received from the server for display.
    pub fn show(&mut self, frame: Frame) {
        let text = match frame {
            Frame::Line(line) => render_line(&line, self.colour),
            Frame::TooLong => render_note(
                &format!("(a line over {CLIENT_MAX_LINE} bytes from the server was not shown)"),
                self.colour,
            ),
        };
        self.queue.push(Rc::from(text.into_bytes()));
    }

    /// A note from the client itself (not from the server), shown among the received lines.
    pub fn note(&mut self, text: &str) {
        self.queue
            .push(Rc::from(render_note(text, self.colour).into_bytes()));
    }

    /// Bytes waiting for stdout.
    pub fn backlog(&self) -> usize {
        self.queue.unsent()
    }

    /// A writable event for stdout.
    pub fn unblock(&mut self) {
        self.blocked = false;
    }

    /// Writes what is queued, unless the last write said `WouldBlock` and no writable event
    /// has come since (edge-triggered: one arrives once there is room).
    pub fn flush(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        if self.blocked || self.queue.is_empty() {
            return Ok(());
        }
        if self.queue.write_to(&mut self.file)? == Flushed::Blocked {
            self.blocked = true;
            if !self.registered {
                // Registered once, when first needed, for writable events only. A stdout
                // that is a regular file never gets here: writing to one never says
                // WouldBlock (and epoll would refuse it).
                registry.register(
                    &mut SourceFd(&self.file.as_raw_fd()),
                    token,
                    Interest::WRITABLE,
                )?;
                self.registered = true;
            }
        }
        Ok(())
    }
}

/// A received line, ready for the terminal: server lines (`*** `) in colour if wanted.
///
/// The line was sanitised by the framer on the way in (no control characters but tab), so a
/// server, or anyone it relays, cannot slip escape sequences onto the terminal: the only
/// escape sequences written are the two added here.
fn render_line(line: &str, colour: bool) -> String {
    if colour && line.starts_with("*** ") {
        format!("{SERVER_COLOUR}{line}{RESET}\n")
    } else {
        format!("{line}\n")
    }
}

fn render_note(text: &str, colour: bool) -> String {
    if colour {
        format!("{NOTE_COLOUR}pollchat: {text}{RESET}\n")
    } else {
        format!("pollchat: {text}\n")
    }
}

/// Writes `text` to stderr, ignoring failure: for a warning printed before the loop starts
/// (`eprintln!` would panic if stderr were a closed pipe).
pub fn warn(text: &str) {
    let _ = writeln!(io::stderr(), "{text}");
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }

    #[test]
    fn only_server_lines_are_coloured() {
        assert_eq!(
            render_line("*** bob joined", true),
            "\x1b[36m*** bob joined\x1b[0m\n"
        );
        assert_eq!(render_line("<bob> *** hi", true), "<bob> *** hi\n");
        assert_eq!(render_line("*** bob joined", false), "*** bob joined\n");
    }

    #[test]
    fn escape_sequences_from_the_network_never_reach_the_terminal() {
        let mut framer = LineFramer::new(CLIENT_MAX_LINE);
        framer.extend(b"*** \x1b]0;owned\x07title \x1b[2Jclear\x9b\n");
        let Some(Frame::Line(line)) = framer.next_frame() else {
            panic!("a line");
        };
        let shown = render_line(&line, true);
        let escapes = shown.matches('\x1b').count();
        assert_eq!(escapes, 2, "only our own colour and reset: {shown:?}");
    }
}
