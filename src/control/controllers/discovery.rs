//! The discovery controller: turns the units the watcher read into each discovered group's
//! backends, on the control loop like every controller (no I/O: a function of its view).
//!
//! On each tick, for every group with `discover`: the backends it should have
//! ([`desired_backends`]: active units routed, deactivating ones drained, the rest out) against
//! the ones it has → one [`Action::SetBackends`] when they differ, and an event in the journal
//! for each unit that joined, began to drain or left. A routed unit whose `InvocationID`
//! changed while it stayed a backend (a restart the proxy did not see stop, or did not order)
//! gets [`BackendChange::Restarted`]: fresh outlier state and slow start. Groups the watcher has
//! not read yet (no bus, or not read since a reload) keep their backends.

use crate::config::{BackendConfig, UpstreamConfig};
use crate::control::controller::{Action, Controller, View};
use crate::control::discovery::{desired_backends, DiscoveredUnit, Routing};
use crate::runtime::command::BackendChange;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The period, a safety net only: the loop ticks the controller as soon as the watcher reports
/// (`follows_units`), and the watcher reports at once when a signal names a unit, and every
/// second anyway.
const EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct DiscoveryController {
    /// Unit name → the invocation last seen routed.
    invocations: HashMap<String, String>,
}

impl Controller for DiscoveryController {
    fn name(&self) -> &str {
        "discovery"
    }

    fn every(&self) -> Duration {
        EVERY
    }

    fn follows_units(&self) -> bool {
        true
    }

    fn applies_to(&self, config: &crate::config::Config) -> bool {
        config.upstreams.iter().any(|g| g.discover.is_some())
    }

    fn tick(&mut self, _now: Instant, view: &View) -> Vec<Action> {
        let mut actions = Vec::new();
        for group in view
            .config
            .upstreams
            .iter()
            .filter(|g| g.discover.is_some())
        {
            let Some(units) = view.units.get(&group.name) else {
                continue;
            };
            let no_new_version = BTreeSet::new();
            let new_version = view
                .new_version_units
                .get(&group.name)
                .unwrap_or(&no_new_version);
            let desired = desired_backends(units, &group.backends, new_version);
            if desired != group.backends {
                let what = log_changes(group, units, &desired);
                actions.push(Action::SetBackends {
                    group: group.name.clone(),
                    backends: desired.clone(),
                    what,
                });
            }
            for unit in units.iter().filter(|u| u.routing() == Routing::Routed) {
                let invocation = &unit.unit.invocation_id;
                let before = self
                    .invocations
                    .insert(unit.unit.name.clone(), invocation.clone());
                let Some(address) = unit.address else {
                    continue;
                };
                let stays = |list: &[BackendConfig]| list.iter().any(|b| b.address == address);
                let restarted = before.is_some_and(|b| !b.is_empty() && b != *invocation);
                if restarted && stays(&group.backends) && stays(&desired) {
                    tracing::info!(
                        target: "lbproxy::discovery",
                        event = "restarted",
                        upstream = %group.name,
                        instance = %unit.unit.name,
                        backend = %address,
                        invocation = %invocation,
                        "{} restarted (new invocation {invocation}): outlier state reset, \
                         slow start",
                        unit.unit.name
                    );
                    actions.push(Action::Backend {
                        group: group.name.clone(),
                        address,
                        change: BackendChange::Restarted,
                    });
                }
            }
        }
        actions
    }
}

