//! The counting primitives a worker updates per request: plain `Cell`s, one writer (the worker),
//! no atomics. A request costs a few increments and one short bucket search.

use std::cell::Cell;

/// A monotonically growing count (or a sum), owned by one worker.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down (open connections, requests in flight), owned by one worker.
#[derive(Debug, Default)]
pub struct Gauge(Cell<u64>);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    #[inline]
    pub fn dec(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Response status classes, as the `code` label shows them: index 0 counts requests that got no
/// response at all (the client went away, or a backend failed before answering), 1..=5 are
/// `1xx`..`5xx`.
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The [`STATUS_CLASSES`] index of `status` (0 for none, or anything outside 100..=599).
#[inline]
pub fn status_class(status: u16) -> usize {
    let class = usize::from(status / 100);
    if class <= 5 {
        class
    } else {
        0
    }
}

/// How one request ended, worked out once and counted at every level (listener, route, group,
/// backend): its status class and latency bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// [`STATUS_CLASSES`] index.
    pub class: usize,
    /// Bucket of [`LATENCY_BOUNDS_US`] (the last: `+Inf`).
    pub bucket: usize,
    pub micros: u64,
}

impl Outcome {
    #[inline]
    pub fn of(status: u16, micros: u64) -> Self {
        // Linear from the fastest bucket: most requests stop after one or two comparisons.
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS - 1);
        Self {
            class: status_class(status),
            bucket,
            micros,
        }
    }
}

/// Responses by status class.
#[derive(Debug, Default)]
pub struct ClassCounters([Counter; 6]);

impl ClassCounters {
    #[inline]
    pub fn count(&self, status: u16) {
        self.count_class(status_class(status));
    }

    #[inline]
    pub fn count_class(&self, class: usize) {
        self.0[class].inc();
    }

    pub fn snapshot(&self) -> ClassCounts {
        ClassCounts(std::array::from_fn(|i| self.0[i].get()))
    }
}

/// A published [`ClassCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts(pub [u64; 6]);

impl ClassCounts {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Responses with status 500..=599.
    pub fn server_errors(&self) -> u64 {
        self.0[5]
    }

    pub fn merge(&mut self, other: &ClassCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// Upper bounds of the Prometheus latency buckets, in microseconds (500 µs … 10 s; the last
/// bucket, `+Inf`, is implicit). Dense below 100 ms, where a proxy's latencies live.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// A Prometheus histogram of durations: a count per bucket (not cumulative; the renderer adds
/// them up) and the sum.
#[derive(Debug, Default)]
pub struct LatencyCounters {
    buckets: [Counter; BUCKETS],
    sum_us: Counter,
}

impl LatencyCounters {
    #[inline]
    pub fn observe_outcome(&self, outcome: &Outcome) {
        self.buckets[outcome.bucket].inc();
        self.sum_us.add(outcome.micros);
    }

    pub fn snapshot(&self) -> Latency {
        Latency {
            buckets: std::array::from_fn(|i| self.buckets[i].get()),
            sum_us: self.sum_us.get(),
        }
    }
}

/// A published [`LatencyCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Observations per bucket, bucket `i` bounded by `LATENCY_BOUNDS_US[i]` (the last: `+Inf`).
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl Latency {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn merge(&mut self, other: &Latency) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_class_and_odd_ones_in_none() {
        assert_eq!(status_class(0), 0);
        assert_eq!(status_class(101), 1);
        assert_eq!(status_class(204), 2);
        assert_eq!(status_class(404), 4);
        assert_eq!(status_class(599), 5);
        assert_eq!(status_class(600), 0);
        let counters = ClassCounters::default();
        for status in [200, 201, 503, 0] {
            counters.count(status);
        }
        let counts = counters.snapshot();
        assert_eq!(counts.0, [1, 0, 2, 0, 0, 1]);
        assert_eq!((counts.total(), counts.server_errors()), (4, 1));
    }

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let latency = LatencyCounters::default();
        for micros in [0, 500, 501, 10_000_000, 10_000_001] {
            latency.observe_outcome(&Outcome::of(0, micros));
        }
        let snapshot = latency.snapshot();
        assert_eq!(snapshot.buckets[0], 2, "<= 500us");
        assert_eq!(snapshot.buckets[1], 1, "<= 1ms");
        assert_eq!(snapshot.buckets[13], 1, "<= 10s");
        assert_eq!(snapshot.buckets[14], 1, "+Inf");
        assert_eq!(snapshot.count(), 5);
        assert_eq!(snapshot.sum_us, 20_001_002);
    }
}
