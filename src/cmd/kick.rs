//! `/kick NICK [REASON]` (operators): NICK is told who kicked it and why, then let go once its
//! output is out (as for `/quit`); its room sees it was kicked. The kick is an event, like
//! `/msg`, so whichever instance holds NICK lets it go (`Chat::deliver`).

use log::info;

use super::Ctx;
use crate::bus::What;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>, nick: &str, reason: Option<&str>) {
    let Some(oper) = cx.operator("/kick") else {
        return;
    };
    if cx.chat.nicks().owner_of(nick).is_none() && !cx.elsewhere.is_elsewhere(nick) {
        return cx.reply(&protocol::no_such_nick(nick));
    }
    let reason = reason.unwrap_or(protocol::NO_REASON).to_string();
    info!("operator {oper} ({}) kicked {nick}: {reason}", cx.nick);
    cx.chat.moderation.count("kick");
    let (by, nick) = (cx.nick.to_string(), nick.to_string());
    cx.chat.say(cx.from, What::Kick { by, nick, reason });
}