/// Logs what changes from `group.backends` to `desired`, one event per unit, and returns a
/// summary for the loop's log line: `+api@4.service (127.0.0.1:8004), ~api@2.service …`.
fn log_changes(
    group: &UpstreamConfig,
    units: &[DiscoveredUnit],
    desired: &[BackendConfig],
) -> String {
    let name_of = |address: SocketAddr| {
        units
            .iter()
            .find(|u| u.address == Some(address))
            .map_or_else(|| "(gone)".to_owned(), |u| u.unit.name.clone())
    };
    let unit_of = |address: SocketAddr| units.iter().find(|u| u.address == Some(address));
    let mut summary = Vec::new();
    for backend in desired {
        let before = group.backends.iter().find(|b| b.address == backend.address);
        let event = match (before.map(|b| b.drain), backend.drain) {
            (None, false) => ("joined", '+', "joined: active, takes requests (slow start)"),
            (Some(false), true) => (
                "draining",
                '~',
                "is stopping: drained, requests in flight finish",
            ),
            (Some(true), false) => ("joined", '+', "is active again: takes requests"),
            _ => continue,
        };
        let instance = name_of(backend.address);
        let state = unit_of(backend.address).map_or("", |u| u.unit.active_state.as_str());
        tracing::info!(
            target: "lbproxy::discovery",
            event = event.0,
            upstream = %group.name,
            instance = %instance,
            backend = %backend.address,
            unit_state = state,
            "{instance} ({}) of upstream \"{}\" {}",
            backend.address,
            group.name,
            event.2
        );
        summary.push(format!("{}{instance} ({})", event.1, backend.address));
    }
    for backend in &group.backends {
        if desired.iter().any(|b| b.address == backend.address) {
            continue;
        }
        let unit = unit_of(backend.address);
        let instance = name_of(backend.address);
        let state = unit.map_or("gone", |u| u.unit.active_state.as_str());
        tracing::warn!(
            target: "lbproxy::discovery",
            event = "removed",
            upstream = %group.name,
            instance = %instance,
            backend = %backend.address,
            unit_state = state,
            "{instance} ({}) of upstream \"{}\" removed: unit {state}",
            backend.address,
            group.name
        );
        summary.push(format!("-{instance} ({})", backend.address));
    }
    format!("upstream \"{}\": {}", group.name, summary.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::control::controller::tests::view_with_error_rate;
    use crate::control::discovery::units::testing::unit;
    use std::collections::BTreeMap;
    use std::num::NonZeroU32;
    use std::sync::Arc;

    fn view(backends: &[(u16, bool)], units: Vec<DiscoveredUnit>) -> View {
        let mut config = valid(
            "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
             address = \"127.0.0.1:{8000+N}\"\n",
        );
        config.upstreams[0].backends = backends
            .iter()
            .map(|&(n, drain)| BackendConfig {
                address: SocketAddr::from(([127, 0, 0, 1], 8000 + n)),
                weight: NonZeroU32::MIN,
                backup: false,
                drain,
                canary: false,
            })
            .collect();
        View {
            config: Arc::new(config),
            units: Arc::new(BTreeMap::from([("api".to_owned(), units)])),
            ..view_with_error_rate(0.0, 0)
        }
    }

    fn set(actions: &[Action]) -> Option<Vec<(u16, bool)>> {
        actions.iter().find_map(|a| match a {
            Action::SetBackends { backends, .. } => Some(
                backends
                    .iter()
                    .map(|b| (b.address.port() - 8000, b.drain))
                    .collect(),
            ),
            _ => None,
        })
    }

    fn restarted(actions: &[Action]) -> Vec<u16> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Backend {
                    address,
                    change: BackendChange::Restarted,
                    ..
                } => Some(address.port() - 8000),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn active_units_join_stopping_ones_drain_and_gone_ones_leave() {
        let mut controller = DiscoveryController::default();
        let now = Instant::now();
        let units = vec![
            unit(1, "active", "a1"),
            unit(2, "deactivating", "a2"),
            unit(3, "failed", "a3"),
            unit(4, "activating", "a4"),
            unit(5, "active", "a5"),
        ];
        // 2 and 3 were backends; 5 is new.
        let actions = controller.tick(now, &view(&[(1, false), (2, false), (3, false)], units));
        assert_eq!(set(&actions), Some(vec![(1, false), (2, true), (5, false)]));
        // Nothing changed since: no action.
        let actions = controller.tick(
            now,
            &view(
                &[(1, false), (2, true), (5, false)],
                vec![
                    unit(1, "active", "a1"),
                    unit(2, "deactivating", "a2"),
                    unit(5, "active", "a5"),
                ],
            ),
        );
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn a_unit_seen_stopping_before_it_was_routed_is_not_added() {
        let mut controller = DiscoveryController::default();
        let actions = controller.tick(
            Instant::now(),
            &view(&[], vec![unit(2, "deactivating", "x")]),
        );
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn a_new_invocation_of_a_backend_that_stayed_resets_it() {
        let mut controller = DiscoveryController::default();
        let now = Instant::now();
        let before = view(
            &[(1, false), (2, false)],
            vec![unit(1, "active", "a"), unit(2, "active", "b")],
        );
        assert!(controller.tick(now, &before).is_empty());
        let after = view(
            &[(1, false), (2, false)],
            vec![unit(1, "active", "a"), unit(2, "active", "c")],
        );
        let actions = controller.tick(now, &after);
        assert_eq!(restarted(&actions), [2]);
        assert_eq!(set(&actions), None, "the set stays");
        assert!(controller.tick(now, &after).is_empty(), "once");
    }

    #[test]
    fn groups_not_read_yet_keep_their_backends() {
        let mut controller = DiscoveryController::default();
        let mut unread = view(&[(1, false)], Vec::new());
        unread.units = Arc::default();
        assert!(controller.tick(Instant::now(), &unread).is_empty());
        // Read, and no unit matches: every backend leaves.
        let actions = controller.tick(Instant::now(), &view(&[(1, false)], Vec::new()));
        assert_eq!(set(&actions), Some(vec![]));
    }

    #[test]
    fn a_weight_set_by_hand_in_the_running_set_is_kept() {
        let mut current = vec![BackendConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 8001)),
            weight: NonZeroU32::new(5).unwrap(),
            backup: false,
            drain: false,
            canary: false,
        }];
        let desired = desired_backends(&[unit(1, "active", "a")], &current, &BTreeSet::new());
        assert_eq!(desired, current);
        current.clear();
        let mut twice = unit(9, "active", "b");
        twice.unit.name = "api@1b.service".into();
        twice.address = Some(SocketAddr::from(([127, 0, 0, 1], 8001)));
        let desired =
            desired_backends(&[unit(1, "active", "a"), twice], &current, &BTreeSet::new());
        assert_eq!(desired.len(), 1, "one backend per address");
    }
}
