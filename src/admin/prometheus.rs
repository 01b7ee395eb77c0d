//! `GET /metrics`: the workers' counters, summed, in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! The families of listeners, routes, upstream groups and backends are declared once, in
//! [`crate::metrics::catalog`], and come here as [`crate::metrics::tables`], which this file
//! renders generically: each family of a table, in order, one sample per row (more for a status
//! class, a state or a histogram bucket). The proxy-wide and per-worker families are the
//! constants below. Counters are summed over the workers at scrape time; gauges that describe a
//! per-worker condition (`lbproxy_backend_state`, `lbproxy_backend_circuit`) say on how many
//! workers it holds. Latencies are histograms with fixed buckets (500 µs … 10 s). The discovered
//! instances' families (`lbproxy_instance_*`, declared in the catalog too) come next, over the
//! `/api/instances` view of the discovery inventory (after the response compression families,
//! `lbproxy_compression_*{algorithm}`, and the request rate limits', `lbproxy_rate_limit_*{limit}`), the autoscaled groups' families
//! (`lbproxy_autoscale_*`) over the `/api/autoscale` view of the autoscaler's board, and the
//! deployments' (`lbproxy_deploy_*`, `lbproxy_deploys_total`) last, over the deployment board.

use super::autoscale::{AutoscaleView, AUTOSCALE, AUTOSCALE_SIGNAL};
use super::deploy::{DeployMetrics, DEPLOY, DEPLOY_CHECK, DEPLOY_CHECK_VALUE, DEPLOY_WEIGHT};
use super::instances::{InstanceView, INSTANCES};
use super::ServerInfo;
use crate::metrics::compression::{CompressionCounts, CODINGS};
use crate::metrics::counters::{ClassCounts, Latency, LATENCY_BOUNDS_US, STATUS_CLASSES};
use crate::metrics::family::{Kind, Table, Value};
use crate::metrics::rate_limits::RateLimitCounts;
use crate::metrics::tables::{BACKENDS, LISTENERS, ROUTES, UPSTREAMS};
use crate::metrics::Aggregate;
use std::fmt::{Display, Write as _};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One proxy-wide or per-worker metric family: its name, type and help text.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
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
pub const RELOAD_FAILURES: Family = counter(
    "lbproxy_reload_failures_total",
    "Configuration reloads refused since start (a file that does not validate, a change that \
     needs a restart, a worker that could not prepare it); the running configuration stays.",
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
pub const COMPRESSION_RESPONSES: Family = counter(
    "lbproxy_compression_responses_total",
    "Responses compressed to their end ([compression]), by coding.",
);
pub const COMPRESSION_BYTES_IN: Family = counter(
    "lbproxy_compression_bytes_in_total",
    "Body bytes compressed (as the backends sent them), by coding.",
);
pub const COMPRESSION_BYTES_OUT: Family = counter(
    "lbproxy_compression_bytes_out_total",
    "Compressed body bytes sent to clients (without chunk framing), by coding.",
);

pub const RATE_LIMIT_REQUESTS: Family = counter(
    "lbproxy_rate_limit_requests_total",
    "Requests checked against a rate limit ([rate_limit.NAME]), by outcome: allowed, limited \
     (answered 429) or dry_run (over the limit, served because the limit is dry_run).",
);
pub const RATE_LIMIT_KEYS: Family = gauge(
    "lbproxy_rate_limit_keys",
    "Keys (clients, header values, routes) a rate limit remembers now, over all workers.",
);
pub const RATE_LIMIT_EVICTIONS: Family = counter(
    "lbproxy_rate_limit_evictions_total",
    "Keys a rate limit forgot before their state expired because its table was full \
     (max_keys); they start afresh.",
);

/// Renders the whole exposition: the proxy's own families, then those of the discovered
/// `instances`, of the `autoscale`d groups and of the deployments (`deploy`: their families are
/// there, without samples, when nothing is discovered, autoscaled or deployed).
/// Reloads since start: applied and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reloads {
    pub applied: u64,
    pub failed: u64,
}

