//! `/nick NAME`: a new nick, if nobody has it, here or (with a shared bus) elsewhere.
//!
//! The parser has already checked NAME against the nick rules. The nick is claimed from the
//! bus, and the client is renamed when the claim is granted (`Chat::claim_answered`): at once
//! by a lone server; a shared bus asks Redis first, and the client's next lines wait unread
//! until it answers, so a line sent after `/nick bob` is bob's.

use super::Ctx;
use crate::bans::now_ms;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>, new: &str) {
    if &*cx.nick == new {
        return cx.reply(&protocol::you_are(new));
    }
    let bans = &cx.chat.moderation.bans.list;
    if bans.on_nick(new, now_ms()).is_some() {
        return cx.reply(&protocol::nick_banned(new));
    }
    if !cx.chat.nicks().is_free_for(cx.from, new, cx.elsewhere) {
        return cx.reply(&protocol::nick_taken(new));
    }
    // A change of case only is the same nick, which this client already holds.
    let same_key = protocol::nick_key(new) == protocol::nick_key(&cx.nick);
    if same_key {
        cx.chat.rename(cx.from, new, cx.out);
    } else {
        cx.chat.claim_rename(cx.from, new);
    }
}
