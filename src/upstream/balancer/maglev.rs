//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of [`TABLE_SIZE`]
//! slots, each naming a backend, filled so that every backend owns a share of slots proportional
//! to its weight. A request's key picks a slot; the same key always picks the same backend.
//!
//! - **No shared store.** The table depends only on the backends' addresses and weights (sorted
//!   by address, so the order of the list does not matter either): two lbproxy processes, or two
//!   workers, with the same backend list map every key alike.
//! - **Minimal disruption.** Each backend fills slots along its own permutation of the table, so
//!   removing one of N backends hands its slots to the others and moves only about 1/N of keys.
//! - **Unusable backends** (down, ejected, draining, already tried) are skipped by walking on to
//!   the next slots: the keys of a missing backend spread over the others, and nobody else's
//!   keys move. Asking again after a failure yields the next backend along the same walk.
//! - **Backups** get a table of their own, consulted when no primary is usable.
//!
//! Built once per configuration generation (at start and on reload), off the request path; a
//! lookup is one modulo and one slot read. Requests without a key (no such header or cookie)
//! are spread by a counter, as round robin would.

use super::hash::{hash_bytes, mix};
use crate::config::BackendConfig;
use std::cell::Cell;

/// Slots per table: a prime (so every skip visits every slot) well over 100 × the backends of
/// any sensible group, which keeps each backend's share within about 1% of its weight.
pub const TABLE_SIZE: usize = 65_537;

const OFFSET_SEED: u64 = 0x6d61_676c_6576_0001;
const SKIP_SEED: u64 = 0x6d61_676c_6576_0002;

#[derive(Debug)]
pub struct Maglev {
    primary: Table,
    backup: Option<Table>,
    keyless: Cell<u64>,
}

impl Maglev {
    pub fn new(backends: &[BackendConfig]) -> Self {
        let tier = |backup: bool| -> Vec<(usize, String, u32)> {
            backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.backup == backup)
                .map(|(i, b)| (i, b.address.to_string(), b.weight.get()))
                .collect()
        };
        let backups = tier(true);
        Maglev {
            primary: Table::build(tier(false)),
            backup: (!backups.is_empty()).then(|| Table::build(backups)),
            keyless: Cell::new(0),
        }
    }

    pub fn select(&self, key: Option<u64>, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let key = key.unwrap_or_else(|| {
            let n = self.keyless.get().wrapping_add(1);
            self.keyless.set(n);
            mix(n)
        });
        self.primary
            .lookup(key, &usable)
            .or_else(|| self.backup.as_ref()?.lookup(key, &usable))
    }
}

#[derive(Debug)]
struct Table {
    /// Each slot holds a member position (index into `indices`).
    slots: Box<[u32]>,
    /// Member position → backend index in the group.
    indices: Box<[usize]>,
}

