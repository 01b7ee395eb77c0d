//! systemd's manager over D-Bus (zbus, blocking API): the units behind a `discover` group, their
//! state and cgroup figures, the signals that say they changed, and the instance actions (start,
//! stop, restart, runtime resource limits) that wait for systemd's job to finish.
//!
//! Control side only: every call blocks its thread (the discovery watcher, `lbproxy rollout`),
//! never a worker.
//!
//! Flow: [`Manager::connect`] to the user's or the system's bus → [`Manager::list_units`] with
//! the group's pattern and [`Manager::read_unit`] for each → [`Manager::subscribe`] for the
//! [`Event`]s that say which unit to read again. Instance actions ([`Manager::start`],
//! [`Manager::stop`], [`Manager::restart`]) return once systemd's job for them was removed,
//! with its result.

use crate::config::{SystemdBus, UnitResources};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// A unit as systemd reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `api@2.service`.
    pub name: String,
    /// `loaded`, `not-found`, `masked`, …
    pub load_state: String,
    /// `active`, `activating`, `deactivating`, `inactive`, `failed`, `reloading`, `maintenance`.
    pub active_state: String,
    /// `running`, `start`, `auto-restart`, `dead`, …
    pub sub_state: String,
    /// `InvocationID` in hex: new each time the unit starts; empty when it never ran.
    pub invocation_id: String,
    /// `NRestarts`: automatic restarts (`Restart=`) since the unit was last started by hand.
    pub n_restarts: u32,
    /// `MainPID`; 0 when no process runs.
    pub main_pid: u32,
    /// `ActiveEnterTimestamp`: µs since the epoch (realtime) when it last became active; 0: never.
    pub active_since_us: u64,
    /// `CPUUsageNSec`; `None` when accounting is off (systemd reports `u64::MAX`).
    pub cpu_usage_ns: Option<u64>,
    /// `MemoryCurrent`, bytes; `None` when not accounted.
    pub memory_bytes: Option<u64>,
    /// `TasksCurrent`; `None` when not accounted.
    pub tasks: Option<u64>,
    /// The limits in force: `CPUQuotaPerSecUSec` as percent of one CPU, `MemoryMax`,
    /// `TasksMax`; `None` where unlimited.
    pub limits: UnitResources,
}

/// Something changed in systemd that may concern a unit; the watcher reads the unit again (the
/// signal's own contents are not trusted to be complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `UnitNew`: a unit was loaded.
    UnitNew(String),
    /// `UnitRemoved`: a unit was unloaded.
    UnitRemoved(String),
    /// `PropertiesChanged` on a unit's object (its name, unescaped from the object path).
    Changed(String),
    /// `JobRemoved`: a job for the unit ended with `result` (`done`, `failed`, `canceled`, …).
    JobRemoved { unit: String, result: String },
}

/// Why a call to systemd failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No bus to connect to, or systemd is not on it.
    #[error("cannot reach the {bus} service manager over D-Bus: {reason}. {fix}")]
    Unavailable {
        bus: &'static str,
        reason: String,
        fix: String,
    },
    /// systemd (or polkit) refused the call: retrying will not help.
    #[error("systemd refused to {what}: {message} ({name})")]
    Refused {
        what: String,
        /// The D-Bus error name, e.g. `org.freedesktop.DBus.Error.AccessDenied`.
        name: String,
        message: String,
    },
    /// The job systemd ran for an action ended with another result than `done`.
    #[error("{verb} {unit}: systemd's job ended with result \"{result}\" (see {journal_hint})")]
    JobFailed {
        verb: &'static str,
        unit: String,
        result: String,
        journal_hint: String,
    },
    /// The job did not end within the deadline (it may still finish).
    #[error("{verb} {unit}: systemd's job did not finish within {waited:?}")]
    JobTimeout {
        verb: &'static str,
        unit: String,
        waited: Duration,
    },
    /// The connection broke or a reply could not be read: retrying (after reconnecting) may help.
    #[error("D-Bus call to {what} failed: {reason}")]
    Call { what: String, reason: String },
}

/// A connection to one service manager.
#[derive(Debug, Clone)]
pub struct Manager {
    bus: SystemdBus,
}

/// The signals of a [`Manager::subscribe`]: a thread reads them off the connection.
#[derive(Debug)]
pub struct Events {
    receiver: Receiver<Event>,
}

impl Events {
    /// The next event, waiting at most `timeout`. `Disconnected` when the connection broke:
    /// connect again and read everything (events were missed).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout)
    }
}

impl Manager {
    /// Connects to `bus` (the user's: `$DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus`; the system's: `/run/dbus/system_bus_socket`) and checks that
    /// systemd answers there.
    pub fn connect(bus: SystemdBus) -> Result<Manager, BusError> {
        let _ = bus;
        todo!()
    }

    pub fn bus(&self) -> SystemdBus {
        self.bus
    }

    /// The loaded units whose names match any of `patterns` (ListUnitsByPatterns, every state).
    pub fn list_units(&self, patterns: &[String]) -> Result<Vec<String>, BusError> {
        let _ = patterns;
        todo!()
    }

    /// Everything [`UnitState`] holds about `unit`; `None` when systemd does not know it (not
    /// loaded).
    pub fn read_unit(&self, unit: &str) -> Result<Option<UnitState>, BusError> {
        let _ = unit;
        todo!()
    }

    /// The stream addresses a socket unit listens on (`Listen`, type `Stream`), e.g.
    /// `["127.0.0.1:8001"]`; empty when the socket unit is not loaded.
    pub fn socket_listen(&self, socket_unit: &str) -> Result<Vec<String>, BusError> {
        let _ = socket_unit;
        todo!()
    }

    /// Subscribe (so systemd emits its signals) and follow UnitNew, UnitRemoved, JobRemoved and
    /// PropertiesChanged of unit objects.
    pub fn subscribe(&self) -> Result<Events, BusError> {
        todo!()
    }

    /// StartUnit(`unit`, "replace"), returning once its job was removed with result `done`.
    pub fn start(&self, unit: &str, within: Duration) -> Result<(), BusError> {
        let _ = (unit, within);
        todo!()
    }

    /// StopUnit, as [`Manager::start`].
    pub fn stop(&self, unit: &str, within: Duration) -> Result<(), BusError> {
        let _ = (unit, within);
        todo!()
    }

    /// RestartUnit, as [`Manager::start`].
    pub fn restart(&self, unit: &str, within: Duration) -> Result<(), BusError> {
        let _ = (unit, within);
        todo!()
    }

    /// SetUnitProperties(`unit`, runtime = true, …) for every limit `resources` sets
    /// (`CPUQuotaPerSecUSec`, `MemoryMax`, `TasksMax`): in force at once, gone at reboot, visible
    /// in `systemctl show`.
    pub fn set_resources(&self, unit: &str, resources: &UnitResources) -> Result<(), BusError> {
        let _ = (unit, resources);
        todo!()
    }
}

/// The instance part of a template instance's name: `api@12.service` → `12`.
pub fn instance_of(unit: &str) -> Option<&str> {
    let (_, rest) = unit.split_once('@')?;
    let (instance, _) = rest.rsplit_once('.')?;
    (!instance.is_empty()).then_some(instance)
}

/// The socket unit of a service unit: `api@2.service` → `api@2.socket`.
pub fn socket_unit_of(unit: &str) -> String {
    let stem = unit.strip_suffix(".service").unwrap_or(unit);
    format!("{stem}.socket")
}
