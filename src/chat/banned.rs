//! Bans in the chat: a ban is an event like any other (`What::Ban`), so it is applied here on
//! every instance as the bus hands it back, and whoever it is on is sent away with its last
//! lines (`Chat::depart`, as for `/quit`). A banned nick is never handed out as a guest nick.

use log::{info, warn};

use super::Chat;
use crate::bans::{Ban, BanList, Bans, Mask, describe_left, now_ms};
use crate::bus::What;
use crate::connection::{CloseReason, ConnRef};
use crate::limits::MAX_BANS;
use crate::protocol;
use crate::room::Outbox;

impl Chat {
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    pub fn bans_mut(&mut self) -> &mut Bans {
        &mut self.bans
    }

    /// The next guest nick nobody here has and no ban is on.
    pub(super) fn guest_nick(&mut self) -> String {
        let now = now_ms();
        loop {
            let nick = self.nicks.free_guest_nick();
            if self.bans.list.on_nick(&nick, now).is_none() {
                return nick;
            }
        }
    }

    /// A ban from the bus (placed here or on another instance): kept, and enforced.
    pub(super) fn ban(&mut self, mask: &Mask, ban: &Ban, out: &mut impl Outbox) {
        if !self.bans.list.insert(mask.clone(), ban.clone()) {
            return warn!("ban on {mask} not kept: the list holds its maximum of {MAX_BANS}");
        }
        let time = ban.until.map_or("permanent".into(), |t| {
            format!("for {}", describe_left(t.saturating_sub(now_ms())))
        });
        info!("operator {} banned {mask} ({time}): {}", ban.by, ban.reason);
        self.bans.changed();
        self.enforce(out);
    }

    pub(super) fn unban(&mut self, mask: &Mask, by: &str) {
        if self.bans.list.remove(mask).is_some() {
            info!("operator {by} lifted the ban on {mask}");
            self.bans.changed();
        }
    }

    /// Replaces every ban (a reload of the bans file, the backplane's ban hash), and sends away
    /// whoever the new list bans.
    pub fn replace_bans(&mut self, list: BanList, out: &mut impl Outbox) {
        self.bans.list = list;
        self.bans.changed();
        self.enforce(out);
    }

    /// The backplane read its ban hash: it replaces this list, or, if the hash is new, is
    /// given this list (every ban published, so every instance gets it).
    pub(super) fn bans_from_bus(&mut self, bans: Option<Vec<(Mask, Ban)>>, out: &mut impl Outbox) {
        let Some(bans) = bans else {
            for (mask, ban) in self.bans.list.live(now_ms()) {
                let (mask, ban) = (mask.clone(), ban.clone());
                self.requests.publish(0, What::Ban { mask, ban });
            }
            return;
        };
        let mut list = BanList::default();
        for (mask, ban) in bans {
            list.insert(mask, ban);
        }
        self.replace_bans(list, out);
    }

    /// Sends away every client a ban in force is on.
    fn enforce(&mut self, out: &mut impl Outbox) {
        let now = now_ms();
        let banned: Vec<(ConnRef, String)> = (self.nicks.every())
            .filter_map(|(who, nick, _)| {
                let ban = self
                    .bans
                    .list
                    .on_client(nick, out.peer(who).map(|(ip, _)| ip), now)?;
                info!("token {}: {nick} is banned: {}", who.token, ban.reason);
                Some((who, ban.reason.clone()))
            })
            .collect();
        for (who, reason) in banned {
            self.tell(who, &protocol::banned(&reason), out);
            self.depart(who, CloseReason::Banned(reason), out);
        }
    }
}
