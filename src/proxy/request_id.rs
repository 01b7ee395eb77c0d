//! Request ids: 20 hex digits, unique per process without coordination between workers —
//! a per-process random prefix, the worker id, and the worker's own sequence number.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    pub fn new(worker: usize) -> Self {
        // RandomState is seeded from the OS once per process (then incremented per instance).
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let random = hasher.finish() & 0xffff_ffff;
        Self {
            prefix: (random << 8) | (worker as u64 & 0xff),
            next: Cell::new(0),
        }
    }

    /// The next id, e.g. `3f2a91c0070000000001a`.
    pub fn next_id(&self) -> String {
        let seq = self.next.get();
        self.next.set(seq.wrapping_add(1));
        format!("{:010x}{:010x}", self.prefix, seq & 0xff_ffff_ffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_fixed_width_hex_and_differ_between_workers() {
        let a = RequestIds::new(0);
        let b = RequestIds::new(1);
        let ids = [a.next_id(), a.next_id(), b.next_id()];
        assert!(ids
            .iter()
            .all(|id| id.len() == 20 && id.bytes().all(|c| c.is_ascii_hexdigit())));
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
    }
}
