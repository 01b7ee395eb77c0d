//! The `lbproxy-health` thread: one probe loop per probed backend, verdicts handed to the control
//! loop, which publishes them to the workers.
//!
//! It runs a small monoio runtime on the legacy (epoll) driver, so every probe loop is a task on
//! one thread: a slow or hanging backend only delays its own next probe, never the others', and
//! no thread per backend is needed (std blocking sockets would need one each to get that). The
//! legacy driver because a handful of connects a second gains nothing from io_uring, and epoll
//! works everywhere io_uring may be blocked.
//!
//! It stays a thread of its own rather than a job of the control loop because probing is network
//! I/O with a timeout per probe, many at once, which would stall a blocking loop's other work.
//! The control loop starts it and stops it, and the two talk through the [`ControlHandle`]:
//! every [`TICK`] the supervisor reads [`ControlHandle::config`], so a reload's new backends and
//! settings are probed from its next round on and removed backends stop being probed; each new
//! verdict table goes to the loop ([`ControlHandle::publish_health`]). A probe loop sleeps
//! `interval` between the end of one probe and the start of the next. The thread stops when the
//! proxy shuts down or [`HealthChecker::stop`] is called.

use super::background::Background;
use crate::config::{HealthConfig, ProxyProtocol};
use crate::control::ControlHandle;
use crate::health::{probe, Health, HealthTable, ProbeError, Thresholds};
use crate::runtime::TICK;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The running health-check thread.
#[derive(Debug)]
pub struct HealthChecker(Background);

impl HealthChecker {
    /// Starts the thread. It probes what `control`'s configuration asks for, until the proxy
    /// shuts down.
    pub fn spawn(control: ControlHandle) -> std::io::Result<HealthChecker> {
        Background::spawn("lbproxy-health", move |stop| {
            let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match runtime {
                Ok(mut runtime) => runtime.block_on(supervise(control, stop)),
                Err(e) => tracing::error!("health checks cannot run: {e}"),
            }
        })
        .map(HealthChecker)
    }

    /// Stops probing and waits for the thread (within about one tick).
    pub fn stop(self) {
        self.0.stop();
    }
}

type Key = (String, SocketAddr);

/// One probed backend, shared between the supervisor and its probe loop.
#[derive(Debug)]
struct Target {
    group: String,
    address: SocketAddr,
    settings: RefCell<HealthConfig>,
    /// The group's `proxy_protocol`: probes open with a header without addresses, as the
    /// backend expects one on every connection.
    proxy_protocol: Cell<Option<ProxyProtocol>>,
    stopped: Cell<bool>,
}

/// The verdicts, and the handle to publish them with.
#[derive(Debug)]
struct Verdicts {
    table: RefCell<HealthTable>,
    control: ControlHandle,
}

impl Verdicts {
    fn publish(&self) {
        let table = Arc::new(self.table.borrow().clone());
        self.control.publish_health(table);
    }
}

async fn supervise(control: ControlHandle, stop: Arc<AtomicBool>) {
    let verdicts = Rc::new(Verdicts {
        table: RefCell::new(HealthTable::default()),
        control: control.clone(),
    });
    let mut targets: HashMap<Key, Rc<Target>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) && !control.is_shutting_down() {
        let config = control.config();
        if targets.is_empty() && config.upstreams.iter().all(|g| g.health.is_none()) {
            // Nothing to probe (the common case without [health] sections): just watch.
            drop(config);
            monoio::time::sleep(TICK).await;
            continue;
        }
        let wanted: HashMap<Key, (&HealthConfig, Option<ProxyProtocol>)> = config
            .upstreams
            .iter()
            .filter_map(|group| Some((group, group.health.as_ref()?)))
            .flat_map(|(group, health)| {
                group.backends.iter().map(move |b| {
                    (
                        (group.name.clone(), b.address),
                        (health, group.proxy_protocol),
                    )
                })
            })
            .collect();

        let mut changed = false;
        targets.retain(|key, target| {
            let keep = wanted.contains_key(key);
            if !keep {
                target.stopped.set(true);
                verdicts.table.borrow_mut().remove(&key.0, key.1);
                control.probe_log().remove(&key.0, key.1);
                changed = true;
            }
            keep
        });
        for (key, (settings, proxy_protocol)) in wanted {
            match targets.get(&key) {
                Some(target) => {
                    if *target.settings.borrow() != *settings {
                        target.settings.replace(settings.clone());
                    }
                    target.proxy_protocol.set(proxy_protocol);
                }
                None => {
                    let target = Rc::new(Target {
                        group: key.0.clone(),
                        address: key.1,
                        settings: RefCell::new(settings.clone()),
                        proxy_protocol: Cell::new(proxy_protocol),
                        stopped: Cell::new(false),
                    });
                    verdicts.table.borrow_mut().insert(
                        &key.0,
                        key.1,
                        Health {
                            healthy: true,
                            since: Instant::now(),
                        },
                    );
                    changed = true;
                    monoio::spawn(probe_loop(target.clone(), verdicts.clone()));
                    targets.insert(key, target);
                }
            }
        }
        if changed {
            verdicts.publish();
        }
        monoio::time::sleep(TICK).await;
    }
    for target in targets.values() {
        target.stopped.set(true);
    }
}

async fn probe_loop(target: Rc<Target>, verdicts: Rc<Verdicts>) {
    let mut thresholds = Thresholds::default();
    while !target.stopped.get() {
        let settings = target.settings.borrow().clone();
        let result = probe(
            target.address,
            &settings.check,
            settings.timeout,
            target.proxy_protocol.get(),
        )
        .await;
        if target.stopped.get() {
            return;
        }
        if let Err(error @ ProbeError { local: true, .. }) = &result {
            // The proxy could not open the probe's connection itself: nothing was learnt about
            // the backend, whose health stays as it was.
            tracing::warn!(
                upstream = %target.group,
                backend = %target.address,
                "health probe of {} not made: {}; its health stays as it was",
                target.address,
                error.reason
            );
            monoio::time::sleep(settings.interval).await;
            continue;
        }
        verdicts.control.probe_log().record(
            &target.group,
            target.address,
            result.as_ref().map(|_| ()).map_err(|e| e.reason.clone()),
        );
        let flip = thresholds.record(result.is_ok(), settings.rise, settings.fall);
        if let Some((healthy, streak)) = flip {
            log_flip(&target, healthy, streak, result.err().map(|e| e.reason));
            verdicts.table.borrow_mut().insert(
                &target.group,
                target.address,
                Health {
                    healthy,
                    since: Instant::now(),
                },
            );
            verdicts.publish();
        }
        monoio::time::sleep(settings.interval).await;
    }
}

fn log_flip(target: &Target, healthy: bool, streak: u32, reason: Option<String>) {
    let probes = if streak == 1 { "probe" } else { "probes" };
    if healthy {
        tracing::info!(
            upstream = %target.group,
            backend = %target.address,
            "backend {} of upstream {} is UP after {streak} passing {probes}",
            target.address,
            target.group,
        );
    } else {
        tracing::warn!(
            upstream = %target.group,
            backend = %target.address,
            "backend {} of upstream {} is DOWN after {streak} failed {probes}: {}",
            target.address,
            target.group,
            reason.as_deref().unwrap_or("probe failed"),
        );
    }
}
