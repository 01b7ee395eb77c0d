//! What the control loop is asked to do: the [`Command`]s that signals, the admin API, the health
//! checker and `lbproxy up` send it, and the channel they travel on.
//!
//! A command that wants an answer carries a reply sender (a oneshot in all but name: one answer,
//! then dropped); [`Commands::request`] sends one and waits for that answer. The loop answers
//! every command it receives, in order; when it has exited the reply sender is dropped unanswered
//! and the requester learns it at once (`None`), so no caller waits for a loop that is gone.

use super::broadcast::Gathered;
use super::discovery::Discovered;
use super::reload::{ReloadError, ReloadReport};
use crate::config::Config;
use crate::health::HealthTable;
pub use crate::history::Via;
use crate::runtime::command::{BackendChange, Reply};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// One request to the control loop.
#[derive(Debug)]
pub enum Command {
    /// Reload: SIGHUP, `POST /api/reload`, `lbproxy up`'s reloads, [`super::ControlHandle`].
    /// The outcome goes to `reply` when there is one; the loop logs it either way.
    Reload {
        from: ReloadFrom,
        reply: Option<Sender<Result<ReloadReport, ReloadError>>>,
    },
    /// The drain began (SIGTERM, SIGINT, [`super::ControlHandle::shutdown`]): tell systemd and
    /// report its progress, stop the jobs that only make sense while serving, refuse reloads.
    Stop,
    /// A runtime change to one backend on every worker (the admin API), answered once every
    /// worker applied it or the deadline passed.
    Backend {
        group: String,
        address: SocketAddr,
        change: BackendChange,
        reply: Option<Sender<Gathered<Reply>>>,
    },
    /// The active health checks' latest verdicts: kept for the controllers' view and published
    /// to every worker.
    Health(Arc<HealthTable>),
    /// Fault injection for the watchdog tests (SIGUSR2, only with `LBPROXY_ALLOW_FAULTS=1`):
    /// stall worker 0 for good.
    FaultStall,
    /// What the discovery watcher read: kept for the controllers' view.
    Discovered(Discovered),
    /// Leave the loop (the server is stopping, its workers have exited).
    Exit,
}

/// Where a reload's configuration comes from.
#[derive(Debug)]
pub enum ReloadFrom {
    /// Read again from where the running one came from (same file, same `--env`, the process
    /// environment for `${VAR}`), adjusted as the process asks (`lbproxy up` keeps its
    /// instances). Under systemd it is announced (`RELOADING=1` … `READY=1`) and its outcome
    /// recorded for `lbproxy reload`; once it serves, it goes to the configuration history,
    /// with how it was asked for (SIGHUP or the admin API).
    Source(Via),
    /// This configuration (a controller's action, or a library caller's).
    Config(Box<Config>),
}

/// The sending end of the control loop's channel: cloneable, `Send`.
#[derive(Debug, Clone)]
pub struct Commands {
    sender: Sender<Command>,
}

/// The loop's end of the channel.
#[derive(Debug)]
pub struct Inbox {
    pub(super) receiver: Receiver<Command>,
}

/// A new channel to a control loop. Commands sent before the loop runs wait for it (`lbproxy up`
/// forwards SIGHUP from before its proxy started).
pub fn channel() -> (Commands, Inbox) {
    let (sender, receiver) = mpsc::channel();
    (Commands { sender }, Inbox { receiver })
}

impl Commands {
    /// Sends `command` without waiting; false when the loop has exited.
    pub fn send(&self, command: Command) -> bool {
        self.sender.send(command).is_ok()
    }

    /// Sends the command `make` builds around a reply sender and waits for the answer. `None`
    /// when the loop has exited (or exits before answering).
    pub fn request<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = mpsc::channel();
        if !self.send(make(reply)) {
            return None;
        }
        answer.recv().ok()
    }
}
