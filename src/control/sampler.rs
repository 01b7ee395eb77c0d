//! Once a second, the control loop samples the workers' metrics into a short history (a periodic
//! job, [`SampleJob`](super::job::SampleJob)): request and error rates (from the counters' growth), and latency
//! percentiles per backend over the last [`PERCENTILE_WINDOW`] seconds (merging every worker's
//! per-second hdrhistogram). The dashboard and `/api/status` read the latest point and the last
//! [`HISTORY`] points for their charts, and controllers see the latest point in their
//! [`View`](super::controller::View); Prometheus does its own rates from `/metrics` and needs none of this.

use crate::metrics::stats::latency_histogram;
use crate::metrics::Aggregate;
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Points kept: two minutes at one a second.
pub const HISTORY: usize = 120;
/// Seconds of latencies behind each percentile.
pub const PERCENTILE_WINDOW: usize = 10;

/// A backend: (group, address).
pub type BackendKey = (String, SocketAddr);

/// The proxy at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// Requests answered per second (all listeners), and those answered 5xx.
    pub rps: f64,
    pub errors_per_s: f64,
    /// Over every backend's responses.
    pub latency: Percentiles,
    pub upstreams: HashMap<String, RatePoint>,
    pub backends: HashMap<BackendKey, RatePoint>,
}

/// Rates and latency of a group or a backend at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RatePoint {
    /// Responses per second (for a backend: responses it gave, TCP connections it took, and
    /// tries that failed).
    pub rps: f64,
    /// Share of those that were 5xx or failed tries, 0..=1.
    pub error_rate: f64,
    pub latency: Percentiles,
}

/// Latency percentiles in milliseconds over the window; `None` when it saw no response.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Responses in the window.
    pub samples: u64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u32>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| Some(histogram.value_at_quantile(q) as f64 / 1000.0);
        Self {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            samples: histogram.len(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Sampler {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    previous: Option<(Instant, Totals)>,
    points: VecDeque<Point>,
    windows: HashMap<BackendKey, Window>,
}

/// The counters the rates are computed from.
#[derive(Debug, Clone, Default)]
struct Totals {
    requests: u64,
    errors: u64,
    upstreams: HashMap<String, (u64, u64)>,
    backends: HashMap<BackendKey, (u64, u64)>,
}

/// A backend's last seconds of latencies, each merged over the workers.
#[derive(Debug, Default)]
struct Window {
    seconds: VecDeque<Histogram<u32>>,
    /// The last second taken from each worker.
    seen: HashMap<usize, u64>,
}

impl Sampler {
    /// Takes a point from `aggregate`, read at `now` (`now_ms` since the epoch).
    pub fn sample(&self, aggregate: &Aggregate, now: Instant, now_ms: u64) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let totals = totals_of(aggregate);
        let elapsed = state
            .previous
            .as_ref()
            .map(|(at, previous)| (now.saturating_duration_since(*at).as_secs_f64(), previous));
        let rate = |now: u64, before: Option<u64>| match (elapsed, before) {
            (Some((seconds, _)), Some(before)) if seconds > 0.0 => {
                now.saturating_sub(before) as f64 / seconds
            }
            _ => 0.0,
        };
        let share = |(n, e): (u64, u64), before: Option<(u64, u64)>| match before {
            Some((bn, be)) if n > bn => e.saturating_sub(be) as f64 / (n - bn) as f64,
            _ => 0.0,
        };
        let before = elapsed.map(|(_, previous)| previous);

        let mut all = latency_histogram();
        let mut upstreams = HashMap::new();
        let mut backends = HashMap::new();
        for upstream in &aggregate.upstreams {
            let mut group_latency = latency_histogram();
            for backend in &upstream.backends {
                let key = (upstream.name.clone(), backend.address);
                let window = state.windows.entry(key.clone()).or_default();
                window.take(&backend.seconds);
                let merged = window.merged();
                let _ = group_latency.add(&merged);
                let counts = totals.backends[&key];
                let previous = before.and_then(|b| b.backends.get(&key).copied());
                backends.insert(
                    key,
                    RatePoint {
                        rps: rate(counts.0, previous.map(|p| p.0)),
                        error_rate: share(counts, previous),
                        latency: Percentiles::of(&merged),
                    },
                );
            }
            let _ = all.add(&group_latency);
            let counts = totals.upstreams[&upstream.name];
            let previous = before.and_then(|b| b.upstreams.get(&upstream.name).copied());
            upstreams.insert(
                upstream.name.clone(),
                RatePoint {
                    rps: rate(counts.0, previous.map(|p| p.0)),
                    error_rate: share(counts, previous),
                    latency: Percentiles::of(&group_latency),
                },
            );
        }
        state.windows.retain(|key, _| backends.contains_key(key));
        let point = Point {
            t_ms: now_ms,
            rps: rate(totals.requests, before.map(|b| b.requests)),
            errors_per_s: rate(totals.errors, before.map(|b| b.errors)),
            latency: Percentiles::of(&all),
            upstreams,
            backends,
        };
        if state.points.len() == HISTORY {
            state.points.pop_front();
        }
        state.points.push_back(point);
        state.previous = Some((now, totals));
    }

    /// The latest point (`None` before the first sample).
    pub fn latest(&self) -> Option<Point> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.points.back().cloned()
    }

    /// Every point kept, oldest first.
    pub fn history(&self) -> Vec<Point> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.points.iter().cloned().collect()
    }
}

