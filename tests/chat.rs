//! Relaying: who gets a chat line, in what order, and what everyone hears when people come
//! and go.

mod common;

use common::{Client, TestServer};

/// A line goes to every other client, and not back to its sender.
#[test]
fn chat_line_reaches_everyone_but_the_sender() {
    let server = TestServer::start();
    let mut c = server.clients(3);
    let alice = c[0].nick.clone();
    c[0].send("hello all");
    c[1].expect(&format!("<{alice}> hello all"));
    c[2].expect(&format!("<{alice}> hello all"));
    assert_eq!(c[0].sync(), Vec::<String>::new(), "sender got its own line");
}

/// Each client connects under a distinct guest nick and is greeted by name.
#[test]
fn each_client_gets_a_distinct_guest_nick() {
    let server = TestServer::start();
    let c = server.clients(3);
    let nicks: Vec<&str> = c.iter().map(|c| c.nick.as_str()).collect();
    assert!(nicks.iter().all(|n| n.starts_with("guest-")), "{nicks:?}");
    assert!(nicks[0] != nicks[1] && nicks[1] != nicks[2] && nicks[0] != nicks[2]);
}

/// Several clients sending at once: every receiver sees the lines in the same order, and
/// each sender's lines stay in the order it sent them.
#[test]
fn lines_from_concurrent_senders_arrive_in_one_global_order() {
    const SENDERS: usize = 3;
    const LINES: usize = 300;
    let server = TestServer::start();
    let mut clients = server.clients(SENDERS + 2);
    let receivers: Vec<Client> = clients.drain(SENDERS..).collect();
    let mut senders = common::send_concurrently(clients, LINES);

    let mut views: Vec<Vec<String>> = Vec::new();
    for mut receiver in receivers {
        views.push((0..SENDERS * LINES).map(|_| receiver.line()).collect());
    }
    assert_eq!(views[0], views[1], "two receivers saw different orders");

    for (s, sender) in senders.iter_mut().enumerate() {
        let own = format!("<{}> ", sender.nick);
        let others: Vec<String> = views[0]
            .iter()
            .filter(|l| !l.starts_with(&own))
            .cloned()
            .collect();
        let seen: Vec<String> = (0..others.len()).map(|_| sender.line()).collect();
        assert_eq!(seen, others, "sender {s} saw another order");
        let mine: Vec<String> = views[0]
            .iter()
            .filter(|l| l.starts_with(&own))
            .cloned()
            .collect();
        let sent: Vec<String> = (0..LINES).map(|n| format!("{own}s{s} n{n}")).collect();
        assert_eq!(mine, sent, "sender {s}'s lines were reordered or lost");
    }
}

/// Joins and leaves are announced to everyone else, a leave with its reason.
#[test]
fn joins_and_leaves_are_announced_to_the_others() {
    let server = TestServer::start();
    let mut a = server.connect();
    let b = server.connect();
    a.expect(&format!("*** {} joined", b.nick));
    let b_nick = b.nick.clone();
    drop(b);
    a.expect(&format!("*** {b_nick} left (connection closed)"));
}

/// `--quiet-joins`: nobody hears of joins and leaves.
#[test]
fn quiet_joins_announces_nothing() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let mut a = server.connect();
    let b = server.connect();
    drop(b);
    let mut c = server.connect();
    c.send("hi");
    let (before, _) = a.read_until(|l| l.ends_with("> hi"));
    assert_eq!(before, Vec::<String>::new());
}

/// A client that half-closes (like `printf '/who\n' | nc -N`) still gets every answer it
/// is owed before the server closes.
#[test]
fn half_closed_client_still_gets_its_answers() {
    let server = TestServer::start();
    let mut a = server.connect();
    a.send("/who");
    a.send("/help");
    a.shutdown_write();
    let lines = a.read_to_eof();
    assert_eq!(lines[0], format!("*** 1 user in #lobby: {}", a.nick));
    assert_eq!(lines[1], "*** commands:");
    assert!(lines.len() > 5, "{lines:?}");
}

/// The last line of a client's input is relayed even without a final newline.
#[test]
fn last_line_without_newline_is_relayed_at_eof() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let sender_nick = c[0].nick.clone();
    c[0].send_bytes(b"no newline");
    c[0].shutdown_write();
    c[1].expect(&format!("<{sender_nick}> no newline"));
    c[1].expect(&format!("*** {sender_nick} left (connection closed)"));
}

/// IPv6 works like IPv4: `--bind [::1]:0`.
#[test]
fn chat_works_over_ipv6() {
    let server = TestServer::with(|c| c.bind = vec!["[::1]:0".parse().unwrap()]);
    assert!(server.addr.is_ipv6());
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send("over six");
    c[1].expect(&format!("<{nick}> over six"));
}
