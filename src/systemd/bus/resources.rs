//! Runtime resource limits: `SetUnitProperties(unit, runtime = true, …)`, as `systemctl
//! set-property --runtime` does. The limits take effect at once on the unit's cgroup, show in
//! `systemctl show`, and are gone at the next reboot (they live in `/run`, not in a drop-in
//! under `/etc`).

use super::connect::{MANAGER_INTERFACE, MANAGER_PATH};
use super::{BusError, Manager};
use crate::config::UnitResources;
use zbus::zvariant::Value;

/// The properties `resources` sets, as systemd names and types them.
pub fn properties(resources: &UnitResources) -> Vec<(&'static str, Value<'static>)> {
    let mut properties = Vec::new();
    if let Some(percent) = resources.cpu_quota_percent {
        // CPUQuota=50% is 500 000 µs of CPU time per second.
        properties.push((
            "CPUQuotaPerSecUSec",
            Value::from(u64::from(percent) * 10_000),
        ));
    }
    if let Some(bytes) = resources.memory_max {
        properties.push(("MemoryMax", Value::from(bytes)));
    }
    if let Some(tasks) = resources.tasks_max {
        properties.push(("TasksMax", Value::from(tasks)));
    }
    properties
}

/// [`super::Manager::set_resources`].
pub fn set(manager: &Manager, unit: &str, resources: &UnitResources) -> Result<(), BusError> {
    let properties = properties(resources);
    if properties.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    manager
        .call(
            &format!("set {} of {unit}", names.join(", ")),
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "SetUnitProperties",
            &(unit, true, properties),
        )
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_set_is_one_property() {
        assert!(properties(&UnitResources::default()).is_empty());
        let all = properties(&UnitResources {
            cpu_quota_percent: Some(150),
            memory_max: Some(256 << 20),
            tasks_max: Some(64),
        });
        assert_eq!(
            all,
            vec![
                ("CPUQuotaPerSecUSec", Value::from(1_500_000u64)),
                ("MemoryMax", Value::from(268_435_456u64)),
                ("TasksMax", Value::from(64u64)),
            ]
        );
        let memory = properties(&UnitResources {
            memory_max: Some(1),
            ..UnitResources::default()
        });
        assert_eq!(memory, vec![("MemoryMax", Value::from(1u64))]);
    }
}
