//! Where a request or a connection goes, and everything a worker keeps about it: the route table
//! ([`route`]), the upstream groups of one configuration ([`Generation`]) with their balancers
//! ([`balancer`]), the worker-local state of every backend ([`backend`]: health, ejection,
//! drain, slow start, counters) and its keep-alive [`pool`], the choice of a backend
//! ([`select`]) and the deployment's traffic split between canary and stable backends
//! ([`split`]), the wait for a connection slot ([`queue`]), the retry limits ([`retry`]),
//! outlier detection ([`outlier`]), what a failed attempt says about retrying ([`failure`]), and
//! the failover engine that HTTP requests and TCP connections both run on ([`failover`]: choose,
//! queue, connect or reuse, judge, retry or give up), and the wait of a request to an autoscaled
//! group that has no instance ([`scale_from_zero`]).
//!
//! A worker's view of one configuration is a [`Generation`]: its upstream groups, each with a
//! balancer, the worker-local state of every backend ([`Backend`]) and of the group itself
//! ([`GroupState`]: the retry budget).
//!
//! Flow: the worker builds generation 0 at start; a reload builds the next one from the new
//! configuration ([`Generation::next`]) while the current one keeps serving, and the worker
//! swaps them on commit ([`Generation::take_over`]). A request holds an `Rc` of the generation it
//! started on, so in-flight requests finish on the configuration they began with and the old
//! generation is freed when the last of them ends. Balancers (Maglev tables included) are built
//! here, off the request path.
//!
//! Backend and group state is carried from one generation to the next when the backend stays
//! in its group (same group name, same address), so a reload keeps warm connections, health,
//! ejections, slow start, budgets and counters. A backend that leaves is retired: its idle
//! connections close, and connections still in use by in-flight requests are not pooled again.
//! A backend that a reload adds to an existing group starts its slow start. Runtime overrides
//! (admin drain and weight) end at the commit. Route counters carry over when a route stays the
//! same (listener, host, path prefix and group).
//!
//! [`Generation::tick`] is the worker's periodic (100 ms) pass: pool sweeps, drained backends'
//! idle connections, ejections that turn half-open, slow-start ramps, retry-budget buckets.
//!
//! Everything here is worker-local (`Rc`, `Cell`): no lock and no shared atomic.

pub mod backend;
pub mod balancer;
pub mod connect;
pub mod failover;
pub mod failure;
pub mod outlier;
pub mod pool;
pub mod queue;
pub mod retry;
pub mod route;
pub mod scale_from_zero;
pub mod select;
pub mod split;
/// Whether route `a` of configuration `a_config` is route `b` of `b_config` for its counters: it
/// matches the same requests and sends them to the group of the same name (or redirects them
/// alike).
fn same_route(a_config: &Config, a: &RouteConfig, b_config: &Config, b: &RouteConfig) -> bool {
    let same_action = match (a.upstream(), b.upstream()) {
        (Some(x), Some(y)) => a_config.upstreams[x].name == b_config.upstreams[y].name,
        (None, None) => a.action == b.action,
        _ => false,
    };
    a.host == b.host && a.path_prefix == b.path_prefix && a.matches == b.matches && same_action
}

#[cfg(test)]
pub(crate) mod testing;

use crate::config::{Config, RouteConfig, UpstreamConfig};
use crate::health::HealthTable;
use crate::metrics::stats::{RouteStats, UpstreamStats};
use backend::{Backend, Settings};
use balancer::Balancer;
use queue::SlotQueue;
use retry::RetryBudget;
use split::Split;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Everything a worker derives from one configuration.
#[derive(Debug)]
pub struct Generation {
    /// 0 at start, then one more per committed reload.
    pub number: u64,
    pub config: Arc<Config>,
    /// Same order as `config.upstreams` (routes refer to groups by that index).
    pub upstreams: Vec<UpstreamGroup>,
    /// Each listener's route counters, same order as `config.listeners[i].routes`.
    pub routes: Vec<Vec<Rc<RouteStats>>>,
}

