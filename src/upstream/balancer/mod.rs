//! Load-balancing algorithms, one per file, behind a config-selected enum.
//!
//! Each worker owns its balancers (per-core state in `Cell`/`RefCell`, no lock, no atomic).
//! [`Balancer::select`] answers "which backend next?" given:
//!
//! - a [`SelectionView`]: what the algorithm may read about each backend (effective weight,
//!   requests in flight on this worker, slow-start ramp), by index;
//! - an optional hash key (only `maglev` uses it);
//! - a `usable` predicate that rejects the backends the caller must not use (already tried for
//!   this request, down, ejected, draining, or of the wrong tier: primary vs backup).
//!
//! Every algorithm yields candidates in order: the caller asks again with one more backend
//! rejected, so failover is "select again". Nothing here allocates or reads the clock per pick;
//! the Maglev table is built once per configuration generation, off the request path.

mod hash;
mod least_conn;
mod maglev;
mod p2c;
mod random;
mod rng;
mod round_robin;
mod weighted;

pub use hash::{hash_bytes, hash_ip, hash_ip_seeded};
pub use least_conn::LeastConn;
pub use maglev::Maglev;
pub use p2c::PowerOfTwo;
pub use random::WeightedRandom;
pub use rng::Rng;
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

use crate::config::{BackendConfig, BalanceAlgorithm};

/// A slow-start ramp of [`FULL_RAMP`] per mille means the backend takes its whole share.
pub const FULL_RAMP: u32 = 1000;

/// What a balancer may read about backend `index` of its group.
pub trait SelectionView {
    /// Effective weight: configured (or overridden at runtime), scaled by slow start, in any
    /// unit common to the group (the proxy uses thousandths); at least 1.
    fn weight(&self, index: usize) -> u64;
    /// Requests in flight to it on this worker.
    fn in_flight(&self, index: usize) -> u32;
    /// Slow-start progress in per mille ([`FULL_RAMP`] when not ramping). Algorithms that ignore
    /// weights (round robin) admit a ramping backend with this probability instead.
    fn ramp(&self, index: usize) -> u32;
}

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    Weighted(SmoothWeighted),
    LeastConn(LeastConn),
    P2c(PowerOfTwo),
    Random(WeightedRandom),
    Maglev(Maglev),
    /// A group with no backend at the moment (a `discover` group before its first instance is
    /// up): every pick is `None`, so requests wait in the queue or get a 503.
    Empty,
}

impl Balancer {
    /// A balancer over `backends` (indices are positions in that slice). `worker` spreads
    /// workers: worker N starts its rotation at backend N and seeds its random choices apart
    /// from the others. Maglev ignores it: its table depends only on the backends' addresses and
    /// weights, so every worker of every lbproxy process maps a key to the same backend.
    ///
    /// An empty `backends` (only a discovered group has none) gives [`Balancer::Empty`].
    pub fn new(algorithm: BalanceAlgorithm, backends: &[BackendConfig], worker: usize) -> Self {
        if backends.is_empty() {
            return Balancer::Empty;
        }
        let len = backends.len();
        match algorithm {
            BalanceAlgorithm::RoundRobin => Balancer::RoundRobin(RoundRobin::new(
                backends.iter().map(|b| b.weight.get()),
                worker,
                Rng::for_worker(worker),
            )),
            BalanceAlgorithm::Weighted => Balancer::Weighted(SmoothWeighted::new(len)),
            BalanceAlgorithm::LeastConn => Balancer::LeastConn(LeastConn::new(len, worker)),
            BalanceAlgorithm::P2c => Balancer::P2c(PowerOfTwo::new(len, Rng::for_worker(worker))),
            BalanceAlgorithm::Random => {
                Balancer::Random(WeightedRandom::new(len, Rng::for_worker(worker)))
            }
            BalanceAlgorithm::Maglev => Balancer::Maglev(Maglev::new(backends)),
        }
    }

    /// The backends' weights (in force, without slow start) changed at runtime. The algorithms
    /// read weights through the view on every pick; round robin decides here instead whether it
    /// still rotates plainly (equal weights) or by weight.
    pub fn set_weights(&self, weights: impl IntoIterator<Item = u32>) {
        if let Balancer::RoundRobin(b) = self {
            b.set_weights(weights);
        }
    }

    /// The next backend to try among those `usable` accepts; `None` when it accepts none.
    /// `key` is the request's hash key (see [`hash_bytes`]); only Maglev reads it, and spreads
    /// requests without one as round robin would.
    #[inline]
    pub fn select(
        &self,
        view: &impl SelectionView,
        key: Option<u64>,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Balancer::RoundRobin(b) => b.select(view, usable),
            Balancer::Weighted(b) => b.select(view, usable),
            Balancer::LeastConn(b) => b.select(view, usable),
            Balancer::P2c(b) => b.select(view, usable),
            Balancer::Random(b) => b.select(view, usable),
            Balancer::Maglev(b) => b.select(key, usable),
            Balancer::Empty => None,
        }
    }
}

/// A fixed view for the algorithms' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{SelectionView, FULL_RAMP};
    use std::cell::RefCell;

    #[derive(Debug, Default)]
    pub struct View {
        pub weights: Vec<u32>,
        pub in_flight: RefCell<Vec<u32>>,
        pub ramps: Vec<u32>,
    }

    impl View {
        pub fn equal(len: usize) -> Self {
            Self::weighted(&vec![1; len])
        }

        pub fn weighted(weights: &[u32]) -> Self {
            View {
                weights: weights.to_vec(),
                in_flight: RefCell::new(vec![0; weights.len()]),
                ramps: vec![FULL_RAMP; weights.len()],
            }
        }
    }

    impl SelectionView for View {
        fn weight(&self, index: usize) -> u64 {
            u64::from(self.weights[index])
        }
        fn in_flight(&self, index: usize) -> u32 {
            self.in_flight.borrow()[index]
        }
        fn ramp(&self, index: usize) -> u32 {
            self.ramps[index]
        }
    }

    /// How many of `picks` picks went to each of `len` backends.
    pub fn counts(len: usize, picks: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let mut counts = vec![0; len];
        for pick in picks {
            counts[pick] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::testing::View;
    use super::*;
    use std::num::NonZeroU32;

    fn backends(n: u16) -> Vec<BackendConfig> {
        (0..n)
            .map(|i| BackendConfig {
                address: ([127, 0, 0, 1], 8001 + i).into(),
                weight: NonZeroU32::MIN,
                backup: false,
                drain: false,
                canary: false,
            })
            .collect()
    }

    #[test]
    fn every_algorithm_yields_each_usable_backend_once_when_asked_again() {
        let algorithms = [
            BalanceAlgorithm::RoundRobin,
            BalanceAlgorithm::Weighted,
            BalanceAlgorithm::LeastConn,
            BalanceAlgorithm::P2c,
            BalanceAlgorithm::Random,
            BalanceAlgorithm::Maglev,
        ];
        let view = View::equal(5);
        for algorithm in algorithms {
            let balancer = Balancer::new(algorithm, &backends(5), 1);
            let mut tried = vec![3]; // unusable from the start
            while let Some(next) = balancer.select(&view, Some(42), |i| !tried.contains(&i)) {
                assert!(!tried.contains(&next), "{algorithm:?} repeated {next}");
                tried.push(next);
            }
            tried.sort_unstable();
            assert_eq!(tried, [0, 1, 2, 3, 4], "{algorithm:?}");
        }
    }
}
