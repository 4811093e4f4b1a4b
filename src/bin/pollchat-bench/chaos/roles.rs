//! Who a connection plays ([`Role`]), what each role is for, and how each behaves: what it
//! does as time passes ([`timed`]), when its socket is ready ([`service`]), on each line from
//! the server ([`on_line`]) and once it is welcomed ([`welcomed`]). The well-behaved roles
//! record what they see in the round's [`Context`]; the misbehaving ones only abuse the server.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::client::{After, Client, Listener, PushStr, receive, write_out};
use super::history;
use super::operator::{self, Sanction, TROLL_ADDRESS};
use super::round::{Context, Phase};
use crate::invariants;
use crate::wire::{self, Proto, Stamp};
use pollchat::limits::LOBBY;
use pollchat::nonblocking::connect_finished;

/// Lines found clean that the well-behaved clients remember, the latest (see
/// [`check_clean`]).
const CLEAN_KEPT: usize = 32;

/// How often the pinger asks the server for an answer.
const PING_EVERY: Duration = Duration::from_millis(200);

/// Output a producing client (flooder, endless line) keeps queued: it writes as fast as the
/// server reads, but the generator does not buffer without bound either.
const PRODUCE_AHEAD: usize = 16 * 1024;

/// Bytes of padding in a flooder's line: long lines, so that what the rate limit lets through
/// still fills the queues of the clients that stopped reading.
const FLOOD_LINE: usize = 4000;

/// Receive buffer of a client that stops reading: small, so the server's queue for it fills.
const NON_READER_BUFFER: usize = 4096;

/// One flooder line in this many goes to everyone; the others are a `/msg` to one
/// non-reader. Before the server's own queue for a client that stopped reading grows at all,
/// the kernel's send buffer for its socket fills, and on loopback that buffer grows to
/// megabytes (`ss -tm` showed 2,803,712 bytes queued, `tb` 4 MiB, for a 4 KiB receive
/// buffer). Flood everyone with that much and the readers must take it too: with every line
/// broadcast at `--rate 100`, a debug build of this generator fell behind and all its
/// chatters were cut off as too slow (the server keeping its rule, not breaking a promise).
/// Aimed at one non-reader, the volume fills that one's queue while the readers get a
/// quarter of the flood. Not less: the broadcast lines fill every non-reader's queue too, and
/// most cuts come from them (2026-12-07, quiet machine, six runs each: one line in four cut 6
/// to 8 TLS non-readers a run, one in eight or sixteen only 1 to 3, and a run with none
/// fails the test). Under a machine busy with other work, a quarter can still starve a debug
/// generator into losing its chatters as too slow; the test's failure output shows it.
const FLOOD_BROADCAST_EVERY: u64 = 4;

/// Send buffer of a flooder: small, so that what it sends is what the server reads now. The
/// server reads a flooder only as fast as `--rate` allows, and on loopback a socket's send
/// buffer grows to 4 MiB (`ss -tn` showed 4,166,144 bytes waiting on flooders' sockets): ten
/// seconds of flood at 100 lines/s, aimed at non-readers long gone by the time it arrives.
const FLOODER_SEND_BUFFER: usize = 64 * 1024;

/// Bytes the flooders aim at one non-reader before they move on to the next: more than its
/// kernel send buffer takes (at most `net.ipv4.tcp_wmem`'s 4 MiB by default) plus the
/// server's default `--max-output` (1 MiB). A non-reader never drains, so after its dose it
/// stays over `--max-output` until the server cuts it off, with no more flooding.
pub(super) const TARGET_DOSE: usize = 6 * 1024 * 1024;

/// What a TLS staller sends: the first 3 of the 5 bytes of a TLS record header (a handshake
/// record, version 3.1), so the server has started a record and waits for the rest.
const STALLED_HEADER: &[u8] = b"\x16\x03\x01";

/// What a TLS garbage client sends instead of a ClientHello: plain text, as `nc` on the TLS
/// port would.
const NOT_A_HANDSHAKE: &[u8] = b"hello, this is plain text on the TLS port\n";

/// What an HTTP slowloris client sends: the start of an upgrade request, its head never
/// finished (no blank line), so the server waits for the rest until `--http-head-timeout`.
const UNFINISHED_HEAD: &[u8] = b"GET /ws HTTP/1.1\r\nHost: chaos\r\nUpgrade: websocket\r\n";

