//! One bus's side of the watcher ([`BusWatch`]): its connection and subscription, the units of
//! its groups as last read ([`Known`]), and the rules for when to read what (see the module
//! docs of `super`); also applies the groups' cgroup limits and builds the inventory rows.

use super::glob::glob;
use super::{FLAPPING_FOR, POLL, RETRY};
use crate::config::{AddressSource, DiscoverConfig, SystemdBus};
use crate::control::discovery::{Discovered, DiscoveredUnit, InstanceRow};
use crate::systemd::bus::{self, BusError, Event, Events, Manager, UnitState};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// What is known about one unit.
#[derive(Debug, Clone)]
pub(super) struct Known {
    state: UnitState,
    /// From the unit's socket (`address = "socket"`), read when the unit was listed.
    socket_address: Option<SocketAddr>,
    /// The previous CPU reading, and the use between it and the one before.
    cpu: Option<(u64, Instant)>,
    cpu_percent: Option<f64>,
    flapping_until: Option<Instant>,
    /// The invocation whose limits were last set (not set again for it unless they differ).
    limits_set_for: Option<String>,
}

/// One bus: its connection, and the units of its groups.
#[derive(Debug)]
pub(super) struct BusWatch {
    bus: SystemdBus,
    connection: Option<(Manager, Events)>,
    /// When to try connecting again; `None`: at once.
    retry_at: Option<Instant>,
    /// Whether the current outage was logged.
    outage_logged: bool,
    /// When the units were last listed in full, and with which patterns.
    listed: Option<(Instant, Vec<String>)>,
    last_poll: Option<Instant>,
    /// Whether the last list succeeded (a group is reported only once its units were read).
    read: bool,
    /// What was last sent to the loop, as [`routing_key`] sees it.
    pub(super) sent: Option<RoutingKey>,
    /// When it was last sent.
    pub(super) sent_at: Option<Instant>,
    known: BTreeMap<String, Known>,
}

impl BusWatch {
    pub(super) fn new(bus: SystemdBus) -> Self {
        Self {
            bus,
            connection: None,
            retry_at: None,
            outage_logged: false,
            listed: None,
            last_poll: None,
            read: false,
            sent: None,
            sent_at: None,
            known: BTreeMap::new(),
        }
    }

