//! Fault injection, for health-check, failover and deployment demos and tests.
//!
//! At runtime:
//! - `POST /admin/ready` with body `off` makes `/health/ready` answer 503 `held` (the process
//!   keeps serving everything else); `on` lifts it.
//! - `POST /admin/fail` with a status (`500`..=`599`) as the body makes every ordinary request
//!   answer that status; `off` stops it.
//! - `GET /admin/faults` shows both, the bad version's faults below and how many readiness
//!   probes were answered.
//!
//! From the start, a bad version ([`BadVersion`]: `--fail-ratio`, `--delay`, `--crash-after`),
//! fixed for the life of the process, so that a canary has something to catch.
//!
//! An ordinary request is any but `/health/*` and `/admin/*`: faults never touch the probes, nor
//! the endpoints that set the faults. [`Faults::admit`] decides each ordinary request's fate as
//! it arrives, in one place, from one running count of ordinary requests.
//!
//! Every answer of the admin endpoints is the JSON of `GET /admin/faults`.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::SharedState;

/// `--fail-ratio` is kept in millionths, so that whether request n fails is integer arithmetic:
/// exact for any ratio with up to six decimals, where `n * 0.29` in floating point would put
/// some failures one request late.
const PARTS_PER_MILLION: u64 = 1_000_000;

/// The faults of a bad version, set by the command line for the life of the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct BadVersion {
    /// `--fail-ratio`, in millionths (0: none fail).
    fail_ppm: u64,
    /// `--delay`: added before every ordinary request is answered.
    delay: Duration,
    /// `--crash-after`: the process crashes once this many ordinary requests are answered.
    crash_after: Option<NonZeroU64>,
}

impl BadVersion {
    /// `fail_ratio` in 0..=1 (the command line checks it; outside, it is clamped).
    pub fn new(fail_ratio: f64, delay: Duration, crash_after: Option<NonZeroU64>) -> Self {
        let fail_ppm = (fail_ratio.clamp(0.0, 1.0) * PARTS_PER_MILLION as f64).round() as u64;
        BadVersion {
            fail_ppm,
            delay,
            crash_after,
        }
    }

    /// Whether ordinary request number `n` (from 1) is one `--fail-ratio` fails: those where
    /// floor(n × ratio) steps up, so failures are spread evenly and any run of requests from
    /// the first has exactly floor(n × ratio) of them.
    fn fails(&self, n: u64) -> bool {
        let failures_up_to =
            |n: u64| u128::from(n) * u128::from(self.fail_ppm) / u128::from(PARTS_PER_MILLION);
        n > 0 && failures_up_to(n) > failures_up_to(n - 1)
    }
}

/// What becomes of an ordinary request, decided as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it after `delay`: with `failure` if there is one, else by serving it. With
    /// `then_crash`, the process crashes once this answer is sent (the `--crash-after`th).
    Answer {
        delay: Duration,
        failure: Option<Failure>,
        then_crash: bool,
    },
    /// `--crash-after` requests are answered and the crash is on its way: no answer.
    Unanswered,
}

/// A failure answered instead of serving the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `POST /admin/fail`'s status.
    Injected(StatusCode),
    /// The request's turn under `--fail-ratio`: 500.
    Ratio,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Injected(status) => {
                (status, format!("{} injected failure\n", status.as_u16())).into_response()
            }
            Failure::Ratio => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 bad version (--fail-ratio)\n",
            )
                .into_response(),
        }
    }
}

/// Whether faults apply to a request for `path`: all but the probes and the admin endpoints.
pub fn is_ordinary(path: &str) -> bool {
    !(path.starts_with("/admin/") || path.starts_with("/health/"))
}

#[derive(Debug, Default)]
pub struct Faults {
    /// `/health/ready` answers 503 while set.
    not_ready: AtomicBool,
    /// Status every ordinary request gets while non-zero.
    fail_status: AtomicU16,
    /// `/health/ready` requests answered.
    ready_probes: AtomicU64,
    /// The faults this process was started with.
    bad_version: BadVersion,
    /// Ordinary requests received so far: the running count `--fail-ratio` and `--crash-after`
    /// go by.
    ordinary_requests: AtomicU64,
}

impl Faults {
    pub fn new(bad_version: BadVersion) -> Self {
        Faults {
            bad_version,
            ..Faults::default()
        }
    }

    pub fn holds_readiness(&self) -> bool {
        self.not_ready.load(Ordering::Relaxed)
    }

