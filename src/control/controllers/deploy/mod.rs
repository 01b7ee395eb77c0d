//! The deploy controller: drives the deployment in progress (canary or blue-green, see
//! [`crate::deploy`]) one decision per tick, on the control loop like every controller (no I/O
//! but the deployment's own file in the state directory, written when it changes).
//!
//! Each tick: take the operator's requests from the [`DeployBoard`] (start, promote, abort,
//! rollback) → advance the deployment by what the view shows (`run.rs`, `canary.rs`,
//! `ending.rs`: units routed and healthy, a canary that failed or restarted, the analysis window
//! over) → return the actions (start, stop and restart units with their version files; drain
//! and enable backends; set the group's traffic split) → once the loop has carried them out
//! (`actions_done`), record the deployment with every decision and its figures on the board
//! (admin API, dashboard, `lbproxy deploy status`) and in the state directory
//! (`deploy/current.json`, `deploy/history.jsonl`); each decision also goes to the journal
//! (target `lbproxy::deploy`) as it is made.
//!
//! A proxy that stops mid-deployment finds it in the state directory at its next start: the
//! first generation already splits the traffic as it was (`with_first_backends`), and the first
//! tick resumes it where it stood (a canary step starts a fresh window; a promotion goes on
//! with the instances not restarted yet; blue keeps its deadline). Traffic is never left split
//! with nobody watching: a deployment that cannot be read back is reported, and one whose
//! group is gone is aborted.

mod canary;
mod ending;
mod instances;
mod run;
mod window;

use crate::control::controller::{Action, Controller, View};
use crate::deploy::board::{DeployBoard, Request};
use crate::deploy::record::{Deployment, Outcome, Phase, Store};
use crate::deploy::spec::DeploySpec;
use crate::runtime::now_ms;
use run::Run;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the controller looks (the analysis windows are measured in seconds; a unit that
/// fails is acted on within this).
const EVERY: Duration = Duration::from_millis(500);

pub struct DeployController {
    board: Arc<DeployBoard>,
    store: Option<Store>,
    state_dir: Option<PathBuf>,
    run: Option<Run>,
    /// The deployment found in the state directory at start, resumed on the first tick.
    stored: Option<Deployment>,
    /// The deployment changed in the last tick: published once its actions are done.
    unpublished: bool,
    /// The deployment ended in the last tick: recorded once its actions are done.
    ended: Option<Deployment>,
}

impl std::fmt::Debug for DeployController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployController")
            .field("state_dir", &self.state_dir)
            .field("running", &self.run.as_ref().map(|r| r.d.id))
            .finish()
    }
}

impl DeployController {
    /// A controller over `board` keeping its files in `state_dir` (`None`: deployments still
    /// run, but do not survive a restart — logged). Reads the history and the deployment in
    /// progress from there, and publishes them on the board.
    pub fn new(board: Arc<DeployBoard>, state_dir: Option<PathBuf>) -> Self {
        let store = state_dir.as_deref().map(Store::new);
        let mut stored = None;
        if let Some(store) = &store {
            board.load_history(store.history());
            match store.load_current() {
                Ok(Some(d)) if d.in_progress() => {
                    board.publish(&d);
                    stored = Some(d);
                }
                Ok(_) => {}
                Err(error) => tracing::error!(
                    target: "lbproxy::deploy",
                    "the deployment in progress cannot be read back ({error}): nothing resumes; \
                     check `lbproxy deploy history` and the group's instances"
                ),
            }
        }
        if let Some(dir) = &state_dir {
            board.set_state_dir(dir.clone());
        }
        Self {
            board,
            store,
            state_dir,
            run: None,
            stored,
            unpublished: false,
            ended: None,
        }
    }

