//! The new version's instances coming up (both strategies), then a canary's steps, each judged
//! on its window, and the promotion that restarts the stable instances on the new version.

use super::instances::unit_named;
use super::run::{pct, Restarting, Run, Stage, DRAIN_WITHIN, READY_WITHIN};
use super::window::Window;
use crate::config::TrafficSplit;
use crate::control::controller::{Action, View};
use crate::control::discovery::Routing;
use crate::deploy::analysis::{judge, Verdict};
use crate::deploy::record::{Outcome, Phase};
use crate::deploy::spec::Strategy;
use crate::deploy::version::{self};
use crate::runtime::command::BackendChange;
use crate::runtime::now_ms;
use std::time::Instant;

impl Run {
    pub(super) fn starting(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
        if let Some(why) = self.new_instance_failed(view) {
            return self.abort(now, view, actions, why);
        }
        let unready: Vec<String> = self
            .d
            .new_units
            .iter()
            .filter(|u| !self.ready(view, u))
            .cloned()
            .collect();
        if !unready.is_empty() {
            if now.saturating_duration_since(self.since) >= READY_WITHIN {
                let why = format!(
                    "{} not routed, up and healthy within {}s",
                    unready.join(", "),
                    READY_WITHIN.as_secs()
                );
                self.abort(now, view, actions, why);
            }
            return;
        }
        self.remember_invocations(view);
        let ready = format!("{} routed, up and healthy", self.d.new_units.join(", "));
        match self.d.spec.strategy {
            Strategy::Canary => {
                self.d.phase = Phase::Stepping;
                self.enter_step(0, now, view, actions, ready);
            }
            Strategy::BlueGreen => {
                self.set_weight(TrafficSplit::ALL_BP, actions, "switch to green");
                self.d.phase = Phase::Switched;
                self.since = now;
                let keep = self.d.spec.blue_green.keep_blue;
                self.d.keep_blue_until_ms = Some(now_ms() + keep.as_millis() as u64);
                let message = format!(
                    "{ready}: every client switched to {} in one generation; {} kept running \
                     for {}s (`lbproxy deploy rollback` switches back at once)",
                    self.d.new_units.join(", "),
                    self.d.old_units.join(", "),
                    keep.as_secs()
                );
                self.decide("switched", message, None);
            }
        }
    }

    pub(super) fn enter_step(
        &mut self,
        step: usize,
        now: Instant,
        view: &View,
        actions: &mut Vec<Action>,
        why: String,
    ) {
        self.d.step = step;
        let weight = self.d.spec.canary.step_bp(step);
        self.set_weight(weight, actions, &format!("canary step {}", step + 1));
        self.window = Some(Window::open(&self.d.spec.upstream, view, now));
        let message = format!(
            "{why}: step {}/{}, {} % of the clients on the canary for {}s",
            step + 1,
            self.d.spec.canary.steps.len(),
            pct(weight),
            self.d.spec.canary.interval.as_secs_f64()
        );
        self.decide("step", message, None);
    }

    pub(super) fn stepping(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
        if let Some(why) = self.new_instance_failed(view) {
            return self.abort(now, view, actions, why);
        }
        let canary = self.new_addresses(view);
        let Some(window) = &mut self.window else {
            self.window = Some(Window::open(&self.d.spec.upstream, view, now));
            return;
        };
        window.take(view, &canary);
        if now.saturating_duration_since(window.opened) < self.d.spec.canary.interval {
            return;
        }
        let (canary_figures, stable_figures) = window.figures(view, &canary);
        let all_on_canary = self.d.weight_bp == TrafficSplit::ALL_BP;
        // At 100 % stable takes no client: the canary is held to stable's last good window.
        let reference = match (all_on_canary, self.last_stable) {
            (true, Some(last)) => last,
            _ => stable_figures,
        };
        let analysis = judge(&canary_figures, &reference, &self.d.spec.analysis);
        if !all_on_canary && stable_figures.requests >= self.d.spec.analysis.min_requests {
            self.last_stable = Some(stable_figures);
        }
        self.d.last_analysis = Some(analysis.clone());
        let step = self.d.step;
        let steps = self.d.spec.canary.steps.len();
        match analysis.verdict {
            Verdict::Pass => {
                self.d.failures_in_a_row = 0;
                self.decide(
                    "analysis-passed",
                    format!("step {}/{steps}: {}", step + 1, analysis.summary),
                    Some(analysis),
                );
                if step + 1 < steps {
                    self.enter_step(step + 1, now, view, actions, "analysis passed".into());
                } else {
                    self.begin_promotion(now, "every step passed its analysis".into());
                }
            }
            Verdict::Hold => {
                let message = format!("step {}/{steps}: {}", step + 1, analysis.summary);
                self.decide("hold", message, Some(analysis));
                self.window = Some(Window::open(&self.d.spec.upstream, view, now));
            }
            Verdict::Fail => {
                self.d.failures_in_a_row += 1;
                let limit = self.d.spec.analysis.failure_limit;
                let message = format!(
                    "step {}/{steps}: analysis failed ({} of {limit} in a row): {}",
                    step + 1,
                    self.d.failures_in_a_row,
                    analysis.summary
                );
                if self.d.failures_in_a_row >= limit {
                    self.decide("analysis-failed", message.clone(), Some(analysis));
                    return self.abort(now, view, actions, message);
                }
                self.decide("analysis-failed", message, Some(analysis));
                self.window = Some(Window::open(&self.d.spec.upstream, view, now));
            }
        }
    }

