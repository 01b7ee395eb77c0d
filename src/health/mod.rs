//! Active health checks: probes run once per (group, backend) on the control side — not once
//! per worker — and their verdicts reach the workers as an immutable snapshot.
//!
//! Flow: the control side's `HealthChecker` (thread `lbproxy-health`, which the control loop
//! starts) reads the running configuration every tick, keeps one probe loop per backend of every
//! group with a `[upstream.NAME.health]` section ([`mod@probe`]), turns results into up/down
//! verdicts with the `rise`/`fall` thresholds ([`Thresholds`]), logs each flip once with its
//! reason, and hands a new [`HealthTable`] to the control loop when a verdict changes, which
//! publishes it to every worker (`WorkerCommand::Health`). Each worker applies it on its next tick
//! (`Generation::apply_health`). Every probe result also goes to the [`ProbeLog`] (held by the
//! `ControlHandle`), which the admin API shows per backend.

mod probe;
mod probe_log;
mod thresholds;

pub use probe::{probe, ProbeError};
pub use probe_log::ProbeLog;
pub use thresholds::Thresholds;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

/// One backend's active-health verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    /// When the verdict last changed (or the backend started being probed). A worker starts a
    /// backend's slow start from here when it comes back up.
    pub since: Instant,
}

/// The verdicts for every probed backend, by group name and address. Immutable once published;
/// a change publishes a whole new table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthTable {
    groups: BTreeMap<String, BTreeMap<SocketAddr, Health>>,
}

impl HealthTable {
    /// The verdict for `address` in group `group`; `None` when it is not probed.
    pub fn get(&self, group: &str, address: SocketAddr) -> Option<Health> {
        self.groups.get(group)?.get(&address).copied()
    }

    pub(crate) fn insert(&mut self, group: &str, address: SocketAddr, health: Health) {
        self.groups
            .entry(group.to_owned())
            .or_default()
            .insert(address, health);
    }

    pub(crate) fn remove(&mut self, group: &str, address: SocketAddr) {
        if let Some(backends) = self.groups.get_mut(group) {
            backends.remove(&address);
            if backends.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    /// Every (group, address, verdict), for the admin plane.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SocketAddr, Health)> {
        self.groups.iter().flat_map(|(group, backends)| {
            backends
                .iter()
                .map(move |(address, health)| (group.as_str(), *address, *health))
        })
    }
}
