//! `GET /api/autoscale`: what the autoscaler (`[upstream.NAME.autoscale]`) decided and why, per
//! group: its bounds, metric, target and the signal it measured, the instances routed, starting
//! and stopping, the count it wants, its mode, its last decision and a short history of the
//! instance count. `lbproxy ctl autoscale`, the dashboard's "Autoscaling" panel and the
//! `lbproxy_autoscale_*` families of `/metrics` read the same view ([`AutoscaleView`]).
//!
//! Flow: the autoscale controller writes each group's state on the control loop's
//! [`AutoscaleBoard`] every tick; a request takes a snapshot of it. Nothing here waits for the
//! control loop.
//!
//! The metric families are declared in [`crate::metrics::catalog`] (`autoscale_metrics!` and
//! `autoscale_signal_metrics!`, whose one family has the `metric` label too) and made into
//! [`AUTOSCALE`] and [`AUTOSCALE_SIGNAL`] here, over [`AutoscaleView`].

use super::http::AdminResponse;
use super::AdminState;
use crate::config::AutoscaleMetric;
use crate::control::autoscale::{AutoscaleBoard, Decision, GroupAutoscale, Mode};
use crate::metrics::catalog::{autoscale_metrics, autoscale_signal_metrics};
use crate::metrics::counters::{Counter, Gauge};
use crate::metrics::family::{metrics_table, Value};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

autoscale_metrics!(metrics_table! {
    /// Every autoscale family but the signal, in exposition order: one row per autoscaled group.
    pub const AUTOSCALE: Table<AutoscaleView> labelled ["upstream"];
});

autoscale_signal_metrics!(metrics_table! {
    /// The signal: one row per autoscaled group, with the metric it measures.
    pub const AUTOSCALE_SIGNAL: Table<AutoscaleView> labelled ["upstream", "metric"];
});

/// The answer of `GET /api/autoscale`.
#[derive(Debug, Serialize)]
pub struct AutoscaleGroups {
    /// By group name; empty: no group has `[upstream.NAME.autoscale]`.
    pub groups: Vec<AutoscaleView>,
}

/// One autoscaled group.
#[derive(Debug, Clone, Serialize)]
pub struct AutoscaleView {
    pub group: String,
    pub min: u32,
    pub max: u32,
    /// `in_flight`, `rps`, `p99` or `cpu`; `null` before the autoscaler's first tick.
    pub metric: Option<&'static str>,
    pub target: f64,
    /// The metric per routed instance (the group's p99 for `p99`) at the last tick; `null`
    /// without data.
    pub signal: Option<f64>,
    /// Instances routed now, starting (not routed yet) and stopping (draining or stopping).
    pub current: u32,
    pub starting: u32,
    pub stopping: u32,
    /// What the policy wants now.
    pub desired: u32,
    /// `stable`, `scaling-up`, `scaling-down`, `panic` or `holding`.
    pub mode: &'static str,
    /// Why a decision is held back (mode `holding`); `null` otherwise.
    pub holding_reason: Option<&'static str>,
    /// Requests waiting for an instance (scale from zero).
    pub waiting: u64,
    pub last_decision: Option<DecisionView>,
    /// Decisions since the proxy started, by direction.
    pub decisions: DecisionCounts,
    /// `[time in ms since the Unix epoch, routed instances, desired]`, oldest first.
    pub history: Vec<(u64, u32, u32)>,
}

/// A change of the instance count.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// Decisions that raised and lowered the instance count.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DecisionCounts {
    pub up: u64,
    pub down: u64,
}

/// `GET /api/autoscale`.
pub fn autoscale(state: &AdminState) -> AdminResponse {
    AdminResponse::json(200, &view(state.control.autoscale()))
}

/// Every autoscaled group of `board`, by name.
pub fn view(board: &AutoscaleBoard) -> AutoscaleGroups {
    AutoscaleGroups {
        groups: board
            .snapshot()
            .iter()
            .map(|(group, a)| group_view(group, a))
            .collect(),
    }
}

fn group_view(group: &str, a: &GroupAutoscale) -> AutoscaleView {
    AutoscaleView {
        group: group.to_owned(),
        min: a.min,
        max: a.max,
        metric: a.metric.map(AutoscaleMetric::as_str),
        target: a.target,
        signal: a.signal.filter(|s| s.is_finite()),
        current: a.current,
        starting: a.starting,
        stopping: a.stopping,
        desired: a.desired,
        mode: a.mode.as_str(),
        holding_reason: match a.mode {
            Mode::Holding(reason) => Some(reason),
            _ => None,
        },
        waiting: a.waiting,
        last_decision: a.last_decision.as_ref().map(decision_view),
        decisions: DecisionCounts {
            up: a.ups,
            down: a.downs,
        },
        history: a
            .history
            .iter()
            .map(|&(at, instances, desired)| (ms_since_epoch(at), instances, desired))
            .collect(),
    }
}

fn decision_view(d: &Decision) -> DecisionView {
    DecisionView {
        at_ms: ms_since_epoch(d.at),
        from: d.from,
        to: d.to,
        reason: d.reason.clone(),
    }
}

fn ms_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A hand-made board for the views' tests (here, in `ctl`'s tables and in `/metrics`).
#[cfg(test)]
pub(crate) mod fixture {
    use crate::config::AutoscaleMetric;
    use crate::control::autoscale::{AutoscaleBoard, Decision, Mode};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// 2026-12-07 12:00:00 UTC.
    pub const NOW_S: u64 = 1_796_644_800;

