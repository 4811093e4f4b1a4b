//! `/ban MASK [DURATION] [REASON]`, `/unban MASK`, `/bans`: operators only.
//!
//! A ban or an unban is an event (`What::Ban`, `What::Unban`) published like a chat line, so
//! every instance applies it as the bus hands it back (`chat/moderation.rs`), this one
//! included; the list it changes is `bans.rs`'s.

use super::Ctx;
use crate::bans::{Ban, Mask, describe_left, now_ms, parse_duration};
use crate::bus::What;
use crate::limits::{BANS_LISTED, MAX_BANS};
use crate::protocol::{self, server_line};
use crate::room::Outbox;

/// The mask, or the reason it is not one (told to the operator).
fn mask(cx: &mut Ctx<'_, impl Outbox>, text: &str) -> Option<Mask> {
    Mask::parse(text)
        .map_err(|why| cx.reply(&server_line(why)))
        .ok()
}

pub fn ban(cx: &mut Ctx<'_, impl Outbox>, args: &str) {
    let Some(by) = cx.operator("/ban") else {
        return;
    };
    let (text, rest) = args.split_once(' ').unwrap_or((args, ""));
    let Some(mask) = mask(cx, text) else {
        return;
    };
    let rest = rest.trim();
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let (duration, reason) = match parse_duration(first) {
        Some(duration) => (Some(duration), after.trim()),
        None => (None, rest),
    };
    let reason = if reason.is_empty() {
        "no reason given"
    } else {
        reason
    };
    if mask.covers(&cx.nick, cx.out.peer(cx.from).map(|(ip, _)| ip)) {
        return cx.reply(&protocol::ban_on_yourself(&mask));
    }
    let list = &cx.chat.moderation.bans.list;
    if list.len() >= MAX_BANS && list.get(&mask).is_none() {
        return cx.reply(&protocol::bans_full(MAX_BANS));
    }
    let until = duration.map(|d| now_ms().saturating_add(d.as_secs().saturating_mul(1000)));
    let time = duration.map_or("permanent".into(), |d| {
        format!("for {}", describe_left(d.as_secs() * 1000))
    });
    cx.reply(&protocol::ban_placed(&mask, &time, reason));
    cx.chat.moderation.count("ban");
    let reason = reason.to_string();
    let ban = Ban { until, by, reason };
    cx.chat.say(cx.from, What::Ban { mask, ban });
}

pub fn unban(cx: &mut Ctx<'_, impl Outbox>, text: &str) {
    let Some(by) = cx.operator("/unban") else {
        return;
    };
    let Some(mask) = mask(cx, text) else {
        return;
    };
    let ban = cx.chat.moderation.bans.list.get(&mask);
    if !ban.is_some_and(|b| b.is_live(now_ms())) {
        return cx.reply(&protocol::no_ban(&mask));
    }
    cx.reply(&protocol::ban_lifted(&mask));
    cx.chat.moderation.count("unban");
    cx.chat.say(cx.from, What::Unban { mask, by });
}

pub fn list(cx: &mut Ctx<'_, impl Outbox>) {
    if cx.operator("/bans").is_none() {
        return;
    }
    let now = now_ms();
    let live = cx.chat.moderation.bans.list.live(now);
    let bans: Vec<_> = (live.into_iter())
        .map(|(mask, ban)| {
            let time = ban.until.map_or("permanent".into(), |t| {
                format!("{} left", describe_left(t - now))
            });
            (mask, ban.by.as_str(), time, ban.reason.as_str())
        })
        .collect();
    let text = protocol::bans(&bans, BANS_LISTED);
    cx.reply(&text);
}
