//! Smooth weighted round robin (the algorithm of nginx's `upstream` weights): every pick adds each
//! backend's weight to its running score, takes the highest score, and subtracts the total from
//! it. Weights 5:1:1 give `a a b a c a a` rather than `a a a a a b c`: no burst to the heavy
//! backend.

use std::cell::RefCell;

#[derive(Debug)]
pub struct SmoothWeighted {
    weights: Box<[i64]>,
    current: RefCell<Box<[i64]>>,
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> Self {
        Self {
            weights: weights.iter().map(|&w| i64::from(w)).collect(),
            current: RefCell::new(vec![0; weights.len()].into_boxed_slice()),
        }
    }

    pub fn select(&self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.current.borrow_mut();
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, weight) in self.weights.iter().enumerate() {
            if skip(i) {
                continue;
            }
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
    use super::*;

    #[test]
    fn sequence_is_smooth() {
        let b = SmoothWeighted::new(&[5, 1, 1]);
        let picks: Vec<_> = (0..7).map(|_| b.select(|_| false).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn shares_match_weights_exactly_over_a_cycle() {
        let b = SmoothWeighted::new(&[3, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[b.select(|_| false).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn skipped_backend_gets_nothing_and_others_keep_their_ratio() {
        let b = SmoothWeighted::new(&[2, 5, 1]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[b.select(|i| i == 1).unwrap()] += 1;
        }
        assert_eq!(counts, [200, 0, 100]);
        assert_eq!(b.select(|_| true), None);
    }
}
