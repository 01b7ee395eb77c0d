//! The instance actions: `StartUnit`, `StopUnit` or `RestartUnit` (mode `replace`) returns a job,
//! and the action is over when systemd removes that job, with its result.
//!
//! Flow ([`run`]): subscribe to `JobRemoved` first (a job can end before its call's reply is
//! read: the signal waits in the channel) → call → read the signals until the one for the
//! returned job path, or the deadline. `done` is success; any other result (`failed`, `timeout`,
//! `dependency`, `canceled`, …) is [`BusError::JobFailed`] with where to read the unit's log.

use super::connect::{body, MANAGER_INTERFACE, MANAGER_PATH};
use super::events::{self, JobRemoved};
use super::{journal_hint, BusError, Manager};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};
use zbus::zvariant::OwnedObjectPath;

/// An action on a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    /// As `systemctl` spells it: `restart`.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Action::Start => "StartUnit",
            Action::Stop => "StopUnit",
            Action::Restart => "RestartUnit",
        }
    }
}

/// Runs `action` on `unit` and waits at most `within` for its job to end.
pub fn run(
    manager: &Manager,
    action: Action,
    unit: &str,
    within: Duration,
) -> Result<(), BusError> {
    let deadline = Instant::now() + within;
    let rule = events::manager_signal("JobRemoved").map_err(|e| BusError::Call {
        what: "subscribe to systemd's signals".into(),
        reason: e.to_string(),
    })?;
    // Held until the job's end is known: dropping it ends the subscription and its thread.
    let (_signals, removed) = events::open(manager, vec![rule], events::job_removed)?;
    let what = format!("{} {unit}", action.verb());
    let reply = manager.call(
        &what,
        MANAGER_PATH,
        MANAGER_INTERFACE,
        action.method(),
        &(unit, "replace"),
    )?;
    let job: OwnedObjectPath = body(&reply, &what)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match removed.recv_timeout(left) {
            Ok(JobRemoved {
                job: removed_job,
                result,
                ..
            }) if removed_job == job.as_str() => {
                return outcome(manager, action, unit, result);
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(BusError::JobTimeout {
                    verb: action.verb(),
                    unit: unit.to_owned(),
                    waited: within,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(BusError::Call {
                    what,
                    reason: format!(
                        "the connection broke while waiting for systemd's job {}",
                        job.as_str()
                    ),
                })
            }
        }
    }
}

fn outcome(manager: &Manager, action: Action, unit: &str, result: String) -> Result<(), BusError> {
    if result == "done" {
        return Ok(());
    }
    Err(BusError::JobFailed {
        verb: action.verb(),
        unit: unit.to_owned(),
        result,
        journal_hint: format!("`{}`", journal_hint(manager.bus, unit)),
    })
}
