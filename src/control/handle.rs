//! [`ControlHandle`]: what the control thread, the signal handlers and the admin API use to drive
//! a running proxy from outside its workers — reload, drain, watch, read metrics.
//!
//! It holds one link per worker: the [`WorkerShared`] flags (drain request, heartbeat), the
//! worker's published metrics, and the sender of the worker's command channel. Reloads are
//! serialized: one at a time, each numbered. The running configuration is readable at any time,
//! also while a reload is under way (a scrape never waits for one). It also holds the health
//! probes' [`ProbeLog`], which the admin API shows.

use super::reload::{self, ReloadError, ReloadReport};
use crate::config::{self, Config};
use crate::health::ProbeLog;
use crate::metrics::{Aggregate, WorkerSnapshot};
use crate::runtime::command::{PrepareReply, WorkerCommand};
use crate::runtime::{WorkerShared, TICK};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long every worker together may take to prepare a reload. A worker answers on its next
/// tick, so anything much past [`TICK`] means it is stuck (or draining).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(5);

/// Totals over every worker, as published on their last tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub open_connections: u64,
}

/// Cloneable, `Send` handle to a running [`crate::server::Server`].
#[derive(Debug, Clone)]
pub struct ControlHandle {
    inner: Arc<Inner>,
}

struct Inner {
    workers: Vec<WorkerLink>,
    /// Held for the whole of a reload, so reloads never interleave.
    reloading: Mutex<()>,
    /// The configuration the workers run now, and the number of the last reload (0 = none yet).
    /// Locked only to read or replace them.
    running: Mutex<Running>,
    /// What the active health probes found lately (written by the health thread).
    probe_log: ProbeLog,
    /// How a reload asked for from outside (the admin API) is made, when the process has its own
    /// way ([`ControlHandle::set_requested_reload`]); else [`ControlHandle::reload_from_source`].
    requested_reload: OnceLock<RequestedReload>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("workers", &self.workers)
            .field("running", &self.running)
            .field("requested_reload", &self.requested_reload.get().is_some())
            .finish_non_exhaustive()
    }
}

/// See [`ControlHandle::set_requested_reload`].
type RequestedReload = Box<dyn Fn() -> Result<ReloadReport, ReloadError> + Send + Sync>;

#[derive(Debug)]
struct Running {
    config: Arc<Config>,
    reloads: u64,
}

/// The control thread's end of one worker.
#[derive(Debug)]
pub struct WorkerLink {
    pub shared: Arc<WorkerShared>,
    pub commands: Sender<WorkerCommand>,
}

impl ControlHandle {
    pub fn new(config: Arc<Config>, workers: Vec<WorkerLink>) -> Self {
        Self {
            inner: Arc::new(Inner {
                workers,
                reloading: Mutex::new(()),
                running: Mutex::new(Running { config, reloads: 0 }),
                probe_log: ProbeLog::default(),
                requested_reload: OnceLock::new(),
            }),
        }
    }

