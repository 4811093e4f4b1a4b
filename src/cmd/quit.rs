//! `/quit [REASON]`: `*** bye` to the client, then it leaves; the others hear the reason.

use super::Ctx;
use crate::connection::CloseReason;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>, reason: Option<&str>) {
    cx.reply(protocol::BYE);
    let reason = CloseReason::Quit(reason.map(str::to_string));
    cx.chat.depart(cx.from, reason, cx.out);
}
