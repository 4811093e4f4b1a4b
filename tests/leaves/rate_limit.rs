//! `rate_limit`: a token bucket's burst and rate, and `--connect-rate`'s table of addresses
//! (refusals with their wait, loopback exempt unless asked, idle addresses forgotten).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pollchat::rate_limit::{Admit, ConnectRates, TokenBucket};

#[test]
fn a_burst_passes_then_the_rate_applies() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(10.0, 3, t0);
    assert!((0..3).all(|_| b.try_take(t0)));
    assert!(!b.try_take(t0));
    let next = b.next_token_at(t0);
    assert_eq!(next - t0, Duration::from_millis(100));
    assert!(b.try_take(next));
    assert!(!b.try_take(next));
}

#[test]
fn an_address_past_its_burst_is_refused_until_a_token_is_due() {
    let t0 = Instant::now();
    let mut rates = ConnectRates::new(2.0, 3, true);
    let ip = IpAddr::from([192, 0, 2, 1]);
    assert!((0..3).all(|_| rates.check(ip, t0) == Admit::Yes));
    assert_eq!(
        rates.check(ip, t0),
        Admit::No {
            wait: Duration::from_millis(500)
        }
    );
    assert_eq!(rates.check(ip, t0 + Duration::from_millis(500)), Admit::Yes);
    assert_eq!(rates.check(IpAddr::from([192, 0, 2, 2]), t0), Admit::Yes);
}

#[test]
fn loopback_is_exempt_unless_asked_and_zero_turns_it_off() {
    let t0 = Instant::now();
    let local = IpAddr::from([127, 0, 0, 1]);
    let mut exempt = ConnectRates::new(1.0, 1, false);
    assert!((0..100).all(|_| exempt.check(local, t0) == Admit::Yes));
    let mut limited = ConnectRates::new(1.0, 1, true);
    assert_eq!(limited.check(local, t0), Admit::Yes);
    assert_ne!(limited.check(local, t0), Admit::Yes);
    let mut off = ConnectRates::new(0.0, 1, true);
    assert!((0..100).all(|_| off.check(local, t0) == Admit::Yes));
}

#[test]
fn idle_addresses_are_forgotten_and_the_table_stays_bounded() {
    let t0 = Instant::now();
    let mut rates = ConnectRates::new(10.0, 2, true);
    for round in 0..40u32 {
        // A new crowd of addresses every 10 s: the crowd before is idle by then.
        let now = t0 + Duration::from_secs(u64::from(round) * 10);
        for i in 0..1000u32 {
            let ip = IpAddr::from((round * 1000 + i).to_be_bytes());
            rates.check(ip, now);
        }
    }
    assert!(rates.len() <= 2048, "{} addresses remembered", rates.len());
}

#[test]
fn a_long_silence_saves_up_only_the_burst() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(10.0, 2, t0);
    let later = t0 + Duration::from_secs(3600);
    assert!(b.try_take(later) && b.try_take(later));
    assert!(!b.try_take(later));
}
