//! `/join #ROOM` and `/part`: from one room to another (`/part` goes back to `#lobby`).
//!
//! The parser has already checked the name against the room-name rules. The move itself is
//! the chat's (`Chat::join`): this only turns a refusal into the sender's `*** ` line.

use super::Ctx;
use crate::chat::Refused;
use crate::limits::LOBBY;
use crate::protocol;
use crate::room::Outbox;

pub fn join(cx: &mut Ctx<'_, impl Outbox>, room: &str) {
    let refused = match cx.chat.join(cx.from, room, cx.out) {
        Ok(()) => return,
        Err(Refused::AlreadyThere(room)) => protocol::already_in(&room),
        Err(Refused::TooManyRooms { max }) => protocol::too_many_rooms(room, max),
    };
    cx.reply(&refused);
}

pub fn part(cx: &mut Ctx<'_, impl Outbox>) {
    join(cx, LOBBY);
}
