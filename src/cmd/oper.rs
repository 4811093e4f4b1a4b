//! `/oper NAME PASSWORD`: the client becomes an operator if the password is right. What is
//! checked, in which order, and what it costs the loop: `operators.rs`.

use log::{debug, info, warn};

use super::Ctx;
use crate::operators::Oper;
use crate::protocol;
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>, name: &str, password: &str) {
    let Some((peer, tls)) = cx.out.peer(cx.from) else {
        return;
    };
    let nick = &cx.nick;
    let operators = &mut cx.chat.moderation.operators;
    let outcome = operators.oper(cx.from, peer, tls, name, password);
    let reply = match outcome {
        Oper::Granted => {
            info!("{peer} ({nick}) is now operator {name}");
            cx.chat.moderation.count("oper");
            protocol::oper_granted(name)
        }
        Oper::Denied(failures) => {
            warn!(
                "{peer} ({nick}): wrong operator name or password for {name:?} ({failures} in a row)"
            );
            cx.chat.moderation.count("oper_failed");
            protocol::OPER_DENIED.to_string()
        }
        Oper::Wait(wait) => {
            debug!("{peer} ({nick}): /oper refused, its address must wait {wait:?}");
            cx.chat.moderation.count("oper_refused");
            protocol::oper_wait(wait)
        }
        Oper::UseTls => {
            warn!("{peer} ({nick}): /oper refused over plain text from another machine");
            cx.chat.moderation.count("oper_refused");
            protocol::OPER_USE_TLS.to_string()
        }
    };
    cx.reply(&reply);
}
