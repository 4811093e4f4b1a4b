//! Operators (`/oper`, `pollchat hash-password`), `/kick`, and room topics.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Instant;

use common::{Client, DEADLINE, TestServer};
use pollchat::operators::{Operator, hash_password, plaintext_refused};

/// One hash for the whole file: each costs an argon2 run.
static HASH: LazyLock<String> = LazyLock::new(|| hash_password("s3cret").unwrap());

fn with_operator(config: &mut pollchat::Config) {
    let hash = HASH.clone();
    config.operators = vec![Operator {
        name: "root".into(),
        hash,
    }];
}

/// A client that is operator `root`.
fn operator(server: &TestServer) -> Client {
    let mut c = server.connect();
    c.send("/oper root s3cret");
    c.expect("*** you are now an operator (root)");
    c
}

/// `/oper` with the right password makes an operator, who then sees the operator commands in
/// `/help`; the others do not.
#[test]
fn oper_right_password_makes_an_operator_and_help_shows_its_commands() {
    let server = TestServer::with(with_operator);
    let mut plain = server.connect();
    plain.send("/help");
    let (help, _) = plain.read_until(|l| l.contains("//text"));
    assert!(help.iter().all(|l| !l.contains("/kick")), "{help:?}");
    plain.sync();
    let mut op = operator(&server);
    op.send("/help");
    op.read_until(|l| l.contains("//text"));
    op.expect("*** operator commands:");
    assert!(op.line().contains("/kick NICK [REASON]"));
}

/// A wrong password and an unknown name get the same line; the next try from that address
/// within the second is refused unchecked (slowed), and after five failures the address is
/// refused for ten minutes, even with the right password.
#[test]
fn oper_wrong_then_repeated_is_slowed_then_refused() {
    let server = TestServer::with(with_operator);
    let mut c = server.connect();
    c.send("/oper root wrong");
    c.expect("*** wrong operator name or password");
    c.send("/oper root s3cret");
    c.expect("*** too many wrong operator passwords from your address; try again in 1 s");
    let mut failures = 1;
    let start = Instant::now();
    while failures < 5 {
        assert!(start.elapsed() < DEADLINE, "never let to try again");
        c.send("/oper nobody wrong");
        match c.line().as_str() {
            "*** wrong operator name or password" => failures += 1,
            line => assert!(line.contains("try again in 1 s"), "{line}"),
        }
        // Pacing the retries, not synchronising: the server says when it lets us try.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    c.send("/oper root s3cret");
    c.expect("*** too many wrong operator passwords from your address; try again in 600 s");
    // Another loopback address is counted on its own.
    let mut other = Client::raw_from(server.addr, "127.0.0.2".parse().unwrap());
    other.read_welcome();
    other.send("/oper root s3cret");
    other.expect("*** you are now an operator (root)");
}

/// Plain text from another machine is refused unless `--oper-plaintext`; loopback, and TLS
/// from anywhere, are not. (Tests reach only loopback, so the rule is the library's
/// function, asked directly; a plain loopback `/oper` works in the tests above.)
#[test]
fn oper_over_plain_text_from_another_machine_is_refused() {
    let far: IpAddr = "203.0.113.7".parse().unwrap();
    assert!(plaintext_refused(far, false, false));
    assert!(!plaintext_refused(far, true, false), "TLS");
    assert!(!plaintext_refused(far, false, true), "--oper-plaintext");
    for near in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert!(
            !plaintext_refused(near.parse().unwrap(), false, false),
            "{near}"
        );
    }
    assert!(plaintext_refused(
        "::ffff:203.0.113.7".parse().unwrap(),
        false,
        false
    ));
}

/// `pollchat hash-password` prints a hash that `/oper` then accepts, given as the binary's
/// `--operators` flag; the password stays out of even a `trace` log.
#[test]
fn hash_password_prints_a_hash_oper_accepts() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pollchat"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"pa ss\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let operators = format!("ann={hash}");
    let mut server =
        common::ServerProcess::start(&["--operators", &operators, "--log-level", "trace"]);
    let mut c = Client::connect(server.addr);
    c.send("/oper ann pa ss");
    c.expect("*** you are now an operator (ann)");
    let log = server.log_until("is now operator ann");
    assert!(
        log.iter().all(|l| !l.contains("pa ss")),
        "password logged: {log:?}"
    );
}

/// A hash that does not parse stops the start, naming its operator.
#[test]
fn oper_bad_hash_refuses_start_naming_the_operator() {
    let out = Command::new(env!("CARGO_BIN_EXE_pollchat"))
        .args(["--operators", "eve=$argon2id$nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the hash of operator eve is not"), "{err}");
}

