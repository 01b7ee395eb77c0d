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
//!
//! One concept per file: [`connect`] (addresses, connecting, the call and its errors),
//! [`unit`](mod@unit) (unit names and properties → [`UnitState`], socket addresses), [`events`]
//! (the subscription and its reader thread), [`jobs`] (the actions and their jobs),
//! [`resources`] (SetUnitProperties), [`path`] (object path escaping).

pub mod connect;
pub mod events;
pub mod jobs;
pub mod path;
pub mod resources;
pub mod unit;

use crate::config::{SystemdBus, UnitResources};
use jobs::Action;
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
    /// The D-Bus address: each subscription connects to it again.
    address: String,
    connection: zbus::blocking::Connection,
}

/// The signals of a [`Manager::subscribe`]: a thread reads them off a connection of their own.
/// Dropping it closes that connection, which ends the subscription and the thread.
#[derive(Debug)]
pub struct Events {
    receiver: Receiver<Event>,
    _signals: events::Signals,
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
        let address = connect::address_from_env(bus).map_err(|reason| BusError::Unavailable {
            bus: bus.as_str(),
            reason,
            fix: connect::fix(bus),
        })?;
        connect::connect(bus, &address)
    }

    /// Connects to the D-Bus `address` (`unix:path=/run/user/1000/bus`) as `bus`'s manager and
    /// checks that systemd answers there.
    pub fn connect_address(bus: SystemdBus, address: &str) -> Result<Manager, BusError> {
        connect::connect(bus, address)
    }

    /// The D-Bus address connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn bus(&self) -> SystemdBus {
        self.bus
    }

    /// The loaded units whose names match any of `patterns` (ListUnitsByPatterns, every state).
    pub fn list_units(&self, patterns: &[String]) -> Result<Vec<String>, BusError> {
        unit::list(self, patterns)
    }

    /// Everything [`UnitState`] holds about `unit`; `None` when systemd does not know it (not
    /// loaded).
    pub fn read_unit(&self, unit: &str) -> Result<Option<UnitState>, BusError> {
        unit::read(self, unit)
    }

    /// The stream addresses a socket unit listens on (`Listen`, type `Stream`), e.g.
    /// `["127.0.0.1:8001"]`; empty when the socket unit is not loaded.
    pub fn socket_listen(&self, socket_unit: &str) -> Result<Vec<String>, BusError> {
        unit::socket_listen(self, socket_unit)
    }

    /// `LoadUnit`: as [`Manager::read_unit`], but loads the unit from disk if systemd has not
    /// (as `systemctl show` does): a unit file that exists reads as `loaded` whether or not it
    /// ran, one that does not as `not-found`.
    pub fn load_unit(&self, unit: &str) -> Result<UnitState, BusError> {
        unit::load(self, unit)
    }

    /// Subscribe (so systemd emits its signals) and follow UnitNew, UnitRemoved, JobRemoved and
    /// PropertiesChanged of unit objects.
    pub fn subscribe(&self) -> Result<Events, BusError> {
        let (signals, receiver) = events::open(self, events::rules()?, events::event)?;
        Ok(Events {
            receiver,
            _signals: signals,
        })
    }

    /// StartUnit(`unit`, "replace"), returning once its job was removed with result `done`.
    pub fn start(&self, unit: &str, within: Duration) -> Result<(), BusError> {
        jobs::run(self, Action::Start, unit, within)
    }

    /// StopUnit, as [`Manager::start`].
    pub fn stop(&self, unit: &str, within: Duration) -> Result<(), BusError> {
        jobs::run(self, Action::Stop, unit, within)
    }

    /// RestartUnit, as [`Manager::start`].
    pub fn restart(&self, unit: &str, within: Duration) -> Result<(), BusError> {
        jobs::run(self, Action::Restart, unit, within)
    }

    /// SetUnitProperties(`unit`, runtime = true, …) for every limit `resources` sets
    /// (`CPUQuotaPerSecUSec`, `MemoryMax`, `TasksMax`): in force at once, gone at reboot, visible
    /// in `systemctl show`.
    pub fn set_resources(&self, unit: &str, resources: &UnitResources) -> Result<(), BusError> {
        resources::set(self, unit, resources)
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

/// A unit name as systemd takes it over D-Bus: `api@1` → `api@1.service` (systemctl adds
/// `.service` to a name without a unit type; the D-Bus API does not).
pub fn unit_name(name: &str) -> String {
    const TYPES: [&str; 11] = [
        "service",
        "socket",
        "target",
        "device",
        "mount",
        "automount",
        "swap",
        "timer",
        "path",
        "slice",
        "scope",
    ];
    match name.rsplit_once('.') {
        Some((_, suffix)) if TYPES.contains(&suffix) => name.to_owned(),
        _ => format!("{name}.service"),
    }
}

/// `systemctl --user` or `systemctl`: the command a person would type for `bus`.
pub fn systemctl_command(bus: SystemdBus) -> &'static str {
    match bus {
        SystemdBus::User => "systemctl --user",
        SystemdBus::System => "systemctl",
    }
}

/// How to read a unit's log: `journalctl --user-unit api@1.service -n 50`.
pub fn journal_hint(bus: SystemdBus, unit: &str) -> String {
    match bus {
        SystemdBus::User => format!("journalctl --user-unit {unit} -n 50"),
        SystemdBus::System => format!("journalctl -u {unit} -n 50"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_socket_units_are_read_off_the_name() {
        assert_eq!(instance_of("api@12.service"), Some("12"));
        assert_eq!(instance_of("api@a.b.service"), Some("a.b"));
        assert_eq!(instance_of("api@.service"), None);
        assert_eq!(instance_of("api.service"), None);
        assert_eq!(instance_of("api@3"), None);
        assert_eq!(socket_unit_of("api@2.service"), "api@2.socket");
        assert_eq!(socket_unit_of("api@2"), "api@2.socket");
    }

    #[test]
    fn names_without_a_type_are_services() {
        assert_eq!(unit_name("api@1"), "api@1.service");
        assert_eq!(unit_name("api@1.service"), "api@1.service");
        assert_eq!(unit_name("api@1.socket"), "api@1.socket");
        assert_eq!(unit_name("api@v1.2"), "api@v1.2.service");
    }

    #[test]
    fn the_commands_read_as_typed() {
        assert_eq!(systemctl_command(SystemdBus::User), "systemctl --user");
        assert_eq!(systemctl_command(SystemdBus::System), "systemctl");
        assert_eq!(
            journal_hint(SystemdBus::User, "api@2.service"),
            "journalctl --user-unit api@2.service -n 50"
        );
        assert_eq!(
            journal_hint(SystemdBus::System, "api@2.service"),
            "journalctl -u api@2.service -n 50"
        );
    }
}
