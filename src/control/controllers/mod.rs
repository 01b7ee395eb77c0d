//! The controllers every control loop runs, one file or folder each (the interface is
//! `super::controller`): `discovery.rs` turns discovered systemd units into their groups'
//! backends; `autoscale.rs` decides how many of them run; `deploy/` drives a deployment (canary
//! or blue-green) of a new version of them.

pub mod autoscale;
pub mod deploy;
pub mod discovery;

pub use autoscale::AutoscaleController;
pub use deploy::DeployController;
pub use discovery::DiscoveryController;
