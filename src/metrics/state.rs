//! What a backend's condition is called, in logs, metrics, the API and the dashboard.

/// A backend's condition in one word, most important first: a draining backend that is also
/// down reads `Draining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendState {
    /// No longer in the configuration (kept only while requests that started on it finish).
    Retired,
    /// Configured (or set at runtime) to drain: no new requests.
    Draining,
    /// Failing its active health checks.
    Down,
    /// Ejected by outlier detection on this worker.
    Ejected,
    /// Ejection over; the next request is a trial.
    HalfOpen,
    /// Usable, weight still ramping up.
    SlowStart,
    Up,
}

impl BackendState {
    /// Every state, most important first (the order of the enum).
    pub const ALL: [BackendState; 7] = [
        BackendState::Retired,
        BackendState::Draining,
        BackendState::Down,
        BackendState::Ejected,
        BackendState::HalfOpen,
        BackendState::SlowStart,
        BackendState::Up,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Retired => "retired",
            BackendState::Draining => "draining",
            BackendState::Down => "down",
            BackendState::Ejected => "ejected",
            BackendState::HalfOpen => "half-open",
            BackendState::SlowStart => "slow-start",
            BackendState::Up => "up",
        }
    }

    /// Whether new requests go to it (ramping and half-open ones take some).
    pub fn takes_requests(self) -> bool {
        matches!(
            self,
            BackendState::Up | BackendState::SlowStart | BackendState::HalfOpen
        )
    }
}

/// The circuit breaker (passive outlier detection) of a backend on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CircuitState {
    /// In use.
    Closed,
    /// Ejected: no requests until its time is up.
    Open,
    /// One trial request decides.
    HalfOpen,
}

impl CircuitState {
    pub const ALL: [CircuitState; 3] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}