/// What a `ws-unmasked` client sends once welcomed: a whole text frame ("U unmasked", 10
/// bytes) without the mask every client frame must have (RFC 6455, 5.1).
const UNMASKED_FRAME: &[u8] = b"\x81\x0aU unmasked";

/// The status code a server must close with when a client breaks the protocol (1002).
const PROTOCOL_ERROR: u16 = 1002;

/// Length of a `ws-oversized` client's message: sixteen times the server's default
/// `--max-line` (4 KiB), so it is over the limit unless the server was given a far larger
/// one.
const OVERSIZED: usize = 64 * 1024;

/// Who a connection plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Well-behaved: sends numbered lines at the chat rate, reads and records everything.
    Chatter(u32),
    /// Well-behaved: sends itself a `/msg` every [`PING_EVERY`] and times the answer. Pinger 0
    /// is on the plain listener; with a TLS target, pinger 1 is on the TLS one, and with a
    /// WebSocket target pinger 2 on the HTTP one.
    Pinger(u32),
    /// Well-behaved: sits in room `n` (0 the lobby, 1 the second room) and says nothing, and
    /// keeps the room's last chat lines as it heard them live (`history.rs`). It stays after the
    /// round's chatters have gone, until the history check after the round (or the restart
    /// before it): a second room with nobody in it would be forgotten, history and all.
    Witness(u32),
    /// Well-behaved: comes after a round (and the restart, with `--restarts`), enters room `n`
    /// as [`Role::Witness`] numbers them, and keeps the history it is replayed there, which must
    /// be what the witness heard last (`history.rs`).
    Checker(u32),
    /// Connects and resets (SO_LINGER 0): half of them as soon as connected, before the
    /// welcome; the others after the welcome and half a line.
    Vanisher,
    /// Never reads, with a small receive buffer, and names itself `nr-N` so that flooders can
    /// aim at it: the server's queue for it fills until it is cut off as too slow.
    NonReader,
    /// Sends one endless line, without a newline, as fast as the server takes it.
    Endless,
    /// Sends invalid UTF-8, NUL bytes, terminal escapes, lone `\r`, control characters.
    Garbage,
    /// Sends long lines as fast as the server takes them, far past the rate limit: one in
    /// [`FLOOD_BROADCAST_EVERY`] to everyone, the others to the current target non-reader.
    Flooder,
    /// Sends a line, then shuts down its sending half and reads until the server closes.
    HalfCloser,
    /// One of a connect storm: connects with many others at once, resets a moment later.
    Storm,
    /// On the TLS port: sends plain text instead of a ClientHello, and reads until the
    /// server closes (after an alert).
    TlsGarbage,
    /// On the TLS port: sends the first bytes of a record header, then nothing, and reads
    /// until the server's `--tls-handshake-timeout` closes it.
    TlsStaller,
    /// On the TLS port: completes its handshake, names itself `tnr-N`, then never reads, with
    /// a small receive buffer. Flooders aim at it like at a [`Role::NonReader`].
    TlsNonReader,
    /// On the HTTP port: upgrades, and once welcomed sends a frame without a mask. The server
    /// must fail the connection with a close frame of 1002, which it checks (the server
    /// sends it unless it is in the middle of writing a frame to it, the lobby's history of
    /// long flood lines, say: then the close alone).
    WsUnmasked,
    /// On the HTTP port: upgrades, and once welcomed sends one message of [`OVERSIZED`]
    /// bytes, then a `/msg` to itself. The server must say `*** line too long` and keep it:
    /// it checks that the `/msg` is answered after that, then quits.
    WsOversized,
    /// On the HTTP port: sends part of a request head, then nothing, and reads until the
    /// server's `--http-head-timeout` closes it.
    HttpSlowloris,
    /// On the HTTP port: upgrades and names itself `wnr-N` in its first flight, then never
    /// reads, with a small receive buffer. Flooders aim at it like at a [`Role::NonReader`].
    WsNonReader,
    /// Well-behaved, with `--oper`: `/oper`s, watches the second room, and kicks and bans the
    /// trolls there (`operator.rs`).
    Operator,
    /// With `--oper`, one at a time: joins the second room and floods (with `/msg` to itself)
    /// until the operator deals with it as the sanction says (`operator.rs`). The one for
    /// an address ban connects from [`TROLL_ADDRESS`].
    Troll(Sanction),
    /// After an address ban: connects from the banned [`TROLL_ADDRESS`], and must be told
    /// it is banned and closed, never welcomed.
    BanEvader,
}

