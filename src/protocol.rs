//! The chat protocol: what a line from a client means ([`parse`] into a [`Command`]) and every
//! line of text the server writes back.
//!
//! Nothing here touches a socket or the loop; `room.rs` and `cmd/` decide who receives what.
//! Keeping all the wording in this one file means a reader (or a translator) finds every
//! message in one place, and every server line goes through [`server_line`], which is what
//! guarantees they all begin with `*** ` so people and scripts can tell them from chat. Texts
//! that state a limit are built from the limit's constant, so the two cannot disagree.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use crate::limits::MAX_NICK;

/// What one line from a client asks for. Borrowed from the line: parsing allocates nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Plain text: relayed to everyone else as `<nick> text`.
    Say(&'a str),
    /// `/me ACTION`: relayed as `* nick ACTION`.
    Me(&'a str),
    /// `/nick NAME`, with `NAME` already checked against the nick rules.
    Nick(&'a str),
    /// `/who`: list who is here.
    Who,
    /// `/msg NICK TEXT`: to one client only.
    Msg { to: &'a str, text: &'a str },
    /// `/quit [REASON]`.
    Quit(Option<&'a str>),
    /// `/help`.
    Help,
}

/// Why a line that looked like a command is not one. Its `Display` is the error text the
/// client is sent.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    Unknown(&'a str),
    Usage(&'static str),
    BadNick(&'a str),
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
        "msg" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Command::Msg {
                to,
                text: text.trim_start(),
            },
            _ => return Err(ParseError::Usage("/msg NICK TEXT")),
        },
        "quit" => Command::Quit(Some(args).filter(|a| !a.is_empty())),
        "help" => Command::Help,
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

/// Any line the server itself writes: `*** ` + text + newline.
pub fn server_line(text: impl fmt::Display) -> String {
    format!("*** {text}\n")
}

/// A chat line as the other clients see it.
pub fn chat_line(nick: &str, text: &str) -> String {
    format!("<{nick}> {text}\n")
}

/// `/me` as the other clients see it.
pub fn action_line(nick: &str, action: &str) -> String {
    format!("* {nick} {action}\n")
}

/// `/msg` as its recipient sees it.
pub fn private_line(from: &str, text: &str) -> String {
    format!("*{from}* {text}\n")
}

pub fn welcome(nick: &str) -> String {
    server_line(format_args!(
        "welcome to pollchat, you are {nick} (type /help for commands)"
    ))
}

pub fn joined(nick: &str) -> String {
    server_line(format_args!("{nick} joined"))
}

pub fn left(nick: &str, reason: impl fmt::Display) -> String {
    server_line(format_args!("{nick} left ({reason})"))
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

pub fn renamed(old: &str, new: &str) -> String {
    server_line(format_args!("{old} is now known as {new}"))
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
pub fn who(nicks: &mut [&str]) -> String {
    nicks.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    let count = nicks.len();
    let noun = if count == 1 { "user" } else { "users" };
    server_line(format_args!("{count} {noun} here: {}", nicks.join(", ")))
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
pub const SERVER_FULL: &str = "*** server full, try again later\n";
pub const TOO_MANY_FROM_ADDRESS: &str = "*** too many connections from your address\n";
pub const SHUTTING_DOWN: &str = "*** server shutting down\n";
/// `--backplane`: Redis cannot be reached; lines reach this instance's clients only.
pub const BACKPLANE_DOWN: &str = "*** backplane unavailable, chat is local only\n";
/// `--backplane`: Redis is back and this instance's nicks are claimed again.
pub const BACKPLANE_BACK: &str = "*** backplane back, chat is shared again\n";

/// `/help`: one `*** ` line per command.
pub static HELP: LazyLock<String> = LazyLock::new(|| {
    let commands = [
        (
            "/nick NAME",
            format!("change your nick (1-{MAX_NICK} of A-Z a-z 0-9 _ -)"),
        ),
        ("/who", "list who is here".to_string()),
        (
            "/me ACTION",
            "say what you are doing: * nick ACTION".to_string(),
        ),
        ("/msg NICK TEXT", "send TEXT to NICK only".to_string()),
        ("/quit [REASON]", "leave".to_string()),
        ("/help", "this list".to_string()),
        (
            "//text",
            "say \"/text\" (a line starting with / is a command)".to_string(),
        ),
    ];
    let mut help = server_line("commands:");
    for (usage, what) in commands {
        help.push_str(&server_line(format_args!("  {usage:<18}{what}")));
    }
    help
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_said() {
        assert_eq!(parse("hello"), Ok(Some(Command::Say("hello"))));
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(parse("//shrug"), Ok(Some(Command::Say("/shrug"))));
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(parse("/nick Bob_2"), Ok(Some(Command::Nick("Bob_2"))));
        assert_eq!(parse("/NICK bob"), Ok(Some(Command::Nick("bob"))));
        assert_eq!(parse("/me waves"), Ok(Some(Command::Me("waves"))));
        assert_eq!(parse("/who"), Ok(Some(Command::Who)));
        assert_eq!(parse("/help"), Ok(Some(Command::Help)));
        assert_eq!(parse("/quit"), Ok(Some(Command::Quit(None))));
        assert_eq!(parse("/quit  gone "), Ok(Some(Command::Quit(Some("gone")))));
        assert_eq!(
            parse("/msg bob  hi  there"),
            Ok(Some(Command::Msg {
                to: "bob",
                text: "hi  there"
            }))
        );
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert_eq!(parse("/frob x"), Err(ParseError::Unknown("frob")));
        assert_eq!(parse("/msg bob"), Err(ParseError::Usage("/msg NICK TEXT")));
        assert_eq!(parse("/me"), Err(ParseError::Usage("/me ACTION")));
        assert_eq!(parse("/nick a b"), Err(ParseError::BadNick("a b")));
        assert_eq!(
            ParseError::Unknown("frob").to_string(),
            "unknown command: /frob (try /help)"
        );
    }

    #[test]
    fn nicks_follow_the_rules() {
        assert!(is_valid_nick("a"));
        assert!(is_valid_nick(&"x".repeat(MAX_NICK)));
        assert!(!is_valid_nick(&"x".repeat(MAX_NICK + 1)));
        assert!(!is_valid_nick(""));
        assert!(!is_valid_nick("é"));
        assert!(!is_valid_nick("<a>"));
    }

    #[test]
    fn every_server_line_starts_with_the_marker() {
        for line in [
            welcome("a"),
            joined("a"),
            left("a", "quit"),
            renamed("a", "b"),
            who(&mut ["b", "A"]),
            line_too_long(1),
            BYE.to_string(),
            SERVER_FULL.to_string(),
            TOO_MANY_FROM_ADDRESS.to_string(),
            SHUTTING_DOWN.to_string(),
            BACKPLANE_DOWN.to_string(),
            BACKPLANE_BACK.to_string(),
        ] {
            assert!(line.starts_with("*** ") && line.ends_with('\n'), "{line:?}");
        }
        assert!(HELP.lines().all(|l| l.starts_with("*** ")));
        assert_eq!(who(&mut ["b", "A"]), "*** 2 users here: A, b\n");
    }
}
