//! A deployment as it is kept: its spec, its phase, the units of both versions, the weight, the
//! last analysis and every decision with its figures — in memory on the [`DeployBoard`](super::board::DeployBoard)
//! (`super::board`), and on disk in the state directory so that a proxy restart finds it:
//!
//! - `deploy/current.json`: the deployment in progress (rewritten atomically at each change of
//!   phase, step or weight; removed when it ends);
//! - `deploy/history.jsonl`: every ended deployment, one JSON object a line, oldest first.

use super::analysis::Analysis;
use super::spec::DeploySpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Decisions kept per deployment (the oldest go first).
pub const DECISIONS_KEPT: usize = 200;
/// Ended deployments the board keeps in memory (the file keeps them all).
pub const HISTORY_KEPT: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Increasing: one more than the last in the history.
    pub id: u64,
    pub spec: DeploySpec,
    pub phase: Phase,
    /// The version the stable instances ran when it started (`None`: the template's own).
    pub from_version: Option<String>,
    /// The stable (blue) instances when it started, by unit name.
    pub old_units: Vec<String>,
    /// The instances it started for the new version (canary or green), by unit name.
    pub new_units: Vec<String>,
    /// Canary step index (canary only).
    pub step: usize,
    /// The new version's share of the clients now, in basis points.
    pub weight_bp: u16,
    /// Failed analyses in a row.
    pub failures_in_a_row: u32,
    pub last_analysis: Option<Analysis>,
    /// When it started and last changed, ms since the epoch.
    pub started_ms: u64,
    pub updated_ms: u64,
    /// Blue-green: when blue is stopped (ms since the epoch), once switched.
    pub keep_blue_until_ms: Option<u64>,
    pub decisions: Vec<Decision>,
    /// How it ended; `None` while in progress.
    pub outcome: Option<Outcome>,
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The new version's instances are starting; waiting until each is routed and healthy.
    Starting,
    /// Canary: at step `step`, its window running.
    Stepping,
    /// Canary promoted: the stable instances restart on the new version one at a time.
    Promoting,
    /// Blue-green: every client on green; blue kept running until `keep_blue_until_ms`.
    Switched,
    /// The old version's extra instances (canary promoted: the canaries; blue-green: blue)
    /// drain and stop.
    Finishing,
    /// Aborted or rolled back: weight 0, the new version's instances drain and stop.
    Aborting,
    /// Ended; `outcome` says how.
    Ended,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Stepping => "stepping",
            Phase::Promoting => "promoting",
            Phase::Switched => "switched",
            Phase::Finishing => "finishing",
            Phase::Aborting => "aborting",
            Phase::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The new version runs on every instance.
    Promoted,
    /// Stopped before promotion (analysis, a failed canary, `deploy abort`, a restart that could
    /// not resume): the old version runs on every instance.
    Aborted { reason: String },
    /// Switched back after the switch (blue-green) or undone after promotion.
    RolledBack { reason: String },
}

/// One thing the controller decided, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at_ms: u64,
    /// `started`, `ready`, `step`, `hold`, `analysis-passed`, `analysis-failed`, `promote`,
    /// `switched`, `switched-back`, `abort`, `canary-failed`, `resumed`, `ended`, ...
    pub event: String,
    pub message: String,
    pub weight_bp: u16,
    pub analysis: Option<Analysis>,
}

impl Deployment {
    /// Adds a decision (dropping the oldest beyond [`DECISIONS_KEPT`]) and marks the change.
    pub fn decide(&mut self, at_ms: u64, event: &str, message: String, analysis: Option<Analysis>) {
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.remove(0);
        }
        self.decisions.push(Decision {
            at_ms,
            event: event.to_owned(),
            message,
            weight_bp: self.weight_bp,
            analysis,
        });
        self.updated_ms = at_ms;
    }

    pub fn in_progress(&self) -> bool {
        self.phase != Phase::Ended
    }
}

/// The deployment in progress in the state directory of this process, if any (`None` also when
/// there is no state directory or its file cannot be read: the deploy controller reports that).
pub fn in_progress_at_start() -> Option<Deployment> {
    let dir = crate::sys::state_dir::state_dir().ok()?;
    Store::new(&dir)
        .load_current()
        .ok()
        .flatten()
        .filter(Deployment::in_progress)
}

/// The deployment files in the state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under state directory `state_dir` (`deploy/`).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("deploy"),
        }
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join("current.json")
    }

    fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    /// The deployment in progress when the proxy last wrote one; `Err` when the file is there
    /// but unreadable (the caller aborts what it can and says so).
    pub fn load_current(&self) -> Result<Option<Deployment>, String> {
        let path = self.current_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{} is not a deployment: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save_current(&self, deployment: &Deployment) -> Result<(), String> {
        let path = self.current_path();
        let json = serde_json::to_vec_pretty(deployment).map_err(|e| e.to_string())?;
        crate::sys::state_dir::write_atomically(&path, &json)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Records an ended deployment in the history and removes the current file.
    pub fn end(&self, deployment: &Deployment) -> Result<(), String> {
        use std::io::Write;
        let path = self.history_path();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let mut line = serde_json::to_vec(deployment).map_err(|e| e.to_string())?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&line).and_then(|()| f.sync_all()))
            .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
        match std::fs::remove_file(self.current_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove the current deployment file: {e}")),
        }
    }

    /// Every ended deployment, oldest first (lines that do not parse are skipped).
    pub fn history(&self) -> Vec<Deployment> {
        std::fs::read_to_string(self.history_path())
            .map(|text| {
                text.lines()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}
