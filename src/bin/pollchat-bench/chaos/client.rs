//! One chaos client: its socket, its TLS session or WebSocket framing if it has one, its
//! buffers, and their I/O without blocking. What it does with them is its role's
//! (`roles.rs`); this is how bytes get in and out, the same way for every role: plain,
//! through rustls, or as WebSocket frames, as far as the socket goes without waiting.
//!
//! Roles see lines either way: `input` holds the lines the server sent and `output` the
//! lines to send, whatever the listener. Only [`write_out`] and [`receive`] know that a TLS
//! client's lines are records and a WebSocket client's are frames ([`WsFraming`]).

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;
use socket2::SockRef;

use super::roles::Role;
use crate::BenchArgs;
use crate::tls::{TransportError, client_config, receive_tls};
use crate::wire::{self, Incoming, Proto};
use crate::worker::flush;
use pollchat::limits::LOBBY;
use pollchat::nonblocking::ReadOutcome;
use pollchat::nonblocking::write_until_blocked;
use pollchat::nonblocking::{Plaintext, write_records};

/// One connection of the run, whatever its role.
pub(super) struct Client {
    pub(super) stream: TcpStream,
    /// The client's TLS session, for TLS chatters and TLS non-readers: plaintext goes in and
    /// out through it (see [`write_out`] and [`receive`]). Boxed: a session is large.
    pub(super) tls: Option<Box<ClientConnection>>,
    /// The client's WebSocket framing, for WebSocket chatters, the WebSocket pinger and the
    /// misbehaving roles that upgrade: lines go out and come in through it.
    pub(super) ws: Option<Box<WsFraming>>,
    pub(super) role: Role,
    /// Its line in the role table: the role's name, or `tls-chatter`, `ws-chatter` for a
    /// chatter over TLS or WebSocket.
    pub(super) kind: &'static str,
    /// Which client of its role this is (varies the behaviour within a role).
    pub(super) serial: u64,
    pub(super) connected: bool,
    pub(super) welcomed: bool,
    /// This client asked to be closed (`/quit`, half-close): the server's close is expected.
    pub(super) leaving: bool,
    /// The server told it of the limit its role is there to hit (a `ws-oversized` client's
    /// `*** line too long`): what it hears next shows whether it was kept.
    pub(super) told_off: bool,
    /// Shut down the sending half once `output` is written (half-closers).
    pub(super) shutdown_when_flushed: bool,
    pub(super) input: Vec<u8>,
    pub(super) output: Vec<u8>,
    /// When a misbehaving client goes.
    pub(super) until: Instant,
    /// When a chatter sends its next line, or the pinger its next ping.
    pub(super) next_send: Instant,
    pub(super) seq: u64,
    /// The pinger's nick, from its welcome: it sends `/msg` to itself. A non-reader's, which
    /// it chose itself: flooders send `/msg` to it.
    pub(super) nick: String,
    /// A non-reader the flooders have aimed at (each gets one dose).
    pub(super) aimed_at: bool,
    /// The room a well-behaved client belongs in: `#lobby`, or the second room for its
    /// chatters, which `/join` it once welcomed.
    pub(super) home: &'static str,
    /// Where the server last said the client is: `#lobby` from the welcome on, then the room
    /// of each `*** you are now in`.
    pub(super) room: String,
    /// While a history replay is arriving: which of the round's replays it is.
    pub(super) replay: Option<usize>,
    /// A checker has heard the answer to the `/msg` it sent itself after entering its room:
    /// any replay of the room's history came before it.
    pub(super) synced: bool,
}

impl Client {
    /// A client of `role` whose connect has just started.
    pub(super) fn new(
        stream: TcpStream,
        tls: Option<Box<ClientConnection>>,
        ws: Option<Box<WsFraming>>,
        role: Role,
        kind: &'static str,
        serial: u64,
        until: Instant,
    ) -> Client {
        Client {
            stream,
            tls,
            ws,
            role,
            kind,
            serial,
            connected: false,
            welcomed: false,
            leaving: false,
            told_off: false,
            shutdown_when_flushed: false,
            input: Vec::new(),
            output: Vec::new(),
            until,
            next_send: Instant::now(),
            seq: 0,
            nick: String::new(),
            aimed_at: false,
            home: LOBBY,
            room: String::new(),
            replay: None,
            synced: false,
        }
    }

