//! `/who`: one line listing everyone here, and on the other instances of a shared chat.

use super::Ctx;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>) {
    let mut nicks: Vec<&str> = cx.room.nicks().collect();
    nicks.extend(cx.bus.nicks_elsewhere());
    let reply = protocol::who(&mut nicks);
    cx.reply(&reply);
}
