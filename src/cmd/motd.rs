//! `/motd`: the message of the day again (it is shown once on connect, and changes on SIGHUP).

use std::rc::Rc;

use super::Ctx;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>) {
    let motd = Rc::clone(&cx.chat.motd);
    match &*motd {
        "" => cx.reply(&protocol::no_motd()),
        lines => cx.reply(lines),
    }
}
