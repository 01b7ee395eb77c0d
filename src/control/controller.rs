//! How lifecycle features plug into the control loop: a [`Controller`] looks at a read-only
//! [`View`] of the proxy on each of its ticks and returns [`Action`]s, which the loop executes.
//!
//! A controller never touches the workers, systemd or a socket itself, and never blocks: it is
//! a function of what it was shown (and of what it remembers), so a test drives it with a fake
//! clock and hand-made views. The loop ticks each controller every [`Controller::every`], builds
//! the view fresh for it (running configuration, the workers' metrics summed, the latest sampled
//! rates, the active health verdicts), executes its actions in order, and logs each outcome; the
//! controller sees the effect in its next view. Once the drain began, controllers are ticked no
//! more.
//!
//! Where the planned features go, each one file implementing [`Controller`]:
//! - discovery (`super::discovery::DiscoveryController`): `api@*.service` units over D-Bus →
//!   set a group's backends;
//! - deployment: canary / blue-green steps judged on [`View::rates`] of canary vs stable →
//!   weights, drain, enable, and unit restarts;
//! - autoscaling: desired instance count from in-flight, req/s and latency → start/stop units.
//!
//! Those bring the verbs they need to [`Action`]: discovery brought [`Action::SetBackends`]
//! (`super::discovery`); starting and stopping units come with deployments and autoscaling.

use super::discovery::DiscoveredUnit;
use super::sampler::{BackendKey, Point, RatePoint};
use crate::config::{BackendConfig, Config, TrafficSplit};
use crate::deploy::version::{StableVersion, VersionChange};
use crate::health::HealthTable;
use crate::metrics::aggregate::BackendRow;
use crate::metrics::Aggregate;
use crate::runtime::command::BackendChange;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A lifecycle feature driven by the control loop.
pub trait Controller: Send {
    /// Names the controller in the log lines about its actions.
    fn name(&self) -> &str;

    /// How often the loop ticks it. Default: once a second, the sampler's pace.
    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Whether it is also ticked as soon as the discovery watcher reports what it read (besides
    /// its period), so a unit's change reaches it without waiting. Default: no.
    fn follows_units(&self) -> bool {
        false
    }

    /// Whether it has anything to do under `config`; when not, the loop neither builds a view
    /// for it nor ticks it (a view sums every worker's metrics). Default: always.
    fn applies_to(&self, config: &Config) -> bool {
        let _ = config;
        true
    }

    /// What should happen now, given `view`. Called on the loop's thread: must not block.
    fn tick(&mut self, now: Instant, view: &View) -> Vec<Action>;

    /// Called once the actions of its last tick were carried out (a split or backends set on
    /// every worker): what it publishes from then on is in force. Default: nothing.
    fn actions_done(&mut self) {}
}

/// What the loop knows, as of one controller tick.
#[derive(Debug, Clone)]
pub struct View {
    /// The configuration the workers run.
    pub config: Arc<Config>,
    /// Successful reloads since start.
    pub reloads: u64,
    /// The active health checks' verdicts (backends without checks are not in it).
    pub health: Arc<HealthTable>,
    /// The workers' metrics, summed: per-backend state, weights, overrides, counters.
    pub metrics: Aggregate,
    /// The latest sample: rates over the last second, latency percentiles over the last ten.
    /// `None` before the first sample.
    pub latest: Option<Point>,
    /// The units of each discovered group as the discovery watcher last read them (a group
    /// not read yet is missing).
    pub units: Arc<BTreeMap<String, Vec<DiscoveredUnit>>>,
    /// Per group being deployed, the units that run the new version (discovery marks their
    /// backends `canary`).
    pub new_version_units: BTreeMap<String, BTreeSet<String>>,
    /// Per group whose last deployment was promoted, the version its instances run: an
    /// instance started later (the autoscaler's) gets that version's file too.
    pub stable_versions: BTreeMap<String, StableVersion>,
}

impl View {
    /// Backend `address` of group `group` as the workers report it.
    pub fn backend(&self, group: &str, address: SocketAddr) -> Option<&BackendRow> {
        self.metrics
            .upstreams
            .iter()
            .find(|u| u.name == group)?
            .backends
            .iter()
            .find(|b| b.address == address)
    }

