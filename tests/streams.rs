//! The backplane's Redis Stream, with a real `redis-server`: an instance whose links are cut
//! resumes from the last entry it delivered; lines whose `XADD` Redis never confirmed are
//! added again, once (not if they landed and only the reply was lost); a stream trimmed past
//! the last entry read is told as a gap; a new instance loads the rooms' history from the stream; a room nobody on an instance
//! is in keeps its history there through that instance's outage; with `--state-dir`, the
//! history loaded from the stream is in the state file at once. Each test says loudly that it
//! skipped if `redis-server` is missing.

#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{DEADLINE, RedisServer, TestServer};
use pollchat::backplane::resp::{self, Value};
use pollchat::config::HttpSettings;

/// An in-process instance on `redis`'s `channel`, with `--stats-udp` and `/metrics` on, once
/// its backplane is up.
fn instance(
    redis: &RedisServer,
    channel: &str,
    tweak: impl FnOnce(&mut pollchat::Config),
) -> TestServer {
    redis.instance(channel, |c| {
        c.http = Some(HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))));
        c.quiet_joins = true;
        tweak(c);
    })
}

/// One command to Redis on a connection of its own, sent now; the connection, to read the
/// reply from (or not: `DEBUG SLEEP` answers only when Redis wakes).
fn send(redis: &RedisServer, parts: &[&str]) -> TcpStream {
    let mut socket = TcpStream::connect(redis.addr).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut command = Vec::new();
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    resp::command(&mut command, &parts);
    socket.write_all(&command).unwrap();
    socket
}

/// One command to Redis and its reply: a string's text, or anything else as RESP-like text.
fn ask(redis: &RedisServer, parts: &[&str]) -> String {
    let mut socket = send(redis, parts);
    let (mut input, mut buf) = (Vec::new(), [0u8; 65536]);
    loop {
        if let Some((value, _)) = resp::decode(&input).unwrap() {
            return match value {
                Value::Simple(b) | Value::Bulk(Some(b)) => String::from_utf8_lossy(b).into(),
                other => other.describe(),
            };
        }
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "Redis closed the connection");
        input.extend_from_slice(&buf[..n]);
    }
}

/// The instance's counter `field` from `--stats-udp`'s backplane object.
fn counter(server: &TestServer, field: &str) -> u64 {
    let stats = server.ask_stats(b"stats");
    let needle = format!("\"{field}\":");
    let at = stats.find(&needle).unwrap_or_else(|| panic!("{stats}")) + needle.len();
    let digits: String = stats[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Closes both of an instance's connections to Redis (`CLIENT KILL`), found by their names,
/// `pollchat-INSTANCE-ROLE`: `guest` is a guest nick of that instance, `guest-TAG-N`, TAG
/// being the start of its id.
fn kill_links(redis: &RedisServer, guest: &str) {
    let tag = guest.split('-').nth(1).unwrap();
    let list = ask(redis, &["CLIENT", "LIST"]);
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(&format!(" name=pollchat-{tag}")))
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id="))
        .collect();
    assert_eq!(ids.len(), 2, "the instance's two connections in:\n{list}");
    for id in ids {
        // Once one is closed, the instance closes the other itself: it may be gone.
        ask(redis, &["CLIENT", "KILL", "ID", id]);
    }
}

/// How an instance's links to Redis are cut in [`resumes_after`].
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// `CLIENT KILL` of its two connections: it reconnects after its first backoff.
    Kill,
    /// `CLIENT PAUSE`: every client's commands wait; the instance with the short nick TTL
    /// takes the silence for a failure and reconnects, the other only waits.
    Pause,
    /// `DEBUG SLEEP`: the whole of Redis stops; the same.
    Sleep,
}

