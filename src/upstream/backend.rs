//! A backend's worker-local state: its keep-alive pool, the requests in flight to it, its health
//! as the active probes last reported it, its circuit (passive outlier detection), its slow-start
//! ramp, and the settings the configuration gives it.
//!
//! One [`Backend`] per (group, address) per worker, shared by every configuration generation in
//! which it stays in its group (see [`crate::upstream`]), so a reload keeps all of this. Every
//! field is a `Cell`: read and written by this worker only, never across an `.await`.
//!
//! What the rest of the proxy asks:
//! - [`Backend::admits`]: may the balancer pick it now (health up, not draining, circuit
//!   closed or offering its half-open trial)?
//! - [`Backend::effective_weight`] / [`Backend::ramp`]: its share, slow start included;
//! - [`Backend::state`]: one word for logs, metrics and the dashboard.
//!
//! The admin plane reads `state()`, `in_flight()` and `ejections()` (published on the tick, see
//! `publish.rs`), and overrides the configured drain flag and weight with
//! [`Backend::override_drain`] / [`Backend::override_weight`] until the next reload commits
//! ([`Backend::apply_settings`] clears them). Its counters are in [`Backend::stats`].

use super::pool::{Pool, Unsolicited, UpstreamConn};
use crate::config::{BackendConfig, PoolConfig};
pub use crate::metrics::BackendState;
use crate::metrics::{stats::BackendStats, CircuitState};
use crate::upstream::balancer::FULL_RAMP;
use std::cell::Cell;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// The lowest share a ramping backend gets: 10% of its weight, as in Envoy (below that, a
/// returning backend would see too few requests to warm up at all).
pub const RAMP_FLOOR: u32 = FULL_RAMP / 10;

/// What the configuration says about a backend; applied when a generation is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub weight: NonZeroU32,
    pub backup: bool,
    pub drain: bool,
}

impl From<&BackendConfig> for Settings {
    fn from(config: &BackendConfig) -> Self {
        Settings {
            weight: config.weight,
            backup: config.backup,
            drain: config.drain,
        }
    }
}

/// The passive (per worker) view of a backend: closed = in use; open = ejected until a time;
/// half-open = one trial request decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
pub struct Backend {
    pub address: SocketAddr,
    /// Idle keep-alive connections to it.
    pub pool: Pool,
    /// What it did for this worker's requests (see [`crate::metrics`]).
    pub stats: BackendStats,
    /// Set once the backend is no longer in the current configuration.
    retired: Cell<bool>,
    settings: Cell<Settings>,
    drain_override: Cell<Option<bool>>,
    weight_override: Cell<Option<NonZeroU32>>,
    in_flight: Cell<u32>,
    /// As the active probes last reported (always true without a `[health]` section).
    healthy: Cell<bool>,
    circuit: Cell<Circuit>,
    /// Derived on every change, so that the per-request check reads two flags: down or
    /// draining; and whether the circuit lets a request through.
    excluded: Cell<bool>,
    circuit_admits: Cell<bool>,
    /// Ejections in a row (each one lasts longer); decays while the circuit stays closed.
    ejections: Cell<u32>,
    /// When the circuit last closed or the ejection count last decayed.
    calm_since: Cell<Option<Instant>>,
    /// Slow start: per mille of the weight in use, and since when it ramps.
    ramp: Cell<u32>,
    ramp_since: Cell<Option<Instant>>,
}

impl Backend {
    /// Counts and logs idle pooled connections that were closed because this backend had sent
    /// bytes on them while idle (see [`super::pool`]): a backend that sends more than its
    /// responses, whose extra bytes would otherwise be read as the next request's response.
    #[inline]
    pub fn report_unsolicited(&self, worker: usize, upstream: &str, found: Unsolicited) {
        if found.0 != 0 {
            self.log_unsolicited(worker, upstream, found.0);
        }
    }

    /// The rare part of [`Backend::report_unsolicited`], out of the checkout path.
    #[cold]
    fn log_unsolicited(&self, worker: usize, upstream: &str, count: u32) {
        self.stats.protocol_errors(u64::from(count));
        tracing::warn!(
            worker,
            upstream,
            backend = %self.address,
            "backend {} sent bytes on {} idle keep-alive connection(s), past the end of the \
             last response: closed, not reused",
            self.address,
            count
        );
    }

