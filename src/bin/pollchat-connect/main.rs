//! `pollchat-connect`: a terminal client, built the way the server is built. One thread runs
//! one `mio::Poll` loop, and in it are stdin, the socket, the signal pipe, and stdout when it
//! has to be waited for.
//!
//! A line goes through it like this:
//!
//! ```text
//!   stdin ──► Input (framer) ──lines──► WriteQueue ──► Transport (TLS?) ──► socket
//!   socket ──► Transport ──plaintext──► framer ──clean lines──► Screen (WriteQueue) ──► stdout
//! ```
//!
//! - [`terminal`]: stdin made non-blocking (and put back), a regular file as stdin, and the
//!   screen: colour, and stdout that may block or not.
//! - [`transport`]: connecting, and TLS between the write queue and the socket.
//! - [`pinned`]: `--ca` certificates trusted as themselves, as OpenSSL trusts them.
//! - [`explain`]: what a TLS failure means, in one sentence that says what to do.
//!
//! Each turn of the loop does the same things, in this order:
//!
//! 1. **Wait** in `poll`, or not at all if a source is already known to have input.
//! 2. **Note readiness.** Nothing is read here. Each source gets a flag, "may have input",
//!    which only a read that says `WouldBlock` clears. Readiness is edge-triggered: new input
//!    is reported once, so the flag is how the loop remembers input it chose not to read yet.
//! 3. **Read stdin** into the send queue: until `WouldBlock`, its end, or until the queue
//!    holds [`CLIENT_SEND_BACKLOG`]. A server that reads slowly makes us read stdin slowly.
//! 4. **Read the socket** onto the screen: until `WouldBlock`, the server's close, or until
//!    the screen holds [`CLIENT_SCREEN_BACKLOG`]. A slow terminal makes us read slowly.
//! 5. **Write**: the send queue to the socket, the screen to stdout. The socket asks for
//!    writable events only while its send buffer is full, as the server's clients do.
//!
//! Reading both sides before writing either means one turn's lines go out in one `writev`.
//!
//! How a session ends, and the exit status that says how, is [`Outcome`].

mod args;
mod explain;
mod pinned;
mod terminal;
mod tls;
mod transport;

use std::io;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGSTOP, SIGTERM, SIGTSTP};
use signal_hook_mio::v1_0::Signals;

use args::{ConnectArgs, Target};
use pollchat::error::describe;
use pollchat::framing::{Frame, LineFramer};
use pollchat::limits::READ_CHUNK;
use pollchat::nonblocking::{ReadOutcome, Registration};
use pollchat::protocol::{self, Command};
use pollchat::write_queue::WriteQueue;

use terminal::{Input, Screen};
use tls::TransportError;
use transport::{Sent, Transport};

// The client's bounds. It has one server and one person, so they are about memory and about
// passing backpressure on, not about fairness (the server's are in `pollchat::limits`).

/// Longest line the client frames, in either direction. A longer line typed is not sent,
/// and a longer line received is not shown (a note says so). Sixteen times the server's
/// default `--max-line`, so any line a pollchat server relays fits.
pub const CLIENT_MAX_LINE: usize = 64 * 1024;

/// Bytes queued for the server past which the client stops reading stdin. Input piped from
/// a large file then waits in the file, not in memory, while the server (whose flood control
/// reads 10 lines a second by default) takes it at its own pace.
pub const CLIENT_SEND_BACKLOG: usize = 64 * 1024;

/// Bytes waiting for stdout past which the client stops reading the socket. A terminal or
/// pipe that cannot keep up then slows the server's writes to us, and the server's own
/// slow-reader rules (`--max-output`) take over, instead of this process growing.
pub const CLIENT_SCREEN_BACKLOG: usize = 64 * 1024;

/// How long the client waits for a TCP connection to each address of the server. Without a
/// bound, a silently dropped SYN would leave the user waiting for the kernel's retries
/// (about two minutes on Linux).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = ConnectArgs::parse();
    // The session's one line on stderr (why it ended), and a status that says the same to
    // scripts; `pollchat-connect --help` lists them.
    let outcome = run(&args);
    if let Some(message) = outcome.message() {
        eprintln!("pollchat: {message}");
    }
    ExitCode::from(outcome.exit_code())
}

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);
const STDOUT: Token = Token(2);
const SIGNALS: Token = Token(3);

/// Events fetched per `poll`: there are only four sources.
const EVENTS_CAPACITY: usize = 16;

