//! The deployments (`lbproxy deploy`) through the admin API:
//!
//! - `GET /api/deploy`: `{"current": Deployment | null, "history": [summary, …]}` — the
//!   deployment in progress (or the last one, once it ended and nothing newer started: its
//!   `outcome` says how), with its phase, step, weight, units, last analysis and decisions; and
//!   one line per ended deployment, oldest first ([`DeploySummary`]).
//! - `GET /api/deploy/history`: `{"history": [Deployment, …]}`, the ended deployments in full.
//! - `POST /api/deploy` with a spec's JSON ([`crate::deploy::spec_json`]): checked against the
//!   running configuration, then handed to the deploy controller: 202 `{"accepted": true, "id":
//!   N}`; 400 with every problem (`errors`), 409 while a deployment is in progress.
//! - `POST /api/deploy/promote`, `…/abort`, `…/rollback` (body: the reason, as text or
//!   `{"reason": "…"}`): 202 once queued, 409 when no deployment is in progress.
//!
//! Flow: the requests go on the [`DeployBoard`], which the control loop's deploy controller
//! reads on its next tick (a 202 says queued, not done: `GET /api/deploy` follows what it did);
//! the controller publishes the deployment there as it goes, and a request reads a copy. Nothing
//! here waits for the control loop. `lbproxy deploy`, the dashboard's "Deployment" panel and the
//! `lbproxy_deploy*` families of `/metrics` read the same board; the families are declared in
//! [`crate::metrics::catalog`] (`deploy_metrics!` and its companions) and made into tables here,
//! over [`DeployMetrics`]' rows.

use super::http::AdminResponse;
use super::AdminState;
use crate::config::Config;
use crate::deploy::board::{DeployBoard, Request};
use crate::deploy::record::{Deployment, Outcome, Phase};
use crate::deploy::spec::Strategy;
use crate::deploy::spec_check::check;
use crate::deploy::spec_json::from_json;
use crate::metrics::catalog::{
    deploy_check_metrics, deploy_check_value_metrics, deploy_metrics, deploy_weight_metrics,
};
use crate::metrics::counters::{Counter, Gauge};
use crate::metrics::family::{metrics_table, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest reason kept (the journal and the history carry it).
const MAX_REASON: usize = 500;

deploy_metrics!(metrics_table! {
    /// The deployment families of one group: one row per group the board has seen deployed.
    pub const DEPLOY: Table<DeployGroupRow> labelled ["upstream"];
});

deploy_weight_metrics!(metrics_table! {
    /// The new version's share: one row while a deployment is in progress.
    pub const DEPLOY_WEIGHT: Table<DeployWeightRow> labelled ["upstream", "version"];
});

deploy_check_metrics!(metrics_table! {
    /// The last analysis's limits: one row per check.
    pub const DEPLOY_CHECK: Table<DeployCheckRow> labelled ["upstream", "check"];
});

deploy_check_value_metrics!(metrics_table! {
    /// The last analysis's values: one row per check and side.
    pub const DEPLOY_CHECK_VALUE: Table<DeployCheckValueRow> labelled ["upstream", "check", "side"];
});

/// The answer of `GET /api/deploy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployOverview {
    /// The deployment in progress, or the last one if it ended and nothing newer started;
    /// `null` before the first.
    pub current: Option<Deployment>,
    /// Every ended deployment the proxy keeps (the last 50), oldest first.
    pub history: Vec<DeploySummary>,
}

/// One ended deployment in a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySummary {
    pub id: u64,
    pub upstream: String,
    pub version: String,
    /// The version the stable instances ran before (`null`: their template's own).
    pub from_version: Option<String>,
    pub strategy: Strategy,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub updated_ms: u64,
    /// `{"result": "promoted"}`, `{"result": "aborted", "reason": …}` or `{"result":
    /// "rolled-back", "reason": …}`; `null` for one that did not end (it cannot be here).
    pub outcome: Option<Outcome>,
}

