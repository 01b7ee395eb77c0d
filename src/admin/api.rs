//! The JSON API: `GET /api/status` (everything the dashboard shows), `GET /api/backends`, and
//! the runtime changes — `POST /api/backends/{group}/{backend}/drain | enable | weight` and
//! `POST /api/reload`.
//!
//! A backend change is a command to the control loop, which sends it to every worker
//! (`WorkerCommand::Backend`) and answers once every worker has applied it (each does on its next
//! tick, within 100 ms), so when `lbproxy ctl drain` returns, no worker sends that backend a new
//! request. Changes last until the next reload, which restores what the configuration says.
//!
//! The counters of listeners, groups and backends are not spelled out here: each view flattens
//! the JSON fields [`crate::metrics::catalog`] declares for its row ([`CatalogFields`], from
//! [`crate::metrics::tables`]), so a counter declared there appears in `/metrics` and here
//! alike.

use super::http::AdminResponse;
use super::sampler::{Percentiles, Point, RatePoint};
use super::AdminState;
use crate::config::{BalanceAlgorithm, Config, HealthCheck, UpstreamConfig};
use crate::health::ProbeLog;
use crate::metrics::aggregate::{BackendRow, UpstreamRow};
use crate::metrics::family::Table;
use crate::metrics::tables::{BACKENDS, LISTENERS, UPSTREAMS};
use crate::metrics::{BackendState, CircuitState};
use crate::runtime::command::BackendChange;
use crate::runtime::now_ms;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub version: &'static str,
    pub pid: u32,
    pub started_ms: u64,
    pub uptime_s: u64,
    pub driver: String,
    /// Where the configuration came from.
    pub config: String,
    pub reloads: u64,
    pub shutting_down: bool,
    pub totals: TotalsView,
    pub workers: Vec<WorkerView>,
    pub listeners: Vec<ListenerView>,
    pub upstreams: Vec<UpstreamView>,
    pub history: HistoryView,
}

#[derive(Debug, Serialize)]
pub struct TotalsView {
    pub requests: u64,
    pub rps: f64,
    pub errors_per_s: f64,
    /// 5xx share of the last second's responses.
    pub error_rate: f64,
    pub open_connections: u64,
    pub in_flight: u64,
    pub backends_up: usize,
    pub backends: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub worker: usize,
    pub driver: String,
    pub loop_lag_ms: f64,
    pub loop_lag_max_ms: f64,
    pub heartbeat_age_ms: u64,
    pub requests: u64,
    pub open_connections: u64,
    pub generation: u64,
}

#[derive(Debug, Serialize)]
pub struct ListenerView {
    pub name: String,
    pub address: Option<SocketAddr>,
    pub protocol: &'static str,
    /// `connections_total`, `requests_total`, `responses`, … ([`LISTENERS`]).
    #[serde(flatten)]
    pub counts: CatalogFields,
}

#[derive(Debug, Serialize)]
pub struct UpstreamView {
    pub name: String,
    pub balance: &'static str,
    /// `requests_total`, `responses`, `in_flight`, `retries_total`, … ([`UPSTREAMS`]).
    #[serde(flatten)]
    pub counts: CatalogFields,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `[upstream.NAME.health]`; `None`: no active health checks run for this group.
    pub health_check: Option<HealthCheckView>,
    /// `slow_start` in milliseconds (0: off).
    pub slow_start_ms: u64,
    pub backends: Vec<BackendView>,
}

