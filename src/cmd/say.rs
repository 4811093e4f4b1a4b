//! Plain text and `/me`: said to the sender's room, as `<nick> text` and `* nick ACTION`.
//!
//! This runs for every line said, so it copies nothing it can share: the sender's nick and
//! room are the chat's own, shared, and the text is the line read (see `handle_line`).

use std::rc::Rc;

use super::Ctx;
use crate::bus::What;
use crate::room::Outbox;

pub fn say(cx: &mut Ctx<'_, impl Outbox>, text: String) {
    let (room, nick) = (Rc::clone(&cx.room), Rc::clone(&cx.nick));
    cx.chat.say(cx.from, What::Say { room, nick, text });
}

pub fn me(cx: &mut Ctx<'_, impl Outbox>, action: &str) {
    let (room, nick) = (Rc::clone(&cx.room), Rc::clone(&cx.nick));
    let action = action.to_string();
    cx.chat.say(cx.from, What::Me { room, nick, action });
}