    /// Welcomed, and in the room it belongs in.
    pub(super) fn at_home(&self) -> bool {
        self.welcomed && self.room.eq_ignore_ascii_case(self.home)
    }

    /// How the report names it: its kind, and a chatter's number.
    pub(super) fn name(&self) -> String {
        match self.role {
            Role::Chatter(n) => format!("{} {n}", self.kind),
            Role::Witness(_) | Role::Checker(_) => format!("{} in {}", self.kind, self.home),
            _ => self.kind.to_string(),
        }
    }
}

/// The server's listener a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    /// `--target`: lines over plain TCP.
    Plain,
    /// `--tls-target`.
    Tls,
    /// `--ws-target`, an `--http-bind` address: an HTTP request, then WebSocket frames.
    Http,
}

/// What the handler wants done with a client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    Keep,
    Close,
}

/// The server's TLS listener and how to reach it.
#[derive(Clone)]
pub(super) struct TlsTarget {
    pub(super) addr: SocketAddr,
    /// Trusts `--tls-ca` (ring provider, rustls's safe defaults).
    config: Arc<ClientConfig>,
    /// The target's IP address: the name its certificate is checked against.
    name: ServerName<'static>,
}

impl TlsTarget {
    pub(super) fn new(args: &BenchArgs) -> Result<Option<TlsTarget>, String> {
        let (addr, ca) = match (args.tls_target, &args.tls_ca) {
            (Some(addr), Some(ca)) => (addr, ca),
            (None, None) => return Ok(None),
            _ => return Err("--tls-target and --tls-ca go together".into()),
        };
        let config = client_config(Some(ca), "--tls-ca", false)?;
        Ok(Some(TlsTarget {
            addr,
            config: Arc::new(config),
            name: ServerName::from(addr.ip()),
        }))
    }

    /// The listener, restarted at `addr` (`--restarts`): the same certificate to trust.
    pub(super) fn moved_to(&mut self, addr: SocketAddr) {
        self.addr = addr;
        self.name = ServerName::from(addr.ip());
    }

    /// A new client session, its ClientHello ready to send.
    pub(super) fn session(&self) -> Result<Box<ClientConnection>, rustls::Error> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone()).map(Box::new)
    }
}

/// Closes a client's socket, with a reset for the roles that vanish that way.
pub(super) fn close(client: &Client) {
    if client.role.resets() {
        let _ = SockRef::from(&client.stream).set_linger(Some(Duration::ZERO));
    }
}

/// Writes what a client has queued; a half-closer shuts its sending half once it is out.
pub(super) fn write_out(client: &mut Client) -> After {
    if let Some(ws) = &mut client.ws {
        ws.frame_lines(&mut client.output);
        return match flush(&mut client.stream, &mut ws.unsent) {
            Ok(()) => After::Keep,
            Err(_) => After::Close,
        };
    }
    if let Some(tls) = &mut client.tls {
        return match send_tls(tls, &mut client.stream, &mut client.output) {
            Ok(()) => After::Keep,
            Err(_) => After::Close,
        };
    }
    if client.output.is_empty() {
        return After::Keep;
    }
    if flush(&mut client.stream, &mut client.output).is_err() {
        return After::Close;
    }
    if client.shutdown_when_flushed && client.output.is_empty() {
        client.shutdown_when_flushed = false;
        if client.stream.shutdown(Shutdown::Write).is_err() {
            return After::Close;
        }
    }
    After::Keep
}