impl DeploySummary {
    pub fn of(d: &Deployment) -> Self {
        Self {
            id: d.id,
            upstream: d.spec.upstream.clone(),
            version: d.spec.version.clone(),
            from_version: d.from_version.clone(),
            strategy: d.spec.strategy,
            started_ms: d.started_ms,
            updated_ms: d.updated_ms,
            outcome: d.outcome.clone(),
        }
    }
}

/// `GET /api/deploy` of `board`.
pub fn overview(board: &DeployBoard) -> DeployOverview {
    DeployOverview {
        current: board.current(),
        history: board.history().iter().map(DeploySummary::of).collect(),
    }
}

/// `GET /api/deploy`.
pub fn deploy(state: &AdminState) -> AdminResponse {
    AdminResponse::json(200, &overview(state.control.deploy()))
}

/// `GET /api/deploy/history`.
pub fn history(state: &AdminState) -> AdminResponse {
    let history = state.control.deploy().history();
    AdminResponse::json(200, &serde_json::json!({ "history": history }))
}

/// `POST /api/deploy`: the spec in `body`, checked against `config`, queued on `board`.
pub fn start(board: &DeployBoard, config: &Config, body: &[u8]) -> AdminResponse {
    let spec = match from_json(body).and_then(|spec| check(&spec, config).map(|()| spec)) {
        Ok(spec) => spec,
        Err(errors) => {
            return AdminResponse::json(
                400,
                &serde_json::json!({ "error": errors.join("\n\n"), "errors": errors }),
            )
        }
    };
    let id = board.next_id();
    let answer = serde_json::json!({
        "accepted": true,
        "id": id,
        "upstream": spec.upstream,
        "version": spec.version,
        "strategy": spec.strategy,
    });
    match board.submit(Request::Start(Box::new(spec))) {
        Ok(()) => AdminResponse::json(202, &answer),
        Err(why) => AdminResponse::error(409, why),
    }
}

/// `POST /api/deploy/{action}` (`promote`, `abort`, `rollback`) with the reason in `body`.
pub fn command(board: &DeployBoard, action: &str, body: &[u8]) -> AdminResponse {
    let reason = reason(body, action);
    let request = match action {
        "promote" => Request::Promote,
        "abort" => Request::Abort {
            reason: reason.clone(),
        },
        "rollback" => Request::Rollback {
            reason: reason.clone(),
        },
        other => {
            return AdminResponse::error(
                404,
                format!("no deployment action \"{other}\": use promote, abort or rollback"),
            )
        }
    };
    let current = board.current().filter(Deployment::in_progress);
    match board.submit(request) {
        Ok(()) => {
            let mut answer = serde_json::json!({
                "accepted": true,
                "action": action,
                "id": current.as_ref().map(|d| d.id),
            });
            if action != "promote" {
                answer["reason"] = reason.into();
            }
            AdminResponse::json(202, &answer)
        }
        Err(why) => AdminResponse::error(
            409,
            format!("cannot {action}: {why} (`lbproxy deploy status` shows the last one)"),
        ),
    }
}

/// The operator's reason: the body as text, or its `reason` as JSON; a default without one.
fn reason(body: &[u8], action: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let given = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .trim()
            .to_owned(),
        Ok(serde_json::Value::String(reason)) => reason.trim().to_owned(),
        _ => text.to_owned(),
    };
    let given: String = given
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    if given.is_empty() {
        let done = if action == "rollback" {
            "rolled back"
        } else {
            "aborted"
        };
        format!("{done} by the operator")
    } else {
        given
    }
}

/// The rows of the deployment families of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct DeployMetrics {
    pub groups: Vec<DeployGroupRow>,
    pub weights: Vec<DeployWeightRow>,
    pub checks: Vec<DeployCheckRow>,
    pub values: Vec<DeployCheckValueRow>,
}

