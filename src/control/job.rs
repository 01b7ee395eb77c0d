//! The control loop's periodic jobs (pingora's background services, run on the loop's thread):
//! each reads what the workers publish and tells someone — systemd, the sampler's history.
//!
//! The jobs today: the sampler ([`SampleJob`], every second, always), and under systemd the
//! `STATUS=` line ([`super::systemd::status::StatusJob`]), the honest watchdog
//! ([`super::systemd::watchdog::WatchdogJob`]) and, once the drain began, its progress
//! ([`super::systemd::drain::DrainJob`]). A job is quick and never blocks: the loop runs it when
//! due (`control/schedule.rs`) and it returns whether it wants to run again.

use super::shared::Shared;
use crate::systemd::Notifier;
use std::time::{Duration, Instant};

/// One periodic job.
pub trait Job: Send {
    /// Names the job in the loop's log lines.
    fn name(&self) -> &'static str;

    /// Does the job's work at `now`.
    fn run(&mut self, now: Instant, ctx: &JobContext<'_>) -> Next;
}

/// What a job wants after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run again one period on.
    Again,
    /// Done for good: take it off the schedule.
    Done,
}

/// What a job may read and whom it may tell.
#[derive(Debug)]
pub struct JobContext<'a> {
    pub shared: &'a Shared,
    pub notifier: &'a Notifier,
}

/// How often the sampler takes a point.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Samples the workers' metrics into the history the dashboard, `/api/status` and the
/// controllers' view read ([`super::sampler`]).
#[derive(Debug, Default)]
pub struct SampleJob;

impl Job for SampleJob {
    fn name(&self) -> &'static str {
        "sampler"
    }

    fn run(&mut self, now: Instant, ctx: &JobContext<'_>) -> Next {
        let aggregate = ctx.shared.aggregate();
        ctx.shared
            .sampler()
            .sample(&aggregate, now, crate::runtime::now_ms());
        Next::Again
    }
}
