//! Connection storms: thousands of connections that come and go must cost the room a bounded
//! number of notices, and the notices it does get must still add up.

mod common;

use std::time::Instant;

use common::{Client, DEADLINE, TestServer, storm};
use pollchat::limits::{NOTICE_LIST, NOTICE_ROUNDS_BURST, NOTICE_ROUNDS_PER_SEC};

/// How many people a join or leave line speaks of: one, or the count a summary starts with.
fn people(line: &str, verb: &str) -> Option<usize> {
    let text = line.strip_prefix("*** ")?;
    if text.ends_with(&format!(" {verb}")) || text.contains(&format!(" {verb} (")) {
        return Some(1);
    }
    let (count, _) = text.split_once(&format!(" {verb}: "))?;
    count.parse().ok()
}

/// A watcher in the room through a storm of 3,000 connections gets a few notice lines a
/// second, not two per connection; connections that came and went before their join was said
/// cost nothing; and what it is told adds up: joins said minus leaves said is who is here.
#[test]
fn a_connection_storm_costs_the_room_a_few_notice_lines_and_they_add_up() {
    let server = TestServer::start();
    let mut watcher = server.connect();
    let started = Instant::now();
    let kept = storm(server.addr, 3000, 100);
    // The storm's last notices come within a round or two; read until they add up.
    let present = kept.len();
    let (mut joined, mut left, mut lines) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + DEADLINE;
    while joined - left != present {
        assert!(
            Instant::now() < deadline,
            "joins {joined} - leaves {left} != {present}"
        );
        watcher.send("/who");
        for l in watcher.read_until(|l| l.contains(" here: ")).0 {
            lines += 1;
            joined += people(&l, "joined").unwrap_or(0);
            left += people(&l, "left").unwrap_or(0);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rounds = f64::from(NOTICE_ROUNDS_BURST) + NOTICE_ROUNDS_PER_SEC * secs + 2.0;
    // A round says at most NOTICE_LIST lines of each kind.
    let most = (rounds * 2.0 * NOTICE_LIST as f64) as usize;
    assert!(
        lines <= most,
        "{lines} notice lines for 3,000 connections in {secs:.1} s (at most {most})"
    );
    drop(kept);
}

/// A newcomer does not hear about itself, and hears of those who come after it, as before.
#[test]
fn notices_reach_those_who_were_there() {
    let server = TestServer::start();
    let mut first = server.connect();
    let mut second = Client::connect(server.addr);
    first.expect(&format!("*** {} joined", second.nick));
    let third = Client::connect(server.addr);
    first.expect(&format!("*** {} joined", third.nick));
    second.expect(&format!("*** {} joined", third.nick));
    assert!(
        !second.sync().iter().any(|l| l.contains(&second.nick)),
        "a client heard of its own join"
    );
}
