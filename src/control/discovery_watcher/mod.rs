//! The `lbproxy-discovery` thread: the D-Bus side of discovery. It reads the units of every
//! discovered group, sends what it read to the control loop ([`Command::Discovered`]), applies
//! the groups' cgroup limits to their units, and writes the [`Inventory`].
//!
//! Per bus in use ([`BusWatch`]): connect and subscribe (a failure is logged once per outage and
//! retried every [`RETRY`]); list the units matching the patterns in full at once, then every
//! `resync` (signals are known to be missed: this repairs whatever was); read a unit again as
//! soon as a signal names it (UnitNew, UnitRemoved, PropertiesChanged, JobRemoved); read every
//! known unit each [`POLL`] for its cgroup figures. A broken connection (the bus restarted) is
//! dropped, and the reconnection starts with a full list. While a bus cannot be reached, its
//! groups keep the backends they had.
//!
//! Blocking D-Bus calls on their own thread, so neither the control loop nor a worker ever waits
//! for systemd. The thread reads the running configuration every round, so a reload that adds,
//! changes or removes a `discover` table takes effect within a [`POLL`].
//!
//! Files: `mod.rs` (the thread, its rounds, the read at start), `bus_watch.rs` (one bus),
//! `glob.rs` (unit patterns).

mod bus_watch;
mod glob;

use super::background::Background;
use super::discovery::{desired_backends, Discovered, Inventory, Routing};
use crate::config::{Config, DiscoverConfig, SystemdBus, TrafficSplit};
use crate::control::command::{Command, Commands};
use crate::control::shared::Shared;
use crate::systemd::bus::{BusError, Manager};
use bus_watch::{routing_key, BusWatch};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often every known unit is read again (state, cgroup figures).
pub const POLL: Duration = Duration::from_secs(1);
/// The longest the loop goes without a fresh read when nothing routing-relevant changed.
const REFRESH: Duration = Duration::from_secs(5);
/// How long after a failed connection the next try comes.
const RETRY: Duration = Duration::from_secs(2);
/// A unit whose `NRestarts` rose within this long is flapping.
const FLAPPING_FOR: Duration = Duration::from_secs(300);

/// The running discovery thread.
#[derive(Debug)]
pub struct DiscoveryWatcher(Background);

impl DiscoveryWatcher {
    /// Starts the thread; it follows the `discover` tables of `shared`'s running configuration
    /// (doing nothing while there are none) until [`DiscoveryWatcher::stop`].
    pub fn spawn(shared: Arc<Shared>, commands: Commands) -> std::io::Result<DiscoveryWatcher> {
        Background::spawn("lbproxy-discovery", move |stop| {
            watch(&shared, &commands, &stop);
        })
        .map(DiscoveryWatcher)
    }

    /// Stops following the units and waits for the thread (within about one [`POLL`]).
    pub fn stop(self) {
        self.0.stop();
    }
}

/// The discovered groups of `config`, by bus; not those whose instances are `lbproxy up`'s
/// children (`children`: `up` reports them, no bus is read).
fn groups_by_bus(config: &Config) -> BTreeMap<SystemdBus, Vec<(String, DiscoverConfig)>> {
    let mut buses: BTreeMap<SystemdBus, Vec<(String, DiscoverConfig)>> = BTreeMap::new();
    for group in &config.upstreams {
        // `lbproxy up`'s children are reported by `up` itself: no bus to read.
        if let Some(discover) = group.discover.as_ref().filter(|d| !d.children) {
            buses
                .entry(discover.bus)
                .or_default()
                .push((group.name.clone(), discover.clone()));
        }
    }
    buses
}

fn watch(shared: &Shared, commands: &Commands, stop: &AtomicBool) {
    let mut watches: BTreeMap<SystemdBus, BusWatch> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) && !shared.is_shutting_down() {
        let config = shared.config();
        let buses = groups_by_bus(&config);
        watches.retain(|bus, _| buses.contains_key(bus));
        if buses.is_empty() {
            if !shared.inventory().instances.is_empty() {
                shared.set_inventory(Arc::default());
            }
            std::thread::sleep(POLL);
            continue;
        }
        // Wait for a signal on one bus (usually the only one) until the next poll is due.
        for (round, (bus, groups)) in buses.iter().enumerate() {
            let watch = watches.entry(*bus).or_insert_with(|| BusWatch::new(*bus));
            let wait = if round == 0 { POLL } else { Duration::ZERO };
            watch.round(groups, wait, Instant::now());
            if let Some(discovered) = watch.discovered(groups) {
                // At once when something that can change a backend changed; otherwise every
                // REFRESH, for the figures that move every second (the autoscaler's CPU).
                let key = routing_key(&discovered);
                let now = Instant::now();
                let stale = watch
                    .sent_at
                    .is_none_or(|at| now.duration_since(at) >= REFRESH);
                if watch.sent.as_ref() != Some(&key) || stale {
                    watch.sent = Some(key);
                    watch.sent_at = Some(now);
                    commands.send(Command::Discovered(discovered));
                }
            }
        }
        let now = Instant::now();
        let instances = buses
            .iter()
            .filter_map(|(bus, groups)| Some(watches.get(bus)?.inventory(groups, now)))
            .flatten()
            .collect();
        let connected = watches.values().any(BusWatch::is_reading);
        shared.set_inventory(Arc::new(Inventory {
            // While no bus answers, the figures are the last ones read, as of then.
            read_at: match connected {
                true => Some(SystemTime::now()),
                false => shared.inventory().read_at,
            },
            instances,
        }));
    }
}

