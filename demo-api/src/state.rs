//! What every request handler can see: who this instance is (its number and the version it
//! runs), how many requests it has served, and whether it is ready.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::faults::{BadVersion, Faults};
use crate::readiness::ReadinessFlag;

/// Shared by all handlers and the startup/shutdown tasks.
pub type SharedState = Arc<AppState>;

#[derive(Debug)]
pub struct AppState {
    pub instance: u16,
    /// `--version NAME`, else `LBPROXY_VERSION`, else `v1`: what the `X-Api-Version` header and
    /// `GET /` report.
    pub version: String,
    pub pid: u32,
    /// The address actually bound (the real port when `--listen` asked for port 0).
    pub listen: SocketAddr,
    pub readiness: ReadinessFlag,
    /// Injected faults (`/admin/ready`, `/admin/fail`) and the bad version's.
    pub faults: Faults,
    requests_served: AtomicU64,
}

impl AppState {
    pub fn new(
        instance: u16,
        version: String,
        listen: SocketAddr,
        bad_version: BadVersion,
    ) -> SharedState {
        Arc::new(AppState {
            instance,
            version,
            pid: std::process::id(),
            listen,
            readiness: ReadinessFlag::starting(),
            faults: Faults::new(bad_version),
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
