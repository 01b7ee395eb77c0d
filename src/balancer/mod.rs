//! Load-balancing algorithms, one per file, behind a config-selected enum.
//!
//! Each worker owns its balancers (per-core state in `Cell`/`RefCell`, no lock, no atomic). The
//! proxy asks [`Balancer::select`] for the next backend, passing a predicate that rejects
//! backends it must not use (already tried for this request, later: unhealthy or draining); the
//! balancer returns the best remaining candidate, so failover is "select again with one more
//! backend excluded".

mod round_robin;
mod weighted;

pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

use crate::config::BalanceAlgorithm;

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    Weighted(SmoothWeighted),
}

impl Balancer {
    /// `weights[i]` is backend i's weight (ignored by round robin). `start` spreads workers: worker
    /// N begins its rotation at backend N so that N workers' first requests do not all go to the
    /// same backend.
    ///
    /// # Panics
    /// If `weights` is empty (the config validation guarantees non-empty groups).
    pub fn new(algorithm: BalanceAlgorithm, weights: &[u32], start: usize) -> Self {
        assert!(!weights.is_empty(), "a balancer needs at least one backend");
        match algorithm {
            BalanceAlgorithm::RoundRobin => {
                Balancer::RoundRobin(RoundRobin::new(weights.len(), start))
            }
            BalanceAlgorithm::Weighted => Balancer::Weighted(SmoothWeighted::new(weights)),
        }
    }

    /// The next backend index to try, skipping every index for which `skip` is true. `None` when
    /// every backend is skipped.
    pub fn select(&self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin(b) => b.select(skip),
            Balancer::Weighted(b) => b.select(skip),
        }
    }
}
