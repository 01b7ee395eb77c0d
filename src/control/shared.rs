//! What the control loop knows that anyone may read, without waiting for the loop: the running
//! configuration and reload count, the workers' heartbeats, counters and published metrics, the
//! health probes' log and the sampler's history ([`Shared`]); and the control side's end of each
//! worker ([`WorkerLink`]).

use super::autoscale::AutoscaleBoard;
use super::discovery::Inventory;
use super::sampler::Sampler;
use crate::config::Config;
use crate::deploy::board::DeployBoard;
use crate::health::ProbeLog;
use crate::metrics::{Aggregate, WorkerSnapshot};
use crate::runtime::command::WorkerCommand;
use crate::runtime::WorkerShared;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Totals over every worker, as published on their last tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub open_connections: u64,
}

/// The control side's end of one worker, as the server builds it: the flags and figures it
/// shares, and the sender of its command channel (which only the control loop uses).
#[derive(Debug)]
pub struct WorkerLink {
    pub shared: Arc<WorkerShared>,
    pub commands: Sender<WorkerCommand>,
}

/// What the control loop knows that anyone may read.
#[derive(Debug)]
pub struct Shared {
    workers: Vec<Arc<WorkerShared>>,
    /// The configuration the workers run now, and the number of the last reload (0 = none
    /// yet). Locked only to read or replace them.
    running: Mutex<Running>,
    /// What the active health probes found lately (written by the health thread).
    probe_log: ProbeLog,
    /// The workers' metrics sampled once a second (written by the loop's sampling job).
    sampler: Arc<Sampler>,
    /// The discovered units (written by the discovery watcher).
    inventory: Mutex<Arc<Inventory>>,
    /// What the autoscaler decided, per group (written by the autoscale controller).
    autoscale: Arc<AutoscaleBoard>,
    /// The deployment in progress, its history and the requests for it (written by the admin
    /// API and the deploy controller).
    deploy: Arc<DeployBoard>,
    /// Reloads refused since start (`lbproxy_reload_failures_total`); written by the loop only.
    failed_reloads: AtomicU64,
}

#[derive(Debug)]
struct Running {
    config: Arc<Config>,
    reloads: u64,
    generations: u64,
}

impl Shared {
    pub(super) fn new(config: Arc<Config>, workers: Vec<Arc<WorkerShared>>) -> Self {
        Self {
            workers,
            running: Mutex::new(Running {
                config,
                reloads: 0,
                generations: 0,
            }),
            probe_log: ProbeLog::default(),
            sampler: Arc::default(),
            inventory: Mutex::default(),
            autoscale: Arc::default(),
            deploy: Arc::default(),
            failed_reloads: AtomicU64::new(0),
        }
    }

    /// Asks every worker to stop accepting and drain (they notice within a tick). Idempotent.
    pub(super) fn request_drain(&self) {
        for worker in &self.workers {
            worker.drain_requested.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the drain was asked for.
    pub fn is_shutting_down(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.drain_requested.load(Ordering::Relaxed))
    }

    /// Each worker's last heartbeat, in milliseconds since the Unix epoch, by worker id.
    pub fn heartbeats_ms(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.heartbeat_ms.load(Ordering::Relaxed))
            .collect()
    }

    /// Requests answered and client connections open, summed over the workers as of their last
    /// tick.
    pub fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        for worker in &self.workers {
            counters.requests += worker.requests.load(Ordering::Relaxed);
            counters.open_connections += worker.open_connections.load(Ordering::Relaxed);
        }
        counters
    }

    /// Each worker's latest metrics snapshot, by worker id (workers that have not ticked yet are
    /// left out).
    pub fn snapshots(&self) -> Vec<Arc<WorkerSnapshot>> {
        self.workers
            .iter()
            .filter_map(|w| w.metrics.load())
            .collect()
    }

    /// The workers' metrics, summed.
    pub fn aggregate(&self) -> Aggregate {
        Aggregate::of(&self.snapshots())
    }

    pub fn probe_log(&self) -> &ProbeLog {
        &self.probe_log
    }

    pub fn sampler(&self) -> &Arc<Sampler> {
        &self.sampler
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The configuration the workers run now.
    pub fn config(&self) -> Arc<Config> {
        self.running().config.clone()
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.running().reloads
    }

    /// Reloads refused since start: a file that does not validate, a change that needs a
    /// restart, a worker that could not prepare it (not those refused because the proxy is
    /// shutting down).
    pub fn failed_reloads(&self) -> u64 {
        self.failed_reloads.load(Ordering::Relaxed)
    }

    /// Counts a refused reload.
    pub(super) fn reload_failed(&self) {
        self.failed_reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Configurations committed on the workers since start: every reload, and every change of a
    /// discovered group's backends.
    pub fn generations(&self) -> u64 {
        self.running().generations
    }

    /// Records that generation `number` committed `config` on the workers; `reload`: it was a
    /// reload of the configuration (not a discovery change).
    pub(super) fn set_running(&self, config: Arc<Config>, number: u64, reload: bool) {
        let mut running = self.running();
        running.config = config;
        running.generations = number;
        if reload {
            running.reloads += 1;
        }
    }

    #[cfg(test)]
    pub(super) fn workers_for_tests(&self) -> &[Arc<WorkerShared>] {
        &self.workers
    }

    fn running(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The autoscaler's state per autoscaled group.
    pub fn autoscale(&self) -> &Arc<AutoscaleBoard> {
        &self.autoscale
    }

    /// The deployment board.
    pub fn deploy(&self) -> &Arc<DeployBoard> {
        &self.deploy
    }

    /// The latest inventory of discovered units (empty without discovery).
    pub fn inventory(&self) -> Arc<Inventory> {
        self.inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_inventory(&self, inventory: Arc<Inventory>) {
        *self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = inventory;
    }
}
