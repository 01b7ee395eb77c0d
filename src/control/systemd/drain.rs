//! systemd's side of a shutdown: `STOPPING=1` when the drain starts, then, while it lasts,
//! `EXTEND_TIMEOUT_USEC=` for as long as it makes progress.
//!
//! The drain itself is the workers' (stop accepting, close idle keep-alive connections, let
//! requests in flight finish within `runtime.drain_timeout`). Its progress is read from the
//! counters the workers publish: a request answered or a connection closed since the last look.
//! While there is progress, the unit's `TimeoutStopSec=` is extended by [`EXTENSION`] at a time,
//! so a long but moving drain is not killed; a stuck one gets no extension and is.
//!
//! The control loop calls [`begin`] when it handles the stop, then runs [`DrainJob`] every
//! [`LOOK_EVERY`] until the process exits (the main thread ends it once the workers are done).

use crate::control::job::{Job, JobContext, Next};
use crate::control::{Counters, Shared};
use crate::systemd::Notifier;
use std::time::{Duration, Instant};

/// How often the drain is looked at. A look reads two counters, so it is cheap; it is frequent so
/// that the first progress is reported well within a short `TimeoutStopSec=` (with a look each
/// second, a request finishing 1.1 s into a 2 s stop would be seen only at 2 s, as systemd kills).
pub const LOOK_EVERY: Duration = Duration::from_millis(250);
/// Time asked for at each look that saw progress: a drain that answers one request every few
/// seconds keeps moving; one that stops moving is killed at most this long after its last step.
pub const EXTENSION: Duration = Duration::from_secs(5);

/// Whether the drain moved between two readings of the counters.
pub fn made_progress(before: Counters, now: Counters) -> bool {
    now.requests > before.requests || now.open_connections < before.open_connections
}

/// Tells systemd the drain started (`STOPPING=1`), and returns the job that reports its
/// progress.
pub fn begin(shared: &Shared, notifier: &Notifier) -> DrainJob {
    let before = shared.counters();
    notifier.stopping(&format!(
        "draining: {} open connections",
        before.open_connections
    ));
    DrainJob { before }
}

/// Extends the stop timeout each time it sees the drain moved since its last look.
#[derive(Debug)]
pub struct DrainJob {
    before: Counters,
}

impl Job for DrainJob {
    fn name(&self) -> &'static str {
        "drain"
    }

    fn run(&mut self, _now: Instant, ctx: &JobContext<'_>) -> Next {
        let now = ctx.shared.counters();
        if made_progress(self.before, now) {
            ctx.notifier.extend_timeout(
                EXTENSION,
                &format!("draining: {} open connections", now.open_connections),
            );
        }
        self.before = now;
        Next::Again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(requests: u64, open_connections: u64) -> Counters {
        Counters {
            requests,
            open_connections,
        }
    }

    #[test]
    fn answered_requests_or_closed_connections_are_progress() {
        assert!(made_progress(counters(10, 5), counters(11, 5)));
        assert!(made_progress(counters(10, 5), counters(10, 4)));
        assert!(!made_progress(counters(10, 5), counters(10, 5)));
        assert!(!made_progress(counters(10, 5), counters(10, 6)));
    }
}