/// Moves a TLS client's plaintext into its session and the session's records to the socket,
/// as far as they go without waiting. Even with no plaintext there may be records to send:
/// the ClientHello, the rest of the handshake, lines the session held until it was over.
fn send_tls(
    tls: &mut ClientConnection,
    socket: &mut TcpStream,
    output: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        // rustls takes plaintext up to its buffer limit...
        let taken = write_until_blocked(&mut Plaintext(tls), output)?;
        output.drain(..taken);
        // ...and records go out until the socket is full or there are none left.
        if !write_records(tls, socket)? {
            return Ok(());
        }
        // Every record is out, so rustls has room again: go round only if it took something
        // this time (during the handshake it keeps plaintext back, and takes no more once
        // full), so the loop ends.
        if output.is_empty() || taken == 0 {
            return Ok(());
        }
    }
}

/// Reads everything the socket has for a client into its `input`, through its TLS session or
/// its WebSocket framing if it has one; `Some(why)` if the server closed the connection or it
/// failed.
pub(super) fn receive(client: &mut Client, scratch: &mut [u8]) -> Option<String> {
    let closed = read_all(client, scratch);
    match &mut client.ws {
        // Frames first: a close frame comes just before the close, and says why.
        Some(ws) => ws.unframe(&mut client.input).err().or(closed),
        None => closed,
    }
}

/// [`receive`]'s reads: into `input`, or into a WebSocket client's unframed bytes.
fn read_all(client: &mut Client, scratch: &mut [u8]) -> Option<String> {
    let Client {
        stream,
        tls,
        ws,
        input,
        ..
    } = client;
    let input = match ws {
        Some(ws) => &mut ws.unread,
        None => input,
    };
    loop {
        let outcome = match tls {
            Some(tls) => receive_tls(tls, stream, scratch, |plaintext| {
                input.extend_from_slice(plaintext);
            }),
            None => {
                let outcome = ReadOutcome::from_read(|| stream.read(scratch));
                if let Ok(ReadOutcome::Data(n)) = outcome {
                    input.extend_from_slice(&scratch[..n]);
                }
                outcome.map_err(TransportError::Io)
            }
        };
        match outcome {
            Ok(ReadOutcome::Data(_)) => {}
            Ok(ReadOutcome::Drained) => return None,
            Ok(ReadOutcome::Eof) => return Some("the server closed the connection".into()),
            Err(TransportError::Tls(e)) => return Some(format!("TLS failed: {e}")),
            Err(TransportError::Io(_)) => return Some("the connection failed".into()),
        }
    }
}

/// A WebSocket client's side of RFC 6455, as far as the chaos run needs it: the upgrade at
/// `/ws` (`wire::ws_hello`), then each line of the role's as one masked text frame, and
/// each text frame from the server as one line. The frame code is the load generator's
/// (`wire.rs`), shared with `--proto ws`.
#[derive(Default)]
pub(super) struct WsFraming {
    /// The server's answer to the upgrade was read: what follows is frames.
    upgraded: bool,
    /// Bytes read and not yet taken: part of the answer's head, part of a frame.
    unread: Vec<u8>,
    /// The upgrade and the frames not yet written. A misbehaving role puts its own bytes
    /// here (an unmasked frame).
    pub(super) unsent: Vec<u8>,
    /// The status code of the server's close frame once it came (0 if it gave none).
    /// Nothing after it is read.
    pub(super) close_code: Option<u16>,
}

impl WsFraming {
    /// Framing whose first bytes out are the upgrade request.
    pub(super) fn upgrading() -> WsFraming {
        WsFraming {
            unsent: wire::ws_hello(),
            ..WsFraming::default()
        }
    }

    /// Moves every whole line of `output` into `unsent`, one masked text frame each (the
    /// newline left out: the end of the message is the end of the line). An unfinished
    /// line stays in `output`.
    fn frame_lines(&mut self, output: &mut Vec<u8>) {
        let mut used = 0;
        while let Some(end) = memchr::memchr(b'\n', &output[used..]) {
            wire::ws_client_frame(&output[used..used + end], &mut self.unsent);
            used += end + 1;
        }
        output.drain(..used);
    }