    /// Stop accepting, let in-flight requests finish (up to `runtime.drain_timeout`), close idle
    /// keep-alive connections, then let the workers exit. Idempotent. Workers notice within one
    /// tick ([`TICK`]).
    pub fn shutdown(&self) {
        for worker in &self.inner.workers {
            worker.shared.drain_requested.store(true, Ordering::Relaxed);
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner
            .workers
            .iter()
            .any(|w| w.shared.drain_requested.load(Ordering::Relaxed))
    }

    /// Milliseconds since the Unix epoch of the oldest worker heartbeat: the systemd watchdog is
    /// fed only while this is recent.
    pub fn oldest_heartbeat_ms(&self) -> u64 {
        self.inner
            .workers
            .iter()
            .map(|w| w.shared.heartbeat_ms.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Each worker's last heartbeat, in milliseconds since the Unix epoch, by worker id.
    pub fn heartbeats_ms(&self) -> Vec<u64> {
        self.inner
            .workers
            .iter()
            .map(|w| w.shared.heartbeat_ms.load(Ordering::Relaxed))
            .collect()
    }

    /// Requests answered and client connections open, summed over the workers as of their last
    /// tick.
    pub fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        for worker in &self.inner.workers {
            counters.requests += worker.shared.requests.load(Ordering::Relaxed);
            counters.open_connections += worker.shared.open_connections.load(Ordering::Relaxed);
        }
        counters
    }

    /// Each worker's latest metrics snapshot, by worker id (workers that have not ticked yet are
    /// left out).
    pub fn snapshots(&self) -> Vec<Arc<WorkerSnapshot>> {
        self.inner
            .workers
            .iter()
            .filter_map(|w| w.shared.metrics.load())
            .collect()
    }

    /// The workers' metrics, summed.
    pub fn aggregate(&self) -> Aggregate {
        Aggregate::of(&self.snapshots())
    }

    /// The active health probes' recent results, per backend.
    pub fn probe_log(&self) -> &ProbeLog {
        &self.inner.probe_log
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.running().reloads
    }

    /// Sends `command` to worker `worker` alone. Returns false when that worker has exited or
    /// does not exist.
    pub fn send_to(&self, worker: usize, command: WorkerCommand) -> bool {
        self.inner
            .workers
            .get(worker)
            .is_some_and(|w| w.commands.send(command).is_ok())
    }

    /// Number of worker threads.
    pub fn worker_count(&self) -> usize {
        self.inner.workers.len()
    }

    /// The configuration the workers run now.
    pub fn config(&self) -> Arc<Config> {
        self.running().config.clone()
    }

    /// Reads the configuration again from where the running one came from (same file, same
    /// `--env` overlay, the process environment for `${VAR}`), validates it and reloads it. On any
    /// error the running configuration stays, and the error is logged (once, with every reason
    /// and its fix, as `lbproxy check` prints them).
    pub fn reload_from_source(&self) -> Result<ReloadReport, ReloadError> {
        self.reload_from_source_with(|_| Ok(()))
    }

    /// [`reload_from_source`](Self::reload_from_source), passing the configuration read through
    /// `adjust` first: `lbproxy up` puts back the instances it runs. An `Err` from `adjust`
    /// refuses the reload (logged like any other).
    pub fn reload_from_source_with(
        &self,
        adjust: impl FnOnce(&mut Config) -> Result<(), ReloadError>,
    ) -> Result<ReloadReport, ReloadError> {
        let (path, env) = {
            let running = self.running();
            let path = match &running.config.source {
                config::ConfigSource::File(path) => Some(path.clone()),
                config::ConfigSource::Embedded => None,
            };
            (path, running.config.env.clone())
        };
        let mut config =
            config::load(path.as_deref(), env.as_deref()).map_err(|e| logged(e.into()))?;
        adjust(&mut config).map_err(logged)?;
        self.reload(config)
    }

    /// How [`requested_reload`](Self::requested_reload) reloads from now on: `lbproxy serve` routes
    /// it through its SIGHUP handling, so that systemd hears `RELOADING=1`/`READY=1` and the
    /// outcome is recorded for `lbproxy reload` whoever asked. Set once; later calls do nothing.
    pub fn set_requested_reload(
        &self,
        reload: impl Fn() -> Result<ReloadReport, ReloadError> + Send + Sync + 'static,
    ) {
        let _ = self.inner.requested_reload.set(Box::new(reload));
    }

    /// A reload asked for from outside the process's signal handling (`POST /api/reload`): as
    /// SIGHUP would make it.
    pub fn requested_reload(&self) -> Result<ReloadReport, ReloadError> {
        match self.inner.requested_reload.get() {
            Some(reload) => reload(),
            None => self.reload_from_source(),
        }
    }

    /// Switches every worker to `config`: prepare on all, then commit on all (or abort on all when
    /// any cannot), and returns once every worker serves it. Requests in flight finish on the
    /// configuration they started with; connections are not touched. Blocks for about two worker
    /// ticks. The outcome is logged here, whoever asked (SIGHUP, the admin API, `lbproxy up`),
    /// so callers do not log it again.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        self.switch_to(config).map_err(logged)
    }

    fn switch_to(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        let (current, number) = {
            let running = self.running();
            (running.config.clone(), running.reloads + 1)
        };
        let (config, warnings) = reload::reconcile(&current, config)?;
        let config = Arc::new(config);

        let (reply_tx, reply_rx) = mpsc::channel();
        for worker in &self.inner.workers {
            let prepare = WorkerCommand::Prepare {
                reload: number,
                config: config.clone(),
                reply: reply_tx.clone(),
            };
            if worker.commands.send(prepare).is_err() {
                self.broadcast(|| WorkerCommand::Abort { reload: number });
                return Err(ReloadError::ShuttingDown);
            }
        }
        drop(reply_tx);

        if let Err(e) = self.collect_prepared(number, &reply_rx) {
            self.broadcast(|| WorkerCommand::Abort { reload: number });
            return Err(e);
        }
        let (done_tx, done_rx) = mpsc::channel();
        self.broadcast(|| WorkerCommand::Commit {
            reload: number,
            done: done_tx.clone(),
        });
        drop(done_tx);
        // Wait until every worker serves the new configuration, so that the caller (systemctl
        // reload, the admin API) returns only once it is in effect.
        let deadline = Instant::now() + PREPARE_TIMEOUT;
        let mut committed = 0;
        while committed < self.inner.workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                tracing::warn!(
                    reload = number,
                    committed,
                    workers = self.inner.workers.len(),
                    "not every worker confirmed the new configuration in time"
                );
                break;
            }
            committed += 1;
        }
        crate::logging::set_format(config.log.format);
        {
            let mut running = self.running();
            running.config = config;
            running.reloads = number;
        }
        for warning in &warnings {
            tracing::warn!(reload = number, "{warning}");
        }
        tracing::info!(reload = number, "configuration reloaded");
        Ok(ReloadReport {
            reload: number,
            warnings,
        })
    }

    /// Waits until every worker answered its `Prepare` for reload `number`.
    fn collect_prepared(
        &self,
        number: u64,
        replies: &mpsc::Receiver<PrepareReply>,
    ) -> Result<(), ReloadError> {
        let deadline = Instant::now() + PREPARE_TIMEOUT.max(TICK * 10);
        let mut answered = vec![false; self.inner.workers.len()];
        while answered.iter().any(|a| !a) {
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left) {
                Ok(reply) if reply.reload == number => {
                    if let Err(reason) = reply.result {
                        return Err(ReloadError::Refused {
                            worker: reply.worker,
                            reason,
                        });
                    }
                    answered[reply.worker] = true;
                }
                Ok(_stale) => {}
                Err(_) => {
                    let silent = answered.iter().position(|a| !a).unwrap_or(0);
                    return Err(if self.is_shutting_down() {
                        ReloadError::ShuttingDown
                    } else {
                        ReloadError::NoAnswer {
                            worker: silent,
                            waited: PREPARE_TIMEOUT,
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends a command made by `make` to every worker. A worker that has exited is skipped.
    pub fn broadcast(&self, make: impl Fn() -> WorkerCommand) {
        for worker in &self.inner.workers {
            let _ = worker.commands.send(make());
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs a failed reload: every reason, each with its fix; the running configuration stays.
fn logged(error: ReloadError) -> ReloadError {
    tracing::error!("reload failed: {error}");
    error
}
