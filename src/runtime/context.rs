//! A worker's own state: the configuration generation it serves (and the wake-up of requests
//! waiting for the next one: scale from zero), request and trace ids, the drain signal, the pipes its splice relays borrow, the counts of open client connections and
//! answered requests, each listener's counters and per-client state (`connection_limits`,
//! [`super::clients`]), the compression counters and the request rate limits' tables. `!Send` by
//! design: it never leaves the worker
//! thread.

use super::clients::ClientTable;
use super::ids::{RequestIds, TraceIds};
use crate::metrics::compression::CompressionStats;
use crate::metrics::stats::ListenerStats;
use crate::policy::rate_limit::RateLimits;
use crate::relay::splice::PipePool;
use crate::runtime::drain::DrainSignal;
use crate::upstream::scale_from_zero::CommitSignal;
use crate::upstream::Generation;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[derive(Debug)]
pub struct WorkerContext {
    pub id: usize,
    /// The generation new requests start on; swapped whole by a committed reload.
    generation: RefCell<Rc<Generation>>,
    /// Wakes the requests waiting for an instance of a group scaled to zero at each commit.
    pub commits: CommitSignal,
    pub drain: DrainSignal,
    pub request_ids: RequestIds,
    /// Empty pipes for splice relays (tcp listeners with `relay = "splice"`).
    pub pipes: PipePool,
    pub trace_ids: TraceIds,
    /// Same order as the configuration's listeners (which a reload cannot change).
    pub listeners: Vec<ListenerStats>,
    /// Per-client connection state, same order as `listeners`.
    pub clients: Vec<ClientTable>,
    /// Responses compressed, per coding.
    pub compression: CompressionStats,
    /// The request rate limits' tables, following the generation (swapped with it in
    /// [`WorkerContext::commit`]).
    pub rate_limits: RefCell<RateLimits>,
    open_connections: Cell<usize>,
    /// Requests answered since the worker started (published on the tick).
    requests: Cell<u64>,
}

impl WorkerContext {
    pub fn new(id: usize, generation: Generation) -> Self {
        let listeners = generation
            .config
            .listeners
            .iter()
            .map(|_| ListenerStats::default())
            .collect();
        let rate_limits = RefCell::new(RateLimits::new(&generation.config));
        let clients = (generation.config.listeners.iter())
            .map(|_| ClientTable::default())
            .collect();
        Self {
            id,
            generation: RefCell::new(Rc::new(generation)),
            commits: CommitSignal::default(),
            drain: DrainSignal::new(),
            request_ids: RequestIds::new(id),
            pipes: PipePool::default(),
            trace_ids: TraceIds::new(id),
            listeners,
            clients,
            compression: CompressionStats::default(),
            rate_limits,
            open_connections: Cell::new(0),
            requests: Cell::new(0),
        }
    }

    /// The generation serving new requests now. A request keeps the `Rc` it started with.
    pub fn generation(&self) -> Rc<Generation> {
        self.generation.borrow().clone()
    }

    /// The generation serving new requests now, borrowed: for a check that holds it across no
    /// `.await` and no commit (the accept path), without touching the `Rc`'s count.
    pub fn current_generation(&self) -> std::cell::Ref<'_, Rc<Generation>> {
        self.generation.borrow()
    }

    /// Makes `next` the generation for new requests: backends that stay take their new
    /// settings (keeping their runtime overrides when `keep_overrides`), and the ones it
    /// dropped are retired.
    pub fn commit(&self, next: Generation, keep_overrides: bool) {
        let next = Rc::new(next);
        let old = self.generation.replace(next.clone());
        next.take_over(&old, keep_overrides);
        self.rate_limits.borrow_mut().follow(&next.config);
        self.commits.notify();
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.get()
    }

    /// Counts one answered request.
    pub fn count_request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Counts a client connection of listener `listener` as open until the guard drops.
    pub fn track_connection(self: &Rc<Self>, listener: usize) -> ConnectionGuard {
        self.open_connections.set(self.open_connections.get() + 1);
        self.listeners[listener].connection_opened();
        ConnectionGuard {
            ctx: self.clone(),
            listener,
        }
    }
}

#[derive(Debug)]
pub struct ConnectionGuard {
    ctx: Rc<WorkerContext>,
    listener: usize,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = &self.ctx.open_connections;
        open.set(open.get() - 1);
        self.ctx.listeners[self.listener].connection_closed();
    }
}
