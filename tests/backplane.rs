//! `--backplane`: several instances as one chat through a real `redis-server` on an ephemeral
//! loopback port. Each test says loudly that it skipped if `redis-server` is missing.

#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, DEADLINE, RedisServer, ServerProcess, TestServer};
use pollchat::backplane::{BackplaneConfig, RedisUrl};

/// Sends `/nick NAME` and reads until it is granted (true) or refused (false), skipping other
/// lines (another client's rename, joins).
fn try_nick(client: &mut Client, name: &str) -> bool {
    let old = client.nick.clone();
    client.send(&format!("/nick {name}"));
    let granted = format!("*** {old} is now known as {name}");
    let refused = format!("*** nick \"{name}\" is taken");
    let (_, line) = client.read_until(|l| l == granted || l == refused);
    if line == granted {
        client.nick = name.to_string();
        true
    } else {
        false
    }
}

/// Clients on two instances, sending at once: every client on either instance sees the lines
/// in one order (Redis's), each sender's own lines in the order it sent them, and a sender
/// never gets its own lines back.
#[test]
fn backplane_two_instances_chat_in_one_global_order() {
    const LINES: usize = 1000;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("order", |c| c.quiet_joins = true);
    let b = redis.instance("order", |c| c.quiet_joins = true);
    let mut observers = [a.connect(), b.connect()];
    let senders: Vec<Client> = vec![a.connect(), b.connect()];
    let nicks: Vec<String> = senders.iter().map(|c| c.nick.clone()).collect();
    assert_ne!(nicks[0], nicks[1], "guest nicks collided across instances");
    let mut senders = common::send_concurrently(senders, LINES);

    let views: Vec<Vec<String>> = observers
        .iter_mut()
        .map(|o| (0..2 * LINES).map(|_| o.line()).collect())
        .collect();
    assert_eq!(
        views[0], views[1],
        "the two instances delivered different orders"
    );
    for (s, sender) in senders.iter_mut().enumerate() {
        let own = format!("<{}> ", nicks[s]);
        let others: Vec<&String> = views[0].iter().filter(|l| !l.starts_with(&own)).collect();
        let seen: Vec<String> = (0..others.len()).map(|_| sender.line()).collect();
        assert_eq!(
            seen.iter().collect::<Vec<_>>(),
            others,
            "sender {s} saw another order"
        );
        let mine: Vec<&String> = views[0].iter().filter(|l| l.starts_with(&own)).collect();
        let sent: Vec<String> = (0..LINES).map(|n| format!("{own}s{s} n{n}")).collect();
        assert_eq!(
            mine,
            sent.iter().collect::<Vec<_>>(),
            "sender {s}'s lines reordered"
        );
        // Nothing of its own came back before the answer to /who.
        assert!(sender.sync().is_empty());
    }
    let stats = a.ask_stats(b"stats");
    assert!(
        stats.contains("\"backplane\":{\"state\":\"up\",\"published\":"),
        "{stats}"
    );
}

/// Joins, renames and leaves on one instance are announced on the other, `/who` lists the
/// clients of both, and a client's lines keep their order behind a `/nick` that waits for
/// Redis.
#[test]
fn backplane_notices_and_who_span_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("notices", |_| {});
    let b = redis.instance("notices", |_| {});
    let mut alice = a.connect();
    let mut bob = b.connect();
    alice.expect(&format!("*** {} joined", bob.nick));
    let (alice_was, bob_was) = (alice.nick.clone(), bob.nick.clone());
    assert!(try_nick(&mut alice, "alice"));
    // Whether bob hears of alice's join depends on whether it came back from Redis before he
    // joined: nothing else may come first.
    let (before, _) = bob.read_until(|l| l == format!("*** {alice_was} is now known as alice"));
    assert!(
        before
            .iter()
            .all(|l| *l == format!("*** {alice_was} joined")),
        "{before:?}"
    );
    // A line right behind a /nick waits for Redis's answer, and goes out under the new nick.
    bob.send_bytes(b"/nick bob\nfirst as bob\n");
    bob.expect(&format!("*** {bob_was} is now known as bob"));
    alice.expect(&format!("*** {bob_was} is now known as bob"));
    alice.expect("<bob> first as bob");
    alice.send("/who");
    alice.expect("*** 2 users in #lobby: alice, bob");
    bob.send("/me waves");
    alice.expect("* bob waves");
    bob.send("/quit gone");
    alice.expect("*** bob left (quit: gone)");
    alice.send("/who");
    alice.expect("*** 1 user in #lobby: alice");
}