/// A client on A says lines at a steady pace while B's links are cut and come back: a client
/// on B receives every one of them, once, in order, and B counts some as resumed (so the
/// cut really fell in the middle of them).
fn resumes_after(cut: Cut) {
    const LINES: usize = 1200;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "resume", |_| {});
    let b = instance(&redis, "resume", |c| {
        // B notices a silent Redis within a second; A (15 s) goes on waiting for it.
        c.backplane.as_mut().unwrap().nick_ttl = Duration::from_millis(900);
    });
    let (mut a1, mut b1) = (a.connect(), b.connect());
    let said = format!("<{}> ", a1.nick);
    a1.send("warm");
    b1.expect(&format!("{said}warm"));
    let sender = thread::spawn(move || {
        for n in 0..LINES {
            a1.send(&format!("n{n}"));
            // Pacing the load (about 3 s of it), not synchronisation: the cut falls inside.
            thread::sleep(Duration::from_millis(2));
        }
        a1
    });
    b1.read_until(|l| l == format!("{said}n100"));
    let mut received: Vec<String> = (0..=100).map(|n| format!("n{n}")).collect();
    let _sleeping = match cut {
        Cut::Kill => {
            kill_links(&redis, &b1.nick);
            None
        }
        Cut::Pause => {
            assert_eq!(ask(&redis, &["CLIENT", "PAUSE", "2500", "ALL"]), "OK");
            None
        }
        Cut::Sleep => Some(send(&redis, &["DEBUG", "SLEEP", "2.5"])),
    };
    // Up to the last line, so that a line missed shows as such rather than as a wait.
    let last = format!("{said}n{}", LINES - 1);
    let (seen, _) = b1.read_until(|l| l == last);
    let (mut told, mut mine) = (Vec::new(), seen.into_iter().chain([last]));
    for line in &mut mine {
        match line.strip_prefix(&said) {
            Some(text) => received.push(text.to_string()),
            None => told.push(line),
        }
    }
    let expected: Vec<String> = (0..LINES).map(|n| format!("n{n}")).collect();
    assert!(received == expected, "{cut:?}: B received {received:?}");
    assert!(
        told.iter().any(|l| l.contains("backplane unavailable")),
        "{cut:?}: B's links were never cut: {told:?}"
    );
    assert!(counter(&b, "resumed") > 0, "{cut:?}: nothing resumed");
    assert_eq!(counter(&b, "gaps"), 0);
    // Nothing more (a line twice, late): B has handled all A said once `/who` is answered.
    sender.join().unwrap();
    let rest = b1.sync();
    assert!(rest.iter().all(|l| !l.starts_with(&said)), "{rest:?}");
    metrics_pass_promtool(&b);
}

/// B's `/metrics` counts what was resumed, and passes `promtool check metrics` if it is there.
fn metrics_pass_promtool(server: &TestServer) {
    let body = common::web::get(server.http_addr.unwrap(), "/metrics").body;
    assert!(
        body.contains("\npollchat_backplane_resumed_total "),
        "{body}"
    );
    assert!(
        body.contains("\npollchat_backplane_gaps_total 0\n"),
        "{body}"
    );
    if !common::peer_present(Command::new("promtool").arg("--version"), "promtool") {
        return;
    }
    let checked = common::web::promtool(&body);
    assert!(checked.status.success(), "promtool: {checked:?}\n{body}");
}

/// Links closed by Redis (`CLIENT KILL`): the instance reconnects and reads on from the last
/// entry it delivered, so nothing said meanwhile on another instance is lost or doubled.
#[test]
fn streams_killed_links_resume_every_line_once_in_order() {
    resumes_after(Cut::Kill);
}

/// Redis pausing every client (`CLIENT PAUSE`) for longer than the nick TTL: the same.
#[test]
fn streams_paused_redis_resumes_every_line_once_in_order() {
    resumes_after(Cut::Pause);
}

/// Redis asleep (`DEBUG SLEEP`) for longer than the nick TTL: the same.
#[test]
fn streams_sleeping_redis_resumes_every_line_once_in_order() {
    resumes_after(Cut::Sleep);
}

