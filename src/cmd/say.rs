//! Plain text and `/me`: said to the sender's room, as `<nick> text` and `* nick ACTION`.
//!
//! A command is the last use of its context, so the sender's nick and room move from it into
//! the event rather than being copied again: this runs for every line said.

use std::mem;

use super::Ctx;
use crate::bus::What;
use crate::room::Outbox;

pub fn say(cx: &mut Ctx<'_, impl Outbox>, text: &str) {
    let (room, nick) = (mem::take(&mut cx.room), mem::take(&mut cx.nick));
    let text = text.to_string();
    cx.say(What::Say { room, nick, text });
}

pub fn me(cx: &mut Ctx<'_, impl Outbox>, action: &str) {
    let (room, nick) = (mem::take(&mut cx.room), mem::take(&mut cx.nick));
    let action = action.to_string();
    cx.say(What::Me { room, nick, action });
}
