//! Logging set-up, and a log that cannot stop the loop.
//!
//! `log` macros everywhere, `simplelog` formatting behind them. Levels mean something: `info`
//! for what an operator wants in the log of a healthy server (listening, connects,
//! disconnects with their reason, shutdown), `warn` for limits hit (server full, too slow,
//! line too long, flood control, out of descriptors), `debug` for details of the loop,
//! `trace` for every line relayed, with its token, so a trace replays a line's journey.
//!
//! **The log is one more output of the loop.** Writing a log line straight to stderr is a
//! blocking `write(2)`: a consumer that stops reading (a pipe nobody drains, a terminal
//! paused with Ctrl-S) would stop the whole server at its next log line. So log lines go into
//! a bounded buffer ([`LOG_BUFFER`]) in the loop's thread, and the loop writes that buffer to
//! stderr at the end of each turn, non-blocking, like any socket: what stderr does not take
//! waits for a writable event. A line that does not fit in the buffer is dropped and counted,
//! and once the log drains again a warning says how many were lost.
//!
//! stderr is reopened for this through `/proc/self/fd/2`: for a pipe or a terminal that gives
//! a file description of the server's own, so making it non-blocking does not touch the
//! shell's (a shared `O_NONBLOCK` on a terminal breaks the shell that started us). A regular
//! file is written directly: writing one never waits for a reader.
//!
//! `--log-file` appends to a file with `simplelog`'s own writer: a file takes what it is
//! given.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{LevelFilter, warn};
use mio::unix::pipe::Sender;
use mio::{Interest, Registry, Token};
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};

use crate::error::Error;
use crate::limits::LOG_BUFFER;
use crate::nonblocking::write_until_blocked;

/// Set once [`init`] has sent the log through the buffer (tests run servers without it).
static BUFFERED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Log lines not yet written to stderr. Only the loop's thread logs.
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

#[derive(Debug, Default)]
struct Pending {
    /// Whole lines, oldest first; `bytes[written..]` is what stderr has not taken.
    bytes: Vec<u8>,
    written: usize,
    /// The line being formatted (`simplelog` writes one line in several pieces).
    line: Vec<u8>,
    /// Lines dropped since the last warning about it.
    dropped: u64,
}

impl Pending {
    fn take(&mut self, piece: &[u8]) {
        self.line.extend_from_slice(piece);
        while let Some(end) = memchr::memchr(b'\n', &self.line) {
            let queued = self.bytes.len() - self.written;
            if queued + end < LOG_BUFFER {
                self.bytes.extend_from_slice(&self.line[..=end]);
            } else {
                self.dropped += 1;
            }
            self.line.drain(..=end);
        }
    }
}

/// `simplelog`'s writer for the stderr log: into the buffer, never a system call.
struct ToBuffer;

impl Write for ToBuffer {
    fn write(&mut self, piece: &[u8]) -> io::Result<usize> {
        PENDING.with(|p| p.borrow_mut().take(piece));
        Ok(piece.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn init(level: LevelFilter, file: Option<&Path>) -> Result<(), Error> {
    let mut builder = ConfigBuilder::new();
    builder
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        // mio traces its own registrations; ours already say what the loop is doing.
        .add_filter_ignore_str("mio");
    // An RFC 3339 timestamp (UTC) reads the same in every time zone and sorts as text.
    let config = builder.set_time_format_rfc3339().build();
    // The loggers take every level and `log`'s global maximum filters, so that a reload can
    // change it (`log::set_max_level`); a macro below it costs one comparison, as before.
    let all = LevelFilter::Trace;
    let mut loggers: Vec<Box<dyn SharedLogger>> =
        vec![WriteLogger::new(all, config.clone(), ToBuffer)];
    if let Some(path) = file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::LogFile {
                path: path.to_path_buf(),
                source,
            })?;
        loggers.push(WriteLogger::new(all, config, file));
    }
    // Fails only if a logger is already installed (a second call), which is harmless.
    if CombinedLogger::init(loggers).is_ok() {
        BUFFERED.store(true, Ordering::Release);
    }
    log::set_max_level(level);
    Ok(())
}

/// How the loop writes the log buffer to stderr.
#[derive(Debug)]
enum Stderr {
    /// A pipe or terminal, reopened non-blocking and registered for writable events.
    Polled { pipe: Sender, blocked: bool },
    /// A regular file, `/dev/null`, or anything that cannot be reopened or polled: plain
    /// writes (none of them waits for a reader).
    Direct(File),
}

/// stderr as the loop writes it. See the module documentation.
#[derive(Debug)]
pub struct LogOutput {
    stderr: Stderr,
    /// stderr as the process got it, for plain writes if the reopened one cannot be polled.
    own: File,
}

impl LogOutput {
    /// stderr, ready for the loop; `None` when the log is not buffered (no [`init`]).
    pub fn open() -> io::Result<Option<LogOutput>> {
        if !BUFFERED.load(Ordering::Acquire) {
            return Ok(None);
        }
        let own = File::from(io::stderr().as_fd().try_clone_to_owned()?);
        let kind = own.metadata()?.file_type();
        let direct = || own.try_clone().map(Stderr::Direct);
        let stderr = if kind.is_fifo() || kind.is_char_device() {
            match OpenOptions::new().write(true).open("/proc/self/fd/2") {
                Ok(reopened) => {
                    let pipe = Sender::from(OwnedFd::from(reopened));
                    pipe.set_nonblocking(true)?;
                    Stderr::Polled {
                        pipe,
                        blocked: false,
                    }
                }
                Err(_) => direct()?,
            }
        } else {
            direct()?
        };
        Ok(Some(LogOutput { stderr, own }))
    }

