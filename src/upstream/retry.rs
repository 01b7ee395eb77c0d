//! Retry limits: at most `retry.max_retries` per request, and a retry budget per worker and
//! group, so that a failing group is not hammered by retries on top of its normal load.
//!
//! Both limits are there for failures that cost the backends something or may mean the whole
//! group is sick: timeouts, lost connections, 5xx-like failures. A refused connection
//! ([`UpstreamFailure::is_refusal`]) is neither: the backend is simply not listening, nothing was
//! sent, and trying the next one costs the group nothing. [`RetryCount::permit_after`] lets it go
//! to the next backend without counting against either limit; the request's list of tried
//! backends still bounds it to one try per backend. That is what makes N−1 dead backends of N
//! cost no failed request (nginx's default behaves the same).
//!
//! The budget (after Finagle's and Envoy's): over the last [`WINDOW`], retries may number at
//! most `budget_percent`% of the requests the group received, plus `budget_min_per_second` ×
//! the window's seconds (so a quiet group can still retry). Counted in ten one-second buckets
//! that the worker's tick rolls: a request costs one `Cell` increment, a retry a sum over ten
//! buckets, and nothing reads the clock on the request path. Over budget, the request fails
//! fast with the failure it had, and the log says so.

use super::failure::UpstreamFailure;
use crate::config::RetryConfig;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How far back the budget looks.
pub const WINDOW: Duration = Duration::from_secs(10);
const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_secs(1);

/// Why a retry was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request already had `max_retries` retries.
    MaxRetries,
    /// The worker's retry budget for the group is spent.
    Budget,
}

#[derive(Debug)]
pub struct RetryBudget {
    requests: [Cell<u32>; BUCKETS],
    retries: [Cell<u32>; BUCKETS],
    current: Cell<usize>,
    rolled_at: Cell<Option<Instant>>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            retries: Default::default(),
            current: Cell::new(0),
            rolled_at: Cell::new(None),
        }
    }
}

impl RetryBudget {
    /// Counts a request (its first attempt).
    pub fn record_request(&self) {
        let bucket = &self.requests[self.current.get()];
        bucket.set(bucket.get().saturating_add(1));
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_spend(&self, config: &RetryConfig) -> bool {
        let requests: u64 = self.requests.iter().map(|c| u64::from(c.get())).sum();
        let retries: u64 = self.retries.iter().map(|c| u64::from(c.get())).sum();
        let allowed = requests * u64::from(config.budget_percent) / 100
            + u64::from(config.budget_min_per_second) * WINDOW.as_secs();
        if retries >= allowed {
            return false;
        }
        let bucket = &self.retries[self.current.get()];
        bucket.set(bucket.get().saturating_add(1));
        true
    }

    /// Starts a new bucket for every second passed since the last roll (the oldest fall out).
    pub fn tick(&self, now: Instant) {
        let Some(rolled_at) = self.rolled_at.get() else {
            self.rolled_at.set(Some(now));
            return;
        };
        let mut at = rolled_at;
        let mut rolled = 0;
        while now.saturating_duration_since(at) >= BUCKET {
            at += BUCKET;
            rolled += 1;
            if rolled <= BUCKETS {
                let next = (self.current.get() + 1) % BUCKETS;
                self.requests[next].set(0);
                self.retries[next].set(0);
                self.current.set(next);
            } else {
                // Idle for longer than the window: everything has already been cleared.
                at = now;
            }
        }
        self.rolled_at.set(Some(at));
    }

    /// The budget's sentence for error responses and logs.
    pub fn describe(config: &RetryConfig) -> String {
        format!(
            "{}% of the last {}s of requests + {}/s",
            config.budget_percent,
            WINDOW.as_secs(),
            config.budget_min_per_second
        )
    }
}

/// One request's retries.
#[derive(Debug, Default)]
pub struct RetryCount(u32);

impl RetryCount {
    /// Permission to try another backend after `failure`: free after a refusal (see the module
    /// doc), else [`RetryCount::permit`].
    pub fn permit_after(
        &mut self,
        failure: &UpstreamFailure,
        config: &RetryConfig,
        budget: &RetryBudget,
    ) -> Result<(), Refusal> {
        if failure.is_refusal() {
            return Ok(());
        }
        self.permit(config, budget)
    }

    /// Permission for one more retry under `config` and `budget`.
    pub fn permit(&mut self, config: &RetryConfig, budget: &RetryBudget) -> Result<(), Refusal> {
        if self.0 >= config.max_retries {
            return Err(Refusal::MaxRetries);
        }
        if !budget.try_spend(config) {
            return Err(Refusal::Budget);
        }
        self.0 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: u32, floor: u32) -> RetryConfig {
        RetryConfig {
            max_retries: 2,
            budget_percent: percent,
            budget_min_per_second: floor,
        }
    }

    #[test]
    fn budget_is_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudget::default();
        let config = config(20, 1);
        for _ in 0..100 {
            budget.record_request();
        }
        // 20% of 100 + 1/s × 10 s.
        let granted = (0..100).filter(|_| budget.try_spend(&config)).count();
        assert_eq!(granted, 30);
    }

    #[test]
    fn old_buckets_fall_out_of_the_window() {
        let budget = RetryBudget::default();
        let config = config(0, 1);
        let t0 = Instant::now();
        budget.tick(t0);
        assert_eq!((0..20).filter(|_| budget.try_spend(&config)).count(), 10);
        budget.tick(t0 + Duration::from_millis(9_500));
        assert!(!budget.try_spend(&config), "still within the window");
        budget.tick(t0 + Duration::from_secs(10));
        assert_eq!((0..20).filter(|_| budget.try_spend(&config)).count(), 10);
        // A long idle stretch clears everything at once.
        budget.tick(t0 + Duration::from_secs(100));
        assert_eq!((0..20).filter(|_| budget.try_spend(&config)).count(), 10);
    }

    #[test]
    fn per_request_limit_comes_first() {
        let budget = RetryBudget::default();
        let mut count = RetryCount::default();
        let config = config(100, 100);
        assert_eq!(count.permit(&config, &budget), Ok(()));
        assert_eq!(count.permit(&config, &budget), Ok(()));
        assert_eq!(count.permit(&config, &budget), Err(Refusal::MaxRetries));
        let mut count = RetryCount::default();
        assert_eq!(
            count.permit(&super::tests::config(0, 0), &budget),
            Err(Refusal::Budget)
        );
    }

    #[test]
    fn a_refused_connection_goes_on_without_counting_against_either_limit() {
        let budget = RetryBudget::default();
        let none_allowed = RetryConfig {
            max_retries: 0,
            ..config(0, 0)
        };
        let refused =
            UpstreamFailure::Connect(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let mut count = RetryCount::default();
        for _ in 0..5 {
            assert_eq!(count.permit_after(&refused, &none_allowed, &budget), Ok(()));
        }
        let timeout = UpstreamFailure::ConnectTimeout(Duration::from_secs(1));
        assert_eq!(
            count.permit_after(&timeout, &none_allowed, &budget),
            Err(Refusal::MaxRetries),
            "a timeout is budgeted, and the refusals took nothing from the count"
        );
        let mut count = RetryCount::default();
        let spent = config(0, 0);
        assert_eq!(
            count.permit_after(&timeout, &spent, &budget),
            Err(Refusal::Budget)
        );
        assert_eq!(count.permit_after(&refused, &spent, &budget), Ok(()));
    }
}
