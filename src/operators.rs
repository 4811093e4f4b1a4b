//! Operators: the `[operators]` table (a name and its argon2 hash in PHC format, from
//! `pollchat hash-password`), who is an operator now, and the limit on guessing passwords.
//!
//! Checking a password runs argon2 on the loop's one thread: some 20 ms with
//! `hash-password`'s parameters (docs/running.md has the figure), during which nobody else is
//! served. So the checks that cost nothing come first (TLS, then the guessing limit), and an
//! address only gets a guess checked once per [`OPER_RETRY`], [`OPER_FAILURES`] times, then
//! none for [`OPER_LOCKOUT`]: that, not argon2, bounds what `/oper` can cost the loop.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params};

use crate::config::Config;
use crate::connection::ConnRef;
use crate::limits::{OPER_ADDRESSES, OPER_FAILURES, OPER_LOCKOUT, OPER_RETRY};

/// One `--operators NAME=PHC` (in the file, a line of the `[operators]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub hash: String,
}

/// `NAME=PHC`, checked now so that a hash that cannot be used stops the start (or the reload),
/// naming its operator, rather than failing every `/oper` later.
pub fn parse_operator(text: &str) -> Result<Operator, String> {
    let (name, hash) = text.split_once('=').unwrap_or((text, ""));
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!(
            "{name:?} is not an operator name (NAME=PHC, no spaces)"
        ));
    }
    let usable = PasswordHash::new(hash)
        .map_err(|e| e.to_string())
        .and_then(|h| {
            argon2::Algorithm::new(h.algorithm.as_str()).map_err(|e| e.to_string())?;
            Params::try_from(&h).map(drop).map_err(|e| e.to_string())
        });
    match usable {
        Ok(()) => Ok(Operator {
            name: name.to_string(),
            hash: hash.to_string(),
        }),
        Err(why) => Err(format!(
            "the hash of operator {name} is not an argon2 PHC string ({why}); make one with \
             `pollchat hash-password`"
        )),
    }
}

/// `pollchat hash-password`: the PHC string of `password`, with argon2id's default parameters
/// (19 MiB, 2 passes, 1 lane: OWASP's first choice), a random salt in it.
pub fn hash_password(password: &str) -> Result<String, String> {
    let hash = Argon2::default().hash_password(password.as_bytes());
    hash.map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `/oper` must be refused because its password would cross a network in the clear:
/// a plain connection from anywhere but this machine, unless `--oper-plaintext`.
pub fn plaintext_refused(peer: IpAddr, encrypted: bool, allowed: bool) -> bool {
    !encrypted && !allowed && !peer.to_canonical().is_loopback()
}

/// What came of an `/oper`.
#[derive(Debug, PartialEq, Eq)]
pub enum Oper {
    /// The client is operator `name` now.
    Granted,
    /// A wrong name or password (the same answer for both): the address's failures in a row.
    Denied(u32),
    /// This address failed too recently: asked to wait this long, nothing checked.
    Wait(Duration),
    /// Plain text from another machine.
    UseTls,
}

/// The operators' table, who is one now, and the guesses per address.
#[derive(Debug, Default)]
pub struct Operators {
    /// Name → PHC string. Replaced whole by [`Operators::configure`] (a reload).
    table: BTreeMap<String, String>,
    /// Who is an operator now, and as which name.
    opers: HashMap<ConnRef, String>,
    /// Address (an IPv6 one by its /64) → failures and the last one; at most
    /// [`OPER_ADDRESSES`].
    guesses: HashMap<IpAddr, (u32, Instant)>,
    oper_plaintext: bool,
    pub topic_ops_only: bool,
}

impl Operators {
    /// The operators and the rules, from the configuration: at the start, and at a reload.
    /// An operator whose name is gone from the table stops being one.
    pub fn configure(&mut self, config: &Config) {
        let table = config
            .operators
            .iter()
            .map(|o| (o.name.clone(), o.hash.clone()));
        self.table = table.collect();
        self.opers.retain(|_, name| self.table.contains_key(name));
        (self.oper_plaintext, self.topic_ops_only) = (config.oper_plaintext, config.topic_ops_only);
    }

    /// The operator name `who` has, if it is one.
    pub fn name_of(&self, who: ConnRef) -> Option<&str> {
        self.opers.get(&who).map(String::as_str)
    }

    /// `who` left: it is nobody's operator any more.
    pub fn forget(&mut self, who: ConnRef) {
        self.opers.remove(&who);
    }

    /// `/oper NAME PASSWORD` from `who` at `peer`. See the module documentation for the order.
    pub fn oper(
        &mut self,
        who: ConnRef,
        peer: IpAddr,
        tls: bool,
        name: &str,
        password: &str,
    ) -> Oper {
        if plaintext_refused(peer, tls, self.oper_plaintext) {
            return Oper::UseTls;
        }
        let (now, at) = (Instant::now(), address_key(peer));
        if let Some(&(failures, last)) = self.guesses.get(&at) {
            let wait = if failures >= OPER_FAILURES {
                OPER_LOCKOUT
            } else {
                OPER_RETRY
            };
            if now < last + wait {
                return Oper::Wait(last + wait - now);
            }
        } else if self.guesses.len() >= OPER_ADDRESSES {
            self.guesses
                .retain(|_, (_, last)| now < *last + OPER_LOCKOUT);
            if self.guesses.len() >= OPER_ADDRESSES {
                return Oper::Wait(OPER_RETRY);
            }
        }
        // An unknown name costs a check all the same, so timing does not tell names apart.
        let hash = self.table.get(name).or(self.table.values().next());
        let verified = hash.is_some_and(|hash| {
            let check = PasswordHash::new(hash)
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h));
            matches!(check, Ok(Ok(()))) && self.table.contains_key(name)
        });
        if verified {
            self.guesses.remove(&at);
            self.opers.insert(who, name.to_string());
            return Oper::Granted;
        }
        let entry = self.guesses.entry(at).or_insert((0, now));
        // A failure after a lockout, or after as long a quiet, starts a new count.
        let fresh = entry.0 >= OPER_FAILURES || now >= entry.1 + OPER_LOCKOUT;
        *entry = (if fresh { 1 } else { entry.0 + 1 }, now);
        Oper::Denied(entry.0)
    }
}

/// The address guesses are counted under: an IPv6 host is given a /64, so it is one address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}