    /// Registers a pipe or terminal for writable events (edge-triggered: one comes each time
    /// stderr has room again after a write said `WouldBlock`). A character device epoll
    /// refuses (`/dev/null`) is written plainly instead: it never waits either.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        if let Stderr::Polled { pipe, .. } = &mut self.stderr {
            match registry.register(pipe, token, Interest::WRITABLE) {
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    self.stderr = Stderr::Direct(self.own.try_clone()?);
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// A writable event: stderr has room again.
    pub fn writable(&mut self) {
        if let Stderr::Polled { blocked, .. } = &mut self.stderr {
            *blocked = false;
        }
    }

    /// Writes what the buffer holds until it is empty or stderr says `WouldBlock`. Lines
    /// dropped meanwhile are reported once there is room for the report.
    pub fn flush(&mut self) {
        match &mut self.stderr {
            Stderr::Polled { blocked: true, .. } => {}
            Stderr::Polled { pipe, blocked } => *blocked = !write_pending(pipe),
            Stderr::Direct(file) => {
                write_pending(file);
            }
        }
    }
}

/// Writes the buffer to `out` until it is empty (`true`) or `out` is full (`false`). Lines
/// dropped since the last call are reported first (into the buffer, so the report takes its
/// place in the log). An error other than `WouldBlock` drops what is buffered: there is
/// nowhere else to say it.
fn write_pending(out: &mut impl Write) -> bool {
    let dropped = PENDING.with(|p| std::mem::take(&mut p.borrow_mut().dropped));
    if dropped > 0 {
        // No borrow is held here: `warn!` runs the logger, which writes into the buffer.
        warn!("{dropped} log lines dropped: the log was not read as fast as it was written");
    }
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let Pending { bytes, written, .. } = &mut *p;
        match write_until_blocked(out, &bytes[*written..]) {
            Ok(n) => *written += n,
            Err(_) => *written = bytes.len(),
        }
        if *written == bytes.len() {
            bytes.clear();
            *written = 0;
            return true;
        }
        // Stuck part-way: keep only what is left, so the buffer stays within its bound.
        bytes.drain(..*written);
        *written = 0;
        false
    })
}

/// Writes what the log buffer still holds, on the way out of `main` (an error before the loop
/// ran, or after it stopped): as much as stderr takes without waiting. A consumer that is not
/// reading must not keep the process from exiting either.
pub fn flush_on_exit() {
    if let Ok(Some(mut out)) = LogOutput::open() {
        out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_are_kept_until_the_buffer_is_full_then_dropped_and_counted() {
        let mut p = Pending::default();
        p.take(b"one ");
        p.take(b"line\ntwo\n");
        assert_eq!(p.bytes, b"one line\ntwo\n");
        let long = vec![b'x'; LOG_BUFFER];
        p.take(&long);
        p.take(b"\n");
        assert_eq!(p.dropped, 1, "a line past the bound is dropped whole");
        assert_eq!(p.bytes, b"one line\ntwo\n");
    }
}