/// The group's active health checks, as configured.
#[derive(Debug, Serialize)]
pub struct HealthCheckView {
    /// `http` or `tcp`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The probed path (`http` only).
    pub path: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl HealthCheckView {
    fn of(group: &UpstreamConfig) -> Option<HealthCheckView> {
        let health = group.health.as_ref()?;
        let (kind, path) = match &health.check {
            HealthCheck::Http { path, .. } => ("http", Some(path.clone())),
            HealthCheck::Tcp => ("tcp", None),
        };
        Some(HealthCheckView {
            kind,
            path,
            interval_ms: millis(health.interval),
            timeout_ms: millis(health.timeout),
            rise: health.rise,
            fall: health.fall,
        })
    }
}

/// One backend's recent active probes (see [`crate::health::ProbeLog`]).
#[derive(Debug, Serialize)]
pub struct ProbesView {
    /// Probes that reached a result since the backend is probed.
    pub total: u64,
    pub passes_in_a_row: u32,
    pub failures_in_a_row: u32,
    /// Why the last probe failed; `null` when it passed.
    pub last_error: Option<String>,
    /// How long ago the last probe ended.
    pub last_ms_ago: u64,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Serialize)]
pub struct BackendView {
    pub address: SocketAddr,
    /// The most important state of any worker: up, slow-start, half-open, ejected, down,
    /// draining, retired.
    pub state: &'static str,
    /// Workers in each state (only the states some worker is in).
    pub state_workers: BTreeMap<&'static str, u32>,
    /// open on any worker → open; else half-open on any → half-open; else closed.
    pub circuit: &'static str,
    pub circuit_workers: BTreeMap<&'static str, u32>,
    /// The active health checks' verdict.
    pub health: &'static str,
    pub backup: bool,
    pub weight: u32,
    pub configured_weight: u32,
    /// Runtime changes in force (until the next reload).
    pub drain_override: Option<bool>,
    pub weight_override: Option<u32>,
    pub in_flight: u64,
    pub idle_connections: u64,
    /// The active probes' recent results; `None` when the group has no health checks (or
    /// before the first probe ended).
    pub probes: Option<ProbesView>,
    /// Slow-start progress: 100 when not ramping.
    pub ramp_percent: f64,
    /// `requests_total`, `responses`, `failed_attempts_total`, … ([`BACKENDS`]).
    #[serde(flatten)]
    pub counts: CatalogFields,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Responses behind the percentiles (the last `latency_window_s` seconds).
    pub latency_samples: u64,
    pub latency_window_s: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<BackendHistory>,
}

