//! Rooms and history: `/join`, `/part`, `/list`, per-room chat and notices, the room limit,
//! and the lines a newcomer is replayed.

mod common;

use std::time::Duration;

use common::{Client, TestServer};

/// The lines `client` receives before the answer to `/who`, and that answer.
fn who(client: &mut Client) -> (Vec<String>, String) {
    client.send("/who");
    client.read_until(common::is_who_reply)
}

#[test]
fn every_client_starts_in_the_lobby() {
    let server = TestServer::start();
    let mut a = server.connect();
    assert_eq!(who(&mut a).1, format!("*** 1 user in #lobby: {}", a.nick));
}

/// `/join` moves a client: the room it left hears where it went, the room it came to hears
/// it joined, and the mover is told where it is now and with how many.
#[test]
fn join_moves_a_client_and_both_rooms_hear_of_it() {
    let server = TestServer::start();
    let mut c = server.clients(3);
    let (a, b) = (c[0].nick.clone(), c[1].nick.clone());
    c[0].send("/join #rust");
    c[0].expect("*** you are now in #rust (1 user)");
    c[1].expect(&format!("*** {a} left (went to #rust)"));
    c[2].expect(&format!("*** {a} left (went to #rust)"));
    // Names are compared ignoring case; the room keeps the spelling it was made with.
    c[1].send("/join #RUST");
    c[1].expect("*** you are now in #rust (2 users)");
    c[0].expect(&format!("*** {b} joined"));
    c[2].expect(&format!("*** {b} left (went to #rust)"));
    assert_eq!(who(&mut c[0]).1, format!("*** 2 users in #rust: {a}, {b}"));
    assert_eq!(
        who(&mut c[2]).1,
        format!("*** 1 user in #lobby: {}", c[2].nick)
    );
}

/// Chat lines, `/me` and renames reach the members of the room only; `/msg` reaches a nick
/// in any room.
#[test]
fn lines_stay_in_their_room_and_msg_crosses_rooms() {
    let server = TestServer::start();
    let mut c = server.clients(3);
    let (a, b, lobby) = (c[0].nick.clone(), c[1].nick.clone(), c[2].nick.clone());
    c[0].join("#rust");
    c[1].join("#rust");
    c[0].expect(&format!("*** {b} joined"));
    c[2].sync();
    c[0].send("hi rust");
    c[0].send("/me waves");
    c[0].send("/nick ann");
    c[1].expect(&format!("<{a}> hi rust"));
    c[1].expect(&format!("* {a} waves"));
    c[1].expect(&format!("*** {a} is now known as ann"));
    c[0].expect(&format!("*** {a} is now known as ann"));
    c[2].send("hi lobby");
    assert!(
        c[2].sync().is_empty(),
        "the lobby heard nothing of #rust and nobody echoes its own line"
    );
    assert!(c[0].sync().is_empty(), "#rust heard nothing of the lobby");
    c[2].send(&format!("/msg {b} psst"));
    c[1].expect(&format!("*{lobby}* psst"));
    c[1].send(&format!("/msg {lobby} back"));
    c[2].expect(&format!("*{b}* back"));
}

#[test]
fn part_goes_back_to_the_lobby_and_joining_your_own_room_changes_nothing() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let a = c[0].nick.clone();
    c[0].send("/part");
    c[0].expect("*** you are already in #lobby");
    c[0].join("#x");
    c[1].expect(&format!("*** {a} left (went to #x)"));
    c[0].send("/join #X");
    c[0].expect("*** you are already in #x");
    c[0].send("/part");
    c[0].expect("*** you are now in #lobby (2 users)");
    c[1].expect(&format!("*** {a} joined"));
    assert!(c[1].sync().is_empty(), "the no-op moves said nothing");
}

#[test]
fn bad_room_names_are_refused_and_the_client_stays() {
    let server = TestServer::start();
    let mut a = server.connect();
    let long = format!("#{}", "x".repeat(33));
    for bad in ["rust", "#", "#two words", "#é", long.as_str()] {
        a.send(&format!("/join {bad}"));
        a.expect(&format!(
            "*** invalid room name \"{bad}\": use # and 1-32 of the characters A-Z a-z 0-9 _ -"
        ));
    }
    a.send("/join");
    a.expect("*** usage: /join #ROOM");
    assert_eq!(who(&mut a).1, format!("*** 1 user in #lobby: {}", a.nick));
}

/// `--max-rooms` counts `#lobby`; one room more is refused with a clear line and the client
/// stays where it was; a room that empties goes, making room for another.
#[test]
fn the_room_limit_refuses_one_more_room_until_one_empties() {
    let server = TestServer::with(|c| c.max_rooms = 2);
    let mut c = server.clients(2);
    c[0].join("#a");
    c[1].sync();
    c[1].send("/join #b");
    c[1].expect("*** cannot create #b: the server already has its maximum of 2 rooms");
    c[1].join("#A");
    c[0].line();
    c[0].send("/part");
    c[0].expect("*** you are now in #lobby (1 user)");
    c[1].line();
    c[1].send("/part");
    c[1].expect("*** you are now in #lobby (2 users)");
    c[1].join("#b");
}

