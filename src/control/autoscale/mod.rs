//! Autoscaling (`[upstream.NAME.autoscale]`): what the autoscale controller
//! (`super::controllers::autoscale`) decided and why, per group, for the admin API, `lbproxy ctl
//! autoscale`, the dashboard and the `lbproxy_autoscale_*` metrics ([`AutoscaleBoard`]); and how
//! its decisions reach the instances ([`InstanceActions`]: systemd units over D-Bus, or `lbproxy
//! up`'s child processes).

pub mod board;
pub mod policy;
pub mod systemd;

pub use board::{AutoscaleBoard, Decision, GroupAutoscale, Mode};

use crate::deploy::version::VersionChange;

/// Starts, stops and restarts instances for the autoscaler and the deployments, off the control
/// loop's thread: each call returns at once; the outcome shows in the units the discovery reads
/// next (and in the log). `version` is done to the instance's version file
/// ([`crate::deploy::version`]): written before a start or restart, removed after a stop.
pub trait InstanceActions: Send {
    /// Start instance `unit` (`api@4.service`) of group `group`.
    fn start(&self, group: &str, unit: &str, version: VersionChange);
    /// Stop it (the caller drained it first).
    fn stop(&self, group: &str, unit: &str, version: VersionChange);
    /// Restart it (the caller drained it first).
    fn restart(&self, group: &str, unit: &str, version: VersionChange);
}