/// The misbehaving roles, in the order they are started.
pub(super) const MISBEHAVING: [Role; 6] = [
    Role::Vanisher,
    Role::NonReader,
    Role::Endless,
    Role::Garbage,
    Role::Flooder,
    Role::HalfCloser,
];

/// The misbehaving roles on the TLS port, started in turn with the others when there is one.
pub(super) const MISBEHAVING_TLS: [Role; 3] =
    [Role::TlsGarbage, Role::TlsStaller, Role::TlsNonReader];

/// The misbehaving roles on the HTTP port, started in turn with the others when there is one,
/// and one more flooder. A non-reader stays for seconds (see [`Role::lifetime_ms`]), so of
/// the `--conns` slots the non-readers hold most, and every role added to the turn makes the
/// flooders rarer, just as there is a third kind of non-reader to fill. Without this flooder,
/// four runs of the chaos test each cut off 2 clients as too slow (one dose a round, no TLS
/// non-reader among them), the server reading 41 to 59 MB of flood; with it, 10 to 24, of
/// every kind, 50 to 78 MB (before the WebSocket roles: 17, 106 MB).
pub(super) const MISBEHAVING_WS: [Role; 5] = [
    Role::WsUnmasked,
    Role::WsOversized,
    Role::HttpSlowloris,
    Role::WsNonReader,
    Role::Flooder,
];

