//! What happened to one request, filled in as it goes and read once when it ends: the access log
//! line (and, with the admin plane, the per-worker counters) come from here, so they cannot
//! disagree with each other or with the response the client got.

use super::client::PendingRequest;
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
    /// Backends tried (connect attempts and retries included).
    pub attempts: Cell<u32>,
    /// Response bytes written to the client, head included.
    pub bytes_to_client: Cell<u64>,
    /// Request body bytes read from the client.
    pub body_from_client: Cell<u64>,
    /// Why the proxy answered with its own error instead of (another) backend's response.
    pub gave_up: Cell<Option<GaveUp>>,
}

/// Why the proxy made the response itself: the access log's `gave_up` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// No backend was usable at all (down, draining, none left): 503.
    NoUsableBackend,
    /// Every usable backend was tried and failed.
    AllTried,
    /// The request reached `retry.max_retries`.
    MaxRetries,
    /// The worker's retry budget for the group was spent: a fast failure.
    RetryBudget,
    /// The failure was not safe to retry (the backend may have received the request, or a
    /// timeout or invalid response).
    NotRetryable,
    /// The client's request (body) was at fault.
    ClientError,
    /// Every usable backend stayed at `max_connections` for `queue_timeout`: 503.
    QueueTimeout,
    /// The proxy could not open a connection (out of descriptors, memory, local ports): 503.
    LocalResources,
}

impl GaveUp {
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::NoUsableBackend => "no_usable_backend",
            GaveUp::AllTried => "all_backends_failed",
            GaveUp::MaxRetries => "max_retries",
            GaveUp::RetryBudget => "retry_budget_exhausted",
            GaveUp::NotRetryable => "not_retryable",
            GaveUp::ClientError => "client_error",
            GaveUp::QueueTimeout => "queue_timeout",
            GaveUp::LocalResources => "proxy_out_of_resources",
        }
    }
}

impl RequestRecord {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            status: Cell::new(0),
            backend: Cell::new(None),
            attempts: Cell::new(0),
            bytes_to_client: Cell::new(0),
            body_from_client: Cell::new(0),
            gave_up: Cell::new(None),
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

    /// Writes the access log line (when `[log] access` is on) for `request`, answered to `client`
    /// by `worker`.
    pub fn finish(&self, worker: usize, client: SocketAddr, request: &PendingRequest) {
        let generation = &request.generation;
        if !generation.config.log.access {
            return;
        }
        let duration_us = self.started.elapsed().as_micros() as u64;
        let status = self.status.get();
        let backend = self.backend.get();
        tracing::info!(
            target: "lbproxy::access",
            worker,
            request_id = %request.request_id,
            client = %client,
            request = %request.summary,
            upstream = %generation.upstreams[request.upstream].name,
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

/// What happened to one connection of a tcp listener: its access log line.
#[derive(Debug)]
pub struct ConnectionRecord {
    /// When the connection was accepted.
    pub started: Instant,
    /// The name the ClientHello asked for (listeners that route by SNI).
    pub sni: Option<String>,
    /// Index of the upstream group in the generation, once routed.
    pub upstream: Option<usize>,
    /// The backend of the last attempt, if one was chosen.
    pub backend: Option<SocketAddr>,
    /// Backends tried (connect failures included).
    pub attempts: u32,
    /// Bytes from the client to the backend (the ClientHello read for routing included).
    pub bytes_received: u64,
    /// Bytes from the backend to the client.
    pub bytes_sent: u64,
    /// How it ended, one word: `closed`, `client_reset`, `backend_reset`, `idle_timeout`, or why
    /// it never reached a backend (`no_route`, `no_usable_backend`, `all_backends_failed`,
    /// `queue_timeout`, …).
    pub end: &'static str,
}

impl ConnectionRecord {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            sni: None,
            upstream: None,
            backend: None,
            attempts: 0,
            bytes_received: 0,
            bytes_sent: 0,
            end: "-",
        }
    }

    /// Writes the access log line (when `[log] access` is on) for a connection from `client`
    /// to listener `listener` of `generation`.
    pub fn finish(
        &self,
        worker: usize,
        client: SocketAddr,
        generation: &crate::proxy::upstream::Generation,
        listener: usize,
    ) {
        if !generation.config.log.access {
            return;
        }
        let duration_us = self.started.elapsed().as_micros() as u64;
        let listener = &generation.config.listeners[listener].name;
        let upstream = self
            .upstream
            .map_or("-", |index| generation.upstreams[index].name.as_str());
        let backend = self
            .backend
            .map_or_else(|| "-".to_owned(), |b| b.to_string());
        tracing::info!(
            target: "lbproxy::access",
            worker,
            client = %client,
            listener = %listener,
            sni = %self.sni.as_deref().unwrap_or("-"),
            upstream = %upstream,
            backend = %backend,
            bytes_sent = self.bytes_sent,
            bytes_received = self.bytes_received,
            duration_us,
            retries = self.attempts.saturating_sub(1),
            end = %self.end,
            "{} tcp {listener} {backend} {} {duration_us}us",
            client.ip(),
            self.end,
        );
    }
}
