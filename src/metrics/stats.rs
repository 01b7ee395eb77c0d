//! The per-worker statistics of each listener, route, upstream group and backend: what the data
//! plane counts, and how. The structs are made from the entries of [`super::catalog`] (one per
//! metric, by `metrics_structs!`: the cells, the published counts, `snapshot` and `merge`); the
//! methods below are what counts them.
//!
//! Each struct is owned by one worker and holds `Cell`s only ([`super::counters`]); nothing here
//! locks or touches an atomic. They are protocol-agnostic: an HTTP request calls
//! `count` (status class and latency of its [`Outcome`]) and the byte counters once when it ends
//! (`l7/record.rs`); a TCP (L4) connection calls [`ListenerStats::connection_opened`] /
//! [`ListenerStats::connection_closed`] and the byte counters of its listener, and
//! [`BackendStats::connection_opened`] / [`BackendStats::connection_closed`],
//! [`BackendStats::connect_error`] and the byte counters of its backend.

use super::catalog::{backend_metrics, listener_metrics, upstream_metrics};
use super::counters::{ClassCounters, ClassCounts, Counter, Gauge, LatencyCounters, Outcome};
use super::family::metrics_structs;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::sync::Arc;

listener_metrics!(metrics_structs! {
    /// One listener on one worker.
    pub struct ListenerStats {}
    /// A published [`ListenerStats`].
    pub struct ListenerCounts;
});

upstream_metrics!(metrics_structs! {
    /// One upstream group on one worker: the requests routed to it, whoever answered them.
    pub struct UpstreamStats {}
    /// A published [`UpstreamStats`].
    pub struct UpstreamCounts;
});

backend_metrics!(metrics_structs! {
    /// One backend of one group on one worker.
    pub struct BackendStats {
        /// This second's latencies, for percentiles; rolled over by
        /// [`BackendStats::roll_second`].
        recent: RefCell<Histogram<u32>> = RefCell::new(latency_histogram()),
        /// The last whole second's, as published.
        last_second: RefCell<Option<Arc<Histogram<u32>>>> = RefCell::new(None),
    }
    /// A published [`BackendStats`] (without the percentile histogram).
    pub struct BackendCounts;
});

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

    /// Client connections open on the listener (this worker's).
    #[inline]
    pub fn open(&self) -> u64 {
        self.open.get()
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

    /// Bytes from a client: request heads and bodies; for TCP, every byte.
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

    /// A connection was closed at accept: the listener was full.
    #[cold]
    pub fn refused_full(&self) {
        self.refused_full.inc();
    }

    /// A connection was closed: its client address was over a per-client limit.
    #[cold]
    pub fn refused_per_client(&self) {
        self.refused_per_client.inc();
    }

    /// A connection was reset when it opened: the access list denies its address.
    #[cold]
    pub fn connection_denied(&self) {
        self.denied_connections.inc();
    }

    /// A connection was closed for its PROXY header (missing, malformed, late, untrusted).
    #[cold]
    pub fn proxy_header_error(&self) {
        self.proxy_header_errors.inc();
    }

    /// A request was refused by an access list.
    #[cold]
    pub fn request_denied(&self) {
        self.denied_requests.inc();
    }

    /// A request was answered 429 (`dry_run`: would have been, and was served).
    #[cold]
    pub fn rate_limited(&self, dry_run: bool) {
        if dry_run {
            self.rate_limit_dry_run.inc();
        } else {
            self.rate_limited.inc();
        }
    }

    /// A TLS client presented a certificate that verified (`true`), or failed the handshake for
    /// its certificate (`false`).
    #[cold]
    pub fn client_certificate(&self, verified: bool) {
        if verified {
            self.client_certificates.inc();
        } else {
            self.client_certificate_failures.inc();
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

impl UpstreamStats {
    #[inline]
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request began waiting for an instance of this group (scaled to zero);
    /// [`UpstreamStats::instance_wait_ended`] when it stops waiting, however.
    pub fn instance_wait_started(&self) {
        self.waiting_for_instance.inc();
    }

    pub fn instance_wait_ended(&self) {
        self.waiting_for_instance.dec();
    }

    /// A request routed here ended with `outcome`, after `retries` retries.
    #[inline]
    pub fn request_finished(&self, outcome: &Outcome, retries: u32) {
        self.in_flight.dec();
        self.responses.count_class(outcome.class);
        self.latency.observe_outcome(outcome);
        self.retries.add(u64::from(retries));
    }

    /// A backend was chosen on the other side of the group's traffic split than the client's.
    #[cold]
    pub fn split_fallback(&self) {
        self.split_fallbacks.inc();
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
