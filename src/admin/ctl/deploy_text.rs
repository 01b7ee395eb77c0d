//! `lbproxy deploy`'s text: the deployment in a block (`status`), the ended ones in a table
//! (`history`), and a decision in a line (`start --wait` prints each as it comes), from the
//! admin API's typed answer ([`DeployOverview`]).

use super::tables::{clock, figure, Table};
use crate::admin::deploy::{DeployOverview, DeploySummary};
use crate::config::format_duration;
use crate::deploy::analysis::Analysis;
use crate::deploy::record::{Decision, Outcome, Phase};
use crate::deploy::spec::Strategy;

/// Decisions `status` shows (the API has up to 200).
const DECISIONS_SHOWN: usize = 5;
/// The weight bar's width in characters.
const BAR: usize = 20;

/// What a group the proxy can deploy is configured with.
pub(super) const HOW_TO_DEPLOY: &str = "a group that follows a template's systemd units \
     (`[upstream.NAME.discover]` with `systemd = \"api@*.service\"`) and has health checks \
     (`[upstream.NAME.health]`) can be deployed: `lbproxy deploy start SPEC.toml` (docs/config.md)";

/// `deploy status`: the current deployment in a block, or why there is none.
pub(super) fn status_text(overview: &DeployOverview) -> String {
    let Some(d) = &overview.current else {
        let mut text = format!("no deployment yet; {HOW_TO_DEPLOY}\n");
        if let Some(last) = overview.history.last() {
            text = format!(
                "no deployment in progress; the last: {}\n",
                summary_line(last)
            );
        }
        return text;
    };
    let spec = &d.spec;
    let mut out = format!(
        "deployment {} of {}: {} -> {} ({}), {}\n",
        d.id,
        spec.upstream,
        from(d.from_version.as_deref()),
        spec.version,
        spec.strategy.as_str(),
        d.phase.as_str()
    );
    let mut field = |name: &str, value: String| out.push_str(&format!("{name:<11}{value}\n"));
    if let Some(outcome) = &d.outcome {
        field("outcome:", outcome_text(outcome));
    }
    let weight = format!("weight {} {}", percent(d.weight_bp), bar(d.weight_bp));
    match spec.strategy {
        Strategy::Canary => {
            let steps: Vec<String> = spec.canary.steps.iter().map(|s| figure(*s)).collect();
            let step = if d.phase == Phase::Starting {
                "0 (the canary instances start)".to_owned()
            } else {
                (d.step + 1).to_string()
            };
            field(
                "step:",
                format!(
                    "{step} of {} ({}% every {}), {weight}",
                    steps.len(),
                    steps.join(", "),
                    format_duration(spec.canary.interval)
                ),
            );
        }
        Strategy::BlueGreen => {
            let kept = d
                .keep_blue_until_ms
                .map(|ms| format!(", blue kept until {}", clock(&ms.into())))
                .unwrap_or_default();
            field("switch:", format!("{weight}{kept}"));
        }
    }
    field(
        "instances:",
        format!("old {}; new {}", units(&d.old_units), units(&d.new_units)),
    );
    field(
        "started:",
        format!(
            "{}, last change {}",
            datetime(d.started_ms),
            clock(&d.updated_ms.into())
        ),
    );
    match &d.last_analysis {
        Some(a) => {
            field(
                "analysis:",
                format!(
                    "{} (canary {} requests, stable {}); {} failed in a row, {} abort",
                    verdict(a),
                    a.canary.requests,
                    a.stable.requests,
                    d.failures_in_a_row,
                    spec.analysis.failure_limit
                ),
            );
            out.push_str(&checks_table(a));
            out.push_str(&format!("{}\n", a.summary));
        }
        None if spec.strategy == Strategy::Canary => field("analysis:", "none yet".into()),
        None => {}
    }
    let shown = d.decisions.len().min(DECISIONS_SHOWN);
    if shown > 0 {
        out.push_str(&format!(
            "last decisions ({shown} of {}):\n",
            d.decisions.len()
        ));
        for decision in &d.decisions[d.decisions.len() - shown..] {
            out.push_str(&format!("{}\n", decision_line(decision)));
        }
    }
    out
}

/// The last analysis's checks: each value against its limit.
fn checks_table(a: &Analysis) -> String {
    let mut table = Table::new(&["CHECK", ">CANARY", ">STABLE", ">LIMIT", "OK"]);
    for c in &a.checks {
        table.row(vec![
            c.name.clone(),
            value(c.canary),
            c.stable.map_or("-".into(), value),
            value(c.limit),
            if c.passed { "yes" } else { "NO" }.into(),
        ]);
    }
    table.render()
}