/// What the garbage clients send, one line each: everything the sanitiser must remove.
const GARBAGE: [&[u8]; 8] = [
    b"G invalid utf-8 \xff\xfe\xc3\x28 \xed\xa0\x80\n",
    b"G nul \x00 byte\n",
    b"G escape \x1b[2J\x1b[31mred\x1b[0m\n",
    b"G lone\rcarriage return\n",
    b"G title \x1b]0;owned\x07\n",
    b"G c1 \xc2\x9b31m csi\n",
    b"\x00\x01\x02\x03\x7f\n",
    b"/nick \x1b[1mbold\n",
];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Chatter(_) => "chatter",
            Role::Pinger(_) => "pinger",
            Role::Witness(_) => "witness",
            Role::Checker(_) => "checker",
            Role::Vanisher => "vanisher",
            Role::NonReader => "non-reader",
            Role::Endless => "endless line",
            Role::Garbage => "garbage",
            Role::Flooder => "flooder",
            Role::HalfCloser => "half-closer",
            Role::Storm => "storm",
            Role::TlsGarbage => "tls-garbage",
            Role::TlsStaller => "tls-staller",
            Role::TlsNonReader => "tls-non-reader",
            Role::WsUnmasked => "ws-unmasked",
            Role::WsOversized => "ws-oversized",
            Role::HttpSlowloris => "http-slowloris",
            Role::WsNonReader => "ws-non-reader",
            Role::Operator => "operator",
            Role::Troll(sanction) => sanction.kind(),
            Role::BanEvader => "ban evader",
        }
    }

    /// Stops reading once connected (a TLS one once its handshake is over), and has a nick
    /// flooders can aim at.
    pub(super) fn non_reader(self) -> bool {
        matches!(
            self,
            Role::NonReader | Role::TlsNonReader | Role::WsNonReader
        )
    }

    /// Connects to the TLS listener (with a TLS session or, to abuse it, without).
    fn on_tls_port(self) -> bool {
        matches!(
            self,
            Role::TlsGarbage | Role::TlsStaller | Role::TlsNonReader
        )
    }

    /// Connects to the HTTP listener (upgrading to WebSocket or, to abuse it, not).
    fn on_http_port(self) -> bool {
        matches!(
            self,
            Role::WsUnmasked | Role::WsOversized | Role::HttpSlowloris | Role::WsNonReader
        )
    }

    pub(super) fn well_behaved(self) -> bool {
        matches!(
            self,
            Role::Chatter(_)
                | Role::Pinger(_)
                | Role::Witness(_)
                | Role::Checker(_)
                | Role::Operator
        )
    }

    /// The listener it connects to, of those the run has (`tls`, `http`): the TLS and HTTP
    /// roles to theirs; of the well-behaved, with a WebSocket target every third chatter (2,
    /// 5, 8...) and pinger 2 over WebSocket, with a TLS target the other odd chatters (1, 3,
    /// 7...) and pinger 1 over TLS, the rest plain. So plain, TLS and WebSocket chatters are
    /// all in both rooms, held to one record.
    pub(super) fn listener(self, tls: bool, http: bool) -> Listener {
        match self {
            _ if self.on_http_port() => Listener::Http,
            _ if self.on_tls_port() => Listener::Tls,
            Role::Chatter(n) if http && n % 3 == 2 => Listener::Http,
            Role::Chatter(n) if tls && n % 2 == 1 => Listener::Tls,
            Role::Pinger(1) if tls => Listener::Tls,
            Role::Pinger(2) if http => Listener::Http,
            _ => Listener::Plain,
        }
    }

    /// Over TLS, talks through a TLS session: the well-behaved and the TLS non-readers. TLS
    /// garbage and stallers abuse the port without one.
    pub(super) fn has_session(self) -> bool {
        self.well_behaved() || self == Role::TlsNonReader
    }

    /// On the HTTP port, upgrades and talks WebSocket: all but the slowloris, which never
    /// finishes its request.
    pub(super) fn upgrades(self) -> bool {
        self != Role::HttpSlowloris
    }

    /// Its line in the role table: its name, or `tls-chatter`, `ws-pinger` and so on for the
    /// well-behaved over TLS or WebSocket, which are counted apart.
    pub(super) fn kind(self, listener: Listener) -> &'static str {
        match (self, listener) {
            (Role::Chatter(_), Listener::Tls) => "tls-chatter",
            (Role::Chatter(_), Listener::Http) => "ws-chatter",
            (Role::Pinger(_), Listener::Tls) => "tls-pinger",
            (Role::Pinger(_), Listener::Http) => "ws-pinger",
            (role, _) => role.name(),
        }
    }

    /// The receive buffer it sets before connecting: a small one for non-readers.
    pub(super) fn receive_buffer(self) -> Option<usize> {
        self.non_reader().then_some(NON_READER_BUFFER)
    }

    /// The send buffer it sets once connected: a small one for flooders (trolls too).
    pub(super) fn send_buffer(self) -> Option<usize> {
        matches!(self, Role::Flooder | Role::Troll(_)).then_some(FLOODER_SEND_BUFFER)
    }

    /// The address it connects from, if not the one the system picks (127.0.0.1 on
    /// loopback): the troll of the address ban and the ban evader.
    pub(super) fn source(self) -> Option<IpAddr> {
        matches!(self, Role::Troll(Sanction::AddressBan) | Role::BanEvader).then_some(TROLL_ADDRESS)
    }

    /// How long a misbehaving client stays, in milliseconds (a range the run picks from).
    pub(super) fn lifetime_ms(self) -> (u64, u64) {
        match self {
            // Long enough to take a whole dose and then the grace: at a few MB/s of flood
            // on a loaded machine, the 6 MiB took up to 4 s, and a non-reader that left
            // sooner was never cut off.
            Role::NonReader | Role::TlsNonReader | Role::WsNonReader => (4000, 8000),
            // Outlives a --tls-handshake-timeout or --http-head-timeout of 1 or 2 s, so that
            // the server's close is seen and tallied; with a longer timeout it leaves first.
            Role::TlsStaller | Role::HttpSlowloris => (2500, 3000),
            // Leave when the server closes them (or, kept, once answered); the lifetime is a
            // backstop.
            Role::TlsGarbage | Role::WsUnmasked | Role::WsOversized => (2000, 2000),
            Role::Flooder => (500, 2000),
            Role::Endless => (300, 1500),
            Role::Storm => (300, 1000),
            // These leave by themselves; the lifetime is a backstop.
            Role::Vanisher | Role::HalfCloser => (2000, 2000),
            // Leave when the server closes them; a backstop past any round's chaos phase
            // (the calm phase sends them away with the others).
            Role::Troll(_) => (60_000, 60_000),
            Role::BanEvader => (3000, 3000),
            _ => (200, 1000),
        }
    }

    /// Closes with a reset rather than a FIN.
    pub(super) fn resets(self) -> bool {
        matches!(
            self,
            Role::Vanisher | Role::NonReader | Role::TlsNonReader | Role::WsNonReader | Role::Storm
        )
    }
}