/// How a session ended: the one line `main` prints on stderr, and the exit status.
#[derive(Debug)]
pub enum Outcome {
    /// stdin ended (Ctrl-D, or the end of piped input), everything typed was sent, and the
    /// server closed after answering it. Exit status 0.
    InputEnded,
    /// Whoever read stdout went away (`pollchat-connect ... | head -3`). There is nobody left
    /// to show anything to, and that is not a failure (ripgrep's rule). Exit status 0, quietly.
    OutputClosed,
    /// `/quit` was typed, and the server closed. Exit status 3.
    Quit,
    /// The server closed the connection while we were still chatting (it shut down, or sent
    /// us away: idle, too slow, ...). Its last lines say why. Exit status 4.
    ServerClosed,
    /// No connection: the host did not resolve, nobody listened, the `--ca` file was bad.
    /// Exit status 1.
    CannotConnect(String),
    /// The connection broke, or stdin or stdout failed. Exit status 1.
    Failed(String),
    /// TLS failed: the certificate was not trusted, or the handshake failed. Exit status 5.
    Tls(String),
    /// SIGINT (Ctrl-C), SIGTERM or SIGHUP. Exit status 128 + the signal's number, as a shell
    /// reports a process killed by it.
    Signalled(i32),
}

impl Outcome {
    /// The process's exit status. `pollchat-connect --help` lists the same numbers.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::InputEnded | Outcome::OutputClosed => 0,
            Outcome::CannotConnect(_) | Outcome::Failed(_) => 1,
            Outcome::Quit => 3,
            Outcome::ServerClosed => 4,
            Outcome::Tls(_) => 5,
            Outcome::Signalled(signal) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        }
    }

    /// The one line for stderr, if there is anything to say.
    pub fn message(&self) -> Option<String> {
        Some(match self {
            Outcome::InputEnded => "end of input; disconnected".to_string(),
            Outcome::OutputClosed => return None,
            Outcome::Quit => "you quit; disconnected".to_string(),
            Outcome::ServerClosed => "the server closed the connection".to_string(),
            Outcome::CannotConnect(why) | Outcome::Failed(why) | Outcome::Tls(why) => why.clone(),
            Outcome::Signalled(SIGINT) => "interrupted (SIGINT)".to_string(),
            Outcome::Signalled(SIGHUP) => "hung up (SIGHUP: the terminal went away)".to_string(),
            Outcome::Signalled(signal) => format!("ended by signal {signal}"),
        })
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// stdin is read and its lines are sent; received lines are shown.
    Chatting,
    /// stdin is no longer read. What is queued goes out, then the sending half is closed,
    /// and what the server still sends is shown until it closes. The pollchat server answers
    /// everything it was sent before it closes, so `printf '/who\n' | pollchat-connect ...`
    /// prints the answer.
    Leaving(Leaving),
}

/// Why the client is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// stdin ended.
    InputEnded,
    /// `/quit` was typed.
    Quit,
}

/// Connects and runs the session to its end.
pub fn run(args: &ConnectArgs) -> Outcome {
    if args.insecure {
        // Before stdin is touched, so the warning comes out however stderr is shared.
        terminal::warn(
            "pollchat: WARNING: --insecure: the server's certificate is NOT verified. Anyone \
             between you and the server can read and change everything in this chat.",
        );
    }
    let transport = match transport::connect(args) {
        Ok(transport) => transport,
        Err(e) => return Outcome::CannotConnect(e.to_string()),
    };
    match Client::new(transport, args.server.clone()) {
        Ok(client) => client.run(),
        Err(e) => Outcome::Failed(format!("cannot start the client: {}", describe(&e))),
    }
}

/// The whole client: the poll instance and everything registered in it.
struct Client {
    poll: Poll,
    transport: Transport,
    target: Target,
    /// Dropped (and stdin's flags put back) when the client is.
    input: Input,
    screen: Screen,
    signals: Signals,
    /// Lines typed and not yet handed to the transport.
    outgoing: WriteQueue,
    /// Bytes from the server not yet cut into lines.
    incoming: LineFramer,
    /// Every read lands here first.
    scratch: Box<[u8]>,
    phase: Phase,
    /// stdin may have input: an event said so (or it is always ready), and no read has said
    /// `WouldBlock` since.
    stdin_ready: bool,
    /// The same for the socket.
    socket_ready: bool,
    /// The last write to the socket said `WouldBlock`: write again after a writable event.
    socket_full: bool,
    /// What the socket is registered for.
    registration: Registration,
    /// The sending half is closed (the phase is `Leaving` and everything went out).
    sending_closed: bool,
    /// Set when the connection is over (the server closed, or it failed). The loop still
    /// runs until the screen has shown everything received.
    ended: Option<Outcome>,
}

