//! The autoscale controller: for every group with `[upstream.NAME.autoscale]`, the number of
//! instances from the proxy's own signals (see `crate::control::autoscale::policy`), carried out
//! as actions: start the next unit; drain one, wait for its requests, stop it.
//!
//! Per group, each tick: `current` is the group's routed units (the ones being scaled in left
//! out), the signal is the metric over those taking requests, and the policy decides. Then:
//! - **scale out**: [`Action::StartUnit`] for the lowest-numbered instances not running
//!   (`api@1`, `api@2`, …: a unit that is missing, inactive or failed is not running); each
//!   counts as *starting* until the discovery routes it, or [`START_TIMEOUT`] passes (logged as
//!   failed; the next decision may try again);
//! - **scale in**: the **highest-numbered** routed instances go (the last started: the
//!   lowest-numbered ones stay the stable core, and the next scale-out starts the same numbers
//!   again): [`BackendChange::Drain`] first, then, once its backend has no request in flight (or
//!   `drain_timeout` passed), [`Action::StopUnit`];
//! - one decision at a time per group: nothing new while a start or a scale-in is pending;
//! - never a scale-in while another backend of the group is drained by a runtime override (an
//!   operator or a rollout is at work): the group holds.
//!
//! Every decision goes to the journal (target `lbproxy::autoscale`, fields `event`, `upstream`,
//! `metric`, `signal`, `target`, `current`, `desired`, `reason`) and to the board.

use crate::config::{unit_template, AutoscaleConfig, UpstreamConfig};
use crate::control::autoscale::policy::{self, Direction, InstanceSample, Policy};
use crate::control::autoscale::{AutoscaleBoard, Decision, GroupAutoscale, Mode};
use crate::control::controller::{Action, Controller, View};
use crate::control::discovery::{DiscoveredUnit, Routing};
use crate::runtime::command::BackendChange;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A unit asked to start that is not routed by then counts as failed (logged; may be retried).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A unit asked to stop that is still there by then is given up on (logged).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

const HOLD_OVERRIDE: &str = "a backend is drained by an operator or a rollout";
const HOLD_STARTING: &str = "a start is pending";
const HOLD_STOPPING: &str = "a scale-in is draining or stopping";
const HOLD_UNREAD: &str = "the units have not been read yet";
const HOLD_DEPLOYING: &str = "a deployment is in progress (lbproxy deploy status)";

#[derive(Debug)]
pub struct AutoscaleController {
    board: Arc<AutoscaleBoard>,
    groups: HashMap<String, GroupState>,
}

/// One group's memory.
#[derive(Debug, Default)]
struct GroupState {
    /// The configuration the policy's memory belongs to (a reload that changes it starts over).
    config: Option<AutoscaleConfig>,
    policy: Policy,
    /// Unit → when it was asked to start.
    starting: BTreeMap<String, Instant>,
    /// The instances being scaled in.
    leaving: Vec<Leaving>,
    /// Reloads seen (a reload clears runtime drains: ours are sent again).
    reloads: u64,
    last_decision: Option<Decision>,
}

/// An instance being scaled in.
#[derive(Debug, Clone)]
struct Leaving {
    unit: String,
    address: SocketAddr,
    drained_at: Instant,
    /// When [`Action::StopUnit`] was sent.
    stopped_at: Option<Instant>,
}

impl AutoscaleController {
    pub fn new(board: Arc<AutoscaleBoard>) -> Self {
        Self {
            board,
            groups: HashMap::new(),
        }
    }
}

