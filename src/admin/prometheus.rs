//! `GET /metrics`: the workers' counters, summed, in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! Every metric family is a constant below (name, type, help), so dashboards and alerts have one
//! place to look. Counters are summed over the workers at scrape time; gauges that describe a
//! per-worker condition (`lbproxy_backend_state`, `lbproxy_backend_circuit`) say on how many
//! workers it holds. Latencies are histograms with fixed buckets (500 µs … 10 s).

use super::ServerInfo;
use crate::metrics::aggregate::{BackendRow, UpstreamRow};
use crate::metrics::counters::{ClassCounts, Latency, LATENCY_BOUNDS_US, STATUS_CLASSES};
use crate::metrics::{Aggregate, BackendState, CircuitState};
use std::fmt::{Display, Write as _};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its name, type and help text.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "counter",
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "gauge",
        help,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "histogram",
        help,
    }
}

pub const INFO: Family = gauge(
    "lbproxy_info",
    "Always 1; the labels say the version and the io driver in use.",
);
pub const START_TIME: Family = gauge(
    "lbproxy_start_time_seconds",
    "When the proxy started, in seconds since the Unix epoch.",
);
pub const RELOADS: Family = counter(
    "lbproxy_reloads_total",
    "Configuration reloads applied since start.",
);
pub const WORKER_DRIVER: Family = gauge(
    "lbproxy_worker_driver_info",
    "Always 1; the driver label says the worker's io driver (io_uring or legacy).",
);
pub const WORKER_LAG: Family = gauge(
    "lbproxy_worker_event_loop_lag_seconds",
    "How late the worker's 100 ms timer fired on its last tick.",
);
pub const WORKER_LAG_MAX: Family = gauge(
    "lbproxy_worker_event_loop_lag_max_seconds",
    "The largest event-loop lag of the worker over the last second.",
);
pub const WORKER_HEARTBEAT_AGE: Family = gauge(
    "lbproxy_worker_heartbeat_age_seconds",
    "Seconds since the worker last published (normally under 0.1; a stuck worker grows).",
);
pub const WORKER_REQUESTS: Family = counter(
    "lbproxy_worker_requests_total",
    "Requests forwarded by the worker.",
);
pub const WORKER_CONNECTIONS: Family = gauge(
    "lbproxy_worker_open_connections",
    "Client connections open on the worker.",
);
pub const LISTENER_CONNECTIONS: Family = counter(
    "lbproxy_listener_connections_total",
    "Client connections accepted.",
);
pub const LISTENER_OPEN: Family = gauge(
    "lbproxy_listener_open_connections",
    "Client connections open now.",
);
pub const LISTENER_REQUESTS: Family = counter(
    "lbproxy_listener_requests_total",
    "Requests answered, by status class (code=\"none\": no response was sent).",
);
pub const LISTENER_RECEIVED: Family = counter(
    "lbproxy_listener_received_bytes_total",
    "Bytes received from clients (request heads and bodies).",
);
pub const LISTENER_SENT: Family = counter(
    "lbproxy_listener_sent_bytes_total",
    "Bytes sent to clients.",
);
pub const LISTENER_SLOW_READERS_RESET: Family = counter(
    "lbproxy_listener_slow_readers_reset_total",
    "Client connections reset because the client did not take a response buffer (64 KiB) within timeouts.client_idle: it stopped reading, or reads too slowly.",
);
pub const ROUTE_REQUESTS: Family = counter(
    "lbproxy_route_requests_total",
    "Requests a route matched, by status class; route is what it matches (host and path prefix).",
);
pub const UPSTREAM_REQUESTS: Family = counter(
    "lbproxy_upstream_requests_total",
    "Requests routed to the group, by the status class of the final response (the backend's or the proxy's own).",
);
pub const UPSTREAM_IN_FLIGHT: Family = gauge(
    "lbproxy_upstream_in_flight_requests",
    "Requests of the group not finished yet.",
);
pub const UPSTREAM_RETRIES: Family = counter(
    "lbproxy_upstream_retries_total",
    "Attempts after the first (to the next backend, or the same one on a fresh connection).",
);
pub const UPSTREAM_BUDGET_REJECTIONS: Family = counter(
    "lbproxy_upstream_retry_budget_rejections_total",
    "Retries refused because the group's retry budget was spent (the request failed fast).",
);
pub const UPSTREAM_NO_BACKEND: Family = counter(
    "lbproxy_upstream_no_usable_backend_total",
    "Requests answered 503 because no backend of the group was usable.",
);
pub const UPSTREAM_QUEUE_TIMEOUTS: Family = counter(
    "lbproxy_upstream_queue_timeouts_total",
    "Requests answered 503 after waiting queue_timeout for a backend under its max_connections.",
);
pub const UPSTREAM_OUT_OF_RESOURCES: Family = counter(
    "lbproxy_upstream_out_of_resources_total",
    "Requests answered 503 (connections closed) because the proxy ran out of file descriptors connecting to a backend.",
);
pub const UPSTREAM_DURATION: Family = histogram(
    "lbproxy_upstream_request_duration_seconds",
    "Time from the complete request head to the end of the response, for every request of the group.",
);
pub const BACKEND_REQUESTS: Family = counter(
    "lbproxy_backend_requests_total",
    "Responses the backend gave, by status class.",
);
pub const BACKEND_FAILED: Family = counter(
    "lbproxy_backend_failed_attempts_total",
    "Tries that got no complete response: connect errors, timeouts, lost connections, invalid responses.",
);
pub const BACKEND_CONNECT_ERRORS: Family = counter(
    "lbproxy_backend_connect_errors_total",
    "Connections to the backend that failed (refused, timed out, TLS handshake failed).",
);
pub const BACKEND_PROTOCOL_ERRORS: Family = counter(
    "lbproxy_backend_protocol_errors_total",
    "Times the backend broke HTTP/1.1 framing: an invalid response, bytes past the end of a response, or bytes sent on an idle keep-alive connection (each closed the connection, and no client saw those bytes).",
);
pub const BACKEND_EJECTIONS: Family = counter(
    "lbproxy_backend_ejections_total",
    "Times outlier detection ejected the backend (summed over workers).",
);
pub const BACKEND_POOL_HITS: Family = counter(
    "lbproxy_backend_pool_hits_total",
    "Requests sent on an idle keep-alive connection from the pool.",
);
pub const BACKEND_POOL_MISSES: Family = counter(
    "lbproxy_backend_pool_misses_total",
    "Requests that found no idle connection in the pool and connected.",
);
pub const BACKEND_IDLE: Family = gauge(
    "lbproxy_backend_idle_connections",
    "Idle keep-alive connections to the backend in the pools.",
);
pub const BACKEND_IN_FLIGHT: Family = gauge(
    "lbproxy_backend_in_flight_requests",
    "Requests in flight to the backend.",
);
pub const BACKEND_SENT: Family = counter(
    "lbproxy_backend_sent_bytes_total",
    "Request bytes sent to the backend (heads as the proxy wrote them, and bodies).",
);
pub const BACKEND_RECEIVED: Family = counter(
    "lbproxy_backend_received_bytes_total",
    "Response bytes from the backend, as relayed to clients.",
);
pub const BACKEND_CONNECTIONS: Family = counter(
    "lbproxy_backend_connections_total",
    "TCP (L4) connections relayed to the backend.",
);
pub const BACKEND_OPEN: Family = gauge(
    "lbproxy_backend_open_connections",
    "TCP (L4) connections to the backend open now.",
);
pub const BACKEND_DURATION: Family = histogram(
    "lbproxy_backend_request_duration_seconds",
    "Time from the complete request head to the end of the response, for responses the backend gave.",
);
pub const BACKEND_HEALTHY: Family = gauge(
    "lbproxy_backend_healthy",
    "1 while the active health checks pass (or none are configured), else 0.",
);
pub const BACKEND_UP: Family = gauge(
    "lbproxy_backend_up",
    "1 when the backend takes requests (up or in slow start) on every worker, else 0.",
);
pub const BACKEND_STATE: Family = gauge(
    "lbproxy_backend_state",
    "Workers on which the backend is in this state (up, slow-start, half-open, ejected, down, draining, retired).",
);
pub const BACKEND_CIRCUIT: Family = gauge(
    "lbproxy_backend_circuit",
    "Workers on which the backend's circuit breaker is in this state (closed, open, half-open).",
);
pub const BACKEND_WEIGHT: Family = gauge(
    "lbproxy_backend_weight",
    "The weight in force (a runtime override from the admin API, else the configured one).",
);

