//! `GET /api/instances`: every systemd unit a `discover` group follows, as systemd reports it
//! (state, PID, uptime, restarts, CPU, memory, tasks, limits) beside how the proxy treats it
//! (routing) and what the proxy measures of it as a backend (req/s, errors, p99, in flight).
//! `lbproxy ctl instances`, the dashboard's "Instances" panel and the `lbproxy_instance_*`
//! families of `/metrics` read the same view ([`InstanceView`]).
//!
//! Flow: the discovery watcher publishes an [`Inventory`] in the control loop's shared state;
//! a request reads the latest one and joins each unit to its backend row — by group and address
//! — in the workers' [`Aggregate`] and the sampler's latest [`Point`]. Nothing here waits for
//! the control loop or talks to systemd.
//!
//! The metric families are declared in [`crate::metrics::catalog`] (`instance_metrics!`) and
//! made into [`INSTANCES`] here, over [`InstanceView`]: the inventory lives above the metrics
//! layer, and the view is where the uptime is worked out against the clock.

use super::http::AdminResponse;
use super::sampler::Point;
use super::AdminState;
use crate::config::Config;
use crate::control::discovery::{InstanceRow, Inventory, Routing};
use crate::metrics::counters::{Counter, Gauge};
use crate::metrics::family::{metrics_table, Value};
use crate::metrics::{catalog::instance_metrics, Aggregate};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// systemd's unit ActiveStates, as `lbproxy_instance_state`'s `state` label lists them.
pub const UNIT_ACTIVE_STATES: [&str; 7] = [
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
];

instance_metrics!(metrics_table! {
    /// Every instance family, in exposition order: one row per discovered unit.
    pub const INSTANCES: Table<InstanceView> labelled ["upstream", "unit"];
});

/// The answer of `GET /api/instances`.
#[derive(Debug, Serialize)]
pub struct InstancesView {
    /// When the discovery last read the units, in milliseconds since the Unix epoch; `null`
    /// before its first read (and without discovery).
    pub read_at_ms: Option<u64>,
    /// The groups that discover their backends, as configured; empty: no group uses
    /// `[upstream.NAME.discover]`.
    pub discover: Vec<DiscoverView>,
    /// By group, then unit name.
    pub instances: Vec<InstanceView>,
}

/// One group's `[upstream.NAME.discover]`.
#[derive(Debug, Serialize)]
pub struct DiscoverView {
    pub group: String,
    /// The unit pattern, e.g. `api@*.service`.
    pub systemd: String,
    /// `user` or `system`.
    pub bus: &'static str,
}

/// One discovered unit. Every figure systemd does not report is `null`.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub group: String,
    /// `user` or `system`.
    pub bus: &'static str,
    /// `api@2.service`.
    pub unit: String,
    /// Its backend address; `null` until known.
    pub address: Option<SocketAddr>,
    /// `routed`, `draining`, `waiting` or `out`.
    pub routing: Routing,
    pub load_state: String,
    /// systemd's ActiveState and SubState (`active`/`running`, `failed`/`failed`, …).
    pub active_state: String,
    pub sub_state: String,
    /// The main process; `null` when none runs.
    pub pid: Option<u32>,
    /// When the unit became active, in milliseconds since the Unix epoch; `null` unless it is
    /// active (or reloading).
    pub started_ms: Option<u64>,
    /// Seconds since then; `null` unless active.
    pub uptime_seconds: Option<u64>,
    /// Automatic restarts (NRestarts).
    pub restarts: u32,
    /// Restarted within the flapping window.
    pub flapping: bool,
    /// CPU use between the last two reads, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// CPU time used since the unit started (CPUUsageNSec).
    pub cpu_usage_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub limits: LimitsView,
    /// The proxy's own figures for the instance as a backend of its group; `null` when the
    /// group has no backend at its address (not routed yet, or gone).
    pub backend: Option<BackendFigures>,
}

/// The limits in force on a unit; `null`: unlimited.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitsView {
    /// CPUQuota= in percent of one CPU.
    pub cpu_quota_percent: Option<u32>,
    pub memory_max: Option<u64>,
    pub tasks_max: Option<u64>,
}

