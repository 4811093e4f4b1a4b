//! What each command does: one small file per command, and the dispatch here (mini-redis's
//! `cmd/` is the model). A new command is a variant of [`Command`]
//! in `protocol.rs`, a file here, and an arm in [`handle_line`].
//!
//! A command acts through a [`Ctx`]: the chat, what the bus knows of the other instances
//! (read only), the connections' outbox, and who sent it. It never touches a socket: what it
//! queues is written by the loop at the end of the batch, and what it asks of the bus (the
//! events it makes, a nick claim) the server hands over when the line is done (`bus.rs`).

mod ban;
mod help;
mod join;
mod kick;
mod list;
mod motd;
mod msg;
mod nick;
mod oper;
mod quit;
mod say;
mod topic;
mod who;

use std::rc::Rc;

use log::trace;

use crate::bus::Elsewhere;
use crate::chat::Chat;
use crate::connection::ConnRef;
use crate::protocol::{self, Command};
use crate::room::Outbox;

/// One line from a client: parsed, then done. Lines from a client that is not in the chat
/// (it left earlier in this batch) are dropped.
pub fn handle_line(
    chat: &mut Chat,
    from: ConnRef,
    line: String,
    elsewhere: &dyn Elsewhere,
    out: &mut impl Outbox,
) {
    let (Some(nick), Some(room)) = (
        chat.nicks().nick_of(from).map(Rc::clone),
        chat.room_of(from).map(|r| Rc::clone(r.shared_name())),
    ) else {
        return;
    };
    // `/oper`'s password stays out of the log (looked for only when tracing).
    let hidden = |l: &str| l.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("/oper "));
    trace!(
        "token {} ({nick} in {room}) line {:?}",
        from.token,
        if hidden(&line) {
            "/oper (hidden)"
        } else {
            &line
        }
    );
    let mut cx = Ctx {
        nick,
        room,
        chat,
        elsewhere,
        out,
        from,
    };
    match protocol::parse(&line) {
        // Plain text, the line itself or what follows its escaping `/`: the line moves into
        // the event rather than being copied (this runs for every line said).
        Ok(Some(Command::Say(text))) => {
            let text = if line.ends_with(text) {
                let escape = line.len() - text.len();
                let mut line = line;
                line.drain(..escape);
                line
            } else {
                text.to_string()
            };
            say::say(&mut cx, text);
        }
        Ok(Some(command)) => cx.run(command),
        Ok(None) => {}
        Err(error) => cx.reply(&protocol::server_line(error)),
    }
}

/// What a command acts on. See the module documentation.
pub struct Ctx<'a, O: Outbox> {
    pub chat: &'a mut Chat,
    pub elsewhere: &'a dyn Elsewhere,
    pub out: &'a mut O,
    /// Who sent the command, and the nick it had and the room it was in when it did.
    pub from: ConnRef,
    pub nick: Rc<str>,
    pub room: Rc<str>,
}

impl<O: Outbox> Ctx<'_, O> {
    fn run(&mut self, command: Command<'_>) {
        match command {
            Command::Say(text) => say::say(self, text.to_string()),
            Command::Me(action) => say::me(self, action),
            Command::Nick(new) => nick::apply(self, new),
            Command::Who => who::apply(self),
            Command::Join(room) => join::join(self, room),
            Command::Part => join::part(self),
            Command::List => list::apply(self),
            Command::Msg { to, text } => msg::apply(self, to, text),
            Command::Quit(reason) => quit::apply(self, reason),
            Command::Help => help::apply(self),
            Command::Motd => motd::apply(self),
            Command::Ban(args) => ban::ban(self, args),
            Command::Unban(mask) => ban::unban(self, mask),
            Command::Bans => ban::list(self),
            Command::Oper { name, password } => oper::apply(self, name, password),
            Command::Kick { nick, reason } => kick::apply(self, nick, reason),
            Command::Topic(topic) => topic::apply(self, topic),
        }
    }

    /// A server line for the sender only.
    pub fn reply(&mut self, text: &str) {
        self.chat.tell(self.from, text, self.out);
    }

    /// The sender's operator name (`/oper`), or, to a sender that is not one, the refusal.
    pub fn operator(&mut self, command: &str) -> Option<String> {
        let name = self.chat.moderation.operators.name_of(self.from);
        let name = name.map(str::to_string);
        if name.is_none() {
            self.reply(&protocol::operators_only(command));
        }
        name
    }
}
