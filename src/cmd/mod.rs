//! What each command does: one small file per command, and the dispatch here (mini-redis's
//! `cmd/` is the model). A new command is a variant of [`Command`]
//! in `protocol.rs`, a file here, and an arm in [`handle_line`].
//!
//! A command acts through a [`Ctx`]: the chat, the bus its events go to, the connections'
//! outbox, and who sent it. It never touches a socket: what it queues is written by the loop
//! at the end of the batch.

mod help;
mod join;
mod list;
mod msg;
mod nick;
mod quit;
mod say;
mod who;

use log::trace;

use crate::bus::{Bus, What};
use crate::chat::Chat;
use crate::connection::ConnRef;
use crate::protocol::{self, Command};
use crate::room::{Outbox, Room};

/// One line from a client: parsed, then done. Lines from a client that is not in the chat
/// (it left earlier in this batch) are dropped.
pub fn handle_line(
    chat: &mut Chat,
    from: ConnRef,
    line: &str,
    bus: &mut dyn Bus,
    out: &mut impl Outbox,
) {
    let (Some(nick), Some(room)) = (chat.nick_of(from), chat.room_of(from).map(Room::name)) else {
        return;
    };
    trace!("token {} ({nick} in {room}) line {line:?}", from.token);
    let mut cx = Ctx {
        nick: nick.to_string(),
        room: room.to_string(),
        chat,
        bus,
        out,
        from,
    };
    match protocol::parse(line) {
        Ok(Some(command)) => cx.run(command),
        Ok(None) => {}
        Err(error) => cx.reply(&protocol::server_line(error)),
    }
}

/// What a command acts on. See the module documentation.
pub struct Ctx<'a, O: Outbox> {
    pub chat: &'a mut Chat,
    pub bus: &'a mut dyn Bus,
    pub out: &'a mut O,
    /// Who sent the command, and the nick it had and the room it was in when it did.
    pub from: ConnRef,
    pub nick: String,
    pub room: String,
}

impl<O: Outbox> Ctx<'_, O> {
    fn run(&mut self, command: Command<'_>) {
        match command {
            Command::Say(text) => say::say(self, text),
            Command::Me(action) => say::me(self, action),
            Command::Nick(new) => nick::apply(self, new),
            Command::Who => who::apply(self),
            Command::Join(room) => join::join(self, room),
            Command::Part => join::part(self),
            Command::List => list::apply(self),
            Command::Msg { to, text } => msg::apply(self, to, text),
            Command::Quit(reason) => quit::apply(self, reason),
            Command::Help => help::apply(self),
        }
    }

    /// A server line for the sender only.
    pub fn reply(&mut self, text: &str) {
        self.chat.tell(self.from, text, self.bus, self.out);
    }

    /// Something the sender did that others must hear of.
    pub fn say(&mut self, what: What) {
        self.chat.say(self.from, what, self.bus, self.out);
    }
}
