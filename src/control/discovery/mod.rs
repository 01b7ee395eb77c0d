//! Backends discovered from systemd (`[upstream.NAME.discover]`): the units matching a group's
//! pattern, followed over D-Bus, become its backends, and their state is a health signal ahead of
//! the probes.
//!
//! Flow: the watcher thread (`lbproxy-discovery`, `super::discovery_watcher`) reads the units
//! over D-Bus — in full at start and every `resync`, each unit again when a signal names it, the
//! known ones every second for their cgroup figures — applies the configured cgroup limits,
//! writes the [`Inventory`] and sends what it read to the control loop ([`Discovered`], as a
//! command). The discovery controller (`super::controllers::discovery`), ticked by the loop,
//! compares the units with each group's backends and returns the change as an action, which the
//! loop applies on every worker as a new generation (not a reload: runtime overrides stay).
//!
//! This folder holds what the three share, with no dependency on the loop: `units.rs` (what was
//! read, how a unit's state routes it, the backends a group should have) and `inventory.rs`
//! (what the admin shows).

pub mod inventory;
pub mod units;

pub use inventory::{InstanceRow, Inventory, Routing};
pub use units::{desired_backends, Discovered, DiscoveredUnit};
