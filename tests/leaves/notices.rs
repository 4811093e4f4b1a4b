//! Join and leave notices (`pollchat::notices`): a few said one line each, a burst in one
//! line, a client that comes and goes before its join is said costs nothing, rounds wait for
//! their bucket.

use std::time::{Duration, Instant};

use pollchat::bus::Origin;
use pollchat::limits::NOTICE_ROUNDS_BURST;
use pollchat::notices::{Notice, Notices};

fn lines(notices: &[Notice]) -> Vec<&str> {
    notices.iter().map(|n| n.line.as_str()).collect()
}

#[test]
fn a_few_notices_are_said_one_line_each_as_before() {
    let t0 = Instant::now();
    let mut n = Notices::new(t0);
    n.joined(Origin::HERE, 1, "ann", 0);
    n.left(Origin::HERE, 7, "bo", "quit", 1);
    assert_eq!(
        lines(&n.round(t0).unwrap()),
        ["*** ann joined\n", "*** bo left (quit)\n"]
    );
    assert!(n.round(t0).unwrap().is_empty());
}

#[test]
fn a_burst_is_one_line_naming_the_first_few() {
    let t0 = Instant::now();
    let mut n = Notices::new(t0);
    for i in 0..50 {
        n.joined(Origin::HERE, i, &format!("g{i}"), i);
    }
    let said = n.round(t0).unwrap();
    assert_eq!(lines(&said), ["*** 50 joined: g0, g1, g2 and 47 more\n"]);
    assert_eq!(
        said[0].heard_up_to, 0,
        "heard by those there before the burst"
    );
}

#[test]
fn a_client_that_comes_and_goes_before_its_join_is_said_costs_nothing() {
    let t0 = Instant::now();
    let mut n = Notices::new(t0);
    n.joined(Origin::HERE, 1, "ann", 0);
    n.left(Origin::HERE, 1, "ann", "connection reset", 1);
    assert!(n.round(t0).unwrap().is_empty());
}

#[test]
fn rounds_past_the_burst_wait_for_the_bucket() {
    let t0 = Instant::now();
    let mut n = Notices::new(t0);
    for i in 0..u64::from(NOTICE_ROUNDS_BURST) {
        n.joined(Origin::HERE, i, "x", 0);
        assert_eq!(n.round(t0).unwrap().len(), 1);
    }
    n.joined(Origin::HERE, 99, "late", 0);
    let at = n.round(t0).unwrap_err();
    assert!(at > t0 && at <= t0 + Duration::from_secs(1));
    assert_eq!(lines(&n.round(at).unwrap()), ["*** late joined\n"]);
}
