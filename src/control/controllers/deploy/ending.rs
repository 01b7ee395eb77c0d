//! How a deployment ends: blue-green's wait with blue kept warm, an abort, a rollback, and the
//! leaving instances drained, stopped and gone.

use super::instances::unit_named;
use super::run::{Leaving, Run, DRAIN_WITHIN, LEAVE_WITHIN};
use crate::control::controller::{Action, View};
use crate::control::discovery::Routing;
use crate::deploy::record::{Outcome, Phase};
use crate::runtime::command::BackendChange;
use crate::runtime::now_ms;
use std::time::Instant;

impl Run {
    pub(super) fn switched(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
        if let Some(why) = self.new_instance_failed(view) {
            return self.rollback(now, view, actions, why);
        }
        let until = self.d.keep_blue_until_ms.unwrap_or(0);
        if now_ms() < until {
            return;
        }
        let blue = self.d.old_units.clone();
        self.finish(
            now,
            Phase::Finishing,
            Outcome::Promoted,
            blue.clone(),
            format!(
                "keep_blue passed: {} drain and stop; {} serve",
                blue.join(", "),
                self.d.new_units.join(", ")
            ),
        );
    }

    /// Abort (before promotion): every client back on stable at once, the new instances drain
    /// and stop. Once finishing or aborting, nothing more happens.
    pub fn abort(&mut self, now: Instant, _view: &View, actions: &mut Vec<Action>, why: String) {
        if matches!(
            self.d.phase,
            Phase::Finishing | Phase::Aborting | Phase::Ended
        ) {
            return;
        }
        if self.d.phase == Phase::Promoting && self.restarting.is_none() {
            // Stable instances may already run the new version: say which, and stop there.
            tracing::warn!(
                target: "lbproxy::deploy",
                deployment = self.d.id,
                "aborting during the promotion: instances already restarted keep {}",
                self.d.spec.version
            );
        }
        self.set_weight(0, actions, "abort");
        self.finish(
            now,
            Phase::Aborting,
            Outcome::Aborted {
                reason: why.clone(),
            },
            self.d.new_units.clone(),
            format!(
                "aborted: {why}; every client back on {}, {} drain and stop",
                self.d.old_units.join(", "),
                self.d.new_units.join(", ")
            ),
        );
    }

    /// `deploy rollback`: blue-green after the switch → back to blue at once; before the
    /// switch or during a canary → abort; during the promotion or after → refused (say what).
    pub fn rollback(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>, why: String) {
        match self.d.phase {
            Phase::Switched => {
                self.set_weight(0, actions, "switch back to blue");
                self.finish(
                    now,
                    Phase::Aborting,
                    Outcome::RolledBack {
                        reason: why.clone(),
                    },
                    self.d.new_units.clone(),
                    format!(
                        "rolled back: {why}; every client switched back to {} in one \
                         generation, {} drain and stop",
                        self.d.old_units.join(", "),
                        self.d.new_units.join(", ")
                    ),
                );
            }
            Phase::Starting | Phase::Stepping => self.abort(now, view, actions, why),
            phase => {
                let message = format!(
                    "rollback asked while {}: too late to switch back; once it ends, deploy \
                     the previous version again",
                    phase.as_str()
                );
                self.decide("refused", message, None);
            }
        }
    }

    pub(super) fn finish(
        &mut self,
        now: Instant,
        phase: Phase,
        outcome: Outcome,
        leaving: Vec<String>,
        message: String,
    ) {
        self.d.phase = phase;
        self.d.outcome = Some(outcome);
        self.since = now;
        self.window = None;
        self.leaving = leaving
            .into_iter()
            .map(|u| (u, Leaving::default()))
            .collect();
        let event = match phase {
            Phase::Aborting => "abort",
            _ => "finish",
        };
        self.decide(event, message, None);
    }

    /// Finishing or aborting: drain the leaving instances, stop each once idle, end once they
    /// are gone from the group.
    pub(super) fn leaving(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
        let group = self.d.spec.upstream.clone();
        let mut gone = 0;
        let units: Vec<String> = self.leaving.keys().cloned().collect();
        for unit in &units {
            let discovered = unit_named(view, &group, unit);
            let address = discovered.and_then(|u| u.address);
            let backend = address.and_then(|a| view.backend(&group, a));
            let version = self.version_remove(unit);
            let state = self.leaving.get_mut(unit).expect("listed above");
            if state.stopped.is_some() {
                let out =
                    backend.is_none() || discovered.is_none_or(|u| u.routing() == Routing::Out);
                if out {
                    gone += 1;
                }
                continue;
            }
            match (state.drained, address) {
                (None, Some(address)) if backend.is_some() => {
                    actions.push(Action::Backend {
                        group: group.clone(),
                        address,
                        change: BackendChange::Drain,
                    });
                    state.drained = Some(now);
                }
                _ => {
                    let in_flight = backend.map_or(0, |b| b.in_flight);
                    let waited = state
                        .drained
                        .map_or(DRAIN_WITHIN, |t| now.saturating_duration_since(t));
                    if in_flight == 0 || waited >= DRAIN_WITHIN {
                        actions.push(Action::StopUnit {
                            group: group.clone(),
                            unit: unit.clone(),
                            version,
                        });
                        state.stopped = Some(now);
                    }
                }
            }
        }
        let all_gone = gone == self.leaving.len();
        if all_gone || now.saturating_duration_since(self.since) >= LEAVE_WITHIN {
            self.d.phase = Phase::Ended;
            let message = match &self.d.outcome {
                Some(Outcome::Promoted) => format!(
                    "promoted: {} runs on every instance of \"{group}\"",
                    self.d.spec.version
                ),
                Some(Outcome::Aborted { reason }) => format!("aborted: {reason}"),
                Some(Outcome::RolledBack { reason }) => format!("rolled back: {reason}"),
                None => "ended".to_owned(),
            };
            let message = match all_gone {
                true => message,
                false => format!(
                    "{message} ({} still a backend {}s after its stop)",
                    units.join(", "),
                    LEAVE_WITHIN.as_secs()
                ),
            };
            self.decide("ended", message, None);
        }
    }
}
