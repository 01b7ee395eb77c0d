//! Summing the workers' snapshots into one view of the proxy: counters add up, gauges add up
//! (connections, requests in flight), and per-worker conditions (a backend ejected on one worker
//! only) are kept as "on how many workers".
//!
//! Rows are matched by name (listeners, groups), by position and name (routes) and by address
//! (backends), in the order the first worker lists them, so that a worker that has not yet
//! committed a reload (for at most a tick) does not mix rows up.

use super::compression::CompressionCounts;
use super::rate_limits::{merge_rows, RateLimitCounts};
use super::snapshot::{ListenerSnapshot, LoopLag, RouteSnapshot, WorkerSnapshot};
use super::state::{BackendState, CircuitState};
use super::stats::{BackendCounts, UpstreamCounts};
use crate::sys::driver::Driver;
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;

/// The whole proxy, summed over its workers.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub workers: Vec<WorkerRow>,
    pub listeners: Vec<ListenerRow>,
    pub routes: Vec<RouteRow>,
    pub upstreams: Vec<UpstreamRow>,
    /// Responses compressed, per coding.
    pub compression: CompressionCounts,
    /// Each request rate limit, summed over the workers by name.
    pub rate_limits: Vec<RateLimitCounts>,
}

#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub worker: usize,
    pub driver: Driver,
    pub taken_ms: u64,
    pub generation: u64,
    pub loop_lag: LoopLag,
    pub requests: u64,
    pub open_connections: u64,
}

/// A listener's counts summed over the workers: the same shape as one worker's.
pub type ListenerRow = ListenerSnapshot;

/// A route's counts summed over the workers: the same shape as one worker's.
pub type RouteRow = RouteSnapshot;

#[derive(Debug, Clone)]
pub struct UpstreamRow {
    pub name: String,
    pub balance: &'static str,
    pub counts: UpstreamCounts,
    pub backends: Vec<BackendRow>,
}

#[derive(Debug, Clone)]
pub struct BackendRow {
    pub address: SocketAddr,
    pub backup: bool,
    /// The most important state any worker reports (ejected on one worker reads `ejected`).
    pub state: BackendState,
    /// On how many workers it is in each state, in [`BackendState::ALL`] order.
    pub states: [u32; 7],
    /// On how many workers its circuit is in each state, in [`CircuitState::ALL`] order.
    pub circuits: [u32; 3],
    /// The active health checks' verdict (healthy on every worker).
    pub healthy: bool,
    pub weight: u32,
    pub configured_weight: u32,
    pub drain_override: Option<bool>,
    pub weight_override: Option<u32>,
    pub in_flight: u64,
    pub idle_connections: u64,
    /// The lowest slow-start progress of any worker, per mille.
    pub ramp: u32,
    pub counts: BackendCounts,
    /// Each worker's latest second of latencies: (worker, second number, histogram).
    pub seconds: Vec<(usize, u64, Arc<Histogram<u32>>)>,
}

impl BackendRow {
    /// Up (or ramping up) on every worker.
    pub fn is_up(&self) -> bool {
        matches!(self.state, BackendState::Up | BackendState::SlowStart)
    }

    /// Workers on which it is in `state`.
    pub fn workers_in(&self, state: BackendState) -> u32 {
        self.states[state_index(state)]
    }

    /// A backend up on one worker, weight 1, with `counts`: the row the unit tests of the
    /// views and the sampler start from.
    #[cfg(test)]
    pub fn up_for_tests(address: SocketAddr, counts: BackendCounts) -> Self {
        BackendRow {
            address,
            backup: false,
            state: BackendState::Up,
            states: [0, 0, 0, 0, 0, 0, 1],
            circuits: [1, 0, 0],
            healthy: true,
            weight: 1,
            configured_weight: 1,
            drain_override: None,
            weight_override: None,
            in_flight: 0,
            idle_connections: 0,
            ramp: 1000,
            counts,
            seconds: Vec::new(),
        }
    }
}

impl Aggregate {
    /// Sums `snapshots` (one per worker that has ticked).
    pub fn of(snapshots: &[Arc<WorkerSnapshot>]) -> Aggregate {
        let mut total = Aggregate::default();
        for snapshot in snapshots {
            total.add(snapshot);
        }
        total
    }

