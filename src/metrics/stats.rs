//! The per-worker statistics of each listener, route, upstream group and backend: what the data
//! plane counts, and what it publishes on its tick.
//!
//! Each struct is owned by one worker and holds `Cell`s only ([`super::counters`]); nothing here
//! locks or touches an atomic. They are protocol-agnostic: an HTTP request calls
//! `count` (status class and latency of its [`Outcome`]) and the byte counters once when it ends
//! (`l7/record.rs`); a TCP (L4) connection calls [`ListenerStats::connection_opened`] /
//! [`ListenerStats::connection_closed`] and the byte counters of its listener, and
//! [`BackendStats::connection_opened`] / [`BackendStats::connection_closed`],
//! [`BackendStats::connect_error`] and the byte counters of its backend.

use super::counters::{
    ClassCounters, ClassCounts, Counter, Gauge, Latency, LatencyCounters, Outcome,
};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::sync::Arc;

/// Latencies the per-backend percentile histograms can tell apart: 1 µs to a minute (slower
/// ones are recorded as a minute), two significant digits (a percentile is within 1%).
const HDR_LOWEST_US: u64 = 1;
const HDR_HIGHEST_US: u64 = 60_000_000;
const HDR_SIGNIFICANT_DIGITS: u8 = 2;

/// An empty latency histogram with the bounds every worker uses (so that they merge).
pub fn latency_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// One listener on one worker.
#[derive(Debug, Default)]
pub struct ListenerStats {
    accepted: Counter,
    open: Gauge,
    responses: ClassCounters,
    bytes_received: Counter,
    bytes_sent: Counter,
    slow_readers_reset: Counter,
}

/// A published [`ListenerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerCounts {
    pub accepted: u64,
    pub open: u64,
    pub responses: ClassCounts,
    /// From clients (request heads and bodies; for TCP, every byte).
    pub bytes_received: u64,
    /// To clients.
    pub bytes_sent: u64,
    /// Connections reset because the client stopped reading its response.
    pub slow_readers_reset: u64,
}

impl ListenerCounts {
    pub fn merge(&mut self, other: &ListenerCounts) {
        self.accepted += other.accepted;
        self.open += other.open;
        self.responses.merge(&other.responses);
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        self.slow_readers_reset += other.slow_readers_reset;
    }
}

impl ListenerStats {
    #[inline]
    pub fn connection_opened(&self) {
        self.accepted.inc();
        self.open.inc();
    }

    #[inline]
    pub fn connection_closed(&self) {
        self.open.dec();
    }

    /// A response (or, with `status` 0, a request that got none) on this listener.
    #[inline]
    pub fn count_response(&self, status: u16) {
        self.responses.count(status);
    }

    /// A request that ended with `outcome`.
    #[inline]
    pub fn count(&self, outcome: &Outcome) {
        self.responses.count_class(outcome.class);
    }

    #[inline]
    pub fn add_received(&self, bytes: u64) {
        self.bytes_received.add(bytes);
    }

    #[inline]
    pub fn add_sent(&self, bytes: u64) {
        self.bytes_sent.add(bytes);
    }

    /// A client's connection was reset because it did not take a response buffer in time.
    #[inline]
    pub fn slow_reader_reset(&self) {
        self.slow_readers_reset.inc();
    }

    pub fn snapshot(&self) -> ListenerCounts {
        ListenerCounts {
            accepted: self.accepted.get(),
            open: self.open.get(),
            responses: self.responses.snapshot(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            slow_readers_reset: self.slow_readers_reset.get(),
        }
    }
}

/// One route of a listener on one worker.
#[derive(Debug, Default)]
pub struct RouteStats {
    responses: ClassCounters,
}

impl RouteStats {
    #[inline]
    pub fn count(&self, outcome: &Outcome) {
        self.responses.count_class(outcome.class);
    }

    pub fn snapshot(&self) -> ClassCounts {
        self.responses.snapshot()
    }
}

/// One upstream group on one worker: the requests routed to it, whoever answered them.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    responses: ClassCounters,
    latency: LatencyCounters,
    in_flight: Gauge,
    retries: Counter,
    budget_rejections: Counter,
    no_usable_backend: Counter,
    queue_timeouts: Counter,
    out_of_resources: Counter,
}

/// Why the proxy answered a request of the group itself, for the counters that say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUpCount {
    /// A retry was due but the retry budget was spent.
    RetryBudget,
    /// No backend was usable at all (503).
    NoUsableBackend,
    /// Every usable backend stayed at `max_connections` for `queue_timeout` (503).
    QueueTimeout,
    /// The proxy itself ran out of resources (file descriptors) connecting to a backend (503).
    OutOfResources,
}

