//! `/help`: the command list, and the operators' commands to operators.

use super::Ctx;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>) {
    cx.reply(&protocol::HELP);
    if cx.chat.moderation.operators.name_of(cx.from).is_some() {
        cx.reply(&protocol::OPER_HELP);
    }
}
