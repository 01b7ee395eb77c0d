//! The running proxy: binds listeners, starts the workers, and stops them.
//!
//! Library entry point used by `lbproxy serve`, `lbproxy up` and the tests:
//! `Server::start(config)` returns once every worker is listening (so port-0 binds are known via
//! [`Server::listen_addrs`]) and the admin server ([`crate::admin`], `[admin]`) answers on
//! [`Server::admin_addr`]. It is [`Server::bind`] (every socket bound, nothing started: a busy
//! port fails there) followed by [`Bound::start`] (or [`Bound::start_with`], which says how the
//! control loop runs: systemd, `lbproxy up`'s reloads, controllers). Start order: the workers,
//! then the control loop ([`crate::control`], which starts the health checker), then the admin
//! server. The server's [`ControlHandle`] (cloneable, `Send`) is what the signal thread and the
//! admin API drive: [`ControlHandle::reload_from_source`] swaps the configuration on every
//! worker, [`ControlHandle::shutdown`] stops accepting and drains; [`Server::wait`] joins the
//! workers, then stops the control loop and the admin server (which keeps answering during the
//! drain). A start that fails half-way stops what it started the same way, in one place.

pub use crate::control::{ControlHandle, Counters, LoopOptions, ReloadError, ReloadReport};

use crate::admin::{self, AdminServer, ServerInfo};
use crate::config::Config;
use crate::control::{self, Commands, ControlLoop, Inbox, LoopThread, WorkerLink};
use crate::listener;
use crate::runtime::driver::{self, Driver};
use crate::runtime::WorkerShared;
use crate::sys::cpus;
use crate::systemd::activation::InheritedSockets;
use crate::worker::spawn::{self as worker, WorkerSpec};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a worker may take to build its runtime and start accepting.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A started proxy.
#[derive(Debug)]
pub struct Server {
    listen_addrs: Vec<(String, SocketAddr)>,
    driver: Driver,
    control: ControlHandle,
    admin_addr: Option<SocketAddr>,
    started: Started,
}

/// The threads a start has started so far. Stopped in one place ([`Started::stop`]): by
/// [`Server::wait`] once the workers drain, and by its drop when a start fails half-way (or a
/// server is dropped unwaited).
#[derive(Debug)]
struct Started {
    /// Each worker's drain flag, to stop workers that started when the rest of a start fails.
    drain: Vec<Arc<WorkerShared>>,
    workers: Vec<JoinHandle<()>>,
    control: Option<LoopThread>,
    admin: Option<AdminServer>,
}

impl Started {
    /// Joins the workers (after asking them to drain, with `drain`), then stops the control
    /// loop (and its health checker) and the admin server. Returns how many workers panicked.
    fn stop(&mut self, drain: bool) -> usize {
        if drain {
            for worker in &self.drain {
                worker.drain_requested.store(true, Ordering::Relaxed);
            }
        }
        let panicked = self
            .workers
            .drain(..)
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count();
        if let Some(control) = self.control.take() {
            control.stop();
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        panicked
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop(true);
    }
}

impl Server {
    /// Binds every listener (once, on this thread, with `SO_REUSEPORT`; port 0 resolved by the
    /// first bind), starts `config.runtime.workers` workers, and returns when all are accepting.
    pub fn start(config: Arc<Config>) -> anyhow::Result<Server> {
        Self::bind(config, InheritedSockets::none())?.start()
    }

    /// [`start`](Self::start), taking each listener's socket from `inherited` (systemd socket
    /// activation, matched by name) where there is one. Inherited sockets no listener takes are
    /// reported and closed.
    pub fn start_with(config: Arc<Config>, inherited: InheritedSockets) -> anyhow::Result<Server> {
        Self::bind(config, inherited)?.start()
    }

    /// The first half of [`start_with`](Self::start_with): binds the admin server's socket and
    /// every listener's, and starts nothing. `lbproxy up` binds before it starts its instances,
    /// so a busy port fails at once instead of after every instance is up.
    ///
    /// A group that discovers its backends from systemd gets its first ones here, read over
    /// D-Bus; without a bus to read them from, the start fails with the reason.
    pub fn bind(config: Arc<Config>, mut inherited: InheritedSockets) -> anyhow::Result<Bound> {
        let config = crate::control::with_first_backends(config)?;
        let driver = driver::resolve(config.runtime.driver)?;
        let worker_count = config.runtime.workers.get();
        // Before any worker starts: a taken admin port fails the start with the reason.
        let admin = match config.admin.enabled {
            true => Some(admin::bind(config.admin.address)?),
            false => None,
        };

        let mut listeners_per_worker: Vec<Vec<std::net::TcpListener>> =
            (0..worker_count).map(|_| Vec::new()).collect();
        let mut listen_addrs = Vec::new();
        let mut one_worker_per_client = Vec::new();
        let only_listener = config.listeners.len() == 1;
        for listener in &config.listeners {
            let bound_sockets =
                listener::sockets_for(listener, worker_count, &mut inherited, only_listener)
                    .with_context(|| format!("listener \"{}\"", listener.name))?;
            listen_addrs.push((listener.name.clone(), bound_sockets.bound));
            one_worker_per_client.push(bound_sockets.one_worker_per_client);
            for (worker, socket) in bound_sockets.sockets.into_iter().enumerate() {
                listeners_per_worker[worker].push(socket);
            }
        }

        for name in inherited.unused_names() {
            tracing::warn!(
                "systemd passed a socket named \"{name}\" but no [listener.{name}] exists; closing \
                 it (FileDescriptorName= in lbproxy.socket must equal a listener's name)"
            );
        }
        Ok(Bound {
            config,
            driver,
            admin,
            listeners_per_worker,
            one_worker_per_client,
            listen_addrs,
            channel: control::channel(),
        })
    }

