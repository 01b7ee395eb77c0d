//! What every request handler can see: who this instance is, how many requests it has served,
//! and whether it is ready.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::faults::Faults;
use crate::readiness::ReadinessFlag;

/// Shared by all handlers and the startup/shutdown tasks.
pub type SharedState = Arc<AppState>;

#[derive(Debug)]
pub struct AppState {
    pub instance: u16,
    pub pid: u32,
    /// The address actually bound (the real port when `--listen` asked for port 0).
    pub listen: SocketAddr,
    pub readiness: ReadinessFlag,
    /// Injected faults (`/admin/ready`, `/admin/fail`).
    pub faults: Faults,
    requests_served: AtomicU64,
}

impl AppState {
    pub fn new(instance: u16, listen: SocketAddr) -> SharedState {
        Arc::new(AppState {
            instance,
            pid: std::process::id(),
            listen,
            readiness: ReadinessFlag::starting(),
            faults: Faults::default(),
            requests_served: AtomicU64::new(0),
        })
    }

    /// Counts one more request; called as each request arrives, before its handler runs.
    pub fn count_request(&self) {
        self.requests_served.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests received so far by this process, including any still in progress.
    pub fn requests_served(&self) -> u64 {
        self.requests_served.load(Ordering::Relaxed)
    }
}
