//! What happened to one connection of a tcp listener, filled in as it goes and read once when it
//! ends: the worker's counters (listener, group, backend: see [`crate::metrics`]) and the access
//! log line come from here.

use crate::runtime::context::WorkerContext;
use crate::upstream::failover::GaveUp;
use crate::upstream::Generation;
use std::net::SocketAddr;
use std::time::Instant;

/// What happened to one connection of a tcp listener: its counters and its access log line.
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
    /// The index (in the group) of the backend the connection was relayed to.
    pub connected: Option<usize>,
    /// Bytes from the client to the backend (the ClientHello read for routing included).
    pub bytes_received: u64,
    /// Bytes from the backend to the client.
    pub bytes_sent: u64,
    /// How it ended, one word: `closed`, `client_reset`, `backend_reset`, `idle_timeout`, or why
    /// it never reached a backend (`no_route`, `no_usable_backend`, `all_backends_failed`,
    /// `queue_timeout`, …).
    pub end: &'static str,
    /// Why it never reached a backend, when the failover gave up (`end` is its word).
    pub gave_up: Option<GaveUp>,
}

impl ConnectionRecord {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            sni: None,
            upstream: None,
            backend: None,
            attempts: 0,
            connected: None,
            bytes_received: 0,
            bytes_sent: 0,
            end: "-",
            gave_up: None,
        }
    }

    /// The connection from `client` to listener `listener` of `generation` ended: counts it on
    /// `ctx`'s listener, the group and the backend, then writes the access log line when
    /// `[log] access` is on.
    pub fn finish(
        &self,
        ctx: &WorkerContext,
        client: SocketAddr,
        generation: &Generation,
        listener: usize,
    ) {
        let stats = &ctx.listeners[listener];
        stats.add_received(self.bytes_received);
        stats.add_sent(self.bytes_sent);
        if let Some(group) = self.upstream.map(|index| &generation.upstreams[index]) {
            let group_stats = &group.state.stats;
            group_stats.add_retries(self.attempts.saturating_sub(1));
            if let Some(counted) = self.gave_up.and_then(GaveUp::counted) {
                group_stats.gave_up(counted);
            }
            if let Some(backend) = self.connected.map(|index| &group.backends[index]) {
                backend.stats.connection_closed();
                backend.stats.add_sent(self.bytes_received);
                backend.stats.add_received(self.bytes_sent);
            }
        }
        if !generation.config.log.access {
            return;
        }
        let worker = ctx.id;
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