/// A stream trimmed past the last entry an instance read (a tiny `--backplane-stream-len`, and
/// many lines while its links were cut): its clients are told some lines were missed, once,
/// and it goes on with what the stream still holds.
#[test]
fn streams_trimmed_past_the_last_entry_read_tell_of_the_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let tiny = |c: &mut pollchat::Config| c.backplane.as_mut().unwrap().stream_len = 10;
    let a = instance(&redis, "gap", tiny);
    let b = instance(&redis, "gap", tiny);
    let (mut a1, mut b1) = (a.connect(), b.connect());
    let said = format!("<{}> ", a1.nick);
    a1.send("before");
    b1.expect(&format!("{said}before"));
    kill_links(&redis, &b1.nick);
    // Far more than the stream keeps, while B is away (it reconnects after 100 ms at least).
    let burst: String = (0..300).map(|n| format!("n{n}\n")).collect();
    a1.send_bytes(burst.as_bytes());
    a1.send("after");
    let (seen, _) = b1.read_until(|l| l == format!("{said}after"));
    assert_eq!(
        seen.iter()
            .filter(|l| *l == "*** some lines were missed")
            .count(),
        1,
        "{seen:?}"
    );
    assert!(!seen.contains(&format!("{said}n0")), "{seen:?}");
    assert_eq!(counter(&b, "gaps"), 1);
}

/// A new instance loads the rooms' history (and topics) from the stream: a client joining a
/// room there gets the lines said on another instance before it started, once each, and
/// then what is said from now on, once.
#[test]
fn streams_a_new_instance_loads_history_from_the_stream() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "history", |_| {});
    let mut ann = a.connect();
    ann.join("#far");
    ann.send("/topic far away");
    ann.read_until(|l| l.contains("set the topic"));
    for n in 1..=3 {
        ann.send(&format!("far {n}"));
    }
    ann.send("/me waves");
    ann.sync();
    let b = instance(&redis, "history", |_| {});
    let mut dee = b.connect();
    dee.join("#far");
    let said = format!("<{}> ", ann.nick);
    let mut expected = vec![
        "*** topic for #far: far away".to_string(),
        "*** last 4 lines in #far:".to_string(),
    ];
    expected.extend((1..=3).map(|n| format!("{said}far {n}")));
    expected.push(format!("* {} waves", ann.nick));
    expected.push("*** end of history".to_string());
    assert_eq!(dee.sync(), expected);
    ann.send("now");
    dee.expect(&format!("{said}now"));
    assert!(dee.sync().is_empty());
}

/// With `--state-dir` too, the stream is the shared truth: a restarted instance's rooms take
/// the stream's lines over what its file kept (the lines said elsewhere while it was down
/// included), and a line in both is shown once.
#[test]
fn streams_history_from_the_stream_wins_over_the_state_dir() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let state = common::TempDir::new();
    let keep = |c: &mut pollchat::Config| c.state_dir = Some(state.path.clone());
    let a = instance(&redis, "truth", keep);
    let mut ann = a.connect();
    ann.join("#far");
    ann.send("one");
    ann.send("two");
    ann.sync();
    a.stop().unwrap();

    let w = instance(&redis, "truth", |_| {});
    let mut wes = w.connect();
    wes.join("#far");
    wes.send("three");
    wes.sync();
    let a = instance(&redis, "truth", keep);
    let mut dee = a.connect();
    dee.join("#far");
    let (ann, wes) = (&ann.nick, &wes.nick);
    assert_eq!(
        dee.sync(),
        [
            "*** last 3 lines in #far:".to_string(),
            format!("<{ann}> one"),
            format!("<{ann}> two"),
            format!("<{wes}> three"),
            "*** end of history".to_string(),
        ]
    );
}

/// A stream made anew while an instance was cut off (as when Redis restarts without its data)
/// lost nothing to trimming: no gap is told, and the chat goes on.
#[test]
fn streams_a_stream_made_anew_is_no_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "anew", |_| {});
    let b = instance(&redis, "anew", |_| {});
    let (mut a1, mut b1) = (a.connect(), b.connect());
    let said = format!("<{}> ", a1.nick);
    a1.send("before");
    b1.expect(&format!("{said}before"));
    kill_links(&redis, &b1.nick);
    // Gone and made again, before B is back (it reconnects after 100 ms at least).
    assert_eq!(ask(&redis, &["DEL", "anew:stream"]), ":1");
    ask(&redis, &["XADD", "anew:stream", "*", "e", "not an event"]);
    a1.send("after");
    let (seen, _) = b1.read_until(|l| l == format!("{said}after"));
    assert!(!seen.iter().any(|l| l.contains("missed")), "{seen:?}");
    assert_eq!(counter(&b, "gaps"), 0);
}

