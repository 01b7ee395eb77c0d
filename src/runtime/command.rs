//! Commands from the control loop to the workers (it is their only sender; see
//! `crate::control`, whose `Workers::gather` sends one to every worker and collects the answers
//! within a deadline).
//!
//! Cross-thread data is either an immutable snapshot or a command (see docs/architecture.md).
//! Each worker has its own channel and drains it on its housekeeping tick ([`super::TICK`]), so a
//! command takes effect within one tick and nothing on the request path ever looks at the channel.
//!
//! A reload is two-phase: `Prepare` on every worker (each builds its new state beside the one
//! serving and answers), then `Commit` everywhere when all answered yes, or `Abort` everywhere
//! otherwise, so the workers never run different configurations for longer than a tick.
//!
//! Active health verdicts arrive the same way: the control loop publishes a new immutable table
//! with `Health` whenever the health checker reports a changed verdict. So do the admin API's runtime changes to a
//! backend (`Backend`: drain, enable, weight), which last until the next reload commits.

use crate::config::Config;
use crate::health::HealthTable;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::mpsc::Sender;
use std::sync::Arc;

#[derive(Debug)]
pub enum WorkerCommand {
    /// Build the state for `config` (reload number `reload`) beside the current one, keep it
    /// pending, and answer on `reply`: `Ok`, or the reason it cannot run `config`.
    Prepare {
        reload: u64,
        config: Arc<Config>,
        /// Runtime overrides (admin drain and weight) survive the commit: a change of a
        /// discovered group's backends, not a reload of the configuration.
        keep_overrides: bool,
        reply: Sender<Reply>,
    },
    /// Serve new requests from the state prepared for `reload`, then say so on `done`.
    Commit { reload: u64, done: Sender<()> },
    /// Drop the state prepared for `reload`.
    Abort { reload: u64 },
    /// Fault injection for the watchdog tests: block the worker thread for good, as a stuck ring
    /// or a runaway loop would. Sent only by [`crate::control::systemd::fault`], which refuses unless
    /// `LBPROXY_ALLOW_FAULTS=1`.
    FaultStall,
    /// The latest active-health verdicts: apply them (and keep them for the generations that
    /// later reloads build).
    Health(Arc<HealthTable>),
    /// A runtime change to one backend, from the admin API.
    Backend(BackendCommand),
}

/// Change backend `address` of group `group` on the worker's serving generation, then answer
/// on `done`: `Ok`, or `Err` when it has no such backend (a reload committed in between).
#[derive(Debug)]
pub struct BackendCommand {
    pub group: String,
    pub address: SocketAddr,
    pub change: BackendChange,
    pub done: Sender<Reply>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChange {
    /// No new requests; those in flight finish; idle connections close.
    Drain,
    /// Take new requests again (also one the configuration drains).
    Enable,
    /// Use this weight instead of the configured one.
    Weight(NonZeroU32),
    /// It restarted without the proxy asking (its systemd unit has a new invocation): forget
    /// its outlier state (circuit, ejections), close its idle connections (they were to the
    /// old process) and ramp it up again with slow start.
    Restarted,
}

/// A worker's answer to a `Prepare` or a [`BackendCommand`]: `Err(reason)` when it cannot. Each
/// worker answers on a channel of its own (see `crate::control`'s `Workers::gather`), which says
/// whose answer it is.
pub type Reply = Result<(), String>;
