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

pub use controller::DiscoveryController;
pub use inventory::{InstanceRow, Inventory, Routing};
pub use units::{Discovered, DiscoveredUnit};
