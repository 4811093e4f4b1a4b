//! `backplane::event`: the backplane's wire format for events. Instances heard of get
//! numbers (this one is `HERE`, a forgotten one comes back as a new number), every kind of
//! event encodes and decodes back to itself, and what another program publishes is refused
//! when malformed or cleaned of control characters.

use pollchat::backplane::event::{Message, Origins};
use pollchat::bus::{Event, InstanceNews, Origin, Presence, What};

/// An event of instance `ab12`, as this instance (`me`) knows it.
fn event(what: What) -> Event {
    Event {
        origin: Origin::other(1),
        conn: 7,
        what,
    }
}

fn origins() -> Origins {
    let mut origins = Origins::new("me");
    assert_eq!(origins.id("ab12"), Origin::other(1));
    origins
}

/// Names get numbers in the order they are heard; this instance's is HERE; a forgotten
/// name comes back as a new number.
#[test]
fn origins_number_the_instances_heard_of() {
    let mut origins = Origins::new("me");
    assert_eq!(origins.id("me"), Origin::HERE);
    let (a, b) = (origins.id("aa"), origins.id("bb"));
    assert_ne!(a, b);
    assert_eq!(origins.id("aa"), a);
    origins.forget(a);
    let again = origins.id("aa");
    assert_ne!(again, a);
    assert_ne!(again, Origin::HERE);
    origins.forget(Origin::HERE);
    assert_eq!(origins.id("me"), Origin::HERE);
}

#[test]
fn every_kind_round_trips() {
    let s = |x: &str| x.to_string();
    for what in [
        What::Say {
            room: "#lobby".into(),
            nick: "al".into(),
            text: s("hi  there\tyou"),
        },
        What::Me {
            room: "#Rust".into(),
            nick: "al".into(),
            action: s("waves"),
        },
        What::Joined {
            room: s("#lobby"),
            nick: s("guest-1"),
        },
        What::Left {
            room: s("#x"),
            nick: s("al"),
            reason: s("quit: gone home"),
        },
        What::Moved {
            nick: s("al"),
            from: s("#lobby"),
            to: s("#ops"),
        },
        What::Renamed {
            room: s("#lobby"),
            old: s("a"),
            new: s("b"),
        },
        What::Msg {
            from: s("a"),
            to: s("b"),
            text: s("psst hi"),
        },
    ] {
        let e = Message::Chat(event(what));
        let mut origins = origins();
        assert_eq!(
            Message::decode(e.encode("ab12").as_bytes(), &mut origins),
            Ok(e.clone())
        );
    }
    let hello = InstanceNews::Hello {
        members: vec![
            Presence {
                nick: s("a"),
                room: s("#lobby"),
            },
            Presence {
                nick: s("b"),
                room: s("#ops"),
            },
        ],
    };
    for news in [
        hello,
        InstanceNews::Hello { members: vec![] },
        InstanceNews::Bye,
    ] {
        let m = Message::Instance(Origin::other(1), news);
        let mut origins = origins();
        assert_eq!(
            Message::decode(m.encode("ab12").as_bytes(), &mut origins),
            Ok(m.clone())
        );
    }
}

#[test]
fn foreign_messages_are_refused_or_cleaned() {
    for bad in [
        &b"hello"[..],
        b"pc2 ab12 7",
        b"pc1 ab12 7 BYE",
        b"pc2 a-b 7 BYE",
        b"pc2 ab12 x BYE",
        b"pc2 ab12 7 SAY #a bad<nick> hi",
        b"pc2 ab12 7 SAY lobby al hi",
        b"pc2 ab12 7 MOVE al #a b",
        b"pc2 ab12 7 HELLO al",
        b"pc2 ab12 7 FROB",
        b"pc2 ab12 7 MSG a",
        b"pc2 ab12 7 SAY #a \xff hi",
    ] {
        assert!(Message::decode(bad, &mut origins()).is_err(), "{bad:?}");
    }
    let Ok(Message::Chat(e)) =
        Message::decode(b"pc2 ab12 7 SAY #a al hi \x1b[31mred", &mut origins())
    else {
        panic!("not an event");
    };
    assert_eq!(
        e.what,
        What::Say {
            room: "#a".into(),
            nick: "al".into(),
            text: "hi [31mred".into()
        }
    );
}
