//! One analysis window of a canary step: what the canary's backends and the stable ones did
//! since the window opened, from the workers' per-backend counters (differences from the
//! opening values) and their per-second latency histograms (each second merged once).
//!
//! The controller opens a window when a step begins (or after a hold or a failed analysis),
//! feeds it the view on every tick (the histograms are per second, so a second not taken on
//! its tick is lost), and reads both sides' [`SideFigures`] when the interval is over.

use crate::control::controller::View;
use crate::deploy::analysis::SideFigures;
use crate::metrics::aggregate::BackendRow;
use crate::metrics::stats::latency_histogram;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

/// A backend's counters as the window opened.
#[derive(Debug, Clone, Copy, Default)]
struct Base {
    requests: u64,
    server_errors: u64,
    failed_attempts: u64,
    connect_errors: u64,
}

impl Base {
    fn of(row: &BackendRow) -> Self {
        let counts = &row.counts;
        Base {
            requests: counts.responses.total() + counts.failed_attempts,
            server_errors: counts.responses.server_errors(),
            failed_attempts: counts.failed_attempts,
            connect_errors: counts.connect_errors,
        }
    }
}

#[derive(Debug)]
pub struct Window {
    pub opened: Instant,
    group: String,
    /// Opening counters of every backend of the group (a backend that joins later opens at 0).
    base: BTreeMap<SocketAddr, Base>,
    /// The last second taken per (backend, worker).
    seen: BTreeMap<(SocketAddr, usize), u64>,
    canary_latency: Histogram<u32>,
    stable_latency: Histogram<u32>,
}

impl Window {
    /// Opens a window on group `group` at `now`, from `view`'s counters.
    pub fn open(group: &str, view: &View, now: Instant) -> Self {
        let mut window = Window {
            opened: now,
            group: group.to_owned(),
            base: BTreeMap::new(),
            seen: BTreeMap::new(),
            canary_latency: latency_histogram(),
            stable_latency: latency_histogram(),
        };
        for row in rows(view, group) {
            window.base.insert(row.address, Base::of(row));
            for (worker, second, _) in &row.seconds {
                window.seen.insert((row.address, *worker), *second);
            }
        }
        window
    }

    /// Takes the latency seconds published since the last look; `canary` names the canary's
    /// backends.
    pub fn take(&mut self, view: &View, canary: &BTreeSet<SocketAddr>) {
        for row in rows(view, &self.group) {
            for (worker, second, histogram) in &row.seconds {
                if self.seen.insert((row.address, *worker), *second) == Some(*second) {
                    continue;
                }
                let side = match canary.contains(&row.address) {
                    true => &mut self.canary_latency,
                    false => &mut self.stable_latency,
                };
                let _ = side.add(histogram.as_ref());
            }
        }
    }

    /// Both sides' figures since the window opened: (canary, stable).
    pub fn figures(
        &self,
        view: &View,
        canary: &BTreeSet<SocketAddr>,
    ) -> (SideFigures, SideFigures) {
        let mut sides = (SideFigures::default(), SideFigures::default());
        for row in rows(view, &self.group) {
            let now = Base::of(row);
            let base = self.base.get(&row.address).copied().unwrap_or_default();
            let side = match canary.contains(&row.address) {
                true => &mut sides.0,
                false => &mut sides.1,
            };
            side.requests += now.requests.saturating_sub(base.requests);
            side.server_errors += now.server_errors.saturating_sub(base.server_errors);
            side.failed_attempts += now.failed_attempts.saturating_sub(base.failed_attempts);
            side.connect_errors += now.connect_errors.saturating_sub(base.connect_errors);
        }
        sides.0.p99_ms = p99_ms(&self.canary_latency);
        sides.1.p99_ms = p99_ms(&self.stable_latency);
        sides
    }
}

fn rows<'a>(view: &'a View, group: &'a str) -> impl Iterator<Item = &'a BackendRow> {
    view.metrics
        .upstreams
        .iter()
        .filter(move |u| u.name == group)
        .flat_map(|u| u.backends.iter())
}

fn p99_ms(histogram: &Histogram<u32>) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(0.99) as f64 / 1000.0)
}
