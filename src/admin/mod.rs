//! The admin plane: an HTTP server on the control side (never on a worker) with the live
//! dashboard (`/`), Prometheus metrics (`/metrics`), the JSON API (`/api/…`: status, backends,
//! drain / enable / weight, reload, the discovered instances, the autoscaled groups, the
//! deployments), and `lbproxy ctl` and `lbproxy deploy`, its command-line clients.
//!
//! Flow: [`crate::server::Server::start`] binds the admin address before the workers start (a
//! busy port fails the start, with the reason) and spawns [`AdminServer`] once they listen. Its
//! accept thread hands each connection to a short-lived thread ([`http`]: one request,
//! `Connection: close`), which checks access and dispatches ([`router`]). Everything it shows
//! comes from the workers' published snapshots ([`crate::metrics`]), summed per request, and from
//! the history the control loop's [`sampler`] keeps (rates, percentiles, two minutes of points).
//! Changes (backend drain/enable/weight, reload) are commands to the control loop ([`api`]),
//! answered once every worker applied them; the connection's thread waits for the answer.
//!
//! Files: `http.rs` (request/response), `router.rs` (routes, access), `prometheus.rs` (the
//! exposition, rendered from [`crate::metrics::tables`]; every listener, group and backend
//! metric is declared once, in [`crate::metrics::catalog`]), `api.rs` (JSON, changes),
//! `instances.rs` (the systemd units of `discover` groups: `/api/instances` and their metrics),
//! `autoscale.rs` and `deploy.rs` (the autoscaler's and the deploy controller's boards: their
//! endpoints and metrics), `drain_guard.rs` (no drain of a group's last serving backend
//! without `force`), `dashboard.rs` + `assets/` (the page), `client.rs` + `ctl/` (`lbproxy
//! ctl`, `lbproxy deploy`). `sampler` is the control loop's ([`crate::control::sampler`]),
//! named here for the paths that read it.

pub mod api;
pub mod autoscale;
pub mod client;
pub mod ctl;
pub mod dashboard;
pub mod deploy;
pub mod drain_guard;
pub mod http;
pub mod instances;
pub mod prometheus;
pub mod router;
pub use crate::control::sampler;

use crate::control::ControlHandle;
use crate::sys::driver::Driver;
use anyhow::Context;
use sampler::Sampler;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections served at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 32;
/// Each read and write of a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin server knows about the proxy besides its control handle.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub driver: Driver,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// `(listener name, bound address)`.
    pub listeners: Vec<(String, SocketAddr)>,
}

impl ServerInfo {
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, address)| *address)
    }
}

/// What every request handler reads.
#[derive(Debug)]
pub struct AdminState {
    pub control: ControlHandle,
    pub info: ServerInfo,
    /// The control loop's sampler (the same as `control.sampler()`).
    pub sampler: Arc<Sampler>,
}

/// Binds the admin address (with a message that says what to do when it is taken).
pub fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).with_context(|| {
        format!(
            "the admin server cannot listen on {address} (is another lbproxy running?); set \
             [admin] address to a free port, or enabled = false"
        )
    })
}

/// The running admin server: its accept thread.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves `listener` until [`AdminServer::stop`].
    pub fn spawn(
        listener: TcpListener,
        control: ControlHandle,
        info: ServerInfo,
    ) -> std::io::Result<AdminServer> {
        let local_addr = listener.local_addr()?;
        let state = Arc::new(AdminState {
            sampler: control.sampler().clone(),
            control,
            info,
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = std::thread::Builder::new()
            .name("lbproxy-admin".into())
            .spawn({
                let stopping = stopping.clone();
                move || accept_loop(listener, state, &stopping)
            })?;
        Ok(AdminServer {
            local_addr,
            stopping,
            accept: Some(accept),
        })
    }

    /// The address it listens on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, and waits for the accept thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop_inner();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<AdminState>, stopping: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("admin server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = http::AdminResponse::error(503, "the admin server is busy; try again");
            http::write_response(&mut stream, &busy);
            continue;
        }
        let (state, finished) = (state.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("lbproxy-admin-conn".into())
            .spawn(move || {
                serve(&mut stream, &state);
                finished.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("admin server: cannot start a connection thread: {e}");
        }
    }
}

/// One connection: one request, one response.
fn serve(stream: &mut TcpStream, state: &AdminState) {
    let response = match http::read_request(stream) {
        Ok(request) => router::route(&request, state),
        Err(http::ReadError::Respond(response)) => response,
        Err(http::ReadError::Closed) => return,
    };
    http::write_response(stream, &response);
}
