//! The worker's side of [`crate::metrics`]: on every tick, measure how late the event loop ran
//! and publish a [`WorkerSnapshot`] of the worker's counters and backend states; once a second,
//! roll each backend's latency histogram over so that its last whole second is published.
//!
//! All of this runs on the tick, off the request path: copying the counters of a few dozen
//! backends ten times a second costs far less than the requests it describes.

use crate::metrics::snapshot::{
    BackendSnapshot, ListenerSnapshot, LoopLag, RouteSnapshot, UpstreamSnapshot,
};
use crate::metrics::WorkerSnapshot;
use crate::runtime::context::WorkerContext;
use crate::runtime::{now_ms, WorkerShared, TICK};
use crate::sys::driver::Driver;
use crate::upstream::route::route_label;
use crate::upstream::Generation;
use std::time::Duration;

/// Ticks per second (the latency histograms roll over once a second).
const TICKS_PER_SECOND: u64 = 1000 / TICK.as_millis() as u64;

/// What the worker remembers between publications.
#[derive(Debug)]
pub struct Publisher {
    driver: Driver,
    ticks: u64,
    /// Whole seconds rolled over so far.
    second: u64,
    /// The lag of the last second's ticks, most recent at `ticks % len`.
    lags_us: [u64; TICKS_PER_SECOND as usize],
}

impl Publisher {
    pub fn new(driver: Driver) -> Self {
        Self {
            driver,
            ticks: 0,
            second: 0,
            lags_us: [0; TICKS_PER_SECOND as usize],
        }
    }

    /// One tick, whose timer fired `lag` late: publishes the worker's figures to `shared`.
    pub fn tick(&mut self, ctx: &WorkerContext, shared: &WorkerShared, lag: Duration) {
        self.ticks += 1;
        let slot = (self.ticks % TICKS_PER_SECOND) as usize;
        self.lags_us[slot] = lag.as_micros() as u64;
        let generation = ctx.generation();
        if self.ticks % TICKS_PER_SECOND == 0 {
            for (_, backend) in generation.backends() {
                backend.stats.roll_second();
            }
            self.second += 1;
        }
        let loop_lag = LoopLag {
            last_us: self.lags_us[slot],
            max_us: self.lags_us.iter().copied().max().unwrap_or(0),
        };
        shared.publish(ctx.requests(), ctx.open_connections());
        shared
            .metrics
            .store(self.snapshot(ctx, &generation, loop_lag));
    }

    fn snapshot(
        &self,
        ctx: &WorkerContext,
        generation: &Generation,
        loop_lag: LoopLag,
    ) -> WorkerSnapshot {
        let config = &generation.config;
        let listeners = config
            .listeners
            .iter()
            .zip(&ctx.listeners)
            .map(|(listener, stats)| ListenerSnapshot {
                name: listener.name.clone(),
                protocol: listener.protocol.scheme(),
                counts: stats.snapshot(),
            })
            .collect();
        let mut routes = Vec::new();
        for (listener, stats) in config.listeners.iter().zip(&generation.routes) {
            for (index, (route, stats)) in listener.routes.iter().zip(stats).enumerate() {
                routes.push(RouteSnapshot {
                    listener: listener.name.clone(),
                    index,
                    matches: route_label(route),
                    upstream: route
                        .upstream()
                        .map_or_else(|| "-".to_owned(), |u| config.upstreams[u].name.clone()),
                    responses: stats.snapshot(),
                });
            }
        }
        let upstreams = generation
            .upstreams
            .iter()
            .map(|group| UpstreamSnapshot {
                name: group.name.clone(),
                balance: group.config.balance.as_str(),
                counts: group.state.stats.snapshot(),
                backends: group
                    .backends
                    .iter()
                    .map(|backend| {
                        let (drain_override, weight_override) = backend.overrides();
                        let settings = backend.settings();
                        BackendSnapshot {
                            address: backend.address,
                            state: backend.state(),
                            circuit: backend.circuit_state(),
                            healthy: backend.is_healthy(),
                            backup: settings.backup,
                            weight: backend.weight().get(),
                            configured_weight: settings.weight.get(),
                            drain_override,
                            weight_override: weight_override.map(std::num::NonZero::get),
                            in_flight: backend.in_flight(),
                            idle_connections: backend.pool.idle_count(),
                            ejections_in_a_row: backend.ejections(),
                            ramp: backend.ramp(),
                            counts: backend.stats.snapshot(),
                            last_second: backend.stats.last_second(),
                        }
                    })
                    .collect(),
            })
            .collect();
        WorkerSnapshot {
            worker: ctx.id,
            driver: self.driver,
            taken_ms: now_ms(),
            generation: generation.number,
            loop_lag,
            requests: ctx.requests(),
            open_connections: ctx.open_connections() as u64,
            second: self.second,
            listeners,
            routes,
            upstreams,
            compression: ctx.compression.snapshot(),
            rate_limits: ctx.rate_limits.borrow().snapshot(),
        }
    }
}