/// Renders the whole exposition.
pub fn render(aggregate: &Aggregate, info: &ServerInfo, reloads: u64, now_ms: u64) -> String {
    let mut out = Exposition::default();
    let version = env!("CARGO_PKG_VERSION");
    let driver = info.driver.to_string();
    out.family(INFO);
    out.sample(INFO.name, &[("version", version), ("driver", &driver)], 1);
    out.family(START_TIME);
    out.sample(START_TIME.name, &[], seconds(info.started_ms * 1000));
    out.family(RELOADS);
    out.sample(RELOADS.name, &[], reloads);

    let workers = &aggregate.workers;
    let worker_ids: Vec<String> = workers.iter().map(|w| w.worker.to_string()).collect();
    out.family(WORKER_DRIVER);
    for (row, id) in workers.iter().zip(&worker_ids) {
        let driver = row.driver.to_string();
        out.sample(
            WORKER_DRIVER.name,
            &[("worker", id), ("driver", &driver)],
            1,
        );
    }
    type WorkerValue = fn(&crate::metrics::aggregate::WorkerRow, u64) -> String;
    let per_worker: [(Family, WorkerValue); 5] = [
        (WORKER_LAG, |w, _| seconds(w.loop_lag.last_us)),
        (WORKER_LAG_MAX, |w, _| seconds(w.loop_lag.max_us)),
        (WORKER_HEARTBEAT_AGE, |w, now| {
            seconds(now.saturating_sub(w.taken_ms) * 1000)
        }),
        (WORKER_REQUESTS, |w, _| w.requests.to_string()),
        (WORKER_CONNECTIONS, |w, _| w.open_connections.to_string()),
    ];
    for (family, value) in per_worker {
        out.family(family);
        for (row, id) in workers.iter().zip(&worker_ids) {
            out.sample(family.name, &[("worker", id)], value(row, now_ms));
        }
    }

    let listeners = &aggregate.listeners;
    out.family(LISTENER_CONNECTIONS);
    for l in listeners {
        out.sample(
            LISTENER_CONNECTIONS.name,
            &[("listener", &l.name)],
            l.counts.accepted,
        );
    }
    out.family(LISTENER_OPEN);
    for l in listeners {
        out.sample(LISTENER_OPEN.name, &[("listener", &l.name)], l.counts.open);
    }
    out.family(LISTENER_REQUESTS);
    for l in listeners {
        out.classes(
            LISTENER_REQUESTS.name,
            &[("listener", &l.name)],
            &l.counts.responses,
        );
    }
    out.family(LISTENER_RECEIVED);
    for l in listeners {
        out.sample(
            LISTENER_RECEIVED.name,
            &[("listener", &l.name)],
            l.counts.bytes_received,
        );
    }
    out.family(LISTENER_SENT);
    for l in listeners {
        out.sample(
            LISTENER_SENT.name,
            &[("listener", &l.name)],
            l.counts.bytes_sent,
        );
    }
    out.family(LISTENER_SLOW_READERS_RESET);
    for l in listeners {
        out.sample(
            LISTENER_SLOW_READERS_RESET.name,
            &[("listener", &l.name)],
            l.counts.slow_readers_reset,
        );
    }
    out.family(ROUTE_REQUESTS);
    for r in &aggregate.routes {
        let labels = [
            ("listener", r.listener.as_str()),
            ("route", r.matches.as_str()),
            ("upstream", r.upstream.as_str()),
        ];
        out.classes(ROUTE_REQUESTS.name, &labels, &r.responses);
    }

    render_upstreams(&mut out, &aggregate.upstreams);
    render_backends(&mut out, &aggregate.upstreams);
    out.text
}