/// A group the board has seen deployed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployGroupRow {
    pub upstream: String,
    pub in_progress: bool,
    /// The canary step from 1 (0 while starting); `None`: blue-green, or none in progress.
    pub step: Option<u64>,
    /// `None` without a deployment in progress.
    pub failures_in_a_row: Option<u32>,
    /// Ended deployments in the history, by result.
    pub promoted: u64,
    pub aborted: u64,
    pub rolled_back: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployWeightRow {
    pub upstream: String,
    pub version: String,
    pub weight_bp: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployCheckRow {
    pub upstream: String,
    pub check: String,
    pub limit: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployCheckValueRow {
    pub upstream: String,
    pub check: String,
    /// `canary` or `stable`.
    pub side: &'static str,
    pub value: f64,
}

/// The families' rows from `board`: a row per group in the history or deployed now; the weight
/// and the last analysis of the deployment in progress.
pub fn metrics(board: &DeployBoard) -> DeployMetrics {
    let mut groups: BTreeMap<String, DeployGroupRow> = BTreeMap::new();
    fn group<'a>(
        groups: &'a mut BTreeMap<String, DeployGroupRow>,
        upstream: &str,
    ) -> &'a mut DeployGroupRow {
        groups
            .entry(upstream.to_owned())
            .or_insert_with(|| DeployGroupRow {
                upstream: upstream.to_owned(),
                ..DeployGroupRow::default()
            })
    }
    // Every group deployed before shows its counters, at 0 until one ends in this process.
    for d in board.history() {
        group(&mut groups, &d.spec.upstream);
    }
    for (upstream, ended) in board.ended_counts() {
        let g = group(&mut groups, &upstream);
        g.promoted = ended.promoted;
        g.aborted = ended.aborted;
        g.rolled_back = ended.rolled_back;
    }
    let mut metrics = DeployMetrics::default();
    if let Some(d) = board.current() {
        let upstream = &d.spec.upstream;
        let g = group(&mut groups, upstream);
        if d.in_progress() {
            g.in_progress = true;
            g.failures_in_a_row = Some(d.failures_in_a_row);
            g.step = match (d.spec.strategy, d.phase) {
                (Strategy::BlueGreen, _) => None,
                (Strategy::Canary, Phase::Starting) => Some(0),
                (Strategy::Canary, _) => Some(d.step as u64 + 1),
            };
            metrics.weights.push(DeployWeightRow {
                upstream: upstream.clone(),
                version: d.spec.version.clone(),
                weight_bp: d.weight_bp,
            });
            for c in d.last_analysis.iter().flat_map(|a| &a.checks) {
                metrics.checks.push(DeployCheckRow {
                    upstream: upstream.clone(),
                    check: c.name.clone(),
                    limit: c.limit,
                });
                for (side, value) in [("canary", Some(c.canary)), ("stable", c.stable)] {
                    if let Some(value) = value {
                        metrics.values.push(DeployCheckValueRow {
                            upstream: upstream.clone(),
                            check: c.name.clone(),
                            side,
                            value,
                        });
                    }
                }
            }
        }
    }
    metrics.groups = groups.into_values().collect();
    metrics
}

/// A hand-made board for the views' tests (here, in `ctl`'s renderings and in `/metrics`).
#[cfg(test)]
pub(crate) mod fixture {
    use crate::deploy::analysis::{judge, SideFigures};
    use crate::deploy::board::DeployBoard;
    use crate::deploy::record::{Decision, Deployment, Outcome, Phase};
    use crate::deploy::spec_json::from_json;

    /// 2026-12-07 12:00:00 UTC, in ms.
    pub const NOW_MS: u64 = 1_796_644_800_000;

