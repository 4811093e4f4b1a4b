//! What each command does: one small file per command, and the dispatch here (mini-redis's
//! `cmd/` is the model). A new command is a variant of [`Command`]
//! in `protocol.rs`, a file here, and an arm in [`handle_line`].
//!
//! A command acts through a [`Ctx`]: the room, the bus its events go to, the connections'
//! outbox, and who sent it. It never touches a socket: what it queues is written by the loop
//! at the end of the batch.

mod help;
mod msg;
mod nick;
mod quit;
mod say;
mod who;

use log::trace;

use crate::bus::{Bus, What};
use crate::connection::ConnRef;
use crate::protocol::{self, Command};
use crate::room::{Outbox, Room};

/// One line from a member: parsed, then done. Lines from a client that is not in the room
/// (it left earlier in this batch) are dropped.
pub fn handle_line(
    room: &mut Room,
    from: ConnRef,
    line: &str,
    bus: &mut dyn Bus,
    out: &mut impl Outbox,
) {
    let Some(nick) = room.nick_of(from) else {
        return;
    };
    trace!("token {} ({nick}) line {line:?}", from.token);
    let mut cx = Ctx {
        nick: nick.to_string(),
        room,
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
    pub room: &'a mut Room,
    pub bus: &'a mut dyn Bus,
    pub out: &'a mut O,
    /// Who sent the command, and the nick it had when it did.
    pub from: ConnRef,
    pub nick: String,
}

impl<O: Outbox> Ctx<'_, O> {
    fn run(&mut self, command: Command<'_>) {
        match command {
            Command::Say(text) => say::say(self, text),
            Command::Me(action) => say::me(self, action),
            Command::Nick(new) => nick::apply(self, new),
            Command::Who => who::apply(self),
            Command::Msg { to, text } => msg::apply(self, to, text),
            Command::Quit(reason) => quit::apply(self, reason),
            Command::Help => help::apply(self),
        }
    }

    /// A server line for the sender only.
    pub fn reply(&mut self, text: &str) {
        self.room.tell(self.from, text, self.bus, self.out);
    }

    /// Something the sender did that others must hear of.
    pub fn say(&mut self, what: What) {
        self.room.say(self.from, what, self.bus, self.out);
    }
}
