//! The deployment's meeting point between the admin side and the control loop: the admin API
//! (and so `lbproxy deploy …`) submits requests here; the deploy controller takes them on its
//! next tick and publishes the deployment as it goes; the discovery controller reads which
//! units run the new version (to mark them `canary`), the autoscaler whether a group is being
//! deployed (it holds meanwhile). Locked only to copy in or out; nothing waits here.

use super::record::{Deployment, Outcome, HISTORY_KEPT};
use super::spec::DeploySpec;
use super::version::{self, StableVersion};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What the admin side asks of the deploy controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Start a deployment (checked against the running configuration by the caller).
    Start(Box<DeploySpec>),
    /// Canary: skip the remaining steps and promote now.
    Promote,
    /// Stop the deployment in progress and go back to the old version; the reason is the
    /// operator's.
    Abort { reason: String },
    /// Blue-green, switched: back to blue at once. Canary: as `Abort`.
    Rollback { reason: String },
}

#[derive(Debug, Default)]
pub struct DeployBoard {
    state: Mutex<BoardState>,
}

#[derive(Debug, Default)]
struct BoardState {
    pending: VecDeque<Request>,
    current: Option<Deployment>,
    /// Ended deployments, oldest first, at most [`HISTORY_KEPT`].
    history: VecDeque<Deployment>,
    state_dir: Option<PathBuf>,
    /// Deployments that ended in this process, per group (the `lbproxy_deploys_total`
    /// counter: it only grows, unlike the history, which keeps the last ones).
    ended: BTreeMap<String, EndedCounts>,
    /// The last deployment counted in `ended`.
    last_counted: u64,
}

/// How many deployments of one group ended in this process, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndedCounts {
    pub promoted: u64,
    pub aborted: u64,
    pub rolled_back: u64,
}

impl DeployBoard {
    /// Adds the ended deployments read from the state directory (oldest first).
    pub fn load_history(&self, history: Vec<Deployment>) {
        let mut state = self.lock();
        for deployment in history {
            state.last_counted = state.last_counted.max(deployment.id);
            state.push_history(deployment);
        }
    }

    /// Queues `request`; `Err` refuses it at once: a start while a deployment is in progress
    /// (or already queued), anything else while none is.
    pub fn submit(&self, request: Request) -> Result<(), String> {
        let mut state = self.lock();
        let busy = state.current.as_ref().is_some_and(Deployment::in_progress)
            || state.pending.iter().any(|r| matches!(r, Request::Start(_)));
        match (&request, busy) {
            (Request::Start(_), true) => {
                let current = state
                    .current
                    .as_ref()
                    .map(|d| {
                        format!(
                            " (deployment {} of \"{}\", {})",
                            d.id,
                            d.spec.version,
                            d.phase.as_str()
                        )
                    })
                    .unwrap_or_default();
                return Err(format!(
                    "a deployment is in progress{current}: wait for it to end, or \
                     `lbproxy deploy abort`"
                ));
            }
            (Request::Start(_), false) => {}
            (_, false) => return Err("no deployment is in progress".to_owned()),
            (_, true) => {}
        }
        state.pending.push_back(request);
        Ok(())
    }

    /// Whether a request waits for the controller.
    pub fn has_requests(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// The requests queued since the last call, oldest first.
    pub fn take_requests(&self) -> Vec<Request> {
        self.lock().pending.drain(..).collect()
    }

    /// The deployment in progress, or the last one that ended while nothing newer started.
    pub fn current(&self) -> Option<Deployment> {
        self.lock().current.clone()
    }

    /// Publishes `deployment` as the current one; one that ended also joins the history.
    pub fn publish(&self, deployment: &Deployment) {
        let mut state = self.lock();
        if !deployment.in_progress() {
            state.push_history(deployment.clone());
            if deployment.id > state.last_counted {
                state.last_counted = deployment.id;
                let counts = state
                    .ended
                    .entry(deployment.spec.upstream.clone())
                    .or_default();
                match deployment.outcome {
                    Some(Outcome::Promoted) => counts.promoted += 1,
                    Some(Outcome::Aborted { .. }) => counts.aborted += 1,
                    Some(Outcome::RolledBack { .. }) => counts.rolled_back += 1,
                    None => {}
                }
            }
        }
        state.current = Some(deployment.clone());
    }

    /// Deployments that ended since this process started, per group.
    pub fn ended_counts(&self) -> BTreeMap<String, EndedCounts> {
        self.lock().ended.clone()
    }

    /// Ended deployments, oldest first.
    pub fn history(&self) -> Vec<Deployment> {
        self.lock().history.iter().cloned().collect()
    }

    /// The id the next deployment gets.
    pub fn next_id(&self) -> u64 {
        let state = self.lock();
        let last_ended = state.history.back().map_or(0, |d| d.id);
        last_ended.max(state.current.as_ref().map_or(0, |d| d.id)) + 1
    }

    /// Per group being deployed, the units that run the new version.
    pub fn new_version_units(&self) -> BTreeMap<String, BTreeSet<String>> {
        let state = self.lock();
        let mut units = BTreeMap::new();
        if let Some(d) = state.current.as_ref().filter(|d| d.in_progress()) {
            units.insert(
                d.spec.upstream.clone(),
                d.new_units.iter().cloned().collect(),
            );
        }
        units
    }

    /// Per group whose last ended deployment was promoted (and was not followed by one
    /// rolled back after promotion), the version its instances run, as a file's text.
    pub fn stable_versions(&self) -> BTreeMap<String, StableVersion> {
        let state = self.lock();
        let Some(dir) = state.state_dir.clone() else {
            return BTreeMap::new();
        };
        let mut versions = BTreeMap::new();
        for d in &state.history {
            if d.outcome == Some(Outcome::Promoted) {
                versions.insert(
                    d.spec.upstream.clone(),
                    StableVersion {
                        state_dir: dir.clone(),
                        content: version::content(&d.spec, &d.id.to_string()),
                    },
                );
            }
        }
        versions
    }

    /// Sets the state directory the version files are in (the deploy controller's, at start).
    pub fn set_state_dir(&self, dir: PathBuf) {
        self.lock().state_dir = Some(dir);
    }

    /// Whether group `group` has a deployment in progress.
    pub fn deploying(&self, group: &str) -> bool {
        self.lock()
            .current
            .as_ref()
            .is_some_and(|d| d.in_progress() && d.spec.upstream == group)
    }

    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BoardState {
    fn push_history(&mut self, deployment: Deployment) {
        if self.history.back().is_some_and(|d| d.id == deployment.id) {
            self.history.pop_back();
        }
        if self.history.len() == HISTORY_KEPT {
            self.history.pop_front();
        }
        self.history.push_back(deployment);
    }
}