impl Controller for AutoscaleController {
    fn name(&self) -> &str {
        "autoscale"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn follows_units(&self) -> bool {
        true
    }

    /// While a group autoscales, or once more after the last one stopped (to clear the board).
    fn applies_to(&self, config: &crate::config::Config) -> bool {
        !self.groups.is_empty() || config.upstreams.iter().any(|g| g.autoscale.is_some())
    }

    fn tick(&mut self, now: Instant, view: &View) -> Vec<Action> {
        let scaled = |g: &&UpstreamConfig| g.autoscale.is_some() && g.discover.is_some();
        self.board.retain(|group| {
            view.config
                .upstreams
                .iter()
                .filter(scaled)
                .any(|g| g.name == group)
        });
        self.groups.retain(|name, _| {
            view.config
                .upstreams
                .iter()
                .filter(scaled)
                .any(|g| g.name == *name)
        });
        let mut actions = Vec::new();
        for group in view.config.upstreams.iter().filter(scaled) {
            let state = self.groups.entry(group.name.clone()).or_default();
            tick_group(state, &self.board, group, view, now, &mut actions);
        }
        actions
    }
}

/// The instance number of `unit` for template `(prefix, suffix)`: `api@4.service` → 4.
fn instance_number(unit: &str, (prefix, suffix): (&str, &str)) -> Option<u32> {
    unit.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn tick_group(
    state: &mut GroupState,
    board: &AutoscaleBoard,
    group: &UpstreamConfig,
    view: &View,
    now: Instant,
    actions: &mut Vec<Action>,
) {
    let (Some(config), Some(discover)) = (&group.autoscale, &group.discover) else {
        return;
    };
    let name = group.name.as_str();
    if state.config.as_ref() != Some(config) {
        state.config = Some(config.clone());
        state.policy = Policy::default();
    }
    let waiting = view
        .metrics
        .upstreams
        .iter()
        .find(|u| u.name == name)
        .map_or(0, |u| u.counts.waiting_for_instance);
    let board_base = |board: &AutoscaleBoard, state: &GroupState| {
        board.update(name, |b: &mut GroupAutoscale| {
            b.min = config.min;
            b.max = config.max;
            b.metric = Some(config.metric);
            b.target = config.target;
            b.waiting = waiting;
            b.starting = state.starting.len() as u32;
            b.stopping = state.leaving.len() as u32;
            b.last_decision = state.last_decision.clone();
        });
    };
    let Some(units) = view.units.get(name) else {
        board_base(board, state);
        board.update(name, |b| b.mode = Mode::Holding(HOLD_UNREAD));
        return;
    };
    if view.new_version_units.contains_key(name) {
        // Never during a deployment: its steps start and stop instances of their own, and its
        // analysis compares the versions at a fixed fleet. Scaling resumes when it ends.
        board_base(board, state);
        board.update(name, |b| b.mode = Mode::Holding(HOLD_DEPLOYING));
        return;
    }
    let template = unit_template(&discover.systemd);
    let unit_named = |unit: &str| units.iter().find(|u| u.unit.name == unit);

    // The starts: routed → done; too long → failed.
    state.starting.retain(|unit, asked| {
        if unit_named(unit).is_some_and(|u| u.routing() == Routing::Routed) {
            return false;
        }
        if now.saturating_duration_since(*asked) >= START_TIMEOUT {
            let unit_state = unit_named(unit).map_or("not loaded", |u| u.unit.active_state.as_str());
            tracing::warn!(
                target: "lbproxy::autoscale",
                event = "start-failed",
                upstream = name,
                instance = %unit,
                unit_state,
                "{unit} of upstream \"{name}\" did not become a backend within {}s (unit {unit_state}): \
                 counted as failed, the next decision may start it again",
                START_TIMEOUT.as_secs()
            );
            return false;
        }
        true
    });

    // The scale-ins: drained → stop once idle (or past the drain timeout) → gone.
    let reloaded = view.reloads != state.reloads;
    state.reloads = view.reloads;
    state.leaving.retain_mut(|leaving| {
        let unit = unit_named(&leaving.unit);
        let running = unit.is_some_and(|u| {
            matches!(
                u.routing(),
                Routing::Routed | Routing::Draining | Routing::Waiting
            )
        });
        if let Some(stopped_at) = leaving.stopped_at {
            if !running {
                return false;
            }
            if now.saturating_duration_since(stopped_at) >= STOP_TIMEOUT {
                tracing::warn!(
                    target: "lbproxy::autoscale",
                    event = "stop-failed",
                    upstream = name,
                    instance = %leaving.unit,
                    "{} of upstream \"{name}\" is still running {}s after it was asked to stop",
                    leaving.unit,
                    STOP_TIMEOUT.as_secs()
                );
                return false;
            }
            return true;
        }
        if !running {
            // Stopped by someone else meanwhile.
            return false;
        }
        if reloaded {
            // A reload cleared the runtime drain: drain again.
            actions.push(Action::Backend {
                group: name.to_owned(),
                address: leaving.address,
                change: BackendChange::Drain,
            });
            return true;
        }
        let in_flight = view
            .backend(name, leaving.address)
            .map_or(0, |b| b.in_flight);
        let waited = now.saturating_duration_since(leaving.drained_at);
        if in_flight == 0 || waited >= config.drain_timeout {
            let why = if in_flight == 0 {
                "no request in flight".to_owned()
            } else {
                format!(
                    "drain_timeout ({}s) passed with {in_flight} in flight",
                    config.drain_timeout.as_secs()
                )
            };
            tracing::info!(
                target: "lbproxy::autoscale",
                event = "stop",
                upstream = name,
                instance = %leaving.unit,
                backend = %leaving.address,
                in_flight,
                "stopping {} ({}) of upstream \"{name}\": {why}",
                leaving.unit,
                leaving.address
            );
            actions.push(Action::StopUnit {
                group: name.to_owned(),
                unit: leaving.unit.clone(),
                version: view.stable_version(name, &leaving.unit, false),
            });
            leaving.stopped_at = Some(now);
        }
        true
    });

    // What the policy sees.
    let leaving_addresses: Vec<SocketAddr> = state.leaving.iter().map(|l| l.address).collect();
    let routed: Vec<&DiscoveredUnit> = units
        .iter()
        .filter(|u| u.routing() == Routing::Routed)
        .filter(|u| !state.leaving.iter().any(|l| l.unit == u.unit.name))
        .collect();
    let current = routed.len() as u32;
    let overridden = |address: SocketAddr| {
        view.backend(name, address)
            .is_some_and(|b| b.drain_override == Some(true))
    };
    let samples: Vec<InstanceSample> = routed
        .iter()
        .filter_map(|u| Some((u, u.address?)))
        .filter(|(_, address)| !overridden(*address))
        .map(|(u, address)| {
            let rates = view.rates(name, address);
            InstanceSample {
                in_flight: view.backend(name, address).map_or(0, |b| b.in_flight),
                rps: rates.map_or(0.0, |r| r.rps),
                p99_ms: rates.and_then(|r| r.latency.p99_ms),
                cpu_percent: u.cpu_percent,
            }
        })
        .collect();
    let signal = policy::signal(config.metric, &samples);
    let idle = waiting == 0 && samples.iter().all(|s| s.in_flight == 0 && s.rps == 0.0);
    let outcome = state.policy.decide(
        config,
        policy::Input {
            current,
            signal,
            waiting,
            idle,
        },
        now,
    );
    let operator_drain = view
        .metrics
        .upstreams
        .iter()
        .find(|u| u.name == name)
        .is_some_and(|u| {
            u.backends
                .iter()
                .any(|b| b.drain_override == Some(true) && !leaving_addresses.contains(&b.address))
        });

    // Act, or hold.
    let mut mode = match (outcome.panic, outcome.direction, outcome.held) {
        (true, _, _) => Mode::Panic,
        (false, Direction::Up, _) => Mode::ScalingUp,
        (false, Direction::Down, _) => Mode::ScalingDown,
        (false, Direction::Stay, Some(why)) => Mode::Holding(why),
        (false, Direction::Stay, None) => Mode::Stable,
    };
    let pending = if !state.starting.is_empty() {
        Some(HOLD_STARTING)
    } else if !state.leaving.is_empty() {
        Some(HOLD_STOPPING)
    } else {
        None
    };
    if outcome.direction != Direction::Stay {
        if let Some(why) = pending {
            mode = Mode::Holding(why);
        } else if outcome.direction == Direction::Down && operator_drain {
            mode = Mode::Holding(HOLD_OVERRIDE);
        } else {
            let changed = match template {
                None => false,
                Some(template) if outcome.direction == Direction::Up => {
                    let count = outcome.desired - current;
                    let free = free_instances(units, &state.starting, template, count);
                    for unit in &free {
                        state.starting.insert(unit.clone(), now);
                        actions.push(Action::StartUnit {
                            group: name.to_owned(),
                            unit: unit.clone(),
                            version: view.stable_version(name, unit, true),
                        });
                    }
                    !free.is_empty()
                }
                Some(template) => {
                    let count = (current - outcome.desired) as usize;
                    let mut candidates: Vec<(u32, &DiscoveredUnit, SocketAddr)> = routed
                        .iter()
                        .filter_map(|u| {
                            Some((instance_number(&u.unit.name, template)?, *u, u.address?))
                        })
                        .collect();
                    // The highest-numbered first.
                    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
                    for (_, unit, address) in candidates.into_iter().take(count) {
                        tracing::info!(
                            target: "lbproxy::autoscale",
                            event = "drain",
                            upstream = name,
                            instance = %unit.unit.name,
                            backend = %address,
                            "draining {} ({address}) of upstream \"{name}\" to scale in (the \
                             highest-numbered instance goes first)",
                            unit.unit.name
                        );
                        state.leaving.push(Leaving {
                            unit: unit.unit.name.clone(),
                            address,
                            drained_at: now,
                            stopped_at: None,
                        });
                        actions.push(Action::Backend {
                            group: name.to_owned(),
                            address,
                            change: BackendChange::Drain,
                        });
                    }
                    !state.leaving.is_empty()
                }
            };
            if changed {
                let event = match (outcome.panic, outcome.direction) {
                    (true, Direction::Up) => "panic",
                    (_, Direction::Up) => "scale-up",
                    _ => "scale-down",
                };
                let signal_text = signal.map_or_else(|| "none".to_owned(), |s| format!("{s:.2}"));
                tracing::info!(
                    target: "lbproxy::autoscale",
                    event,
                    upstream = name,
                    metric = config.metric.as_str(),
                    signal = %signal_text,
                    target = config.target,
                    current,
                    desired = outcome.desired,
                    reason = %outcome.reason,
                    "upstream \"{name}\": {event} {current} → {}: {}",
                    outcome.desired,
                    outcome.reason
                );
                let decision = Decision {
                    at: SystemTime::now(),
                    from: current,
                    to: outcome.desired,
                    reason: outcome.reason.clone(),
                };
                // Counted once, here (lbproxy_autoscale_decisions_total).
                board.update(name, |b| b.decided(decision.clone()));
                state.last_decision = Some(decision);
            } else {
                mode = Mode::Holding("no instance number is free to start, or none to stop");
            }
        }
    } else if outcome.panic_began {
        tracing::warn!(
            target: "lbproxy::autoscale",
            event = "panic",
            upstream = name,
            metric = config.metric.as_str(),
            signal = signal.unwrap_or_default(),
            target = config.target,
            current,
            desired = outcome.desired,
            reason = %outcome.reason,
            "upstream \"{name}\": panic: {}",
            outcome.reason
        );
    }

    board_base(board, state);
    board.update(name, |b| {
        b.signal = signal;
        b.current = current;
        b.desired = outcome.desired;
        b.mode = mode;
        b.history
            .push_back((SystemTime::now(), current, outcome.desired));
        while b.history.len() > crate::control::autoscale::board::HISTORY {
            b.history.pop_front();
        }
    });
}

/// The `count` lowest-numbered instances of `template` not running (a unit missing, inactive or
/// failed) and not asked to start already, from 1.
fn free_instances(
    units: &[DiscoveredUnit],
    starting: &BTreeMap<String, Instant>,
    (prefix, suffix): (&str, &str),
    count: u32,
) -> Vec<String> {
    let running = |unit: &str| {
        starting.contains_key(unit)
            || units.iter().any(|u| {
                u.unit.name == unit
                    && matches!(
                        u.routing(),
                        Routing::Routed | Routing::Waiting | Routing::Draining
                    )
            })
    };
    (1..=u32::MAX)
        .map(|n| format!("{prefix}{n}{suffix}"))
        .filter(|unit| !running(unit))
        .take(count as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::control::controller::tests::view_with_error_rate;
    use crate::control::discovery::units::testing::unit;
    use crate::deploy::version::VersionChange;
    use crate::metrics::aggregate::{BackendRow, UpstreamRow};
    use crate::metrics::stats::{BackendCounts, UpstreamCounts};

    const CONFIG: &str = "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
                          [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
                          address = \"127.0.0.1:{8000+N}\"\n[upstream.api.autoscale]\n";

    fn address(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8000 + n))
    }

    /// A hand-made world: the units (number, state), each routed one's in-flight count, the
    /// requests waiting for an instance, and runtime drains.
    struct World {
        autoscale: String,
        units: Vec<(u16, &'static str)>,
        in_flight: HashMap<u16, u64>,
        waiting: u64,
        drained: Vec<u16>,
        reloads: u64,
    }

    impl World {
        fn new(autoscale: &str, units: &[(u16, &'static str)]) -> Self {
            Self {
                autoscale: autoscale.to_owned(),
                units: units.to_vec(),
                in_flight: HashMap::new(),
                waiting: 0,
                drained: Vec::new(),
                reloads: 0,
            }
        }

        /// `total` requests in flight, spread evenly over the active units.
        fn load(&mut self, total: u64) {
            let active: Vec<u16> = self
                .units
                .iter()
                .filter(|u| u.1 == "active" && !self.drained.contains(&u.0))
                .map(|u| u.0)
                .collect();
            self.in_flight.clear();
            for (i, n) in active.iter().enumerate() {
                let share = total / active.len() as u64
                    + u64::from((i as u64) < total % active.len() as u64);
                self.in_flight.insert(*n, share);
            }
        }

        fn view(&self) -> View {
            let config = valid(&format!("{CONFIG}{}", self.autoscale));
            let backends = self
                .units
                .iter()
                .filter(|u| u.1 == "active")
                .map(|&(n, _)| {
                    let mut row = BackendRow::up_for_tests(address(n), BackendCounts::default());
                    row.in_flight = self.in_flight.get(&n).copied().unwrap_or(0);
                    row.drain_override = self.drained.contains(&n).then_some(true);
                    row
                })
                .collect();
            let mut base = view_with_error_rate(0.0, self.reloads);
            base.latest = None;
            base.metrics.upstreams = vec![UpstreamRow {
                name: "api".into(),
                balance: "round_robin",
                counts: UpstreamCounts {
                    waiting_for_instance: self.waiting,
                    ..UpstreamCounts::default()
                },
                backends,
            }];
            View {
                config: Arc::new(config),
                units: Arc::new(BTreeMap::from([(
                    "api".to_owned(),
                    self.units
                        .iter()
                        .map(|&(n, s)| unit(n, s, &format!("i{n}")))
                        .collect(),
                )])),
                ..base
            }
        }

        /// Carries out `actions` as systemd and the workers would: a start makes the unit
        /// active (routed) at once, a stop removes it, a drain marks the override.
        fn apply(&mut self, actions: &[Action]) {
            for action in actions {
                match action {
                    Action::StartUnit { unit, .. } => {
                        let n = instance_number(unit, ("api@", ".service")).unwrap() as u16;
                        self.units.retain(|u| u.0 != n);
                        self.units.push((n, "active"));
                        self.units.sort();
                    }
                    Action::StopUnit { unit, .. } => {
                        let n = instance_number(unit, ("api@", ".service")).unwrap() as u16;
                        self.units.retain(|u| u.0 != n);
                        self.drained.retain(|&d| d != n);
                        self.in_flight.remove(&n);
                    }
                    Action::Backend {
                        address,
                        change: BackendChange::Drain,
                        ..
                    } => self.drained.push(address.port() - 8000),
                    other => panic!("unexpected {other}"),
                }
            }
        }

        fn active(&self) -> Vec<u16> {
            self.units
                .iter()
                .filter(|u| u.1 == "active")
                .map(|u| u.0)
                .collect()
        }
    }

    fn names(actions: &[Action]) -> Vec<String> {
        actions.iter().map(ToString::to_string).collect()
    }

    struct Clock(Instant, u64);

    impl Clock {
        fn new() -> Self {
            Clock(Instant::now(), 0)
        }
        fn next(&mut self) -> Instant {
            self.1 += 1;
            self.0 + Duration::from_secs(self.1)
        }
    }

    #[test]
    fn a_ramp_starts_the_lowest_free_instances_step_by_step() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        // api@2 failed earlier: it counts as not running, and is the first to start.
        let mut world = World::new(
            "max = 8\npanic_threshold = \"1000%\"\n",
            &[(1, "active"), (2, "failed")],
        );
        world.load(10);
        assert!(controller.tick(clock.next(), &world.view()).is_empty());
        world.load(30);
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(
            names(&actions),
            [
                "start api@2.service (upstream \"api\")",
                "start api@3.service (upstream \"api\")"
            ]
        );
        // Not routed yet: the group holds (one decision at a time).
        let actions = controller.tick(clock.next(), &world.view());
        assert!(actions.is_empty());
        let snapshot = board.snapshot()["api"].clone();
        assert_eq!(snapshot.mode, Mode::Holding(HOLD_STARTING));
        assert_eq!((snapshot.current, snapshot.starting), (1, 2));
        world.apply(&[
            Action::StartUnit {
                group: "api".into(),
                unit: "api@2.service".into(),
                version: VersionChange::Keep,
            },
            Action::StartUnit {
                group: "api".into(),
                unit: "api@3.service".into(),
                version: VersionChange::Keep,
            },
        ]);
        world.load(30);
        assert!(controller.tick(clock.next(), &world.view()).is_empty());
        // More load: ceil(3 × 8 / 10)... 80 over 3 = 26.7 each → 8, at most 4 a step: 7.
        world.load(80);
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(actions.len(), 4);
        world.apply(&actions);
        assert_eq!(world.active(), [1, 2, 3, 4, 5, 6, 7]);
        let snapshot = board.snapshot()["api"].clone();
        assert_eq!(snapshot.desired, 7);
        let decision = snapshot.last_decision.unwrap();
        assert_eq!((decision.from, decision.to), (3, 7));
        assert!(!snapshot.history.is_empty());
        assert_eq!(
            snapshot.metric,
            Some(crate::config::AutoscaleMetric::InFlight)
        );
        assert_eq!((snapshot.min, snapshot.max, snapshot.target), (1, 8, 10.0));
        // Past max: bounded to 8.
        world.load(400);
        let actions = controller.tick(clock.next(), &world.view());
        world.apply(&actions);
        world.load(400);
        controller.tick(clock.next(), &world.view());
        assert_eq!(world.active().len(), 8);
        assert_eq!(board.snapshot()["api"].desired, 8);
    }

    #[test]
    fn scale_in_drains_the_highest_instance_first_then_stops_it_once_idle() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new(
            "max = 8\nscale_down_window = \"0s\"\nmax_step = 1\n",
            &[(1, "active"), (2, "active"), (3, "active")],
        );
        world.load(30);
        assert!(controller.tick(clock.next(), &world.view()).is_empty());
        // 15 over 3: ratio 0.5 → ceil(3 × 0.5) = 2, one step.
        world.in_flight = HashMap::from([(1, 5), (2, 5), (3, 5)]);
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(
            names(&actions),
            ["Drain backend 127.0.0.1:8003 of upstream \"api\""]
        );
        world.apply(&actions);
        // Still 5 in flight on api@3: no stop yet.
        let actions = controller.tick(clock.next(), &world.view());
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(board.snapshot()["api"].stopping, 1);
        assert_eq!(board.snapshot()["api"].current, 2);
        world.in_flight.insert(3, 0);
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(names(&actions), ["stop api@3.service (upstream \"api\")"]);
        world.apply(&actions);
        world.in_flight = HashMap::from([(1, 10), (2, 10)]);
        assert!(controller.tick(clock.next(), &world.view()).is_empty());
        assert_eq!(board.snapshot()["api"].stopping, 0);
        assert_eq!(board.snapshot()["api"].mode, Mode::Stable);
    }

    #[test]
    fn a_drain_that_never_empties_is_stopped_after_the_drain_timeout() {
        let mut controller = AutoscaleController::new(Arc::default());
        let mut clock = Clock::new();
        let mut world = World::new(
            "max = 8\nscale_down_window = \"0s\"\ndrain_timeout = \"5s\"\n",
            &[(1, "active"), (2, "active")],
        );
        world.in_flight = HashMap::from([(1, 2), (2, 2)]);
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(
            names(&actions),
            ["Drain backend 127.0.0.1:8002 of upstream \"api\""]
        );
        world.apply(&actions);
        for _ in 0..4 {
            assert!(controller.tick(clock.next(), &world.view()).is_empty());
        }
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(names(&actions), ["stop api@2.service (upstream \"api\")"]);
    }

    #[test]
    fn an_oscillating_load_never_scales_in() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new(
            "max = 8\nscale_down_window = \"120s\"\npanic_threshold = \"1000%\"\n",
            &[(1, "active")],
        );
        let mut counts = Vec::new();
        for cycle in 0..20 {
            let total = if cycle % 2 == 0 { 40 } else { 4 };
            for _ in 0..30 {
                world.load(total);
                let actions = controller.tick(clock.next(), &world.view());
                world.apply(&actions);
                counts.push(world.active().len());
            }
        }
        assert_eq!(counts[0], 4);
        assert!(counts.iter().all(|&c| c == 4), "{counts:?}");
        assert!(
            matches!(
                board.snapshot()["api"].mode,
                Mode::Holding(_) | Mode::Stable
            ),
            "{:?}",
            board.snapshot()["api"].mode
        );
    }

    #[test]
    fn min_and_max_hold() {
        let mut controller = AutoscaleController::new(Arc::default());
        let mut clock = Clock::new();
        let mut world = World::new(
            "min = 2\nmax = 3\nscale_down_window = \"0s\"\n",
            &[(1, "active")],
        );
        // Below min: up to it with no load at all.
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(names(&actions), ["start api@2.service (upstream \"api\")"]);
        world.apply(&actions);
        for _ in 0..5 {
            world.load(0);
            let actions = controller.tick(clock.next(), &world.view());
            assert!(actions.is_empty(), "never below min: {actions:?}");
        }
        for _ in 0..5 {
            world.load(500);
            let actions = controller.tick(clock.next(), &world.view());
            world.apply(&actions);
        }
        assert_eq!(world.active(), [1, 2, 3], "never above max");
    }

    #[test]
    fn panic_scales_up_at_once_past_the_up_window() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new(
            "max = 8\nscale_up_window = \"60s\"\n",
            &[(1, "active"), (2, "active")],
        );
        world.load(20);
        controller.tick(clock.next(), &world.view());
        world.load(60);
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(actions.len(), 4, "{actions:?}");
        assert_eq!(board.snapshot()["api"].mode, Mode::Panic);
        world.apply(&actions);
        // 60 over 6: on target, and still panicking (no scale-down).
        world.load(6);
        assert!(controller.tick(clock.next(), &world.view()).is_empty());
        assert_eq!(board.snapshot()["api"].mode, Mode::Panic);
    }

    #[test]
    fn a_request_waiting_for_an_instance_starts_one_from_zero() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new("min = 0\nmax = 4\n", &[(1, "inactive")]);
        assert!(controller.tick(clock.next(), &world.view()).is_empty());
        assert_eq!(board.snapshot()["api"].desired, 0);
        world.waiting = 1;
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(names(&actions), ["start api@1.service (upstream \"api\")"]);
        let snapshot = board.snapshot()["api"].clone();
        assert_eq!((snapshot.waiting, snapshot.starting), (1, 1));
        assert!(snapshot
            .last_decision
            .unwrap()
            .reason
            .contains("scale from zero"));
    }

