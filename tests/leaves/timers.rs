//! `timers`: deadlines fire in order and not before, dead timers are swept without upsetting
//! the order, and a heap that emptied gives its room back.

use std::time::{Duration, Instant};

use pollchat::connection::ConnRef;
use pollchat::timers::{Timer, Timers};

#[test]
fn timers_fire_in_deadline_order_and_not_before() {
    let t0 = Instant::now();
    let mut timers = Timers::default();
    timers.add(t0 + Duration::from_secs(2), Timer::ShutdownDeadline);
    timers.add(t0 + Duration::from_secs(1), Timer::ResumeAccept);
    assert_eq!(timers.timeout(t0), Some(Duration::from_secs(1)));
    assert_eq!(timers.pop_due(t0), None);
    let t3 = t0 + Duration::from_secs(3);
    assert_eq!(timers.pop_due(t3), Some(Timer::ResumeAccept));
    assert_eq!(timers.pop_due(t3), Some(Timer::ShutdownDeadline));
    assert_eq!(timers.pop_due(t3), None);
}

/// The room a storm of deadlines took is given back once they have fired.
#[test]
fn a_heap_that_emptied_gives_its_room_back() {
    let t0 = Instant::now();
    let mut timers = Timers::default();
    for token in 0..10_000 {
        timers.add(t0, Timer::Handshake(ConnRef { token, id: 1 }));
    }
    assert!(timers.capacity() >= 10_000);
    while timers.pop_due(t0).is_some() {}
    assert!(
        timers.capacity() <= 64,
        "kept room for {}",
        timers.capacity()
    );
}

#[test]
fn retain_drops_dead_timers_and_keeps_the_order() {
    let t0 = Instant::now();
    let mut timers = Timers::default();
    for token in 0..100 {
        let r = ConnRef { token, id: 1 };
        timers.add(
            t0 + Duration::from_millis(100 - token as u64),
            Timer::Idle(r),
        );
    }
    timers.retain(|t| matches!(t, Timer::Idle(r) if r.token % 10 == 0));
    assert_eq!(timers.len(), 10);
    let later = t0 + Duration::from_secs(1);
    let order: Vec<Timer> = std::iter::from_fn(|| timers.pop_due(later)).collect();
    let expected: Vec<Timer> = (0..10)
        .rev()
        .map(|i| {
            Timer::Idle(ConnRef {
                token: i * 10,
                id: 1,
            })
        })
        .collect();
    assert_eq!(order, expected);
}
