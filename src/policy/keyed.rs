//! A GCRA limit per key, in a table whose memory stays bounded however many keys arrive.
//!
//! Keys are 64-bit hashes (of an address, a header value or a route), mapped to their `TAT`. The
//! table is two maps, `current` and `previous`: a key is looked up in both, and written to
//! `current`. Every [`Gcra::horizon`] the maps rotate: `previous` is dropped whole and `current`
//! becomes it. A dropped key was last touched at least a horizon ago, so its state no longer
//! mattered (see [`super::gcra`]): forgetting is exact and costs nothing per key. When `current`
//! reaches half the capacity before its time, the maps rotate early and the keys still live in
//! the dropped map are counted as evictions (they start afresh: the bound on memory wins over the
//! limit's exactness, as with nginx's `limit_req_zone` when it is full).

use super::gcra::{Decision, Gcra};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys are hashes already: the map uses them as they are.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else is folded in, for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, u64, BuildHasherDefault<KeyHasher>>;

/// One limit's keys on one worker.
#[derive(Debug)]
pub struct KeyedGcra {
    limit: Gcra,
    current: Table,
    previous: Table,
    /// When `current` began (nanoseconds, the caller's clock).
    rotated_at: u64,
    /// `current` holds at most this many keys (half the table's capacity).
    half_capacity: usize,
    /// Live keys dropped by an early rotation, since the worker started.
    evictions: u64,
}

impl KeyedGcra {
    /// A table for `limit` holding at most `capacity` keys (at least 2).
    pub fn new(limit: Gcra, capacity: usize) -> Self {
        KeyedGcra {
            limit,
            current: Table::default(),
            previous: Table::default(),
            rotated_at: 0,
            half_capacity: (capacity / 2).max(1),
            evictions: 0,
        }
    }

    pub fn limit(&self) -> &Gcra {
        &self.limit
    }

    /// Checks one event of `key` at `now` (nanoseconds, monotonic).
    #[inline]
    pub fn check(&mut self, key: u64, now: u64) -> Decision {
        if now.saturating_sub(self.rotated_at) >= self.limit.horizon() {
            // Everything in `previous` is past its horizon; so is `current` if two went by.
            self.rotate(
                now,
                now.saturating_sub(self.rotated_at) >= 2 * self.limit.horizon(),
            );
        }
        let mut tat = match self.current.get(&key) {
            Some(&tat) => tat,
            None => self.previous.remove(&key).unwrap_or(0),
        };
        let decision = self.limit.check(&mut tat, now);
        if !self.current.contains_key(&key) && self.current.len() >= self.half_capacity {
            self.rotate_early(now);
        }
        self.current.insert(key, tat);
        decision
    }

    /// The key's state after its last event, for `RateLimit`'s reset (0: not tracked).
    pub fn tat(&self, key: u64) -> u64 {
        self.current
            .get(&key)
            .or_else(|| self.previous.get(&key))
            .copied()
            .unwrap_or(0)
    }

    /// Keys remembered now.
    pub fn keys(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Live keys forgotten because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn rotate(&mut self, now: u64, both_stale: bool) {
        self.previous = std::mem::take(&mut self.current);
        if both_stale {
            self.previous.clear();
        }
        self.rotated_at = now;
    }

    fn rotate_early(&mut self, now: u64) {
        let live = self.previous.values().filter(|&&tat| tat > now).count();
        self.evictions += live as u64;
        self.rotate(now, false);
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    fn per_second(count: u32, burst: u32) -> Gcra {
        Gcra::new(
            Rate {
                count,
                per: Duration::from_secs(1),
            },
            burst,
        )
    }

    #[test]
    fn each_key_has_its_own_budget() {
        let mut table = KeyedGcra::new(per_second(1, 1), 100);
        let now = 5 * SECOND;
        assert!(matches!(table.check(1, now), Decision::Allowed { .. }));
        assert!(matches!(table.check(1, now), Decision::Limited { .. }));
        assert!(matches!(table.check(2, now), Decision::Allowed { .. }));
    }

    #[test]
    fn a_key_survives_one_rotation_and_keeps_its_state() {
        let mut table = KeyedGcra::new(per_second(1, 1), 100);
        let start = 5 * SECOND;
        table.check(7, start);
        // Another key after one horizon rotates the maps: key 7 moves to `previous`…
        table.check(8, start + SECOND);
        // …and is still known (limited: its TAT is start + 1s + … no: exactly start + 1s).
        assert_eq!(table.tat(7), start + SECOND);
        assert!(matches!(
            table.check(7, start + SECOND),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            table.check(7, start + SECOND),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn memory_stays_bounded_with_a_million_keys() {
        let mut table = KeyedGcra::new(per_second(10, 10), 10_000);
        let now = 5 * SECOND;
        for key in 0..1_000_000u64 {
            table.check(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), now + key);
        }
        assert!(table.keys() <= 10_000, "{} keys", table.keys());
        assert!(table.evictions() > 0);
    }

    #[test]
    fn idle_keys_are_forgotten_without_evictions() {
        let mut table = KeyedGcra::new(per_second(10, 1), 1_000_000);
        let start = 5 * SECOND;
        for key in 0..1000 {
            table.check(key, start);
        }
        // Two horizons later, one more key: both maps are dropped.
        table.check(5000, start + 2 * table.limit().horizon());
        assert_eq!(table.keys(), 1);
        assert_eq!(table.evictions(), 0);
    }
}
