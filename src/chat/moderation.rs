//! Moderation, the chat's fourth part: the operators (`operators.rs`), the bans
//! (`bans.rs`) and their counters, and what they mean for the clients here. A ban or a kick is
//! an event like any other, applied on every instance as the bus hands it back. Like a room,
//! moderation never sends a client away itself: whoever a ban is on, or a kick is for, is told
//! why and handed back as a [`CutOff`] for the chat to let go with its last lines
//! (`Chat::depart`, as for `/quit`). A banned nick is never handed out as a guest nick.

use std::collections::BTreeMap;

use log::{info, warn};

use super::{Nicks, Requests};
use crate::bans::{Ban, BanList, Bans, Mask, describe_left, now_ms};
use crate::bus::What;
use crate::connection::{CloseReason, ConnRef};
use crate::limits::MAX_BANS;
use crate::operators::Operators;
use crate::protocol;
use crate::room::{CutOff, Outbox};

/// The operators and the bans, kept in step with the chat's clients.
#[derive(Debug, Default)]
pub struct Moderation {
    /// The operators' table, who is one now, and the rules they keep.
    pub operators: Operators,
    /// Who may not be here, and the file they are kept in.
    pub bans: Bans,
    /// Moderation actions by kind, for `/metrics`.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Moderation {
    pub fn count(&mut self, action: &'static str) {
        *self.counts.entry(action).or_default() += 1;
    }

    /// The next guest nick nobody here has and no ban is on.
    pub fn guest_nick(&self, nicks: &mut Nicks) -> String {
        let now = now_ms();
        loop {
            let nick = nicks.free_guest_nick();
            if self.bans.list.on_nick(&nick, now).is_none() {
                return nick;
            }
        }
    }

    /// A ban from the bus (placed here or on another instance): kept, and enforced.
    pub fn ban(&mut self, mask: &Mask, ban: &Ban, nicks: &Nicks, out: &mut impl Outbox) -> CutOff {
        if !self.bans.list.insert(mask.clone(), ban.clone()) {
            warn!("ban on {mask} not kept: the list holds its maximum of {MAX_BANS}");
            return CutOff::new();
        }
        let time = ban.until.map_or("permanent".into(), |t| {
            format!("for {}", describe_left(t.saturating_sub(now_ms())))
        });
        info!("operator {} banned {mask} ({time}): {}", ban.by, ban.reason);
        self.bans.changed();
        self.enforce(nicks, out)
    }

    pub fn unban(&mut self, mask: &Mask, by: &str) {
        if self.bans.list.remove(mask).is_some() {
            info!("operator {by} lifted the ban on {mask}");
            self.bans.changed();
        }
    }

    /// Replaces every ban (a reload of the bans file, the backplane's ban hash), and hands back
    /// whoever the new list bans.
    pub fn replace_bans(&mut self, list: BanList, nicks: &Nicks, out: &mut impl Outbox) -> CutOff {
        self.bans.list = list;
        self.bans.changed();
        self.enforce(nicks, out)
    }

    /// The backplane's ban hash is new: it is given this list (every ban published, so every
    /// instance gets it).
    pub fn publish_bans(&self, requests: &mut Requests) {
        for (mask, ban) in self.bans.list.live(now_ms()) {
            let (mask, ban) = (mask.clone(), ban.clone());
            requests.publish(0, What::Ban { mask, ban });
        }
    }

    /// A kick (checked where it was made): `nick`, if it is here, is told who kicked it and why.
    pub fn kick(by: &str, nick: &str, why: &str, nicks: &Nicks, out: &mut impl Outbox) -> CutOff {
        let Some(who) = nicks.owner_of(nick) else {
            return CutOff::new();
        };
        let reason = CloseReason::Kicked(format!("kicked by {by} ({why})"));
        vec![(who, told(who, &protocol::kicked(by, why), reason, out))]
    }

    /// Every client a ban in force is on, told so.
    fn enforce(&self, nicks: &Nicks, out: &mut impl Outbox) -> CutOff {
        let now = now_ms();
        let banned = nicks.every().filter_map(|(who, nick, _)| {
            let ip = out.peer(who).map(|(ip, _)| ip);
            let ban = self.bans.list.on_client(nick, ip, now)?;
            info!("token {}: {nick} is banned: {}", who.token, ban.reason);
            let reason = CloseReason::Banned(ban.reason.clone());
            Some((who, told(who, &protocol::banned(&ban.reason), reason, out)))
        });
        banned.collect()
    }
}

/// Tells `who` why it must go. Returns why it goes: `reason`, or, if that line put it over the
/// hard output limit, that.
fn told(who: ConnRef, line: &str, reason: CloseReason, out: &mut impl Outbox) -> CloseReason {
    out.tell(who, line).err().unwrap_or(reason)
}