    /// Its rates and latency in the latest sample.
    pub fn rates(&self, group: &str, address: SocketAddr) -> Option<RatePoint> {
        let key: BackendKey = (group.to_owned(), address);
        self.latest.as_ref()?.backends.get(&key).copied()
    }

    /// What to do with `unit`'s version file as it starts (`starting`) or stops, outside a
    /// deployment: write or remove the group's promoted version's file; keep it as it is when
    /// no deployment was ever promoted (the template's own version).
    pub fn stable_version(&self, group: &str, unit: &str, starting: bool) -> VersionChange {
        let Some(stable) = self.stable_versions.get(group) else {
            return VersionChange::Keep;
        };
        let path = crate::deploy::version::file_for(&stable.state_dir, unit);
        match starting {
            true => VersionChange::Write {
                path,
                content: stable.content.clone(),
            },
            false => VersionChange::Remove { path },
        }
    }

    /// Its active health verdict: `true` when it is not probed (as the workers take it).
    pub fn healthy(&self, group: &str, address: SocketAddr) -> bool {
        self.health
            .get(group, address)
            .is_none_or(|health| health.healthy)
    }
}

/// What a controller asks the loop to do.
#[derive(Debug)]
pub enum Action {
    /// Drain, enable or reweigh one backend on every worker, until the next reload.
    Backend {
        group: String,
        address: SocketAddr,
        change: BackendChange,
    },
    /// Reload with this configuration (checked as any reload: what only a restart can change
    /// refuses it).
    Reload(Box<Config>),
    /// Start instance `unit` of discovered group `group` (through the loop's
    /// `InstanceActions`, off its thread), with `version` done to its version file first.
    StartUnit {
        group: String,
        unit: String,
        version: VersionChange,
    },
    /// Stop instance `unit` of discovered group `group` (drain it first, with
    /// [`Action::Backend`]), with `version` done to its version file after.
    StopUnit {
        group: String,
        unit: String,
        version: VersionChange,
    },
    /// Restart instance `unit` (drain it first), with `version` done to its version file
    /// before.
    RestartUnit {
        group: String,
        unit: String,
        version: VersionChange,
    },
    /// Set group `group`'s traffic split (the deployment's weight and client key), as a new
    /// generation on every worker (not a reload: runtime overrides stay). `what` says why, for
    /// the log.
    SetSplit {
        group: String,
        split: TrafficSplit,
        what: String,
    },
    /// Give discovered group `group` these backends (the rest of the configuration stays;
    /// runtime overrides stay). `what` says what changed, for the log.
    SetBackends {
        group: String,
        backends: Vec<BackendConfig>,
        what: String,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Backend {
                group,
                address,
                change,
            } => write!(f, "{change:?} backend {address} of upstream \"{group}\""),
            Action::Reload(_) => f.write_str("reload with a new configuration"),
            Action::SetBackends { what, .. } => write!(f, "set discovered backends: {what}"),
            Action::StartUnit { group, unit, .. } => {
                write!(f, "start {unit} (upstream \"{group}\")")
            }
            Action::StopUnit { group, unit, .. } => {
                write!(f, "stop {unit} (upstream \"{group}\")")
            }
            Action::RestartUnit { group, unit, .. } => {
                write!(f, "restart {unit} (upstream \"{group}\")")
            }
            Action::SetSplit { what, .. } => write!(f, "set the traffic split: {what}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::testing::valid;
    use std::collections::HashMap;

    /// The example controller: drains a backend whose error rate stays above `threshold` for
    /// `ticks` ticks in a row, once (a reload, which clears runtime drains, lets it judge again).
    #[derive(Debug)]
    pub(crate) struct ErrorRateGuard {
        pub threshold: f64,
        pub ticks: u32,
        above: BTreeMap<BackendKey, u32>,
        drained: Vec<BackendKey>,
        reloads: u64,
    }

    impl ErrorRateGuard {
        pub(crate) fn new(threshold: f64, ticks: u32) -> Self {
            Self {
                threshold,
                ticks,
                above: BTreeMap::new(),
                drained: Vec::new(),
                reloads: 0,
            }
        }
    }

    impl Controller for ErrorRateGuard {
        fn name(&self) -> &str {
            "error-rate-guard"
        }

        fn tick(&mut self, _now: Instant, view: &View) -> Vec<Action> {
            if view.reloads != self.reloads {
                self.reloads = view.reloads;
                self.drained.clear();
                self.above.clear();
            }
            let Some(latest) = &view.latest else {
                return Vec::new();
            };
            let sorted: BTreeMap<&BackendKey, &RatePoint> = latest.backends.iter().collect();
            let mut actions = Vec::new();
            for (key, rates) in sorted {
                if self.drained.contains(key) {
                    continue;
                }
                let above = self.above.entry(key.clone()).or_default();
                *above = if rates.error_rate > self.threshold {
                    *above + 1
                } else {
                    0
                };
                if *above >= self.ticks {
                    self.drained.push(key.clone());
                    actions.push(Action::Backend {
                        group: key.0.clone(),
                        address: key.1,
                        change: BackendChange::Drain,
                    });
                }
            }
            actions
        }
    }

    pub(crate) const BACKEND: &str = "127.0.0.1:8001";

    /// A view of one group `api` with backends :8001 and :8002, where :8001 answers with
    /// `error_rate` and :8002 never fails.
    pub(crate) fn view_with_error_rate(error_rate: f64, reloads: u64) -> View {
        let rates = |error_rate| RatePoint {
            rps: 100.0,
            error_rate,
            ..RatePoint::default()
        };
        let key = |address: &str| ("api".to_owned(), address.parse().unwrap());
        let backends = HashMap::from([
            (key(BACKEND), rates(error_rate)),
            (key("127.0.0.1:8002"), rates(0.0)),
        ]);
        View {
            config: Arc::new(valid(
                "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
                 [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n",
            )),
            reloads,
            health: Arc::default(),
            metrics: Aggregate::default(),
            latest: Some(Point {
                backends,
                ..Point::default()
            }),
            units: Arc::default(),
            new_version_units: BTreeMap::new(),
            stable_versions: BTreeMap::new(),
        }
    }

    fn drains(actions: &[Action]) -> Vec<String> {
        actions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_guard_drains_a_backend_after_enough_bad_ticks_and_only_once() {
        let mut guard = ErrorRateGuard::new(0.5, 2);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(guard.tick(at(0), &view_with_error_rate(0.1, 0)).is_empty());
        assert!(guard.tick(at(1), &view_with_error_rate(0.6, 0)).is_empty());
        // Below again: the streak starts over.
        assert!(guard.tick(at(2), &view_with_error_rate(0.2, 0)).is_empty());
        assert!(guard.tick(at(3), &view_with_error_rate(0.7, 0)).is_empty());
        let actions = guard.tick(at(4), &view_with_error_rate(0.8, 0));
        assert_eq!(
            drains(&actions),
            ["Drain backend 127.0.0.1:8001 of upstream \"api\""]
        );
        assert!(guard.tick(at(5), &view_with_error_rate(0.9, 0)).is_empty());
        // A reload restored the configured state: judged afresh.
        assert!(guard.tick(at(6), &view_with_error_rate(0.9, 1)).is_empty());
        assert_eq!(guard.tick(at(7), &view_with_error_rate(0.9, 1)).len(), 1);
    }

    #[test]
    fn the_view_answers_per_backend() {
        let view = view_with_error_rate(0.25, 0);
        let address: SocketAddr = BACKEND.parse().unwrap();
        assert_eq!(view.rates("api", address).unwrap().error_rate, 0.25);
        assert!(view.rates("web", address).is_none());
        assert!(view.healthy("api", address), "not probed: taken as healthy");
        assert!(
            view.backend("api", address).is_none(),
            "no worker reported yet"
        );
    }
}
