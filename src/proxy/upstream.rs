//! A worker's view of one configuration (a [`Generation`]): its upstream groups, each with a
//! balancer and the worker-local state of every backend.
//!
//! Flow: the worker builds generation 0 at start; a reload builds the next one from the new
//! configuration ([`Generation::next`]) while the current one keeps serving, and the worker
//! swaps them on commit. A request holds an `Rc` of the generation it started on, so in-flight
//! requests finish on the configuration they began with and the old generation is freed when the
//! last of them ends.
//!
//! Per-backend state ([`Backend`]: the keep-alive pool, later health and counters) is carried from
//! one generation to the next when the backend stays in its group (same group name, same
//! address), so a reload keeps warm connections. A backend that leaves is retired: its idle
//! connections close, and connections still in use by in-flight requests are not pooled again.

use super::pool::Pool;
use crate::balancer::Balancer;
use crate::config::{Config, UpstreamConfig};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// Everything a worker derives from one configuration.
#[derive(Debug)]
pub struct Generation {
    /// 0 at start, then one more per committed reload.
    pub number: u64,
    pub config: Arc<Config>,
    /// Same order as `config.upstreams` (routes refer to groups by that index).
    pub upstreams: Vec<UpstreamGroup>,
}

/// One upstream group as this worker sees it.
#[derive(Debug)]
pub struct UpstreamGroup {
    pub name: String,
    /// The group's validated settings (pool, balance, and the per-backend ones).
    pub config: UpstreamConfig,
    /// Same order as `config.backends`: the balancer's indices.
    pub backends: Vec<Rc<Backend>>,
    pub balancer: Balancer,
}

/// A backend's worker-local state, shared by every generation in which it stays in its group.
#[derive(Debug)]
pub struct Backend {
    pub address: SocketAddr,
    /// Idle keep-alive connections to it.
    pub pool: Pool,
    /// Set once the backend is no longer in the current configuration.
    retired: Cell<bool>,
}

impl Backend {
    fn new(address: SocketAddr) -> Self {
        Self {
            address,
            pool: Pool::default(),
            retired: Cell::new(false),
        }
    }

    /// Whether the backend left the configuration (its connections are not pooled any more).
    pub fn is_retired(&self) -> bool {
        self.retired.get()
    }
}

impl Generation {
    /// The generation a worker starts with.
    pub fn first(config: Arc<Config>, worker: usize) -> Self {
        Self::build(0, config, None, worker)
    }

    /// The generation after `self` for a reloaded `config`, reusing the state of backends that
    /// stay. `self` keeps serving until the caller swaps them; call [`Generation::retire_replaced`]
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
        let upstreams = config
            .upstreams
            .iter()
            .map(|group| {
                let carried = previous.and_then(|p| p.group(&group.name));
                let backends = group
                    .backends
                    .iter()
                    .map(|b| {
                        carried
                            .and_then(|g| g.backend(b.address))
                            .cloned()
                            .unwrap_or_else(|| Rc::new(Backend::new(b.address)))
                    })
                    .collect();
                let weights: Vec<u32> = group.backends.iter().map(|b| b.weight.get()).collect();
                UpstreamGroup {
                    name: group.name.clone(),
                    config: group.clone(),
                    backends,
                    balancer: Balancer::new(group.balance, &weights, worker),
                }
            })
            .collect();
        Self {
            number,
            config,
            upstreams,
        }
    }

    /// Marks every backend of `old` that `self` no longer has as retired and closes its idle
    /// connections.
    pub fn retire_replaced(&self, old: &Generation) {
        for group in &old.upstreams {
            let current = self.group(&group.name);
            for backend in &group.backends {
                let stays =
                    current.is_some_and(|g| g.backends.iter().any(|b| Rc::ptr_eq(b, backend)));
                if !stays {
                    backend.retired.set(true);
                    backend.pool.clear();
                }
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
    pub fn backend(&self, address: SocketAddr) -> Option<&Rc<Backend>> {
        self.backends.iter().find(|b| b.address == address)
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

        next.retire_replaced(&first);
        assert!(old_api.backends[0].is_retired());
        assert!(!new_api.backends[0].is_retired());
        assert!(!new_api.backends[1].is_retired());
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
}