/// The JSON fields the catalog declares for one row, in its order; a view flattens them into its
/// own fields.
#[derive(Debug, Default)]
pub struct CatalogFields(Vec<(&'static str, serde_json::Value)>);

impl CatalogFields {
    fn of<R>(table: &Table<R>, row: &R) -> CatalogFields {
        CatalogFields(table.json_fields(row))
    }
}

impl Serialize for CatalogFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The last two minutes, one value a second, oldest first.
#[derive(Debug, Default, Serialize)]
pub struct HistoryView {
    pub t_ms: Vec<u64>,
    pub rps: Vec<f64>,
    pub errors_per_s: Vec<f64>,
    pub p99_ms: Vec<Option<f64>>,
}

#[derive(Debug, Default, Serialize)]
pub struct BackendHistory {
    pub rps: Vec<f64>,
    pub error_rate: Vec<f64>,
    pub p99_ms: Vec<Option<f64>>,
}

/// `GET /api/status`.
pub fn status(state: &AdminState) -> AdminResponse {
    let aggregate = state.control.aggregate();
    let config = state.control.config();
    let history = state.sampler.history();
    let latest = history.last().cloned().unwrap_or_default();
    let now = now_ms();
    let (backends_up, backends) = aggregate.backends_up();
    let workers = aggregate
        .workers
        .iter()
        .map(|w| WorkerView {
            worker: w.worker,
            driver: w.driver.to_string(),
            loop_lag_ms: w.loop_lag.last_us as f64 / 1000.0,
            loop_lag_max_ms: w.loop_lag.max_us as f64 / 1000.0,
            heartbeat_age_ms: now.saturating_sub(w.taken_ms),
            requests: w.requests,
            open_connections: w.open_connections,
            generation: w.generation,
        })
        .collect();
    let listeners = aggregate
        .listeners
        .iter()
        .map(|l| ListenerView {
            name: l.name.clone(),
            address: state.info.listener_address(&l.name),
            protocol: l.protocol,
            counts: CatalogFields::of(&LISTENERS, l),
        })
        .collect();
    let requests: u64 = aggregate
        .listeners
        .iter()
        .map(|l| l.counts.responses.total())
        .sum();
    let totals = TotalsView {
        requests,
        rps: latest.rps,
        errors_per_s: latest.errors_per_s,
        error_rate: if latest.rps > 0.0 {
            latest.errors_per_s / latest.rps
        } else {
            0.0
        },
        open_connections: aggregate.open_connections(),
        in_flight: aggregate.upstreams.iter().map(|u| u.counts.in_flight).sum(),
        backends_up,
        backends,
        p50_ms: latest.latency.p50_ms,
        p99_ms: latest.latency.p99_ms,
    };
    let view = StatusView {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        started_ms: state.info.started_ms,
        uptime_s: now.saturating_sub(state.info.started_ms) / 1000,
        driver: state.info.driver.to_string(),
        config: config.source.to_string(),
        reloads: state.control.reloads(),
        shutting_down: state.control.is_shutting_down(),
        totals,
        workers,
        listeners,
        upstreams: upstreams(
            state,
            &config,
            &aggregate.upstreams,
            &latest,
            Some(&history),
        ),
        history: HistoryView {
            t_ms: history.iter().map(|p| p.t_ms).collect(),
            rps: history.iter().map(|p| p.rps).collect(),
            errors_per_s: history.iter().map(|p| p.errors_per_s).collect(),
            p99_ms: history.iter().map(|p| p.latency.p99_ms).collect(),
        },
    };
    AdminResponse::json(200, &view)
}

/// `GET /api/backends`.
pub fn backends(state: &AdminState) -> AdminResponse {
    let aggregate = state.control.aggregate();
    let latest = state.sampler.latest().unwrap_or_default();
    let config = state.control.config();
    let upstreams = upstreams(state, &config, &aggregate.upstreams, &latest, None);
    AdminResponse::json(200, &serde_json::json!({ "upstreams": upstreams }))
}

fn upstreams(
    state: &AdminState,
    config: &Config,
    rows: &[UpstreamRow],
    latest: &Point,
    history: Option<&[Point]>,
) -> Vec<UpstreamView> {
    let probe_log = state.control.probe_log();
    rows.iter()
        .map(|u| {
            let rates = latest.upstreams.get(&u.name).copied().unwrap_or_default();
            let group = config.upstreams.iter().find(|g| g.name == u.name);
            UpstreamView {
                name: u.name.clone(),
                balance: u.balance,
                counts: CatalogFields::of(&UPSTREAMS, u),
                rps: rates.rps,
                error_rate: rates.error_rate,
                p50_ms: rates.latency.p50_ms,
                p99_ms: rates.latency.p99_ms,
                health_check: group.and_then(HealthCheckView::of),
                slow_start_ms: group.map_or(0, |g| millis(g.slow_start)),
                backends: u
                    .backends
                    .iter()
                    .map(|b| backend_view(&u.name, b, latest, history, probe_log))
                    .collect(),
            }
        })
        .collect()
}

fn backend_view(
    group: &str,
    b: &BackendRow,
    latest: &Point,
    history: Option<&[Point]>,
    probe_log: &ProbeLog,
) -> BackendView {
    let key = (group.to_owned(), b.address);
    let probes = probe_log.get(group, b.address).map(|r| ProbesView {
        total: r.total,
        passes_in_a_row: r.passes_in_a_row,
        failures_in_a_row: r.failures_in_a_row,
        last_error: r.last_error,
        last_ms_ago: millis(r.last_at.elapsed()),
    });
    let rates: RatePoint = latest.backends.get(&key).copied().unwrap_or_default();
    let Percentiles {
        p50_ms,
        p90_ms,
        p99_ms,
        samples,
    } = rates.latency;
    let state_workers = BackendState::ALL
        .iter()
        .map(|s| (s.as_str(), b.workers_in(*s)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let circuit_workers: BTreeMap<&'static str, u32> = CircuitState::ALL
        .iter()
        .zip(b.circuits)
        .map(|(c, n)| (c.as_str(), n))
        .filter(|(_, n)| *n > 0)
        .collect();
    let circuit = [CircuitState::Open, CircuitState::HalfOpen]
        .into_iter()
        .find(|c| circuit_workers.contains_key(c.as_str()))
        .unwrap_or(CircuitState::Closed)
        .as_str();
    let history = history.map(|points| {
        let mut series = BackendHistory::default();
        for point in points {
            let p = point.backends.get(&key).copied().unwrap_or_default();
            series.rps.push(p.rps);
            series.error_rate.push(p.error_rate);
            series.p99_ms.push(p.latency.p99_ms);
        }
        series
    });
    BackendView {
        address: b.address,
        state: b.state.as_str(),
        state_workers,
        circuit,
        circuit_workers,
        health: if b.healthy { "up" } else { "down" },
        backup: b.backup,
        weight: b.weight,
        configured_weight: b.configured_weight,
        drain_override: b.drain_override,
        weight_override: b.weight_override,
        in_flight: b.in_flight,
        idle_connections: b.idle_connections,
        probes,
        ramp_percent: f64::from(b.ramp) / 10.0,
        counts: CatalogFields::of(&BACKENDS, b),
        rps: rates.rps,
        error_rate: rates.error_rate,
        p50_ms,
        p90_ms,
        p99_ms,
        latency_samples: samples,
        latency_window_s: super::sampler::PERCENTILE_WINDOW,
        history,
    }
}

/// `POST /api/backends/{group}/{backend}/{action}`, `action` = `drain`, `enable` or `weight`
/// (the new weight in the body: `5` or `{"weight": 5}`). A drain that would leave the group no
/// backend to serve is refused (409) unless `force` ([`super::drain_guard`]).
pub fn change_backend(
    state: &AdminState,
    group: &str,
    backend: &str,
    action: &str,
    body: &[u8],
    force: bool,
) -> AdminResponse {
    let change = match action {
        "drain" => BackendChange::Drain,
        "enable" => BackendChange::Enable,
        "weight" => match parse_weight(body) {
            Ok(weight) => BackendChange::Weight(weight),
            Err(message) => return AdminResponse::error(400, message),
        },
        other => {
            return AdminResponse::error(
                404,
                format!("no action \"{other}\" for a backend: use drain, enable or weight"),
            )
        }
    };
    let config = state.control.config();
    let Some(upstream) = config.upstreams.iter().find(|u| u.name == group) else {
        let groups: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        return AdminResponse::error(
            404,
            format!(
                "no upstream group \"{group}\"; the groups are: {}",
                groups.join(", ")
            ),
        );
    };
    let address = backend.parse::<SocketAddr>().ok();
    let Some(address) = address.filter(|a| upstream.backends.iter().any(|b| b.address == *a))
    else {
        let list: Vec<String> = upstream
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        return AdminResponse::error(
            404,
            format!(
                "upstream \"{group}\" has no backend \"{backend}\"; its backends are: {}",
                list.join(", ")
            ),
        );
    };

    if matches!(change, BackendChange::Drain) && !force {
        let aggregate = state.control.aggregate();
        let row = aggregate.upstreams.iter().find(|u| u.name == group);
        if let Some(refusal) = row.and_then(|row| super::drain_guard::refusal(row, address)) {
            tracing::warn!("admin: {refusal}");
            return AdminResponse::error(409, refusal);
        }
    }

    let gathered = state.control.change_backend(group, address, change);
    let workers = gathered.answers.len();
    let mut applied = 0;
    let mut refusals = Vec::new();
    for (worker, reply) in gathered.replies() {
        match reply {
            Ok(()) => applied += 1,
            Err(why) => refusals.push(format!("worker {worker}: {why}")),
        }
    }
    let (verb, detail) = match change {
        BackendChange::Drain => (
            "drained",
            "no new requests; those in flight finish".to_owned(),
        ),
        BackendChange::Enable => ("enabled", "takes new requests".to_owned()),
        BackendChange::Weight(w) => ("reweighted", format!("weight {w}")),
        BackendChange::Restarted => ("reset", "fresh outlier state, slow start".to_owned()),
    };
    if applied < workers {
        let mut message = format!(
            "backend {address} of upstream \"{group}\" was {verb} on {applied} of {workers} workers"
        );
        if !refusals.is_empty() {
            message.push_str(&format!(" ({})", refusals.join("; ")));
        }
        message.push_str("; the others did not confirm in time (try again)");
        tracing::warn!(
            silent = ?gathered.silent(),
            exited = ?gathered.gone(),
            "admin: {message}"
        );
        return AdminResponse::error(if refusals.is_empty() { 504 } else { 409 }, message);
    }
    tracing::info!(
        upstream = group,
        backend = %address,
        "admin: backend {address} of upstream \"{group}\" {verb} ({detail}) until the next reload"
    );
    let ignores_weights = upstream.balance == BalanceAlgorithm::Maglev;
    let note = match change {
        BackendChange::Weight(_) if ignores_weights => Some(format!(
            "upstream \"{group}\" balances with {}, which does not use runtime weights",
            upstream.balance.as_str()
        )),
        _ => None,
    };
    AdminResponse::json(
        200,
        &serde_json::json!({
            "upstream": group,
            "backend": address,
            "change": verb,
            "detail": detail,
            "workers": applied,
            "until": "the next reload",
            "note": note,
        }),
    )
}

/// A weight: `5`, or `{"weight": 5}`.
fn parse_weight(body: &[u8]) -> Result<NonZeroU32, String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let number = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Number(n)) => n.as_u64(),
        Ok(serde_json::Value::Object(map)) => map.get("weight").and_then(serde_json::Value::as_u64),
        _ => None,
    };
    match number {
        Some(0) => Err("weight 0 would never receive requests: drain the backend instead".into()),
        Some(n) => u32::try_from(n)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| format!("weight {n} is too large (at most {})", u32::MAX)),
        None => Err(format!(
            "the body must be the new weight, e.g. `3` or `{{\"weight\": 3}}`, not {text:?}"
        )),
    }
}

