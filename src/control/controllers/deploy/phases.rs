//! One deployment as the controller drives it, phase by phase (see [`Phase`]):
//!
//! - **starting**: the new version's instances were asked to start with their version file,
//!   the split set to 0 % first (so no client reaches them before it is meant to); once every
//!   one is routed, up and healthy → canary: step 0; blue-green: every client at once.
//!   A new instance that fails, or none ready within [`READY_WITHIN`] → abort.
//! - **stepping** (canary): each step sets the weight and opens a window; at the end of the
//!   interval the window is judged: pass → next step (after the last: promote); hold → the same
//!   step again with a fresh window (never promoted on silence); fail → again, until
//!   `failure_limit` failures in a row abort. A canary unit that fails, stops or restarts
//!   aborts at once, whatever the window says.
//! - **promoting** (canary): every client is on the canary; the stable instances restart one at
//!   a time on the new version (drain → nothing in flight → restart with the version file →
//!   routed, up, healthy → enable), then → finishing.
//! - **switched** (blue-green): every client on green; blue runs until `keep_blue` has passed
//!   (a rollback switches back at once); a green instance that fails switches back.
//! - **finishing / aborting**: the weight goes where it must (promoted canary: 0 %, the stable
//!   side now runs the new version; abort or rollback: 0 %; blue-green: stays 100 %), the
//!   leaving instances (canaries, green, or blue) drain, stop once nothing is in flight (at most
//!   [`DRAIN_WITHIN`]) with their version file removed, and the deployment ends once they are
//!   no longer backends.

use super::window::Window;
use crate::config::TrafficSplit;
use crate::control::controller::{Action, View};
use crate::control::discovery::{DiscoveredUnit, Routing};
use crate::deploy::analysis::{judge, Analysis, SideFigures, Verdict};
use crate::deploy::record::{Deployment, Outcome, Phase};
use crate::deploy::spec::{DeploySpec, Strategy};
use crate::deploy::version::{self, VersionChange};
use crate::metrics::aggregate::BackendRow;
use crate::runtime::command::BackendChange;
use crate::runtime::now_ms;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the new version's instances (or one restarted in a promotion) have to become
/// routed, up and healthy.
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long a leaving instance may take to finish its requests before it is stopped anyway.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(30);
/// How long stopped instances may take to leave the group before the deployment ends anyway.
pub const LEAVE_WITHIN: Duration = Duration::from_secs(60);

/// A deployment in progress and what the controller remembers about it between ticks.
#[derive(Debug)]
pub struct Run {
    pub d: Deployment,
    state_dir: Option<PathBuf>,
    /// When the current phase (or promotion stage) began.
    since: Instant,
    window: Option<Window>,
    /// Stable's figures of the last window that had enough of them: the reference at 100 %.
    last_stable: Option<SideFigures>,
    /// Each new instance's invocation and restart count once it was first routed.
    seen: BTreeMap<String, (String, u32)>,
    /// Promotion: the stable instance being restarted, and how far.
    restarting: Option<Restarting>,
    /// Finishing or aborting: the leaving instances, when each was drained and stopped.
    leaving: BTreeMap<String, Leaving>,
}

#[derive(Debug)]
struct Restarting {
    unit: String,
    address: SocketAddr,
    invocation: String,
    stage: Stage,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Draining,
    Restarting,
}

#[derive(Debug, Default)]
struct Leaving {
    drained: Option<Instant>,
    stopped: Option<Instant>,
}

