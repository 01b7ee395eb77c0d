//! What happened to one request, filled in as it goes and read once when it ends: the worker's
//! counters (listener, route, group, backend: see [`crate::metrics`]) and the access log line
//! come from here, so they cannot disagree with each other or with the response the client got.
//!
//! Counting costs a handful of `Cell` increments and one clock read per request; the access log
//! (off by default) formats only when it is on.

use super::client::LoggedClient;
use super::client::PendingRequest;
use crate::config::Encoding;
use crate::metrics::counters::Outcome;
use crate::runtime::context::WorkerContext;
use crate::upstream::failover::GaveUp;
use crate::upstream::route::route_label;
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Debug)]
pub struct RequestRecord {
    /// When the request head was complete.
    pub started: Instant,
    /// Status of the final response sent to the client (relayed or made by the proxy); 0 when
    /// none was sent.
    pub status: Cell<u16>,
    /// The backend of the last attempt, if one was chosen.
    pub backend: Cell<Option<SocketAddr>>,
    /// Its index in the request's group.
    pub backend_index: Cell<Option<usize>>,
    /// The response (its status in `status`) came from that backend, not from the proxy.
    pub answered_by_backend: Cell<bool>,
    /// Backends tried (connect attempts and retries included).
    pub attempts: Cell<u32>,
    /// Response bytes written to the client, head included.
    pub bytes_to_client: Cell<u64>,
    /// Request body bytes read from the client.
    pub body_from_client: Cell<u64>,
    /// Why the proxy answered with its own error instead of (another) backend's response: the
    /// access log's `gave_up` field.
    pub gave_up: Cell<Option<GaveUp>>,
    /// The client stopped reading the response and its connection was reset.
    pub slow_reader_reset: Cell<bool>,
    /// The response body was compressed to its end: the coding, the bytes it took and the bytes
    /// it gave.
    pub compressed: Cell<Option<(Encoding, u64, u64)>>,
}

impl RequestRecord {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            status: Cell::new(0),
            backend: Cell::new(None),
            backend_index: Cell::new(None),
            answered_by_backend: Cell::new(false),
            attempts: Cell::new(0),
            bytes_to_client: Cell::new(0),
            body_from_client: Cell::new(0),
            gave_up: Cell::new(None),
            slow_reader_reset: Cell::new(false),
            compressed: Cell::new(None),
        }
    }

    pub fn add_to_client(&self, bytes: usize) {
        self.bytes_to_client
            .set(self.bytes_to_client.get() + bytes as u64);
    }

    pub fn add_from_client(&self, bytes: u64) {
        self.body_from_client
            .set(self.body_from_client.get() + bytes);
    }

    /// Retries: attempts after the first.
    pub fn retries(&self) -> u32 {
        self.attempts.get().saturating_sub(1)
    }

    /// The request ended: counts it on `ctx`'s listener, route, group and backend, then writes
    /// the access log line when `[log] access` is on.
    pub fn finish(&self, ctx: &WorkerContext, client: LoggedClient, request: &PendingRequest) {
        let micros = self.started.elapsed().as_micros() as u64;
        let status = self.status.get();
        let (to_client, body) = (self.bytes_to_client.get(), self.body_from_client.get());
        let generation = &request.generation;
        let group = &generation.upstreams[request.upstream()];

        let outcome = Outcome::of(status, micros);
        let listener = &ctx.listeners[request.listener()];
        listener.count(&outcome);
        // Its head was counted as it arrived (it counts for refused requests too).
        listener.add_received(body);
        listener.add_sent(to_client);
        if self.slow_reader_reset.get() {
            listener.slow_reader_reset();
        }
        if let Some((encoding, bytes_in, bytes_out)) = self.compressed.get() {
            ctx.compression.count(encoding, bytes_in, bytes_out);
        }
        generation.routes[request.listener()][request.route()].count(&outcome);
        let stats = &group.state.stats;
        stats.request_finished(&outcome, self.retries());
        if let Some(counted) = self.gave_up.get().and_then(GaveUp::counted) {
            stats.gave_up(counted);
        }
        if let Some(index) = self.backend_index.get() {
            if self.answered_by_backend.get() {
                let stats = &group.backends[index].stats;
                stats.count_response(&outcome);
                stats.add_sent(request.upstream_head.len() as u64 + body);
                stats.add_received(to_client);
            }
        }

        if generation.config.log.access {
            self.log(ctx.id, client, request, micros);
        }
    }

    /// The access log line: one `lbproxy::access` event, whose fields become journal fields
    /// (`REQUEST_ID`, `BACKEND`, …) under systemd and JSON keys with `[log] format = "json"`.
    fn log(&self, worker: usize, client: LoggedClient, request: &PendingRequest, duration_us: u64) {
        let generation = &request.generation;
        let listener = &generation.config.listeners[request.listener()];
        let status = self.status.get();
        let backend = self.backend.get();
        tracing::info!(
            target: "lbproxy::access",
            worker,
            request_id = %request.request_id,
            trace_id = %request.trace_id(),
            client = %client,
            peer = %client.peer,
            request = %request.summary,
            rewritten = %request.rewritten(),
            listener = %listener.name,
            route = %route_label(&listener.routes[request.route()]),
            upstream = %generation.upstreams[request.upstream()].name,
            backend = %backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            status,
            bytes_sent = self.bytes_to_client.get(),
            bytes_received = self.body_from_client.get(),
            duration_us,
            retries = self.retries(),
            gave_up = self.gave_up.get().map_or("-", GaveUp::as_str),
            "{} {} {status} {duration_us}us",
            client.ip(),
            request.summary,
        );
    }
}