    #[test]
    fn a_start_that_never_comes_up_times_out_and_is_retried() {
        let mut controller = AutoscaleController::new(Arc::default());
        let t0 = Instant::now();
        let mut world = World::new("min = 0\nmax = 4\n", &[]);
        world.waiting = 2;
        assert_eq!(controller.tick(t0, &world.view()).len(), 1);
        world.units = vec![(1, "activating")];
        assert!(controller
            .tick(t0 + Duration::from_secs(30), &world.view())
            .is_empty());
        world.units = vec![(1, "failed")];
        let actions = controller.tick(t0 + START_TIMEOUT, &world.view());
        assert_eq!(names(&actions), ["start api@1.service (upstream \"api\")"]);
    }

    #[test]
    fn no_scale_in_while_an_operator_or_a_rollout_drained_a_backend() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new(
            "max = 8\nscale_down_window = \"0s\"\n",
            &[(1, "active"), (2, "active"), (3, "active")],
        );
        world.drained = vec![2];
        world.in_flight = HashMap::from([(1, 1), (3, 1)]);
        for _ in 0..3 {
            let actions = controller.tick(clock.next(), &world.view());
            assert!(actions.is_empty(), "{actions:?}");
            assert_eq!(board.snapshot()["api"].mode, Mode::Holding(HOLD_OVERRIDE));
        }
        // The operator is done: the scale-in goes ahead (2 in flight over 3: down to 1), the
        // highest-numbered first.
        world.drained.clear();
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(
            names(&actions),
            [
                "Drain backend 127.0.0.1:8003 of upstream \"api\"",
                "Drain backend 127.0.0.1:8002 of upstream \"api\""
            ]
        );
    }

    #[test]
    fn a_reload_drains_the_leaving_instance_again_and_groups_unread_hold() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new(
            "max = 8\nscale_down_window = \"0s\"\n",
            &[(1, "active"), (2, "active")],
        );
        world.in_flight = HashMap::from([(1, 1), (2, 1)]);
        let actions = controller.tick(clock.next(), &world.view());
        world.apply(&actions);
        world.reloads = 1;
        world.drained.clear();
        let actions = controller.tick(clock.next(), &world.view());
        assert_eq!(
            names(&actions),
            ["Drain backend 127.0.0.1:8002 of upstream \"api\""]
        );
        let mut unread = world.view();
        unread.units = Arc::default();
        assert!(controller.tick(clock.next(), &unread).is_empty());
        assert_eq!(board.snapshot()["api"].mode, Mode::Holding(HOLD_UNREAD));
    }

    #[test]
    fn a_deployment_holds_scaling_and_later_starts_get_the_promoted_version() {
        let board = Arc::new(AutoscaleBoard::default());
        let mut controller = AutoscaleController::new(board.clone());
        let mut clock = Clock::new();
        let mut world = World::new("max = 8\n", &[(1, "active")]);
        world.load(100);
        let mut deploying = world.view();
        deploying.new_version_units =
            BTreeMap::from([("api".to_owned(), ["api@2.service".to_owned()].into())]);
        assert!(controller.tick(clock.next(), &deploying).is_empty());
        assert_eq!(board.snapshot()["api"].mode, Mode::Holding(HOLD_DEPLOYING));

        let dir = std::path::PathBuf::from("/state");
        let mut promoted = world.view();
        promoted.stable_versions = BTreeMap::from([(
            "api".to_owned(),
            crate::deploy::version::StableVersion {
                state_dir: dir.clone(),
                content: "LBPROXY_VERSION=\"v2\"\n".to_owned(),
            },
        )]);
        let actions = controller.tick(clock.next(), &promoted);
        let Some(Action::StartUnit { unit, version, .. }) = actions.first() else {
            panic!("{actions:?}");
        };
        assert_eq!(
            *version,
            VersionChange::Write {
                path: crate::deploy::version::file_for(&dir, unit),
                content: "LBPROXY_VERSION=\"v2\"\n".to_owned(),
            }
        );
    }

    #[test]
    fn instance_numbers() {
        assert_eq!(
            instance_number("api@12.service", ("api@", ".service")),
            Some(12)
        );
        assert_eq!(instance_number("api@x.service", ("api@", ".service")), None);
        let units = vec![
            unit(1, "active", "a"),
            unit(2, "failed", "b"),
            unit(3, "activating", "c"),
        ];
        let starting = BTreeMap::from([("api@4.service".to_owned(), Instant::now())]);
        assert_eq!(
            free_instances(&units, &starting, ("api@", ".service"), 2),
            ["api@2.service", "api@5.service"]
        );
    }
}