/// An entry another program added to the stream without pollchat's field is read past once,
/// not asked for again and again while it is the newest.
#[test]
fn streams_an_entry_that_is_not_an_event_is_read_past() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "stranger", |_| {});
    let (mut a1, mut a2) = (a.connect(), a.connect());
    a1.send("before");
    a2.expect(&format!("<{}> before", a1.nick));
    assert_eq!(ask(&redis, &["CONFIG", "RESETSTAT"]), "OK");
    ask(&redis, &["XADD", "stranger:stream", "*", "other", "field"]);
    // Not synchronisation: the time in which a reader stuck on it would ask thousands of
    // times, where one that read past it waits in one XREAD.
    thread::sleep(Duration::from_millis(300));
    let stats = ask(&redis, &["INFO", "commandstats"]);
    let xreads: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap());
    assert!(xreads < 10, "{xreads} XREADs:\n{stats}");
    a1.send("after");
    a2.expect(&format!("<{}> after", a1.nick));
}

/// What a client is shown on joining `room`: its topic, if any, and its history block.
fn history_shown(client: &mut common::Client, room: &str) -> Vec<String> {
    client.join(room);
    client.sync()
}

/// Issue 23's outage: B has nobody in `#far`, where A's client talks; B's links are cut while
/// A's client says more, and come back. A newcomer to `#far` on B is shown exactly the last
/// `--history` lines, in order, once, as on an instance that loads them from the stream: B
/// kept the room through the outage, and the resume filled it in.
#[test]
fn streams_a_room_nobody_here_is_in_keeps_its_history_across_an_outage() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let five = |c: &mut pollchat::Config| c.history = 5;
    let a = instance(&redis, "outage", five);
    let b = instance(&redis, "outage", five);
    let (mut ann, mut amy, mut bob) = (a.connect(), a.connect(), b.connect());
    ann.join("#far");
    let (far, marked) = (
        format!("<{}> far ", ann.nick),
        format!("<{}> mark ", amy.nick),
    );
    // Once B has shown `#lobby` amy's mark, said after ann's lines were added, it has kept
    // them in `#far`.
    let mut said_then_marked = |from: usize, to: usize, bob: &mut common::Client| {
        for n in from..=to {
            ann.send(&format!("far {n}"));
        }
        ann.sync();
        amy.send(&format!("mark {to}"));
        bob.read_until(|l| l == format!("{marked}{to}")).0
    };
    said_then_marked(1, 2, &mut bob);
    kill_links(&redis, &bob.nick);
    bob.read_until(|l| l.contains("backplane unavailable"));
    // Said while B is away (it reconnects after 100 ms at least), and read by B on resuming.
    let mut seen = said_then_marked(3, 7, &mut bob);
    if !seen.iter().any(|l| l.contains("backplane back")) {
        seen = bob.read_until(|l| l.contains("backplane back")).0;
    }
    assert!(seen.iter().all(|l| !l.contains(&far)), "{seen:?}");
    assert!(counter(&b, "resumed") > 0, "nothing resumed");
    let mut expected = vec!["*** last 5 lines in #far:".to_string()];
    expected.extend((3..=7).map(|n| format!("{far}{n}")));
    expected.push("*** end of history".to_string());
    let mut dee = b.connect();
    assert_eq!(history_shown(&mut dee, "#far"), expected, "on B");
    // The stream's own last lines, as a new instance loads them: the same.
    let c = instance(&redis, "outage", five);
    assert_eq!(history_shown(&mut c.connect(), "#far"), expected, "on C");
    ann.send("far 8");
    dee.expect(&format!("{far}8"));
    assert!(dee.sync().is_empty());
}

