//! What a worker publishes on its tick: a [`WorkerSnapshot`], plain data the control side may
//! read from any thread, swapped whole in the worker's [`Published`] slot.
//!
//! The snapshot is built from the worker's `Cell` counters (`proxy/publish.rs`) every tick
//! (100 ms), off the request path; readers (the admin server, the sampler, the systemd status
//! line) clone the `Arc` and sum over the workers at their own pace.

use super::compression::CompressionCounts;
use super::counters::ClassCounts;
use super::rate_limits::RateLimitCounts;
use super::state::{BackendState, CircuitState};
use super::stats::{BackendCounts, ListenerCounts, UpstreamCounts};
use crate::sys::driver::Driver;
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// One worker's figures as of its last tick.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    pub worker: usize,
    pub driver: Driver,
    /// Milliseconds since the Unix epoch when it was taken.
    pub taken_ms: u64,
    /// The configuration generation the worker serves (0 at start, one more per reload).
    pub generation: u64,
    pub loop_lag: LoopLag,
    /// Requests answered since the worker started.
    pub requests: u64,
    pub open_connections: u64,
    /// Whole seconds of per-backend latency histograms published so far: each backend's
    /// `last_second` belongs to second number `second`.
    pub second: u64,
    /// Same order as the configuration's listeners.
    pub listeners: Vec<ListenerSnapshot>,
    pub routes: Vec<RouteSnapshot>,
    /// Same order as the configuration's upstream groups.
    pub upstreams: Vec<UpstreamSnapshot>,
    /// Responses compressed, per coding.
    pub compression: CompressionCounts,
    /// Each configured request rate limit's counters, in the configuration's order.
    pub rate_limits: Vec<RateLimitCounts>,
}

/// How late the worker's event loop ran its timer: the tick sleeps 100 ms and measures how much
/// longer it took. A busy or blocked loop shows here first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopLag {
    /// On the last tick, in µs.
    pub last_us: u64,
    /// The largest over the last second, in µs.
    pub max_us: u64,
}

#[derive(Debug, Clone)]
pub struct ListenerSnapshot {
    pub name: String,
    /// `http`, `https`, …
    pub protocol: &'static str,
    pub counts: ListenerCounts,
}

#[derive(Debug, Clone)]
pub struct RouteSnapshot {
    pub listener: String,
    /// Position among the listener's routes (the catch-all `upstream` of a listener is last).
    pub index: usize,
    /// What it matches, e.g. `*.example.com/v2/` or `/`.
    pub matches: String,
    pub upstream: String,
    pub responses: ClassCounts,
}

#[derive(Debug, Clone)]
pub struct UpstreamSnapshot {
    pub name: String,
    /// The balancing algorithm's configuration name.
    pub balance: &'static str,
    pub counts: UpstreamCounts,
    /// Same order as the group's backends in the configuration.
    pub backends: Vec<BackendSnapshot>,
}

#[derive(Debug, Clone)]
pub struct BackendSnapshot {
    pub address: SocketAddr,
    pub state: BackendState,
    pub circuit: CircuitState,
    /// The active health checks' verdict (true without a `[health]` section).
    pub healthy: bool,
    pub backup: bool,
    /// The weight in force (a runtime override, else the configured one).
    pub weight: u32,
    pub configured_weight: u32,
    /// Set at runtime by the admin API until the next reload.
    pub drain_override: Option<bool>,
    pub weight_override: Option<u32>,
    pub in_flight: u32,
    /// Idle keep-alive connections in its pool.
    pub idle_connections: usize,
    /// Ejections in a row on this worker (decays while it behaves).
    pub ejections_in_a_row: u32,
    /// Slow-start progress, per mille (1000 when not ramping).
    pub ramp: u32,
    pub counts: BackendCounts,
    /// The latencies of second number [`WorkerSnapshot::second`], if it had any.
    pub last_second: Option<Arc<Histogram<u32>>>,
}

/// A worker's latest snapshot: written by the worker on its tick, read by anyone.
#[derive(Debug, Default)]
pub struct Published(Mutex<Option<Arc<WorkerSnapshot>>>);

impl Published {
    pub fn store(&self, snapshot: WorkerSnapshot) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(snapshot));
    }

    /// `None` until the worker's first tick.
    pub fn load(&self) -> Option<Arc<WorkerSnapshot>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
