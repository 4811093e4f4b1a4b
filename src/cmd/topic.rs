//! `/topic` shows the sender's room's topic; `/topic TEXT` sets it (operators only with
//! `--topic-ops-only`). Setting it is an event, so every instance that keeps the room keeps
//! its topic too; the topic is the room's, and goes with it.

use super::Ctx;
use crate::bus::What;
use crate::protocol;
use crate::room::{Outbox, Room};

pub fn apply(cx: &mut Ctx<'_, impl Outbox>, topic: Option<&str>) {
    let Some(topic) = topic else {
        let line = protocol::topic_is(&cx.room, cx.chat.room_of(cx.from).and_then(Room::topic));
        return cx.reply(&line);
    };
    let operators = &cx.chat.moderation.operators;
    if operators.topic_ops_only && operators.name_of(cx.from).is_none() {
        return cx.reply(&protocol::operators_only("setting the topic"));
    }
    let (room, nick, topic) = (cx.room.to_string(), cx.nick.to_string(), topic.to_string());
    cx.chat.say(cx.from, What::Topic { room, nick, topic });
}