    fn add(&mut self, snapshot: &WorkerSnapshot) {
        self.workers.push(WorkerRow {
            worker: snapshot.worker,
            driver: snapshot.driver,
            taken_ms: snapshot.taken_ms,
            generation: snapshot.generation,
            loop_lag: snapshot.loop_lag,
            requests: snapshot.requests,
            open_connections: snapshot.open_connections,
        });
        self.compression.merge(&snapshot.compression);
        merge_rows(&mut self.rate_limits, &snapshot.rate_limits);
        for listener in &snapshot.listeners {
            match self.listeners.iter_mut().find(|l| l.name == listener.name) {
                Some(row) => row.counts.merge(&listener.counts),
                None => self.listeners.push(listener.clone()),
            }
        }
        for route in &snapshot.routes {
            let same = |r: &&mut RouteRow| {
                r.listener == route.listener && r.index == route.index && r.matches == route.matches
            };
            match self.routes.iter_mut().find(same) {
                Some(row) => row.responses.merge(&route.responses),
                None => self.routes.push(route.clone()),
            }
        }
        for upstream in &snapshot.upstreams {
            let row = match self.upstreams.iter().position(|u| u.name == upstream.name) {
                Some(i) => {
                    self.upstreams[i].counts.merge(&upstream.counts);
                    &mut self.upstreams[i]
                }
                None => {
                    self.upstreams.push(UpstreamRow {
                        name: upstream.name.clone(),
                        balance: upstream.balance,
                        counts: upstream.counts,
                        backends: Vec::new(),
                    });
                    self.upstreams.last_mut().expect("just pushed")
                }
            };
            for backend in &upstream.backends {
                let second = backend
                    .last_second
                    .clone()
                    .map(|h| (snapshot.worker, snapshot.second, h));
                match row
                    .backends
                    .iter_mut()
                    .find(|b| b.address == backend.address)
                {
                    Some(b) => {
                        b.states[state_index(backend.state)] += 1;
                        b.circuits[circuit_index(backend.circuit)] += 1;
                        b.state = b.state.min(backend.state);
                        b.healthy &= backend.healthy;
                        b.weight = b.weight.max(backend.weight);
                        b.drain_override = b.drain_override.or(backend.drain_override);
                        b.weight_override = b.weight_override.or(backend.weight_override);
                        b.in_flight += u64::from(backend.in_flight);
                        b.idle_connections += backend.idle_connections as u64;
                        b.ramp = b.ramp.min(backend.ramp);
                        b.counts.merge(&backend.counts);
                        b.seconds.extend(second);
                    }
                    None => {
                        let mut states = [0; 7];
                        states[state_index(backend.state)] = 1;
                        let mut circuits = [0; 3];
                        circuits[circuit_index(backend.circuit)] = 1;
                        row.backends.push(BackendRow {
                            address: backend.address,
                            backup: backend.backup,
                            state: backend.state,
                            states,
                            circuits,
                            healthy: backend.healthy,
                            weight: backend.weight,
                            configured_weight: backend.configured_weight,
                            drain_override: backend.drain_override,
                            weight_override: backend.weight_override,
                            in_flight: u64::from(backend.in_flight),
                            idle_connections: backend.idle_connections as u64,
                            ramp: backend.ramp,
                            counts: backend.counts,
                            seconds: second.into_iter().collect(),
                        });
                    }
                }
            }
        }
    }

    /// Requests answered, summed over the workers.
    pub fn requests(&self) -> u64 {
        self.workers.iter().map(|w| w.requests).sum()
    }

    pub fn open_connections(&self) -> u64 {
        self.workers.iter().map(|w| w.open_connections).sum()
    }

    /// Backends (of every group) up on every worker, and all backends.
    pub fn backends_up(&self) -> (usize, usize) {
        let backends = self.upstreams.iter().flat_map(|u| &u.backends);
        let total = backends.clone().count();
        (backends.filter(|b| b.is_up()).count(), total)
    }
}

fn state_index(state: BackendState) -> usize {
    BackendState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("ALL lists every state")
}

fn circuit_index(circuit: CircuitState) -> usize {
    CircuitState::ALL
        .iter()
        .position(|c| *c == circuit)
        .expect("ALL lists every circuit state")
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::{BackendSnapshot, UpstreamSnapshot};
    use super::*;

    fn backend(address: &str, state: BackendState, in_flight: u32) -> BackendSnapshot {
        BackendSnapshot {
            address: address.parse().unwrap(),
            state,
            circuit: if state == BackendState::Ejected {
                CircuitState::Open
            } else {
                CircuitState::Closed
            },
            healthy: true,
            backup: false,
            weight: 1,
            configured_weight: 1,
            drain_override: None,
            weight_override: None,
            in_flight,
            idle_connections: 1,
            ejections_in_a_row: 0,
            ramp: 1000,
            counts: BackendCounts::default(),
            last_second: None,
        }
    }

    fn worker(id: usize, backends: Vec<BackendSnapshot>) -> Arc<WorkerSnapshot> {
        Arc::new(WorkerSnapshot {
            worker: id,
            driver: Driver::Legacy,
            taken_ms: 0,
            generation: 0,
            loop_lag: LoopLag::default(),
            requests: 10,
            open_connections: 2,
            second: 0,
            listeners: Vec::new(),
            routes: Vec::new(),
            upstreams: vec![UpstreamSnapshot {
                name: "api".into(),
                balance: "round_robin",
                counts: UpstreamCounts::default(),
                backends,
            }],
            compression: Default::default(),
            rate_limits: Vec::new(),
        })
    }

    #[test]
    fn workers_add_up_and_the_worst_state_shows() {
        let a = "127.0.0.1:8001";
        let b = "127.0.0.1:8002";
        let total = Aggregate::of(&[
            worker(
                0,
                vec![
                    backend(a, BackendState::Up, 1),
                    backend(b, BackendState::Up, 0),
                ],
            ),
            worker(
                1,
                vec![
                    backend(a, BackendState::Ejected, 2),
                    backend(b, BackendState::Up, 0),
                ],
            ),
        ]);
        assert_eq!(total.requests(), 20);
        assert_eq!(total.open_connections(), 4);
        let api = &total.upstreams[0];
        assert_eq!(api.backends.len(), 2);
        let first = &api.backends[0];
        assert_eq!(first.state, BackendState::Ejected);
        assert_eq!(first.workers_in(BackendState::Ejected), 1);
        assert_eq!(first.workers_in(BackendState::Up), 1);
        assert_eq!(first.circuits, [1, 1, 0]);
        assert_eq!(first.in_flight, 3);
        assert_eq!(total.backends_up(), (1, 2));
    }
}
