//! The systemd protocols, below everything that uses them: what `lbproxy serve` does differently
//! when systemd runs it, and what the units in `systemd/` rely on. One concept per file:
//!
//! - [`activation`]: sockets passed by `lbproxy.socket` (`LISTEN_FDS`), matched to listeners by
//!   `FileDescriptorName=`; [`crate::listener`] uses them instead of binding.
//! - [`notify`]: `READY=1` once every worker listens, `STATUS=`, `RELOADING=1`, `STOPPING=1`,
//!   `EXTEND_TIMEOUT_USEC=`, `WATCHDOG=1` over `$NOTIFY_SOCKET` (sd-notify).
//! - [`journal`]: native journal logging with structured fields when stderr is the journal.
//! - [`install`]: `lbproxy systemd install --user`.
//!
//! The services that drive a running proxy from systemd's signals and timers (the watchdog, the
//! `STATUS=` line, SIGHUP reloads, the drain's timeout extensions, fault injection) are control
//! side: [`crate::control::systemd`].
//!
//! Flow in `lbproxy serve` ([`crate::cli`]): take the activation sockets (before any thread) →
//! start the server → install the SIGHUP, SIGTERM and fault handlers → start the watchdog and
//! status threads → `READY=1` → wait for the workers to exit.

pub mod activation;
pub mod bus;
pub mod install;
pub mod journal;
pub mod notify;

pub use notify::Notifier;
