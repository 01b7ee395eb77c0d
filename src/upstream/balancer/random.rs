//! Weighted random: each usable backend with a probability proportional to its effective weight.
//! No state to keep in step across workers or processes, at the price of short-term unevenness.

use super::{Rng, SelectionView};

#[derive(Debug)]
pub struct WeightedRandom {
    len: usize,
    rng: Rng,
}

impl WeightedRandom {
    pub fn new(len: usize, rng: Rng) -> Self {
        Self { len, rng }
    }

    pub fn select(
        &self,
        view: &impl SelectionView,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let total: u64 = (0..self.len)
            .filter(|&i| usable(i))
            .map(|i| view.weight(i))
            .sum();
        if total == 0 {
            return None;
        }
        let mut point = self.rng.below(total);
        for i in (0..self.len).filter(|&i| usable(i)) {
            let weight = view.weight(i);
            if point < weight {
                return Some(i);
            }
            point -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, View};
    use super::*;

    #[test]
    fn shares_follow_the_weights() {
        let (b, view) = (
            WeightedRandom::new(3, Rng::seeded(5)),
            View::weighted(&[1, 2, 1]),
        );
        let picks = counts(3, (0..4000).map(|_| b.select(&view, |_| true).unwrap()));
        assert!((850..=1150).contains(&picks[0]), "{picks:?}");
        assert!((1800..=2200).contains(&picks[1]), "{picks:?}");
        assert!((850..=1150).contains(&picks[2]), "{picks:?}");
    }

    #[test]
    fn only_usable_backends_are_drawn() {
        let (b, view) = (WeightedRandom::new(3, Rng::seeded(5)), View::equal(3));
        for _ in 0..50 {
            assert_eq!(b.select(&view, |i| i == 2), Some(2));
        }
        assert_eq!(b.select(&view, |_| false), None);
    }
}
