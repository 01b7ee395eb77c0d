//! Least connections: the usable backend with the fewest requests in flight relative to its
//! weight (`in_flight / weight`, compared without division).
//!
//! Per core: each worker counts only its own requests in flight, so with N workers the choice is
//! made on an N-th of the picture. Over many connections spread by `SO_REUSEPORT` that evens
//! out; a backend that is slow for everyone collects requests on every worker and so loses new
//! ones on every worker. Ties go to the next backend in rotation, so equal backends share evenly.

use super::SelectionView;
use std::cell::Cell;

#[derive(Debug)]
pub struct LeastConn {
    len: usize,
    next: Cell<usize>,
}

impl LeastConn {
    pub fn new(len: usize, start: usize) -> Self {
        Self {
            len,
            next: Cell::new(start % len.max(1)),
        }
    }

    pub fn select(
        &self,
        view: &impl SelectionView,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let start = self.next.get();
        let mut best: Option<(usize, u128, u128)> = None;
        for step in 0..self.len {
            let i = (start + step) % self.len;
            if !usable(i) {
                continue;
            }
            let (load, weight) = (u128::from(view.in_flight(i)), u128::from(view.weight(i)));
            let better = match best {
                None => true,
                // load / weight < best_load / best_weight
                Some((_, best_load, best_weight)) => load * best_weight < best_load * weight,
            };
            if better {
                best = Some((i, load, weight));
            }
        }
        let (chosen, _, _) = best?;
        self.next.set((chosen + 1) % self.len);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, View};
    use super::*;

    #[test]
    fn fewest_in_flight_wins_and_ties_rotate() {
        let (b, view) = (LeastConn::new(3, 0), View::equal(3));
        *view.in_flight.borrow_mut() = vec![2, 0, 1];
        assert_eq!(b.select(&view, |_| true), Some(1));
        *view.in_flight.borrow_mut() = vec![0, 0, 0];
        let picks: Vec<_> = (0..6).map(|_| b.select(&view, |_| true).unwrap()).collect();
        assert_eq!(picks, [2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_slow_backend_that_holds_requests_gets_few_new_ones() {
        // Backend 0 answers at once; backend 1 holds every request it gets for 10 picks.
        let (b, view) = (LeastConn::new(2, 0), View::equal(2));
        let mut held: Vec<u32> = Vec::new(); // picks left for each request on backend 1
        let picks = counts(
            2,
            (0..200).map(|_| {
                held.retain_mut(|left| {
                    *left -= 1;
                    *left > 0
                });
                view.in_flight.borrow_mut()[1] = held.len() as u32;
                let pick = b.select(&view, |_| true).unwrap();
                if pick == 1 {
                    held.push(10);
                }
                pick
            }),
        );
        assert!(picks[1] <= 20, "the slow backend got {picks:?}");
    }

    #[test]
    fn weights_scale_the_load() {
        let (b, view) = (LeastConn::new(2, 0), View::weighted(&[3, 1]));
        *view.in_flight.borrow_mut() = vec![2, 1];
        // 2/3 < 1/1
        assert_eq!(b.select(&view, |_| true), Some(0));
        assert_eq!(b.select(&view, |i| i == 1), Some(1));
        assert_eq!(b.select(&view, |_| false), None);
    }
}
