//! The honest watchdog: `WATCHDOG=1` is sent only while every worker's event loop is alive.
//!
//! With `WatchdogSec=` in the unit, systemd sets `WATCHDOG_USEC`/`WATCHDOG_PID` and kills the
//! proxy (`Result=watchdog`, then `Restart=on-failure` starts it again) when no ping arrives
//! within that interval. A ping from a thread that merely exists would prove nothing: this job
//! of the control loop pings every quarter interval, and only after checking each worker's
//! heartbeat — written by the worker itself on its housekeeping tick ([`crate::runtime::TICK`],
//! 100 ms), between requests. A worker whose heartbeat is older than half the interval is stalled
//! (a stuck ring, a blocking call, a runaway loop): the job says which one in the log and stops
//! pinging, and systemd does the rest within the other half. Running on the control loop's
//! thread, it also stops pinging when that loop is stuck.
//!
//! During a drain the manager no longer watches (`STOPPING=1` was sent), and workers that have
//! drained stop beating, so the job ends when the shutdown begins.

use crate::control::job::{Job, JobContext, Next};
use crate::runtime::{now_ms, TICK};
use std::time::{Duration, Instant};

/// The watchdog systemd asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// `WatchdogSec=`: the longest systemd waits between two pings.
    pub interval: Duration,
}

/// What the heartbeats say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Every worker ticked within the limit.
    Alive,
    /// `worker` has not ticked for `silent_for` (the most silent one, when several are).
    Stalled { worker: usize, silent_for: Duration },
}

impl Watchdog {
    /// The watchdog of this process's unit, or `None` when the unit sets no `WatchdogSec=` (or
    /// the variables name another process). Leaves the variables in place.
    pub fn from_env() -> Option<Self> {
        let mut usec = 0;
        (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0).then(|| Watchdog {
            interval: Duration::from_micros(usec),
        })
    }

    /// How often the heartbeats are checked (and, when all are alive, systemd pinged).
    pub fn ping_every(&self) -> Duration {
        self.interval / 4
    }

    /// A worker silent for longer than this is stalled: half the interval, and never less than
    /// five ticks (so a short `WatchdogSec=` cannot turn scheduling jitter into a restart).
    pub fn stall_limit(&self) -> Duration {
        (self.interval / 2).max(TICK * 5)
    }

    /// The control loop's job that checks the heartbeats and pings systemd while every worker
    /// is alive, until the shutdown begins.
    pub fn job(self) -> WatchdogJob {
        tracing::info!(
            interval = ?self.interval,
            stall_limit = ?self.stall_limit(),
            "systemd watchdog on: pinging while every worker ticks"
        );
        WatchdogJob {
            watchdog: self,
            stalled_worker: None,
        }
    }
}

/// See [`Watchdog::job`]; scheduled every [`Watchdog::ping_every`].
#[derive(Debug)]
pub struct WatchdogJob {
    watchdog: Watchdog,
    /// The worker found stalled on the last run, so its stall is logged once.
    stalled_worker: Option<usize>,
}

impl Job for WatchdogJob {
    fn name(&self) -> &'static str {
        "watchdog"
    }

    fn run(&mut self, _now: Instant, ctx: &JobContext<'_>) -> Next {
        if ctx.shared.is_shutting_down() {
            return Next::Done;
        }
        let limit = self.watchdog.stall_limit();
        match liveness(&ctx.shared.heartbeats_ms(), now_ms(), limit) {
            Liveness::Alive => {
                if let Some(worker) = self.stalled_worker.take() {
                    tracing::warn!(worker, "worker ticks again; feeding the watchdog again");
                }
                ctx.notifier.watchdog();
            }
            Liveness::Stalled { worker, silent_for } => {
                if self.stalled_worker.replace(worker).is_none() {
                    tracing::error!(
                        worker,
                        silent_ms = silent_for.as_millis() as u64,
                        watchdog_sec = self.watchdog.interval.as_secs_f64(),
                        "worker {worker}'s event loop has not ticked for {silent_for:?}: no \
                         longer feeding the systemd watchdog, which will restart the proxy"
                    );
                    ctx.notifier.status(&format!(
                        "worker {worker} stalled for {silent_for:?}; watchdog not fed"
                    ));
                }
            }
        }
        Next::Again
    }
}

/// Whether every heartbeat (ms since the epoch, by worker) is younger than `limit` at `now_ms`.
/// A heartbeat from the future (the wall clock stepped back) counts as fresh.
pub fn liveness(heartbeats_ms: &[u64], now_ms: u64, limit: Duration) -> Liveness {
    let oldest = heartbeats_ms
        .iter()
        .enumerate()
        .map(|(worker, &beat)| (worker, now_ms.saturating_sub(beat)))
        .max_by_key(|&(_, age)| age);
    match oldest {
        Some((worker, age)) if u128::from(age) > limit.as_millis() => Liveness::Stalled {
            worker,
            silent_for: Duration::from_millis(age),
        },
        _ => Liveness::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(1);

    #[test]
    fn all_recent_heartbeats_are_alive() {
        assert_eq!(
            liveness(&[9_500, 9_900, 10_000], 10_000, LIMIT),
            Liveness::Alive
        );
        assert_eq!(liveness(&[], 10_000, LIMIT), Liveness::Alive);
    }

    #[test]
    fn the_most_silent_worker_is_named() {
        assert_eq!(
            liveness(&[9_900, 7_000, 8_500], 10_000, LIMIT),
            Liveness::Stalled {
                worker: 1,
                silent_for: Duration::from_millis(3_000)
            }
        );
    }

    #[test]
    fn a_worker_that_never_started_is_stalled() {
        assert!(matches!(
            liveness(&[10_000, 0], 10_000, LIMIT),
            Liveness::Stalled { worker: 1, .. }
        ));
    }

    #[test]
    fn a_clock_step_back_is_not_a_stall() {
        assert_eq!(liveness(&[12_000], 10_000, LIMIT), Liveness::Alive);
    }

    #[test]
    fn limits_follow_the_interval_with_a_floor() {
        let watchdog = Watchdog {
            interval: Duration::from_secs(10),
        };
        assert_eq!(watchdog.ping_every(), Duration::from_millis(2_500));
        assert_eq!(watchdog.stall_limit(), Duration::from_secs(5));
        let short = Watchdog {
            interval: Duration::from_millis(400),
        };
        assert_eq!(short.stall_limit(), TICK * 5);
    }
}
