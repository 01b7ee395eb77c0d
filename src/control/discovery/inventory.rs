//! The instance inventory: every discovered unit as `/api/instances`, `lbproxy ctl instances`,
//! the dashboard and the `lbproxy_instance_*` metrics show it — systemd's figures (state, PID,
//! uptime, restarts, CPU, memory, tasks) beside how the proxy treats it.
//!
//! The discovery watcher writes it (each time it reads the units); anyone reads the latest
//! [`Inventory`] from [`crate::control::Shared`] without waiting.

use crate::config::SystemdBus;
use crate::systemd::bus::UnitState;
use std::net::SocketAddr;
use std::time::SystemTime;

/// How the proxy treats a discovered instance, from its unit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Active: a backend of its group (probes and outlier detection still judge it).
    Routed,
    /// Deactivating: no new requests, those in flight finish.
    Draining,
    /// Activating, or active without an address yet: not a backend yet.
    Waiting,
    /// Failed, inactive or gone: not a backend.
    Out,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Routed => "routed",
            Routing::Draining => "draining",
            Routing::Waiting => "waiting",
            Routing::Out => "out",
        }
    }
}

/// One discovered unit.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// The upstream group whose `discover` pattern matched it.
    pub group: String,
    pub bus: SystemdBus,
    /// Its backend address, when known (template, or its socket unit's `ListenStream=`).
    pub address: Option<SocketAddr>,
    pub routing: Routing,
    /// The unit as systemd reported it last.
    pub unit: UnitState,
    /// CPU use over the last interval between two reads, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// `NRestarts` rose within the flapping window.
    pub flapping: bool,
}

/// Every discovered unit of every group, as of `read_at`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// When the units were last read; `None` before the first read (or without discovery).
    pub read_at: Option<SystemTime>,
    /// By group, then unit name.
    pub instances: Vec<InstanceRow>,
}
