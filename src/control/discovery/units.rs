//! What the discovery watcher reads and the controller decides on: each discovered unit with its
//! backend address ([`DiscoveredUnit`]), every discovered group's units of one read
//! ([`Discovered`]), how a unit's state routes it ([`routing_of`]), and so the backends a group
//! should have ([`desired_backends`]).

use super::inventory::Routing;
use crate::config::{BackendConfig, SystemdBus};
use crate::systemd::bus::UnitState;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;

/// One unit matching a group's pattern, as last read.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredUnit {
    pub unit: UnitState,
    /// From the group's address template, or the unit's socket; `None` when neither gives one
    /// (the instance is not a number, or its socket unit listens on no stream address).
    pub address: Option<SocketAddr>,
    /// Its cgroup CPU use between the watcher's last two readings, in percent of one core
    /// (the autoscaler's `cpu` metric); `None` before two readings of one invocation.
    pub cpu_percent: Option<f64>,
}

impl DiscoveredUnit {
    pub fn routing(&self) -> Routing {
        routing_of(&self.unit, self.address)
    }
}

/// Every discovered group of one bus, as one read found them: group name → its units, sorted by
/// unit name. A group is missing when its units could not be read this time (its backends stay
/// as they are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    pub bus: Option<SystemdBus>,
    pub groups: BTreeMap<String, Vec<DiscoveredUnit>>,
}

/// The unit state as a health signal, ahead of the probes: active (or reloading) → a backend;
/// deactivating → drained (requests in flight finish); activating → not yet; failed, inactive,
/// in maintenance, not loaded → out. Without an address it cannot be a backend at all.
pub fn routing_of(unit: &UnitState, address: Option<SocketAddr>) -> Routing {
    if unit.load_state != "loaded" {
        return Routing::Out;
    }
    let routing = match unit.active_state.as_str() {
        "active" | "reloading" => Routing::Routed,
        "deactivating" => Routing::Draining,
        "activating" => Routing::Waiting,
        _ => Routing::Out,
    };
    match (routing, address) {
        (Routing::Routed, None) => Routing::Waiting,
        (Routing::Draining, None) => Routing::Out,
        (routing, _) => routing,
    }
}

/// The backends a discovered group should have: each routed unit's address, each draining
/// unit's address drained (only while it is still a backend: one never routed is not added to
/// be drained), in unit-name order; a second unit with an address already taken is left out.
/// The units in `new_version` (a deployment's canary or green instances) are marked `canary`.
pub fn desired_backends(
    units: &[DiscoveredUnit],
    current: &[BackendConfig],
    new_version: &BTreeSet<String>,
) -> Vec<BackendConfig> {
    let mut backends: Vec<BackendConfig> = Vec::new();
    for unit in units {
        let Some(address) = unit.address else {
            continue;
        };
        if backends.iter().any(|b| b.address == address) {
            continue;
        }
        let drain = match unit.routing() {
            Routing::Routed => false,
            Routing::Draining if current.iter().any(|b| b.address == address) => true,
            Routing::Draining | Routing::Waiting | Routing::Out => continue,
        };
        let weight = current
            .iter()
            .find(|b| b.address == address)
            .map_or(NonZeroU32::MIN, |b| b.weight);
        backends.push(BackendConfig {
            address,
            weight,
            backup: false,
            drain,
            canary: new_version.contains(&unit.unit.name),
        });
    }
    backends
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// `api@N.service` in `state`, at 127.0.0.1:8000+N, started as invocation `invocation`.
    pub(crate) fn unit(n: u16, state: &str, invocation: &str) -> DiscoveredUnit {
        DiscoveredUnit {
            unit: UnitState {
                name: format!("api@{n}.service"),
                load_state: "loaded".into(),
                active_state: state.into(),
                sub_state: match state {
                    "active" => "running",
                    "activating" => "start",
                    "deactivating" => "stop-sigterm",
                    "failed" => "failed",
                    _ => "dead",
                }
                .into(),
                invocation_id: invocation.into(),
                main_pid: if state == "inactive" {
                    0
                } else {
                    4000 + u32::from(n)
                },
                ..UnitState::default()
            },
            address: Some(SocketAddr::from(([127, 0, 0, 1], 8000 + n))),
            cpu_percent: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::unit;
    use super::*;

    #[test]
    fn the_unit_state_routes_it() {
        let cases = [
            ("active", Routing::Routed),
            ("reloading", Routing::Routed),
            ("deactivating", Routing::Draining),
            ("activating", Routing::Waiting),
            ("failed", Routing::Out),
            ("inactive", Routing::Out),
            ("maintenance", Routing::Out),
        ];
        for (state, routing) in cases {
            assert_eq!(unit(1, state, "a").routing(), routing, "{state}");
        }
        let mut gone = unit(1, "active", "a");
        gone.unit.load_state = "not-found".into();
        assert_eq!(gone.routing(), Routing::Out);
        let mut nowhere = unit(1, "active", "a");
        nowhere.address = None;
        assert_eq!(
            nowhere.routing(),
            Routing::Waiting,
            "active, no address yet"
        );
        nowhere.unit.active_state = "deactivating".into();
        assert_eq!(nowhere.routing(), Routing::Out);
    }
}