/// Reads the units of every discovered group of `config` once, for the proxy's start: each
/// group's first backends are there before the first request. `Err` when a bus cannot be
/// reached (the start fails with the reason and what to do).
pub fn read_once(config: &Config) -> Result<Discovered, BusError> {
    let mut all = Discovered::default();
    for (bus, groups) in groups_by_bus(config) {
        let mut watch = BusWatch::new(bus);
        let manager = Manager::connect(bus)?;
        watch.relist_with(&manager, &groups, Instant::now())?;
        if let Some(discovered) = watch.discovered(&groups) {
            all.groups.extend(discovered.groups);
        }
    }
    Ok(all)
}

/// `config` with each discovered group's first backends, read from systemd before the proxy
/// starts, so the first request finds them. Unchanged without `discover`. `Err` when a bus
/// cannot be reached: the message says why and what to use instead.
pub fn with_first_backends(config: Arc<Config>) -> anyhow::Result<Arc<Config>> {
    if let Some(group) = config
        .upstreams
        .iter()
        .find(|g| g.autoscale.is_some() && g.discover.is_none())
    {
        anyhow::bail!(
            "upstream \"{0}\" autoscales ([upstream.{0}.autoscale]) a static list of backends: \
             only `lbproxy up --autoscale` can scale it (it runs the instances itself). Under \
             `lbproxy serve`, discover the instances from systemd units instead \
             ([upstream.{0}.discover] systemd = \"{0}@*.service\"), or remove the autoscale table",
            group.name
        );
    }
    let groups: Vec<String> = config
        .upstreams
        .iter()
        .filter(|g| g.discover.as_ref().is_some_and(|d| !d.children))
        .map(|g| format!("[upstream.{}.discover]", g.name))
        .collect();
    if groups.is_empty() {
        return Ok(config);
    }
    let discovered = read_once(&config).map_err(|error| {
        anyhow::anyhow!(
            "discovering the backends of {} from systemd: {error}",
            groups.join(", ")
        )
    })?;
    // A deployment the proxy was driving when it stopped: its new version's instances are
    // canaries again, at the weight it had, from the first request (the deploy controller
    // resumes it on its first tick).
    let deployment = crate::deploy::record::in_progress_at_start();
    let mut config = Config::clone(&config);
    for group in &mut config.upstreams {
        if let Some(units) = discovered.groups.get(&group.name) {
            let deployed = deployment
                .as_ref()
                .filter(|d| d.spec.upstream == group.name);
            let new_version: BTreeSet<String> = deployed
                .map(|d| d.new_units.iter().cloned().collect())
                .unwrap_or_default();
            group.backends = desired_backends(units, &[], &new_version);
            if let Some(d) = deployed {
                group.split = TrafficSplit {
                    weight_bp: d.weight_bp,
                    key: d.spec.canary.key.clone(),
                };
                tracing::info!(
                    target: "lbproxy::deploy",
                    upstream = %group.name,
                    "upstream \"{}\": deployment {} of {} was in progress ({}, {} % of \
                     the clients on {}): resumed at that weight",
                    group.name,
                    d.id,
                    d.spec.version,
                    d.phase.as_str(),
                    f64::from(d.weight_bp) / 100.0,
                    d.new_units.join(", ")
                );
            }
            let names: Vec<String> = units
                .iter()
                .filter(|u| u.routing() == Routing::Routed)
                .map(|u| u.unit.name.clone())
                .collect();
            tracing::info!(
                target: "lbproxy::discovery",
                upstream = %group.name,
                "upstream \"{}\": {} discovered instance(s) routed at start: {}",
                group.name,
                names.len(),
                names.join(", ")
            );
        }
    }
    Ok(Arc::new(config))
}
