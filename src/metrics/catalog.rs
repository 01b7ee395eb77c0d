//! Every metric of listeners, routes, upstream groups and backends, declared once: dashboards,
//! alerts and code have this one place to look.
//!
//! Each entry of a `metrics_scope!` below is one metric family: its doc comment is its
//! Prometheus HELP text, then its Prometheus name and, for counted metrics, its JSON API field.
//! From these entries come the worker-local statistics structs ([`ListenerStats`],
//! [`UpstreamStats`], [`BackendStats`]: `Cell`s only), their published counterparts
//! ([`ListenerCounts`], …) with `snapshot` and `merge`, and the family tables ([`LISTENERS`],
//! [`ROUTES`], [`UPSTREAMS`], [`BACKENDS`]) that `/metrics` (`admin/prometheus.rs`) and the JSON
//! API (`admin/api.rs`, which the dashboard reads) are rendered from, in entry order.
//!
//! Flow: a worker increments the cells on the request path (methods in [`super::stats`]); its
//! tick publishes `snapshot()`s ([`super::snapshot`]); the control side sums them with `merge`
//! into aggregate rows ([`super::aggregate`]) and renders the tables over those rows.
//!
//! # Adding a counter
//!
//! One entry in the scope's list, e.g. for backends:
//!
//! ```text
//! /// Times the backend did X (the HELP text).
//! count x_events: Counter = "lbproxy_backend_x_events_total", json "x_events_total";
//! ```
//!
//! then the line that counts it: a method in [`super::stats`] (`self.x_events.inc()`) called
//! where it happens. `Counter` counts up, `Gauge` goes up and down (both are summed over the
//! workers); leave out `json` to keep it out of the JSON API. The monitoring README's table
//! (`packaging/monitoring/README.md`) must list the new family: `tests/monitoring.rs` checks it.

use super::aggregate::{BackendRow, ListenerRow, RouteRow, UpstreamRow};
use super::counters::{ClassCounters, Counter, Gauge, LatencyCounters};
use super::family::{metrics_scope, Family, Kind, Table, Value};
use super::state::{BackendState, CircuitState};
use super::stats::latency_histogram;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::sync::Arc;

metrics_scope! {
    /// One listener on one worker.
    pub struct ListenerStats {}
    /// A published [`ListenerStats`].
    pub struct ListenerCounts;
    /// Every listener family, in exposition order.
    pub const LISTENERS: Table<ListenerRow> labelled ["listener"];

    /// Client connections accepted.
    count accepted: Counter = "lbproxy_listener_connections_total", json "connections_total";
    /// Client connections open now.
    count open: Gauge = "lbproxy_listener_open_connections", json "open_connections";
    /// Requests answered, by status class (code="none": no response was sent).
    count responses: ClassCounters = "lbproxy_listener_requests_total", json "requests_total";
    /// Bytes received from clients (request heads and bodies).
    count bytes_received: Counter = "lbproxy_listener_received_bytes_total", json "received_bytes";
    /// Bytes sent to clients.
    count bytes_sent: Counter = "lbproxy_listener_sent_bytes_total", json "sent_bytes";
    /// Client connections reset because the client did not take a response buffer (64 KiB)
    /// within timeouts.client_idle: it stopped reading, or reads too slowly.
    count slow_readers_reset: Counter = "lbproxy_listener_slow_readers_reset_total",
        json "slow_readers_reset";
}

/// The route family: routes count one thing, by hand ([`super::stats::RouteStats`]).
pub const ROUTES: Table<RouteRow> = Table {
    labels: &["listener", "route", "upstream"],
    families: &[Family {
        name: "lbproxy_route_requests_total",
        kind: Kind::Counter,
        help: "Requests a route matched, by status class; route is what it matches (host and path prefix).",
        json: None,
        value: |r| Value::Classes(&r.responses),
    }],
};