/// A nick held on one instance cannot be taken on another, whatever its case; and when two
/// instances' clients ask for the same nick at the same moment, exactly one gets it.
#[test]
fn backplane_nick_collision_across_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("nicks", |c| c.quiet_joins = true);
    let b = redis.instance("nicks", |c| c.quiet_joins = true);
    let mut a1 = a.connect();
    let mut b1 = b.connect();
    assert!(try_nick(&mut a1, "alice"));
    assert!(
        !try_nick(&mut b1, "ALICE"),
        "a nick held on A was granted on B"
    );

    let (mut a2, mut b2) = (a.connect(), b.connect());
    a2.send("/nick carol");
    b2.send("/nick carol");
    let mut won = 0;
    for c in [&mut a2, &mut b2] {
        let granted = format!("*** {} is now known as carol", c.nick);
        let (_, line) = c.read_until(|l| l == granted || l == "*** nick \"carol\" is taken");
        won += usize::from(line == granted);
    }
    assert_eq!(won, 1, "both or neither of two racing claims won");
}

/// `/msg` reaches a client on another instance, and only that client.
#[test]
fn backplane_msg_reaches_a_client_on_another_instance() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("msg", |c| c.quiet_joins = true);
    let b = redis.instance("msg", |c| c.quiet_joins = true);
    let mut alice = a.connect();
    let mut other = a.connect();
    let mut bob = b.connect();
    assert!(try_nick(&mut bob, "bob"));
    // Once alice has seen the rename, her instance knows where bob is.
    alice.read_until(|l| l.ends_with("is now known as bob"));
    alice.send("/msg bob psst");
    bob.expect(&format!("*{}* psst", alice.nick));
    alice.send("/msg nobody hi");
    alice.expect("*** no such nick: nobody");
    let seen = other.sync();
    assert!(!seen.iter().any(|l| l.contains("psst")), "{seen:?}");
}

/// Redis killed in the middle of a chat: clients stay connected, are told the chat is local
/// only, and still reach the clients of their own instance; when Redis is back, a nick taken
/// on both sides meanwhile is settled, they are told so, and lines cross instances again.
#[test]
fn backplane_redis_killed_and_restarted_mid_chat() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("outage", |c| c.quiet_joins = true);
    let b = redis.instance("outage", |c| c.quiet_joins = true);
    let mut a1 = a.connect();
    let mut a2 = a.connect();
    let mut b1 = b.connect();
    a1.send("before");
    b1.expect(&format!("<{}> before", a1.nick));
    a2.expect(&format!("<{}> before", a1.nick));

    redis.kill();
    for c in [&mut a1, &mut a2, &mut b1] {
        c.expect("*** backplane unavailable, chat is local only");
    }
    a1.send("local");
    a2.expect(&format!("<{}> local", a1.nick));
    let seen = b1.sync();
    assert!(!seen.iter().any(|l| l.contains("local")), "{seen:?}");

    // The same nick taken on both instances while they cannot see each other.
    let a2_was = a2.nick.clone();
    assert!(try_nick(&mut a2, "zoe"));
    a1.expect(&format!("*** {a2_was} is now known as zoe"));
    assert!(try_nick(&mut b1, "zoe"));

    redis.restart();
    // Back: every nick is claimed again, and one of the two zoes has to give hers up, with a
    // notice, before "back".
    let mut renamed = 0;
    for c in [&mut a1, &mut a2, &mut b1] {
        let (before, _) = c.read_until(|l| l == "*** backplane back, chat is shared again");
        renamed += before
            .iter()
            .filter(|l| {
                l.starts_with("*** nick \"zoe\" is taken on another instance; you are now guest-")
            })
            .count();
    }
    assert_eq!(renamed, 1, "the clash over zoe was not settled");
    a1.send("after");
    let after = format!("<{}> after", a1.nick);
    b1.read_until(|l| l == after);
    a2.read_until(|l| l == after);
    assert!(a.ask_stats(b"stats").contains("\"state\":\"up\""));
}

