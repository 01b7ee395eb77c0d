//! L4 building blocks, free of any worker state: the two-way byte [`relay`] (by copy, or by
//! `splice(2)` through a pipe), the [`sni`] reader for TLS passthrough, [`proxy_protocol`]
//! headers, and the raw syscalls behind them ([`sys`], the only `unsafe` here).
//!
//! The connection flow of a tcp listener (route by SNI, pick a backend, connect with failover,
//! PROXY header, relay, access log) is `proxy::tcp`, beside the HTTP flow; the relay after a
//! WebSocket upgrade is `proxy::body::tunnel`. Both end in [`relay::run`].

pub mod proxy_protocol;
pub mod relay;
pub mod sni;
pub mod sys;
