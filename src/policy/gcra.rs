//! The generic cell rate algorithm (GCRA, the "virtual scheduling" form): a limit of one event
//! per emission interval `T`, with a burst of `B` events at once, kept as one timestamp per key —
//! the theoretical arrival time `TAT` of the next event at the sustained rate.
//!
//! An event at `now` conforms when `now >= TAT - τ` (τ = `(B - 1) · T`, the tolerance); it then
//! moves `TAT` to `max(TAT, now) + T`. A key whose `TAT <= now` is indistinguishable from one
//! never seen, which is what lets [`super::keyed`] forget it.

use crate::config::Rate;

/// One limit's parameters, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `T`: the time one event uses.
    interval: u64,
    /// `τ = (B - 1) · T`.
    tolerance: u64,
}

/// What [`Gcra::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Conforms; `remaining` more events would conform right now.
    Allowed { remaining: u32 },
    /// Over the limit: the next event conforms in `retry_after` nanoseconds.
    Limited { retry_after: u64 },
}

impl Gcra {
    /// `rate` sustained, `burst` (at least 1) at once.
    pub fn new(rate: Rate, burst: u32) -> Self {
        let interval = rate.interval_nanos();
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
        }
    }

    /// The same limit shared by `ways` independent counters (each enforces its share: the
    /// interval times `ways`, the burst divided, rounded up).
    pub fn split(rate: Rate, burst: u32, ways: usize) -> Self {
        let ways = ways.max(1) as u64;
        let interval = rate.interval_nanos().saturating_mul(ways);
        let burst = u64::from(burst.max(1)).div_ceil(ways);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(burst - 1),
        }
    }

    /// How long after its last conforming event a key's state still matters (`τ + T`): a key
    /// untouched for this long may be forgotten.
    pub fn horizon(&self) -> u64 {
        self.tolerance.saturating_add(self.interval)
    }

    /// Checks an event at `now` against the key's `tat` (0 for a key never seen), updating it when
    /// the event conforms.
    #[inline]
    pub fn check(&self, tat: &mut u64, now: u64) -> Decision {
        let earliest = tat.saturating_sub(self.tolerance);
        if now < earliest {
            return Decision::Limited {
                retry_after: earliest - now,
            };
        }
        let next = (*tat).max(now) + self.interval;
        *tat = next;
        // Further events that would conform now: the j-th needs next + (j - 1)·T - τ <= now.
        let remaining = match (now + self.tolerance).checked_sub(next) {
            Some(slack) => slack / self.interval + 1,
            None => 0,
        };
        Decision::Allowed {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        }
    }

    /// Nanoseconds until a key at `tat` is back to a full burst (`RateLimit`'s reset).
    pub fn reset_after(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_fresh_key_gets_its_burst_then_the_rate() {
        let limit = Gcra::new(rate(10, 1), 3);
        let mut tat = 0;
        let now = 100 * SECOND;
        let decisions: Vec<_> = (0..4).map(|_| limit.check(&mut tat, now)).collect();
        assert_eq!(
            decisions,
            [
                Decision::Allowed { remaining: 2 },
                Decision::Allowed { remaining: 1 },
                Decision::Allowed { remaining: 0 },
                Decision::Limited {
                    retry_after: SECOND / 10
                },
            ]
        );
        // One interval later exactly one more conforms.
        let later = now + SECOND / 10;
        assert!(matches!(
            limit.check(&mut tat, later),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limit.check(&mut tat, later),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn the_sustained_rate_is_exact_over_a_long_run() {
        let limit = Gcra::new(rate(100, 1), 1);
        let mut tat = 0;
        let start = 10 * SECOND;
        // Offered every millisecond for ten seconds: 100/s conform, plus the first.
        let allowed = (0..10_000)
            .filter(|ms| {
                let now = start + ms * 1_000_000;
                matches!(limit.check(&mut tat, now), Decision::Allowed { .. })
            })
            .count();
        assert_eq!(allowed, 1000);
    }

    #[test]
    fn a_key_past_its_horizon_is_as_good_as_new() {
        let limit = Gcra::new(rate(5, 1), 5);
        let mut tat = 0;
        let now = 50 * SECOND;
        while matches!(limit.check(&mut tat, now), Decision::Allowed { .. }) {}
        let fresh = |at| {
            let mut new = 0;
            limit.check(&mut new, at)
        };
        let after = now + limit.horizon();
        assert_eq!(limit.check(&mut tat, after), fresh(after));
    }

    #[test]
    fn a_split_limit_sums_to_the_whole() {
        let whole = rate(100, 1);
        let part = Gcra::split(whole, 10, 4);
        assert_eq!(part.interval, 40_000_000);
        // Burst 10 over 4 ways: 3 each (rounded up).
        let mut tat = 0;
        let now = 10 * SECOND;
        let burst = (0..10)
            .filter(|_| matches!(part.check(&mut tat, now), Decision::Allowed { .. }))
            .count();
        assert_eq!(burst, 3);
    }
}
