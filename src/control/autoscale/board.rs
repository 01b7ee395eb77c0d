//! The autoscaler's state per group as anyone may read it: the signal, the target, the count of
//! instances and the desired one, the mode, the last decision with its reasons, and a short
//! history of the instance count (the dashboard's chart).

use crate::config::AutoscaleMetric;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// How many points of history each group keeps (one per controller tick that changed
/// something, and one per second otherwise: 10 minutes).
pub const HISTORY: usize = 600;

/// Written by the autoscale controller, read by the admin side.
#[derive(Debug, Default)]
pub struct AutoscaleBoard {
    groups: Mutex<BTreeMap<String, GroupAutoscale>>,
}

impl AutoscaleBoard {
    /// Every autoscaled group, by name.
    pub fn snapshot(&self) -> BTreeMap<String, GroupAutoscale> {
        self.lock().clone()
    }

    /// Replaces group `group`'s state with what `update` makes of it (a fresh one first).
    pub fn update(&self, group: &str, update: impl FnOnce(&mut GroupAutoscale)) {
        update(self.lock().entry(group.to_owned()).or_default());
    }

    /// Forgets the groups `keep` says no (no longer autoscaled after a reload).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().retain(|group, _| keep(group));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, GroupAutoscale>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupAutoscale {
    pub min: u32,
    pub max: u32,
    pub metric: Option<AutoscaleMetric>,
    pub target: f64,
    /// The metric's value per instance (or the group's p99) at the last tick; `None` without
    /// data (no instance, no sample yet).
    pub signal: Option<f64>,
    /// Instances routed now.
    pub current: u32,
    /// Instances starting (asked for, not routed yet) and stopping (draining or asked to stop).
    pub starting: u32,
    pub stopping: u32,
    /// What the policy wants now.
    pub desired: u32,
    pub mode: Mode,
    /// Requests waiting for an instance (scale from zero).
    pub waiting: u64,
    pub last_decision: Option<Decision>,
    /// (time, routed instances, desired), oldest first, at most [`HISTORY`].
    pub history: VecDeque<(SystemTime, u32, u32)>,
    /// Decisions that raised (`ups`) and lowered (`downs`) the instance count since the proxy
    /// started: they only grow (`lbproxy_autoscale_decisions_total`). [`GroupAutoscale::decided`]
    /// counts them.
    pub ups: u64,
    pub downs: u64,
}

impl GroupAutoscale {
    /// Records `decision` as the last one, and counts it as a scale-up or a scale-down (one
    /// that changes nothing is not counted).
    pub fn decided(&mut self, decision: Decision) {
        match decision.to.cmp(&decision.from) {
            std::cmp::Ordering::Greater => self.ups += 1,
            std::cmp::Ordering::Less => self.downs += 1,
            std::cmp::Ordering::Equal => {}
        }
        self.last_decision = Some(decision);
    }
}

/// What the policy is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Within tolerance (or nothing to judge).
    #[default]
    Stable,
    ScalingUp,
    ScalingDown,
    /// The signal passed the panic threshold: up at once, no scale-down until the panic window
    /// has passed without it.
    Panic,
    /// A decision is held back; the reason says why (a rollout drained an instance, a start
    /// is pending, the window has not passed).
    Holding(&'static str),
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stable => "stable",
            Mode::ScalingUp => "scaling-up",
            Mode::ScalingDown => "scaling-down",
            Mode::Panic => "panic",
            Mode::Holding(_) => "holding",
        }
    }
}

/// One change of the instance count and its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub at: SystemTime,
    pub from: u32,
    pub to: u32,
    /// The signal, the target and the rule that decided, in a sentence.
    pub reason: String,
}