/// With `--state-dir`, history loaded from the stream is recorded in the state file at once:
/// an instance killed right after loading it, and started again without the backplane, is
/// shown the stream's lines, not the older ones its file had before.
#[test]
fn streams_history_from_the_stream_is_recorded_in_the_state_dir_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let state = common::TempDir::new();
    let dir = state.path.to_str().unwrap();
    let url = redis.url("recorded");
    let base = ["--state-dir", dir, "--quiet-joins", "--rate", "0"];
    let b = instance(&redis, "recorded", |c| {
        c.state_dir = Some(state.path.clone())
    });
    let (mut bea, mut bex) = (b.connect(), b.connect());
    bea.join("#far");
    bex.join("#far");
    for line in ["one", "two"] {
        bea.send(line);
    }
    // Back from the stream, so kept in B's history (and file).
    bex.read_until(|l| l.ends_with("> two"));
    b.stop().unwrap();
    // Said while B is down: the stream holds them, B's file does not.
    let w = instance(&redis, "recorded", |_| {});
    let (mut wes, mut wil) = (w.connect(), w.connect());
    wes.join("#far");
    wil.join("#far");
    for line in ["three", "four"] {
        wes.send(line);
    }
    wil.read_until(|l| l.ends_with("> four"));
    let (bea, wes) = (&bea.nick, &wes.nick);
    let from_stream = [
        "*** last 4 lines in #far:".to_string(),
        format!("<{bea}> one"),
        format!("<{bea}> two"),
        format!("<{wes}> three"),
        format!("<{wes}> four"),
        "*** end of history".to_string(),
    ];

    let mut with_backplane = base.to_vec();
    with_backplane.extend(["--backplane", &url]);
    let mut b = common::ServerProcess::start(&with_backplane);
    b.wait_for_log("backplane up");
    // The batch that loaded the stream has ended once a later one answers.
    common::Client::connect(b.addr).sync();
    b.signal("KILL");
    b.wait_exit();
    let b = common::ServerProcess::start(&base);
    let mut dee = common::Client::connect(b.addr);
    assert_eq!(history_shown(&mut dee, "#far"), from_stream);
}

/// A stream that holds only a room's topic (its lines trimmed away) gives the room that topic
/// and leaves the lines `--state-dir` restored, as it does when it holds nothing of the room.
#[test]
fn streams_a_topic_alone_in_the_stream_keeps_the_state_dirs_lines() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let state = common::TempDir::new();
    let keep = |c: &mut pollchat::Config| c.state_dir = Some(state.path.clone());
    let b = instance(&redis, "topiconly", keep);
    let (mut bea, mut bex) = (b.connect(), b.connect());
    bea.join("#t");
    bex.join("#t");
    for line in ["one", "two"] {
        bea.send(line);
    }
    bex.read_until(|l| l.ends_with("> two"));
    b.stop().unwrap();
    // All the stream keeps of `#t` now: a topic, set on an instance long gone.
    assert_eq!(ask(&redis, &["DEL", "topiconly:stream"]), ":1");
    let topic = "pc2 gone 1 TOPIC #t zed trimmed but kept";
    ask(&redis, &["XADD", "topiconly:stream", "*", "e", topic]);
    // Someone in `#t` elsewhere, so that B keeps the room it restores.
    let w = instance(&redis, "topiconly", |_| {});
    let mut wes = w.connect();
    wes.join("#t");
    wes.sync();
    let b = instance(&redis, "topiconly", keep);
    let bea = &bea.nick;
    assert_eq!(
        history_shown(&mut b.connect(), "#t"),
        [
            "*** topic for #t: trimmed but kept".to_string(),
            "*** last 2 lines in #t:".to_string(),
            format!("<{bea}> one"),
            format!("<{bea}> two"),
            "*** end of history".to_string(),
        ]
    );
}

/// The same through a hang of Redis longer than the nick TTL (SIGSTOP, both instances local
/// only): B does not drop A from its copy of who is where for a silence it could not hear
/// through, so `#far`, only A's client's room, keeps its history on B.
#[test]
fn streams_a_room_nobody_here_is_in_keeps_its_history_through_a_hang() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let short = |c: &mut pollchat::Config| {
        c.history = 5;
        c.backplane.as_mut().unwrap().nick_ttl = Duration::from_millis(900);
    };
    let a = instance(&redis, "hang", short);
    let b = instance(&redis, "hang", short);
    let (mut ann, mut amy, mut bob) = (a.connect(), a.connect(), b.connect());
    ann.join("#far");
    let far = format!("<{}> far ", ann.nick);
    for n in 1..=3 {
        ann.send(&format!("far {n}"));
    }
    ann.sync();
    amy.send("mark");
    bob.read_until(|l| l == format!("<{}> mark", amy.nick));
    redis.signal("STOP");
    bob.read_until(|l| l.contains("backplane unavailable"));
    // Not synchronisation: the hang must outlast B's nick TTL (900 ms) to be what is tested.
    thread::sleep(Duration::from_millis(1000));
    redis.signal("CONT");
    bob.read_until(|l| l.contains("backplane back"));
    let mut expected = vec!["*** last 3 lines in #far:".to_string()];
    expected.extend((1..=3).map(|n| format!("{far}{n}")));
    expected.push("*** end of history".to_string());
    assert_eq!(history_shown(&mut b.connect(), "#far"), expected);
}

