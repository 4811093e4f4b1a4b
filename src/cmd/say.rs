//! Plain text and `/me`: said to the room, as `<nick> text` and `* nick ACTION`.

use super::Ctx;
use crate::bus::What;
use crate::room::Outbox;

pub fn say(cx: &mut Ctx<'_, impl Outbox>, text: &str) {
    let nick = cx.nick.clone();
    let text = text.to_string();
    cx.say(What::Say { nick, text });
}

pub fn me(cx: &mut Ctx<'_, impl Outbox>, action: &str) {
    let nick = cx.nick.clone();
    let action = action.to_string();
    cx.say(What::Me { nick, action });
}
