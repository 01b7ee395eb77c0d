//! Units and their state: `ListUnitsByPatterns` for the names, `GetUnit` (or `LoadUnit`) for a
//! unit's object, then two `Properties.GetAll` calls (the `Unit` interface, and the type's own:
//! `Service` for a service) read into a [`UnitState`]. `socket_listen` reads a socket unit's
//! `Listen`.
//!
//! systemd writes "not accounted" and "no limit" as `u64::MAX`: both read as `None`.

use super::connect::{body, error_name, MANAGER_INTERFACE, MANAGER_PATH, PROPERTIES_INTERFACE};
use super::{BusError, Manager, UnitState};
use crate::config::UnitResources;
use std::collections::HashMap;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const SOCKET_INTERFACE: &str = "org.freedesktop.systemd1.Socket";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

type Properties = HashMap<String, OwnedValue>;

/// `ListUnitsByPatterns([], patterns)`: the names of the loaded units that match.
pub fn list(manager: &Manager, patterns: &[String]) -> Result<Vec<String>, BusError> {
    let what = format!("list the units {patterns:?}");
    let reply = manager.call(
        &what,
        MANAGER_PATH,
        MANAGER_INTERFACE,
        "ListUnitsByPatterns",
        &(Vec::<String>::new(), patterns),
    )?;
    // (name, description, load, active, sub, following, path, job id, job type, job path)
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        OwnedObjectPath,
        u32,
        String,
        OwnedObjectPath,
    );
    let rows: Vec<Row> = body(&reply, &what)?;
    let mut names: Vec<String> = rows.into_iter().map(|row| row.0).collect();
    names.sort();
    Ok(names)
}

/// `GetUnit`: the object path of a loaded unit; `None` when systemd has not loaded it.
fn get_unit(manager: &Manager, unit: &str) -> Result<Option<OwnedObjectPath>, BusError> {
    let what = format!("find the unit {unit}");
    match manager.call(&what, MANAGER_PATH, MANAGER_INTERFACE, "GetUnit", &(unit,)) {
        Ok(reply) => body(&reply, &what).map(Some),
        Err(error) if error_name(&error) == Some(NO_SUCH_UNIT) => Ok(None),
        Err(error) => Err(error),
    }
}

/// [`super::Manager::read_unit`].
pub fn read(manager: &Manager, unit: &str) -> Result<Option<UnitState>, BusError> {
    match get_unit(manager, unit)? {
        Some(path) => read_at(manager, unit, &path).map(Some),
        None => Ok(None),
    }
}

/// [`super::Manager::load_unit`].
pub fn load(manager: &Manager, unit: &str) -> Result<UnitState, BusError> {
    let what = format!("load the unit {unit}");
    let reply = manager.call(&what, MANAGER_PATH, MANAGER_INTERFACE, "LoadUnit", &(unit,))?;
    let path: OwnedObjectPath = body(&reply, &what)?;
    read_at(manager, unit, &path)
}

fn read_at(manager: &Manager, unit: &str, path: &OwnedObjectPath) -> Result<UnitState, BusError> {
    let common = get_all(manager, unit, path, UNIT_INTERFACE)?;
    let own = match type_interface(unit) {
        Some(interface) => get_all(manager, unit, path, interface)?,
        None => Properties::new(),
    };
    Ok(unit_state(unit, common, own))
}

fn get_all(
    manager: &Manager,
    unit: &str,
    path: &OwnedObjectPath,
    interface: &str,
) -> Result<Properties, BusError> {
    let what = format!("read the properties of {unit} ({interface})");
    let reply = manager.call(
        &what,
        path.as_str(),
        PROPERTIES_INTERFACE,
        "GetAll",
        &(interface,),
    )?;
    body(&reply, &what)
}

/// The interface with a unit type's own properties (the cgroup figures are on each type that
/// has a cgroup; `NRestarts` and `MainPID` only on services).
fn type_interface(unit: &str) -> Option<&'static str> {
    Some(match unit.rsplit_once('.')?.1 {
        "service" => "org.freedesktop.systemd1.Service",
        "socket" => SOCKET_INTERFACE,
        "scope" => "org.freedesktop.systemd1.Scope",
        "slice" => "org.freedesktop.systemd1.Slice",
        "mount" => "org.freedesktop.systemd1.Mount",
        "swap" => "org.freedesktop.systemd1.Swap",
        _ => return None,
    })
}