/// What a client does because time passed: chatters and pingers send, producers top up
/// their output, misbehaving clients whose time is up go.
pub(super) fn timed(client: &mut Client, ctx: &mut Context, now: Instant) -> After {
    if !client.connected {
        return if client.role.well_behaved() || client.until > now {
            After::Keep
        } else {
            After::Close
        };
    }
    match client.role {
        _ if !client.role.well_behaved() && client.until <= now => return After::Close,
        Role::Chatter(me) if ctx.phase == Phase::Chaos => chat(client, ctx, me, now),
        Role::Pinger(me)
            if ctx.phase == Phase::Chaos && client.welcomed && client.next_send <= now =>
        {
            ping(client, ctx, me, now);
        }
        Role::Endless if client.welcomed && client.output.len() < PRODUCE_AHEAD => {
            client.output.resize(PRODUCE_AHEAD, b'x');
        }
        Role::Flooder if client.welcomed => flood(client, ctx),
        Role::Troll(_) => operator::flood(client),
        _ => {}
    }
    match write_out(client) {
        After::Close if matches!(client.role, Role::Troll(_)) => write_failed(client, ctx),
        after => after,
    }
}

/// Chatter `me` queues the numbered lines that are due at the chat rate.
fn chat(client: &mut Client, ctx: &mut Context, me: u32, now: Instant) {
    // Catch up after a stall, but never send a burst the rate limit would hold back.
    let mut budget = 4;
    while client.next_send <= now && budget > 0 {
        say(client, ctx, me);
        client.next_send += ctx.chat_interval;
        budget -= 1;
    }
    client.next_send = client.next_send.max(earlier(now, ctx.chat_interval));
}

/// Chatter `me` queues its next numbered line, stamped with when it was sent.
pub(super) fn say(client: &mut Client, ctx: &mut Context, me: u32) {
    let stamp = Stamp {
        sender: me,
        seq: client.seq,
        sent_at_ns: u64::try_from(ctx.epoch.elapsed().as_nanos()).unwrap_or(0),
    };
    wire::encode_line(Proto::Pollchat, stamp, ctx.size, &mut client.output);
    client.seq += 1;
    if let Some(log) = ctx.chatters.get_mut(me as usize) {
        log.sent_at.push(stamp.sent_at_ns);
    }
}

/// Pinger `me` queues a numbered `/msg` to itself and notes when it went.
fn ping(client: &mut Client, ctx: &mut Context, me: u32, now: Instant) {
    let pings = &mut ctx.pings;
    let _ = writeln!(
        PushStr(&mut client.output),
        "/msg {} P {}",
        client.nick,
        pings.sent
    );
    pings.pending.push_back((me, pings.sent, now));
    pings.sent += 1;
    client.next_send = now + PING_EVERY;
}

/// A flooder tops its output up to [`PRODUCE_AHEAD`] with long lines: one in
/// [`FLOOD_BROADCAST_EVERY`] to everyone, the others a `/msg` to the target non-reader, whose
/// dose they count.
fn flood(client: &mut Client, ctx: &mut Context) {
    while client.output.len() < PRODUCE_AHEAD {
        let before = client.output.len();
        let mut out = PushStr(&mut client.output);
        let aim = ctx
            .target
            .as_mut()
            .filter(|_| !client.seq.is_multiple_of(FLOOD_BROADCAST_EVERY));
        if let Some(target) = &aim {
            let _ = write!(out, "/msg {} ", target.nick);
        }
        let _ = write!(out, "F {} {} ", client.serial, client.seq);
        // One copy, not the formatter's padding one character at a time.
        client.output.extend_from_slice(&[b'x'; FLOOD_LINE]);
        client.output.push(b'\n');
        if let Some(target) = aim {
            target.aimed += client.output.len() - before;
        }
        client.seq += 1;
    }
}

