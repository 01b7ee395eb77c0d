//! A worker's per-client state for one listener's `connection_limits`: the client addresses
//! with open connections (and how many each has), and the new-connection rate of each address.
//!
//! Flow: the admission of a new connection ([`crate::worker`]'s `admission`) asks
//! [`ClientTable::open_of`], checks [`ClientTable::check_rate`], then [`ClientTable::opened`];
//! the connection's slot calls [`ClientTable::closed`] when it ends. An address leaves the map
//! with its last connection, so the map holds at most the worker's open connections; the rate
//! table is a [`KeyedGcra`], bounded by [`RATE_KEYS`]. Whether every connection of one address
//! reaches this worker ([`ClientTable::one_worker_per_client`]) is decided where the sockets are
//! bound, and decides whether the limits here are whole or this worker's share.

use crate::policy::gcra::{Decision, Gcra};
use crate::policy::keyed::KeyedGcra;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Instant;

/// Client addresses whose new-connection rate one worker remembers per listener at most. Past
/// it, the oldest are forgotten (they start afresh); an entry is a few tens of bytes.
pub const RATE_KEYS: usize = 1 << 18;

/// One listener's clients on one worker.
#[derive(Debug)]
pub struct ClientTable {
    one_worker_per_client: Cell<bool>,
    open: RefCell<HashMap<IpAddr, u32>>,
    rate: RefCell<Option<KeyedGcra>>,
    /// Keys the rate table by address, seeded per table (no crafted collisions).
    hasher: RandomState,
    /// The rate table's clock starts here.
    started: Instant,
}

impl Default for ClientTable {
    fn default() -> Self {
        ClientTable {
            one_worker_per_client: Cell::new(false),
            open: RefCell::default(),
            rate: RefCell::default(),
            hasher: RandomState::new(),
            started: Instant::now(),
        }
    }
}

impl ClientTable {
    /// Every connection of one client address reaches this worker (steered by address, or the
    /// only worker): the limits apply whole here.
    pub fn one_worker_per_client(&self) -> bool {
        self.one_worker_per_client.get()
    }

    pub fn set_one_worker_per_client(&self, yes: bool) {
        self.one_worker_per_client.set(yes);
    }

    /// Connections `client` has open on this worker.
    pub fn open_of(&self, client: IpAddr) -> u32 {
        self.open.borrow().get(&client).copied().unwrap_or(0)
    }

    pub fn opened(&self, client: IpAddr) {
        *self.open.borrow_mut().entry(client).or_insert(0) += 1;
    }

    pub fn closed(&self, client: IpAddr) {
        let mut open = self.open.borrow_mut();
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }

    /// Addresses with open connections on this worker.
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.open.borrow().len()
    }

    /// Counts a new connection of `client` against `limit`: `false` when it is over. A changed
    /// limit (a reload) starts a fresh table.
    pub fn check_rate(&self, client: IpAddr, limit: Gcra) -> bool {
        let now = self.started.elapsed().as_nanos() as u64;
        let key = self.hasher.hash_one(client);
        let mut rate = self.rate.borrow_mut();
        let table = match &mut *rate {
            Some(table) if *table.limit() == limit => table,
            stale => stale.insert(KeyedGcra::new(limit, RATE_KEYS)),
        };
        matches!(table.check(key, now), Decision::Allowed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use std::time::Duration;

    #[test]
    fn an_address_leaves_with_its_last_connection() {
        let table = ClientTable::default();
        let a: IpAddr = [127, 0, 1, 1].into();
        table.opened(a);
        table.opened(a);
        assert_eq!(table.open_of(a), 2);
        table.closed(a);
        assert_eq!((table.open_of(a), table.clients()), (1, 1));
        table.closed(a);
        assert_eq!((table.open_of(a), table.clients()), (0, 0));
    }

    #[test]
    fn the_rate_is_counted_per_address() {
        let table = ClientTable::default();
        let per_minute = Rate {
            count: 1,
            per: Duration::from_secs(60),
        };
        let limit = Gcra::new(per_minute, 2);
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 1, 1].into(), [127, 0, 1, 2].into());
        assert!(table.check_rate(a, limit));
        assert!(table.check_rate(a, limit));
        assert!(!table.check_rate(a, limit));
        assert!(table.check_rate(b, limit));
        // A reload that changes the limit starts afresh.
        assert!(table.check_rate(a, Gcra::new(per_minute, 3)));
    }
}
