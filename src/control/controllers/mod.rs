//! The controllers every control loop runs, one file each (the interface is
//! `super::controller`): `discovery.rs` turns discovered systemd units into their groups'
//! backends; `autoscale.rs` decides how many of them run.

pub mod autoscale;
pub mod discovery;

pub use autoscale::AutoscaleController;
pub use discovery::DiscoveryController;
