//! Fault injection at runtime, for health-check and failover demos and tests:
//!
//! - `POST /admin/ready` with body `off` makes `/health/ready` answer 503 `held` (the process
//!   keeps serving everything else); `on` lifts it.
//! - `POST /admin/fail` with a status (`500`..=`599`) as the body makes every request outside
//!   `/admin/` and `/health/` answer that status; `off` stops it.
//! - `GET /admin/faults` shows both and how many readiness probes were answered.
//!
//! Every answer is the JSON of `GET /admin/faults`.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::SharedState;

#[derive(Debug, Default)]
pub struct Faults {
    /// `/health/ready` answers 503 while set.
    not_ready: AtomicBool,
    /// Status every ordinary request gets while non-zero.
    fail_status: AtomicU16,
    /// `/health/ready` requests answered.
    ready_probes: AtomicU64,
}

impl Faults {
    pub fn holds_readiness(&self) -> bool {
        self.not_ready.load(Ordering::Relaxed)
    }

    pub fn count_ready_probe(&self) {
        self.ready_probes.fetch_add(1, Ordering::Relaxed);
    }

    /// The status to answer a request for `path` with instead of serving it, if failing.
    pub fn injected_status(&self, path: &str) -> Option<StatusCode> {
        if path.starts_with("/admin/") || path.starts_with("/health/") {
            return None;
        }
        match self.fail_status.load(Ordering::Relaxed) {
            0 => None,
            code => StatusCode::from_u16(code).ok(),
        }
    }

    fn snapshot(&self) -> Json<Value> {
        let fail = match self.fail_status.load(Ordering::Relaxed) {
            0 => Value::Null,
            code => json!(code),
        };
        Json(json!({
            "ready_held": self.holds_readiness(),
            "fail": fail,
            "ready_probes": self.ready_probes.load(Ordering::Relaxed),
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