impl Window {
    /// Adds the seconds not taken yet (one per worker at most) as this sample's second.
    fn take(&mut self, seconds: &[(usize, u64, std::sync::Arc<Histogram<u32>>)]) {
        let mut merged = latency_histogram();
        for (worker, second, histogram) in seconds {
            if self.seen.insert(*worker, *second) != Some(*second) {
                let _ = merged.add(histogram.as_ref());
            }
        }
        if self.seconds.len() == PERCENTILE_WINDOW {
            self.seconds.pop_front();
        }
        self.seconds.push_back(merged);
    }

    fn merged(&self) -> Histogram<u32> {
        let mut merged = latency_histogram();
        for second in &self.seconds {
            let _ = merged.add(second);
        }
        merged
    }
}

fn totals_of(aggregate: &Aggregate) -> Totals {
    let mut totals = Totals::default();
    for listener in &aggregate.listeners {
        totals.requests += listener.counts.responses.total();
        totals.errors += listener.counts.responses.server_errors();
    }
    for upstream in &aggregate.upstreams {
        let responses = &upstream.counts.responses;
        totals.upstreams.insert(
            upstream.name.clone(),
            (responses.total(), responses.server_errors()),
        );
        for backend in &upstream.backends {
            let counts = &backend.counts;
            let failed = counts.failed_attempts;
            totals.backends.insert(
                (upstream.name.clone(), backend.address),
                (
                    counts.responses.total() + counts.connections + failed,
                    counts.responses.server_errors() + failed,
                ),
            );
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregate::{BackendRow, ListenerRow, UpstreamRow};
    use crate::metrics::counters::ClassCounts;
    use crate::metrics::stats::{BackendCounts, ListenerCounts, UpstreamCounts};
    use std::sync::Arc;
    use std::time::Duration;

    fn aggregate(ok: u64, errors: u64, second: u64, latency_us: &[u64]) -> Aggregate {
        let responses = ClassCounts([0, 0, ok, 0, 0, errors]);
        let mut histogram = latency_histogram();
        for &us in latency_us {
            histogram.record(us).unwrap();
        }
        let backend = BackendRow {
            seconds: vec![(0, second, Arc::new(histogram))],
            ..BackendRow::up_for_tests(
                "127.0.0.1:8001".parse().unwrap(),
                BackendCounts {
                    responses,
                    ..BackendCounts::default()
                },
            )
        };
        Aggregate {
            workers: Vec::new(),
            listeners: vec![ListenerRow {
                name: "http".into(),
                protocol: "http",
                counts: ListenerCounts {
                    responses,
                    ..ListenerCounts::default()
                },
            }],
            routes: Vec::new(),
            upstreams: vec![UpstreamRow {
                name: "api".into(),
                balance: "round_robin",
                counts: UpstreamCounts {
                    responses,
                    ..UpstreamCounts::default()
                },
                backends: vec![backend],
            }],
            compression: Default::default(),
            rate_limits: Vec::new(),
        }
    }

    #[test]
    fn rates_come_from_growth_and_percentiles_from_the_window() {
        let sampler = Sampler::default();
        let t0 = Instant::now();
        sampler.sample(&aggregate(100, 0, 1, &[1_000; 10]), t0, 0);
        let first = sampler.latest().unwrap();
        assert_eq!(first.rps, 0.0, "no rate from a single sample");
        assert_eq!(first.latency.samples, 10);

        let later = t0 + Duration::from_secs(2);
        sampler.sample(&aggregate(180, 20, 2, &[9_000; 10]), later, 2_000);
        let point = sampler.latest().unwrap();
        assert_eq!(point.rps, 50.0, "(200 - 100) / 2 s");
        assert_eq!(point.errors_per_s, 10.0);
        let key = ("api".to_owned(), "127.0.0.1:8001".parse().unwrap());
        let backend = point.backends[&key];
        assert_eq!(backend.error_rate, 0.2);
        assert_eq!(
            backend.latency.samples, 20,
            "both seconds are in the window"
        );
        let p99 = backend.latency.p99_ms.unwrap();
        assert!((8.9..9.1).contains(&p99), "{p99}");

        // The same second again (no new roll-over on the worker) is not counted twice.
        sampler.sample(&aggregate(180, 20, 2, &[9_000; 10]), later, 3_000);
        let again = sampler.latest().unwrap();
        assert_eq!(again.backends[&key].latency.samples, 20);
        assert_eq!(sampler.history().len(), 3);
    }
}
