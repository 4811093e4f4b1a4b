//! What instances tell each other through the Redis stream: one [`Event`] per entry (its field
//! `e`), as text.
//!
//! An event is one line of text, fields separated by single spaces, free text last:
//!
//! ```text
//! pc2 <origin> <conn> SAY <room> <nick> <text>     a chat line in <room>
//! pc2 <origin> <conn> ME <room> <nick> <action>    /me
//! pc2 <origin> <conn> JOIN <room> <nick>           a client joined (in its first room)
//! pc2 <origin> <conn> LEFT <room> <nick> <reason>  a client left, from <room>
//! pc2 <origin> <conn> MOVE <nick> <from> <to>      /join, /part
//! pc2 <origin> <conn> NICK <room> <old> <new>      a client was renamed
//! pc2 <origin> <conn> MSG <from> <to> <text>       /msg: only <to> gets it
//! pc2 <origin> <conn> KICK <by> <nick> <reason>   /kick: whoever holds <nick> lets it go
//! pc2 <origin> <conn> TOPIC <room> <nick> <text>   /topic: <room>'s topic, set by <nick>
//! pc2 <origin> 0 HELLO <nick>#<room> ...           "I am alive, these are my clients"
//! pc2 <origin> 0 BYE                               the instance is shutting down
//! pc2 <origin> <conn> BAN <mask> <until> <by> <reason>  a ban (its line: see `bans.rs`)
//! pc2 <origin> <conn> UNBAN <mask> <by>            a ban lifted
//! ```
//!
//! `origin` is the publishing instance's id and `conn` the sender's connection id there, so
//! the instance that published a line can skip echoing it back to its sender. Text is safe
//! in this format because lines are sanitised before they become events (no newline can be
//! in them), and nicks and room names never hold a space (nor a nick a `#`, which is why
//! `HELLO` can write `ann#rust`). An event from another instance is checked again on arrival
//! all the same (nicks and rooms against their rules, text sanitised): the stream is input
//! like any socket.
//!
//! It is text, not a binary format, so `redis-cli XRANGE CHANNEL:stream - +` shows the chat
//! the stream still holds, and `redis-cli XREAD BLOCK 0 STREAMS CHANNEL:stream '$'` the next line.
//! `pc1`, the format before rooms, is refused: instances of both kinds cannot share a chat.

use std::collections::HashMap;

use crate::bans::{Ban, Mask};
use crate::bus::{Event, InstanceNews, Origin, Presence, What};
use crate::framing::sanitize;
use crate::protocol::{is_valid_nick, is_valid_room};

/// Marks the format, so a future change can be told apart from garbage.
const VERSION: &str = "pc2";

/// The instances heard of on the stream, by name, each with the small number the chat knows
/// it by ([`Origin`]): this instance's own name is [`Origin::HERE`]. An instance that says
/// goodbye, or falls silent, is forgotten, so the table holds the instances there now.
#[derive(Debug)]
pub struct Origins {
    ids: HashMap<String, Origin>,
    /// The number the next new name gets.
    next: u32,
}

impl Origins {
    /// Knows `own` (this instance's id) as [`Origin::HERE`].
    pub fn new(own: &str) -> Origins {
        Origins {
            ids: HashMap::from([(own.to_string(), Origin::HERE)]),
            next: 1,
        }
    }

    /// The number `name` goes by, given now if it is new.
    pub fn id(&mut self, name: &str) -> Origin {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = Origin::other(self.next);
        // Numbers are not reused until four billion names have come and gone.
        self.next = self.next.checked_add(1).unwrap_or(1);
        self.ids.insert(name.to_string(), id);
        id
    }

    /// `origin` is gone: its name may come back, as a new number.
    pub fn forget(&mut self, origin: Origin) {
        if !origin.is_here() {
            self.ids.retain(|_, id| *id != origin);
        }
    }
}

/// What goes through the stream: one of the chat's events, or what an instance says of itself
/// (`HELLO`, `BYE`: the backplane's business, which reaches the chat only as news).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Chat(Event),
    Instance(Origin, InstanceNews),
}

impl Message {
    /// The instance it comes from.
    pub fn origin(&self) -> Origin {
        match self {
            Message::Chat(event) => event.origin,
            Message::Instance(origin, _) => *origin,
        }
    }

    /// The message as published, `origin` being this instance's name (only this instance's
    /// messages are published).
    pub fn encode(&self, origin: &str) -> String {
        let event = match self {
            Message::Chat(event) => return event.encode(origin),
            Message::Instance(_, news) => news,
        };
        let head = format!("{VERSION} {origin} 0");
        match event {
            InstanceNews::Hello { members } => {
                let mut line = format!("{head} HELLO");
                for Presence { nick, room } in members {
                    line.push_str(&format!(" {nick}{room}"));
                }
                line
            }
            InstanceNews::Bye => format!("{head} BYE"),
        }
    }

    /// A message from the stream, or why it is not one. Its origin's name is looked up (or
    /// entered) in `origins`.
    pub fn decode(message: &[u8], origins: &mut Origins) -> Result<Message, String> {
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
        let news = match kind {
            "HELLO" => InstanceNews::Hello {
                members: args
                    .split(' ')
                    .filter(|n| !n.is_empty())
                    .map(presence)
                    .collect::<Result<_, _>>()?,
            },
            "BYE" => InstanceNews::Bye,
            _ => {
                let what = decode_what(kind, args)?;
                let origin = origins.id(origin);
                return Ok(Message::Chat(Event { origin, conn, what }));
            }
        };
        Ok(Message::Instance(origins.id(origin), news))
    }
}