impl Table {
    /// `members`: (backend index, address text, weight). Never empty.
    fn build(mut members: Vec<(usize, String, u32)>) -> Table {
        members.sort_by(|a, b| a.1.cmp(&b.1));
        let size = TABLE_SIZE as u64;
        let mut cursors: Vec<(u64, u64)> = members
            .iter()
            .map(|(_, name, _)| {
                let offset = hash_bytes(OFFSET_SEED, name.as_bytes()) % size;
                let skip = hash_bytes(SKIP_SEED, name.as_bytes()) % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_weight = members.iter().map(|m| u64::from(m.2)).max().unwrap_or(1);
        let mut credit = vec![0u64; members.len()];
        let mut slots = vec![u32::MAX; TABLE_SIZE];
        let mut filled = 0;
        // Each round, every member earns its weight in credit and takes one slot per
        // `max_weight` of credit: shares proportional to weights, interleaved.
        'fill: loop {
            for (position, member) in members.iter().enumerate() {
                credit[position] += u64::from(member.2);
                if credit[position] < max_weight {
                    continue;
                }
                credit[position] -= max_weight;
                let (next, skip) = &mut cursors[position];
                loop {
                    let slot = *next as usize;
                    *next = (*next + *skip) % size;
                    if slots[slot] == u32::MAX {
                        slots[slot] = position as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        Table {
            slots: slots.into_boxed_slice(),
            indices: members.iter().map(|m| m.0).collect(),
        }
    }

    /// The first usable backend from the key's slot on.
    fn lookup(&self, key: u64, usable: &impl Fn(usize) -> bool) -> Option<usize> {
        let start = (key % TABLE_SIZE as u64) as usize;
        let members = self.indices.len();
        // Once every member has been seen unusable, the rest of the walk cannot succeed.
        let mut seen: u64 = 0;
        for step in 0..TABLE_SIZE {
            let position = self.slots[(start + step) % TABLE_SIZE] as usize;
            let index = self.indices[position];
            if usable(index) {
                return Some(index);
            }
            if members <= 64 {
                seen |= 1 << position;
                if seen.count_ones() as usize == members {
                    return None;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn backend(port: u16, weight: u32) -> BackendConfig {
        BackendConfig {
            address: ([10, 0, 0, 1], port).into(),
            weight: NonZeroU32::new(weight).unwrap(),
            backup: false,
            drain: false,
            canary: false,
        }
    }

    fn group(ports: &[u16]) -> Vec<BackendConfig> {
        ports.iter().map(|&p| backend(p, 1)).collect()
    }

    /// The address each of `keys` maps to, all backends usable.
    fn route(backends: &[BackendConfig], keys: u64) -> Vec<u16> {
        let maglev = Maglev::new(backends);
        (0..keys)
            .map(|k| {
                let key = hash_bytes(0, format!("user-{k}").as_bytes());
                backends[maglev.select(Some(key), |_| true).unwrap()]
                    .address
                    .port()
            })
            .collect()
    }

    #[test]
    fn two_independent_builds_route_every_key_alike_whatever_the_list_order() {
        let a = route(&group(&[8001, 8002, 8003, 8004]), 5000);
        let b = route(&group(&[8003, 8001, 8004, 8002]), 5000);
        assert_eq!(a, b);
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_the_keys() {
        let ports: Vec<u16> = (8001..8011).collect();
        let before = route(&group(&ports), 20_000);
        let after = route(&group(&ports[1..]), 20_000);
        let removed = ports[0];
        let mut moved = 0;
        let mut moved_elsewhere = 0;
        for (old, new) in before.iter().zip(&after) {
            if old != new {
                moved += 1;
                if *old != removed {
                    moved_elsewhere += 1;
                }
            }
        }
        // The removed backend's keys (about 1/10) must move; Maglev moves few others.
        let share = moved as f64 / before.len() as f64;
        assert!(
            (0.08..=0.13).contains(&share),
            "moved {share:.3} of the keys"
        );
        assert!(
            moved_elsewhere as f64 / before.len() as f64 <= 0.02,
            "{moved_elsewhere} keys of remaining backends moved"
        );
    }

    #[test]
    fn shares_follow_weights() {
        let maglev = Maglev::new(&[backend(8001, 3), backend(8002, 1)]);
        let heavy = maglev.primary.slots.iter().filter(|&&p| p == 0).count();
        let share = heavy as f64 / TABLE_SIZE as f64;
        assert!(
            (0.74..=0.76).contains(&share),
            "weight 3 of 4 owns {share:.3}"
        );
    }

    #[test]
    fn an_unusable_backend_only_moves_its_own_keys() {
        let backends = group(&[8001, 8002, 8003]);
        let maglev = Maglev::new(&backends);
        for k in 0..2000u64 {
            let key = mix(k);
            let normal = maglev.select(Some(key), |_| true).unwrap();
            let without_one = maglev.select(Some(key), |i| i != 1).unwrap();
            if normal != 1 {
                assert_eq!(normal, without_one, "key {k} moved");
            } else {
                assert_ne!(without_one, 1);
            }
        }
        assert_eq!(maglev.select(Some(7), |_| false), None);
    }

    #[test]
    fn backups_serve_only_when_no_primary_is_usable() {
        let mut backends = group(&[8001, 8002]);
        backends[1].backup = true;
        let maglev = Maglev::new(&backends);
        for key in 0..100 {
            assert_eq!(maglev.select(Some(mix(key)), |_| true), Some(0));
            assert_eq!(maglev.select(Some(mix(key)), |i| i != 0), Some(1));
        }
    }

    #[test]
    fn requests_without_a_key_are_spread() {
        let maglev = Maglev::new(&group(&[8001, 8002, 8003]));
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[maglev.select(None, |_| true).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&n| (850..=1150).contains(&n)),
            "{counts:?}"
        );
    }
}