/// Handles readiness on one client: completes its connect, writes, reads and reacts to
/// every complete line.
pub(super) fn service(client: &mut Client, ctx: &mut Context) -> After {
    if !client.connected
        && let Some(after) = finish_connect(client, ctx)
    {
        return after;
    }
    if write_out(client) == After::Close {
        return write_failed(client, ctx);
    }
    if matches!(client.role, Role::NonReader | Role::WsNonReader)
        || (client.role == Role::TlsNonReader && tls_done(client))
    {
        return After::Keep;
    }
    let closed = receive(client, &mut ctx.scratch);
    if client.role == Role::TlsNonReader && tls_done(client) {
        // In from now on, and reading no more: what the server sends it piles up.
        client.nick = format!("tnr-{}", client.serial);
        let _ = writeln!(PushStr(&mut client.output), "/nick {}", client.nick);
        client.input.clear();
    }
    if on_lines(client, ctx) == After::Close {
        return After::Close;
    }
    if let Some(why) = closed {
        return lost(client, ctx, &why);
    }
    write_out(client)
}

/// Completes a client's connect, and queues what its role sends first. `None` once it is
/// connected; `Some` says what to do with it now (still connecting, failed, or a vanisher
/// gone at once).
fn finish_connect(client: &mut Client, ctx: &mut Context) -> Option<After> {
    match connect_finished(&client.stream) {
        Ok(true) => {}
        Ok(false) => return Some(After::Keep),
        Err(e) => {
            ctx.tallies.entry(client.kind).or_default().failed += 1;
            if client.role.well_behaved() {
                ctx.lost
                    .push(format!("{} could not connect: {e}", client.kind));
            }
            return Some(After::Close);
        }
    }
    client.connected = true;
    let _ = client.stream.set_nodelay(true);
    // A WebSocket one names itself in the flight of its upgrade, and never reads the answer.
    let named = match client.role {
        Role::NonReader => Some("nr"),
        Role::WsNonReader => Some("wnr"),
        _ => None,
    };
    if let Some(prefix) = named {
        client.nick = format!("{prefix}-{}", client.serial);
        let _ = writeln!(PushStr(&mut client.output), "/nick {}", client.nick);
    }
    // Half the vanishers go before the server could even greet them.
    if client.role == Role::Vanisher && client.serial.is_multiple_of(2) {
        return Some(After::Close);
    }
    match client.role {
        Role::TlsGarbage => client.output.extend_from_slice(NOT_A_HANDSHAKE),
        Role::TlsStaller => client.output.extend_from_slice(STALLED_HEADER),
        Role::HttpSlowloris => client.output.extend_from_slice(UNFINISHED_HEAD),
        _ => {}
    }
    None
}

/// Reacts to every complete line in a client's input, and keeps the incomplete rest for
/// later.
fn on_lines(client: &mut Client, ctx: &mut Context) -> After {
    let mut used = 0;
    let mut after = After::Keep;
    while let Some(end) = line_end(&client.input[used..]) {
        let line = used..used + end;
        used += end + 1;
        let line = client.input[line].to_vec();
        if on_line(client, &line, ctx) == After::Close {
            after = After::Close;
            break;
        }
    }
    client.input.drain(..used);
    after
}

/// Where the first line of `bytes` ends (its newline), if it does. Found by
/// `BufRead::skip_until`, which the standard library does with the C library's `memchr`: the
/// memchr crate's vector code, in the debug build `cargo test` runs, took a quarter of the
/// well-behaved clients' time scanning the flood for newlines (perf, 2026-12-07).
fn line_end(bytes: &[u8]) -> Option<usize> {
    let mut rest = bytes;
    let n = std::io::BufRead::skip_until(&mut rest, b'\n').ok()?;
    (n > 0 && bytes.get(n - 1) == Some(&b'\n')).then(|| n - 1)
}

/// The server closed a client (or the connection failed): expected for some, a broken
/// promise for a well-behaved client that did not ask to leave.
fn lost(client: &Client, ctx: &mut Context, why: &str) -> After {
    let tally = ctx.tallies.entry(client.kind).or_default();
    tally.closed_by_server += 1;
    let close_code = client.ws.as_ref().and_then(|ws| ws.close_code);
    if client.role == Role::WsUnmasked && close_code == Some(PROTOCOL_ERROR) {
        tally.confirmed += 1;
    }
    if !client.leaving && client.role.well_behaved() {
        ctx.lost
            .push(format!("{}: {why} ({:?} phase)", client.name(), ctx.phase));
    }
    operator::closed(client, &mut ctx.desk);
    After::Close
}

