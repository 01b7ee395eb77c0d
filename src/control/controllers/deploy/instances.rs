//! What the controller reads about the instances: whether one is ready, whether a new one
//! failed or restarted, their addresses, and the numbers the new ones get.

use super::run::Run;
use crate::control::controller::View;
use crate::control::discovery::{DiscoveredUnit, Routing};
use crate::deploy::record::Phase;
use crate::metrics::aggregate::BackendRow;
use std::collections::BTreeSet;
use std::net::SocketAddr;

impl Run {
    /// Routed, a backend up on every worker, and its health checks passing.
    pub(super) fn ready(&self, view: &View, unit: &str) -> bool {
        let group = &self.d.spec.upstream;
        let Some(u) = unit_named(view, group, unit) else {
            return false;
        };
        let Some(address) = u.address.filter(|_| u.routing() == Routing::Routed) else {
            return false;
        };
        view.backend(group, address).is_some_and(BackendRow::is_up) && view.healthy(group, address)
    }

    pub(super) fn remember_invocations(&mut self, view: &View) {
        for unit in &self.d.new_units {
            if let Some(u) = unit_named(view, &self.d.spec.upstream, unit) {
                self.seen
                    .entry(unit.clone())
                    .or_insert((u.unit.invocation_id.clone(), u.unit.n_restarts));
            }
        }
    }

    /// Why a new instance counts as failed: its unit failed, left, or restarted (a new
    /// invocation or more restarts than when it was first ready).
    pub(super) fn new_instance_failed(&mut self, view: &View) -> Option<String> {
        let group = self.d.spec.upstream.clone();
        for unit in &self.d.new_units {
            let Some(u) = unit_named(view, &group, unit) else {
                if self.seen.contains_key(unit) {
                    return Some(format!("new instance {unit} is gone"));
                }
                continue;
            };
            if u.unit.active_state == "failed" {
                return Some(format!(
                    "new instance {unit} failed ({}/{}, {} restarts)",
                    u.unit.active_state, u.unit.sub_state, u.unit.n_restarts
                ));
            }
            if let Some((invocation, restarts)) = self.seen.get(unit) {
                if u.unit.n_restarts > *restarts
                    || (!u.unit.invocation_id.is_empty() && u.unit.invocation_id != *invocation)
                {
                    return Some(format!(
                        "new instance {unit} restarted (restarts {restarts} → {}, now {}/{})",
                        u.unit.n_restarts, u.unit.active_state, u.unit.sub_state
                    ));
                }
                if u.routing() != Routing::Routed {
                    return Some(format!(
                        "new instance {unit} is no longer routed ({}/{})",
                        u.unit.active_state, u.unit.sub_state
                    ));
                }
            }
        }
        if self.d.phase != Phase::Starting {
            self.remember_invocations(view);
        }
        None
    }

    pub(super) fn new_addresses(&self, view: &View) -> BTreeSet<SocketAddr> {
        let units = units_of(view, &self.d.spec.upstream);
        units
            .iter()
            .filter(|u| self.d.new_units.contains(&u.unit.name))
            .filter_map(|u| u.address)
            .collect()
    }
}

pub(super) fn units_of<'a>(view: &'a View, group: &str) -> &'a [DiscoveredUnit] {
    view.units.get(group).map_or(&[], Vec::as_slice)
}

pub(super) fn unit_named<'a>(
    view: &'a View,
    group: &str,
    unit: &str,
) -> Option<&'a DiscoveredUnit> {
    units_of(view, group).iter().find(|u| u.unit.name == unit)
}

/// `count` instance units of `group`'s template numbered after every unit it has now.
pub(super) fn next_units(
    view: &View,
    group: &str,
    units: &[DiscoveredUnit],
    count: usize,
) -> Vec<String> {
    let Some((prefix, suffix)) = view
        .config
        .upstreams
        .iter()
        .find(|g| g.name == group)
        .and_then(|g| g.discover.as_ref())
        .and_then(|d| crate::config::unit_template(&d.systemd))
    else {
        return Vec::new();
    };
    let highest = units
        .iter()
        .filter_map(|u| {
            u.unit
                .name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    (1..=count as u32)
        .map(|i| format!("{prefix}{}{suffix}", highest + i))
        .collect()
}
