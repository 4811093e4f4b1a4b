//! Telnet's commands in the line protocol (RFC 854, 855, 860): what a `telnet` client sends
//! besides text, taken out before the line framer sees it.
//!
//! A telnet client marks a command with the byte `IAC` (0xFF), which never occurs in UTF-8
//! text. The one it sends unasked is on Ctrl-C: `IAC IP` (interrupt), then `IAC DO
//! TIMING-MARK`, after which it shows nothing the server sends until the server answers the
//! timing mark. So the rules, for chat lines on the plain and TLS listeners (a WebSocket's
//! text comes framed, and never passes here):
//!
//! - No `IAC` sequence reaches the chat; `IAC IAC` is a literal 0xFF byte (which the UTF-8
//!   sanitiser then replaces, see `framing.rs`).
//! - `DO TIMING-MARK` is answered `WILL TIMING-MARK`. Any other option is refused: `DO x` with
//!   `WONT x`, `WILL x` with `DONT x`. `DONT` and `WONT` are never answered: an answer to a
//!   refusal is how two parties loop (RFC 854's rule).
//! - `IP` (Ctrl-C), `BRK` and `EL` (erase line) discard the line typed so far. `AYT` (are you
//!   there) gets a short line back. `AO`, `EC`, `NOP`, `DM`, `GA` and any other command are
//!   swallowed: there is no output to abort that is not already queued, and a telnet client
//!   in line mode edits its line itself.
//! - A subnegotiation (`IAC SB ... IAC SE`) is swallowed whole without being kept; after
//!   [`MAX_SUBNEGOTIATION`] bytes with no `IAC SE` it is taken as over (no option is ever
//!   agreed, so a real client never sends one).
//!
//! [`Telnet`] is a pure state machine of two bytes, kept between reads because a sequence
//! can be split across them. The line framer owns one (`LineFramer::extend_telnet`): it
//! feeds each read in, puts the text into its buffer and keeps the answers, which the
//! connection queues after the read, in order with the rest of its output. A read with no
//! 0xFF byte in it (every read of a client that is not `telnet`) costs one `memchr`.

/// Interpret As Command: what starts every command.
pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
/// Subnegotiation begins.
pub const SB: u8 = 250;
/// Erase Line.
pub const EL: u8 = 248;
/// Are You There.
pub const AYT: u8 = 246;
/// Interrupt Process (Ctrl-C).
pub const IP: u8 = 244;
/// Break.
pub const BRK: u8 = 243;
/// Subnegotiation ends.
pub const SE: u8 = 240;
/// The TIMING-MARK option (RFC 860).
pub const TIMING_MARK: u8 = 6;

/// The most bytes of a subnegotiation swallowed while waiting for its `IAC SE`.
pub const MAX_SUBNEGOTIATION: u8 = u8::MAX;

/// Where the parser is in the byte stream. See the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Telnet {
    state: State,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Text; the next `IAC` starts a command.
    #[default]
    Text,
    /// After an `IAC`.
    Iac,
    /// After `IAC` and this verb (`DO`, `DONT`, `WILL`, `WONT`): the option comes next.
    Verb(u8),
    /// Inside a subnegotiation, this many bytes in.
    Sub(u8),
    /// Inside a subnegotiation, after an `IAC` (an `SE` ends it).
    SubIac(u8),
}

/// One piece of the input, in the order sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text, for the line framer.
    Text(&'a [u8]),
    /// Bytes to send back to the client (`IAC WILL TIMING-MARK`, a refusal).
    Reply([u8; 3]),
    /// The line typed so far is to be thrown away (`IP`, `BRK`, `EL`).
    Interrupt,
    /// `AYT`: the client asks for a sign of life.
    AreYouThere,
}

impl Telnet {
    /// The next piece of `input`, which is advanced past it; `None` once `input` is used up
    /// (the state then remembers a sequence it ended in the middle of).
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Option<Piece<'a>> {
        while let Some((&byte, rest)) = input.split_first() {
            if self.state == State::Text {
                let end = memchr::memchr(IAC, input).unwrap_or(input.len());
                if end > 0 {
                    let (text, rest) = input.split_at(end);
                    *input = rest;
                    return Some(Piece::Text(text));
                }
                self.state = State::Iac;
                *input = rest;
                continue;
            }
            *input = rest;
            if let Some(piece) = self.command(byte) {
                return Some(piece);
            }
        }
        None
    }

    /// One byte of a command.
    fn command(&mut self, byte: u8) -> Option<Piece<'static>> {
        let (next, piece) = match (self.state, byte) {
            (State::Text, _) => (State::Text, None),
            (State::Iac, IAC) => (State::Text, Some(Piece::Text(&[IAC]))),
            (State::Iac, DO | DONT | WILL | WONT) => (State::Verb(byte), None),
            (State::Iac, SB) => (State::Sub(0), None),
            (State::Iac, IP | BRK | EL) => (State::Text, Some(Piece::Interrupt)),
            (State::Iac, AYT) => (State::Text, Some(Piece::AreYouThere)),
            (State::Iac, _) => (State::Text, None),
            (State::Verb(DO), TIMING_MARK) => (State::Text, Some(Piece::Reply([IAC, WILL, byte]))),
            (State::Verb(DO), _) => (State::Text, Some(Piece::Reply([IAC, WONT, byte]))),
            (State::Verb(WILL), _) => (State::Text, Some(Piece::Reply([IAC, DONT, byte]))),
            (State::Verb(_), _) => (State::Text, None),
            (State::Sub(n), IAC) => (State::SubIac(n), None),
            (State::Sub(MAX_SUBNEGOTIATION), _) => (State::Text, None),
            (State::Sub(n), _) => (State::Sub(n + 1), None),
            (State::SubIac(_), SE) => (State::Text, None),
            (State::SubIac(n), _) => (State::Sub(n), None),
        };
        self.state = next;
        piece
    }
}