    /// Handles one operator request.
    fn handle(&mut self, request: Request, now: Instant, view: &View, actions: &mut Vec<Action>) {
        let at = now_ms();
        match (request, &mut self.run) {
            (Request::Start(spec), None) => self.start(*spec, now, view, actions),
            (Request::Start(spec), Some(run)) => run.d.decide(
                at,
                "refused",
                format!(
                    "a deployment of \"{}\" was asked while this one is in progress: refused",
                    spec.version
                ),
                None,
            ),
            (_, None) => {}
            (Request::Promote, Some(run)) => run.promote_now(now, view, actions),
            (Request::Abort { reason }, Some(run)) => {
                run.abort(
                    now,
                    view,
                    actions,
                    format!("aborted by the operator: {reason}"),
                );
            }
            (Request::Rollback { reason }, Some(run)) => run.rollback(now, view, actions, reason),
        }
    }

    fn start(&mut self, spec: DeploySpec, now: Instant, view: &View, actions: &mut Vec<Action>) {
        let id = self.board.next_id();
        match Run::start(id, spec, self.state_dir.clone(), now, view, actions) {
            Ok(run) => self.run = Some(run),
            Err(ended) => self.end(&ended),
        }
    }

    /// Publishes and keeps `d` (as the current deployment, or in the history once ended).
    fn keep(&self, d: &Deployment) {
        self.board.publish(d);
        let Some(store) = &self.store else {
            return;
        };
        let written = match d.in_progress() {
            true => store.save_current(d),
            false => store.end(d),
        };
        if let Err(error) = written {
            tracing::error!(
                target: "lbproxy::deploy",
                deployment = d.id,
                "the deployment's state is not saved ({error}): a restart of the proxy now \
                 would not find it"
            );
        }
    }

    fn end(&mut self, d: &Deployment) {
        self.keep(d);
        let (result, why) = match &d.outcome {
            Some(Outcome::Promoted) => ("promoted", String::new()),
            Some(Outcome::Aborted { reason }) => ("aborted", format!(": {reason}")),
            Some(Outcome::RolledBack { reason }) => ("rolled-back", format!(": {reason}")),
            None => ("ended", String::new()),
        };
        tracing::info!(
            target: "lbproxy::deploy",
            event = "ended",
            result,
            deployment = d.id,
            upstream = %d.spec.upstream,
            version = %d.spec.version,
            "deployment {} of \"{}\" to upstream \"{}\" {result}{why}",
            d.id,
            d.spec.version,
            d.spec.upstream
        );
    }
}

impl Controller for DeployController {
    fn name(&self) -> &str {
        "deploy"
    }

    fn every(&self) -> Duration {
        EVERY
    }

    fn follows_units(&self) -> bool {
        true
    }

    /// Only while there is something to do: a view sums every worker's metrics, which an idle
    /// proxy should not pay for twice a second.
    fn applies_to(&self, _config: &crate::config::Config) -> bool {
        self.run.is_some() || self.stored.is_some() || self.board.has_requests()
    }

    fn tick(&mut self, now: Instant, view: &View) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(stored) = self.stored.take() {
            self.run = Some(Run::resume(
                stored,
                self.state_dir.clone(),
                now,
                view,
                &mut actions,
            ));
        }
        for request in self.board.take_requests() {
            self.handle(request, now, view, &mut actions);
        }
        let Some(run) = &mut self.run else {
            return actions;
        };
        let before = run.d.updated_ms;
        run.advance(now, view, &mut actions);
        let changed = run.d.updated_ms != before || run.d.phase == Phase::Ended;
        if run.d.phase == Phase::Ended {
            self.ended = self.run.take().map(|r| r.d);
        } else if changed || !actions.is_empty() {
            self.unpublished = true;
        }
        actions
    }

    /// Publishes (and saves) the deployment once this tick's split and instance actions are in
    /// force: whoever reads "switched" or "stepping at 50 %" finds the traffic split so.
    fn actions_done(&mut self) {
        if let Some(ended) = self.ended.take() {
            self.end(&ended);
        }
        if std::mem::take(&mut self.unpublished) {
            if let Some(run) = &self.run {
                let d = run.d.clone();
                self.keep(&d);
            }
        }
    }
}

#[cfg(test)]
mod tests;
