//! What instances tell each other on the Redis channel: one [`Event`] per message, as text.
//!
//! An event is one line of text, fields separated by single spaces, free text last:
//!
//! ```text
//! pc1 <origin> <conn> SAY <nick> <text>         a chat line
//! pc1 <origin> <conn> ME <nick> <action>        /me
//! pc1 <origin> <conn> JOIN <nick>               a client joined
//! pc1 <origin> <conn> LEFT <nick> <reason>      a client left
//! pc1 <origin> <conn> NICK <old> <new>          a client was renamed
//! pc1 <origin> <conn> MSG <from> <to> <text>    /msg: only <to> gets it
//! pc1 <origin> 0 HELLO <nick> <nick> ...        "I am alive, these are my clients"
//! pc1 <origin> 0 BYE                            the instance is shutting down
//! ```
//!
//! `origin` is the publishing instance's id and `conn` the sender's connection id there, so
//! the instance that published a line can skip echoing it back to its sender. Text is safe
//! in this format because lines are sanitised before they become events (no newline can be
//! in them), and nicks never hold a space. An event from another instance is checked again
//! on arrival all the same (nicks against the nick rules, text sanitised): the channel is
//! input like any socket.
//!
//! It is text, not a binary format, so `redis-cli subscribe CHANNEL` shows the whole chat.

use crate::bus::{Event, What};
use crate::framing::sanitize;
use crate::protocol::is_valid_nick;

/// Marks the format, so a future change can be told apart from garbage.
const VERSION: &str = "pc1";

impl Event {
    /// The message as published.
    pub fn encode(&self) -> String {
        let head = format!("{VERSION} {} {}", self.origin, self.conn);
        match &self.what {
            What::Say { nick, text } => format!("{head} SAY {nick} {text}"),
            What::Me { nick, action } => format!("{head} ME {nick} {action}"),
            What::Joined { nick } => format!("{head} JOIN {nick}"),
            What::Left { nick, reason } => format!("{head} LEFT {nick} {reason}"),
            What::Renamed { old, new } => format!("{head} NICK {old} {new}"),
            What::Msg { from, to, text } => format!("{head} MSG {from} {to} {text}"),
            What::Hello { nicks } if nicks.is_empty() => format!("{head} HELLO"),
            What::Hello { nicks } => format!("{head} HELLO {}", nicks.join(" ")),
            What::Bye => format!("{head} BYE"),
        }
    }

    /// A message from the channel, or why it is not an event.
    pub fn decode(message: &[u8]) -> Result<Event, String> {
        let text = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_string())?;
        let mut fields = text.splitn(4, ' ');
        let (Some(VERSION), Some(origin), Some(conn), Some(rest)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("not a {VERSION} event"));
        };
        if origin.is_empty() || !origin.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("bad origin {origin:?}"));
        }
        let conn: u64 = conn.parse().map_err(|_| format!("bad id {conn:?}"))?;
        let (kind, args) = rest.split_once(' ').unwrap_or((rest, ""));
        Ok(Event {
            origin: origin.to_string(),
            conn,
            what: decode_what(kind, args)?,
        })
    }
}

/// A nick from the channel, held to the same rules as a client's.
fn nick(text: &str) -> Result<String, String> {
    is_valid_nick(text)
        .then(|| text.to_string())
        .ok_or_else(|| format!("bad nick {text:?}"))
}

/// A nick, then free text.
fn nick_and_text(args: &str) -> Result<(String, String), String> {
    let (a, b) = args.split_once(' ').ok_or("missing field")?;
    Ok((nick(a)?, b.to_string()))
}

/// Text from the channel, cleaned as a client's line is: the channel is input like any socket.
fn clean(text: &str) -> String {
    sanitize(text.as_bytes())
}

/// The part after the connection id: the kind and its fields.
fn decode_what(kind: &str, args: &str) -> Result<What, String> {
    Ok(match kind {
        "SAY" => {
            let (nick, text) = nick_and_text(args)?;
            let text = clean(&text);
            What::Say { nick, text }
        }
        "ME" => {
            let (nick, action) = nick_and_text(args)?;
            let action = clean(&action);
            What::Me { nick, action }
        }
        "JOIN" => What::Joined { nick: nick(args)? },
        "LEFT" => {
            let (nick, reason) = nick_and_text(args)?;
            let reason = clean(&reason);
            What::Left { nick, reason }
        }
        "NICK" => {
            let (old, new) = nick_and_text(args)?;
            let new = nick(&new)?;
            What::Renamed { old, new }
        }
        "MSG" => {
            let (from, rest) = nick_and_text(args)?;
            let (to, text) = nick_and_text(&rest)?;
            let text = clean(&text);
            What::Msg { from, to, text }
        }
        "HELLO" => What::Hello {
            nicks: args
                .split(' ')
                .filter(|n| !n.is_empty())
                .map(nick)
                .collect::<Result<_, _>>()?,
        },
        "BYE" => What::Bye,
        other => return Err(format!("unknown kind {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(what: What) -> Event {
        Event {
            origin: "ab12".into(),
            conn: 7,
            what,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let s = |x: &str| x.to_string();
        for what in [
            What::Say {
                nick: s("al"),
                text: s("hi  there\tyou"),
            },
            What::Me {
                nick: s("al"),
                action: s("waves"),
            },
            What::Joined { nick: s("guest-1") },
            What::Left {
                nick: s("al"),
                reason: s("quit: gone home"),
            },
            What::Renamed {
                old: s("a"),
                new: s("b"),
            },
            What::Msg {
                from: s("a"),
                to: s("b"),
                text: s("psst hi"),
            },
            What::Hello {
                nicks: vec![s("a"), s("b")],
            },
            What::Hello { nicks: vec![] },
            What::Bye,
        ] {
            let e = event(what);
            assert_eq!(Event::decode(e.encode().as_bytes()), Ok(e.clone()));
        }
    }

    #[test]
    fn foreign_messages_are_refused_or_cleaned() {
        for bad in [
            &b"hello"[..],
            b"pc1 ab12 7",
            b"pc2 ab12 7 BYE",
            b"pc1 a-b 7 BYE",
            b"pc1 ab12 x BYE",
            b"pc1 ab12 7 SAY bad<nick> hi",
            b"pc1 ab12 7 FROB",
            b"pc1 ab12 7 MSG a",
            b"pc1 ab12 7 SAY \xff hi",
        ] {
            assert!(Event::decode(bad).is_err(), "{bad:?}");
        }
        let e = Event::decode(b"pc1 ab12 7 SAY al hi \x1b[31mred").unwrap();
        assert_eq!(
            e.what,
            What::Say {
                nick: "al".into(),
                text: "hi [31mred".into()
            }
        );
    }
}
