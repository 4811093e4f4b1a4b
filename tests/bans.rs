//! Bans (`/ban`, `/unban`, `/bans`) over real loopback sockets: by nick, by address and by
//! CIDR range (clients bind 127.0.0.2 and other loopback addresses), expiry, the bans file
//! across a restart of the binary and a corrupt one, and two instances sharing bans through a
//! real `redis-server`. IPv6 ranges are checked through the library (`::1` is the only IPv6
//! loopback address).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, DEADLINE, RedisServer, ServerProcess, TempDir, TestServer};
use pollchat::bans::{self, Ban, BanList, Mask};
use pollchat::operators::{Operator, hash_password};

/// One hash for the whole file: each costs an argon2 run.
static HASH: LazyLock<String> = LazyLock::new(|| hash_password("s3cret").unwrap());

/// A server with operator `root`.
fn server() -> TestServer {
    TestServer::with(|c| c.operators = vec![operator_root()])
}

fn operator_root() -> Operator {
    let hash = HASH.clone();
    let name = "root".into();
    Operator { name, hash }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A connection from `source`, and its first line: the welcome, or why it was refused (then
/// the server closes it).
fn first_line(addr: SocketAddr, source: &str) -> (Client, String) {
    let mut client = Client::raw_from(addr, ip(source));
    let line = client.line();
    (client, line)
}

/// Refused from `source` with `*** banned: REASON`, and closed.
fn refused(addr: SocketAddr, source: &str, reason: &str) {
    let (mut client, line) = first_line(addr, source);
    assert_eq!(line, format!("*** banned: {reason}"), "from {source}");
    assert_eq!(client.read_to_eof(), Vec::<String>::new());
}

/// Welcomed from `source`.
fn welcomed(addr: SocketAddr, source: &str) -> Client {
    let (mut client, line) = first_line(addr, source);
    assert!(line.starts_with("*** welcome"), "from {source}: {line}");
    client.nick = line.split(' ').nth(6).unwrap().to_string();
    client
}

/// Sends `line` and returns the first reply that starts with `*** ` and is not a join or
/// leave notice.
fn ask(client: &mut Client, line: &str) -> String {
    client.send(line);
    let notice = |l: &str| l.ends_with(" joined") || l.contains(" left (");
    client.read_until(|l| l.starts_with("*** ") && !notice(l)).1
}

/// `/bans` and its lines, from its first line to its last.
fn list(client: &mut Client) -> Vec<String> {
    let first = ask(client, "/bans");
    let count: usize = match first.as_str() {
        "*** no bans" => return vec![first],
        _ => first.split(' ').nth(1).unwrap().parse().unwrap(),
    };
    let mut lines = vec![first];
    lines.extend((0..count.min(50)).map(|_| client.line()));
    lines
}

/// Retries `check` (a bounded, cheap probe of the server) until it holds, failing the test
/// after [`DEADLINE`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A client that is operator `root`.
fn operator(addr: SocketAddr) -> Client {
    let mut op = Client::connect(addr);
    assert_eq!(
        ask(&mut op, "/oper root s3cret"),
        "*** you are now an operator (root)"
    );
    op
}

/// A ban on a nick sends its holder away with the reason, its room hears why, and nobody can
/// take the nick again, in any case; nor is it handed out as a guest nick.
#[test]
fn bans_by_nick_send_away_and_the_nick_cannot_be_taken() {
    let server = server();
    let mut op = operator(server.addr);
    let mut bob = server.connect();
    op.expect(&format!("*** {} joined", bob.nick));
    bob.send("/nick Bob");
    bob.expect(&format!("*** {} is now known as Bob", bob.nick));
    op.expect(&format!("*** {} is now known as Bob", bob.nick));
    assert_eq!(
        ask(&mut op, "/ban bob 1h spamming the lobby"),
        "*** ban on bob placed (for 1h): spamming the lobby"
    );
    let last = bob.read_to_eof();
    assert_eq!(
        last.last().unwrap(),
        "*** banned: spamming the lobby",
        "{last:?}"
    );
    op.read_until(|l| l == "*** Bob left (banned: spamming the lobby)");

    let mut carol = server.connect();
    assert_eq!(ask(&mut carol, "/nick BOB"), "*** nick \"BOB\" is banned");
    // Guest nicks count up: the next two are banned, so a newcomer skips them.
    let n: u32 = carol.nick.rsplit('-').next().unwrap().parse().unwrap();
    ask(&mut op, &format!("/ban guest-{} 1h", n + 1));
    ask(&mut op, &format!("/ban guest-{}", n + 2));
    assert_eq!(server.connect().nick, format!("guest-{}", n + 3));
}

/// A ban on an address sends away the client connected from it, and a new connection from
/// it is refused with the same line before it takes a slot; other addresses are not touched.
#[test]
fn bans_by_address_refuse_at_accept() {
    let server = server();
    let mut op = operator(server.addr);
    let mut victim = welcomed(server.addr, "127.0.0.2");
    op.read_until(|l| l.ends_with(" joined"));
    assert_eq!(
        ask(&mut op, "/ban 127.0.0.2 flooding"),
        "*** ban on 127.0.0.2 placed (permanent): flooding"
    );
    assert_eq!(victim.read_to_eof().last().unwrap(), "*** banned: flooding");
    refused(server.addr, "127.0.0.2", "flooding");
    welcomed(server.addr, "127.0.0.3");
    // The ban that would catch the operator itself is not placed.
    assert_eq!(
        ask(&mut op, "/ban 127.0.0.0/8"),
        "*** not placed: a ban on 127.0.0.0/8 would ban you too"
    );
}

/// A CIDR range bans every address in it and none outside; the mask is written back with its
/// host bits cleared.
#[test]
fn bans_by_cidr_range() {
    let server = server();
    let mut op = operator(server.addr);
    assert_eq!(
        ask(&mut op, "/ban 127.0.0.13/29 2h ring of bots"),
        "*** ban on 127.0.0.8/29 placed (for 2h): ring of bots"
    );
    for inside in ["127.0.0.8", "127.0.0.9", "127.0.0.15"] {
        refused(server.addr, inside, "ring of bots");
    }
    for outside in ["127.0.0.7", "127.0.0.16"] {
        welcomed(server.addr, outside);
    }
}

/// Masks through the library: IPv6 ranges, an IPv4 ban matching the IPv4-mapped IPv6 address
/// a dual-stack listener reports, the forms written back, and what is refused.
#[test]
fn bans_ipv6_ranges_and_mapped_addresses_match() {
    let mask = |text| Mask::parse(text).unwrap();
    let v6 = mask("2001:db8::/32");
    assert!(v6.covers("x", Some(ip("2001:db8:ffff::1"))));
    assert!(!v6.covers("x", Some(ip("2001:db9::1"))));
    assert!(!v6.covers("x", Some(ip("32.1.13.184"))), "an IPv4 address");
    let v4 = mask("203.0.113.0/24");
    assert!(v4.covers("x", Some(ip("::ffff:203.0.113.7"))));
    assert!(
        !v4.covers("x", Some(ip("::203.0.113.7"))),
        "not a mapped address"
    );
    assert!(mask("Alice").covers("aLiCe", None));
    for (given, shown) in [
        ("2001:db8:1:2::/32", "2001:db8::/32"),
        ("::1", "::1"),
        ("::ffff:203.0.113.9/120", "203.0.113.0/24"),
        ("10.1.2.3/0", "0.0.0.0/0"),
        ("Bob", "bob"),
    ] {
        assert_eq!(mask(given).to_string(), shown);
    }
    for bad in [
        "10.0.0.0/33",
        "2001:db8::/129",
        "1.2.3",
        "bob!",
        "a b",
        "1.2.3.4/x",
    ] {
        assert!(Mask::parse(bad).is_err(), "{bad}");
    }

    let mut list = BanList::default();
    let ban = |until| Ban {
        until,
        by: "op".into(),
        reason: "r".into(),
    };
    list.insert(mask("2001:db8::/32"), ban(None));
    list.insert(mask("203.0.113.0/24"), ban(Some(2_000)));
    assert!(list.on_address(ip("2001:db8::5"), 1_000).is_some());
    assert!(list.on_address(ip("::ffff:203.0.113.200"), 1_000).is_some());
    assert!(
        list.on_address(ip("203.0.113.1"), 2_000).is_none(),
        "expired"
    );
    assert_eq!(list.live(2_000).len(), 1);

    for (text, secs) in [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604_800)] {
        assert_eq!(bans::parse_duration(text), Some(Duration::from_secs(secs)));
    }
    for bad in ["0s", "s", "10", "-5m", "+5m", "1w", "99999999999999999999d"] {
        assert_eq!(bans::parse_duration(bad), None, "{bad}");
    }
}

/// A ban for two seconds ends by itself: the address is refused, then let in, and `/bans` no
/// longer lists it.
#[test]
fn bans_expire_by_themselves() {
    let server = server();
    let mut op = operator(server.addr);
    ask(&mut op, "/ban 127.0.0.2 2s cool down");
    refused(server.addr, "127.0.0.2", "cool down");
    eventually("the ban expired", || {
        first_line(server.addr, "127.0.0.2")
            .1
            .starts_with("*** welcome")
    });
    assert_eq!(list(&mut op), ["*** no bans"]);
}

/// Only operators may ban, unban or list the bans.
#[test]
fn bans_are_for_operators_only() {
    let server = server();
    let mut user = server.connect();
    for command in ["/ban 127.0.0.2", "/unban 127.0.0.2", "/bans"] {
        let name = command.split(' ').next().unwrap();
        assert_eq!(
            ask(&mut user, command),
            format!("*** {name} is for operators only")
        );
    }
    welcomed(server.addr, "127.0.0.2");
}

/// `/bans` lists the bans in force in mask order, with who placed them, the time left and
/// why; `/unban` lifts one (and says when there is none); bad masks are explained.
#[test]
fn bans_unban_and_list() {
    let server = server();
    let mut op = operator(server.addr);
    ask(&mut op, "/ban 127.0.0.2 7d");
    ask(&mut op, "/ban 2001:db8::/32 10m spam");
    ask(&mut op, "/ban mallory trolling");
    let by = "root";
    assert_eq!(
        list(&mut op),
        [
            "*** 3 bans:".to_string(),
            format!("***   mallory by {by}, permanent: trolling"),
            format!("***   127.0.0.2 by {by}, 7d left: no reason given"),
            format!("***   2001:db8::/32 by {by}, 10m left: spam"),
        ]
    );
    assert_eq!(
        ask(&mut op, "/unban 127.0.0.2"),
        "*** ban on 127.0.0.2 lifted"
    );
    assert_eq!(ask(&mut op, "/unban 127.0.0.2"), "*** no ban on 127.0.0.2");
    welcomed(server.addr, "127.0.0.2");
    assert_eq!(
        ask(&mut op, "/unban 300.1.1.1"),
        "*** \"300.1.1.1\" is not an IPv4 or IPv6 address"
    );
    assert_eq!(
        ask(&mut op, "/ban"),
        "*** usage: /ban MASK [DURATION] [REASON]"
    );
    assert_eq!(list(&mut op).len(), 3);
}

/// Bans are kept in `--bans-file` and are in force again after a restart of the binary.
#[test]
fn bans_persist_across_a_restart() {
    let dir = TempDir::new();
    let path = dir.path.join("bans");
    let file = path.to_str().unwrap();
    let root = format!("root={}", *HASH);
    let args = ["--bans-file", file, "--operators", &root];
    let mut server = ServerProcess::start(&args);
    let mut op = operator(server.addr);
    ask(&mut op, "/ban 127.0.0.2 1h abuse");
    ask(&mut op, "/ban bob");
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(
        saved.contains("\nbob never root no reason given\n"),
        "{saved}"
    );
    server.signal("TERM");
    server.wait_exit();

    let server = ServerProcess::start(&args);
    refused(server.addr, "127.0.0.2", "abuse");
    let mut other = Client::connect(server.addr);
    assert_eq!(ask(&mut other, "/nick bob"), "*** nick \"bob\" is banned");
    let leftovers: Vec<_> = std::fs::read_dir(&dir.path).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "a temporary file was left: {leftovers:?}"
    );
}

