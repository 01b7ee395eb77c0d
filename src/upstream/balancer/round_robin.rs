//! Round robin, weighted as in nginx and HAProxy: with equal weights, backends in turn, skipping
//! the unusable ones; with different weights, smooth weighted round robin ([`SmoothWeighted`]),
//! so a backend of weight 3 gets 3 of every 4 requests next to one of weight 1, interleaved.
//!
//! Equal weights are the common case and keep the plain rotation: one `Cell<bool>` read more
//! than a rotation that knows nothing of weights, no weight read per pick. Slow start there
//! admits a ramping backend with the probability of its ramp (10% of its turns at the start, all
//! of them at the end), so it gets that share of a full backend's requests; the weighted path
//! reads the effective weight, which the ramp already scales. Which path runs is decided when
//! the balancer is built (from the configured weights) and again whenever a weight changes at
//! runtime ([`RoundRobin::set_weights`]), never per pick.

use super::{Rng, SelectionView, SmoothWeighted, FULL_RAMP};
use std::cell::Cell;

#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: Cell<usize>,
    rng: Rng,
    /// Every backend has the same weight: the plain rotation serves.
    equal: Cell<bool>,
    /// The rotation for unequal weights (its scores are allocated once, here).
    weighted: SmoothWeighted,
}

impl RoundRobin {
    /// A rotation over backends of `weights` (configured or set at runtime, without slow start).
    pub fn new(weights: impl IntoIterator<Item = u32>, start: usize, rng: Rng) -> Self {
        let weights: Vec<u32> = weights.into_iter().collect();
        let len = weights.len();
        Self {
            len,
            next: Cell::new(start % len.max(1)),
            rng,
            equal: Cell::new(all_equal(&weights)),
            weighted: SmoothWeighted::new(len),
        }
    }

    /// The backends' weights changed (at runtime): picks from now on use them.
    pub fn set_weights(&self, weights: impl IntoIterator<Item = u32>) {
        let weights: Vec<u32> = weights.into_iter().collect();
        self.equal.set(all_equal(&weights));
    }

    #[inline]
    pub fn select(
        &self,
        view: &impl SelectionView,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if !self.equal.get() {
            return self.weighted.select(view, usable);
        }
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

fn all_equal(weights: &[u32]) -> bool {
    weights.windows(2).all(|pair| pair[0] == pair[1])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, View};
    use super::*;

    fn rr(len: usize, start: usize) -> RoundRobin {
        RoundRobin::new(vec![1; len], start, Rng::seeded(1))
    }

    fn weighted(weights: &[u32]) -> (RoundRobin, View) {
        let balancer = RoundRobin::new(weights.iter().copied(), 0, Rng::seeded(1));
        (balancer, View::weighted(weights))
    }

    #[test]
    fn rotates_through_every_backend_in_order() {
        let (b, view) = (rr(3, 0), View::equal(3));
        let picks: Vec<_> = (0..6).map(|_| b.select(&view, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn equal_weights_other_than_one_rotate_plainly() {
        let (b, view) = weighted(&[4, 4, 4]);
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

    #[test]
    fn weights_share_requests_exactly_and_smoothly() {
        let (b, view) = weighted(&[5, 1, 1]);
        let picks: Vec<_> = (0..7).map(|_| b.select(&view, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0], "nginx's order, no burst");
        let (b, view) = weighted(&[3, 1]);
        let picks = counts(2, (0..400).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [300, 100]);
    }

    #[test]
    fn an_unusable_weighted_backend_leaves_the_others_their_ratio() {
        let (b, view) = weighted(&[2, 5, 1]);
        let picks = counts(3, (0..300).map(|_| b.select(&view, |i| i != 1).unwrap()));
        assert_eq!(picks, [200, 0, 100]);
        assert_eq!(b.select(&view, |_| false), None);
    }

    #[test]
    fn a_runtime_weight_switches_between_rotation_and_weights() {
        let b = rr(2, 0);
        let mut view = View::equal(2);
        view.weights[1] = 3;
        // Not told yet: the plain rotation.
        let picks = counts(2, (0..40).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [20, 20]);
        b.set_weights([1, 3]);
        let picks = counts(2, (0..40).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [10, 30]);
        view.weights[1] = 1;
        b.set_weights([1, 1]);
        let picks = counts(2, (0..40).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [20, 20]);
    }

    #[test]
    fn slow_start_scales_a_weighted_backends_share() {
        // The view's weight is already scaled by the ramp (here: backend 1 at 10% of weight 2).
        let b = RoundRobin::new([1, 2], 0, Rng::seeded(1));
        let mut view = View::weighted(&[10, 20]);
        view.weights[1] = 2;
        let picks = counts(2, (0..120).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [100, 20]);
    }
}