    pub fn count_ready_probe(&self) {
        self.ready_probes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an ordinary request (see [`is_ordinary`]) and decides what becomes of it.
    /// `/admin/fail`'s status wins over `--fail-ratio`; every answer, failed or not, counts
    /// towards `--crash-after`.
    pub fn admit(&self) -> Verdict {
        let n = self.ordinary_requests.fetch_add(1, Ordering::Relaxed) + 1;
        let bad = &self.bad_version;
        let crash_after = bad.crash_after.map(NonZeroU64::get);
        if crash_after.is_some_and(|last| n > last) {
            return Verdict::Unanswered;
        }
        let injected = match self.fail_status.load(Ordering::Relaxed) {
            0 => None,
            code => StatusCode::from_u16(code).ok().map(Failure::Injected),
        };
        let failure = injected.or_else(|| bad.fails(n).then_some(Failure::Ratio));
        Verdict::Answer {
            delay: bad.delay,
            failure,
            then_crash: crash_after == Some(n),
        }
    }

    fn snapshot(&self) -> Json<Value> {
        let fail = match self.fail_status.load(Ordering::Relaxed) {
            0 => Value::Null,
            code => json!(code),
        };
        let bad = &self.bad_version;
        Json(json!({
            "ready_held": self.holds_readiness(),
            "fail": fail,
            "ready_probes": self.ready_probes.load(Ordering::Relaxed),
            "fail_ratio": bad.fail_ppm as f64 / PARTS_PER_MILLION as f64,
            "delay_ms": u64::try_from(bad.delay.as_millis()).unwrap_or(u64::MAX),
            "crash_after": bad.crash_after,
            "ordinary_requests": self.ordinary_requests.load(Ordering::Relaxed),
        }))
    }
}

/// `GET /admin/faults`
pub async fn show(State(state): State<SharedState>) -> Json<Value> {
    state.faults.snapshot()
}

/// `POST /admin/ready` with `on` or `off`.
pub async fn set_ready(State(state): State<SharedState>, body: String) -> Response {
    match body.trim() {
        "on" => state.faults.not_ready.store(false, Ordering::Relaxed),
        "off" => state.faults.not_ready.store(true, Ordering::Relaxed),
        _ => return bad_body("send `on` or `off`"),
    }
    state.faults.snapshot().into_response()
}

/// `POST /admin/fail` with a status 500..=599, or `off`.
pub async fn set_fail(State(state): State<SharedState>, body: String) -> Response {
    let status = match body.trim() {
        "off" => 0,
        text => match text.parse::<u16>() {
            Ok(code @ 500..=599) => code,
            _ => return bad_body("send a status from 500 to 599, or `off`"),
        },
    };
    state.faults.fail_status.store(status, Ordering::Relaxed);
    state.faults.snapshot().into_response()
}

fn bad_body(what: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{what}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(bad: &BadVersion, requests: u64) -> Vec<u64> {
        (1..=requests).filter(|&n| bad.fails(n)).collect()
    }

    #[test]
    fn a_fail_ratio_fails_exactly_its_share_evenly_spread() {
        let fifth = BadVersion::new(0.2, Duration::ZERO, None);
        assert_eq!(failures(&fifth, 20), [5, 10, 15, 20]);
        assert_eq!(failures(&fifth, 100).len(), 20);
        // 0.29 × 100 is 28.999… in floating point; in millionths it is exact.
        let awkward = BadVersion::new(0.29, Duration::ZERO, None);
        assert_eq!(failures(&awkward, 100).len(), 29);
        assert_eq!(failures(&awkward, 1_000).len(), 290);
        assert!(failures(&BadVersion::default(), 1_000).is_empty());
        assert_eq!(
            failures(&BadVersion::new(1.0, Duration::ZERO, None), 50).len(),
            50
        );
    }

    #[test]
    fn admit_fails_by_ratio_injects_first_and_stops_answering_after_the_crash_request() {
        let faults = Faults::new(BadVersion::new(
            0.5,
            Duration::from_millis(150),
            NonZeroU64::new(3),
        ));
        let answer = |failure, then_crash| Verdict::Answer {
            delay: Duration::from_millis(150),
            failure,
            then_crash,
        };
        assert_eq!(faults.admit(), answer(None, false));
        assert_eq!(faults.admit(), answer(Some(Failure::Ratio), false));
        faults.fail_status.store(503, Ordering::Relaxed);
        let injected = Some(Failure::Injected(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(faults.admit(), answer(injected, true));
        assert_eq!(faults.admit(), Verdict::Unanswered);
        assert_eq!(faults.admit(), Verdict::Unanswered);
    }

    #[test]
    fn without_a_bad_version_every_request_is_served_at_once() {
        let faults = Faults::default();
        for _ in 0..1_000 {
            assert_eq!(
                faults.admit(),
                Verdict::Answer {
                    delay: Duration::ZERO,
                    failure: None,
                    then_crash: false
                }
            );
        }
    }

    #[test]
    fn probes_and_admin_endpoints_are_not_ordinary() {
        for path in [
            "/health/ready",
            "/health/live",
            "/admin/fail",
            "/admin/faults",
        ] {
            assert!(!is_ordinary(path), "{path}");
        }
        for path in ["/", "/delay", "/status", "/healthz", "/administrator"] {
            assert!(is_ordinary(path), "{path}");
        }
    }
}