/// Writing to a client failed: the server closed it. A troll first reads what the server said
/// before: a kicked or banned client is closed as soon as its last line is out, and the
/// troll's flood, still arriving, makes the close a reset, which fails the troll's next write
/// with that line unread.
fn write_failed(client: &mut Client, ctx: &mut Context) -> After {
    if matches!(client.role, Role::Troll(_)) {
        let _ = receive(client, &mut ctx.scratch);
        let _ = on_lines(client, ctx);
    }
    lost(client, ctx, "writing failed")
}

/// Reacts to one line from the server.
fn on_line(client: &mut Client, line: &[u8], ctx: &mut Context) -> After {
    if client.role.well_behaved() {
        check_clean(line, ctx);
    }
    operator::heard(client, line, &mut ctx.desk);
    let tally = ctx.tallies.entry(client.kind).or_default();
    if line.starts_with(b"*** server full") || line.starts_with(b"*** too many connections") {
        tally.refused += 1;
        if client.role.well_behaved() {
            ctx.lost
                .push(format!("{} was refused: {}", client.kind, lossy(line)));
        }
        return After::Keep;
    }
    if line.starts_with(b"*** line too long") {
        tally.too_long += 1;
        client.told_off = true;
    }
    if line.starts_with(b"*** welcome") && !client.welcomed {
        client.welcomed = true;
        client.room = LOBBY.to_string();
        tally.welcomed += 1;
        return welcomed(client, line);
    }
    // History is replay, not delivery: it stays out of the records (see `history.rs`).
    if client.role.well_behaved() && history::on_line(client, line, ctx) {
        return After::Keep;
    }
    match client.role {
        Role::Chatter(me) => record_line(client, me, line, ctx),
        Role::Pinger(me) => record_answer(client, me, line, ctx),
        Role::Witness(room) if client.at_home() => history::witness(room, line, ctx),
        Role::Checker(_) => {
            let answer = format!("*{}* S ", client.nick);
            client.synced |= line.starts_with(answer.as_bytes());
        }
        Role::WsOversized => kept_after_too_long(client, line, ctx),
        _ => {}
    }
    After::Keep
}

/// A `ws-oversized` client heard a line: the answer to its `/msg` to itself after the server
/// told it its message was too long shows it was kept, and it quits.
fn kept_after_too_long(client: &mut Client, line: &[u8], ctx: &mut Context) {
    let answer = format!("*{}* K ", client.nick);
    if client.told_off && !client.leaving && line.starts_with(answer.as_bytes()) {
        ctx.tallies.entry(client.kind).or_default().confirmed += 1;
        client.output.extend_from_slice(b"/quit\n");
        client.leaving = true;
    }
}

/// Counts a line a well-behaved client received that is not clean text (the clean text
/// promise), and keeps the first one to show.
fn check_clean(line: &[u8], ctx: &mut Context) {
    // Every well-behaved client gets each flood line: one found clean is clean for the next
    // (a comparison is the C library's `memcmp`, which stops at the first byte that differs).
    if ctx.clean.iter().any(|seen| seen.as_slice() == line) {
        return;
    }
    let clean = std::str::from_utf8(line).is_ok_and(invariants::is_clean_text);
    if clean {
        if ctx.clean.len() == CLEAN_KEPT {
            ctx.clean.pop_front();
        }
        ctx.clean.push_back(line.to_vec());
    }
    if !clean {
        ctx.dirty += 1;
        if ctx.first_dirty.is_none() {
            ctx.first_dirty = Some(String::from_utf8_lossy(line).into_owned());
        }
    }
}

