//! Round robin: backends in turn, skipping the excluded ones.

use std::cell::Cell;

#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: Cell<usize>,
}

impl RoundRobin {
    pub fn new(len: usize, start: usize) -> Self {
        Self {
            len,
            next: Cell::new(start % len.max(1)),
        }
    }

    pub fn select(&self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.next.get();
        let chosen = (0..self.len)
            .map(|i| (start + i) % self.len)
            .find(|&i| !skip(i))?;
        self.next.set((chosen + 1) % self.len);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_through_every_backend_in_order() {
        let rr = RoundRobin::new(3, 0);
        let picks: Vec<_> = (0..6).map(|_| rr.select(|_| false).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn start_offsets_the_rotation() {
        let rr = RoundRobin::new(3, 4);
        assert_eq!(rr.select(|_| false), Some(1));
    }

    #[test]
    fn skipped_backends_are_passed_over_and_all_skipped_is_none() {
        let rr = RoundRobin::new(3, 0);
        let picks: Vec<_> = (0..4).map(|_| rr.select(|i| i == 1).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(rr.select(|_| true), None);
    }
}