metrics_scope! {
    /// One upstream group on one worker: the requests routed to it, whoever answered them.
    pub struct UpstreamStats {}
    /// A published [`UpstreamStats`].
    pub struct UpstreamCounts;
    /// Every upstream group family, in exposition order.
    pub const UPSTREAMS: Table<UpstreamRow> labelled ["upstream"];

    /// Requests routed to the group, by the status class of the final response (the backend's
    /// or the proxy's own).
    count responses: ClassCounters = "lbproxy_upstream_requests_total", json "requests_total";
    /// Requests of the group not finished yet.
    count in_flight: Gauge = "lbproxy_upstream_in_flight_requests", json "in_flight";
    /// Attempts after the first (to the next backend, or the same one on a fresh connection).
    count retries: Counter = "lbproxy_upstream_retries_total", json "retries_total";
    /// Retries refused because the group's retry budget was spent (the request failed fast).
    count budget_rejections: Counter = "lbproxy_upstream_retry_budget_rejections_total",
        json "retry_budget_rejections_total";
    /// Requests answered 503 because no backend of the group was usable.
    count no_usable_backend: Counter = "lbproxy_upstream_no_usable_backend_total",
        json "no_usable_backend_total";
    /// Requests answered 503 after waiting queue_timeout for a backend under its
    /// max_connections.
    count queue_timeouts: Counter = "lbproxy_upstream_queue_timeouts_total",
        json "queue_timeouts_total";
    /// Requests answered 503 (connections closed) because the proxy ran out of file
    /// descriptors connecting to a backend.
    count out_of_resources: Counter = "lbproxy_upstream_out_of_resources_total",
        json "out_of_resources_total";
    /// Time from the complete request head to the end of the response, for every request of
    /// the group.
    count latency: LatencyCounters = "lbproxy_upstream_request_duration_seconds";
}

