//! Clients that fail in the middle of things: the others never notice.

mod common;

use std::thread;

use common::{Client, TestServer};

/// A client that resets its connection while the server still has output queued for it is
/// dropped with the reason; the others keep chatting.
#[test]
fn reset_mid_write_does_not_disturb_the_others() {
    let server = TestServer::with(|c| c.max_output = 64 * 1024 * 1024);
    let victim = Client::with_small_receive_buffer(server.addr);
    let mut sender = server.connect();
    let mut watcher = server.connect();
    let victim_nick = victim.nick.clone();
    sender.sync();
    let nick = sender.nick.clone();
    // ~5 MB: more than the kernel buffers hold (see limits.rs), so the server is in the
    // middle of writing queued output to the victim when it resets.
    const LINES: usize = 25_000;
    let pad = "q".repeat(200);
    let sending = thread::spawn(move || {
        for n in 0..LINES {
            sender.send(&format!("{n} {pad}"));
        }
        sender
    });
    let pad = "q".repeat(200);
    for n in 0..LINES {
        assert_eq!(watcher.line(), format!("<{nick}> {n} {pad}"));
    }
    let mut sender = sending.join().unwrap();
    victim.reset();
    sender.send("after the reset");
    // The leave notice and the next line may come in either order; both must come.
    let (mut saw_notice, mut saw_line) = (false, false);
    while !(saw_notice && saw_line) {
        let line = watcher.line();
        if line.starts_with(&format!("*** {victim_nick} left")) {
            assert!(line.contains("left (connection"), "reason: {line}");
            saw_notice = true;
        } else {
            assert_eq!(line, format!("<{nick}> after the reset"));
            saw_line = true;
        }
    }
}

/// Many clients connecting and vanishing (with resets) while two others chat: the chat goes
/// on and the server keeps accepting.
#[test]
fn churn_of_vanishing_clients_does_not_stop_the_chat() {
    let server = TestServer::with(|c| c.quiet_joins = true);
    let mut c = [server.connect(), server.connect()];
    let nick = c[0].nick.clone();
    let addr = server.addr;
    let churn = thread::spawn(move || {
        for i in 0..200 {
            let client = Client::raw(addr);
            if i % 2 == 0 {
                client.reset();
            }
        }
    });
    for n in 0..200 {
        c[0].send(&format!("line {n}"));
    }
    for n in 0..200 {
        c[1].expect(&format!("<{nick}> line {n}"));
    }
    churn.join().unwrap();
    let mut late = server.connect();
    late.sync();
}
