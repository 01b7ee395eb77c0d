//! [`ControlHandle`]: how everything outside the control loop — the signal thread, the admin API,
//! the health checker, `lbproxy up`, tests — drives a running proxy and reads it.
//!
//! Reads never wait for the loop: the running configuration, the workers' heartbeats, counters
//! and published metrics, the health probes' log and the sampler's history are in [`Shared`],
//! which the loop updates and anyone may read (a scrape never waits for a reload). Changes are
//! [`Command`]s to the loop, which makes them one at a time and answers; the request methods
//! block until it has. They must never be called from the loop's own thread (its jobs and
//! controllers get [`Shared`] and return actions instead).

use super::broadcast::Gathered;
use super::command::{Command, Commands, ReloadFrom, Via};
use super::reload::{ReloadError, ReloadReport};
use super::sampler::Sampler;
use super::shared::{Counters, Shared};
use crate::config::Config;
use crate::health::{HealthTable, ProbeLog};
use crate::metrics::{Aggregate, WorkerSnapshot};
use crate::runtime::command::{BackendChange, Reply};
use std::net::SocketAddr;
use std::sync::Arc;

/// Cloneable, `Send` handle to a running proxy's control loop.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    shared: Arc<Shared>,
    commands: Commands,
}

impl ControlHandle {
    pub(super) fn new(shared: Arc<Shared>, commands: Commands) -> Self {
        Self { shared, commands }
    }

    /// Stop accepting, let in-flight requests finish (up to `runtime.drain_timeout`), close idle
    /// keep-alive connections, then let the workers exit. Idempotent. The workers are asked at
    /// once (a stop never waits behind a reload); the loop then reports the drain to systemd.
    pub fn shutdown(&self) {
        self.shared.request_drain();
        self.commands.send(Command::Stop);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Reads the configuration again from where the running one came from and reloads it on
    /// every worker, as SIGHUP does (under systemd: `RELOADING=1` … `READY=1`, and the outcome
    /// recorded for `lbproxy reload`; under `lbproxy up`: its instances kept). Returns once
    /// every worker serves it. On any error the running configuration stays; the loop logs the
    /// outcome (every reason with its fix), so callers do not log it again. The configuration
    /// history (when the loop keeps one) records it as a reload through the admin API.
    pub fn reload_from_source(&self) -> Result<ReloadReport, ReloadError> {
        self.reload_from(ReloadFrom::Source(Via::Api))
    }

    /// Switches every worker to `config` (two-phase: prepare on all, then commit on all, or
    /// abort on all when any cannot) and returns once every worker serves it. Requests in flight
    /// finish on the configuration they started with; connections are not touched.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        self.reload_from(ReloadFrom::Config(Box::new(config)))
    }

    fn reload_from(&self, from: ReloadFrom) -> Result<ReloadReport, ReloadError> {
        self.commands
            .request(|reply| Command::Reload {
                from,
                reply: Some(reply),
            })
            .unwrap_or(Err(ReloadError::ShuttingDown))
    }

    /// Applies `change` to backend `address` of group `group` on every worker (until the next
    /// reload), and returns each worker's answer once all answered or the deadline passed.
    pub fn change_backend(
        &self,
        group: &str,
        address: SocketAddr,
        change: BackendChange,
    ) -> Gathered<Reply> {
        self.commands
            .request(|reply| Command::Backend {
                group: group.to_owned(),
                address,
                change,
                reply: Some(reply),
            })
            .unwrap_or_else(|| Gathered::unreachable(self.worker_count()))
    }

    /// Hands the active health checks' latest verdicts to the loop, which publishes them.
    pub fn publish_health(&self, table: Arc<HealthTable>) {
        self.commands.send(Command::Health(table));
    }

    /// The channel to the loop, for senders that want no answer (the signal thread).
    pub fn commands(&self) -> &Commands {
        &self.commands
    }

    /// Milliseconds since the Unix epoch of the oldest worker heartbeat.
    pub fn oldest_heartbeat_ms(&self) -> u64 {
        self.shared.heartbeats_ms().into_iter().min().unwrap_or(0)
    }

    /// Each worker's last heartbeat, in milliseconds since the Unix epoch, by worker id.
    pub fn heartbeats_ms(&self) -> Vec<u64> {
        self.shared.heartbeats_ms()
    }

    /// Requests answered and client connections open, summed over the workers.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Each worker's latest metrics snapshot, by worker id.
    pub fn snapshots(&self) -> Vec<Arc<WorkerSnapshot>> {
        self.shared.snapshots()
    }

    /// The workers' metrics, summed.
    pub fn aggregate(&self) -> Aggregate {
        self.shared.aggregate()
    }

    /// The active health probes' recent results, per backend.
    pub fn probe_log(&self) -> &ProbeLog {
        self.shared.probe_log()
    }

    /// Rates and percentiles sampled once a second, and their two-minute history.
    pub fn sampler(&self) -> &Arc<Sampler> {
        self.shared.sampler()
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads()
    }

    /// Refused reloads since start.
    pub fn failed_reloads(&self) -> u64 {
        self.shared.failed_reloads()
    }

    /// Number of worker threads.
    pub fn worker_count(&self) -> usize {
        self.shared.worker_count()
    }

    /// The configuration the workers run now.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config()
    }

    /// The discovered units and how the proxy treats them (empty without discovery).
    pub fn inventory(&self) -> Arc<super::discovery::Inventory> {
        self.shared.inventory()
    }

    /// The autoscaler's state per autoscaled group (empty without `[upstream.NAME.autoscale]`).
    pub fn autoscale(&self) -> &Arc<super::autoscale::AutoscaleBoard> {
        self.shared.autoscale()
    }

    /// The deployment board: the deployment in progress, the history, and where requests for
    /// it are submitted.
    pub fn deploy(&self) -> &Arc<crate::deploy::board::DeployBoard> {
        self.shared.deploy()
    }
}