/// The lines `client` receives from `sender` (`<nick> `) up to and with `last`, and the rest.
fn lines_from(client: &mut common::Client, sender: &str, last: &str) -> (Vec<String>, Vec<String>) {
    let said = format!("<{sender}> ");
    let last = format!("{said}{last}");
    let (seen, _) = client.read_until(|l| l == last);
    let (mut from, mut other) = (Vec::new(), Vec::new());
    for line in seen.into_iter().chain([last]) {
        match line.strip_prefix(&said) {
            Some(text) => from.push(text.to_string()),
            None => other.push(line),
        }
    }
    (from, other)
}

/// Waits until Redis holds a write command of the instance of guest nick `guest` on its
/// commands connection (`CLIENT PAUSE ... WRITE` postpones it: `flags` has `b`).
fn wait_held_write(redis: &RedisServer, guest: &str) {
    let tag = guest.split('-').nth(1).unwrap();
    let name = format!(" name=pollchat-{tag}");
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let list = ask(redis, &["CLIENT", "LIST"]);
        let mine = |l: &&str| l.contains(&name) && l.contains("-commands ");
        let line = list.lines().find(mine).unwrap_or_default();
        let flags = line.split(' ').find_map(|f| f.strip_prefix("flags="));
        let cmd = line.split(' ').find_map(|f| f.strip_prefix("cmd="));
        if flags.is_some_and(|f| f.contains('b')) && matches!(cmd, Some("xadd" | "eval")) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no write held:\n{list}"
        );
        // Polling Redis for a state it shows, under a deadline.
        thread::sleep(Duration::from_millis(10));
    }
}

/// An `XADD` that never reached the stream (Redis held it under `CLIENT PAUSE WRITE`, and
/// dropped it with the connection, `CLIENT KILL`ed): once the links are back, the lines are
/// added again, and every client, on the other instance and on the sender's own, gets each
/// once, in the order said, before what the sender says next.
#[test]
fn streams_an_xadd_lost_with_the_link_is_sent_again_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "resend", |_| {});
    let b = instance(&redis, "resend", |_| {});
    let (mut a1, mut a2, mut b1) = (a.connect(), a.connect(), b.connect());
    a1.send("warm");
    b1.expect(&format!("<{}> warm", a1.nick));
    a2.expect(&format!("<{}> warm", a1.nick));
    assert_eq!(ask(&redis, &["CLIENT", "PAUSE", "20000", "WRITE"]), "OK");
    a1.send("lost1");
    a1.send("lost2");
    wait_held_write(&redis, &a1.nick);
    // Between the two sends above and the kill, both lines are in A's buffer, in Redis's
    // held command, or in its query buffer behind it: all dropped with the connection.
    kill_links(&redis, &a1.nick);
    b1.send("meanwhile");
    assert_eq!(ask(&redis, &["CLIENT", "UNPAUSE"]), "OK");
    a1.read_until(|l| l == "*** backplane back, chat is shared again");
    a1.send("after");
    let (meanwhile, b_nick) = (format!("<{}> meanwhile", b1.nick), b1.nick.clone());
    for client in [&mut b1, &mut a2] {
        let (from, other) = lines_from(client, &a1.nick, "after");
        assert_eq!(from, ["lost1", "lost2", "after"], "{}", client.nick);
        // Nothing more (a line twice, late), and B's line once (on A: a sender is not
        // sent its own line).
        let rest = client.sync();
        assert!(
            rest.iter()
                .all(|l| !l.starts_with(&format!("<{}> ", a1.nick))),
            "{rest:?}"
        );
        let all: Vec<_> = other
            .iter()
            .chain(&rest)
            .filter(|l| **l == meanwhile)
            .collect();
        let once = usize::from(client.nick != b_nick);
        assert_eq!(all.len(), once, "{other:?} {rest:?}");
    }
    assert_eq!(counter(&a, "resent"), 2);
    let body = common::web::get(a.http_addr.unwrap(), "/metrics").body;
    assert!(
        body.contains("\npollchat_backplane_resent_total 2\n"),
        "{body}"
    );
}

