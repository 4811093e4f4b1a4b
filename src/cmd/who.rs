//! `/who`: one line listing everyone in the sender's room, here and on the other instances of
//! a shared chat.

use super::Ctx;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>) {
    let Some(room) = cx.chat.room_of(cx.from) else {
        return;
    };
    let in_room = room.members().filter_map(|who| cx.chat.nick_of(who));
    let mut nicks: Vec<&str> = in_room.collect();
    nicks.extend(cx.elsewhere.nicks_elsewhere(room.name()));
    let reply = protocol::who(room.name(), &mut nicks);
    cx.reply(&reply);
}