impl Run {
    /// Starts deployment `id` of `spec`: the split at 0 %, then the new instances. `Err`: it
    /// could not begin (the ended deployment says why).
    pub fn start(
        id: u64,
        spec: DeploySpec,
        state_dir: Option<PathBuf>,
        now: Instant,
        view: &View,
        actions: &mut Vec<Action>,
    ) -> Result<Run, Box<Deployment>> {
        let at = now_ms();
        let group = spec.upstream.clone();
        let units = units_of(view, &group);
        let old_units: Vec<String> = units
            .iter()
            .filter(|u| u.routing() == Routing::Routed)
            .map(|u| u.unit.name.clone())
            .collect();
        let count = match spec.strategy {
            Strategy::Canary => spec.canary.instances.max(1) as usize,
            Strategy::BlueGreen => old_units.len().max(1),
        };
        let new_units = next_units(view, &group, units, count);
        let from_version = state_dir
            .as_deref()
            .zip(old_units.first())
            .and_then(|(dir, unit)| version::running(dir, unit));
        let mut d = Deployment {
            id,
            spec,
            phase: Phase::Starting,
            from_version,
            old_units,
            new_units,
            step: 0,
            weight_bp: 0,
            failures_in_a_row: 0,
            last_analysis: None,
            started_ms: at,
            updated_ms: at,
            keep_blue_until_ms: None,
            decisions: Vec::new(),
            outcome: None,
        };
        let mut run = Run {
            d: d.clone(),
            state_dir,
            since: now,
            window: None,
            last_stable: None,
            seen: BTreeMap::new(),
            restarting: None,
            leaving: BTreeMap::new(),
        };
        let refusal = if run.d.old_units.is_empty() {
            Some(format!(
                "upstream \"{group}\" has no routed instance to deploy beside"
            ))
        } else if run.d.new_units.is_empty() {
            Some(format!(
                "upstream \"{group}\"'s units are not a template PREFIX@N.service"
            ))
        } else if run.state_dir.is_none() {
            Some("no state directory for the version files (see `lbproxy deploy` docs)".into())
        } else {
            None
        };
        if let Some(why) = refusal {
            d.phase = Phase::Ended;
            d.outcome = Some(Outcome::Aborted {
                reason: why.clone(),
            });
            d.decide(at, "refused", why, None);
            return Err(Box::new(d));
        }
        run.set_weight(0, actions, "0 % before the new instances start");
        for unit in run.d.new_units.clone() {
            actions.push(Action::StartUnit {
                group: group.clone(),
                unit: unit.clone(),
                version: run.version_write(&unit),
            });
        }
        let message = format!(
            "{} of \"{}\" to upstream \"{group}\" (from {}): starting {} beside {}",
            run.d.spec.strategy.as_str(),
            run.d.spec.version,
            run.d
                .from_version
                .as_deref()
                .unwrap_or("the template's version"),
            run.d.new_units.join(", "),
            run.d.old_units.join(", ")
        );
        run.decide("started", message, None);
        Ok(run)
    }

    /// Takes up `d`, found in the state directory at start.
    pub fn resume(
        d: Deployment,
        state_dir: Option<PathBuf>,
        now: Instant,
        view: &View,
        actions: &mut Vec<Action>,
    ) -> Run {
        let mut run = Run {
            d,
            state_dir,
            since: now,
            window: None,
            last_stable: None,
            seen: BTreeMap::new(),
            restarting: None,
            leaving: BTreeMap::new(),
        };
        let weight = run.d.weight_bp;
        run.set_weight(weight, actions, "as it was before the restart");
        if run.d.phase == Phase::Starting {
            for unit in run.d.new_units.clone() {
                actions.push(Action::StartUnit {
                    group: run.d.spec.upstream.clone(),
                    unit: unit.clone(),
                    version: run.version_write(&unit),
                });
            }
        }
        if run.d.phase == Phase::Stepping {
            run.window = Some(Window::open(&run.d.spec.upstream, view, now));
        }
        let message = format!(
            "resumed after a restart of the proxy: {}, {} % on the new version",
            run.d.phase.as_str(),
            pct(weight)
        );
        run.decide("resumed", message, None);
        run
    }