/// The stream's entries, oldest first: id and event.
fn entries(redis: &RedisServer, key: &str) -> Vec<(String, String)> {
    let mut socket = send(redis, &["XRANGE", key, "-", "+"]);
    let (mut input, mut buf) = (Vec::new(), [0u8; 65536]);
    let value = loop {
        if let Some((value, _)) = resp::decode(&input).unwrap() {
            break value;
        }
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "Redis closed the connection");
        input.extend_from_slice(&buf[..n]);
    };
    let text = |v: &Value<'_>| String::from_utf8_lossy(v.bytes().unwrap()).into_owned();
    let Value::Array(Some(items)) = value else {
        panic!("{}", value.describe())
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(Some(parts)) => match parts.as_slice() {
                [id, Value::Array(Some(fields))] => (text(id), text(&fields[1])),
                _ => panic!("{}", item.describe()),
            },
            _ => panic!("{}", item.describe()),
        })
        .collect()
}

/// An `XADD` that Redis applied after the instance had given up on the connection (Redis
/// asleep, `DEBUG SLEEP`, longer than the instance's nick TTL): its reply is lost, but the
/// lines come back through the resumed read, so they are not added again: each is in the
/// stream once and reaches every client once, in order.
#[test]
fn streams_an_xadd_whose_reply_was_lost_is_not_sent_twice() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "landed", |c| {
        // A takes Redis's silence for a failure within a second and closes its links.
        c.backplane.as_mut().unwrap().nick_ttl = Duration::from_millis(900);
    });
    let b = instance(&redis, "landed", |_| {});
    let (mut a1, mut a2, mut b1) = (a.connect(), a.connect(), b.connect());
    a1.send("warm");
    b1.expect(&format!("<{}> warm", a1.nick));
    a2.expect(&format!("<{}> warm", a1.nick));
    // A line can reach Redis before the `DEBUG SLEEP` sent just before it does (then it is
    // simply confirmed): the round is tried again, a few times at most.
    for round in 0..4 {
        let before = entries(&redis, "landed:stream").last().unwrap().0.clone();
        let slept_at: u64 = before.split('-').next().unwrap().parse().unwrap();
        let sleeping = send(&redis, &["DEBUG", "SLEEP", "2.5"]);
        let said = [format!("slept{round}a"), format!("slept{round}b")];
        a1.send(&said[0]);
        a1.send(&said[1]);
        a1.read_until(|l| l == "*** backplane unavailable, chat is local only");
        a1.read_until(|l| l == "*** backplane back, chat is shared again");
        drop(sleeping);
        let after = format!("after{round}");
        a1.send(&after);
        for client in [&mut b1, &mut a2] {
            let (from, _) = lines_from(client, &a1.nick, &after);
            assert_eq!(
                from,
                [said[0].clone(), said[1].clone(), after.clone()],
                "{}",
                client.nick
            );
            let rest = client.sync();
            assert!(rest.iter().all(|l| !l.starts_with('<')), "{rest:?}");
        }
        let stream = entries(&redis, "landed:stream");
        let landed: Vec<_> = stream
            .iter()
            .filter(|(_, e)| e.ends_with(&said[0]))
            .collect();
        assert_eq!(landed.len(), 1, "{stream:?}");
        assert_eq!(counter(&a, "resent"), 0);
        // Added after Redis woke, when A had closed the connection: the reply was lost.
        let added_at: u64 = landed[0].0.split('-').next().unwrap().parse().unwrap();
        if added_at >= slept_at + 2000 {
            return;
        }
    }
    panic!("the lines never reached Redis after its sleep");
}
