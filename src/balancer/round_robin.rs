//! Round robin: backends in turn, skipping the unusable ones. Weights are ignored, but slow start
//! is not: a ramping backend is admitted with the probability of its ramp (10% of its turns at
//! the start, all of them at the end), so it gets that share of a full backend's requests.

use super::{BackendView, Rng, FULL_RAMP};
use std::cell::Cell;

#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: Cell<usize>,
    rng: Rng,
}

impl RoundRobin {
    pub fn new(len: usize, start: usize, rng: Rng) -> Self {
        Self {
            len,
            next: Cell::new(start % len.max(1)),
            rng,
        }
    }

    pub fn select(&self, view: &impl BackendView, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.next.get();
        let mut fallback = None;
        for step in 0..self.len {
            let i = (start + step) % self.len;
            if !usable(i) {
                continue;
            }
            let ramp = view.ramp(i);
            if ramp >= FULL_RAMP || self.rng.below(u64::from(FULL_RAMP)) < u64::from(ramp) {
                self.next.set((i + 1) % self.len);
                return Some(i);
            }
            // Not admitted this turn; still better than nothing if every usable one ramps.
            fallback.get_or_insert(i);
        }
        let chosen = fallback?;
        self.next.set((chosen + 1) % self.len);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, View};
    use super::*;

    fn rr(len: usize, start: usize) -> RoundRobin {
        RoundRobin::new(len, start, Rng::seeded(1))
    }

    #[test]
    fn rotates_through_every_backend_in_order() {
        let (b, view) = (rr(3, 0), View::equal(3));
        let picks: Vec<_> = (0..6).map(|_| b.select(&view, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn start_offsets_the_rotation() {
        assert_eq!(rr(3, 4).select(&View::equal(3), |_| true), Some(1));
    }

    #[test]
    fn unusable_backends_are_passed_over_and_none_usable_is_none() {
        let (b, view) = (rr(3, 0), View::equal(3));
        let picks: Vec<_> = (0..4)
            .map(|_| b.select(&view, |i| i != 1).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(b.select(&view, |_| false), None);
    }

    #[test]
    fn a_ramping_backend_gets_its_ramp_share_of_turns() {
        let b = rr(2, 0);
        let mut view = View::equal(2);
        view.ramps[1] = 250;
        let picks = counts(2, (0..4000).map(|_| b.select(&view, |_| true).unwrap()));
        // Backend 1 is offered every other turn and admitted a quarter of the time: 1 pick for
        // every 4 of backend 0, i.e. 800 of 4000 (a seeded generator: the exact count is stable).
        assert!((650..=950).contains(&picks[1]), "{picks:?}");
        // Ramping and alone: still chosen.
        assert_eq!(b.select(&view, |i| i == 1), Some(1));
    }
}