    /// A deployment of `version` over `from` on `api`, started `ago_s` seconds before
    /// [`NOW_MS`], in `phase`, with `outcome`.
    pub fn deployment(
        id: u64,
        version: &str,
        from: Option<&str>,
        ago_s: u64,
        outcome: Option<Outcome>,
    ) -> Deployment {
        let spec =
            from_json(format!(r#"{{"upstream": "api", "version": "{version}"}}"#).as_bytes())
                .unwrap();
        let started_ms = NOW_MS - ago_s * 1000;
        Deployment {
            id,
            spec,
            phase: if outcome.is_some() {
                Phase::Ended
            } else {
                Phase::Stepping
            },
            from_version: from.map(str::to_owned),
            old_units: vec!["api@1.service".into(), "api@2.service".into()],
            new_units: vec!["api@3.service".into()],
            step: 0,
            weight_bp: 0,
            failures_in_a_row: 0,
            last_analysis: None,
            started_ms,
            updated_ms: started_ms + 90_000,
            keep_blue_until_ms: None,
            decisions: Vec::new(),
            outcome,
        }
    }

    /// History: 1 (v1 over the template's, promoted), 2 (v2, aborted by its analysis).
    /// Current: 3, v3 over v1, canary at step 2 of 4 (25%), one failed analysis in a row, the
    /// last one a pass after a failure on p99, with four decisions.
    pub fn board() -> DeployBoard {
        // Ended in this process (published): in the history and counted.
        let board = DeployBoard::default();
        for ended in [
            deployment(1, "v1", None, 7200, Some(Outcome::Promoted)),
            deployment(
                2,
                "v2",
                Some("v1"),
                3600,
                Some(Outcome::Aborted {
                    reason: "analysis failed twice: error_ratio 0.2000 > 0.0500".into(),
                }),
            ),
        ] {
            board.publish(&ended);
        }
        let mut d = deployment(3, "v3", Some("v1"), 60, None);
        let stable = SideFigures {
            requests: 900,
            server_errors: 1,
            p99_ms: Some(10.0),
            ..SideFigures::default()
        };
        let slow = SideFigures {
            requests: 100,
            p99_ms: Some(40.0),
            ..SideFigures::default()
        };
        let good = SideFigures {
            requests: 300,
            p99_ms: Some(12.0),
            ..SideFigures::default()
        };
        let failed = judge(&slow, &stable, &d.spec.analysis);
        let passed = judge(&good, &stable, &d.spec.analysis);
        let at = |s: u64| d.started_ms + s * 1000;
        let decisions = [
            (
                at(0),
                "started",
                0,
                "starting api@3.service on v3".to_owned(),
                None,
            ),
            (
                at(5),
                "step",
                500,
                "step 1 of 4: 5% of the clients".into(),
                None,
            ),
            (
                at(35),
                "analysis-failed",
                500,
                failed.summary.clone(),
                Some(failed),
            ),
            (
                at(55),
                "step",
                2500,
                "step 2 of 4: 25% of the clients".into(),
                Some(passed.clone()),
            ),
        ];
        d.decisions = decisions
            .into_iter()
            .map(|(at_ms, event, weight_bp, message, analysis)| Decision {
                at_ms,
                event: event.into(),
                message,
                weight_bp,
                analysis,
            })
            .collect();
        d.step = 1;
        d.weight_bp = 2500;
        d.failures_in_a_row = 1;
        d.last_analysis = Some(passed);
        d.updated_ms = at(55);
        board.publish(&d);
        board
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::metrics::family::Kind;

    fn config() -> Config {
        valid(
            "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
             address = \"127.0.0.1:{8000+N}\"\n[upstream.api.health]\npath = \"/health\"\n",
        )
    }

    fn body(response: &AdminResponse) -> serde_json::Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn the_overview_has_the_current_deployment_and_a_line_per_ended_one() {
        let v = serde_json::to_value(overview(&fixture::board())).unwrap();
        let current = &v["current"];
        assert_eq!(current["id"], 3);
        assert_eq!(current["phase"], "stepping");
        assert_eq!(current["weight_bp"], 2500);
        assert_eq!(current["spec"]["version"], "v3");
        assert_eq!(current["spec"]["strategy"], "canary");
        assert_eq!(current["spec"]["canary"]["interval"], 30.0);
        assert_eq!(current["last_analysis"]["verdict"], "pass");
        assert_eq!(current["decisions"].as_array().unwrap().len(), 4);
        assert!(current["outcome"].is_null());
        assert_eq!(
            v["history"][1],
            serde_json::json!({
                "id": 2,
                "upstream": "api",
                "version": "v2",
                "from_version": "v1",
                "strategy": "canary",
                "started_ms": fixture::NOW_MS - 3_600_000,
                "updated_ms": fixture::NOW_MS - 3_510_000,
                "outcome": {
                    "result": "aborted",
                    "reason": "analysis failed twice: error_ratio 0.2000 > 0.0500",
                },
            })
        );
        assert_eq!(
            v["history"][0]["outcome"],
            serde_json::json!({"result": "promoted"})
        );
        assert!(v["history"][0]["from_version"].is_null());
        let empty = serde_json::to_value(overview(&DeployBoard::default())).unwrap();
        assert_eq!(empty, serde_json::json!({"current": null, "history": []}));
    }

    #[test]
    fn a_valid_spec_is_queued_for_the_controller_with_the_next_id() {
        let board = DeployBoard::default();
        let response = start(
            &board,
            &config(),
            br#"{"upstream": "api", "version": "v2"}"#,
        );
        assert_eq!(response.status, 202);
        assert_eq!(
            body(&response),
            serde_json::json!({
                "accepted": true, "id": 1, "upstream": "api", "version": "v2",
                "strategy": "canary",
            })
        );
        let requests = board.take_requests();
        assert!(
            matches!(&requests[..], [Request::Start(spec)] if spec.version == "v2"),
            "{requests:?}"
        );
        let board = fixture::board();
        let response = start(
            &board,
            &config(),
            br#"{"upstream": "api", "version": "v4"}"#,
        );
        assert_eq!(response.status, 409, "deployment 3 is in progress");
        let error = body(&response)["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("deployment 3 of \"v3\", stepping"),
            "{error}"
        );
        assert!(board.take_requests().is_empty());
    }

    #[test]
    fn an_invalid_spec_is_refused_with_every_problem() {
        let board = DeployBoard::default();
        let response = start(
            &board,
            &config(),
            br#"{"upstream": "web", "version": "v 2", "canary": {"steps": [50]}}"#,
        );
        assert_eq!(response.status, 400);
        let v = body(&response);
        let errors: Vec<&str> = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("version = \"v 2\""));
        assert!(errors[1].contains("canary.steps = [50]"));
        assert!(errors[2].contains("no upstream group \"web\""));
        assert_eq!(v["error"], errors.join("\n\n"), "the client shows `error`");
        let unknown = start(
            &board,
            &config(),
            br#"{"upstream": "api", "verison": "v2"}"#,
        );
        assert_eq!(unknown.status, 400);
        assert!(board.take_requests().is_empty());
    }

    #[test]
    fn promote_abort_and_rollback_need_a_deployment_in_progress() {
        let idle = DeployBoard::default();
        for action in ["promote", "abort", "rollback"] {
            let response = command(&idle, action, b"");
            assert_eq!(response.status, 409, "{action}");
            let error = body(&response)["error"].as_str().unwrap().to_owned();
            assert!(error.contains("no deployment is in progress"), "{error}");
        }
        let board = fixture::board();
        let promote = command(&board, "promote", b"");
        assert_eq!(promote.status, 202);
        assert_eq!(
            body(&promote),
            serde_json::json!({"accepted": true, "action": "promote", "id": 3})
        );
        let abort = command(&board, "abort", b"p99 too high in eu-west\n");
        assert_eq!(body(&abort)["reason"], "p99 too high in eu-west");
        let rollback = command(&board, "rollback", br#"{"reason": "customer report"}"#);
        assert_eq!(body(&rollback)["reason"], "customer report");
        assert_eq!(
            board.take_requests(),
            [
                Request::Promote,
                Request::Abort {
                    reason: "p99 too high in eu-west".into()
                },
                Request::Rollback {
                    reason: "customer report".into()
                },
            ]
        );
        assert_eq!(command(&board, "pause", b"").status, 404);
    }

    #[test]
    fn reasons_are_one_short_line_with_a_default() {
        assert_eq!(reason(b"", "abort"), "aborted by the operator");
        assert_eq!(reason(b"{}", "rollback"), "rolled back by the operator");
        assert_eq!(reason(b"\"quoted\"", "abort"), "quoted");
        assert_eq!(reason(b"two\nlines", "abort"), "two lines");
        assert_eq!(reason(&[b'x'; 2000], "abort").len(), MAX_REASON);
    }

    #[test]
    fn the_rows_count_the_history_and_read_the_deployment_in_progress() {
        let m = metrics(&fixture::board());
        assert_eq!(
            m.groups,
            [DeployGroupRow {
                upstream: "api".into(),
                in_progress: true,
                step: Some(2),
                failures_in_a_row: Some(1),
                promoted: 1,
                aborted: 1,
                rolled_back: 0,
            }]
        );
        assert_eq!(
            m.weights,
            [DeployWeightRow {
                upstream: "api".into(),
                version: "v3".into(),
                weight_bp: 2500
            }]
        );
        let checks: Vec<&str> = m.checks.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(
            checks,
            ["error_ratio", "error_ratio_increase", "p99_ms", "p99_ratio"]
        );
        let sides: Vec<(&str, &str)> = m
            .values
            .iter()
            .map(|v| (v.check.as_str(), v.side))
            .collect();
        assert_eq!(
            sides,
            [
                ("error_ratio", "canary"),
                ("error_ratio", "stable"),
                ("error_ratio_increase", "canary"),
                ("p99_ms", "canary"),
                ("p99_ms", "stable"),
                ("p99_ratio", "canary"),
            ]
        );
        let idle = metrics(&DeployBoard::default());
        assert!(idle.groups.is_empty() && idle.weights.is_empty() && idle.values.is_empty());
    }

    #[test]
    fn an_ended_deployment_leaves_only_its_count() {
        let board = fixture::board();
        let mut d = board.current().unwrap();
        d.phase = Phase::Ended;
        d.outcome = Some(Outcome::RolledBack {
            reason: "customer report".into(),
        });
        board.publish(&d);
        let m = metrics(&board);
        assert_eq!(m.groups.len(), 1);
        let g = &m.groups[0];
        assert!(!g.in_progress);
        assert_eq!((g.step, g.failures_in_a_row), (None, None));
        assert_eq!((g.promoted, g.aborted, g.rolled_back), (1, 1, 1));
        assert!(m.weights.is_empty() && m.checks.is_empty() && m.values.is_empty());
    }

    #[test]
    fn the_deploy_families_are_named_as_prometheus_expects() {
        let mut names = std::collections::BTreeSet::new();
        let families: Vec<(&str, Kind, &str, Option<&str>)> = DEPLOY
            .families
            .iter()
            .map(|f| (f.name, f.kind, f.help(), f.json))
            .chain(
                DEPLOY_WEIGHT
                    .families
                    .iter()
                    .map(|f| (f.name, f.kind, f.help(), f.json)),
            )
            .chain(
                DEPLOY_CHECK
                    .families
                    .iter()
                    .map(|f| (f.name, f.kind, f.help(), f.json)),
            )
            .chain(
                DEPLOY_CHECK_VALUE
                    .families
                    .iter()
                    .map(|f| (f.name, f.kind, f.help(), f.json)),
            )
            .collect();
        for (name, kind, help, json) in families {
            assert!(name.starts_with("lbproxy_deploy"), "{name}");
            assert!(names.insert(name), "{name} twice");
            assert!(!help.is_empty() && !help.contains("  ") && !help.contains('\n'));
            assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
            assert!(json.is_none(), "the overview is the JSON: {name}");
        }
        assert_eq!(names.len(), 7);
    }

    #[test]
    fn the_families_read_the_rows() {
        let m = metrics(&fixture::board());
        let family = |name: &str| DEPLOY.families.iter().find(|f| f.name == name).unwrap();
        assert_eq!(
            (family("lbproxy_deploy_step").value)(&m.groups[0]),
            Value::Number(2)
        );
        assert_eq!(
            (family("lbproxy_deploys_total").value)(&m.groups[0]),
            Value::Labelled {
                label: "result",
                samples: vec![("promoted", 1), ("aborted", 1), ("rolled-back", 0)],
            }
        );
        assert_eq!(
            (DEPLOY_WEIGHT.families[0].value)(&m.weights[0]),
            Value::Real(0.25)
        );
        let idle = DeployGroupRow::default();
        assert_eq!(
            (family("lbproxy_deploy_failures_in_a_row").value)(&idle),
            Value::Unknown
        );
    }
}