/// `deploy history`: one line per ended deployment, oldest first.
pub(super) fn history_table(history: &[DeploySummary]) -> String {
    if history.is_empty() {
        return format!("no deployment has ended yet; {HOW_TO_DEPLOY}\n");
    }
    let mut table = Table::new(&[
        ">ID", "UPSTREAM", "VERSION", "STRATEGY", "STARTED", ">TOOK", "RESULT",
    ]);
    for h in history {
        table.row(vec![
            h.id.to_string(),
            h.upstream.clone(),
            format!("{} -> {}", from(h.from_version.as_deref()), h.version),
            h.strategy.as_str().to_owned(),
            datetime(h.started_ms),
            took(h.updated_ms.saturating_sub(h.started_ms)),
            h.outcome.as_ref().map_or("-".into(), outcome_text),
        ]);
    }
    table.render()
}

/// One decision: time, event, the weight then, what was decided.
pub(super) fn decision_line(d: &Decision) -> String {
    format!(
        "{}  {:<16} {:>6}  {}",
        clock(&d.at_ms.into()),
        d.event,
        percent(d.weight_bp),
        d.message
    )
}

/// The decisions after `last` (all of them without one): those `--wait` has not printed.
pub(super) fn new_decisions<'a>(
    decisions: &'a [Decision],
    last: Option<&Decision>,
) -> &'a [Decision] {
    let Some(last) = last else {
        return decisions;
    };
    if let Some(i) = decisions.iter().rposition(|d| d == last) {
        return &decisions[i + 1..];
    }
    // The last one printed was dropped (more than 200 since): those after its time.
    let first_newer = decisions
        .iter()
        .position(|d| d.at_ms > last.at_ms)
        .unwrap_or(decisions.len());
    &decisions[first_newer..]
}

/// How a deployment ended, in words.
pub(super) fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Promoted => "promoted".into(),
        Outcome::Aborted { reason } => format!("aborted: {reason}"),
        Outcome::RolledBack { reason } => format!("rolled back: {reason}"),
    }
}

/// A summary in one line, for `status` when nothing is in progress.
fn summary_line(h: &DeploySummary) -> String {
    format!(
        "deployment {} of {}, {} -> {} ({}), {}, {}",
        h.id,
        h.upstream,
        from(h.from_version.as_deref()),
        h.version,
        h.strategy.as_str(),
        datetime(h.started_ms),
        h.outcome.as_ref().map_or("-".into(), outcome_text)
    )
}

/// The version a deployment replaced: `template` for the template's own.
pub(super) fn from(version: Option<&str>) -> &str {
    version.unwrap_or("template")
}

fn verdict(a: &Analysis) -> &'static str {
    match a.verdict {
        crate::deploy::analysis::Verdict::Pass => "pass",
        crate::deploy::analysis::Verdict::Hold => "hold",
        crate::deploy::analysis::Verdict::Fail => "FAIL",
    }
}

fn units(units: &[String]) -> String {
    if units.is_empty() {
        "none".into()
    } else {
        units.join(", ")
    }
}

/// A weight in basis points as a percentage: `25%`, `0.5%`.
pub(super) fn percent(bp: u16) -> String {
    format!("{}%", figure(f64::from(bp) / 100.0))
}

/// A weight as a bar of [`BAR`] characters.
fn bar(bp: u16) -> String {
    let filled = (usize::from(bp) * BAR + 5_000) / 10_000;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR - filled))
}

