//! The control side's systemd services, each driving a running proxy through its
//! [`ControlHandle`](crate::control::ControlHandle) and speaking to systemd through
//! [`crate::systemd`]:
//!
//! - [`watchdog`]: the honest watchdog — pings only while every worker's event loop ticks.
//! - [`status`]: the live `STATUS=` line (workers, backends, requests/s, connections, reloads).
//! - [`reload`]: SIGHUP → two-phase reload on every worker → outcome recorded for the
//!   `ExecReload=` helper `lbproxy reload --pid $MAINPID`, which waits for it, so `systemctl
//!   reload` returns once the new configuration serves, or fails with the reasons.
//! - [`drain`]: `STOPPING=1` and, while the drain makes progress, `EXTEND_TIMEOUT_USEC=`.
//! - [`fault`]: the watchdog's fault injection, refused unless `LBPROXY_ALLOW_FAULTS=1`.

pub mod drain;
pub mod fault;
pub mod reload;
pub mod status;
pub mod watchdog;
