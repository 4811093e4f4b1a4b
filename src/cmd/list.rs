//! `/list`: every room and how many are in it, counting the other instances of a shared chat.

use std::collections::BTreeMap;

use super::Ctx;
use crate::protocol::{self, room_key};
use crate::room::Outbox;

pub fn apply(cx: &mut Ctx<'_, impl Outbox>) {
    // By key, so a room this instance and another spell differently is counted once.
    let mut rooms: BTreeMap<String, (&str, usize)> = BTreeMap::new();
    let everywhere = cx.chat.rooms.list().chain(cx.elsewhere.rooms_elsewhere());
    for (name, members) in everywhere {
        rooms
            .entry(room_key(name).into_owned())
            .or_insert((name, 0))
            .1 += members;
    }
    let mut rooms: Vec<(&str, usize)> = rooms.into_values().collect();
    let reply = protocol::rooms(&mut rooms);
    cx.reply(&reply);
}