metrics_scope! {
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
    /// Every backend family, in exposition order.
    pub const BACKENDS: Table<BackendRow> labelled ["upstream", "backend"];

    /// Responses the backend gave, by status class.
    count responses: ClassCounters = "lbproxy_backend_requests_total", json "requests_total";
    /// Tries that got no complete response: connect errors, timeouts, lost connections,
    /// invalid responses.
    count failed_attempts: Counter = "lbproxy_backend_failed_attempts_total",
        json "failed_attempts_total";
    /// Connections to the backend that failed (refused, timed out, TLS handshake failed).
    count connect_errors: Counter = "lbproxy_backend_connect_errors_total",
        json "connect_errors_total";
    /// Times the backend broke HTTP/1.1 framing: an invalid response, bytes past the end of a
    /// response, or bytes sent on an idle keep-alive connection (each closed the connection,
    /// and no client saw those bytes).
    count protocol_errors: Counter = "lbproxy_backend_protocol_errors_total",
        json "protocol_errors_total";
    /// Times outlier detection ejected the backend (summed over workers).
    count ejections: Counter = "lbproxy_backend_ejections_total", json "ejections_total";
    /// Requests sent on an idle keep-alive connection from the pool.
    count pool_hits: Counter = "lbproxy_backend_pool_hits_total", json "pool_hits_total";
    /// Requests that found no idle connection in the pool and connected.
    count pool_misses: Counter = "lbproxy_backend_pool_misses_total", json "pool_misses_total";
    /// Idle keep-alive connections to the backend in the pools.
    show Gauge "lbproxy_backend_idle_connections" = |b| Value::Number(b.idle_connections);
    /// Requests in flight to the backend.
    show Gauge "lbproxy_backend_in_flight_requests" = |b| Value::Number(b.in_flight);
    /// Request bytes sent to the backend (heads as the proxy wrote them, and bodies).
    count bytes_sent: Counter = "lbproxy_backend_sent_bytes_total";
    /// Response bytes from the backend, as relayed to clients.
    count bytes_received: Counter = "lbproxy_backend_received_bytes_total";
    /// TCP (L4) connections relayed to the backend.
    count connections: Counter = "lbproxy_backend_connections_total", json "connections_total";
    /// TCP (L4) connections to the backend open now.
    count open_connections: Gauge = "lbproxy_backend_open_connections",
        json "open_connections";
    /// 1 while the active health checks pass (or none are configured), else 0.
    show Gauge "lbproxy_backend_healthy" = |b| Value::Number(u64::from(b.healthy));
    /// 1 when the backend takes requests (up or in slow start) on every worker, else 0.
    show Gauge "lbproxy_backend_up" = |b| Value::Number(u64::from(b.is_up()));
    /// The weight in force (a runtime override from the admin API, else the configured one).
    show Gauge "lbproxy_backend_weight" = |b| Value::Number(u64::from(b.weight));
    /// Workers on which the backend is in this state (up, slow-start, half-open, ejected, down,
    /// draining, retired).
    show Gauge "lbproxy_backend_state" = |b| Value::Labelled {
        label: "state",
        samples: BackendState::ALL
            .iter()
            .map(|s| (s.as_str(), u64::from(b.workers_in(*s))))
            .collect(),
    };
    /// Workers on which the backend's circuit breaker is in this state (closed, open,
    /// half-open).
    show Gauge "lbproxy_backend_circuit" = |b| Value::Labelled {
        label: "state",
        samples: CircuitState::ALL
            .iter()
            .zip(b.circuits)
            .map(|(c, n)| (c.as_str(), u64::from(n)))
            .collect(),
    };
    /// Time from the complete request head to the end of the response, for responses the
    /// backend gave.
    count latency: LatencyCounters = "lbproxy_backend_request_duration_seconds";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn check<R>(table: &Table<R>, names: &mut BTreeSet<&'static str>) {
        for family in table.families {
            assert!(family.name.starts_with("lbproxy_"), "{}", family.name);
            assert!(names.insert(family.name), "{} twice", family.name);
            let help = family.help();
            assert!(!help.is_empty() && !help.contains("  "), "{help:?}");
            assert!(!help.contains(['\n', '\\']), "{help:?}");
            assert!(
                family.json.is_none() || family.kind != Kind::Histogram,
                "a histogram has no JSON field: {}",
                family.name
            );
            match family.kind {
                Kind::Counter => assert!(
                    family.name.ends_with("_total"),
                    "a counter's name ends in _total: {}",
                    family.name
                ),
                Kind::Gauge => assert!(!family.name.ends_with("_total"), "{}", family.name),
                Kind::Histogram => assert!(family.name.ends_with("_seconds"), "{}", family.name),
            }
        }
    }

    #[test]
    fn names_are_unique_and_help_is_one_clean_line() {
        let mut names = BTreeSet::new();
        check(&LISTENERS, &mut names);
        check(&ROUTES, &mut names);
        check(&UPSTREAMS, &mut names);
        check(&BACKENDS, &mut names);
        assert!(names.contains("lbproxy_backend_protocol_errors_total"));
    }

    #[test]
    fn json_fields_are_named_once_per_view() {
        let backend = BackendRow {
            address: "127.0.0.1:1".parse().unwrap(),
            backup: false,
            state: BackendState::Up,
            states: [0; 7],
            circuits: [0; 3],
            healthy: true,
            weight: 1,
            configured_weight: 1,
            drain_override: None,
            weight_override: None,
            in_flight: 0,
            idle_connections: 0,
            ramp: 1000,
            counts: BackendCounts::default(),
            seconds: Vec::new(),
        };
        let fields: Vec<&str> = BACKENDS.json_fields(&backend).iter().map(|f| f.0).collect();
        let unique: BTreeSet<&str> = fields.iter().copied().collect();
        assert_eq!(fields.len(), unique.len(), "{fields:?}");
        assert!(fields.contains(&"protocol_errors_total"), "{fields:?}");
        assert!(fields.contains(&"responses"), "{fields:?}");
    }
}
