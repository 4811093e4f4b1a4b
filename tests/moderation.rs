//! Operators (`/oper`, `pollchat hash-password`), `/kick`, and room topics.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Instant;

use common::{Client, DEADLINE, TestServer};
use pollchat::moderation::{Operator, hash_password, plaintext_refused};

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
/// `--operators` flag.
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
    let mut server = common::ServerProcess::start(&["--operators", &format!("ann={hash}")]);
    let mut c = Client::connect(server.addr);
    c.send("/oper ann pa ss");
    c.expect("*** you are now an operator (ann)");
    drop(server.wait_for_log("is now operator ann"));
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