    pub fn new(config: &BackendConfig) -> Self {
        Self {
            address: config.address,
            pool: Pool::default(),
            stats: BackendStats::default(),
            retired: Cell::new(false),
            settings: Cell::new(Settings::from(config)),
            drain_override: Cell::new(None),
            weight_override: Cell::new(None),
            in_flight: Cell::new(0),
            healthy: Cell::new(true),
            circuit: Cell::new(Circuit::Closed { failures: 0 }),
            excluded: Cell::new(config.drain),
            circuit_admits: Cell::new(true),
            ejections: Cell::new(0),
            calm_since: Cell::new(None),
            ramp: Cell::new(FULL_RAMP),
            ramp_since: Cell::new(None),
        }
    }

    /// Returns a connection whose last exchange completed cleanly to the pool ([`Pool::checkin`]),
    /// unless the backend left the configuration or drains: their connections close.
    pub fn checkin(&self, settings: &PoolConfig, conn: UpstreamConn) {
        if !self.is_retired() && !self.is_draining() {
            self.pool.checkin(settings, conn);
        }
    }

    /// Whether the backend left the configuration (its connections are not pooled any more).
    pub fn is_retired(&self) -> bool {
        self.retired.get()
    }

    pub(super) fn retire(&self) {
        self.retired.set(true);
        self.pool.clear();
    }

    /// Takes the settings of a newly committed configuration. Runtime overrides end here (a
    /// reload restores what the configuration says) unless `keep_overrides`.
    pub(super) fn apply_settings(&self, settings: Settings, keep_overrides: bool) {
        let newly_drained = settings.drain && !self.settings.get().drain;
        self.settings.set(settings);
        if !keep_overrides || newly_drained {
            self.drain_override.set(None);
        }
        if !keep_overrides {
            self.weight_override.set(None);
        }
        self.update_excluded();
        if self.is_draining() {
            self.pool.clear();
        }
    }

    /// The configuration's settings (without runtime overrides).
    pub fn settings(&self) -> Settings {
        self.settings.get()
    }

    /// The runtime overrides in force: (drain, weight).
    pub fn overrides(&self) -> (Option<bool>, Option<NonZeroU32>) {
        (self.drain_override.get(), self.weight_override.get())
    }

    fn update_excluded(&self) {
        self.excluded.set(!self.healthy.get() || self.is_draining());
    }

    #[inline]
    pub fn is_backup(&self) -> bool {
        self.settings.get().backup
    }

    pub fn is_draining(&self) -> bool {
        self.drain_override
            .get()
            .unwrap_or(self.settings.get().drain)
    }

    /// Drain (`Some(true)`), undrain (`Some(false)`) or follow the configuration (`None`), at
    /// runtime, until the next reload. For the admin plane. Requests in flight finish.
    pub fn override_drain(&self, drain: Option<bool>) {
        self.drain_override.set(drain);
        self.update_excluded();
        if self.is_draining() {
            self.pool.clear();
        }
    }

    /// Replace the configured weight at runtime (`None`: back to the configuration), until the
    /// next reload. For the admin plane.
    pub fn override_weight(&self, weight: Option<NonZeroU32>) {
        self.weight_override.set(weight);
    }

    /// The weight in force: the runtime override, else the configured one.
    pub fn weight(&self) -> NonZeroU32 {
        self.weight_override
            .get()
            .unwrap_or(self.settings.get().weight)
    }

    /// Weight × slow-start ramp, in thousandths of a weight unit (so that a weight-1 backend can
    /// ramp too). The balancers compare these with each other only.
    pub fn effective_weight(&self) -> u64 {
        u64::from(self.weight().get()) * u64::from(self.ramp.get())
    }

