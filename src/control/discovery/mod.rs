//! Backends discovered from systemd (`[upstream.NAME.discover]`): the units matching a group's
//! pattern, followed over D-Bus, become its backends, and their state is a health signal ahead of
//! the probes.
//!
//! [`inventory`]: what is known about every discovered unit, for the admin API, `lbproxy ctl
//! instances`, the dashboard and the metrics.

pub mod inventory;

pub use inventory::{InstanceRow, Inventory, Routing};