    /// `(listener name, bound address)` for every listener, ports resolved.
    pub fn listen_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listen_addrs
    }

    /// Where the admin server listens (port 0 resolved); `None` with `[admin] enabled = false`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The io driver the workers run on.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The handle that reloads, drains and watches the workers from any thread.
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// Blocks until every worker has exited (after a shutdown and its drain), then stops the
    /// control loop (and with it the health checker) and the admin server.
    pub fn wait(mut self) -> anyhow::Result<()> {
        let panicked = self.started.stop(false);
        anyhow::ensure!(panicked == 0, "{panicked} worker thread(s) panicked");
        Ok(())
    }
}

/// A proxy's sockets, bound by [`Server::bind`] and not yet served: [`Bound::start`] starts the
/// workers, the control loop and the admin server on them. Dropping it closes them.
#[derive(Debug)]
pub struct Bound {
    config: Arc<Config>,
    driver: Driver,
    admin: Option<std::net::TcpListener>,
    listeners_per_worker: Vec<Vec<std::net::TcpListener>>,
    /// Per listener: every connection of one client address reaches one worker (steered).
    one_worker_per_client: Vec<bool>,
    listen_addrs: Vec<(String, SocketAddr)>,
    /// The control loop's channel, open from the bind on (see [`Bound::commands`]).
    channel: (Commands, Inbox),
}

impl Bound {
    /// `(listener name, bound address)` for every listener, ports resolved.
    pub fn listen_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listen_addrs
    }

    /// The channel to the control loop that [`start`](Self::start) will run: commands sent
    /// before (`lbproxy up` forwards SIGHUP while its instances start) wait for it.
    pub fn commands(&self) -> Commands {
        self.channel.0.clone()
    }

    /// Starts the workers on the bound sockets and returns when all are accepting; the control
    /// loop runs with [`LoopOptions::default`] (no systemd, no controller).
    pub fn start(self) -> anyhow::Result<Server> {
        self.start_with(LoopOptions::default())
    }

    /// [`start`](Self::start), the control loop running as `options` say.
    pub fn start_with(self, options: LoopOptions) -> anyhow::Result<Server> {
        let Bound {
            config,
            driver,
            admin: admin_listener,
            listeners_per_worker,
            one_worker_per_client,
            listen_addrs,
            channel,
        } = self;
        let worker_count = config.runtime.workers.get();
        let started_ms = crate::runtime::now_ms();
        let cpus = cpus::allowed_cpus();
        let mut links = Vec::with_capacity(worker_count);
        let mut specs = Vec::with_capacity(worker_count);
        for (id, listeners) in listeners_per_worker.into_iter().enumerate() {
            let shared = Arc::new(WorkerShared::default());
            let (commands_tx, commands_rx) = mpsc::channel();
            links.push(WorkerLink {
                shared: shared.clone(),
                commands: commands_tx,
            });
            specs.push(WorkerSpec {
                id,
                cpu: config.runtime.pin_workers.then(|| cpus[id % cpus.len()]),
                driver,
                config: config.clone(),
                listeners,
                one_worker_per_client: one_worker_per_client.clone(),
                shared,
                commands: commands_rx,
            });
        }
        // From here on, an early return stops whatever was started (the drop of `started`).
        let mut started = Started {
            drain: links.iter().map(|l| l.shared.clone()).collect(),
            workers: Vec::with_capacity(worker_count),
            control: None,
            admin: None,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for spec in specs {
            let handle =
                worker::spawn(spec, ready_tx.clone()).context("spawning a worker thread")?;
            started.workers.push(handle);
        }
        drop(ready_tx);
        for _ in 0..worker_count {
            match ready_rx.recv_timeout(WORKER_START_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => anyhow::bail!("a worker failed to start: {reason}"),
                Err(_) => anyhow::bail!("workers did not start within {WORKER_START_TIMEOUT:?}"),
            }
        }

        let (control_loop, control) = ControlLoop::new(config.clone(), links, channel, options);
        started.control = Some(control_loop.spawn()?);

        let info = ServerInfo {
            driver,
            started_ms,
            listeners: listen_addrs.clone(),
        };
        started.admin = admin_listener
            .map(|listener| AdminServer::spawn(listener, control.clone(), info))
            .transpose()
            .context("spawning the admin server's threads")?;
        let admin_addr = started.admin.as_ref().map(AdminServer::local_addr);

        tracing::info!(
            workers = worker_count,
            driver = %driver,
            listeners = %listener_urls(&config, &listen_addrs),
            admin = %admin_addr.map_or("off".to_owned(), |a| a.to_string()),
            "lbproxy is accepting connections"
        );
        Ok(Server {
            listen_addrs,
            driver,
            control,
            admin_addr,
            started,
        })
    }
}

/// `http://127.0.0.1:8080,tcp://127.0.0.1:5432`: each listener as its scheme and bound address,
/// for the startup log line.
fn listener_urls(config: &Config, listen_addrs: &[(String, SocketAddr)]) -> String {
    let urls: Vec<String> = listen_addrs
        .iter()
        .map(|(name, address)| {
            let scheme = config
                .listener(name)
                .map_or("http", |l| l.protocol.scheme());
            format!("{scheme}://{address}")
        })
        .collect();
    urls.join(",")
}
