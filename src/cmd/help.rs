//! `/help`: the command list.

use super::Ctx;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>) {
    cx.reply(&protocol::HELP);
}
