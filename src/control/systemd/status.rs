//! The one-line `STATUS=` that `systemctl status lbproxy` shows, refreshed with live figures:
//! workers, backends up, requests per second, open connections, reloads.
//!
//! The figures come from the counters and metrics each worker publishes on its tick
//! ([`ControlHandle::counters`], [`ControlHandle::aggregate`]); this thread only reads and
//! subtracts, every [`EVERY`]. A backend counts as up when every worker would send it requests
//! (up or in slow start: not down, draining or ejected).

use crate::control::{ControlHandle, Counters};
use crate::systemd::Notifier;
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

/// The figures now, with the request rate since `previous` (counters and when they were read).
pub fn figures(control: &ControlHandle, previous: (Counters, Instant)) -> (Figures, Counters) {
    let now = control.counters();
    let elapsed = previous.1.elapsed().as_secs_f64();
    let requests_per_s = if elapsed > 0.0 {
        now.requests.saturating_sub(previous.0.requests) as f64 / elapsed
    } else {
        0.0
    };
    let (backends_up, backends) = control.aggregate().backends_up();
    let figures = Figures {
        workers: control.worker_count(),
        backends_up,
        backends,
        requests_per_s,
        open_connections: now.open_connections,
        reloads: control.reloads(),
    };
    (figures, now)
}

/// Refreshes `STATUS=` every [`EVERY`] until the shutdown begins (the drain then owns the line).
/// Does nothing outside systemd.
pub fn spawn_updates(
    control: ControlHandle,
    notifier: Notifier,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if !notifier.is_enabled() {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("lbproxy-status".into())
        .spawn(move || {
            let mut previous = (control.counters(), Instant::now());
            loop {
                std::thread::sleep(EVERY);
                if control.is_shutting_down() {
                    return;
                }
                let (figures, counters) = figures(&control, previous);
                previous = (counters, Instant::now());
                notifier.status(&figures.to_string());
            }
        })
        .map(Some)
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