/// A bans file that does not parse stops the start with one sentence naming the file and the
/// line, and is left as it was.
#[test]
fn bans_corrupt_file_stops_start_up() {
    let dir = TempDir::new();
    let text = b"# bans\n127.0.0.2 never op abuse\nnot/a/mask never op x\n";
    let path = dir.file("bans", text);
    let output = common::guard::output(
        std::process::Command::new(env!("CARGO_BIN_EXE_pollchat")).args([
            "--bind",
            "127.0.0.1:0",
            "--bans-file",
            path.to_str().unwrap(),
        ]),
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "pollchat: bans file {}, line 3: \"not\" is not an IPv4 or IPv6 address\n",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), text);
}

/// An in-process instance on `redis`'s `channel`, once its backplane is up.
fn instance(redis: &RedisServer, channel: &str) -> TestServer {
    redis.instance(channel, |c| c.operators = vec![operator_root()])
}

/// A ban placed on one instance sends away a client of the other and is refused there too;
/// an instance started later gets the bans in force from Redis; an unban reaches every one.
#[test]
fn bans_reach_every_instance_through_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, "bans");
    let b = instance(&redis, "bans");
    let mut op = operator(a.addr);
    let mut victim = welcomed(b.addr, "127.0.0.2");
    ask(&mut op, "/ban 127.0.0.2 1h abuse");
    assert_eq!(victim.read_to_eof().last().unwrap(), "*** banned: abuse");
    refused(b.addr, "127.0.0.2", "abuse");

    let c = instance(&redis, "bans");
    let mut op_c = operator(c.addr);
    eventually("the later instance has the ban", || {
        list(&mut op_c).len() == 2
    });
    refused(c.addr, "127.0.0.2", "abuse");

    ask(&mut op, "/unban 127.0.0.2");
    for server in [&b, &c] {
        eventually("the unban reached every instance", || {
            first_line(server.addr, "127.0.0.2")
                .1
                .starts_with("*** welcome")
        });
    }
}