    /// Takes the answer to the upgrade, then every whole frame read so far: a text frame's
    /// payload goes into `input` as a line, a close frame's code is kept, anything else
    /// (the server sends no pings) is skipped. `Err` if the server refused the upgrade.
    fn unframe(&mut self, input: &mut Vec<u8>) -> Result<(), String> {
        // The answer starts with "HTTP/": fewer bytes than that could be read as a frame.
        if !self.upgraded && self.unread.len() < b"HTTP/".len() {
            return Ok(());
        }
        if !self.upgraded {
            match wire::decode(Proto::Ws, &self.unread) {
                Some((Incoming::Refused, _)) => {
                    let status = self.unread.split(|&b| b == b'\r').next().unwrap_or(&[]);
                    return Err(format!(
                        "the upgrade was refused: {}",
                        String::from_utf8_lossy(status)
                    ));
                }
                Some((_, head)) => {
                    self.unread.drain(..head);
                    self.upgraded = true;
                }
                None => return Ok(()),
            }
        }
        let mut used = 0;
        while self.close_code.is_none()
            && let Some((first, payload, len)) = wire::ws_server_frame(&self.unread[used..])
        {
            match first {
                0x81 => {
                    input.extend_from_slice(payload);
                    input.push(b'\n');
                }
                0x88 => {
                    let code = payload
                        .get(..2)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                    self.close_code = Some(code);
                }
                _ => {}
            }
            used += len;
        }
        if self.close_code.is_some() {
            self.unread.clear();
        } else {
            self.unread.drain(..used);
        }
        Ok(())
    }
}

/// `write!` into a byte buffer.
pub(super) struct PushStr<'a>(pub(super) &'a mut Vec<u8>);

impl std::fmt::Write for PushStr<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollchat::transport::websocket::frame::{self, Parser, Piece};

    #[test]
    fn ws_lines_go_out_as_masked_frames_the_server_reads_as_the_same_lines() {
        let mut ws = WsFraming::upgrading();
        assert!(ws.unsent.starts_with(b"GET /ws HTTP/1.1\r\n"));
        ws.unsent.clear();
        let mut output = b"hello\n/nick wnr-1\nhalf a li".to_vec();
        ws.frame_lines(&mut output);
        assert_eq!(output, b"half a li", "an unfinished line waits");
        let mut heard = Vec::new();
        Parser::default()
            .feed(&mut ws.unsent, &mut |piece| match piece {
                Piece::Text(text) => heard.extend_from_slice(text),
                Piece::End => heard.push(b'\n'),
                _ => {}
            })
            .expect("frames the server accepts");
        assert_eq!(heard, b"hello\n/nick wnr-1\n");
    }

    #[test]
    fn ws_the_answer_then_text_frames_become_lines_however_the_reads_cut_them() {
        let mut stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        stream.extend(frame::text_frames(b"*** welcome\n<bob> hi\n"));
        stream.extend(frame::close(1002, "a client frame without a mask"));
        stream.extend(frame::text_frames(b"after the close\n"));
        for cut in 0..=stream.len() {
            let mut ws = WsFraming::default();
            let mut input = Vec::new();
            for read in [&stream[..cut], &stream[cut..]] {
                ws.unread.extend_from_slice(read);
                ws.unframe(&mut input).expect("upgraded");
            }
            assert_eq!(input, b"*** welcome\n<bob> hi\n", "cut at {cut}");
            assert_eq!(ws.close_code, Some(1002), "cut at {cut}");
        }
    }

    #[test]
    fn ws_a_refused_upgrade_says_its_status_line() {
        let mut ws = WsFraming::default();
        ws.unread
            .extend_from_slice(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
        let why = ws.unframe(&mut Vec::new()).expect_err("refused");
        assert_eq!(why, "the upgrade was refused: HTTP/1.1 404 Not Found");
    }
}