    /// Slow-start progress in per mille ([`FULL_RAMP`] when not ramping).
    pub fn ramp(&self) -> u32 {
        self.ramp.get()
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    pub(super) fn add_in_flight(&self, delta: i32) {
        self.in_flight
            .set(self.in_flight.get().saturating_add_signed(delta));
    }

    pub fn circuit(&self) -> Circuit {
        self.circuit.get()
    }

    /// The circuit's state without its details, for metrics.
    pub fn circuit_state(&self) -> CircuitState {
        match self.circuit.get() {
            Circuit::Closed { .. } => CircuitState::Closed,
            Circuit::Open { .. } => CircuitState::Open,
            Circuit::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// The active health checks' verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.get()
    }

    pub(super) fn set_circuit(&self, circuit: Circuit) {
        self.circuit.set(circuit);
        self.circuit_admits.set(match circuit {
            Circuit::Closed { .. } => true,
            Circuit::Open { .. } => false,
            Circuit::HalfOpen { trial_in_flight } => !trial_in_flight,
        });
    }

    /// Ejections in a row on this worker (0 when it has been well for a while).
    pub fn ejections(&self) -> u32 {
        self.ejections.get()
    }

    pub(super) fn set_ejections(&self, ejections: u32, calm_since: Option<Instant>) {
        self.ejections.set(ejections);
        self.calm_since.set(calm_since);
    }

    pub(super) fn calm_since(&self) -> Option<Instant> {
        self.calm_since.get()
    }

    /// Whether a new request may go to it. `ignore_circuit`: also when ejected (the caller's
    /// last resort: ejection never takes a whole group out).
    #[inline]
    pub fn admits(&self, ignore_circuit: bool) -> bool {
        !self.excluded.get() && (ignore_circuit || self.circuit_admits.get())
    }

    pub fn state(&self) -> BackendState {
        if self.retired.get() {
            BackendState::Retired
        } else if self.is_draining() {
            BackendState::Draining
        } else if !self.healthy.get() {
            BackendState::Down
        } else {
            match self.circuit.get() {
                Circuit::Open { .. } => BackendState::Ejected,
                Circuit::HalfOpen { .. } => BackendState::HalfOpen,
                Circuit::Closed { .. } if self.ramp.get() < FULL_RAMP => BackendState::SlowStart,
                Circuit::Closed { .. } => BackendState::Up,
            }
        }
    }

    /// Applies the active health verdict. Coming up readmits an ejected backend (the probe just
    /// showed it works) and starts its slow start from `since` (when the probes saw it come up);
    /// going down closes its idle connections. Returns whether it changed.
    pub(super) fn set_healthy(&self, healthy: bool, since: Instant, slow_start: Duration) -> bool {
        if self.healthy.replace(healthy) == healthy {
            return false;
        }
        self.update_excluded();
        if healthy {
            self.set_circuit(Circuit::Closed { failures: 0 });
            self.start_ramp(since, slow_start);
        } else {
            self.pool.clear();
        }
        true
    }

    /// The process behind it restarted (see `BackendChange::Restarted`): a fresh outlier state,
    /// no pooled connection to the old process, and slow start from `now`.
    pub fn restarted(&self, now: Instant, slow_start: Duration) {
        self.set_circuit(Circuit::Closed { failures: 0 });
        self.set_ejections(0, None);
        self.pool.clear();
        self.start_ramp(now, slow_start);
    }

    /// Starts slow start at `since` (nothing when `slow_start` is zero).
    pub fn start_ramp(&self, since: Instant, slow_start: Duration) {
        if slow_start.is_zero() {
            return;
        }
        self.ramp_since.set(Some(since));
        self.update_ramp(Instant::now(), slow_start);
    }

    /// Advances slow start to `now`: 10% of the weight until a tenth of `slow_start` has passed,
    /// then linearly to 100% at `slow_start`.
    pub(super) fn update_ramp(&self, now: Instant, slow_start: Duration) {
        let Some(since) = self.ramp_since.get() else {
            return;
        };
        let ramp = ramp_at(now.saturating_duration_since(since), slow_start);
        self.ramp.set(ramp);
        if ramp >= FULL_RAMP {
            self.ramp_since.set(None);
        }
    }
}

/// The slow-start ramp (per mille) `elapsed` into a ramp of length `slow_start`.
pub fn ramp_at(elapsed: Duration, slow_start: Duration) -> u32 {
    if slow_start.is_zero() || elapsed >= slow_start {
        return FULL_RAMP;
    }
    let progress = elapsed.as_micros() * u128::from(FULL_RAMP) / slow_start.as_micros();
    (progress as u32).clamp(RAMP_FLOOR, FULL_RAMP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Backend {
        Backend::new(&BackendConfig {
            address: "127.0.0.1:8001".parse().unwrap(),
            weight: NonZeroU32::new(3).unwrap(),
            backup: false,
            drain: false,
            canary: false,
        })
    }

    #[test]
    fn ramp_starts_at_ten_percent_and_grows_linearly() {
        let window = Duration::from_secs(10);
        assert_eq!(ramp_at(Duration::ZERO, window), 100);
        assert_eq!(ramp_at(Duration::from_millis(500), window), 100);
        assert_eq!(ramp_at(Duration::from_secs(5), window), 500);
        assert_eq!(ramp_at(Duration::from_secs(9), window), 900);
        assert_eq!(ramp_at(Duration::from_secs(10), window), 1000);
        assert_eq!(ramp_at(Duration::from_secs(1), Duration::ZERO), 1000);
    }

    #[test]
    fn coming_back_up_ramps_and_the_ramp_ends() {
        let b = backend();
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        assert!(b.set_healthy(false, t0, window));
        assert_eq!(b.state(), BackendState::Down);
        assert!(!b.admits(true));
        assert!(b.set_healthy(true, t0, window));
        assert!(!b.set_healthy(true, t0, window), "no change, no restart");
        assert_eq!(b.state(), BackendState::SlowStart);
        assert_eq!(b.effective_weight(), 300, "10% of weight 3, in thousandths");
        b.update_ramp(t0 + Duration::from_secs(5), window);
        assert_eq!(b.effective_weight(), 1500);
        b.update_ramp(t0 + Duration::from_secs(11), window);
        assert_eq!((b.ramp(), b.state()), (FULL_RAMP, BackendState::Up));
    }

    #[test]
    fn overrides_replace_the_configuration_until_cleared() {
        let b = backend();
        b.override_weight(NonZeroU32::new(7));
        assert_eq!(b.weight().get(), 7);
        b.override_weight(None);
        assert_eq!(b.weight().get(), 3);
        b.override_drain(Some(true));
        assert_eq!(b.state(), BackendState::Draining);
        assert!(!b.admits(true));
        b.override_drain(None);
        assert!(b.admits(false));
    }

    #[test]
    fn new_settings_end_the_overrides() {
        let b = backend();
        b.override_drain(Some(true));
        b.override_weight(NonZeroU32::new(9));
        b.apply_settings(
            Settings {
                weight: NonZeroU32::new(2).unwrap(),
                backup: false,
                drain: false,
            },
            false,
        );
        assert_eq!(b.overrides(), (None, None));
        assert_eq!((b.weight().get(), b.state()), (2, BackendState::Up));
    }

    #[test]
    fn a_discovery_change_keeps_the_overrides_unless_it_drains() {
        let b = backend();
        b.override_drain(Some(false));
        b.override_weight(NonZeroU32::new(9));
        let settings = |drain| Settings {
            weight: NonZeroU32::MIN,
            backup: false,
            drain,
        };
        b.apply_settings(settings(false), true);
        assert_eq!(b.overrides(), (Some(false), NonZeroU32::new(9)));
        // Its unit began to stop: drained, whatever an operator enabled.
        b.apply_settings(settings(true), true);
        assert_eq!(b.overrides(), (None, NonZeroU32::new(9)));
        assert!(b.is_draining());
    }

    #[test]
    fn a_restart_resets_the_outlier_state_and_ramps() {
        let b = backend();
        b.set_circuit(Circuit::Open {
            until: Instant::now() + Duration::from_secs(60),
        });
        b.set_ejections(3, None);
        assert!(!b.admits(false));
        b.restarted(Instant::now(), Duration::from_secs(10));
        assert!(b.admits(false));
        assert_eq!(b.ejections(), 0);
        assert!(b.ramp() < FULL_RAMP, "slow start");
    }

    #[test]
    fn circuit_decides_admission_unless_ignored() {
        let b = backend();
        b.set_circuit(Circuit::Open {
            until: Instant::now() + Duration::from_secs(30),
        });
        assert_eq!(b.state(), BackendState::Ejected);
        assert!(!b.admits(false));
        assert!(b.admits(true));
        b.set_circuit(Circuit::HalfOpen {
            trial_in_flight: false,
        });
        assert!(b.admits(false));
        b.set_circuit(Circuit::HalfOpen {
            trial_in_flight: true,
        });
        assert!(!b.admits(false));
    }
}
