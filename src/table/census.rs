//! Who is connected from where ([`Census`]): connections per client address, for
//! `--max-per-ip`, and the connections still in their transport's handshake (held, not in the
//! room yet, but counted against `--max-clients`). The table keeps it as connections are
//! admitted, refused, closed and removed.

use std::collections::HashMap;
use std::net::IpAddr;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Census {
    /// Connections per client address: counted from admission until the slot is freed (a
    /// leaving client still holds its descriptor). Addresses with none are removed, so the
    /// map holds only addresses connected now.
    per_address: HashMap<IpAddr, usize>,
    /// Connections in `Phase::Handshaking`.
    handshaking: usize,
}

impl Census {
    /// Connections whose transport handshake is under way.
    pub fn handshaking(&self) -> usize {
        self.handshaking
    }

    /// Admitted connections from `addr` not yet removed.
    pub fn connections_from(&self, addr: IpAddr) -> usize {
        self.per_address.get(&addr).copied().unwrap_or(0)
    }

    pub(super) fn handshake_started(&mut self) {
        self.handshaking += 1;
    }

    pub(super) fn handshake_ended(&mut self) {
        self.handshaking -= 1;
    }

    /// Out of its handshake and into the room, from `addr`.
    pub(super) fn admitted(&mut self, addr: IpAddr) {
        self.handshake_ended();
        *self.per_address.entry(addr).or_insert(0) += 1;
    }

    /// An admitted connection from `addr` is gone: its slot was freed.
    pub(super) fn removed(&mut self, addr: IpAddr) {
        if let Some(count) = self.per_address.get_mut(&addr) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&addr);
            }
        }
    }
}