/// What the proxy measures of one backend (as `/api/backends` shows it).
#[derive(Debug, Clone, Serialize)]
pub struct BackendFigures {
    /// The proxy's backend state (up, slow-start, ejected, down, draining, …).
    pub state: &'static str,
    /// The active health checks' verdict, `up` or `down`.
    pub health: &'static str,
    pub in_flight: u64,
    pub requests_total: u64,
    /// Over the last second; `null` before the sampler's first point for it.
    pub rps: Option<f64>,
    pub errors_per_s: Option<f64>,
    /// Share of 5xx and failed tries, 0..=1.
    pub error_rate: Option<f64>,
    /// Over the last 10 seconds; `null` without responses.
    pub p99_ms: Option<f64>,
}

/// `GET /api/instances`.
pub fn instances(state: &AdminState) -> AdminResponse {
    let latest = state.sampler.latest().unwrap_or_default();
    let view = view(
        &state.control.inventory(),
        &state.control.config(),
        &state.control.aggregate(),
        &latest,
        SystemTime::now(),
    );
    AdminResponse::json(200, &view)
}

/// The inventory as of `now`, each unit joined to its backend's figures.
pub fn view(
    inventory: &Inventory,
    config: &Config,
    aggregate: &Aggregate,
    latest: &Point,
    now: SystemTime,
) -> InstancesView {
    let discover = config
        .upstreams
        .iter()
        .filter_map(|u| {
            let discover = u.discover.as_ref()?;
            Some(DiscoverView {
                group: u.name.clone(),
                systemd: discover.systemd.clone(),
                bus: discover.bus.as_str(),
            })
        })
        .collect();
    InstancesView {
        read_at_ms: inventory.read_at.map(|t| micros_since_epoch(t) / 1000),
        discover,
        instances: inventory
            .instances
            .iter()
            .map(|row| instance_view(row, aggregate, latest, now))
            .collect(),
    }
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn instance_view(
    row: &InstanceRow,
    aggregate: &Aggregate,
    latest: &Point,
    now: SystemTime,
) -> InstanceView {
    let unit = &row.unit;
    let running = matches!(unit.active_state.as_str(), "active" | "reloading");
    let since_us = (running && unit.active_since_us > 0).then_some(unit.active_since_us);
    InstanceView {
        group: row.group.clone(),
        bus: row.bus.as_str(),
        unit: unit.name.clone(),
        address: row.address,
        routing: row.routing,
        load_state: unit.load_state.clone(),
        active_state: unit.active_state.clone(),
        sub_state: unit.sub_state.clone(),
        pid: (unit.main_pid != 0).then_some(unit.main_pid),
        started_ms: since_us.map(|us| us / 1000),
        uptime_seconds: since_us.map(|us| micros_since_epoch(now).saturating_sub(us) / 1_000_000),
        restarts: unit.n_restarts,
        flapping: row.flapping,
        cpu_percent: row.cpu_percent,
        cpu_usage_seconds: unit.cpu_usage_ns.map(|ns| ns as f64 / 1e9),
        memory_bytes: unit.memory_bytes,
        tasks: unit.tasks,
        limits: LimitsView {
            cpu_quota_percent: unit.limits.cpu_quota_percent,
            memory_max: unit.limits.memory_max,
            tasks_max: unit.limits.tasks_max,
        },
        backend: row
            .address
            .and_then(|address| backend_figures(&row.group, address, aggregate, latest)),
    }
}

fn backend_figures(
    group: &str,
    address: SocketAddr,
    aggregate: &Aggregate,
    latest: &Point,
) -> Option<BackendFigures> {
    let b = aggregate
        .upstreams
        .iter()
        .find(|u| u.name == group)?
        .backends
        .iter()
        .find(|b| b.address == address)?;
    let rates = latest.backends.get(&(group.to_owned(), address));
    Some(BackendFigures {
        state: b.state.as_str(),
        health: if b.healthy { "up" } else { "down" },
        in_flight: b.in_flight,
        requests_total: b.counts.responses.total(),
        rps: rates.map(|r| r.rps),
        errors_per_s: rates.map(|r| r.rps * r.error_rate),
        error_rate: rates.map(|r| r.error_rate),
        p99_ms: rates.and_then(|r| r.latency.p99_ms),
    })
}

/// Hand-made inventories for the views' tests (here, in `ctl`'s tables and in `/metrics`).
#[cfg(test)]
pub(crate) mod fixture {
    use crate::config::{SystemdBus, UnitResources};
    use crate::control::discovery::{InstanceRow, Inventory, Routing};
    use crate::systemd::bus::UnitState;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// 2026-12-07 12:00:00 UTC: the "now" the fixture's uptimes are measured against.
    pub const NOW_S: u64 = 1_796_644_800;

    pub fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_S)
    }

    /// A configuration with one static group, `api` (127.0.0.1:8001).
    pub fn config() -> crate::config::Config {
        crate::config::testing::valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n",
        )
    }

    /// The [`inventory`]'s view at [`now`], on a proxy that has no figures for it yet.
    pub fn view() -> super::InstancesView {
        super::view(
            &inventory(),
            &config(),
            &crate::metrics::Aggregate::default(),
            &super::Point::default(),
            now(),
        )
    }

    /// `api@1` routed (up 1 h 1 min 5 s, 1 restart, limits set) at 127.0.0.1:8001; `api@2`
    /// failed and flapping, no accounting figures, at 127.0.0.1:8002; `api@3` activating with
    /// no address yet.
    pub fn inventory() -> Inventory {
        let unit = |n: u32, active: &str, sub: &str| UnitState {
            name: format!("api@{n}.service"),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            ..UnitState::default()
        };
        let row = |unit: UnitState, address: Option<&str>, routing| InstanceRow {
            group: "api".into(),
            bus: SystemdBus::User,
            address: address.map(|a| a.parse().unwrap()),
            routing,
            unit,
            cpu_percent: None,
            flapping: false,
        };
        let mut up = row(
            UnitState {
                invocation_id: "0123456789abcdef".into(),
                n_restarts: 1,
                main_pid: 4242,
                active_since_us: (NOW_S - 3665) * 1_000_000,
                cpu_usage_ns: Some(12_500_000_000),
                memory_bytes: Some(50 * 1024 * 1024),
                tasks: Some(7),
                limits: UnitResources {
                    cpu_quota_percent: Some(50),
                    memory_max: Some(256 * 1024 * 1024),
                    tasks_max: Some(64),
                },
                ..unit(1, "active", "running")
            },
            Some("127.0.0.1:8001"),
            Routing::Routed,
        );
        up.cpu_percent = Some(12.5);
        let mut failed = row(
            UnitState {
                n_restarts: 5,
                active_since_us: (NOW_S - 100) * 1_000_000,
                ..unit(2, "failed", "failed")
            },
            Some("127.0.0.1:8002"),
            Routing::Out,
        );
        failed.flapping = true;
        let starting = row(unit(3, "activating", "start"), None, Routing::Waiting);
        Inventory {
            read_at: Some(now() - Duration::from_millis(1500)),
            instances: vec![up, failed, starting],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::sampler::{Percentiles, RatePoint};
    use crate::metrics::aggregate::{BackendRow, UpstreamRow};
    use crate::metrics::family::Kind;
    use crate::metrics::stats::BackendCounts;
    use crate::metrics::Aggregate;

    /// A proxy whose group `api` has 127.0.0.1:8001 as a backend with 40 requests, 2 in flight,
    /// sampled at 20 req/s, 5% errors, p99 3.5 ms.
    fn proxy() -> (Aggregate, Point) {
        let address: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        let mut counts = BackendCounts::default();
        counts.responses.0[2] = 40;
        let mut backend = BackendRow::up_for_tests(address, counts);
        backend.in_flight = 2;
        let aggregate = Aggregate {
            upstreams: vec![UpstreamRow {
                name: "api".into(),
                balance: "round_robin",
                counts: Default::default(),
                backends: vec![backend],
            }],
            ..Aggregate::default()
        };
        let mut point = Point::default();
        point.backends.insert(
            ("api".into(), address),
            RatePoint {
                rps: 20.0,
                error_rate: 0.05,
                latency: Percentiles {
                    p99_ms: Some(3.5),
                    ..Percentiles::default()
                },
            },
        );
        (aggregate, point)
    }

    fn fixture_json() -> serde_json::Value {
        let (aggregate, point) = proxy();
        let view = view(
            &fixture::inventory(),
            &fixture::config(),
            &aggregate,
            &point,
            fixture::now(),
        );
        serde_json::to_value(&view).unwrap()
    }

    #[test]
    fn the_json_has_systemds_figures_and_the_proxys_side_by_side() {
        let v = fixture_json();
        assert_eq!(v["read_at_ms"], fixture::NOW_S * 1000 - 1500);
        assert_eq!(v["discover"], serde_json::json!([]));
        let up = &v["instances"][0];
        let expected = serde_json::json!({
            "group": "api",
            "bus": "user",
            "unit": "api@1.service",
            "address": "127.0.0.1:8001",
            "routing": "routed",
            "load_state": "loaded",
            "active_state": "active",
            "sub_state": "running",
            "pid": 4242,
            "started_ms": (fixture::NOW_S - 3665) * 1000,
            "uptime_seconds": 3665,
            "restarts": 1,
            "flapping": false,
            "cpu_percent": 12.5,
            "cpu_usage_seconds": 12.5,
            "memory_bytes": 52_428_800,
            "tasks": 7,
            "limits": {"cpu_quota_percent": 50, "memory_max": 268_435_456_u64, "tasks_max": 64},
            "backend": {
                "state": "up",
                "health": "up",
                "in_flight": 2,
                "requests_total": 40,
                "rps": 20.0,
                "errors_per_s": 1.0,
                "error_rate": 0.05,
                "p99_ms": 3.5,
            },
        });
        assert_eq!(up, &expected);
    }

    #[test]
    fn what_is_not_known_is_null() {
        let v = fixture_json();
        let failed = &v["instances"][1];
        assert_eq!(failed["routing"], "out");
        assert_eq!(failed["flapping"], true);
        assert_eq!(failed["restarts"], 5);
        for field in [
            "pid",
            "started_ms",
            "uptime_seconds",
            "cpu_percent",
            "cpu_usage_seconds",
            "memory_bytes",
            "tasks",
        ] {
            assert!(failed[field].is_null(), "{field}: {}", failed[field]);
        }
        assert_eq!(
            failed["limits"],
            serde_json::json!({"cpu_quota_percent": null, "memory_max": null, "tasks_max": null})
        );
        assert!(
            failed["backend"].is_null(),
            "127.0.0.1:8002 is not a backend of the group"
        );
        let waiting = &v["instances"][2];
        assert_eq!(waiting["routing"], "waiting");
        assert!(waiting["address"].is_null() && waiting["backend"].is_null());
    }

    #[test]
    fn a_backend_the_sampler_has_not_seen_yet_has_null_rates() {
        let (aggregate, _) = proxy();
        let view = view(
            &fixture::inventory(),
            &fixture::config(),
            &aggregate,
            &Point::default(),
            fixture::now(),
        );
        let backend = view.instances[0].backend.as_ref().unwrap();
        assert_eq!((backend.in_flight, backend.requests_total), (2, 40));
        assert_eq!(
            (backend.rps, backend.error_rate, backend.p99_ms),
            (None, None, None)
        );
    }

    #[test]
    fn the_instance_families_are_named_as_prometheus_expects() {
        let mut names = std::collections::BTreeSet::new();
        for family in INSTANCES.families {
            assert!(
                family.name.starts_with("lbproxy_instance_"),
                "{}",
                family.name
            );
            assert!(names.insert(family.name), "{} twice", family.name);
            let help = family.help();
            assert!(!help.is_empty() && !help.contains("  ") && !help.contains('\n'));
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
            assert!(
                family.json.is_none(),
                "the view is the JSON: {}",
                family.name
            );
        }
        assert_eq!(INSTANCES.labels, ["upstream", "unit"]);
        assert!(names.contains("lbproxy_instance_cpu_seconds_total"));
    }

    #[test]
    fn the_families_read_the_view() {
        let (aggregate, point) = proxy();
        let view = view(
            &fixture::inventory(),
            &fixture::config(),
            &aggregate,
            &point,
            fixture::now(),
        );
        let value = |name: &str, row: usize| {
            let family = INSTANCES.families.iter().find(|f| f.name == name).unwrap();
            (family.value)(&view.instances[row])
        };
        assert_eq!(value("lbproxy_instance_up", 0), Value::Number(1));
        assert_eq!(value("lbproxy_instance_up", 1), Value::Number(0));
        assert_eq!(
            value("lbproxy_instance_cpu_seconds_total", 0),
            Value::Real(12.5)
        );
        assert_eq!(
            value("lbproxy_instance_cpu_seconds_total", 1),
            Value::Unknown
        );
        assert_eq!(
            value("lbproxy_instance_start_time_seconds", 0),
            Value::Real((fixture::NOW_S - 3665) as f64)
        );
        assert_eq!(
            value("lbproxy_instance_start_time_seconds", 1),
            Value::Unknown
        );
        let Value::Labelled { label, samples } = value("lbproxy_instance_state", 1) else {
            panic!("the state is labelled");
        };
        assert_eq!(label, "state");
        let on: Vec<&str> = samples.iter().filter(|s| s.1 == 1).map(|s| s.0).collect();
        assert_eq!(on, ["failed"]);
        assert_eq!(samples.len(), UNIT_ACTIVE_STATES.len());
    }
}