fn render_upstreams(out: &mut Exposition, upstreams: &[UpstreamRow]) {
    out.family(UPSTREAM_REQUESTS);
    for u in upstreams {
        out.classes(
            UPSTREAM_REQUESTS.name,
            &[("upstream", &u.name)],
            &u.counts.responses,
        );
    }
    type Value = fn(&UpstreamRow) -> u64;
    let simple: [(Family, Value); 6] = [
        (UPSTREAM_IN_FLIGHT, |u| u.counts.in_flight),
        (UPSTREAM_RETRIES, |u| u.counts.retries),
        (UPSTREAM_BUDGET_REJECTIONS, |u| u.counts.budget_rejections),
        (UPSTREAM_NO_BACKEND, |u| u.counts.no_usable_backend),
        (UPSTREAM_QUEUE_TIMEOUTS, |u| u.counts.queue_timeouts),
        (UPSTREAM_OUT_OF_RESOURCES, |u| u.counts.out_of_resources),
    ];
    for (family, value) in simple {
        out.family(family);
        for u in upstreams {
            out.sample(family.name, &[("upstream", &u.name)], value(u));
        }
    }
    out.family(UPSTREAM_DURATION);
    for u in upstreams {
        out.histogram(
            UPSTREAM_DURATION.name,
            &[("upstream", &u.name)],
            &u.counts.latency,
        );
    }
}