/// `/kick`: the target gets who and why, then its connection closes; its room sees it was
/// kicked; the operator's `/kick` is counted and logged. A client that is not an operator is
/// refused, and nobody is kicked.
#[test]
fn kick_tells_the_target_closes_it_and_tells_its_room() {
    let server = TestServer::with(|c| {
        with_operator(c);
        c.http = Some(pollchat::config::HttpSettings::new(
            "127.0.0.1:0".parse().unwrap(),
        ));
    });
    let mut c = server.clients(2);
    let target = c[1].nick.clone();
    c[0].send(&format!("/kick {target} spam"));
    c[0].expect("*** /kick is for operators only");
    let mut op = operator(&server);
    c[0].expect(&format!("*** {} joined", op.nick));
    c[1].expect(&format!("*** {} joined", op.nick));
    op.send("/kick nobody");
    op.expect("*** no such nick: nobody");
    op.send(&format!("/kick {target} spam, twice"));
    c[1].expect(&format!("*** kicked by {}: spam, twice", op.nick));
    assert_eq!(
        c[1].read_to_eof(),
        Vec::<String>::new(),
        "closed after its line"
    );
    let notice = format!("*** {target} was kicked by {} (spam, twice)", op.nick);
    c[0].expect(&notice);
    op.expect(&notice);
    let metrics = common::web::get(server.http_addr.unwrap(), "/metrics").body;
    assert!(
        metrics.contains("pollchat_moderation_total{action=\"kick\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pollchat_moderation_total{action=\"oper\"} 1"));
    assert!(metrics.contains("pollchat_disconnects_total{reason=\"kicked\"} 1"));
}

/// Topics: none at first; one set is announced to the room (its setter too), shown to whoever
/// joins, and gone with the room once it empties.
#[test]
fn topic_set_announced_shown_on_join_and_gone_with_its_room() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    c[0].join("#rust");
    c[0].send("/topic");
    c[0].expect("*** no topic for #rust");
    c[0].send("/topic all about   borrowing");
    let set = format!(
        "*** {} set the topic for #rust: all about   borrowing",
        c[0].nick
    );
    c[0].expect(&set);
    c[1].send("/join #rust");
    c[1].read_until(|l| l.starts_with("*** you are now in #rust"));
    c[1].expect("*** topic for #rust: all about   borrowing");
    c[1].send("/topic");
    c[1].expect("*** topic for #rust: all about   borrowing");
    c[1].send("/topic ownership");
    let set = format!("*** {} set the topic for #rust: ownership", c[1].nick);
    c[0].read_until(|l| l == set);
    c[0].join("#lobby");
    c[1].join("#lobby");
    c[0].join("#rust");
    c[0].send("/topic");
    c[0].expect("*** no topic for #rust");
}

/// `--topic-ops-only`: a member who is not an operator may read the topic, not set it.
#[test]
fn topic_ops_only_refuses_members_who_are_not_operators() {
    let server = TestServer::with(|c| {
        with_operator(c);
        c.topic_ops_only = true;
    });
    let mut member = server.connect();
    member.send("/topic mine");
    member.expect("*** setting the topic is for operators only");
    let mut op = operator(&server);
    member.expect(&format!("*** {} joined", op.nick));
    op.send("/topic rules: be kind");
    let set = format!("*** {} set the topic for #lobby: rules: be kind", op.nick);
    op.expect(&set);
    member.expect(&set);
    let mut late = server.connect();
    late.expect("*** topic for #lobby: rules: be kind");
}

/// An instance on `redis`'s `channel`, with operator `root`, once its backplane is up.
fn instance(redis: &common::RedisServer, channel: &str) -> TestServer {
    redis.instance(channel, with_operator)
}

/// Across instances: an operator on one kicks a client of the other, which lets it go (as
/// fast as Redis relays a message; not timed here); a topic set on one is seen by the room's members on the other.
#[test]
fn kick_and_topic_across_two_instances_with_redis() {
    let Some(redis) = common::RedisServer::start() else {
        return;
    };
    let (a, b) = (instance(&redis, "kick"), instance(&redis, "kick"));
    let mut op = operator(&a);
    let mut target = b.connect();
    let mut watcher = b.connect();
    target.expect(&format!("*** {} joined", watcher.nick));
    op.read_until(|l| l == format!("*** {} joined", watcher.nick));
    op.send("/topic shared");
    watcher.expect(&format!("*** {} set the topic for #lobby: shared", op.nick));
    target.line();
    op.send(&format!("/kick {} flooding", target.nick));
    target.expect(&format!("*** kicked by {}: flooding", op.nick));
    assert_eq!(target.read_to_eof(), Vec::<String>::new());
    let notice = format!("*** {} was kicked by {} (flooding)", target.nick, op.nick);
    watcher.expect(&notice);
    op.read_until(|l| l == notice);
}

/// `[operators]` in the config file becomes `--operators` flags: `--print-config` prints it
/// back, an `--operators` flag replaces the whole table (flags over file), and a bad hash in
/// the file is refused with its line and operator.
#[test]
fn operators_table_in_the_file_is_flags_and_flags_win() {
    let dir = std::env::temp_dir().join(format!("pollchat-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ops.toml");
    let print = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pollchat"))
            .arg("--config")
            .arg(&file)
            .args(extra)
            .arg("--print-config")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let hash = &*HASH;
    std::fs::write(
        &file,
        format!("max-rooms = 5\n[operators]\nann = \"{hash}\"\n"),
    )
    .unwrap();
    let (ok, text) = print(&[]);
    assert!(
        ok && text.contains(&format!("operators = [\"ann={hash}\"]")),
        "{text}"
    );
    let (ok, text) = print(&["--operators", &format!("bob={hash}")]);
    assert!(
        ok && text.contains(&format!("operators = [\"bob={hash}\"]")),
        "{text}"
    );
    std::fs::write(&file, "[operators]\nann = \"x\"\n").unwrap();
    let (ok, text) = print(&[]);
    assert!(!ok && text.contains("line 1: operators = "), "{text}");
    assert!(text.contains("the hash of operator ann is not an argon2 PHC string"));
    std::fs::remove_dir_all(&dir).unwrap();
}