    /// One round: connect if needed, wait up to `wait` for signals, then read what is due.
    pub(super) fn round(
        &mut self,
        groups: &[(String, DiscoverConfig)],
        wait: Duration,
        now: Instant,
    ) {
        if self.connection.is_none() && self.retry_at.is_none_or(|at| now >= at) {
            self.connect();
        }
        let Some((_, events)) = &self.connection else {
            std::thread::sleep(wait.min(RETRY));
            return;
        };
        let mut dirty = BTreeSet::new();
        let mut broken = false;
        // Just connected (or never read): read at once, without waiting for a signal.
        let mut timeout = if self.listed.is_none() {
            Duration::ZERO
        } else {
            wait
        };
        loop {
            match events.recv_timeout(timeout) {
                Ok(event) => {
                    dirty.insert(match event {
                        Event::UnitNew(unit)
                        | Event::UnitRemoved(unit)
                        | Event::Changed(unit)
                        | Event::JobRemoved { unit, .. } => unit,
                    });
                    timeout = Duration::ZERO;
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            self.lost("the connection to the bus broke");
            return;
        }
        let now = Instant::now();
        let patterns = patterns(groups);
        let resync = groups.iter().map(|(_, d)| d.resync).min().unwrap_or(POLL);
        let relist = self
            .listed
            .as_ref()
            .is_none_or(|(at, listed)| *listed != patterns || now.duration_since(*at) >= resync);
        let result = if relist {
            let manager = self.connection.as_ref().map(|(m, _)| m.clone());
            match manager {
                Some(manager) => self.relist_with(&manager, groups, now),
                None => Ok(()),
            }
        } else {
            let poll = self
                .last_poll
                .is_none_or(|at| now.duration_since(at) >= POLL);
            let units: Vec<String> = if poll {
                self.known.keys().cloned().chain(dirty).collect()
            } else {
                dirty.into_iter().collect()
            };
            if poll {
                self.last_poll = Some(now);
            }
            let matching: BTreeSet<String> = units
                .into_iter()
                .filter(|u| patterns.iter().any(|p| glob(p, u)))
                .collect();
            self.read_units(groups, matching, now)
        };
        if let Err(error) = result {
            self.lost(&error.to_string());
        } else {
            self.set_limits(groups);
        }
    }

    /// Connected, and its units read at least once.
    pub(super) fn is_reading(&self) -> bool {
        self.connection.is_some() && self.read
    }

    fn connect(&mut self) {
        let connected = Manager::connect(self.bus).and_then(|manager| {
            let events = manager.subscribe()?;
            Ok((manager, events))
        });
        match connected {
            Ok(connection) => {
                if self.outage_logged {
                    tracing::info!(
                        target: "lbproxy::discovery",
                        bus = self.bus.as_str(),
                        "discovery: connected to the {} bus again; reading every unit",
                        self.bus.as_str()
                    );
                }
                self.connection = Some(connection);
                self.outage_logged = false;
                self.listed = None;
            }
            Err(error) => self.lost(&error.to_string()),
        }
    }

    /// The connection is gone or unusable: log it once per outage, try again after [`RETRY`]
    /// with a full list (signals were missed meanwhile). The groups keep their backends.
    fn lost(&mut self, why: &str) {
        self.connection = None;
        self.listed = None;
        self.retry_at = Some(Instant::now() + RETRY);
        if !self.outage_logged {
            self.outage_logged = true;
            tracing::warn!(
                target: "lbproxy::discovery",
                bus = self.bus.as_str(),
                "discovery: {why}; the discovered backends stay as they are, and the units are \
                 read in full once the {} bus answers again (retrying every {}s)",
                self.bus.as_str(),
                RETRY.as_secs()
            );
        }
    }

    /// Lists every unit matching the groups' patterns and reads each.
    pub(super) fn relist_with(
        &mut self,
        manager: &Manager,
        groups: &[(String, DiscoverConfig)],
        now: Instant,
    ) -> Result<(), BusError> {
        let patterns = patterns(groups);
        let names: BTreeSet<String> = manager.list_units(&patterns)?.into_iter().collect();
        self.known.retain(|name, _| names.contains(name));
        for name in &names {
            match manager.read_unit(name)? {
                Some(state) => self.update(manager, groups, state, now, true),
                None => {
                    self.known.remove(name);
                }
            }
        }
        self.listed = Some((now, patterns));
        self.last_poll = Some(now);
        self.read = true;
        Ok(())
    }

    fn read_units(
        &mut self,
        groups: &[(String, DiscoverConfig)],
        units: BTreeSet<String>,
        now: Instant,
    ) -> Result<(), BusError> {
        let Some((manager, _)) = &self.connection else {
            return Ok(());
        };
        let manager = manager.clone();
        for name in units {
            match manager.read_unit(&name)? {
                Some(state) => {
                    let new = !self.known.contains_key(&name);
                    self.update(&manager, groups, state, now, new);
                }
                None => {
                    self.known.remove(&name);
                }
            }
        }
        Ok(())
    }

    /// Records a fresh read of a unit: CPU rate, flapping, and (for a unit just found, with
    /// `address = "socket"`) its socket's address.
    fn update(
        &mut self,
        manager: &Manager,
        groups: &[(String, DiscoverConfig)],
        state: UnitState,
        now: Instant,
        found: bool,
    ) {
        let wants_socket = groups
            .iter()
            .any(|(_, d)| d.address == AddressSource::Socket && glob(&d.systemd, &state.name));
        let previous = self.known.get(&state.name).cloned();
        let socket_address = match (&previous, wants_socket) {
            (_, false) => None,
            (Some(known), true) if !found && known.socket_address.is_some() => known.socket_address,
            (_, true) => socket_address(manager, &state.name),
        };
        let mut known = previous.unwrap_or(Known {
            state: state.clone(),
            socket_address: None,
            cpu: None,
            cpu_percent: None,
            flapping_until: None,
            limits_set_for: None,
        });
        if state.n_restarts > known.state.n_restarts {
            known.flapping_until = Some(now + FLAPPING_FOR);
            let group = groups
                .iter()
                .find(|(_, d)| glob(&d.systemd, &state.name))
                .map_or("", |(g, _)| g.as_str());
            tracing::warn!(
                target: "lbproxy::discovery",
                event = "flapping",
                upstream = group,
                instance = %state.name,
                restarts = state.n_restarts,
                "{} is flapping: systemd restarted it automatically ({} restarts so far)",
                state.name,
                state.n_restarts
            );
        }
        if let (Some(ns), Some((before, at))) = (state.cpu_usage_ns, known.cpu) {
            let elapsed = now.duration_since(at).as_nanos() as f64;
            if elapsed > 0.0 && ns >= before && state.invocation_id == known.state.invocation_id {
                known.cpu_percent = Some((ns - before) as f64 / elapsed * 100.0);
            }
        }
        known.cpu = state.cpu_usage_ns.map(|ns| (ns, now));
        known.socket_address = socket_address;
        if state.invocation_id != known.state.invocation_id {
            known.cpu_percent = None;
        }
        known.state = state;
        self.known.insert(known.state.name.clone(), known);
    }

    /// Sets the configured cgroup limits on each active unit whose limits differ, once per
    /// invocation (a refusal is logged, not retried until the unit restarts).
    fn set_limits(&mut self, groups: &[(String, DiscoverConfig)]) {
        let Some((manager, _)) = &self.connection else {
            return;
        };
        for (group, discover) in groups {
            let wanted = discover.resources;
            if wanted.is_empty() {
                continue;
            }
            for known in self.known.values_mut() {
                let state = &known.state;
                if !glob(&discover.systemd, &state.name) || state.active_state != "active" {
                    continue;
                }
                let differs = (wanted.cpu_quota_percent.is_some()
                    && wanted.cpu_quota_percent != state.limits.cpu_quota_percent)
                    || (wanted.memory_max.is_some()
                        && wanted.memory_max != state.limits.memory_max)
                    || (wanted.tasks_max.is_some() && wanted.tasks_max != state.limits.tasks_max);
                if !differs || known.limits_set_for.as_ref() == Some(&state.invocation_id) {
                    continue;
                }
                known.limits_set_for = Some(state.invocation_id.clone());
                match manager.set_resources(&state.name, &wanted) {
                    Ok(()) => tracing::info!(
                        target: "lbproxy::discovery",
                        event = "limits",
                        upstream = %group,
                        instance = %state.name,
                        "{}: cgroup limits set ({})",
                        state.name,
                        describe_limits(&wanted)
                    ),
                    Err(error) => tracing::warn!(
                        target: "lbproxy::discovery",
                        event = "limits",
                        upstream = %group,
                        instance = %state.name,
                        "{}: cannot set the cgroup limits ({}): {error}",
                        state.name,
                        describe_limits(&wanted)
                    ),
                }
            }
        }
    }

    /// Each group's units with their addresses; `None` before the units were first read.
    pub(super) fn discovered(&self, groups: &[(String, DiscoverConfig)]) -> Option<Discovered> {
        if !self.read {
            return None;
        }
        let groups = groups
            .iter()
            .map(|(group, discover)| {
                let units = self
                    .known
                    .values()
                    .filter(|k| glob(&discover.systemd, &k.state.name))
                    .map(|k| DiscoveredUnit {
                        address: match &discover.address {
                            AddressSource::Template(template) => {
                                bus::instance_of(&k.state.name).and_then(|i| template.address(i))
                            }
                            AddressSource::Socket => k.socket_address,
                        },
                        unit: k.state.clone(),
                        cpu_percent: k.cpu_percent,
                    })
                    .collect();
                (group.clone(), units)
            })
            .collect();
        Some(Discovered {
            bus: Some(self.bus),
            groups,
        })
    }

    pub(super) fn inventory(
        &self,
        groups: &[(String, DiscoverConfig)],
        now: Instant,
    ) -> Vec<InstanceRow> {
        let Some(discovered) = self.discovered(groups) else {
            return Vec::new();
        };
        discovered
            .groups
            .into_iter()
            .flat_map(|(group, units)| {
                units.into_iter().map(move |unit| {
                    let known = &self.known[&unit.unit.name];
                    InstanceRow {
                        group: group.clone(),
                        bus: self.bus,
                        address: unit.address,
                        routing: unit.routing(),
                        cpu_percent: known.cpu_percent,
                        flapping: known.flapping_until.is_some_and(|until| now < until),
                        unit: unit.unit,
                    }
                })
            })
            .collect()
    }
}

/// What decides the backends in a read: per group, each unit's name, load and active states,
/// invocation and address.
pub(super) type RoutingKey = Vec<(
    String,
    Vec<(String, String, String, String, Option<SocketAddr>)>,
)>;

pub(super) fn routing_key(discovered: &Discovered) -> RoutingKey {
    discovered
        .groups
        .iter()
        .map(|(group, units)| {
            let units = units
                .iter()
                .map(|u| {
                    (
                        u.unit.name.clone(),
                        u.unit.load_state.clone(),
                        u.unit.active_state.clone(),
                        u.unit.invocation_id.clone(),
                        u.address,
                    )
                })
                .collect();
            (group.clone(), units)
        })
        .collect()
}

pub(super) fn patterns(groups: &[(String, DiscoverConfig)]) -> Vec<String> {
    let mut patterns: Vec<String> = groups.iter().map(|(_, d)| d.systemd.clone()).collect();
    patterns.sort();
    patterns.dedup();
    patterns
}

/// The first stream address of the unit's socket unit that parses as IP:PORT.
fn socket_address(manager: &Manager, unit: &str) -> Option<SocketAddr> {
    let socket = bus::socket_unit_of(unit);
    match manager.socket_listen(&socket) {
        Ok(listen) => listen.iter().find_map(|a| a.parse().ok()),
        Err(error) => {
            tracing::warn!(
                target: "lbproxy::discovery",
                instance = unit,
                "cannot read the address of {socket}: {error}"
            );
            None
        }
    }
}

fn describe_limits(resources: &crate::config::UnitResources) -> String {
    let mut parts = Vec::new();
    if let Some(percent) = resources.cpu_quota_percent {
        parts.push(format!("CPUQuota={percent}%"));
    }
    if let Some(bytes) = resources.memory_max {
        parts.push(format!("MemoryMax={bytes}"));
    }
    if let Some(tasks) = resources.tasks_max {
        parts.push(format!("TasksMax={tasks}"));
    }
    parts.join(" ")
}
