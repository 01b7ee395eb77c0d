//! Power of two random choices: pick two different usable backends at random and send the request
//! to the one with fewer requests in flight (relative to its weight). Nearly as good as least
//! connections at avoiding a slow backend, without its herd behaviour: a backend that just
//! became idle is not chosen by every worker at once.

use super::{Rng, SelectionView};

#[derive(Debug)]
pub struct PowerOfTwo {
    len: usize,
    rng: Rng,
}

impl PowerOfTwo {
    pub fn new(len: usize, rng: Rng) -> Self {
        Self { len, rng }
    }

    pub fn select(
        &self,
        view: &impl SelectionView,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let count = (0..self.len).filter(|&i| usable(i)).count() as u64;
        match count {
            0 => None,
            1 => nth_usable(self.len, &usable, 0),
            _ => {
                let first = self.rng.below(count);
                // A second, different one: an offset of 1..count from the first.
                let second = (first + 1 + self.rng.below(count - 1)) % count;
                let a = nth_usable(self.len, &usable, first)?;
                let b = nth_usable(self.len, &usable, second)?;
                let (load_a, load_b) = (
                    u128::from(view.in_flight(a)) * u128::from(view.weight(b)),
                    u128::from(view.in_flight(b)) * u128::from(view.weight(a)),
                );
                Some(if load_b < load_a { b } else { a })
            }
        }
    }
}

/// The `n`-th (from 0) index in `0..len` that `usable` accepts.
pub(super) fn nth_usable(len: usize, usable: &impl Fn(usize) -> bool, n: u64) -> Option<usize> {
    (0..len).filter(|&i| usable(i)).nth(n as usize)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, View};
    use super::*;

    #[test]
    fn the_busier_of_the_two_is_avoided() {
        let (b, view) = (PowerOfTwo::new(2, Rng::seeded(3)), View::equal(2));
        *view.in_flight.borrow_mut() = vec![5, 1];
        for _ in 0..20 {
            assert_eq!(b.select(&view, |_| true), Some(1));
        }
        assert_eq!(b.select(&view, |i| i == 0), Some(0));
        assert_eq!(b.select(&view, |_| false), None);
    }

    #[test]
    fn equal_backends_share_evenly_and_the_slow_one_loses_out() {
        let (b, view) = (PowerOfTwo::new(3, Rng::seeded(9)), View::equal(3));
        let picks = counts(3, (0..3000).map(|_| b.select(&view, |_| true).unwrap()));
        assert!(
            picks.iter().all(|&n| (850..=1150).contains(&n)),
            "{picks:?}"
        );
        // Backend 2 always has more in flight: it loses every comparison it is part of.
        *view.in_flight.borrow_mut() = vec![0, 0, 3];
        let picks = counts(3, (0..300).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks[2], 0, "{picks:?}");
    }
}