/// A check's value or limit: up to four decimals, no trailing zeros.
fn value(x: f64) -> String {
    let text = format!("{x:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// A duration in ms, e.g. `45s`, `1m 30s`, `2h 5m`.
fn took(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// Milliseconds since the Unix epoch as a UTC date and time, `2026-12-07 12:00:05 UTC`.
pub(super) fn datetime(ms: u64) -> String {
    let s = ms / 1000;
    let (year, month, day) = crate::history::time::civil_from_days(s / 86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::deploy::{fixture, overview};

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn status_shows_the_step_the_instances_and_the_checks_against_their_limits() {
        let text = status_text(&overview(&fixture::board()));
        let lines = lines(&text);
        assert_eq!(lines[0], "deployment 3 of api: v1 -> v3 (canary), stepping");
        assert_eq!(
            lines[1],
            "step:      2 of 4 (5, 25, 50, 100% every 30s), weight 25% [#####...............]"
        );
        assert_eq!(
            lines[2],
            "instances: old api@1.service, api@2.service; new api@3.service"
        );
        assert_eq!(
            lines[3],
            "started:   2026-12-07 11:59:00 UTC, last change 11:59:55 UTC"
        );
        assert_eq!(
            lines[4],
            "analysis:  pass (canary 300 requests, stable 900); 1 failed in a row, 2 abort"
        );
        assert_eq!(
            &lines[5..10],
            [
                "CHECK                  CANARY  STABLE  LIMIT  OK",
                "error_ratio                 0  0.0011   0.05  yes",
                "error_ratio_increase  -0.0011       -   0.02  yes",
                "p99_ms                     12      10   1000  yes",
                "p99_ratio                 1.2       -    1.5  yes",
            ],
            "{text}"
        );
        assert!(lines[10].starts_with("canary 300 requests"), "{text}");
        assert_eq!(lines[11], "last decisions (4 of 4):");
        assert_eq!(
            lines[12],
            "11:59:00 UTC  started              0%  starting api@3.service on v3"
        );
        assert!(
            lines[14]
                .starts_with("11:59:35 UTC  analysis-failed      5%  p99_ratio 4.0000 > 1.5000"),
            "{text}"
        );
        assert_eq!(lines.len(), 16, "{text}");
    }

    #[test]
    fn an_ended_deployment_says_how_and_a_blue_green_one_shows_its_switch() {
        let board = fixture::board();
        let mut d = board.current().unwrap();
        d.spec.strategy = Strategy::BlueGreen;
        d.phase = Phase::Ended;
        d.weight_bp = 0;
        d.last_analysis = None;
        d.keep_blue_until_ms = Some(fixture::NOW_MS + 300_000);
        d.outcome = Some(Outcome::RolledBack {
            reason: "customer report".into(),
        });
        let text = status_text(&DeployOverview {
            current: Some(d),
            history: Vec::new(),
        });
        let lines = lines(&text);
        assert_eq!(
            lines[0],
            "deployment 3 of api: v1 -> v3 (blue-green), ended"
        );
        assert_eq!(lines[1], "outcome:   rolled back: customer report");
        assert_eq!(
            lines[2],
            "switch:    weight 0% [....................], blue kept until 12:05:00 UTC"
        );
        assert!(!text.contains("analysis:"), "{text}");
    }

    #[test]
    fn without_a_deployment_status_says_how_to_start_one_or_shows_the_last() {
        let none = status_text(&DeployOverview {
            current: None,
            history: Vec::new(),
        });
        assert!(
            none.starts_with("no deployment yet; a group that follows"),
            "{none}"
        );
        assert!(none.contains("`lbproxy deploy start SPEC.toml`"), "{none}");
        let history = overview(&fixture::board()).history;
        let last = status_text(&DeployOverview {
            current: None,
            history,
        });
        assert_eq!(
            last,
            "no deployment in progress; the last: deployment 2 of api, v1 -> v2 (canary), \
             2026-12-07 11:00:00 UTC, aborted: analysis failed twice: error_ratio 0.2000 > \
             0.0500\n"
        );
    }

    #[test]
    fn history_is_a_table_oldest_first() {
        let text = history_table(&overview(&fixture::board()).history);
        assert_eq!(
            lines(&text),
            [
                "ID  UPSTREAM  VERSION         STRATEGY  STARTED                    TOOK  RESULT",
                " 1  api       template -> v1  canary    2026-12-07 10:00:00 UTC  1m 30s  promoted",
                " 2  api       v1 -> v2        canary    2026-12-07 11:00:00 UTC  1m 30s  aborted: analysis failed twice: error_ratio 0.2000 > 0.0500",
            ]
        );
        assert!(history_table(&[]).starts_with("no deployment has ended yet"));
    }

    #[test]
    fn wait_prints_each_decision_once() {
        let d = fixture::board().current().unwrap();
        let all = &d.decisions;
        assert_eq!(new_decisions(all, None).len(), 4);
        assert_eq!(new_decisions(all, Some(&all[1])), &all[2..]);
        assert!(new_decisions(all, Some(&all[3])).is_empty());
        let mut dropped = all[0].clone();
        dropped.message = "rotated out".into();
        assert_eq!(
            new_decisions(all, Some(&dropped)),
            &all[1..],
            "newer by time"
        );
        assert_eq!(
            decision_line(&all[3]),
            "11:59:55 UTC  step                25%  step 2 of 4: 25% of the clients"
        );
    }

    #[test]
    fn figures_read_plainly() {
        assert_eq!(percent(2500), "25%");
        assert_eq!(percent(50), "0.5%");
        assert_eq!(percent(10_000), "100%");
        assert_eq!(bar(0), format!("[{}]", ".".repeat(20)));
        assert_eq!(bar(10_000), format!("[{}]", "#".repeat(20)));
        assert_eq!(value(-0.00001), "0");
        assert_eq!(took(45_000), "45s");
        assert_eq!(took(7_500_000), "2h 5m");
        assert_eq!(datetime(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(datetime(fixture::NOW_MS + 5_000), "2026-12-07 12:00:05 UTC");
    }
}