    /// One tick's worth of progress.
    pub fn advance(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
        if !view
            .config
            .upstreams
            .iter()
            .any(|g| g.name == self.d.spec.upstream)
        {
            self.d.phase = Phase::Ended;
            let reason = format!(
                "upstream \"{}\" is no longer configured",
                self.d.spec.upstream
            );
            self.d.outcome = Some(Outcome::Aborted {
                reason: reason.clone(),
            });
            self.decide("aborted", reason, None);
            return;
        }
        match self.d.phase {
            Phase::Starting => self.starting(now, view, actions),
            Phase::Stepping => self.stepping(now, view, actions),
            Phase::Promoting => self.promoting(now, view, actions),
            Phase::Switched => self.switched(now, view, actions),
            Phase::Finishing | Phase::Aborting => self.leaving(now, view, actions),
            Phase::Ended => {}
        }
    }

    fn starting(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
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

    fn enter_step(
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

    fn stepping(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
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

    fn begin_promotion(&mut self, now: Instant, why: String) {
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

    fn promoting(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
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
                    let fresh = unit_named(view, &group, &unit)
                        .is_some_and(|u| u.unit.invocation_id != invocation);
                    if fresh && self.ready(view, &unit) {
                        actions.push(Action::Backend {
                            group: group.clone(),
                            address,
                            change: BackendChange::Enable,
                        });
                        self.restarting = None;
                        let message = format!(
                            "{unit} ({address}) runs {}: routed, up and healthy",
                            self.d.spec.version
                        );
                        return self.decide("restarted", message, None);
                    }
                    if waited >= READY_WITHIN {
                        let why = format!(
                            "the promotion stopped: {unit} was not routed, up and healthy on {} \
                             within {}s of its restart; instances already restarted run {}, the \
                             others their old version",
                            self.d.spec.version,
                            READY_WITHIN.as_secs(),
                            self.d.spec.version
                        );
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

    fn switched(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
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

    fn finish(
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
    fn leaving(&mut self, now: Instant, view: &View, actions: &mut Vec<Action>) {
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

    // ---- helpers ----

    /// Records a decision and logs it to the journal with its figures.
    fn decide(&mut self, event: &str, message: String, analysis: Option<Analysis>) {
        log_decision(&self.d, event, &message, analysis.as_ref());
        self.d.decide(now_ms(), event, message, analysis);
    }

    fn set_weight(&mut self, weight_bp: u16, actions: &mut Vec<Action>, why: &str) {
        self.d.weight_bp = weight_bp;
        actions.push(Action::SetSplit {
            group: self.d.spec.upstream.clone(),
            split: TrafficSplit {
                weight_bp,
                key: self.d.spec.canary.key.clone(),
            },
            what: format!(
                "deployment {} of {}: {} % of the clients on the new version ({why})",
                self.d.id,
                self.d.spec.version,
                pct(weight_bp)
            ),
        });
    }

    fn version_write(&self, unit: &str) -> VersionChange {
        match &self.state_dir {
            Some(dir) => VersionChange::Write {
                path: version::file_for(dir, unit),
                content: version::content(&self.d.spec, &self.d.id.to_string()),
            },
            None => VersionChange::Keep,
        }
    }

    fn version_remove(&self, unit: &str) -> VersionChange {
        match &self.state_dir {
            Some(dir) => VersionChange::Remove {
                path: version::file_for(dir, unit),
            },
            None => VersionChange::Keep,
        }
    }

    /// Routed, a backend up on every worker, and its health checks passing.
    fn ready(&self, view: &View, unit: &str) -> bool {
        let group = &self.d.spec.upstream;
        let Some(u) = unit_named(view, group, unit) else {
            return false;
        };
        let Some(address) = u.address.filter(|_| u.routing() == Routing::Routed) else {
            return false;
        };
        view.backend(group, address).is_some_and(BackendRow::is_up) && view.healthy(group, address)
    }

    fn remember_invocations(&mut self, view: &View) {
        for unit in &self.d.new_units {
            if let Some(u) = unit_named(view, &self.d.spec.upstream, unit) {
                self.seen
                    .entry(unit.clone())
                    .or_insert((u.unit.invocation_id.clone(), u.unit.n_restarts));
            }
        }
    }

    /// Why a new instance counts as failed: its unit failed, left, or restarted (a new
    /// invocation or more restarts than when it was first ready).
    fn new_instance_failed(&mut self, view: &View) -> Option<String> {
        let group = self.d.spec.upstream.clone();
        for unit in &self.d.new_units {
            let Some(u) = unit_named(view, &group, unit) else {
                if self.seen.contains_key(unit) {
                    return Some(format!("new instance {unit} is gone"));
                }
                continue;
            };
            if u.unit.active_state == "failed" {
                return Some(format!(
                    "new instance {unit} failed ({}/{}, {} restarts)",
                    u.unit.active_state, u.unit.sub_state, u.unit.n_restarts
                ));
            }
            if let Some((invocation, restarts)) = self.seen.get(unit) {
                if u.unit.n_restarts > *restarts
                    || (!u.unit.invocation_id.is_empty() && u.unit.invocation_id != *invocation)
                {
                    return Some(format!(
                        "new instance {unit} restarted (restarts {restarts} → {}, now {}/{})",
                        u.unit.n_restarts, u.unit.active_state, u.unit.sub_state
                    ));
                }
                if u.routing() != Routing::Routed {
                    return Some(format!(
                        "new instance {unit} is no longer routed ({}/{})",
                        u.unit.active_state, u.unit.sub_state
                    ));
                }
            }
        }
        if self.d.phase != Phase::Starting {
            self.remember_invocations(view);
        }
        None
    }

    fn new_addresses(&self, view: &View) -> BTreeSet<SocketAddr> {
        let units = units_of(view, &self.d.spec.upstream);
        units
            .iter()
            .filter(|u| self.d.new_units.contains(&u.unit.name))
            .filter_map(|u| u.address)
            .collect()
    }
}

fn units_of<'a>(view: &'a View, group: &str) -> &'a [DiscoveredUnit] {
    view.units.get(group).map_or(&[], Vec::as_slice)
}

fn unit_named<'a>(view: &'a View, group: &str, unit: &str) -> Option<&'a DiscoveredUnit> {
    units_of(view, group).iter().find(|u| u.unit.name == unit)
}

/// `count` instance units of `group`'s template numbered after every unit it has now.
fn next_units(view: &View, group: &str, units: &[DiscoveredUnit], count: usize) -> Vec<String> {
    let Some((prefix, suffix)) = view
        .config
        .upstreams
        .iter()
        .find(|g| g.name == group)
        .and_then(|g| g.discover.as_ref())
        .and_then(|d| crate::config::unit_template(&d.systemd))
    else {
        return Vec::new();
    };
    let highest = units
        .iter()
        .filter_map(|u| {
            u.unit
                .name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    (1..=count as u32)
        .map(|i| format!("{prefix}{}{suffix}", highest + i))
        .collect()
}

fn pct(weight_bp: u16) -> f64 {
    f64::from(weight_bp) / 100.0
}

/// The journal line of a decision, with its figures as fields.
fn log_decision(d: &Deployment, event: &str, message: &str, analysis: Option<&Analysis>) {
    let (canary, stable) = analysis.map_or((None, None), |a| (Some(a.canary), Some(a.stable)));
    tracing::info!(
        target: "lbproxy::deploy",
        event,
        deployment = d.id,
        upstream = %d.spec.upstream,
        version = %d.spec.version,
        strategy = d.spec.strategy.as_str(),
        phase = d.phase.as_str(),
        weight_pct = pct(d.weight_bp),
        verdict = analysis.map(|a| format!("{:?}", a.verdict).to_lowercase()),
        canary_requests = canary.map(|c| c.requests),
        canary_error_ratio = canary.map(|c| c.error_ratio()),
        canary_p99_ms = canary.and_then(|c| c.p99_ms),
        stable_requests = stable.map(|s| s.requests),
        stable_error_ratio = stable.map(|s| s.error_ratio()),
        stable_p99_ms = stable.and_then(|s| s.p99_ms),
        "deployment {} of \"{}\": {message}",
        d.id,
        d.spec.version
    );
}