/// An instance killed without a chance to clean up (SIGKILL): its clients' nicks become free
/// once the nick TTL passes without a refresh, and it drops out of the others' `/who`.
#[test]
fn backplane_instance_killed_its_nicks_become_free() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url("killed");
    let mut doomed = ServerProcess::start(&[
        "--backplane",
        &url,
        "--backplane-nick-ttl",
        "1.5",
        "--quiet-joins",
    ]);
    doomed.wait_for_log("backplane up");
    let b = redis.instance("killed", |c| {
        c.quiet_joins = true;
        c.backplane.as_mut().unwrap().nick_ttl = Duration::from_millis(1500);
    });
    let mut alice = Client::connect(doomed.addr);
    let mut b1 = b.connect();
    assert!(try_nick(&mut alice, "alice"));
    assert!(!try_nick(&mut b1, "alice"), "held on the other instance");

    doomed.signal("KILL");
    doomed.wait_exit();
    let started = Instant::now();
    while !try_nick(&mut b1, "alice") {
        assert!(started.elapsed() < DEADLINE, "alice never became free");
        thread::sleep(Duration::from_millis(100));
    }
    // Not before the nick's key could have expired: the claim really waited for the TTL.
    assert!(started.elapsed() > Duration::from_millis(300));
    b1.send("/who");
    b1.expect("*** 1 user in #lobby: alice");
}

/// A fake Redis that answers every connection's first command with `reply`, then waits for
/// the server to hang up, for six connections (three attempts of two connections each);
/// then checks the server is still serving, and counted its reconnects.
fn reopens_after(reply: &'static [u8]) {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = RedisUrl::parse(&format!("redis://{}/x", fake.local_addr().unwrap())).unwrap();
    let server = TestServer::with(|c| {
        c.stats_udp = Some("127.0.0.1:0".parse().unwrap());
        c.backplane = Some(BackplaneConfig::new(url));
    });
    fake.set_nonblocking(true).unwrap();
    let fake_redis = thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut served = 0;
        while served < 6 {
            assert!(
                Instant::now() < deadline,
                "the backplane stopped reconnecting"
            );
            let Ok((mut socket, _)) = fake.accept() else {
                // Paced polling of a non-blocking accept, bounded by the deadline.
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            served += 1;
            socket.set_nonblocking(false).unwrap();
            socket.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut buf = [0u8; 256];
            let _ = socket.read(&mut buf);
            let _ = socket.write_all(reply);
            // The server must hang up on this reply, not merely when its 2 s connect timeout
            // runs out: a read timeout here fails the test.
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            loop {
                match socket.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("the server kept a connection that answered {reply:?}: {e}"),
                }
            }
        }
    });
    let mut client = server.connect();
    client.expect("*** backplane unavailable, chat is local only");
    fake_redis.join().unwrap();
    client.sync();
    let stats = server.ask_stats(b"stats");
    assert!(!stats.contains("\"reconnects\":0}"), "{stats}");
}

/// Redis answering bytes that are not RESP: the backplane closes its connections and opens
/// new ones again and again, and the server carries on serving its clients.
#[test]
fn backplane_garbage_from_redis_reconnects_and_never_crashes() {
    reopens_after(b"%garbage\r\n");
}

/// Redis answering with an error (a password it was not given, say): the same.
#[test]
fn backplane_error_replies_from_redis_reconnect_and_never_crash() {
    reopens_after(b"-NOAUTH Authentication required.\r\n");
}

/// The load generator spread over two instances (`--target` twice): half the connections on
/// each, and every line reaches every receiver on either instance.
#[test]
#[cfg(feature = "tools")]
fn backplane_bench_spreads_over_instances_and_counts_every_delivery() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("bench", |c| c.quiet_joins = true);
    let b = redis.instance("bench", |c| c.quiet_joins = true);
    let report = common::bench::run(&common::bench_args(&format!(
        "--target {} --target {} --conns 100 --senders 2 --rate 100 --duration 1 --hold 0.1",
        a.addr, b.addr
    )))
    .expect("bench runs");
    assert_eq!(report.established, 100, "{}", report.summary());
    assert!(report.sent >= 50, "{}", report.summary());
    assert_eq!(report.delivered, report.sent * 98, "{}", report.summary());
    for server in [&a, &b] {
        let stats = server.ask_stats(b"stats");
        assert!(stats.contains("\"connections_total\":50,"), "{stats}");
    }
}

