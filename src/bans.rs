//! Bans: who may not be here ([`Mask`]: a nick, an address or a CIDR range), until when, and
//! the `bans-file` they are kept in.
//!
//! Addresses are kept as IPv6 bits, an IPv4 address as its IPv4-mapped form (`::ffff:a.b.c.d`,
//! a `/24` as a `/120`), so one rule serves both families and a peer that a dual-stack
//! listener reports as `::ffff:203.0.113.7` matches a ban on `203.0.113.0/24`. Looking up an
//! address costs one hash lookup per prefix length in use (at most 129, whatever the number
//! of bans): accept-time refusal stays O(1) in the size of the list.
//!
//! Expiry is wall-clock time in Unix milliseconds, not `Instant`: bans outlive the process (the
//! file) and cross machines (the backplane). Expired bans are ignored where they are looked up
//! and dropped when the list is next changed or saved; nothing needs a timer.
//!
//! One ban is one line of text, the same in the file, in the backplane's ban hash and in its
//! `BAN` event: `MASK UNTIL BY REASON`, `UNTIL` being Unix milliseconds or `never`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::error;

use crate::framing::sanitize;
use crate::limits::MAX_BANS;
use crate::protocol::{is_valid_nick, nick_key};

/// Whom a ban is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mask {
    /// A nick, lower-cased (nicks are unique ignoring case).
    Nick(String),
    /// An address range: IPv6 bits (IPv4 mapped), host bits zero, and the prefix length.
    Net { bits: u128, len: u8 },
}

/// The IPv6 bits of an address, an IPv4 one mapped (`::ffff:a.b.c.d`).
fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// `bits` with all but the first `len` bits cleared.
fn masked(bits: u128, len: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl Mask {
    /// `alice`, `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`. A nick never holds `.`, `:`
    /// or `/`, so which kind is meant is never in doubt. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Mask, String> {
        if !text.contains(['.', ':', '/']) {
            return match is_valid_nick(text) {
                true => Ok(Mask::Nick(nick_key(text))),
                false => Err(format!("\"{text}\" is neither a nick nor an address")),
            };
        }
        let (addr, len) = text.split_once('/').unwrap_or((text, ""));
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{addr}\" is not an IPv4 or IPv6 address"))?;
        let (offset, max) = if ip.is_ipv4() { (96, 32) } else { (0, 128) };
        let len = match len {
            "" if !text.contains('/') => max,
            len => len
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("\"/{len}\" is not a prefix length from 0 to {max}"))?,
        };
        let len = len + offset;
        Ok(Mask::Net {
            bits: masked(bits_of(ip), len),
            len,
        })
    }

    /// Whether a client with this nick and address is banned by this mask.
    pub fn covers(&self, nick: &str, ip: Option<IpAddr>) -> bool {
        match self {
            Mask::Nick(key) => *key == nick_key(nick),
            Mask::Net { bits, len } => ip.is_some_and(|ip| masked(bits_of(ip), *len) == *bits),
        }
    }
}

/// The mask as it is written back: IPv4 ranges in IPv4, a single address without `/`.
impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bits, len) = match *self {
            Mask::Nick(ref nick) => return f.write_str(nick),
            Mask::Net { bits, len } => (bits, len),
        };
        let v6 = std::net::Ipv6Addr::from(bits);
        let (ip, len, max) = match v6.to_ipv4_mapped() {
            Some(v4) if len >= 96 => (IpAddr::V4(v4), len - 96, 32),
            _ => (IpAddr::V6(v6), len, 128),
        };
        match len == max {
            true => write!(f, "{ip}"),
            false => write!(f, "{ip}/{len}"),
        }
    }
}

/// `30s`, `10m`, `2h`, `7d`; `None` if `text` is not a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    let n: u64 = digits
        .parse()
        .ok()
        .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))?;
    n.checked_mul(unit)
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

/// Time left, rounded up, in the largest unit that keeps it readable: `45s`, `10m`, `2h`, `7d`.
pub fn describe_left(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s.div_ceil(60)),
        3600..86_400 => format!("{}h", s.div_ceil(3600)),
        _ => format!("{}d", s.div_ceil(86_400)),
    }
}

/// Now, in Unix milliseconds (the clock bans expire by).
pub fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One ban: until when, placed by whom, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Unix milliseconds; `None` for a ban that lasts until `/unban`.
    pub until: Option<u64>,
    /// The operator who placed it.
    pub by: String,
    pub reason: String,
}

impl Ban {
    pub fn is_live(&self, now: u64) -> bool {
        self.until.is_none_or(|until| until > now)
    }

    /// The ban's line (see the module documentation).
    pub fn line(&self, mask: &Mask) -> String {
        let until = self.until.map_or("never".to_string(), |t| t.to_string());
        let (by, reason) = (&self.by, &self.reason);
        format!("{mask} {until} {by} {reason}")
    }

    /// A ban's line, read back (from the file, the backplane's hash or a `BAN` event).
    pub fn parse_line(line: &str) -> Result<(Mask, Ban), String> {
        let mut fields = line.splitn(4, ' ');
        let (Some(mask), Some(until), Some(by)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err("expected MASK UNTIL BY REASON".to_string());
        };
        let until = match until {
            "never" => None,
            ms => Some(ms.parse().map_err(|_| format!("\"{ms}\" is not a time"))?),
        };
        let ban = Ban {
            until,
            by: by.to_string(),
            reason: sanitize(fields.next().unwrap_or_default().as_bytes()),
        };
        Ok((Mask::parse(mask)?, ban))
    }
}

