//! The one-line `STATUS=` that `systemctl status lbproxy` shows, refreshed with live figures:
//! workers, backends up, requests per second, open connections, reloads.
//!
//! The figures come from the counters and metrics each worker publishes on its tick
//! ([`Shared::counters`], [`Shared::aggregate`]); this job of the control loop only reads and
//! subtracts, every [`EVERY`], until the drain begins (the drain then owns the line). A backend
//! counts as up when every worker would send it requests (up or in slow start: not down,
//! draining or ejected).

use crate::control::job::{Job, JobContext, Next};
use crate::control::{Counters, Shared};
use std::time::{Duration, Instant};

/// How often the status line is refreshed.
pub const EVERY: Duration = Duration::from_secs(2);

/// One status line's worth of figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub workers: usize,
    pub backends_up: usize,
    pub backends: usize,
    pub requests_per_s: f64,
    pub open_connections: u64,
    pub reloads: u64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "serving: {} workers, {}/{} backends up, {:.0} req/s, {} open connections, {} reloads",
            self.workers,
            self.backends_up,
            self.backends,
            self.requests_per_s,
            self.open_connections,
            self.reloads
        )
    }
}

/// The figures at `now`, with the request rate since `previous` (counters and when they were
/// read).
pub fn figures(
    shared: &Shared,
    previous: (Counters, Instant),
    now: Instant,
) -> (Figures, Counters) {
    let counters = shared.counters();
    let elapsed = now.saturating_duration_since(previous.1).as_secs_f64();
    let requests_per_s = if elapsed > 0.0 {
        counters.requests.saturating_sub(previous.0.requests) as f64 / elapsed
    } else {
        0.0
    };
    let (backends_up, backends) = shared.aggregate().backends_up();
    let figures = Figures {
        workers: shared.worker_count(),
        backends_up,
        backends,
        requests_per_s,
        open_connections: counters.open_connections,
        reloads: shared.reloads(),
    };
    (figures, counters)
}

/// Refreshes `STATUS=` every [`EVERY`] until the shutdown begins. Scheduled only under systemd.
#[derive(Debug)]
pub struct StatusJob {
    previous: (Counters, Instant),
}

impl StatusJob {
    /// A job that measures request rates from `now` on.
    pub fn new(shared: &Shared, now: Instant) -> Self {
        Self {
            previous: (shared.counters(), now),
        }
    }
}

impl Job for StatusJob {
    fn name(&self) -> &'static str {
        "status"
    }

    fn run(&mut self, now: Instant, ctx: &JobContext<'_>) -> Next {
        if ctx.shared.is_shutting_down() {
            return Next::Done;
        }
        let (figures, counters) = figures(ctx.shared, self.previous, now);
        self.previous = (counters, now);
        ctx.notifier.status(&figures.to_string());
        Next::Again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_as_a_sentence() {
        let figures = Figures {
            workers: 2,
            backends_up: 2,
            backends: 3,
            requests_per_s: 1520.4,
            open_connections: 12,
            reloads: 1,
        };
        assert_eq!(
            figures.to_string(),
            "serving: 2 workers, 2/3 backends up, 1520 req/s, 12 open connections, 1 reloads"
        );
    }
}
