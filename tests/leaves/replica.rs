//! The copy of the other instances' nicks and rooms (`pollchat::backplane::replica`): events
//! and hellos keep it, silence expires it, a BYE forgets its instance at once.

use std::time::{Duration, Instant};

use pollchat::backplane::event::Message;
use pollchat::backplane::replica::Replica;
use pollchat::bus::{Event, InstanceNews, Origin, Presence, What};

/// Instance `origin` ("a" is the first other instance, "b" the second).
fn origin(name: &str) -> Origin {
    Origin::other(if name == "a" { 1 } else { 2 })
}

/// An event of instance `name`.
fn from(name: &str, what: What) -> Message {
    Message::Chat(Event {
        origin: origin(name),
        conn: 1,
        what,
    })
}

/// What instance `name` says of itself.
fn said(name: &str, news: InstanceNews) -> Message {
    Message::Instance(origin(name), news)
}

fn presence(nick: &str, room: &str) -> Presence {
    Presence {
        nick: nick.into(),
        room: room.into(),
    }
}

#[test]
fn events_and_hellos_keep_the_copy_and_silence_expires_it() {
    let t0 = Instant::now();
    let mut r = Replica::default();
    let (lobby, ops) = ("#lobby".to_string(), "#Ops".to_string());
    let joined = What::Joined {
        room: lobby.clone(),
        nick: "Al".into(),
    };
    assert!(r.apply(&from("a", joined), t0));
    let renamed = What::Renamed {
        room: lobby.clone(),
        old: "Al".into(),
        new: "Bo".into(),
    };
    assert!(!r.apply(&from("a", renamed), t0));
    assert!(r.has("bo") && !r.has("al"));
    let hello = InstanceNews::Hello {
        members: vec![presence("Cy", "#lobby"), presence("Di", "#ops")],
    };
    assert!(r.apply(&said("b", hello), t0 + Duration::from_secs(2)));
    let mut all: Vec<&str> = r.nicks_in("#LOBBY").collect();
    all.sort_unstable();
    assert_eq!(all, ["Bo", "Cy"]);
    assert!(r.in_room("#ops"));
    let moved = What::Moved {
        nick: "Bo".into(),
        from: lobby,
        to: ops,
    };
    r.apply(&from("a", moved), t0);
    let mut rooms: Vec<(&str, usize)> = r.rooms().collect();
    rooms.sort_unstable();
    assert_eq!(
        rooms,
        [("#lobby", 1), ("#ops", 2)],
        "spelled as first heard"
    );
    r.expire(t0 + Duration::from_millis(2500), Duration::from_secs(2));
    assert!(!r.has("bo") && r.has("cy"));
    assert_eq!(r.nicks_in("#ops").collect::<Vec<_>>(), ["Di"]);
    r.apply(&said("b", InstanceNews::Bye), t0);
    assert_eq!(r.rooms().count(), 0, "nobody is anywhere");
}
