//! The systemd integration layer: what `lbproxy serve` does differently when systemd runs it,
//! and what the units in `systemd/` rely on. One concept per file:
//!
//! - [`activation`]: sockets passed by `lbproxy.socket` (`LISTEN_FDS`), matched to listeners by
//!   `FileDescriptorName=`; [`crate::listener`] uses them instead of binding.
//! - [`notify`]: `READY=1` once every worker listens, `STATUS=`, `RELOADING=1`, `STOPPING=1`,
//!   `EXTEND_TIMEOUT_USEC=`, `WATCHDOG=1` over `$NOTIFY_SOCKET` (sd-notify).
//! - [`watchdog`]: the honest watchdog — pings only while every worker's event loop ticks.
//! - [`status`]: the live `STATUS=` line (workers, backends, requests/s, connections, reloads).
//! - [`reload`]: SIGHUP → two-phase reload on every worker → outcome recorded for the
//!   `ExecReload=` helper `lbproxy reload --pid $MAINPID`, which waits for it, so `systemctl
//!   reload` returns once the new configuration serves, or fails with the reasons.
//! - [`drain`]: `STOPPING=1` and, while the drain makes progress, `EXTEND_TIMEOUT_USEC=`.
//! - [`journal`]: native journal logging with structured fields when stderr is the journal.
//! - [`install`]: `lbproxy systemd install --user`.
//! - [`fault`]: the watchdog's fault injection, refused unless `LBPROXY_ALLOW_FAULTS=1`.
//!
//! Flow in `lbproxy serve` ([`crate::cli`]): take the activation sockets (before any thread) →
//! start the server → install the SIGHUP, SIGTERM and fault handlers → start the watchdog and
//! status threads → `READY=1` → wait for the workers to exit.

pub mod activation;
pub mod drain;
pub mod fault;
pub mod install;
pub mod journal;
pub mod notify;
pub mod reload;
pub mod status;
pub mod watchdog;

pub use notify::Notifier;