/// Redis hangs (SIGSTOP: connections open, nothing answered): the silence is noticed within
/// the nick TTL and clients are told the chat is local only, and `/who` sees only this
/// instance (though it keeps its copy of the others, for the rooms they are in); when Redis
/// resumes, the backplane reconnects and the chat is shared again, `/who` too.
#[test]
fn backplane_hung_redis_is_noticed_and_survived() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ttl = |c: &mut pollchat::Config| {
        c.quiet_joins = true;
        c.backplane.as_mut().unwrap().nick_ttl = Duration::from_millis(900);
    };
    let a = redis.instance("hang", ttl);
    let b = redis.instance("hang", ttl);
    let mut a1 = a.connect();
    let mut b1 = b.connect();
    let both = who_line("#lobby", &[&a1.nick, &b1.nick]);
    who_until(&mut b1, &both);
    redis.signal("STOP");
    a1.expect("*** backplane unavailable, chat is local only");
    b1.expect("*** backplane unavailable, chat is local only");
    b1.send("/who");
    assert_eq!(b1.line(), who_line("#lobby", &[&b1.nick]));
    redis.signal("CONT");
    a1.expect("*** backplane back, chat is shared again");
    b1.expect("*** backplane back, chat is shared again");
    who_until(&mut b1, &both);
    a1.send("still here");
    b1.read_until(|l| l == format!("<{}> still here", a1.nick));
}

