//! Backends discovered from systemd (`[upstream.NAME.discover]`): the units matching a group's
//! pattern, followed over D-Bus, become its backends, and their state is a health signal ahead of
//! the probes.
//!
//! Flow: the [`watcher`] thread (`lbproxy-discovery`) reads the units over D-Bus — in full at
//! start and every `resync`, each unit again when a signal names it, the known ones every second
//! for their cgroup figures — applies the configured cgroup limits, writes the [`Inventory`]
//! and sends what it read to the control loop ([`Discovered`], as a command). The
//! [`DiscoveryController`], ticked by the loop, compares the units with each group's backends
//! and returns the change as an action, which the loop applies on every worker as a new
//! generation (not a reload: runtime overrides stay).
//!
//! Files: `units.rs` (what was read, and how a unit's state routes it), `controller.rs` (units →
//! backends), `watcher.rs` (the D-Bus side), `inventory.rs` (what the admin shows).

pub mod controller;
pub mod inventory;
pub mod units;
pub mod watcher;

pub use controller::DiscoveryController;
pub use inventory::{InstanceRow, Inventory, Routing};
pub use units::{Discovered, DiscoveredUnit};

use crate::config::Config;
use std::sync::Arc;

/// `config` with each discovered group's first backends, read from systemd before the proxy
/// starts, so the first request finds them. Unchanged without `discover`. `Err` when a bus
/// cannot be reached: the message says why and what to use instead.
pub fn with_first_backends(config: Arc<Config>) -> Result<Arc<Config>, crate::systemd::bus::BusError> {
    if config.upstreams.iter().all(|g| g.discover.is_none()) {
        return Ok(config);
    }
    let discovered = watcher::read_once(&config)?;
    let mut config = Config::clone(&config);
    for group in &mut config.upstreams {
        if let Some(units) = discovered.groups.get(&group.name) {
            group.backends = controller::desired_backends(units, &[]);
            let names: Vec<String> = units
                .iter()
                .filter(|u| u.routing() == Routing::Routed)
                .map(|u| u.unit.name.clone())
                .collect();
            tracing::info!(
                target: "lbproxy::discovery",
                upstream = %group.name,
                "upstream \"{}\": {} discovered instance(s) routed at start: {}",
                group.name,
                names.len(),
                names.join(", ")
            );
        }
    }
    Ok(Arc::new(config))
}