/// A published [`UpstreamStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub responses: ClassCounts,
    pub latency: Latency,
    pub in_flight: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Retries refused because the group's retry budget was spent.
    pub budget_rejections: u64,
    /// Requests answered 503 because no backend was usable at all.
    pub no_usable_backend: u64,
    /// Requests answered 503 after waiting `queue_timeout` for a backend under its
    /// `max_connections`.
    pub queue_timeouts: u64,
    /// Requests answered 503 because the proxy ran out of file descriptors connecting.
    pub out_of_resources: u64,
}

impl UpstreamCounts {
    pub fn merge(&mut self, other: &UpstreamCounts) {
        self.responses.merge(&other.responses);
        self.latency.merge(&other.latency);
        self.in_flight += other.in_flight;
        self.retries += other.retries;
        self.budget_rejections += other.budget_rejections;
        self.no_usable_backend += other.no_usable_backend;
        self.queue_timeouts += other.queue_timeouts;
        self.out_of_resources += other.out_of_resources;
    }
}

impl UpstreamStats {
    #[inline]
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request routed here ended with `outcome`, after `retries` retries.
    #[inline]
    pub fn request_finished(&self, outcome: &Outcome, retries: u32) {
        self.in_flight.dec();
        self.responses.count_class(outcome.class);
        self.latency.observe_outcome(outcome);
        self.retries.add(u64::from(retries));
    }

    /// Retries of a TCP (L4) connection's connect.
    #[inline]
    pub fn add_retries(&self, retries: u32) {
        self.retries.add(u64::from(retries));
    }

    /// The proxy answered a request of the group itself (or closed a TCP connection), for `why`.
    #[inline]
    pub fn gave_up(&self, why: GaveUpCount) {
        match why {
            GaveUpCount::RetryBudget => self.budget_rejections.inc(),
            GaveUpCount::NoUsableBackend => self.no_usable_backend.inc(),
            GaveUpCount::QueueTimeout => self.queue_timeouts.inc(),
            GaveUpCount::OutOfResources => self.out_of_resources.inc(),
        }
    }

    pub fn snapshot(&self) -> UpstreamCounts {
        UpstreamCounts {
            responses: self.responses.snapshot(),
            latency: self.latency.snapshot(),
            in_flight: self.in_flight.get(),
            retries: self.retries.get(),
            budget_rejections: self.budget_rejections.get(),
            no_usable_backend: self.no_usable_backend.get(),
            queue_timeouts: self.queue_timeouts.get(),
            out_of_resources: self.out_of_resources.get(),
        }
    }
}

/// One backend of one group on one worker.
#[derive(Debug)]
pub struct BackendStats {
    responses: ClassCounters,
    failed_attempts: Counter,
    connect_errors: Counter,
    protocol_errors: Counter,
    ejections: Counter,
    pool_hits: Counter,
    pool_misses: Counter,
    connections: Counter,
    open_connections: Gauge,
    bytes_sent: Counter,
    bytes_received: Counter,
    latency: LatencyCounters,
    /// This second's latencies, for percentiles; rolled over by [`BackendStats::roll_second`].
    recent: RefCell<Histogram<u32>>,
    /// The last whole second's, as published.
    last_second: RefCell<Option<Arc<Histogram<u32>>>>,
}

impl Default for BackendStats {
    fn default() -> Self {
        Self {
            responses: ClassCounters::default(),
            failed_attempts: Counter::default(),
            connect_errors: Counter::default(),
            protocol_errors: Counter::default(),
            ejections: Counter::default(),
            pool_hits: Counter::default(),
            pool_misses: Counter::default(),
            connections: Counter::default(),
            open_connections: Gauge::default(),
            bytes_sent: Counter::default(),
            bytes_received: Counter::default(),
            latency: LatencyCounters::default(),
            recent: RefCell::new(latency_histogram()),
            last_second: RefCell::new(None),
        }
    }
}

/// A published [`BackendStats`] (without the percentile histogram).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendCounts {
    /// Responses this backend gave, by status class.
    pub responses: ClassCounts,
    /// Tries that got no complete response: connect errors, timeouts, lost connections, invalid
    /// responses.
    pub failed_attempts: u64,
    pub connect_errors: u64,
    /// Times it broke HTTP/1.1 framing: an invalid response, bytes past the end of a response,
    /// or bytes sent on an idle keep-alive connection. The connection was closed each time.
    pub protocol_errors: u64,
    /// Times outlier detection ejected it.
    pub ejections: u64,
    /// Requests that found an idle keep-alive connection in the pool, and those that connected.
    pub pool_hits: u64,
    pub pool_misses: u64,
    /// TCP (L4) connections relayed to it, and those open now.
    pub connections: u64,
    pub open_connections: u64,
    /// Request bytes sent to it (heads as the proxy wrote them, and bodies).
    pub bytes_sent: u64,
    /// Response bytes from it, as relayed to clients.
    pub bytes_received: u64,
    pub latency: Latency,
}

