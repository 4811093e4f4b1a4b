//! Plain text and `/me`: said to the sender's room, as `<nick> text` and `* nick ACTION`.

use super::Ctx;
use crate::bus::What;
use crate::room::Outbox;

pub fn say(cx: &mut Ctx<'_, impl Outbox>, text: &str) {
    let (room, nick, text) = (cx.room.clone(), cx.nick.clone(), text.to_string());
    cx.say(What::Say { room, nick, text });
}

pub fn me(cx: &mut Ctx<'_, impl Outbox>, action: &str) {
    let (room, nick, action) = (cx.room.clone(), cx.nick.clone(), action.to_string());
    cx.say(What::Me { room, nick, action });
}
