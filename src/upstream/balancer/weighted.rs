//! Smooth weighted round robin (the algorithm of nginx's `upstream` weights): every pick adds each
//! usable backend's weight to its running score, takes the highest score, and subtracts the total
//! from it. Weights 5:1:1 give `a a b a c a a` rather than `a a a a a b c`: no burst to the heavy
//! backend. Weights are read from the view on every pick, so slow start and runtime weight
//! changes take effect at once.

use super::SelectionView;
use std::cell::RefCell;

#[derive(Debug)]
pub struct SmoothWeighted {
    current: RefCell<Box<[i64]>>,
}

impl SmoothWeighted {
    pub fn new(len: usize) -> Self {
        Self {
            current: RefCell::new(vec![0; len].into_boxed_slice()),
        }
    }

    pub fn select(
        &self,
        view: &impl SelectionView,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut current = self.current.borrow_mut();
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..current.len() {
            if !usable(i) {
                continue;
            }
            let weight = i64::try_from(view.weight(i)).unwrap_or(i64::MAX / 1024);
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        current[chosen] -= total;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, View};
    use super::*;

    #[test]
    fn sequence_is_smooth() {
        let (b, view) = (SmoothWeighted::new(3), View::weighted(&[5, 1, 1]));
        let picks: Vec<_> = (0..7).map(|_| b.select(&view, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn shares_match_weights_exactly_over_a_cycle() {
        let (b, view) = (SmoothWeighted::new(2), View::weighted(&[3, 1]));
        let picks = counts(2, (0..400).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [300, 100]);
    }

    #[test]
    fn unusable_backend_gets_nothing_and_others_keep_their_ratio() {
        let (b, view) = (SmoothWeighted::new(3), View::weighted(&[2, 5, 1]));
        let picks = counts(3, (0..300).map(|_| b.select(&view, |i| i != 1).unwrap()));
        assert_eq!(picks, [200, 0, 100]);
        assert_eq!(b.select(&view, |_| false), None);
    }

    #[test]
    fn a_changed_weight_applies_from_the_next_pick() {
        let b = SmoothWeighted::new(2);
        let mut view = View::weighted(&[10, 10]);
        for _ in 0..10 {
            b.select(&view, |_| true);
        }
        view.weights[1] = 1; // slow start at 10%
        let picks = counts(2, (0..110).map(|_| b.select(&view, |_| true).unwrap()));
        assert_eq!(picks, [100, 10]);
    }
}