impl BackendCounts {
    pub fn merge(&mut self, other: &BackendCounts) {
        self.responses.merge(&other.responses);
        self.failed_attempts += other.failed_attempts;
        self.connect_errors += other.connect_errors;
        self.protocol_errors += other.protocol_errors;
        self.ejections += other.ejections;
        self.pool_hits += other.pool_hits;
        self.pool_misses += other.pool_misses;
        self.connections += other.connections;
        self.open_connections += other.open_connections;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.latency.merge(&other.latency);
    }
}

impl BackendStats {
    /// A response from it: the request ended with `outcome`.
    #[inline]
    pub fn count_response(&self, outcome: &Outcome) {
        self.responses.count_class(outcome.class);
        self.latency.observe_outcome(outcome);
        self.recent.borrow_mut().saturating_record(outcome.micros);
    }

    /// A try that got no complete response (see [`BackendCounts::failed_attempts`]).
    #[inline]
    pub fn failed_attempt(&self) {
        self.failed_attempts.inc();
    }

    /// A connection to it failed (also a failed attempt).
    #[inline]
    pub fn connect_error(&self) {
        self.connect_errors.inc();
        self.failed_attempts.inc();
    }

    /// It broke HTTP/1.1 framing (see [`BackendCounts::protocol_errors`]).
    #[inline]
    pub fn protocol_error(&self) {
        self.protocol_errors.inc();
    }

    /// It broke HTTP/1.1 framing `n` times (idle connections found holding bytes).
    #[inline]
    pub fn protocol_errors(&self, n: u64) {
        self.protocol_errors.add(n);
    }

    #[inline]
    pub fn ejected(&self) {
        self.ejections.inc();
    }

    #[inline]
    pub fn pool_checkout(&self, hit: bool) {
        if hit {
            self.pool_hits.inc();
        } else {
            self.pool_misses.inc();
        }
    }

    /// A TCP (L4) connection to it was established.
    #[inline]
    pub fn connection_opened(&self) {
        self.connections.inc();
        self.open_connections.inc();
    }

    #[inline]
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    #[inline]
    pub fn add_sent(&self, bytes: u64) {
        self.bytes_sent.add(bytes);
    }

    #[inline]
    pub fn add_received(&self, bytes: u64) {
        self.bytes_received.add(bytes);
    }

    pub fn snapshot(&self) -> BackendCounts {
        BackendCounts {
            responses: self.responses.snapshot(),
            failed_attempts: self.failed_attempts.get(),
            connect_errors: self.connect_errors.get(),
            protocol_errors: self.protocol_errors.get(),
            ejections: self.ejections.get(),
            pool_hits: self.pool_hits.get(),
            pool_misses: self.pool_misses.get(),
            connections: self.connections.get(),
            open_connections: self.open_connections.get(),
            bytes_sent: self.bytes_sent.get(),
            bytes_received: self.bytes_received.get(),
            latency: self.latency.snapshot(),
        }
    }

    /// Ends the current second: its latencies become [`BackendStats::last_second`] (none when
    /// there were none), and a new second starts. Called once a second by the worker's tick.
    pub fn roll_second(&self) {
        let mut recent = self.recent.borrow_mut();
        let second = if recent.is_empty() {
            None
        } else {
            let second = Arc::new(recent.clone());
            recent.reset();
            Some(second)
        };
        *self.last_second.borrow_mut() = second;
    }

    /// The latencies of the last whole second, if it had any.
    pub fn last_second(&self) -> Option<Arc<Histogram<u32>>> {
        self.last_second.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_latencies_is_handed_over_once() {
        let stats = BackendStats::default();
        stats.roll_second();
        assert!(stats.last_second().is_none());
        stats.count_response(&Outcome::of(200, 1_000));
        stats.count_response(&Outcome::of(502, 3_000));
        assert!(stats.last_second().is_none(), "the second is not over");
        stats.roll_second();
        let second = stats.last_second().expect("two latencies");
        assert_eq!(second.len(), 2);
        assert!(second.value_at_quantile(0.99) >= 2_990);
        stats.roll_second();
        assert!(stats.last_second().is_none(), "a quiet second has none");
        let counts = stats.snapshot();
        assert_eq!(counts.responses.total(), 2);
        assert_eq!(
            counts.latency.count(),
            2,
            "the Prometheus histogram keeps counting"
        );
    }

    #[test]
    fn upstream_in_flight_goes_up_and_down() {
        let stats = UpstreamStats::default();
        stats.request_started();
        stats.request_started();
        stats.request_finished(&Outcome::of(200, 100), 1);
        stats.gave_up(GaveUpCount::QueueTimeout);
        let counts = stats.snapshot();
        assert_eq!(counts.in_flight, 1);
        assert_eq!(counts.retries, 1);
        assert_eq!(counts.responses.total(), 1);
        assert_eq!((counts.queue_timeouts, counts.no_usable_backend), (1, 0));
    }
}
