//! The controllers every control loop runs, one file each (the interface is
//! `super::controller`): `discovery.rs` turns discovered systemd units into their groups'
//! backends.

pub mod discovery;

pub use discovery::DiscoveryController;
