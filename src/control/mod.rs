//! The control side's handle on a running proxy, and what a reload may change.
//!
//! [`ControlHandle`] (cloneable, `Send`) is what the control thread, the signal handlers and the
//! admin API drive: [`ControlHandle::reload`] swaps the configuration on every worker (two-phase:
//! prepare everywhere, then commit or abort everywhere), [`ControlHandle::shutdown`] stops
//! accepting and drains, and it reads the workers' published metrics and heartbeats. [`reload`]
//! says which changes a reload applies and how one is refused. [`HealthChecker`] probes the
//! backends once for all workers and publishes its verdicts to them; [`systemd`] holds the
//! services that drive the proxy from systemd's signals and timers.

mod handle;
mod health_checker;
mod reload;
pub mod signals;
pub mod systemd;

pub use handle::{ControlHandle, Counters, WorkerLink};
pub use health_checker::HealthChecker;
pub use reload::{ReloadError, ReloadReport};