impl Client {
    fn new(mut transport: Transport, target: Target) -> io::Result<Client> {
        let poll = Poll::new()?;
        poll.registry()
            .register(transport.socket(), SOCKET, Interest::READABLE)?;
        // Signals are events like any other, so Ctrl-C ends the loop between two steps and
        // stdin's flags are put back on the way out (a default handler would kill us first).
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGTSTP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let input = Input::open(poll.registry(), STDIN)?;
        let stdin_ready = input.always_ready();
        Ok(Client {
            poll,
            transport,
            target,
            input,
            screen: Screen::open()?,
            signals,
            outgoing: WriteQueue::default(),
            incoming: LineFramer::new(CLIENT_MAX_LINE),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            phase: Phase::Chatting,
            stdin_ready,
            socket_ready: false,
            socket_full: false,
            registration: Registration::readable(),
            sending_closed: false,
            ended: None,
        })
    }

    fn run(mut self) -> Outcome {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            if let Err(outcome) = self.turn(&mut events) {
                return outcome;
            }
            if self.screen.backlog() == 0
                && let Some(outcome) = self.ended.take()
            {
                return outcome;
            }
        }
    }

    /// One turn of the loop: steps 1 to 5 of the module documentation. An `Err` ends the
    /// session at once (a signal, stdout gone); `self.ended` ends it once the screen is shown.
    fn turn(&mut self, events: &mut Events) -> Result<(), Outcome> {
        // 1. Wait, unless there is input we already know of, or TLS has records to send that
        //    the socket may take now. (The first turn of a TLS session is one: the
        //    ClientHello waits in rustls, and the server says nothing until it gets it, so
        //    waiting here would wait until the user typed something.)
        let must_write = self.ended.is_none() && !self.socket_full && self.transport.wants_write();
        let timeout = (self.may_read_input() || self.may_read_server() || must_write)
            .then_some(Duration::ZERO);
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Outcome::Failed(format!(
                "event loop failed: {}",
                describe(&e)
            )));
        }

        // 2. Note readiness. An error or hang-up counts as both: the next read or write
        //    returns the real error (or the last bytes before an orderly close).
        for event in events.iter() {
            let hangup = event.is_error() || event.is_read_closed();
            match event.token() {
                STDIN => self.stdin_ready = true,
                SOCKET => {
                    if event.is_readable() || hangup {
                        self.socket_ready = true;
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        self.socket_full = false;
                    }
                }
                STDOUT => self.screen.unblock(),
                SIGNALS => self.on_signals()?,
                // mio allows spurious events; there is no other token to mistake it for.
                _ => {}
            }
        }

        // 3, 4, 5.
        self.read_input()?;
        self.read_server();
        self.write_out()
    }

    fn may_read_input(&self) -> bool {
        self.ended.is_none()
            && self.phase == Phase::Chatting
            && self.stdin_ready
            && self.outgoing.unsent() < CLIENT_SEND_BACKLOG
    }

    fn may_read_server(&self) -> bool {
        self.ended.is_none() && self.socket_ready && self.screen.backlog() < CLIENT_SCREEN_BACKLOG
    }

    /// Step 3: stdin into the send queue.
    fn read_input(&mut self) -> Result<(), Outcome> {
        while self.may_read_input() {
            match self.input.read(&mut self.scratch) {
                Ok(ReadOutcome::Data(_)) => {
                    while self.phase == Phase::Chatting
                        && let Some(frame) = self.input.framer.next_frame()
                    {
                        self.queue_typed(frame);
                    }
                }
                Ok(ReadOutcome::Drained) => self.stdin_ready = false,
                Ok(ReadOutcome::Eof) => {
                    // The last line may have no newline (`printf '/who' | pollchat ...`).
                    if let Some(frame) = self.input.framer.finish() {
                        self.queue_typed(frame);
                    }
                    if self.phase == Phase::Chatting {
                        self.leave(Leaving::InputEnded);
                    }
                }
                Err(e) => {
                    return Err(Outcome::Failed(format!(
                        "cannot read stdin: {}",
                        describe(&e)
                    )));
                }
            }
        }
        Ok(())
    }

    /// A line typed: queued for the server. `/quit` is sent too (the server says goodbye),
    /// and nothing typed after it is read.
    fn queue_typed(&mut self, frame: Frame) {
        match frame {
            Frame::Line(line) => {
                let quit = matches!(protocol::parse(&line), Ok(Some(Command::Quit(_))));
                self.outgoing
                    .push(Rc::from(format!("{line}\n").into_bytes()));
                if quit {
                    self.leave(Leaving::Quit);
                }
            }
            Frame::TooLong => self.screen.note(&format!(
                "(a line over {CLIENT_MAX_LINE} bytes was not sent)"
            )),
        }
    }

    fn leave(&mut self, why: Leaving) {
        self.phase = Phase::Leaving(why);
        self.input.close(self.poll.registry());
    }

    /// Step 4: the socket onto the screen.
    fn read_server(&mut self) {
        while self.may_read_server() {
            let result = self
                .transport
                .receive(&mut self.scratch, &mut self.incoming);
            while let Some(frame) = self.incoming.next_frame() {
                self.screen.show(frame);
            }
            match result {
                Ok(ReadOutcome::Data(_)) => {}
                Ok(ReadOutcome::Drained) => self.socket_ready = false,
                Ok(ReadOutcome::Eof) => {
                    if let Some(frame) = self.incoming.finish() {
                        self.screen.show(frame);
                    }
                    self.ended = Some(match self.phase {
                        Phase::Chatting => Outcome::ServerClosed,
                        Phase::Leaving(Leaving::InputEnded) => Outcome::InputEnded,
                        Phase::Leaving(Leaving::Quit) => Outcome::Quit,
                    });
                }
                Err(e) => self.ended = Some(self.broken(e)),
            }
        }
    }

    /// Step 5: the send queue to the socket (closing the sending half when it is time), and
    /// the screen to stdout.
    fn write_out(&mut self) -> Result<(), Outcome> {
        if self.ended.is_none() && !self.socket_full {
            match self.send() {
                Ok(sent) => {
                    self.socket_full = sent == Sent::SocketFull;
                    if let Err(e) = self.match_interest() {
                        self.ended = Some(self.broken(TransportError::Io(e)));
                    }
                }
                Err(e) => self.ended = Some(self.broken(e)),
            }
        }
        self.screen
            .flush(self.poll.registry(), STDOUT)
            .map_err(|e| match e.kind() {
                io::ErrorKind::BrokenPipe => Outcome::OutputClosed,
                _ => Outcome::Failed(format!("cannot write to stdout: {}", describe(&e))),
            })
    }

    /// Everything queued towards the server; then, once it is all out and the client is
    /// leaving, "no more from me" (see [`Transport::close_sending`]).
    fn send(&mut self) -> Result<Sent, TransportError> {
        let sent = self.transport.send(&mut self.outgoing)?;
        if sent != Sent::All || self.sending_closed || self.phase == Phase::Chatting {
            return Ok(sent);
        }
        let sent = self.transport.close_sending()?;
        self.sending_closed = sent == Sent::All;
        Ok(sent)
    }

    /// Writable interest exactly while the socket's send buffer is full: asking for it with
    /// nothing waiting would wake the loop for nothing, again and again.
    fn match_interest(&mut self) -> io::Result<()> {
        let socket = self.transport.socket();
        self.registration
            .update(self.poll.registry(), socket, SOCKET, self.socket_full)
    }

    /// The outcome for a connection that broke.
    fn broken(&self, error: TransportError) -> Outcome {
        match error {
            TransportError::Io(e)
                if e.kind() == io::ErrorKind::InvalidData
                    && e.to_string() == transport::SPEAKS_TLS =>
            {
                Outcome::Tls(format!(
                    "{} answered in TLS: that is a TLS port, so connect with --tls (and --ca \
                     PEM for a self-signed server)",
                    self.target
                ))
            }
            TransportError::Io(e) => Outcome::Failed(format!(
                "connection to {} lost: {}",
                self.target,
                describe(&e)
            )),
            TransportError::Tls(e) => Outcome::Tls(explain::explain_tls(&e, &self.target)),
        }
    }

    fn on_signals(&mut self) -> Result<(), Outcome> {
        let received: Vec<i32> = self.signals.pending().collect();
        for signal in received {
            if signal == SIGTSTP {
                self.suspend();
            } else {
                return Err(Outcome::Signalled(signal));
            }
        }
        Ok(())
    }

    /// Ctrl-Z. Catching SIGTSTP replaced its default (stop the process), so do that by hand,
    /// with the terminal's flags put back first: the shell reads from it while we are
    /// stopped. `raise(SIGSTOP)` returns once `fg` or `bg` continues us.
    fn suspend(&mut self) {
        let _ = self.input.suspend();
        let _ = signal_hook::low_level::raise(SIGSTOP);
        let _ = self.input.resume();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_has_its_own_status_and_help_lists_them() {
        let endings = [
            Outcome::InputEnded,
            Outcome::CannotConnect(String::new()),
            Outcome::Quit,
            Outcome::ServerClosed,
            Outcome::Tls(String::new()),
            Outcome::Signalled(2),
        ];
        let codes: Vec<u8> = endings.iter().map(Outcome::exit_code).collect();
        assert_eq!(codes, [0, 1, 3, 4, 5, 130]);
        let help = args::CONNECT_AFTER_HELP;
        for code in [0, 1, 2, 3, 4, 5] {
            assert!(help.contains(&format!("\n  {code}  ")), "{code} in {help}");
        }
    }
}