impl Event {
    /// The event as published, `origin` being this instance's name.
    fn encode(&self, origin: &str) -> String {
        let head = format!("{VERSION} {origin} {}", self.conn);
        match &self.what {
            What::Say { room, nick, text } => format!("{head} SAY {room} {nick} {text}"),
            What::Me { room, nick, action } => format!("{head} ME {room} {nick} {action}"),
            What::Joined { room, nick } => format!("{head} JOIN {room} {nick}"),
            What::Left { room, nick, reason } => format!("{head} LEFT {room} {nick} {reason}"),
            What::Moved { nick, from, to } => format!("{head} MOVE {nick} {from} {to}"),
            What::Renamed { room, old, new } => format!("{head} NICK {room} {old} {new}"),
            What::Msg { from, to, text } => format!("{head} MSG {from} {to} {text}"),
            What::Ban { mask, ban } => format!("{head} BAN {}", ban.line(mask)),
            What::Unban { mask, by } => format!("{head} UNBAN {mask} {by}"),
            What::Kick { by, nick, reason } => format!("{head} KICK {by} {nick} {reason}"),
            What::Topic { room, nick, topic } => format!("{head} TOPIC {room} {nick} {topic}"),
        }
    }
}

/// A nick from the stream, held to the same rules as a client's.
fn nick(text: &str) -> Result<String, String> {
    is_valid_nick(text)
        .then(|| text.to_string())
        .ok_or_else(|| format!("bad nick {text:?}"))
}

/// A room name from the stream, held to the same rules as a client's `/join`.
fn room(text: &str) -> Result<String, String> {
    is_valid_room(text)
        .then(|| text.to_string())
        .ok_or_else(|| format!("bad room {text:?}"))
}

/// The first field, and the rest.
fn field(args: &str) -> Result<(&str, &str), String> {
    args.split_once(' ')
        .ok_or_else(|| "missing field".to_string())
}

/// A nick, then free text.
fn nick_and_text(args: &str) -> Result<(String, String), String> {
    let (a, b) = field(args)?;
    Ok((nick(a)?, b.to_string()))
}

/// A room, a nick, then free text.
fn room_nick_and_text(args: &str) -> Result<(String, String, String), String> {
    let (r, rest) = field(args)?;
    let (nick, text) = nick_and_text(rest)?;
    Ok((room(r)?, nick, text))
}

/// `nick#room`, as `HELLO` lists a client.
fn presence(text: &str) -> Result<Presence, String> {
    let at = text
        .find('#')
        .ok_or_else(|| format!("no room in {text:?}"))?;
    let (n, r) = text.split_at(at);
    Ok(Presence {
        nick: nick(n)?,
        room: room(r)?,
    })
}

/// Text from the stream, cleaned as a client's line is: the stream is input like any socket.
fn clean(text: &str) -> String {
    sanitize(text.as_bytes())
}

/// The part after the connection id: the kind and its fields.
fn decode_what(kind: &str, args: &str) -> Result<What, String> {
    Ok(match kind {
        "SAY" => {
            let (room, nick, text) = room_nick_and_text(args)?;
            let text = clean(&text);
            let (room, nick) = (room.into(), nick.into());
            What::Say { room, nick, text }
        }
        "ME" => {
            let (room, nick, action) = room_nick_and_text(args)?;
            let action = clean(&action);
            let (room, nick) = (room.into(), nick.into());
            What::Me { room, nick, action }
        }
        "JOIN" => {
            let (r, n) = field(args)?;
            What::Joined {
                room: room(r)?,
                nick: nick(n)?,
            }
        }
        "LEFT" => {
            let (room, nick, reason) = room_nick_and_text(args)?;
            let reason = clean(&reason);
            What::Left { room, nick, reason }
        }
        "MOVE" => {
            let (n, rest) = field(args)?;
            let (from, to) = field(rest)?;
            What::Moved {
                nick: nick(n)?,
                from: room(from)?,
                to: room(to)?,
            }
        }
        "NICK" => {
            let (room, old, new) = room_nick_and_text(args)?;
            let new = nick(&new)?;
            What::Renamed { room, old, new }
        }
        "MSG" => {
            let (from, rest) = nick_and_text(args)?;
            let (to, text) = nick_and_text(&rest)?;
            let text = clean(&text);
            What::Msg { from, to, text }
        }
        "BAN" => {
            let (mask, ban) = Ban::parse_line(args)?;
            What::Ban { mask, ban }
        }
        "UNBAN" => {
            let (mask, by) = field(args)?;
            let (mask, by) = (Mask::parse(mask)?, by.to_string());
            What::Unban { mask, by }
        }
        "KICK" => {
            let (by, rest) = nick_and_text(args)?;
            let (nick, reason) = nick_and_text(&rest)?;
            let reason = clean(&reason);
            What::Kick { by, nick, reason }
        }
        "TOPIC" => {
            let (room, nick, topic) = room_nick_and_text(args)?;
            let topic = clean(&topic);
            What::Topic { room, nick, topic }
        }
        other => return Err(format!("unknown kind {other:?}")),
    })
}
