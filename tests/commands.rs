//! Every command and its errors.

mod common;

use common::TestServer;

/// `/nick` is announced to everyone, the renamed client included, and the new nick is used.
#[test]
fn nick_change_is_announced_to_everyone() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let old = c[0].nick.clone();
    c[0].send("/nick alice");
    c[0].expect(&format!("*** {old} is now known as alice"));
    c[1].expect(&format!("*** {old} is now known as alice"));
    c[0].send("hi");
    c[1].expect("<alice> hi");
}

/// Nicks are unique regardless of case; changing the case of your own nick is allowed.
#[test]
fn nick_already_taken_is_refused_case_insensitively() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let old = c[0].nick.clone();
    c[0].send("/nick alice");
    c[0].expect(&format!("*** {old} is now known as alice"));
    c[1].line();
    c[1].send("/nick ALICE");
    c[1].expect("*** nick \"ALICE\" is taken");
    c[0].send("/nick Alice");
    c[0].expect("*** alice is now known as Alice");
}

/// Nicks outside `[A-Za-z0-9_-]{1,32}` are refused with the rule.
#[test]
fn invalid_nick_is_refused_with_the_rules() {
    let server = TestServer::start();
    let mut a = server.connect();
    for bad in ["<evil>", "two words", &"x".repeat(33), "é"] {
        a.send(&format!("/nick {bad}"));
        a.expect(&format!(
            "*** invalid nick \"{bad}\": use 1-32 of the characters A-Z a-z 0-9 _ -"
        ));
    }
    a.send("/nick");
    a.expect("*** usage: /nick NAME");
}

/// A guest nick someone took by `/nick` is skipped for the next guest.
#[test]
fn guest_nick_taken_by_a_rename_is_skipped() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let mut a = server.connect();
    let next = format!(
        "guest-{}",
        a.nick["guest-".len()..].parse::<u32>().unwrap() + 1
    );
    a.send(&format!("/nick {next}"));
    a.line();
    let b = server.connect();
    assert_ne!(b.nick, next);
}

/// `/who` lists every nick, sorted, in one line.
#[test]
fn who_lists_every_nick() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    c[1].send("/nick zed");
    c[1].line();
    c[0].line();
    c[1].send("/who");
    let who = format!("*** 2 users in #lobby: {}, zed", c[0].nick);
    c[1].expect(&who);
}

/// `/me` is relayed to the others as an action.
#[test]
fn me_is_relayed_as_an_action() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send("/me waves");
    c[1].expect(&format!("* {nick} waves"));
    assert_eq!(c[0].sync(), Vec::<String>::new());
    c[0].send("/me");
    c[0].expect("*** usage: /me ACTION");
}

/// `/msg` reaches its recipient (nick matched case-insensitively) and nobody else.
#[test]
fn msg_reaches_only_its_recipient() {
    let server = TestServer::start();
    let mut c = server.clients(3);
    let from = c[0].nick.clone();
    let to = c[1].nick.to_uppercase();
    c[0].send(&format!("/msg {to} psst  secret"));
    c[1].expect(&format!("*{from}* psst  secret"));
    assert_eq!(
        c[2].sync(),
        Vec::<String>::new(),
        "a third client saw the message"
    );
    assert_eq!(c[0].sync(), Vec::<String>::new());
}

/// `/msg` to a nick nobody has, or without text, says what is wrong.
#[test]
fn msg_errors_say_what_is_wrong() {
    let server = TestServer::start();
    let mut a = server.connect();
    a.send("/msg nobody hello");
    a.expect("*** no such nick: nobody");
    a.send("/msg nobody");
    a.expect("*** usage: /msg NICK TEXT");
}

/// `/quit` says bye, closes the connection, and the others learn the reason.
#[test]
fn quit_says_bye_closes_and_tells_the_others_why() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send("/quit see you");
    assert_eq!(c[0].read_to_eof(), vec!["*** bye".to_string()]);
    c[1].expect(&format!("*** {nick} left (quit: see you)"));
    c[1].send("/quit");
    c[1].read_to_eof();
}

/// `/help` lists the commands, the room commands among them, every line marked as the
/// server's.
#[test]
fn help_lists_the_commands() {
    let server = TestServer::start();
    let mut a = server.connect();
    a.send("/help");
    let lines = a.sync();
    assert_eq!(lines[0], "*** commands:");
    let commands = [
        "/nick", "/who", "/join", "/part", "/list", "/me", "/msg", "/quit", "/help",
    ];
    for command in commands {
        assert!(
            lines.iter().any(|l| l.contains(command)),
            "{command} missing"
        );
    }
    assert!(lines.iter().all(|l| l.starts_with("*** ")));
}

/// An unknown command is named in the error, and nothing is relayed.
#[test]
fn unknown_command_is_named_in_the_error() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    c[0].send("/frobnicate now");
    c[0].expect("*** unknown command: /frobnicate (try /help)");
    assert_eq!(c[1].sync(), Vec::<String>::new());
}

/// `//text` says `/text`, for lines that must start with a slash.
#[test]
fn double_slash_says_a_literal_slash() {
    let server = TestServer::start();
    let mut c = server.clients(2);
    let nick = c[0].nick.clone();
    c[0].send("//shrug");
    c[1].expect(&format!("<{nick}> /shrug"));
}
