//! A worker's own state: its view of the config, one balancer and pool per upstream group,
//! request ids, the drain signal and the count of open client connections. `!Send` by design:
//! it never leaves the worker thread.

use super::pool::Pool;
use super::request_id::RequestIds;
use crate::balancer::Balancer;
use crate::config::Config;
use crate::runtime::drain::DrainSignal;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug)]
pub struct WorkerContext {
    pub id: usize,
    pub config: Arc<Config>,
    pub upstreams: Vec<UpstreamGroup>,
    pub drain: DrainSignal,
    pub request_ids: RequestIds,
    open_connections: Cell<usize>,
}

/// One upstream group as this worker sees it.
#[derive(Debug)]
pub struct UpstreamGroup {
    pub name: String,
    pub backends: Vec<SocketAddr>,
    pub balancer: Balancer,
    pub pool: Pool,
}

impl WorkerContext {
    pub fn new(id: usize, config: Arc<Config>) -> Self {
        let upstreams = config
            .upstreams
            .iter()
            .map(|group| {
                let weights: Vec<u32> = group.backends.iter().map(|b| b.weight.get()).collect();
                UpstreamGroup {
                    name: group.name.clone(),
                    backends: group.backends.iter().map(|b| b.address).collect(),
                    balancer: Balancer::new(group.balance, &weights, id),
                    pool: Pool::new(group.backends.len(), &group.pool),
                }
            })
            .collect();
        Self {
            id,
            config,
            upstreams,
            drain: DrainSignal::new(),
            request_ids: RequestIds::new(id),
            open_connections: Cell::new(0),
        }
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.get()
    }

    /// Counts a client connection as open until the guard drops.
    pub fn track_connection(self: &Rc<Self>) -> ConnectionGuard {
        self.open_connections.set(self.open_connections.get() + 1);
        ConnectionGuard { ctx: self.clone() }
    }
}

#[derive(Debug)]
pub struct ConnectionGuard {
    ctx: Rc<WorkerContext>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = &self.ctx.open_connections;
        open.set(open.get() - 1);
    }
}
