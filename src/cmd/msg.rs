//! `/msg NICK TEXT`: to one client only, wherever it is connected.

use super::Ctx;
use crate::bus::What;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>, to: &str, text: &str) {
    if cx.chat.nicks().owner_of(to).is_none() && !cx.elsewhere.is_elsewhere(to) {
        return cx.reply(&protocol::no_such_nick(to));
    }
    let (from, to, text) = (cx.nick.to_string(), to.to_string(), text.to_string());
    cx.chat.say(cx.from, What::Msg { from, to, text });
}
