//! Readiness (`GET /health/ready`): `starting` during `--startup-delay`, then `ready`, then
//! `draining` from the first shutdown signal on. Only `ready` answers 200.
//!
//! The transitions only go forward: a signal during warm-up goes straight to `draining`, and the
//! end of the warm-up then leaves it there (and does not tell systemd `READY=1`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tracing::{info, Instrument};

use crate::state::SharedState;
use crate::systemd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

impl Readiness {
    /// The `/health/ready` body.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
        }
    }
}

/// A [`Readiness`] that handlers read while the startup and shutdown tasks change it.
#[derive(Debug)]
pub struct ReadinessFlag(AtomicU8);

impl ReadinessFlag {
    pub fn starting() -> Self {
        ReadinessFlag(AtomicU8::new(Readiness::Starting as u8))
    }

    pub fn get(&self) -> Readiness {
        match self.0.load(Ordering::Acquire) {
            0 => Readiness::Starting,
            1 => Readiness::Ready,
            _ => Readiness::Draining,
        }
    }

    /// `starting` → `ready`; returns false (and changes nothing) if already draining.
    fn mark_ready(&self) -> bool {
        self.0
            .compare_exchange(
                Readiness::Starting as u8,
                Readiness::Ready as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    pub fn mark_draining(&self) {
        self.0.store(Readiness::Draining as u8, Ordering::Release);
    }
}

/// Turns the instance ready after `startup_delay`: at once when it is zero (so it is already
/// ready when the "listening on" line is printed), otherwise from a background task.
pub fn start_warm_up(state: SharedState, startup_delay: Duration) {
    if startup_delay.is_zero() {
        become_ready(&state);
        return;
    }
    info!(
        ?startup_delay,
        "warming up: readiness answers 503 starting until the delay ends"
    );
    let warm_up = async move {
        tokio::time::sleep(startup_delay).await;
        become_ready(&state);
    };
    tokio::spawn(warm_up.in_current_span());
}

fn become_ready(state: &SharedState) {
    if state.readiness.mark_ready() {
        info!("ready");
        systemd::notify_ready(state.listen);
    } else {
        info!("warm-up over, but already draining: staying not ready");
    }
}