#[test]
fn list_counts_the_members_of_every_room() {
    let server = TestServer::start();
    let mut c = server.clients(5);
    for (i, room) in ["#rust", "#rust", "#ops"].iter().enumerate() {
        c[i].join(room);
    }
    c[4].sync();
    c[4].send("/list");
    let (_, list) = c[4].read_until(|l| l.contains(" rooms: "));
    assert_eq!(list, "*** 3 rooms: #lobby (2), #ops (1), #rust (2)");
}

/// The notices of a room are its own: a join storm in the lobby does not reach `#quiet`.
#[test]
fn joins_and_leaves_are_heard_in_their_room_only() {
    let server = TestServer::start();
    let mut quiet = server.connect();
    quiet.join("#quiet");
    let mut lobby = server.connect();
    let newcomers: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    for newcomer in &newcomers {
        lobby.expect(&format!("*** {} joined", newcomer.nick));
    }
    assert!(quiet.sync().is_empty(), "#quiet heard of the lobby's joins");
    drop(newcomers);
    for _ in 0..3 {
        lobby.read_until(|l| l.contains(" left ("));
    }
    assert!(
        quiet.sync().is_empty(),
        "#quiet heard of the lobby's leaves"
    );
}

/// A newcomer gets the room's last `--history` chat lines, oldest first, between a header
/// and a footer, right after the welcome (for `#lobby`) or the move (for a `/join`), and
/// only then new lines. Notices and `/msg` are not history.
#[test]
fn a_newcomer_gets_the_last_lines_oldest_first_then_new_ones() {
    let server = TestServer::with(|c| c.history = 3);
    let mut c = server.clients(2);
    let a = c[0].nick.clone();
    for n in 1..=5 {
        c[0].send(&format!("line {n}"));
    }
    c[0].send("/me stretches");
    let to = c[1].nick.clone();
    c[0].send(&format!("/msg {to} not history"));
    c[1].read_until(|l| l.ends_with("not history"));
    let mut late = Client::raw(server.addr);
    late.read_welcome();
    late.expect("*** last 3 lines in #lobby:");
    late.expect(&format!("<{a}> line 4"));
    late.expect(&format!("<{a}> line 5"));
    late.expect(&format!("* {a} stretches"));
    late.expect("*** end of history");
    c[0].send("live");
    late.expect(&format!("<{a}> live"));
}

/// Each room has its own history, replayed on `/join`; the room's history goes with the
/// room once nobody is in it; `--history 0` keeps none and replays nothing, not even the
/// header.
#[test]
fn each_room_replays_its_own_history_and_forgets_it_when_it_empties() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let a = c[0].nick.clone();
    c[0].join("#rust");
    c[0].send("rust 1");
    c[0].send("rust 2");
    c[1].sync();
    c[1].send("/join #rust");
    c[1].expect("*** you are now in #rust (2 users)");
    c[1].expect("*** last 2 lines in #rust:");
    c[1].expect(&format!("<{a}> rust 1"));
    c[1].expect(&format!("<{a}> rust 2"));
    c[1].expect("*** end of history");
    c[0].send("rust 3");
    c[1].expect(&format!("<{a}> rust 3"));
    c[0].join("#lobby");
    c[1].join("#lobby");
    c[1].send("/join #rust");
    c[1].expect("*** you are now in #rust (1 user)");
    assert!(
        c[1].sync().is_empty(),
        "#rust was made anew, with no history"
    );

    let server = TestServer::with(|c| c.history = 0);
    let mut a = server.connect();
    a.send("said");
    a.sync();
    let mut b = server.connect();
    assert!(b.sync().is_empty(), "no history, no header");
}

/// A replay is output like any other: a client that joins a room with a long history and
/// does not read is judged by `--max-output` and cut off after the grace, while one that
/// reads gets every line. About 7 MB of history: what the kernel's socket buffers take (up
/// to `tcp_wmem` max, 4 MiB) leaves more than `--max-output` (1 MiB) in the server's queue,
/// and the whole replay stays under the hard limit (8 MiB), which a reader never reaches.
#[test]
fn a_replay_counts_against_max_output_like_any_other_output() {
    const LINES: usize = 1000;
    let server = TestServer::with(|c| {
        c.history = LINES;
        c.max_line = 8192;
        c.max_output = 1024 * 1024;
        c.output_grace = Duration::from_millis(200);
    });
    let mut talker = server.connect();
    talker.join("#big");
    let pad = "p".repeat(7000);
    for n in 0..LINES {
        talker.send(&format!("{n:04} {pad}"));
    }
    talker.sync();
    let mut stalled = Client::with_small_receive_buffer(server.addr);
    let stalled_nick = stalled.nick.clone();
    stalled.send("/join #big");
    let (_, gone) = talker.read_until(|l| l.starts_with(&format!("*** {stalled_nick} left")));
    assert_eq!(
        gone,
        format!("*** {stalled_nick} left (too slow: over 1048576 bytes of output waiting)")
    );
    let mut reader = server.connect();
    let reader_nick = reader.nick.clone();
    reader.join("#big");
    reader.expect(&format!("*** last {LINES} lines in #big:"));
    for n in 0..LINES {
        assert_eq!(reader.line(), format!("<{}> {n:04} {pad}", talker.nick));
    }
    reader.expect("*** end of history");
    talker.read_until(|l| l == format!("*** {reader_nick} joined"));
    // It read everything and is still here: never over the limit for a whole grace.
    assert_eq!(
        who(&mut reader).1,
        format!("*** 2 users in #big: {}, {reader_nick}", talker.nick)
    );
}
