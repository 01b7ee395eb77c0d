//! What every worker thread has, below the sessions that run on it: its own state
//! ([`context::WorkerContext`]: the configuration generation it serves, request and trace ids
//! ([`ids`]), the drain signal ([`drain`]), its open connections and listener counters, the per-client state of
//! connection limits ([`clients`])), the io
//! driver it runs on ([`driver`]), the [`command`]s the control side sends it, and the little it
//! shares with the control thread ([`WorkerShared`]).
//!
//! Flow: [`driver::resolve`] decides once per process between io_uring and the legacy (epoll)
//! driver; `crate::worker::spawn` starts a named, pinned thread that builds its runtime and runs
//! the worker until drained. Cross-thread state is limited to what [`WorkerShared`] holds: a
//! drain flag set by the control thread, and a heartbeat, counters and the metrics snapshot
//! written by the worker alone, plus the [`command`] channel each worker drains on its tick.

pub mod clients;
pub mod command;
pub mod context;
pub mod drain;
pub mod driver;
pub mod ids;

use crate::metrics::Published;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How often each worker's housekeeping tick runs (drain check, heartbeat, pool sweep).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// State one worker shares with the control thread. One writer per field: the control thread
/// writes `drain_requested`, the worker writes the rest, on its tick (never on the request path).
#[derive(Debug, Default)]
pub struct WorkerShared {
    /// Set once by [`crate::control::ControlHandle::shutdown`].
    pub drain_requested: AtomicBool,
    /// Milliseconds since the Unix epoch at the worker's last event-loop tick (0 = not started).
    /// The systemd watchdog reads it to decide whether every worker is alive.
    pub heartbeat_ms: AtomicU64,
    /// Requests answered since start, as of the last tick (systemd `STATUS=`, drain progress).
    pub requests: AtomicU64,
    /// Open client connections, as of the last tick.
    pub open_connections: AtomicU64,
    /// The worker's metrics as of its last tick (see [`crate::metrics`]).
    pub metrics: Published,
}

impl WorkerShared {
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Publishes the worker's own counters (kept in `Cell`s on the worker) for the control thread.
    pub fn publish(&self, requests: u64, open_connections: usize) {
        self.requests.store(requests, Ordering::Relaxed);
        self.open_connections
            .store(open_connections as u64, Ordering::Relaxed);
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