pub fn render(
    aggregate: &Aggregate,
    instances: &[InstanceView],
    autoscale: &[AutoscaleView],
    deploy: &DeployMetrics,
    info: &ServerInfo,
    reloads: Reloads,
    now_ms: u64,
) -> String {
    let mut out = Exposition::default();
    let version = env!("CARGO_PKG_VERSION");
    let driver = info.driver.to_string();
    out.family(INFO);
    out.sample(INFO.name, &[("version", version), ("driver", &driver)], 1);
    out.family(START_TIME);
    out.sample(START_TIME.name, &[], seconds(info.started_ms * 1000));
    out.family(RELOADS);
    out.sample(RELOADS.name, &[], reloads.applied);
    out.family(RELOAD_FAILURES);
    out.sample(RELOAD_FAILURES.name, &[], reloads.failed);

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

    let listeners: Vec<_> = aggregate
        .listeners
        .iter()
        .map(|l| (vec![l.name.as_str()], l))
        .collect();
    out.table(&LISTENERS, &listeners);
    let routes: Vec<_> = aggregate
        .routes
        .iter()
        .map(|r| {
            let labels = vec![r.listener.as_str(), r.matches.as_str(), r.upstream.as_str()];
            (labels, r)
        })
        .collect();
    out.table(&ROUTES, &routes);
    let upstreams: Vec<_> = aggregate
        .upstreams
        .iter()
        .map(|u| (vec![u.name.as_str()], u))
        .collect();
    out.table(&UPSTREAMS, &upstreams);
    let addresses: Vec<Vec<String>> = aggregate
        .upstreams
        .iter()
        .map(|u| u.backends.iter().map(|b| b.address.to_string()).collect())
        .collect();
    let backends: Vec<_> = aggregate
        .upstreams
        .iter()
        .zip(&addresses)
        .flat_map(|(u, addresses)| {
            u.backends
                .iter()
                .zip(addresses)
                .map(|(b, address)| (vec![u.name.as_str(), address.as_str()], b))
        })
        .collect();
    out.table(&BACKENDS, &backends);
    out.compression(&aggregate.compression);
    out.rate_limits(&aggregate.rate_limits);
    let instances: Vec<_> = instances
        .iter()
        .map(|i| (vec![i.group.as_str(), i.unit.as_str()], i))
        .collect();
    out.table(&INSTANCES, &instances);
    let groups: Vec<_> = autoscale
        .iter()
        .map(|a| (vec![a.group.as_str()], a))
        .collect();
    out.table(&AUTOSCALE, &groups);
    let signals: Vec<_> = autoscale
        .iter()
        .map(|a| (vec![a.group.as_str(), a.metric.unwrap_or("none")], a))
        .collect();
    out.table(&AUTOSCALE_SIGNAL, &signals);
    let groups: Vec<_> = deploy
        .groups
        .iter()
        .map(|d| (vec![d.upstream.as_str()], d))
        .collect();
    out.table(&DEPLOY, &groups);
    let weights: Vec<_> = deploy
        .weights
        .iter()
        .map(|w| (vec![w.upstream.as_str(), w.version.as_str()], w))
        .collect();
    out.table(&DEPLOY_WEIGHT, &weights);
    let checks: Vec<_> = deploy
        .checks
        .iter()
        .map(|c| (vec![c.upstream.as_str(), c.check.as_str()], c))
        .collect();
    out.table(&DEPLOY_CHECK, &checks);
    let values: Vec<_> = deploy
        .values
        .iter()
        .map(|v| (vec![v.upstream.as_str(), v.check.as_str(), v.side], v))
        .collect();
    out.table(&DEPLOY_CHECK_VALUE, &values);
    out.text
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
        self.head(family.name, family.kind, family.help);
    }

    /// The compression families, one sample per coding (all three, zeros included).
    fn compression(&mut self, counts: &CompressionCounts) {
        let families = [
            (COMPRESSION_RESPONSES, &counts.responses),
            (COMPRESSION_BYTES_IN, &counts.bytes_in),
            (COMPRESSION_BYTES_OUT, &counts.bytes_out),
        ];
        for (family, values) in families {
            self.family(family);
            for (coding, value) in CODINGS.iter().zip(values) {
                self.sample(family.name, &[("algorithm", coding.token())], value);
            }
        }
    }

    /// The rate limit families, one sample (or one per outcome) per configured limit.
    fn rate_limits(&mut self, limits: &[RateLimitCounts]) {
        self.family(RATE_LIMIT_REQUESTS);
        for limit in limits {
            let outcomes = [
                ("allowed", limit.allowed),
                ("limited", limit.limited),
                ("dry_run", limit.dry_run),
            ];
            for (outcome, value) in outcomes {
                let labels = [("limit", limit.name.as_str()), ("outcome", outcome)];
                self.sample(RATE_LIMIT_REQUESTS.name, &labels, value);
            }
        }
        for (family, value) in [
            (
                RATE_LIMIT_KEYS,
                (|l: &RateLimitCounts| l.keys) as fn(&RateLimitCounts) -> u64,
            ),
            (RATE_LIMIT_EVICTIONS, |l| l.evictions),
        ] {
            self.family(family);
            for limit in limits {
                self.sample(family.name, &[("limit", limit.name.as_str())], value(limit));
            }
        }
    }

    fn head(&mut self, name: &str, kind: impl Display, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// Every family of `table`, in order, for `rows`: each row with the values of the table's
    /// labels.
    fn table<R>(&mut self, table: &Table<R>, rows: &[(Vec<&str>, &R)]) {
        for family in table.families {
            self.head(family.name, family.kind, family.help());
            for (values, row) in rows {
                debug_assert_eq!(values.len(), table.labels.len(), "{}", family.name);
                let labels: Vec<(&str, &str)> = table
                    .labels
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect();
                match (family.value)(row) {
                    Value::Number(n) => self.sample(family.name, &labels, n),
                    Value::Real(x) => self.sample(family.name, &labels, x),
                    Value::Unknown => {}
                    Value::Classes(counts) => self.classes(family.name, &labels, counts),
                    Value::Labelled { label, samples } => {
                        for (value, n) in samples {
                            let mut labels = labels.clone();
                            labels.push((label, value));
                            self.sample(family.name, &labels, n);
                        }
                    }
                    Value::Latency(latency) => self.histogram(family.name, &labels, latency),
                }
            }
        }
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
    fn instances_are_labelled_by_group_and_unit_and_unknown_figures_have_no_sample() {
        let view = super::super::instances::fixture::view();
        let info = ServerInfo {
            driver: crate::sys::driver::Driver::Legacy,
            started_ms: 0,
            listeners: Vec::new(),
        };
        let text = render(
            &Aggregate::default(),
            &view.instances,
            &[],
            &DeployMetrics::default(),
            &info,
            Reloads::default(),
            0,
        );
        let up = "{upstream=\"api\",unit=\"api@1.service\"}";
        let failed = "{upstream=\"api\",unit=\"api@2.service\"}";
        for line in [
            "# TYPE lbproxy_instance_up gauge".to_owned(),
            "# TYPE lbproxy_instance_restarts_total counter".to_owned(),
            format!("lbproxy_instance_up{up} 1"),
            format!("lbproxy_instance_up{failed} 0"),
            "lbproxy_instance_state{upstream=\"api\",unit=\"api@2.service\",state=\"failed\"} 1"
                .to_owned(),
            "lbproxy_instance_state{upstream=\"api\",unit=\"api@2.service\",state=\"active\"} 0"
                .to_owned(),
            format!("lbproxy_instance_restarts_total{failed} 5"),
            format!("lbproxy_instance_flapping{failed} 1"),
            format!("lbproxy_instance_cpu_seconds_total{up} 12.5"),
            format!("lbproxy_instance_memory_bytes{up} 52428800"),
            format!("lbproxy_instance_memory_max_bytes{up} 268435456"),
            format!("lbproxy_instance_tasks{up} 7"),
            format!("lbproxy_instance_tasks_max{up} 64"),
            format!(
                "lbproxy_instance_start_time_seconds{up} {}",
                super::super::instances::fixture::NOW_S - 3665
            ),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in:\n{text}");
        }
        for family in [
            "cpu_seconds_total",
            "memory_bytes",
            "tasks",
            "start_time_seconds",
        ] {
            let sample = format!("lbproxy_instance_{family}{failed}");
            assert!(!text.contains(&sample), "no figure, no sample: {sample}");
        }
    }

    fn info() -> ServerInfo {
        ServerInfo {
            driver: crate::sys::driver::Driver::Legacy,
            started_ms: 0,
            listeners: Vec::new(),
        }
    }

    #[test]
    fn autoscaled_groups_are_labelled_by_upstream_and_the_signal_by_metric_too() {
        let view = super::super::autoscale::fixture::view();
        let text = render(
            &Aggregate::default(),
            &[],
            &view.groups,
            &DeployMetrics::default(),
            &info(),
            Reloads::default(),
            0,
        );
        let api = "{upstream=\"api\"}";
        let batch = "{upstream=\"batch\"}";
        for line in [
            "# TYPE lbproxy_autoscale_desired_instances gauge".to_owned(),
            "# TYPE lbproxy_autoscale_decisions_total counter".to_owned(),
            "# TYPE lbproxy_autoscale_signal gauge".to_owned(),
            format!("lbproxy_autoscale_desired_instances{api} 5"),
            format!("lbproxy_autoscale_current_instances{api} 2"),
            format!("lbproxy_autoscale_starting_instances{api} 1"),
            format!("lbproxy_autoscale_stopping_instances{api} 0"),
            format!("lbproxy_autoscale_target{api} 10"),
            format!("lbproxy_autoscale_min_instances{api} 1"),
            format!("lbproxy_autoscale_max_instances{api} 8"),
            format!("lbproxy_autoscale_panic{api} 1"),
            format!("lbproxy_autoscale_panic{batch} 0"),
            format!("lbproxy_autoscale_min_instances{batch} 0"),
            format!("lbproxy_autoscale_target{batch} 60"),
            "lbproxy_autoscale_decisions_total{upstream=\"api\",direction=\"up\"} 1".to_owned(),
            "lbproxy_autoscale_decisions_total{upstream=\"api\",direction=\"down\"} 1".to_owned(),
            "lbproxy_autoscale_decisions_total{upstream=\"batch\",direction=\"up\"} 0".to_owned(),
            "lbproxy_autoscale_signal{upstream=\"api\",metric=\"in_flight\"} 25".to_owned(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in:\n{text}");
        }
        assert!(
            !text.contains("lbproxy_autoscale_signal{upstream=\"batch\""),
            "no signal yet, no sample:\n{text}"
        );
    }

    #[test]
    fn without_autoscale_the_families_have_no_samples() {
        let text = render(
            &Aggregate::default(),
            &[],
            &[],
            &DeployMetrics::default(),
            &info(),
            Reloads::default(),
            0,
        );
        assert!(text.contains("# TYPE lbproxy_autoscale_desired_instances gauge\n"));
        assert!(text.contains("# HELP lbproxy_autoscale_signal "));
        let samples = text
            .lines()
            .filter(|l| l.starts_with("lbproxy_autoscale_"))
            .count();
        assert_eq!(samples, 0, "{text}");
    }

    #[test]
    fn deployments_are_labelled_by_upstream_and_their_checks_by_check_and_side() {
        let deploy = super::super::deploy::metrics(&super::super::deploy::fixture::board());
        let text = render(
            &Aggregate::default(),
            &[],
            &[],
            &deploy,
            &info(),
            Reloads::default(),
            0,
        );
        let api = "{upstream=\"api\"}";
        for line in [
            "# TYPE lbproxy_deploy_in_progress gauge".to_owned(),
            "# TYPE lbproxy_deploys_total counter".to_owned(),
            "# TYPE lbproxy_deploy_analysis_value gauge".to_owned(),
            format!("lbproxy_deploy_in_progress{api} 1"),
            format!("lbproxy_deploy_step{api} 2"),
            format!("lbproxy_deploy_failures_in_a_row{api} 1"),
            "lbproxy_deploys_total{upstream=\"api\",result=\"promoted\"} 1".to_owned(),
            "lbproxy_deploys_total{upstream=\"api\",result=\"aborted\"} 1".to_owned(),
            "lbproxy_deploys_total{upstream=\"api\",result=\"rolled-back\"} 0".to_owned(),
            "lbproxy_deploy_weight_ratio{upstream=\"api\",version=\"v3\"} 0.25".to_owned(),
            "lbproxy_deploy_analysis_limit{upstream=\"api\",check=\"p99_ms\"} 1000".to_owned(),
            "lbproxy_deploy_analysis_value{upstream=\"api\",check=\"p99_ms\",side=\"canary\"} 12"
                .to_owned(),
            "lbproxy_deploy_analysis_value{upstream=\"api\",check=\"p99_ms\",side=\"stable\"} 10"
                .to_owned(),
            "lbproxy_deploy_analysis_value{upstream=\"api\",check=\"p99_ratio\",side=\"canary\"} 1.2"
                .to_owned(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in:\n{text}");
        }
        assert!(
            !text.contains("check=\"p99_ratio\",side=\"stable\""),
            "a ratio has no stable side:\n{text}"
        );
        let idle = render(
            &Aggregate::default(),
            &[],
            &[],
            &DeployMetrics::default(),
            &info(),
            Reloads::default(),
            0,
        );
        assert!(idle.contains("# HELP lbproxy_deploy_weight_ratio "));
        assert!(!idle.lines().any(|l| l.starts_with("lbproxy_deploy")));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("route", "a\"b\\c\nd")], 1);
        assert_eq!(out.text, "m{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
