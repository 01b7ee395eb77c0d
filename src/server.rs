//! The running proxy: binds listeners, starts the workers, and stops them.
//!
//! Library entry point used by `lbproxy serve`, `lbproxy up` and the tests:
//! `Server::start(config)` returns once every worker is listening (so port-0 binds are known via
//! [`Server::listen_addrs`]); [`ShutdownHandle::shutdown`] stops accepting and drains;
//! [`Server::wait`] joins the workers.

use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;

/// A started proxy.
#[derive(Debug)]
pub struct Server {
    listen_addrs: Vec<(String, SocketAddr)>,
}

/// Cloneable, `Send` handle that asks a [`Server`] to drain and stop.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {}

impl Server {
    /// Binds every listener (once, on this thread, with `SO_REUSEPORT`; port 0 resolved by the
    /// first bind), starts `config.runtime.workers` workers, and returns when all are accepting.
    pub fn start(config: Arc<Config>) -> anyhow::Result<Server> {
        let _ = config;
        todo!()
    }

    /// `(listener name, bound address)` for every listener, ports resolved.
    pub fn listen_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listen_addrs
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        todo!()
    }

    /// Blocks until every worker has exited (after a shutdown and its drain).
    pub fn wait(self) -> anyhow::Result<()> {
        todo!()
    }
}

impl ShutdownHandle {
    /// Stop accepting, let in-flight requests finish (up to `runtime.drain_timeout`), close idle
    /// keep-alive connections, then let the workers exit. Idempotent.
    pub fn shutdown(&self) {
        todo!()
    }
}