    pub fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_S)
    }

    /// `api`: in_flight, target 10, signal 25 per instance, 2 routed, 1 starting, wants 5,
    /// panic, scaled 1 → 2 ten seconds ago (one scale-up and one scale-down so far), 3 points
    /// of history. `batch`: cpu, target 60, no signal yet, 0 instances (min 0), holding.
    pub fn board() -> AutoscaleBoard {
        let board = AutoscaleBoard::default();
        board.update("api", |a| {
            a.min = 1;
            a.max = 8;
            a.metric = Some(AutoscaleMetric::InFlight);
            a.target = 10.0;
            a.signal = Some(25.0);
            a.current = 2;
            a.starting = 1;
            a.desired = 5;
            a.mode = Mode::Panic;
            a.decided(Decision {
                at: now() - Duration::from_secs(30),
                from: 2,
                to: 1,
                reason: "in_flight 2.0 per instance under target 10 for 300s".into(),
            });
            a.decided(Decision {
                at: now() - Duration::from_secs(10),
                from: 1,
                to: 2,
                reason: "in_flight 25.0 per instance, target 10: panic".into(),
            });
            a.history.extend([
                (now() - Duration::from_secs(2), 1, 1),
                (now() - Duration::from_secs(1), 1, 2),
                (now(), 2, 5),
            ]);
        });
        board.update("batch", |a| {
            a.min = 0;
            a.max = 3;
            a.metric = Some(AutoscaleMetric::Cpu);
            a.target = 60.0;
            a.mode = Mode::Holding("a start is pending");
            a.waiting = 4;
        });
        board
    }

    pub fn view() -> super::AutoscaleGroups {
        super::view(&board())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::Kind;

    #[test]
    fn the_json_has_the_policy_the_counts_and_the_last_decision() {
        let v = serde_json::to_value(fixture::view()).unwrap();
        let now_ms = fixture::NOW_S * 1000;
        assert_eq!(
            v["groups"][0],
            serde_json::json!({
                "group": "api",
                "min": 1,
                "max": 8,
                "metric": "in_flight",
                "target": 10.0,
                "signal": 25.0,
                "current": 2,
                "starting": 1,
                "stopping": 0,
                "desired": 5,
                "mode": "panic",
                "holding_reason": null,
                "waiting": 0,
                "last_decision": {
                    "at_ms": now_ms - 10_000,
                    "from": 1,
                    "to": 2,
                    "reason": "in_flight 25.0 per instance, target 10: panic",
                },
                "decisions": {"up": 1, "down": 1},
                "history": [[now_ms - 2000, 1, 1], [now_ms - 1000, 1, 2], [now_ms, 2, 5]],
            })
        );
        let batch = &v["groups"][1];
        assert_eq!(batch["group"], "batch");
        assert_eq!(batch["mode"], "holding");
        assert_eq!(batch["holding_reason"], "a start is pending");
        assert_eq!(batch["waiting"], 4);
        for field in ["signal", "last_decision"] {
            assert!(batch[field].is_null(), "{field}: {}", batch[field]);
        }
        assert_eq!(batch["history"], serde_json::json!([]));
    }

    #[test]
    fn without_autoscale_the_list_is_empty() {
        let v = serde_json::to_value(view(&AutoscaleBoard::default())).unwrap();
        assert_eq!(v, serde_json::json!({"groups": []}));
    }

    #[test]
    fn a_decision_that_changes_nothing_is_not_counted() {
        let board = AutoscaleBoard::default();
        board.update("api", |a| {
            a.decided(Decision {
                at: fixture::now(),
                from: 3,
                to: 3,
                reason: "held".into(),
            });
        });
        let a = &board.snapshot()["api"];
        assert_eq!((a.ups, a.downs), (0, 0));
        assert!(a.last_decision.is_some());
    }

    #[test]
    fn the_autoscale_families_are_named_as_prometheus_expects() {
        let mut names = std::collections::BTreeSet::new();
        for family in AUTOSCALE.families.iter().chain(AUTOSCALE_SIGNAL.families) {
            assert!(
                family.name.starts_with("lbproxy_autoscale_"),
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
        assert_eq!(AUTOSCALE.labels, ["upstream"]);
        assert_eq!(AUTOSCALE_SIGNAL.labels, ["upstream", "metric"]);
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn the_families_read_the_view() {
        let view = fixture::view();
        let value = |name: &str, row: usize| {
            let family = AUTOSCALE
                .families
                .iter()
                .chain(AUTOSCALE_SIGNAL.families)
                .find(|f| f.name == name)
                .unwrap();
            (family.value)(&view.groups[row])
        };
        assert_eq!(value("lbproxy_autoscale_panic", 0), Value::Number(1));
        assert_eq!(value("lbproxy_autoscale_panic", 1), Value::Number(0));
        assert_eq!(value("lbproxy_autoscale_signal", 0), Value::Real(25.0));
        assert_eq!(value("lbproxy_autoscale_signal", 1), Value::Unknown);
        assert_eq!(
            value("lbproxy_autoscale_decisions_total", 0),
            Value::Labelled {
                label: "direction",
                samples: vec![("up", 1), ("down", 1)],
            }
        );
    }
}