/// One upstream group as this worker sees it.
#[derive(Debug)]
pub struct UpstreamGroup {
    pub name: String,
    /// The group's validated settings (pool, balance, health, outlier, retry, backends).
    pub config: UpstreamConfig,
    /// Same order as `config.backends`: the balancer's indices.
    pub backends: Vec<Rc<Backend>>,
    pub balancer: Balancer,
    /// Whether any backend is a backup (selection skips the backup tier otherwise).
    pub has_backups: bool,
    /// The deployment's traffic split, while some backend is a canary ([`split`]): then each
    /// side is balanced on its own and `balancer` is not asked. Built from this generation's
    /// configuration, like the canary flags it reads: a backend carried over from the last
    /// generation takes the side the new configuration gives it.
    pub split: Option<Box<Split>>,
    /// Requests in flight to one backend this worker allows: its share of `max_connections`
    /// (`usize::MAX`: no limit).
    pub max_in_flight_per_backend: usize,
    pub state: Rc<GroupState>,
}

/// Worker-local state of a group that outlives reloads.
#[derive(Debug, Default)]
pub struct GroupState {
    pub retry_budget: RetryBudget,
    /// Requests waiting for a backend under its `max_connections`.
    pub queue: Rc<SlotQueue>,
    pub stats: UpstreamStats,
}

impl Generation {
    /// The generation a worker starts with.
    pub fn first(config: Arc<Config>, worker: usize) -> Self {
        Self::build(0, config, None, worker)
    }

    /// The generation after `self` for a reloaded `config`, reusing the state of backends that
    /// stay. `self` keeps serving until the caller swaps them; call [`Generation::take_over`]
    /// when it does.
    pub fn next(&self, config: Arc<Config>, worker: usize) -> Self {
        Self::build(self.number + 1, config, Some(self), worker)
    }