/// A [`UnitState`] from the `Unit` interface's properties and the unit type's own; a property
/// that is missing or of another type reads as its default.
pub fn unit_state(name: &str, common: Properties, own: Properties) -> UnitState {
    let string = |key: &str| {
        common
            .get(key)
            .and_then(|v| <&str>::try_from(v).ok())
            .unwrap_or_default()
            .to_owned()
    };
    let own_u64 = |key: &str| own.get(key).and_then(|v| u64::try_from(v).ok());
    let own_u32 = |key: &str| own.get(key).and_then(|v| u32::try_from(v).ok());
    // u64::MAX: not accounted, or no limit.
    let counted = |key: &str| own_u64(key).filter(|&v| v != u64::MAX);
    let invocation_id = common
        .get("InvocationID")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<u8>::try_from(v).ok())
        .map(|bytes| hex(&bytes))
        .unwrap_or_default();
    UnitState {
        name: name.to_owned(),
        load_state: string("LoadState"),
        active_state: string("ActiveState"),
        sub_state: string("SubState"),
        invocation_id,
        n_restarts: own_u32("NRestarts").unwrap_or(0),
        main_pid: own_u32("MainPID").unwrap_or(0),
        active_since_us: common
            .get("ActiveEnterTimestamp")
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        cpu_usage_ns: counted("CPUUsageNSec"),
        memory_bytes: counted("MemoryCurrent"),
        tasks: counted("TasksCurrent"),
        limits: UnitResources {
            cpu_quota_percent: counted("CPUQuotaPerSecUSec")
                .map(|usec| u32::try_from(usec / 10_000).unwrap_or(u32::MAX)),
            memory_max: counted("MemoryMax"),
            tasks_max: counted("TasksMax"),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`super::Manager::socket_listen`].
pub fn socket_listen(manager: &Manager, socket_unit: &str) -> Result<Vec<String>, BusError> {
    let Some(path) = get_unit(manager, socket_unit)? else {
        return Ok(Vec::new());
    };
    let what = format!("read what {socket_unit} listens on");
    let reply = manager.call(
        &what,
        path.as_str(),
        PROPERTIES_INTERFACE,
        "Get",
        &(SOCKET_INTERFACE, "Listen"),
    )?;
    let value: OwnedValue = body(&reply, &what)?;
    let listen = Vec::<(String, String)>::try_from(value).map_err(|e| BusError::Call {
        what,
        reason: format!("unexpected Listen: {e}"),
    })?;
    Ok(stream_addresses(listen))
}

/// The addresses of the `Stream` entries of a socket's `Listen` (`[("Stream",
/// "127.0.0.1:8001")]`).
fn stream_addresses(listen: Vec<(String, String)>) -> Vec<String> {
    listen
        .into_iter()
        .filter(|(kind, _)| kind == "Stream")
        .map(|(_, address)| address)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn props(entries: Vec<(&str, Value<'static>)>) -> Properties {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.try_to_owned().unwrap()))
            .collect()
    }

    #[test]
    fn properties_read_into_a_unit_state() {
        let common = props(vec![
            ("LoadState", Value::from("loaded")),
            ("ActiveState", Value::from("active")),
            ("SubState", Value::from("running")),
            ("InvocationID", Value::from(vec![0x0au8, 0xff, 0x00, 0x42])),
            (
                "ActiveEnterTimestamp",
                Value::from(1_700_000_000_000_000u64),
            ),
        ]);
        let own = props(vec![
            ("NRestarts", Value::from(3u32)),
            ("MainPID", Value::from(4242u32)),
            ("CPUUsageNSec", Value::from(123_456u64)),
            ("MemoryCurrent", Value::from(8_388_608u64)),
            ("TasksCurrent", Value::from(u64::MAX)),
            ("CPUQuotaPerSecUSec", Value::from(500_000u64)),
            ("MemoryMax", Value::from(268_435_456u64)),
            ("TasksMax", Value::from(u64::MAX)),
        ]);
        let state = unit_state("api@2.service", common, own);
        assert_eq!(
            state,
            UnitState {
                name: "api@2.service".into(),
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
                invocation_id: "0aff0042".into(),
                n_restarts: 3,
                main_pid: 4242,
                active_since_us: 1_700_000_000_000_000,
                cpu_usage_ns: Some(123_456),
                memory_bytes: Some(8_388_608),
                tasks: None,
                limits: UnitResources {
                    cpu_quota_percent: Some(50),
                    memory_max: Some(268_435_456),
                    tasks_max: None,
                },
            }
        );
    }

    #[test]
    fn missing_or_mistyped_properties_read_as_defaults() {
        let common = props(vec![
            ("LoadState", Value::from("not-found")),
            ("ActiveState", Value::from(7u32)),
        ]);
        let state = unit_state("gone.service", common, Properties::new());
        assert_eq!(state.load_state, "not-found");
        assert_eq!(state.active_state, "");
        assert_eq!(state.invocation_id, "");
        assert_eq!(state.main_pid, 0);
        assert_eq!(state.memory_bytes, None);
        assert!(state.limits.is_empty());
    }

    #[test]
    fn each_unit_type_has_its_interface() {
        assert_eq!(
            type_interface("api@1.service"),
            Some("org.freedesktop.systemd1.Service")
        );
        assert_eq!(type_interface("api@1.socket"), Some(SOCKET_INTERFACE));
        assert_eq!(type_interface("api.target"), None);
        assert_eq!(type_interface("api"), None);
    }

    #[test]
    fn only_stream_entries_are_addresses() {
        let listen = vec![
            ("Stream".to_owned(), "127.0.0.1:8001".to_owned()),
            ("Datagram".to_owned(), "127.0.0.1:9001".to_owned()),
            ("Stream".to_owned(), "[::1]:8001".to_owned()),
        ];
        assert_eq!(
            stream_addresses(listen),
            vec!["127.0.0.1:8001".to_owned(), "[::1]:8001".to_owned()]
        );
    }
}
