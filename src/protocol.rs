//! The chat protocol: what a line from a client means ([`parse`] into a [`Command`]) and every
//! line of text the server writes back.
//!
//! Nothing here touches a socket or the loop; `room.rs` and `cmd/` decide who receives what.
//! Keeping all the wording in this one file means a reader (or a translator) finds every
//! message in one place, and every server line goes through [`server_line`], which is what
//! guarantees they all begin with `*** ` so people and scripts can tell them from chat. Texts
//! that state a limit are built from the limit's constant, so the two cannot disagree.

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::Duration;

use crate::framing::sanitize;
use crate::limits::{LIST_LINE, MAX_NICK, MAX_ROOM_NAME};

/// What one line from a client asks for. Borrowed from the line: parsing allocates nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Plain text: relayed to everyone else as `<nick> text`.
    Say(&'a str),
    /// `/me ACTION`: relayed as `* nick ACTION`.
    Me(&'a str),
    /// `/nick NAME`, with `NAME` already checked against the nick rules.
    Nick(&'a str),
    /// `/who`: list who is in the sender's room.
    Who,
    /// `/join #ROOM`, with `#ROOM` already checked against the room-name rules.
    Join(&'a str),
    /// `/part`: back to `#lobby`.
    Part,
    /// `/list`: the rooms and how many are in each.
    List,
    /// `/msg NICK TEXT`: to one client only.
    Msg { to: &'a str, text: &'a str },
    /// `/quit [REASON]`.
    Quit(Option<&'a str>),
    /// `/help`.
    Help,
    /// `/motd`: the message of the day again.
    Motd,
    /// `/ban MASK [DURATION] [REASON]` (operators): the arguments, read by `cmd/ban.rs`.
    Ban(&'a str),
    /// `/unban MASK` (operators).
    Unban(&'a str),
    /// `/bans` (operators).
    Bans,
    /// `/oper NAME PASSWORD`: become an operator.
    Oper { name: &'a str, password: &'a str },
    /// `/kick NICK [REASON]` (operators).
    Kick {
        nick: &'a str,
        reason: Option<&'a str>,
    },
    /// `/topic [TEXT]`: show the room's topic, or set it.
    Topic(Option<&'a str>),
}

/// Why a line that looked like a command is not one. Its `Display` is the error text the
/// client is sent.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    Unknown(&'a str),
    Usage(&'static str),
    BadNick(&'a str),
    BadRoom(&'a str),
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown(name) => write!(f, "unknown command: /{name} (try /help)"),
            ParseError::Usage(usage) => write!(f, "usage: {usage}"),
            ParseError::BadNick(nick) => write!(
                f,
                "invalid nick \"{nick}\": use 1-{MAX_NICK} of the characters A-Z a-z 0-9 _ -"
            ),
            ParseError::BadRoom(room) => write!(
                f,
                "invalid room name \"{room}\": use # and 1-{MAX_ROOM_NAME} of the characters \
                 A-Z a-z 0-9 _ -"
            ),
        }
    }
}

/// Reads one (sanitised) line. `Ok(None)` means there is nothing to do: the line is blank.
///
/// A line starting with `/` is a command; `//` escapes that, so `//shrug` says `/shrug`.
pub fn parse(line: &str) -> Result<Option<Command<'_>>, ParseError<'_>> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line)));
    };
    if rest.starts_with('/') {
        return Ok(Some(Command::Say(rest)));
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let command = match name.to_ascii_lowercase().as_str() {
        "me" if args.is_empty() => return Err(ParseError::Usage("/me ACTION")),
        "me" => Command::Me(args),
        "nick" if args.is_empty() => return Err(ParseError::Usage("/nick NAME")),
        "nick" if !is_valid_nick(args) => return Err(ParseError::BadNick(args)),
        "nick" => Command::Nick(args),
        "who" => Command::Who,
        "join" if args.is_empty() => return Err(ParseError::Usage("/join #ROOM")),
        "join" if !is_valid_room(args) => return Err(ParseError::BadRoom(args)),
        "join" => Command::Join(args),
        "part" => Command::Part,
        "list" => Command::List,
        "msg" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Command::Msg {
                to,
                text: text.trim_start(),
            },
            _ => return Err(ParseError::Usage("/msg NICK TEXT")),
        },
        "quit" => Command::Quit(Some(args).filter(|a| !a.is_empty())),
        "help" => Command::Help,
        "motd" => Command::Motd,
        "ban" if args.is_empty() => return Err(ParseError::Usage("/ban MASK [DURATION] [REASON]")),
        "ban" => Command::Ban(args),
        "unban" if args.is_empty() => return Err(ParseError::Usage("/unban MASK")),
        "unban" => Command::Unban(args),
        "bans" => Command::Bans,
        "oper" => match args.split_once(char::is_whitespace) {
            Some((name, password)) => Command::Oper {
                name,
                password: password.trim_start(),
            },
            None => return Err(ParseError::Usage("/oper NAME PASSWORD")),
        },
        "kick" if args.is_empty() => return Err(ParseError::Usage("/kick NICK [REASON]")),
        "kick" => {
            let (nick, reason) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            let reason = Some(reason.trim_start()).filter(|r| !r.is_empty());
            Command::Kick { nick, reason }
        }
        "topic" => Command::Topic(Some(args).filter(|a| !a.is_empty())),
        _ => return Err(ParseError::Unknown(name)),
    };
    Ok(Some(command))
}

/// 1 to [`MAX_NICK`] characters of `[A-Za-z0-9_-]`. Nothing else, so a nick can never
/// contain a space (it is the first word of `/msg`), `<`/`>` (they frame chat lines) or
/// anything a terminal would interpret.
pub fn is_valid_nick(nick: &str) -> bool {
    (1..=MAX_NICK).contains(&nick.len())
        && nick
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The key nicks are unique under: `Alice` and `alice` are the same person.
pub fn nick_key(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

/// `#` and 1 to [`MAX_ROOM_NAME`] characters of `[A-Za-z0-9_-]`: the nick rules after the
/// `#`, so a room name has no space either and can be a field of a backplane event.
pub fn is_valid_room(room: &str) -> bool {
    room.strip_prefix('#').is_some_and(|name| {
        (1..=MAX_ROOM_NAME).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// The key rooms are told apart by: `#Rust` and `#rust` are one room. A name already in lower
/// case (nearly every one said) is its own key, borrowed: finding the room of a chat line
/// allocates nothing.
pub fn room_key(room: &str) -> Cow<'_, str> {
    if room.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(room.to_ascii_lowercase())
    } else {
        Cow::Borrowed(room)
    }
}

/// Any line the server itself writes: `*** ` + text + newline.
pub fn server_line(text: impl fmt::Display) -> String {
    format!("*** {text}\n")
}

/// A chat line as the other clients see it.
///
/// This and the two below are made once for every line said, so they are concatenations,
/// one allocation of the right size, and not `format!`, which grew the string three times
/// through the formatting machinery: some 1,700 instructions a line, more than anything else
/// the server does for a line but its system calls (callgrind, a room of 10 at full speed,
/// 2026-12-01).
pub fn chat_line(nick: &str, text: &str) -> Rc<[u8]> {
    shared_line(["<", nick, "> ", text, "\n"])
}

/// `/me` as the other clients see it.
pub fn action_line(nick: &str, action: &str) -> Rc<[u8]> {
    shared_line(["* ", nick, " ", action, "\n"])
}

/// The parts of a line, one after the other, in the one allocation every queue will share.
/// A `Vec` made first and turned into an `Rc<[u8]>` would be a second allocation and a copy:
/// instead the `Rc` is made at its size (collected from an iterator of known length, it is
/// allocated once) and the parts are copied in while it has no other owner.
fn shared_line(parts: [&str; 5]) -> Rc<[u8]> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut line: Rc<[u8]> = std::iter::repeat_n(0, len).collect();
    let Some(buf) = Rc::get_mut(&mut line) else {
        // Never: it was made on the line above and has no other owner yet.
        return Rc::from(parts.concat().as_bytes());
    };
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    line
}

/// `/msg` as its recipient sees it.
pub fn private_line(from: &str, text: &str) -> String {
    ["*", from, "* ", text, "\n"].concat()
}

pub fn welcome(nick: &str) -> String {
    server_line(format_args!(
        "welcome to pollchat, you are {nick} (type /help for commands)"
    ))
}

/// The message of the day as server lines, each cleaned as chat is ([`sanitize`]: no control
/// character reaches a terminal); empty for a blank one.
pub fn motd(text: &str) -> String {
    let line = |line: &str| server_line(sanitize(line.as_bytes()));
    text.trim_end().lines().map(line).collect()
}

pub fn no_motd() -> String {
    server_line("there is no message of the day")
}

pub fn joined(nick: &str) -> String {
    server_line(format_args!("{nick} joined"))
}

pub fn left(nick: &str, reason: impl fmt::Display) -> String {
    let reason = reason.to_string();
    // A kick's leave (`CloseReason::Kicked`) says so in its own words; a client's `/quit`
    // reason starts with "quit: ", so it cannot pass for one.
    if reason.starts_with("kicked by ") {
        return server_line(format_args!("{nick} was {reason}"));
    }
    server_line(format_args!("{nick} left ({reason})"))
}

/// `/kick`: the last line its target gets.
pub fn kicked(by: &str, reason: &str) -> String {
    server_line(format_args!("kicked by {by}: {reason}"))
}

/// A kick without a reason.
pub const NO_REASON: &str = "no reason given";

pub fn oper_granted(name: &str) -> String {
    server_line(format_args!("you are now an operator ({name})"))
}

/// A wrong name and a wrong password get the same line, so names cannot be found by trying.
pub const OPER_DENIED: &str = "*** wrong operator name or password\n";

/// `/oper` from an address that failed too recently (see `operators.rs`).
pub fn oper_wait(wait: Duration) -> String {
    let secs = wait.as_secs_f64().ceil().max(1.0);
    server_line(format_args!(
        "too many wrong operator passwords from your address; try again in {secs} s"
    ))
}

/// `/oper` in plain text from another machine, without `--oper-plaintext`.
pub const OPER_USE_TLS: &str =
    "*** /oper sends a password: connect with TLS to use it (the server's TLS port)\n";

/// An operator's command from a client that is not one.
pub fn operators_only(command: &str) -> String {
    server_line(format_args!("{command} is for operators only"))
}

pub fn topic_is(room: &str, topic: Option<&str>) -> String {
    match topic {
        Some(topic) => server_line(format_args!("topic for {room}: {topic}")),
        None => server_line(format_args!("no topic for {room}")),
    }
}

pub fn topic_set(nick: &str, room: &str, topic: &str) -> String {
    server_line(format_args!("{nick} set the topic for {room}: {topic}"))
}

/// Many joins at once (see `notices.rs`): how many, and the first few nicks.
pub fn joined_many(first: &[String], more: usize) -> String {
    let count = first.len() + more;
    server_line(format_args!(
        "{count} joined: {} and {more} more",
        first.join(", ")
    ))
}

/// Many leaves at once: how many, and the first few, each with its reason.
pub fn left_many(first: &[String], more: usize) -> String {
    let count = first.len() + more;
    server_line(format_args!(
        "{count} left: {} and {more} more",
        first.join(", ")
    ))
}

/// The reason in a leave notice for a member that moved to another room.
pub fn went_to(room: &str) -> String {
    format!("went to {room}")
}

/// `/join` and `/part`: the mover's confirmation, with how many are there now (itself too).
pub fn now_in(room: &str, members: usize) -> String {
    let noun = if members == 1 { "user" } else { "users" };
    server_line(format_args!("you are now in {room} ({members} {noun})"))
}

pub fn already_in(room: &str) -> String {
    server_line(format_args!("you are already in {room}"))
}

/// `--max-rooms`: a `/join` that would make one room too many.
pub fn too_many_rooms(room: &str, max: usize) -> String {
    server_line(format_args!(
        "cannot create {room}: the server already has its maximum of {max} rooms"
    ))
}

/// Before a room's history is replayed to a member who just joined it.
pub fn history_header(room: &str, lines: usize) -> String {
    let noun = if lines == 1 { "line" } else { "lines" };
    server_line(format_args!("last {lines} {noun} in {room}:"))
}

/// After the replay: what follows is live.
pub const HISTORY_END: &str = "*** end of history\n";

pub fn renamed(old: &str, new: &str) -> String {
    server_line(format_args!("{old} is now known as {new}"))
}

/// `/ban`: the last line a banned client gets, and the only one a banned address does.
pub fn banned(reason: &str) -> String {
    server_line(format_args!("banned: {reason}"))
}

/// `/ban`'s confirmation; `time` is `for 2h` or `permanent`.
pub fn ban_placed(mask: impl fmt::Display, time: &str, reason: &str) -> String {
    server_line(format_args!("ban on {mask} placed ({time}): {reason}"))
}

pub fn ban_lifted(mask: impl fmt::Display) -> String {
    server_line(format_args!("ban on {mask} lifted"))
}

pub fn no_ban(mask: impl fmt::Display) -> String {
    server_line(format_args!("no ban on {mask}"))
}

/// `/ban` of a mask that covers the operator giving it.
pub fn ban_on_yourself(mask: impl fmt::Display) -> String {
    server_line(format_args!(
        "not placed: a ban on {mask} would ban you too"
    ))
}

pub fn bans_full(max: usize) -> String {
    server_line(format_args!(
        "not placed: the server holds its maximum of {max} bans"
    ))
}

/// `/bans`: the bans in force, each with who placed it, the time left, and why, the first
/// `listed` of them.
pub fn bans<'a>(bans: &[(impl fmt::Display, &'a str, String, &'a str)], listed: usize) -> String {
    if bans.is_empty() {
        return server_line("no bans");
    }
    let noun = if bans.len() == 1 { "ban" } else { "bans" };
    let mut text = server_line(format_args!("{} {noun}:", bans.len()));
    for (mask, by, time, reason) in bans.iter().take(listed) {
        text.push_str(&server_line(format_args!(
            "  {mask} by {by}, {time}: {reason}"
        )));
    }
    if bans.len() > listed {
        text.push_str(&server_line(format_args!(
            "  and {} more",
            bans.len() - listed
        )));
    }
    text
}

pub fn nick_banned(nick: &str) -> String {
    server_line(format_args!("nick \"{nick}\" is banned"))
}

pub fn nick_taken(nick: &str) -> String {
    server_line(format_args!("nick \"{nick}\" is taken"))
}

/// `/nick` to the nick the client already has.
pub fn you_are(nick: &str) -> String {
    server_line(format_args!("you are {nick}"))
}

/// A shared chat: the nick a client goes by is held by another instance.
pub fn nick_taken_elsewhere(nick: &str, now: &str) -> String {
    server_line(format_args!(
        "nick \"{nick}\" is taken on another instance; you are now {now}"
    ))
}

/// `--idle-timeout`: the last line an idle client gets.
pub fn idle_disconnect(idle: Duration) -> String {
    server_line(format_args!(
        "disconnected: idle for {} s",
        idle.as_secs_f64()
    ))
}

pub fn no_such_nick(nick: &str) -> String {
    server_line(format_args!("no such nick: {nick}"))
}

/// The `/who` reply: one line, nicks sorted so the answer is stable.
pub fn who(room: &str, nicks: &mut [&str]) -> String {
    nicks.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    let count = nicks.len();
    let noun = if count == 1 { "user" } else { "users" };
    server_line(format_args!(
        "{count} {noun} in {room}: {}",
        nicks.join(", ")
    ))
}

/// The `/list` reply: `*** 3 rooms: #lobby (4), #ops (2)`, sorted by name, the rooms going
/// on to more lines past [`LIST_LINE`] bytes.
pub fn rooms(rooms: &mut [(&str, usize)]) -> String {
    rooms.sort_unstable_by_key(|(name, _)| name.to_ascii_lowercase());
    let noun = if rooms.len() == 1 { "room" } else { "rooms" };
    let mut text = String::new();
    let mut line = format!("{} {noun}: ", rooms.len());
    for (i, (name, members)) in rooms.iter().enumerate() {
        let entry = format!("{name} ({members})");
        if i > 0 && line.len() + entry.len() > LIST_LINE {
            line.push(',');
            text.push_str(&server_line(&line));
            line = format!("  {entry}");
        } else {
            if i > 0 {
                line.push_str(", ");
            }
            line.push_str(&entry);
        }
    }
    text.push_str(&server_line(&line));
    text
}

/// `--connect-rate`: the one line an address connecting too fast gets before the close.
pub fn connecting_too_fast(wait: Duration) -> String {
    let secs = wait.as_secs_f64().ceil().max(1.0);
    server_line(format_args!(
        "too many new connections from your address; try again in {secs} s"
    ))
}

pub fn line_too_long(max_line: usize) -> String {
    server_line(format_args!(
        "line too long (over {max_line} bytes), dropped"
    ))
}

pub const BYE: &str = "*** bye\n";
/// Telnet's `AYT` (are you there), answered.
pub const STILL_HERE: &str = "*** still here\n";
pub const SERVER_FULL: &str = "*** server full, try again later\n";
pub const TOO_MANY_FROM_ADDRESS: &str = "*** too many connections from your address\n";
pub const SHUTTING_DOWN: &str = "*** server shutting down\n";
/// `--backplane`: Redis cannot be reached; lines reach this instance's clients only.
pub const BACKPLANE_DOWN: &str = "*** backplane unavailable, chat is local only\n";
/// `--backplane`: Redis is back and this instance's nicks are claimed again.
pub const BACKPLANE_BACK: &str = "*** backplane back, chat is shared again\n";

/// The answer to an HTTP request sent to the chat port, before the close: where the web page
/// is, when `--http-bind` is on (its address, or only its port when it listens on every
/// address and the client's name for this host is not known).
pub fn not_a_web_server(page: Option<std::net::SocketAddr>) -> String {
    let what = "this is a chat port, not a web server: connect with nc or telnet";
    match page {
        Some(page) if page.ip().is_unspecified() => server_line(format_args!(
            "{what}, or open port {} of this host in a browser",
            page.port()
        )),
        Some(page) => server_line(format_args!("{what}, or open http://{page}/")),
        None => server_line(what),
    }
}

/// Whether `line` is an HTTP request line (`GET / HTTP/1.1`): a method (capitals, as every
/// registered one is), a target and an `HTTP/` version, one space apart. Only a connection's
/// first line is asked (a browser or curl on the wrong port): anywhere else it is chat.
pub fn is_http_request(line: &str) -> bool {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = version.strip_prefix("HTTP/").map(str::as_bytes);
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        && !target.is_empty()
        && matches!(digits, Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// `/help`: one `*** ` line per command.
pub static HELP: LazyLock<String> = LazyLock::new(|| {
    let commands = [
        (
            "/nick NAME",
            format!("change your nick (1-{MAX_NICK} of A-Z a-z 0-9 _ -)"),
        ),
        ("/who", "list who is in your room".to_string()),
        (
            "/join #ROOM",
            format!("go to #ROOM, made if need be (# and 1-{MAX_ROOM_NAME} of A-Z a-z 0-9 _ -)"),
        ),
        ("/part", format!("go back to {}", crate::limits::LOBBY)),
        (
            "/list",
            "list the rooms and how many are in each".to_string(),
        ),
        (
            "/me ACTION",
            "say what you are doing: * nick ACTION".to_string(),
        ),
        ("/msg NICK TEXT", "send TEXT to NICK only".to_string()),
        ("/quit [REASON]", "leave".to_string()),
        ("/motd", "the message of the day again".to_string()),
        (
            "/topic [TEXT]",
            "show your room's topic, or set it".to_string(),
        ),
        ("/oper NAME PASSWORD", "become an operator".to_string()),
        ("/help", "this list".to_string()),
        (
            "//text",
            "say \"/text\" (a line starting with / is a command)".to_string(),
        ),
    ];
    help_lines("commands:", &commands)
});

/// `/help` for an operator: these follow [`HELP`].
pub static OPER_HELP: LazyLock<String> = LazyLock::new(|| {
    let kick = (
        "/kick NICK [REASON]",
        "disconnect NICK, saying why".to_string(),
    );
    let ban = (
        "/ban MASK [TIME]",
        "ban a nick, address or CIDR range (TIME: 30s 10m 2h 7d; none: for good), \
         a reason may follow"
            .to_string(),
    );
    let unban = ("/unban MASK", "lift a ban".to_string());
    let bans = ("/bans", "list the bans in force".to_string());
    help_lines("operator commands:", &[kick, ban, unban, bans])
});

fn help_lines(title: &str, commands: &[(&str, String)]) -> String {
    let mut help = server_line(title);
    for (usage, what) in commands {
        help.push_str(&server_line(format_args!("  {usage:<20}{what}")));
    }
    help
}