/// Every ban, bounded by [`MAX_BANS`].
#[derive(Debug, Default)]
pub struct BanList {
    bans: HashMap<Mask, Ban>,
    /// The prefix lengths of the address bans: an address is looked up once per length in
    /// use. A removal leaves its length here until the next [`BanList::purge`].
    lens: BTreeSet<u8>,
}

impl BanList {
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Adds or replaces a ban; false if the list is full (and `mask` not in it).
    pub fn insert(&mut self, mask: Mask, ban: Ban) -> bool {
        if self.bans.len() >= MAX_BANS && !self.bans.contains_key(&mask) {
            return false;
        }
        if let Mask::Net { len, .. } = mask {
            self.lens.insert(len);
        }
        self.bans.insert(mask, ban);
        true
    }

    pub fn get(&self, mask: &Mask) -> Option<&Ban> {
        self.bans.get(mask)
    }

    pub fn remove(&mut self, mask: &Mask) -> Option<Ban> {
        self.bans.remove(mask)
    }

    /// The ban in force `now` on this address, if any.
    pub fn on_address(&self, ip: IpAddr, now: u64) -> Option<&Ban> {
        let bits = bits_of(ip);
        self.lens.iter().find_map(|&len| {
            let mask = Mask::Net {
                bits: masked(bits, len),
                len,
            };
            self.bans.get(&mask).filter(|b| b.is_live(now))
        })
    }

    /// The ban in force on this address now: the check at accept, which costs nothing but a
    /// test of emptiness while no address is banned.
    pub fn refusal(&self, ip: IpAddr) -> Option<&Ban> {
        match self.lens.is_empty() {
            true => None,
            false => self.on_address(ip, now_ms()),
        }
    }

    /// The ban in force `now` on this nick, if any.
    pub fn on_nick(&self, nick: &str, now: u64) -> Option<&Ban> {
        let ban = self.bans.get(&Mask::Nick(nick_key(nick)));
        ban.filter(|b| b.is_live(now))
    }

    /// The ban in force on a client with this nick and address.
    pub fn on_client(&self, nick: &str, ip: Option<IpAddr>, now: u64) -> Option<&Ban> {
        let by_address = ip.and_then(|ip| self.on_address(ip, now));
        self.on_nick(nick, now).or(by_address)
    }

    /// The bans in force `now`, by mask.
    pub fn live(&self, now: u64) -> Vec<(&Mask, &Ban)> {
        let mut live: Vec<_> = self.bans.iter().filter(|(_, b)| b.is_live(now)).collect();
        live.sort_unstable_by_key(|&(mask, _)| mask);
        live
    }

    /// Drops the bans that expired, and the prefix lengths no ban has any more.
    pub fn purge(&mut self, now: u64) {
        self.bans.retain(|_, ban| ban.is_live(now));
        let len = |mask: &Mask| match *mask {
            Mask::Net { len, .. } => Some(len),
            Mask::Nick(_) => None,
        };
        self.lens = self.bans.keys().filter_map(len).collect();
    }

    /// Writes the list to `path` whole: into a temporary file beside it, flushed to the disk,
    /// then renamed over it, so the file is always the old list or the new, never half of one.
    pub fn save(&self, path: &Path, now: u64) -> io::Result<()> {
        let mut text = String::from("# pollchat bans: MASK UNTIL(unix ms, or never) BY REASON\n");
        for (mask, ban) in self.live(now) {
            text.push_str(&ban.line(mask));
            text.push('\n');
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = fs::File::create(&tmp).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        match written.and_then(|()| fs::rename(&tmp, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// The bans in the file at `path` (none if there is no file yet), expired ones left out; or
/// one sentence naming the file, the line and what is wrong with it. A SIGHUP reload can call
/// this and keep the bans it has on an error.
pub fn load(path: &Path) -> Result<BanList, String> {
    let text = match fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BanList::default()),
        Err(e) => {
            let why = crate::error::describe(&e);
            return Err(format!("cannot read bans file {}: {why}", path.display()));
        }
        Ok(text) => text,
    };
    let (mut list, now) = (BanList::default(), now_ms());
    for (n, line) in text.lines().enumerate() {
        let at = |why: String| format!("bans file {}, line {}: {why}", path.display(), n + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (mask, ban) = Ban::parse_line(line).map_err(at)?;
        if ban.is_live(now) && !list.insert(mask, ban) {
            return Err(at(format!("more than {MAX_BANS} bans")));
        }
    }
    Ok(list)
}

/// The chat's bans and where they are kept: a list changed in a batch is purged and saved
/// once, at its end ([`Bans::save_if_changed`]).
#[derive(Debug, Default)]
pub struct Bans {
    pub list: BanList,
    /// `bans-file`; `None` keeps bans in memory only.
    file: Option<PathBuf>,
    changed: bool,
}

impl Bans {
    /// `list`, as [`load`] read it from `file` (kept there from now on).
    pub fn new(file: Option<PathBuf>, list: BanList) -> Bans {
        Bans {
            list,
            file,
            ..Bans::default()
        }
    }

    /// The list changed: save it at the end of the batch.
    pub fn changed(&mut self) {
        self.changed = true;
    }

    /// Writes the file if the list changed since it was last written. A failure is logged
    /// and tried again at the next change: the bans in force are the ones in memory.
    pub fn save_if_changed(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        let now = now_ms();
        self.list.purge(now);
        let Some(path) = &self.file else {
            return;
        };
        if let Err(e) = self.list.save(path, now) {
            let why = crate::error::describe(&e);
            error!("cannot save the bans file {}: {why}", path.display());
        }
    }
}
