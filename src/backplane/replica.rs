//! Who is on the other instances, as far as this one has heard: what `/who` lists besides
//! the local clients, and what `/msg` checks before it publishes.
//!
//! Each instance keeps this copy itself instead of asking Redis at every `/who`, so `/who`
//! stays an immediate, local answer like every other command. It is fed by the events on
//! the channel (join, leave, rename) and corrected by each instance's `HELLO`, which lists
//! all its clients and arrives every nick TTL / 3. An instance not heard from for a whole TTL
//! is dropped with all its clients: it died without a word, and its nicks in Redis have
//! expired by then too. The copy can be briefly behind (an event in flight); the nick keys
//! in Redis, not this copy, decide who owns a nick.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::bus::{Event, What};
use crate::protocol::nick_key;

#[derive(Debug, Default)]
pub struct Replica {
    /// Instance id → its clients (lower-cased nick → nick as shown) and when it last spoke.
    instances: HashMap<String, Instance>,
}

#[derive(Debug)]
struct Instance {
    nicks: HashMap<String, String>,
    last_heard: Instant,
}

impl Replica {
    /// Applies an event from another instance. Returns true if that instance was unknown
    /// until now (so this one can introduce itself at once rather than after TTL / 3).
    pub fn apply(&mut self, event: &Event, now: Instant) -> bool {
        if event.what == What::Bye {
            self.instances.remove(&event.origin);
            return false;
        }
        let known = self.instances.contains_key(&event.origin);
        let instance = self
            .instances
            .entry(event.origin.clone())
            .or_insert_with(|| Instance {
                nicks: HashMap::new(),
                last_heard: now,
            });
        instance.last_heard = now;
        let nicks = &mut instance.nicks;
        match &event.what {
            What::Joined { nick } => {
                nicks.insert(nick_key(nick), nick.clone());
            }
            What::Left { nick, .. } => {
                nicks.remove(&nick_key(nick));
            }
            What::Renamed { old, new } => {
                nicks.remove(&nick_key(old));
                nicks.insert(nick_key(new), new.clone());
            }
            What::Hello { nicks: all } => {
                *nicks = all.iter().map(|n| (nick_key(n), n.clone())).collect();
            }
            What::Say { .. } | What::Me { .. } | What::Msg { .. } | What::Bye => {}
        }
        !known
    }

    /// Forgets instances silent for longer than `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.instances
            .retain(|_, i| now.saturating_duration_since(i.last_heard) <= ttl);
    }

    /// Forgets everyone (the backplane is down: nobody else can be reached).
    pub fn clear(&mut self) {
        self.instances.clear();
    }

    /// Forgets whoever had `nick` elsewhere: Redis just granted it to this instance, so any
    /// holder this copy still lists is gone (an instance that died and has not expired yet).
    pub fn forget(&mut self, nick: &str) {
        let key = nick_key(nick);
        for instance in self.instances.values_mut() {
            instance.nicks.remove(&key);
        }
    }

    /// Whether some other instance has a client under this nick (ignoring case).
    pub fn has(&self, nick: &str) -> bool {
        let key = nick_key(nick);
        self.instances.values().any(|i| i.nicks.contains_key(&key))
    }

    /// Every client of every other instance.
    pub fn nicks(&self) -> impl Iterator<Item = &str> {
        self.instances
            .values()
            .flat_map(|i| i.nicks.values().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: &str, what: What) -> Event {
        Event {
            origin: origin.into(),
            conn: 1,
            what,
        }
    }

    #[test]
    fn events_and_hellos_keep_the_copy_and_silence_expires_it() {
        let t0 = Instant::now();
        let mut r = Replica::default();
        assert!(r.apply(&from("a", What::Joined { nick: "Al".into() }), t0));
        assert!(!r.apply(
            &from(
                "a",
                What::Renamed {
                    old: "Al".into(),
                    new: "Bo".into()
                }
            ),
            t0
        ));
        assert!(r.has("bo") && !r.has("al"));
        let hello = What::Hello {
            nicks: vec!["Cy".into(), "Di".into()],
        };
        assert!(r.apply(&from("b", hello), t0 + Duration::from_secs(2)));
        let mut all: Vec<&str> = r.nicks().collect();
        all.sort_unstable();
        assert_eq!(all, ["Bo", "Cy", "Di"]);
        r.expire(t0 + Duration::from_millis(2500), Duration::from_secs(2));
        assert!(!r.has("bo") && r.has("cy"));
        r.apply(&from("b", What::Bye), t0);
        assert_eq!(r.nicks().count(), 0);
    }
}
