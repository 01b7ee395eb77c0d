//! A small per-worker random number generator (xorshift64*) for `p2c`, `random` and slow-start
//! admission: a `Cell`, no lock, no syscall per number. Not for anything secret.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct Rng(Cell<u64>);

impl Rng {
    /// A generator seeded from the worker id, the process id and the time, so that workers and
    /// lbproxy processes do not make the same "random" choices in lockstep.
    pub fn for_worker(worker: usize) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ (worker as u64);
        Self::seeded(seed)
    }

    /// A generator with a fixed seed (tests).
    pub fn seeded(seed: u64) -> Self {
        // xorshift never leaves 0; the finalizer makes nearby seeds diverge at once.
        Rng(Cell::new(super::hash::mix(seed) | 1))
    }

    pub fn next_u64(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..bound` (`bound > 0`), by multiply-shift (no modulo bias worth mentioning
    /// for the small bounds used here).
    pub fn below(&self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = Rng::seeded(7);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[rng.below(5) as usize] += 1;
        }
        // Each value ~1000 times; 5000 draws put each within ±200 with overwhelming probability.
        assert!(seen.iter().all(|&n| (800..=1200).contains(&n)), "{seen:?}");
    }
}