fn render_backends(out: &mut Exposition, upstreams: &[UpstreamRow]) {
    let rows: Vec<(&str, String, &BackendRow)> = upstreams
        .iter()
        .flat_map(|u| {
            u.backends
                .iter()
                .map(move |b| (u.name.as_str(), b.address.to_string(), b))
        })
        .collect();
    let labels = |(upstream, address, _): &(&str, String, &BackendRow)| {
        [("upstream", *upstream), ("backend", address.as_str())].map(|(k, v)| (k, v.to_owned()))
    };

    out.family(BACKEND_REQUESTS);
    for row in &rows {
        let labels = labels(row);
        out.classes(
            BACKEND_REQUESTS.name,
            &borrow(&labels),
            &row.2.counts.responses,
        );
    }
    type Value = fn(&BackendRow) -> u64;
    let simple: [(Family, Value); 15] = [
        (BACKEND_FAILED, |b| b.counts.failed_attempts),
        (BACKEND_CONNECT_ERRORS, |b| b.counts.connect_errors),
        (BACKEND_PROTOCOL_ERRORS, |b| b.counts.protocol_errors),
        (BACKEND_EJECTIONS, |b| b.counts.ejections),
        (BACKEND_POOL_HITS, |b| b.counts.pool_hits),
        (BACKEND_POOL_MISSES, |b| b.counts.pool_misses),
        (BACKEND_IDLE, |b| b.idle_connections),
        (BACKEND_IN_FLIGHT, |b| b.in_flight),
        (BACKEND_SENT, |b| b.counts.bytes_sent),
        (BACKEND_RECEIVED, |b| b.counts.bytes_received),
        (BACKEND_CONNECTIONS, |b| b.counts.connections),
        (BACKEND_OPEN, |b| b.counts.open_connections),
        (BACKEND_HEALTHY, |b| u64::from(b.healthy)),
        (BACKEND_UP, |b| u64::from(b.is_up())),
        (BACKEND_WEIGHT, |b| u64::from(b.weight)),
    ];
    for (family, value) in simple {
        out.family(family);
        for row in &rows {
            let labels = labels(row);
            out.sample(family.name, &borrow(&labels), value(row.2));
        }
    }
    out.family(BACKEND_STATE);
    for row in &rows {
        let labels = labels(row);
        for state in BackendState::ALL {
            let mut with_state = borrow(&labels);
            with_state.push(("state", state.as_str()));
            out.sample(BACKEND_STATE.name, &with_state, row.2.workers_in(state));
        }
    }
    out.family(BACKEND_CIRCUIT);
    for row in &rows {
        let labels = labels(row);
        for (i, circuit) in CircuitState::ALL.iter().enumerate() {
            let mut with_state = borrow(&labels);
            with_state.push(("state", circuit.as_str()));
            out.sample(BACKEND_CIRCUIT.name, &with_state, row.2.circuits[i]);
        }
    }
    out.family(BACKEND_DURATION);
    for row in &rows {
        let labels = labels(row);
        out.histogram(
            BACKEND_DURATION.name,
            &borrow(&labels),
            &row.2.counts.latency,
        );
    }
}

fn borrow<'a>(labels: &'a [(&'static str, String); 2]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Microseconds as seconds, e.g. `0.0125`.
fn seconds(micros: u64) -> String {
    format!("{}", micros as f64 / 1e6)
}

#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, family: Family) {
        let _ = writeln!(self.text, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(self.text, "# TYPE {} {}", family.name, family.kind);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(key);
                self.text.push_str("=\"");
                escape_label(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// One sample per status class, label `code`.
    fn classes(&mut self, name: &str, labels: &[(&str, &str)], counts: &ClassCounts) {
        for (class, count) in STATUS_CLASSES.iter().zip(counts.0) {
            let mut labels = labels.to_vec();
            labels.push(("code", class));
            self.sample(name, &labels, count);
        }
    }

    /// `_bucket` (cumulative, with `le`), `_sum` (seconds) and `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], latency: &Latency) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in latency.buckets.iter().enumerate() {
            cumulative += count;
            let le = LATENCY_BOUNDS_US
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |&us| seconds(us));
            let mut labels = labels.to_vec();
            labels.push(("le", &le));
            self.sample(&bucket, &labels, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, seconds(latency.sum_us));
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_at_inf() {
        let mut out = Exposition::default();
        let mut latency = Latency::default();
        latency.buckets[0] = 2;
        latency.buckets[3] = 1;
        latency.buckets[14] = 1;
        latency.sum_us = 20_004_000;
        out.histogram("x_seconds", &[("a", "b")], &latency);
        let text = out.text;
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"0.0005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"0.005\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"10\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_sum{a=\"b\"} 20.004\n"), "{text}");
        assert!(text.contains("x_seconds_count{a=\"b\"} 4\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("route", "a\"b\\c\nd")], 1);
        assert_eq!(out.text, "m{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
