//! `pollchat::chat` and `pollchat::room`: a room's history and replay, and the chat's
//! rooms and notices, driven with the local bus and an outbox that writes down what each
//! member was sent.

use std::rc::Rc;
use std::time::Instant;

use pollchat::bus::{LocalBus, Request, What};
use pollchat::chat::{Chat, Refused, RoomRules};
use pollchat::connection::{CloseReason, ConnRef};
use pollchat::limits::LOBBY;
use pollchat::protocol;
use pollchat::room::{Outbox, Room};

/// An outbox that writes down what each member was sent.
#[derive(Default)]
struct Recorder {
    lines: Vec<(ConnRef, String)>,
}

impl Recorder {
    fn to(&self, who: ConnRef) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(to, _)| *to == who)
            .map(|(_, line)| line.as_str())
            .collect()
    }
}

impl Outbox for Recorder {
    fn send(&mut self, to: ConnRef, line: &Rc<[u8]>) -> Result<(), CloseReason> {
        let line = String::from_utf8_lossy(line).into_owned();
        self.lines.push((to, line));
        Ok(())
    }
    fn tell(&mut self, to: ConnRef, text: &str) -> Result<(), CloseReason> {
        self.lines.push((to, text.to_string()));
        Ok(())
    }
    fn hang_up(&mut self, _: ConnRef, _: CloseReason) {}
    fn name(&mut self, _: ConnRef, _: &Rc<str>) {}
    fn hold(&mut self, _: ConnRef) {}
    fn resume(&mut self, _: ConnRef) {}
}

#[test]
fn history_keeps_the_last_lines_and_replays_them_oldest_first() {
    let mut room = Room::new("#Rust", 2, Instant::now());
    let mut out = Recorder::default();
    for text in ["one", "two", "three"] {
        room.say(None, &protocol::chat_line("ann", text), &mut out);
    }
    let bo = ConnRef { token: 1, id: 2 };
    room.replay(bo, &mut out).unwrap();
    assert_eq!(
        out.to(bo),
        [
            "*** last 2 lines in #Rust:\n",
            "<ann> two\n",
            "<ann> three\n",
            "*** end of history\n"
        ]
    );
}

#[test]
fn a_room_without_history_replays_nothing_not_even_the_header() {
    let mut room = Room::new("#a", 0, Instant::now());
    let mut out = Recorder::default();
    room.say(None, &Rc::from(&b"<ann> hi\n"[..]), &mut out);
    let bo = ConnRef { token: 1, id: 2 };
    room.replay(bo, &mut out).unwrap();
    assert!(out.to(bo).is_empty());
}

fn chat() -> Chat {
    let rules = RoomRules {
        max_rooms: 3,
        history: 20,
        quiet_joins: false,
    };
    Chat::new(rules, &LocalBus)
}

/// What the server does after every call into the chat (`Hub::forward`), with the
/// local bus, which hands every event and claim straight back.
fn forward(chat: &mut Chat, out: &mut Recorder) {
    while let Some(request) = chat.next_request() {
        match request {
            Request::Publish(event) => chat.deliver(&event, out),
            Request::Claim(claim) => chat.claim_answered(claim, true, out),
            Request::RoomEmptied(key) => chat.forget_room(&key, &LocalBus),
            Request::Release(_) | Request::Refreshed | Request::Announce(_) => {}
        }
    }
}

/// Within one batch, before any round: a newcomer who speaks is announced first, on its
/// own, so nobody sees a line from someone they did not see arrive; and the round at the
/// end of the batch does not announce it again.
#[test]
fn a_newcomer_whose_join_is_waiting_is_announced_before_its_first_line() {
    let (mut chat, mut out) = (chat(), Recorder::default());
    let (ann, bo) = (ConnRef { token: 0, id: 1 }, ConnRef { token: 1, id: 2 });
    chat.enter(ann, &LocalBus, &mut out);
    forward(&mut chat, &mut out);
    chat.enter(bo, &LocalBus, &mut out);
    forward(&mut chat, &mut out);
    let (room, nick, text) = (LOBBY.into(), "guest-2".into(), "hi".to_string());
    chat.say(bo, What::Say { room, nick, text });
    forward(&mut chat, &mut out);
    assert!(chat.say_notices(Instant::now(), &mut out).is_none());
    assert_eq!(
        out.to(ann)[1..],
        ["*** guest-2 joined\n", "<guest-2> hi\n"],
        "{:?}",
        out.to(ann)
    );
}

#[test]
fn a_room_goes_when_its_last_member_leaves_and_the_limit_counts_the_lobby() {
    let (mut chat, mut out) = (chat(), Recorder::default());
    let ann = ConnRef { token: 0, id: 1 };
    let mut join = |chat: &mut Chat, who, room| {
        let joined = chat.join(who, room, &mut out);
        forward(chat, &mut out);
        joined
    };
    chat.enter(ann, &LocalBus, &mut Recorder::default());
    assert_eq!(join(&mut chat, ann, "#a"), Ok(()));
    assert_eq!(join(&mut chat, ann, "#b"), Ok(()));
    assert_eq!(chat.rooms.count(), 2, "#a went when ann left it");
    assert_eq!(join(&mut chat, ann, "#c"), Ok(()));
    chat.enter(
        ConnRef { token: 1, id: 2 },
        &LocalBus,
        &mut Recorder::default(),
    );
    let bo = ConnRef { token: 1, id: 2 };
    assert_eq!(join(&mut chat, bo, "#d"), Ok(()));
    assert_eq!(chat.rooms.count(), 3, "#lobby, #c, #d");
    assert_eq!(
        join(&mut chat, ann, "#e"),
        Err(Refused::TooManyRooms { max: 3 })
    );
    assert_eq!(
        join(&mut chat, ann, "#C"),
        Err(Refused::AlreadyThere("#c".into()))
    );
}