    fn build(
        number: u64,
        config: Arc<Config>,
        previous: Option<&Generation>,
        worker: usize,
    ) -> Self {
        let now = Instant::now();
        let upstreams = config
            .upstreams
            .iter()
            .map(|group| {
                let carried = previous.and_then(|p| p.group(&group.name));
                let backends = group
                    .backends
                    .iter()
                    .map(|b| match carried.and_then(|g| g.backend(b.address)) {
                        Some(backend) => backend.clone(),
                        None => {
                            let backend = Backend::new(b);
                            if previous.is_some() {
                                // Added by a reload: it takes its share gradually.
                                backend.start_ramp(now, group.slow_start);
                            }
                            Rc::new(backend)
                        }
                    })
                    .collect();
                UpstreamGroup {
                    name: group.name.clone(),
                    config: group.clone(),
                    backends,
                    balancer: Balancer::new(group.balance, &group.backends, worker),
                    has_backups: group.backends.iter().any(|b| b.backup),
                    split: Split::new(group, worker).map(Box::new),
                    max_in_flight_per_backend: group.max_connections.map_or(usize::MAX, |max| {
                        (max.get() as usize).div_ceil(config.runtime.workers.get())
                    }),
                    state: carried.map_or_else(Rc::default, |g| g.state.clone()),
                }
            })
            .collect();
        let routes = config
            .listeners
            .iter()
            .map(|listener| {
                listener
                    .routes
                    .iter()
                    .map(|route| {
                        let same = |p: &Generation| p.route_stats(&config, &listener.name, route);
                        previous.and_then(same).unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        Self {
            number,
            config,
            upstreams,
            routes,
        }
    }

    /// The counters of the route of listener `listener` that matches what `route` (of `config`)
    /// matches and goes to the same group, if this generation has one.
    fn route_stats(
        &self,
        config: &Config,
        listener: &str,
        route: &RouteConfig,
    ) -> Option<Rc<RouteStats>> {
        let index = self
            .config
            .listeners
            .iter()
            .position(|l| l.name == listener)?;
        self.config.listeners[index]
            .routes
            .iter()
            .position(|r| same_route(&self.config, r, config, route))
            .map(|i| self.routes[index][i].clone())
    }

    /// The index in `self` of route `route` of listener `listener` of `old` (the same match
    /// conditions and group name, see [`same_route`]), if `self` still has it: where a request that moves onto `self`
    /// (scale from zero) is counted.
    pub fn route_index(&self, old: &Generation, listener: usize, route: usize) -> Option<usize> {
        let was = &old.config.listeners[listener].routes[route];
        self.config
            .listeners
            .get(listener)?
            .routes
            .iter()
            .position(|r| same_route(&self.config, r, &old.config, was))
    }

    /// Makes `self` (just committed) the serving generation after `old`: backends that stay take
    /// their new settings (weight, backup, drain), and every backend of `old` that `self` no
    /// longer has is retired and its idle connections closed. Runtime overrides end, unless
    /// `keep_overrides` (a discovered group's backends changed, not the configuration): then
    /// they stay, except a drain override that a newly configured drain replaces (a unit that
    /// began to stop is drained, whatever an operator enabled).
    pub fn take_over(&self, old: &Generation, keep_overrides: bool) {
        for group in &self.upstreams {
            for (backend, config) in group.backends.iter().zip(&group.config.backends) {
                backend.apply_settings(Settings::from(config), keep_overrides);
            }
        }
        for group in &old.upstreams {
            let current = self.group(&group.name);
            for backend in &group.backends {
                let stays =
                    current.is_some_and(|g| g.backends.iter().any(|b| Rc::ptr_eq(b, backend)));
                if !stays {
                    backend.retire();
                }
            }
        }
    }

    /// Applies the active health snapshot to every backend of every group. A backend the table
    /// does not know (no `[health]` section, or not probed yet) counts as healthy.
    pub fn apply_health(&self, table: &HealthTable, worker: usize) {
        for group in &self.upstreams {
            for backend in &group.backends {
                let (healthy, since) = table
                    .get(&group.name, backend.address)
                    .map_or((true, Instant::now()), |h| (h.healthy, h.since));
                if backend.set_healthy(healthy, since, group.config.slow_start) {
                    tracing::debug!(
                        worker,
                        upstream = %group.name,
                        backend = %backend.address,
                        healthy,
                        "active health applied"
                    );
                }
            }
        }
    }

    /// The worker's periodic pass (see the module docs).
    pub fn tick(&self, now: Instant, worker: usize) {
        for group in &self.upstreams {
            group.state.retry_budget.tick(now);
            outlier::tick(group, now, worker);
            for backend in &group.backends {
                if backend.is_draining() {
                    backend.pool.clear();
                } else {
                    let unsolicited = backend.pool.sweep(&group.config.pool, now);
                    backend.report_unsolicited(worker, &group.name, unsolicited);
                }
                backend.update_ramp(now, group.config.slow_start);
            }
        }
    }

    pub fn group(&self, name: &str) -> Option<&UpstreamGroup> {
        self.upstreams.iter().find(|g| g.name == name)
    }

    /// Every backend of every group (a backend in two groups appears twice: the state is per
    /// group).
    pub fn backends(&self) -> impl Iterator<Item = (&UpstreamGroup, &Rc<Backend>)> {
        self.upstreams
            .iter()
            .flat_map(|g| g.backends.iter().map(move |b| (g, b)))
    }
}

impl UpstreamGroup {
    pub fn backend(&self, address: std::net::SocketAddr) -> Option<&Rc<Backend>> {
        self.backends.iter().find(|b| b.address == address)
    }

    /// A backend's weight changed at runtime (an admin override): the balancers that decide
    /// how to rotate when they are built (round robin) learn the weights in force.
    pub fn weights_changed(&self) {
        let weights = self.backends.iter().map(|b| b.weight().get());
        self.balancer.set_weights(weights);
        if let Some(split) = &self.split {
            split.set_weights(&self.backends);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;

    fn config(groups: &str) -> Arc<Config> {
        Arc::new(valid(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n{groups}"
        )))
    }

    #[test]
    fn backends_that_stay_keep_their_state_and_the_others_retire() {
        let first = Generation::first(
            config("[upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n"),
            0,
        );
        let next = first.next(
            config("[upstream.api]\nbackends = [\"127.0.0.1:8002\", \"127.0.0.1:8003\"]\n"),
            0,
        );
        assert_eq!(next.number, 1);
        let old_api = first.group("api").unwrap();
        let new_api = next.group("api").unwrap();
        assert!(Rc::ptr_eq(&old_api.backends[1], &new_api.backends[0]));
        assert_eq!(
            new_api.backends[1].address,
            "127.0.0.1:8003".parse().unwrap()
        );

        next.take_over(&first, false);
        assert!(old_api.backends[0].is_retired());
        assert!(!new_api.backends[0].is_retired());
        assert!(!new_api.backends[1].is_retired());
    }

    #[test]
    fn route_counters_stay_with_routes_that_stay() {
        let routes = |extra: &str| {
            config(&format!(
                "[[listener.http.route]]\npath_prefix = \"/v2/\"\nupstream = \"api\"\n{extra}\
                 [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n"
            ))
        };
        let first = Generation::first(routes(""), 0);
        first.routes[0][0].count(&crate::metrics::counters::Outcome::of(200, 0));
        let next = first.next(
            routes("[[listener.http.route]]\npath_prefix = \"/v3/\"\nupstream = \"api\"\n"),
            0,
        );
        assert_eq!(next.routes[0].len(), 3, "/v2/, /v3/ and the catch-all");
        assert!(Rc::ptr_eq(&first.routes[0][0], &next.routes[0][0]));
        assert_eq!(
            next.routes[0][1].snapshot().total(),
            0,
            "a new route starts at 0"
        );
        assert!(
            Rc::ptr_eq(&first.routes[0][1], &next.routes[0][2]),
            "the catch-all"
        );
    }

    #[test]
    fn state_is_per_group_even_for_the_same_address() {
        let first = Generation::first(
            config(
                "[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n\
                 [upstream.web]\nbackends = [\"127.0.0.1:8001\"]\n",
            ),
            0,
        );
        let api = &first.group("api").unwrap().backends[0];
        let web = &first.group("web").unwrap().backends[0];
        assert!(!Rc::ptr_eq(api, web));
        assert_eq!(first.backends().count(), 2);
    }

    #[test]
    fn a_commit_applies_new_settings_to_backends_that_stay_and_new_ones_ramp() {
        let first = Generation::first(
            config("[upstream.api]\nslow_start = \"10s\"\nbackends = [\"127.0.0.1:8001\"]\n"),
            0,
        );
        let backend = first.group("api").unwrap().backends[0].clone();
        assert_eq!(
            backend.ramp(),
            crate::upstream::balancer::FULL_RAMP,
            "no slow start at start"
        );
        let next = first.next(
            config(
                "[upstream.api]\nslow_start = \"10s\"\nbackends = [\
                 { address = \"127.0.0.1:8001\", weight = 5, drain = true }, \"127.0.0.1:8002\"]\n",
            ),
            0,
        );
        assert!(
            !backend.is_draining(),
            "prepared, not committed: the old settings serve"
        );
        next.take_over(&first, false);
        assert!(backend.is_draining());
        assert_eq!(backend.weight().get(), 5);
        let added = &next.group("api").unwrap().backends[1];
        assert_eq!(
            added.ramp(),
            crate::upstream::backend::RAMP_FLOOR,
            "added by a reload"
        );
    }

    #[test]
    fn health_verdicts_apply_by_group_and_address() {
        use crate::health::{Health, HealthTable};
        let first = Generation::first(
            config("[upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n"),
            0,
        );
        let mut table = HealthTable::default();
        let down = Health {
            healthy: false,
            since: Instant::now(),
        };
        table.insert("api", "127.0.0.1:8002".parse().unwrap(), down);
        table.insert("web", "127.0.0.1:8001".parse().unwrap(), down);
        first.apply_health(&table, 0);
        let api = first.group("api").unwrap();
        assert!(api.backends[0].admits(false));
        assert!(!api.backends[1].admits(true));
        first.apply_health(&HealthTable::default(), 0);
        assert!(api.backends[1].admits(false), "no verdict: healthy");
    }

    #[test]
    fn a_backend_that_stays_takes_its_side_from_the_new_configuration() {
        use crate::upstream::split::Side;
        let with_canary = |canary: Option<usize>| {
            let mut config = valid(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n",
            );
            let group = &mut config.upstreams[0];
            if let Some(i) = canary {
                group.backends[i].canary = true;
            }
            group.split.weight_bp = 2500;
            Arc::new(config)
        };
        let first = Generation::first(with_canary(Some(1)), 0);
        let split = first.upstreams[0].split.as_deref().expect("a canary");
        assert_eq!(split.weight_bp, 2500);
        assert_eq!(&*split.part(Side::Canary).members, [1]);

        // The other backend is the canary now: the state stays, the side follows the config.
        let second = first.next(with_canary(Some(0)), 0);
        assert!(Rc::ptr_eq(
            &first.upstreams[0].backends[1],
            &second.upstreams[0].backends[1]
        ));
        let split = second.upstreams[0].split.as_deref().expect("a canary");
        assert_eq!(&*split.part(Side::Canary).members, [0]);
        assert_eq!(&*split.part(Side::Stable).members, [1]);

        // No canary left (promoted or rolled back): no split, whatever its weight.
        let third = second.next(with_canary(None), 0);
        assert!(third.upstreams[0].split.is_none());
    }
}