/// `POST /api/reload`: the same as SIGHUP (same file, same `--env`; under systemd the same
/// `RELOADING=1`/`READY=1` and the same record for `lbproxy reload`).
pub fn reload(state: &AdminState) -> AdminResponse {
    match state.control.reload_from_source() {
        Ok(report) => AdminResponse::json(
            200,
            &serde_json::json!({
                "reload": report.reload,
                "applied": true,
                "warnings": report.warnings,
            }),
        ),
        // The control loop has logged it (once, whoever asked).
        Err(e) => AdminResponse::json(
            422,
            &serde_json::json!({ "applied": false, "error": e.to_string() }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregate::ListenerRow;
    use std::collections::BTreeSet;

    /// The fields read as `{var}.NAME` (the dashboard's script) or `{var}["NAME"]` (ctl's tables)
    /// in `source`.
    fn read_fields(source: &str, var: char) -> BTreeSet<String> {
        let mut fields = BTreeSet::new();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        for (i, c) in source.char_indices() {
            let starts_word = !source[..i].chars().next_back().is_some_and(word);
            if c != var || !starts_word {
                continue;
            }
            let rest = &source[i + c.len_utf8()..];
            let Some(rest) = rest.strip_prefix('.').or_else(|| rest.strip_prefix("[\"")) else {
                continue;
            };
            let name: String = rest.chars().take_while(|&c| word(c)).collect();
            if !name.is_empty() {
                fields.insert(name);
            }
        }
        fields
    }

    fn keys(view: &impl Serialize) -> BTreeSet<String> {
        match serde_json::to_value(view).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    /// The dashboard and `lbproxy ctl` read the counters by the names the catalog gives them:
    /// every field they read of a listener, group or backend is one the views serialize.
    #[test]
    fn what_the_dashboard_and_ctl_read_is_in_the_views() {
        let listener = ListenerRow {
            name: "web".into(),
            protocol: "http",
            counts: Default::default(),
        };
        let backend =
            BackendRow::up_for_tests("127.0.0.1:8001".parse().unwrap(), Default::default());
        let group = UpstreamRow {
            name: "api".into(),
            balance: "round_robin",
            counts: Default::default(),
            backends: vec![backend.clone()],
        };
        let point = Point::default();
        let backend = backend_view("api", &backend, &point, Some(&[]), &ProbeLog::default());
        let views = [
            (
                'l',
                keys(&ListenerView {
                    name: listener.name.clone(),
                    address: None,
                    protocol: listener.protocol,
                    counts: CatalogFields::of(&LISTENERS, &listener),
                }),
            ),
            (
                'u',
                keys(&UpstreamView {
                    name: group.name.clone(),
                    balance: group.balance,
                    counts: CatalogFields::of(&UPSTREAMS, &group),
                    rps: 0.0,
                    error_rate: 0.0,
                    p50_ms: None,
                    p99_ms: None,
                    health_check: None,
                    slow_start_ms: 0,
                    backends: Vec::new(),
                }),
            ),
            ('b', keys(&backend)),
        ];
        const CTL_TABLES: &str = include_str!("ctl/tables.rs");
        let script = super::super::dashboard::SCRIPT;
        let mut counters = 0;
        for (var, keys) in &views {
            for field in read_fields(script, *var).union(&read_fields(CTL_TABLES, *var)) {
                assert!(
                    keys.contains(field),
                    "`{var}.{field}` is read, but the view has no such field: {keys:?}"
                );
                counters += usize::from(field.ends_with("_total"));
            }
        }
        assert!(
            counters >= 6,
            "the counters are read as l./u./b.NAME: {counters}"
        );
        for counter in ["protocol_errors_total", "connections_total", "responses"] {
            assert!(views[2].1.contains(counter), "{counter}");
        }
    }

    /// The same for the discovered instances (`i.NAME`, `i["NAME"]`) and the proxy's figures
    /// beside them (`f.NAME`, `f["NAME"]`).
    #[test]
    fn what_the_dashboard_and_ctl_read_of_an_instance_is_in_its_view() {
        let view = super::super::instances::fixture::view();
        let mut instance = view.instances[0].clone();
        instance.backend = Some(super::super::instances::BackendFigures {
            state: "up",
            health: "up",
            in_flight: 0,
            requests_total: 0,
            rps: None,
            errors_per_s: None,
            error_rate: None,
            p99_ms: None,
        });
        let figures = keys(instance.backend.as_ref().unwrap());
        let views = [('i', keys(&instance)), ('f', figures)];
        const CTL_TABLES: &str = include_str!("ctl/tables.rs");
        let script = super::super::dashboard::SCRIPT;
        for (var, keys) in &views {
            let read: BTreeSet<String> = read_fields(script, *var)
                .union(&read_fields(CTL_TABLES, *var))
                .cloned()
                .collect();
            for field in &read {
                assert!(
                    keys.contains(field),
                    "`{var}.{field}` is read, but the view has no such field: {keys:?}"
                );
            }
            assert!(read.len() >= 4, "{var}: {read:?}");
        }
    }

    #[test]
    fn weights_are_a_number_or_an_object() {
        assert_eq!(parse_weight(b"3\n").unwrap().get(), 3);
        assert_eq!(parse_weight(b"{\"weight\": 7}").unwrap().get(), 7);
        assert!(parse_weight(b"0").unwrap_err().contains("drain"));
        assert!(parse_weight(b"heavy")
            .unwrap_err()
            .contains("the body must be"));
        assert!(parse_weight(b"99999999999")
            .unwrap_err()
            .contains("too large"));
    }
}