/// A fake Redis for what a real one will not do on demand: it answers the backplane's
/// commands (CLIENT SETNAME, PING, XREVRANGE, XADD, EVAL) as Redis would, and once a nick is
/// claimed (a client joined) it answers the reader's first `XREAD` with `burst` in one write
/// (and never answers another).
fn fake_redis(burst: Vec<u8>) -> std::net::SocketAddr {
    use pollchat::backplane::resp::{self, Value};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let joined = Arc::new(AtomicBool::new(false));
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let (burst, joined) = (burst.clone(), Arc::clone(&joined));
            thread::spawn(move || {
                let mut input = Vec::new();
                let mut buf = [0u8; 4096];
                let mut reads = 0;
                while let Ok(n @ 1..) = socket.read(&mut buf) {
                    input.extend_from_slice(&buf[..n]);
                    while let Ok(Some((Value::Array(Some(parts)), used))) = resp::decode(&input) {
                        let command = parts[0].bytes().unwrap().to_vec();
                        input.drain(..used);
                        if command == b"XREAD" {
                            reads += 1;
                            if reads > 1 {
                                continue;
                            }
                            // Paced polling of a flag set by the other connection's thread,
                            // bounded by the deadline: this thread is the fake server, not
                            // the test's synchronisation.
                            let deadline = Instant::now() + DEADLINE;
                            while !joined.load(Ordering::Acquire) && Instant::now() < deadline {
                                thread::sleep(Duration::from_millis(5));
                            }
                            if socket.write_all(&burst).is_err() {
                                return;
                            }
                            continue;
                        }
                        let reply: &[u8] = match command.as_slice() {
                            b"CLIENT" => b"+OK\r\n",
                            b"PING" => b"+PONG\r\n",
                            // The ban hash, read as the links come up, and the stream: empty.
                            b"HGETALL" | b"XREVRANGE" => b"*0\r\n",
                            b"XADD" => b"$3\r\n1-1\r\n",
                            _ => b":1\r\n",
                        };
                        if socket.write_all(reply).is_err() {
                            return;
                        }
                        if command == b"EVAL" {
                            joined.store(true, Ordering::Release);
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Asks `/who` until the answer is `expected`: what other instances say arrives a little
/// later than what this one does.
fn who_until(client: &mut Client, expected: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        client.send("/who");
        let (_, who) = client.read_until(common::is_who_reply);
        if who == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{who} is not {expected}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// `*** N users in ROOM: a, b` for these nicks, sorted as `/who` sorts them.
fn who_line(room: &str, nicks: &[&str]) -> String {
    let mut nicks = nicks.to_vec();
    nicks.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    let noun = if nicks.len() == 1 { "user" } else { "users" };
    format!("*** {} {noun} in {room}: {}", nicks.len(), nicks.join(", "))
}

/// A room spans instances: a line said in `#ops` on A reaches `#ops` on B and nobody else
/// there; `/who` and `/list` count both instances; and B keeps the history of a room only
/// A's clients are in, so a newcomer on B gets lines said on A.
#[test]
fn backplane_rooms_span_instances_with_their_history() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("rooms", |c| c.quiet_joins = true);
    let b = redis.instance("rooms", |c| c.quiet_joins = true);
    let (mut ann, mut eve) = (a.connect(), a.connect());
    let (mut bo, mut cy, mut dee) = (b.connect(), b.connect(), b.connect());
    ann.join("#ops");
    bo.join("#ops");
    let ops = who_line("#ops", &[&ann.nick, &bo.nick]);
    who_until(&mut bo, &ops);
    who_until(&mut ann, &ops);
    ann.send("hi ops");
    bo.expect(&format!("<{}> hi ops", ann.nick));
    assert!(cy.sync().is_empty(), "the lobby on B heard #ops");

    eve.join("#far");
    eve.send("far away");
    eve.send(&format!("/msg {} ping", dee.nick));
    // The /msg came after the line on the one channel: B has both once dee has the /msg.
    dee.expect(&format!("*{}* ping", eve.nick));
    dee.send("/list");
    let (_, list) = dee.read_until(|l| l.contains(" rooms: "));
    assert_eq!(list, "*** 3 rooms: #far (1), #lobby (2), #ops (2)");
    dee.send("/join #far");
    dee.expect("*** you are now in #far (1 user)");
    dee.expect("*** last 1 line in #far:");
    dee.expect(&format!("<{}> far away", eve.nick));
    dee.expect("*** end of history");
    eve.send("and back");
    dee.expect(&format!("<{}> and back", eve.nick));
}

/// Events arriving faster than one read budget (64 KiB) takes are read in budgets, like a
/// flooding client, and the rest is read on the next turns without a new readiness event:
/// every line of a burst far larger than the budget arrives, in order.
#[test]
fn backplane_a_burst_over_the_read_budget_arrives_whole() {
    const LINES: usize = 5000;
    // One XREAD reply of LINES entries.
    let mut burst = format!("*1\r\n*2\r\n$8\r\nx:stream\r\n*{LINES}\r\n").into_bytes();
    for n in 0..LINES {
        let event = format!("pc2 ffff 1 SAY #lobby bob line {n} {}", "x".repeat(40));
        let id = format!("1-{n}");
        let entry = format!(
            "*2\r\n${}\r\n{id}\r\n*2\r\n$1\r\ne\r\n${}\r\n{event}\r\n",
            id.len(),
            event.len()
        );
        burst.extend_from_slice(entry.as_bytes());
    }
    assert!(burst.len() > 4 * 64 * 1024);
    let fake = fake_redis(burst);
    let url = RedisUrl::parse(&format!("redis://{fake}/x")).unwrap();
    let server = TestServer::with(|c| {
        c.stats_udp = Some("127.0.0.1:0".parse().unwrap());
        let mut backplane = BackplaneConfig::new(url);
        // No refresh (every TTL / 3) within the test: nothing but the bus's own deadline for
        // what its budget left unread may wake it, or the burst stops at the budget.
        backplane.nick_ttl = Duration::from_secs(600);
        c.backplane = Some(backplane);
    });
    server.wait_backplane("up");
    let mut client = server.connect();
    for n in 0..LINES {
        let line = client.line();
        assert!(line.starts_with(&format!("<bob> line {n} ")), "{line}");
    }
}

/// What the backplane sends survives partial writes: a fake Redis that does not read for a
/// while (its receive buffer small) makes the instance's socket refuse bytes, and once it
/// reads, every event arrives, whole and in the order the client said the lines.
#[test]
fn backplane_publishes_survive_partial_writes() {
    use pollchat::backplane::resp::{self, Value};
    const LINES: usize = 20_000;
    let fake = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    fake.set_recv_buffer_size(4096).unwrap();
    fake.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    fake.listen(8).unwrap();
    let fake: TcpListener = fake.into();
    let url = RedisUrl::parse(&format!("redis://{}/x", fake.local_addr().unwrap())).unwrap();
    let (tx, published) = std::sync::mpsc::channel::<Vec<u8>>();
    thread::spawn(move || {
        for socket in fake.incoming() {
            let Ok(mut socket) = socket else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut input = Vec::new();
                let mut buf = [0u8; 65536];
                let mut publishes = 0;
                while let Ok(n @ 1..) = socket.read(&mut buf) {
                    input.extend_from_slice(&buf[..n]);
                    let mut replies = Vec::new();
                    while let Ok(Some((Value::Array(Some(parts)), used))) = resp::decode(&input) {
                        let command = parts[0].bytes().unwrap();
                        replies.extend_from_slice(match command {
                            b"CLIENT" => b"+OK\r\n",
                            b"PING" => b"+PONG\r\n",
                            // The ban hash, read as the links come up, and the stream: empty.
                            b"HGETALL" | b"XREVRANGE" => b"*0\r\n",
                            b"XADD" => b"$3\r\n1-1\r\n",
                            // The reader waits for ever: nothing is added here.
                            b"XREAD" => b"",
                            _ => b":1\r\n",
                        });
                        // An event alone, or several in one script (`EVAL script 1 KEY LEN
                        // EVENT...`: a claim's key is not the stream).
                        let events = match command {
                            b"XADD" => &parts[7..],
                            b"EVAL" if parts[3].bytes() == Some(b"x:stream") => &parts[5..],
                            _ => &[],
                        };
                        for event in events {
                            let _ = tx.send(event.bytes().unwrap().to_vec());
                        }
                        if !events.is_empty() {
                            publishes += 1;
                            if publishes == 1 {
                                // Stop reading for a moment, with the client flooding: the
                                // instance's writes to us must hit a full socket.
                                thread::sleep(Duration::from_millis(500));
                            }
                        }
                        input.drain(..used);
                    }
                    if socket.write_all(&replies).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let server = TestServer::with(|c| {
        c.stats_udp = Some("127.0.0.1:0".parse().unwrap());
        c.backplane = Some(BackplaneConfig::new(url));
        c.quiet_joins = true;
    });
    server.wait_backplane("up");
    let mut client = server.connect();
    let nick = client.nick.clone();
    let pad = "p".repeat(100);
    let mut all = String::new();
    for n in 0..LINES {
        all.push_str(&format!("{n} {pad}\n"));
    }
    client.send_bytes(all.as_bytes());
    let mut n = 0;
    let deadline = Instant::now() + DEADLINE;
    while n < LINES {
        let left = deadline.saturating_duration_since(Instant::now());
        let payload = published
            .recv_timeout(left)
            .expect("every event reaches Redis");
        let text = String::from_utf8(payload).unwrap();
        // HELLO and the like are not chat lines.
        if let Some(said) = text
            .split_once(&format!(" SAY #lobby {nick} "))
            .map(|(_, s)| s)
        {
            assert_eq!(said, format!("{n} {pad}"), "event {n} lost or cut");
            n += 1;
        }
    }
}

/// An instance shut down gracefully tells the others its clients left, and gives their nicks
/// back at once (not after the TTL): the nick is free the moment the leave is announced.
#[test]
fn backplane_graceful_shutdown_frees_nicks_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = redis.instance("shutdown", |_| {});
    let b = redis.instance("shutdown", |_| {});
    let mut alice = a.connect();
    let mut bob = b.connect();
    let alice_was = alice.nick.clone();
    assert!(try_nick(&mut alice, "alice"));
    // (Whether bob also hears alice's join depends on when he joined: skipped either way.)
    bob.read_until(|l| l == format!("*** {alice_was} is now known as alice"));
    a.stop().unwrap();
    bob.expect("*** alice left (server shutting down)");
    // The release went to Redis before the leave, on the same connection: no waiting.
    assert!(
        try_nick(&mut bob, "alice"),
        "alice's nick was not given back"
    );
    bob.send("/who");
    bob.expect("*** 1 user in #lobby: alice");
}

/// A TLS client on one instance and a plain client on another are in one chat: the TLS
/// client joins through its handshake, then is a client like any other to the backplane.
#[test]
fn backplane_carries_a_tls_client_to_a_plain_client_on_another_instance() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cert = common::tls::TestCert::new();
    let settings =
        pollchat::config::TlsSettings::new(&cert.cert, &cert.key, "127.0.0.1:0".parse().unwrap());
    let a = redis.instance("tls", |c| c.tls = Some(settings));
    let b = redis.instance("tls", |_| {});
    let mut plain = b.connect();
    let mut secure = Client::connect_tls(a.tls_addr.unwrap(), &cert);
    plain.expect(&format!("*** {} joined", secure.nick));
    secure.send("across instances, encrypted on the way in");
    plain.expect(&format!(
        "<{}> across instances, encrypted on the way in",
        secure.nick
    ));
    plain.send(&format!("/msg {} and back", secure.nick));
    // The plain client's join goes to instance a through Redis, and may arrive there after
    // the TLS client's welcome: then the TLS client is shown it first.
    let back = format!("*{}* and back", plain.nick);
    let (before, _) = secure.read_until(|l| l == back);
    let joined = format!("*** {} joined", plain.nick);
    assert!(before.iter().all(|l| *l == joined), "{before:?}");
}