/// Chatter `me` received a line live: a chatter line goes into its record, with its latency.
/// In the second room, where only chatters talk, any other chat line came from the lobby.
fn record_line(client: &Client, me: u32, line: &[u8], ctx: &mut Context) {
    let Some(stamp) = history::stamp(line) else {
        let chat = line.starts_with(b"<") || line.starts_with(b"* ");
        if chat && client.home != LOBBY {
            ctx.strays += 1;
            let shown: String = lossy(line).chars().take(60).collect();
            ctx.first_stray
                .get_or_insert_with(|| format!("{} got {shown:?}", client.name()));
        }
        return;
    };
    if let Some(log) = ctx.chatters.get_mut(me as usize) {
        log.received.push((stamp.sender, stamp.seq));
        let now_ns = u64::try_from(ctx.epoch.elapsed().as_nanos()).unwrap_or(0);
        let micros = now_ns.saturating_sub(stamp.sent_at_ns) / 1000;
        ctx.latency.saturating_record(micros.max(1));
    }
}

/// Pinger `me` received a line: if it is the answer to its oldest ping still pending, that
/// ping's round trip is timed.
fn record_answer(client: &Client, me: u32, line: &[u8], ctx: &mut Context) {
    let prefix = format!("*{}* P ", client.nick);
    let seq = line
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| std::str::from_utf8(rest).ok()?.parse::<u64>().ok());
    let pings = &mut ctx.pings;
    let oldest = pings.pending.iter().position(|&(p, _, _)| p == me);
    if let (Some(seq), Some(i)) = (seq, oldest)
        && pings.pending[i].1 == seq
        && let Some((_, _, sent)) = pings.pending.remove(i)
    {
        let rtt = sent.elapsed();
        pings.answered += 1;
        pings.slowest = pings.slowest.max(rtt);
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        pings.round_trip.saturating_record(micros.max(1));
    }
}

/// A TLS client whose handshake is over (and which has no session to wait for without TLS).
fn tls_done(client: &Client) -> bool {
    client.tls.as_ref().is_some_and(|tls| !tls.is_handshaking())
}

/// What a client does once it is in (the lobby).
fn welcomed(client: &mut Client, line: &[u8]) -> After {
    match client.role {
        Role::Chatter(_) | Role::Witness(_) if client.home != LOBBY => {
            let _ = writeln!(PushStr(&mut client.output), "/join {}", client.home);
        }
        // Its room's history (if any) comes before the answer to its `/msg`.
        Role::Checker(_) => {
            client.nick = nick_in_welcome(line);
            let mut out = PushStr(&mut client.output);
            if client.home != LOBBY {
                let _ = writeln!(out, "/join {}", client.home);
            }
            let _ = writeln!(out, "/msg {} S synced", client.nick);
        }
        Role::Pinger(_) => client.nick = nick_in_welcome(line),
        Role::WsUnmasked => {
            if let Some(ws) = &mut client.ws {
                ws.unsent.extend_from_slice(UNMASKED_FRAME);
            }
        }
        Role::WsOversized => {
            client.nick = nick_in_welcome(line);
            client.output.extend_from_slice(b"O ");
            client.output.resize(client.output.len() + OVERSIZED, b'o');
            let _ = writeln!(PushStr(&mut client.output), "\n/msg {} K kept", client.nick);
        }
        Role::Vanisher => {
            client.output.extend_from_slice(b"V half a li");
            let _ = write_out(client);
            return After::Close;
        }
        Role::Garbage => {
            for line in GARBAGE {
                client.output.extend_from_slice(line);
            }
        }
        Role::HalfCloser => {
            client.output.extend_from_slice(b"H leaving half-way\n");
            client.shutdown_when_flushed = true;
            client.leaving = true;
        }
        _ => {}
    }
    write_out(client)
}

/// The nick a welcome gives: "*** welcome to pollchat, you are NICK (type /help for
/// commands)".
pub(super) fn nick_in_welcome(line: &[u8]) -> String {
    lossy(line)
        .split_once("you are ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

/// `at - by`, or `at` on a machine up for less than `by`.
pub(super) fn earlier(at: Instant, by: Duration) -> Instant {
    at.checked_sub(by).unwrap_or(at)
}

fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_ends_at_its_first_newline_and_half_a_line_has_no_end() {
        assert_eq!(line_end(b"ab\ncd\n"), Some(2));
        assert_eq!(line_end(b"\n"), Some(0));
        assert_eq!(line_end(b"half a li"), None);
        assert_eq!(line_end(b""), None);
        let long = [vec![b'x'; 5000], b"\nmore".to_vec()].concat();
        assert_eq!(line_end(&long), Some(5000));
    }
}