    pub(super) fn begin_promotion(&mut self, now: Instant, why: String) {
        self.d.phase = Phase::Promoting;
        self.since = now;
        self.window = None;
        let message = format!(
            "{why}: promoting — {} restart one at a time on {}, then {} stop",
            self.d.old_units.join(", "),
            self.d.spec.version,
            self.d.new_units.join(", ")
        );
        self.decide("promote", message, None);
    }

    /// `deploy promote`: skip the remaining steps (canary, once stepping).
    pub fn promote_now(&mut self, now: Instant, _view: &View, actions: &mut Vec<Action>) {
        if self.d.phase != Phase::Stepping {
            let message = format!(
                "promote asked while {}: only a canary that is stepping can be promoted",
                self.d.phase.as_str()
            );
            return self.decide("refused", message, None);
        }
        self.set_weight(TrafficSplit::ALL_BP, actions, "promoted by the operator");
        self.begin_promotion(now, "promoted by the operator".into());
    }

    pub(super) fn promoting(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
        let group = self.d.spec.upstream.clone();
        if let Some(restarting) = &mut self.restarting {
            let waited = now.saturating_duration_since(restarting.since);
            let (unit, address) = (restarting.unit.clone(), restarting.address);
            match restarting.stage {
                Stage::Draining => {
                    let in_flight = view.backend(&group, address).map_or(0, |b| b.in_flight);
                    if in_flight > 0 && waited < DRAIN_WITHIN {
                        return;
                    }
                    restarting.stage = Stage::Restarting;
                    restarting.since = now;
                    actions.push(Action::RestartUnit {
                        group: group.clone(),
                        unit: unit.clone(),
                        version: self.version_write(&unit),
                    });
                    let message = format!(
                        "{unit} ({address}) drained ({in_flight} in flight): restarting on {}",
                        self.d.spec.version
                    );
                    return self.decide("restart", message, None);
                }
                Stage::Restarting => {
                    let invocation = restarting.invocation.clone();
                    let fresh = unit_named(view, &group, &unit).is_some_and(|u| {
                        u.unit.invocation_id != invocation && u.routing() == Routing::Routed
                    });
                    if fresh && view.backend(&group, address).is_some() {
                        actions.push(Action::Backend {
                            group: group.clone(),
                            address,
                            change: BackendChange::Enable,
                        });
                        restarting.stage = Stage::Enabling;
                        return;
                    }
                    if waited >= READY_WITHIN {
                        let why = self.promotion_stalled(&unit);
                        self.restarting = None;
                        return self.abort(now, view, actions, why);
                    }
                    return;
                }
                Stage::Enabling => {
                    if self.ready(view, &unit) {
                        self.restarting = None;
                        let message = format!(
                            "{unit} ({address}) runs {}: routed, up and healthy",
                            self.d.spec.version
                        );
                        return self.decide("restarted", message, None);
                    }
                    if waited >= READY_WITHIN {
                        let why = self.promotion_stalled(&unit);
                        self.restarting = None;
                        return self.abort(now, view, actions, why);
                    }
                    return;
                }
            }
        }
        // The next stable instance still on the old version.
        let next = self.d.old_units.iter().find_map(|unit| {
            let u = unit_named(view, &group, unit)?;
            let address = u.address?;
            let done = self
                .state_dir
                .as_deref()
                .and_then(|dir| version::running(dir, unit))
                == Some(self.d.spec.version.clone());
            (!done && u.routing() == Routing::Routed)
                .then(|| (unit.clone(), address, u.unit.invocation_id.clone()))
        });
        match next {
            Some((unit, address, invocation)) => {
                actions.push(Action::Backend {
                    group: group.clone(),
                    address,
                    change: BackendChange::Drain,
                });
                self.restarting = Some(Restarting {
                    unit: unit.clone(),
                    address,
                    invocation,
                    stage: Stage::Draining,
                    since: now,
                });
                let message = format!("{unit} ({address}) drained before its restart");
                self.decide("drain", message, None);
            }
            None => {
                self.set_weight(0, actions, "every instance runs the new version");
                self.finish(
                    now,
                    Phase::Finishing,
                    Outcome::Promoted,
                    self.d.new_units.clone(),
                    format!(
                        "{} run {}: every client back on them, {} drain and stop",
                        self.d.old_units.join(", "),
                        self.d.spec.version,
                        self.d.new_units.join(", ")
                    ),
                );
            }
        }
    }

    /// Why a promotion stops at `unit`.
    fn promotion_stalled(&self, unit: &str) -> String {
        format!(
            "the promotion stopped: {unit} was not routed, up and healthy on {} within {}s of \
             its restart; instances already restarted run {}, the others their old version",
            self.d.spec.version,
            READY_WITHIN.as_secs(),
            self.d.spec.version
        )
    }
}
