//! One deployment as the controller drives it ([`Run`]: its start, its resumption after a
//! restart, one tick's progress, and the decisions it records), phase by phase (see [`Phase`];
//! `canary.rs` holds the first three phases, `ending.rs` the rest, `instances.rs` what is read
//! about the units):
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

use super::instances::{next_units, units_of};
use super::window::Window;
use crate::config::TrafficSplit;
use crate::control::controller::{Action, View};
use crate::control::discovery::Routing;
use crate::deploy::analysis::{Analysis, SideFigures};
use crate::deploy::record::{Deployment, Outcome, Phase};
use crate::deploy::spec::{DeploySpec, Strategy};
use crate::deploy::version::{self, VersionChange};
use crate::runtime::now_ms;
use std::collections::BTreeMap;
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
    pub(super) state_dir: Option<PathBuf>,
    /// When the current phase (or promotion stage) began.
    pub(super) since: Instant,
    pub(super) window: Option<Window>,
    /// Stable's figures of the last window that had enough of them: the reference at 100 %.
    pub(super) last_stable: Option<SideFigures>,
    /// Each new instance's invocation and restart count once it was first routed.
    pub(super) seen: BTreeMap<String, (String, u32)>,
    /// Promotion: the stable instance being restarted, and how far.
    pub(super) restarting: Option<Restarting>,
    /// Finishing or aborting: the leaving instances, when each was drained and stopped.
    pub(super) leaving: BTreeMap<String, Leaving>,
}

#[derive(Debug)]
pub(super) struct Restarting {
    pub(super) unit: String,
    pub(super) address: SocketAddr,
    pub(super) invocation: String,
    pub(super) stage: Stage,
    pub(super) since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Draining,
    Restarting,
    /// Restarted, routed and healthy: enabled (a restart quicker than discovery's read keeps
    /// the backend, and so its drain), waiting until it is up.
    Enabling,
}

#[derive(Debug, Default)]
pub(super) struct Leaving {
    pub(super) drained: Option<Instant>,
    pub(super) stopped: Option<Instant>,
}

impl Run {
    fn new(d: Deployment, state_dir: Option<PathBuf>, now: Instant) -> Run {
        Run {
            d,
            state_dir,
            since: now,
            window: None,
            last_stable: None,
            seen: BTreeMap::new(),
            restarting: None,
            leaving: BTreeMap::new(),
        }
    }

    /// Asks for the new version's units, each with its version file written first.
    fn start_new_units(&self, actions: &mut Vec<Action>) {
        for unit in &self.d.new_units {
            actions.push(Action::StartUnit {
                group: self.d.spec.upstream.clone(),
                unit: unit.clone(),
                version: self.version_write(unit),
            });
        }
    }

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
        let mut run = Run::new(d.clone(), state_dir, now);
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
        run.start_new_units(actions);
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
        let mut run = Run::new(d, state_dir, now);
        let weight = run.d.weight_bp;
        run.set_weight(weight, actions, "as it was before the restart");
        if run.d.phase == Phase::Starting {
            // Started already or not: a start of an active unit is a no-op job.
            run.start_new_units(actions);
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

    /// Records a decision and logs it to the journal with its figures.
    pub(super) fn decide(&mut self, event: &str, message: String, analysis: Option<Analysis>) {
        log_decision(&self.d, event, &message, analysis.as_ref());
        self.d.decide(now_ms(), event, message, analysis);
    }

    pub(super) fn set_weight(&mut self, weight_bp: u16, actions: &mut Vec<Action>, why: &str) {
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

    pub(super) fn version_write(&self, unit: &str) -> VersionChange {
        match &self.state_dir {
            Some(dir) => VersionChange::Write {
                path: version::file_for(dir, unit),
                content: version::content(&self.d.spec, &self.d.id.to_string()),
            },
            None => VersionChange::Keep,
        }
    }

    pub(super) fn version_remove(&self, unit: &str) -> VersionChange {
        match &self.state_dir {
            Some(dir) => VersionChange::Remove {
                path: version::file_for(dir, unit),
            },
            None => VersionChange::Keep,
        }
    }
}

pub(super) fn pct(weight_bp: u16) -> f64 {
    f64::from(weight_bp) / 100.0
}

/// The journal line of a decision, with its figures as fields.
pub(super) fn log_decision(
    d: &Deployment,
    event: &str,
    message: &str,
    analysis: Option<&Analysis>,
) {
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
