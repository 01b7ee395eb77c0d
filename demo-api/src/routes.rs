//! The HTTP surface: the router, the middleware every request passes through (count it, apply
//! the faults to it, tag the response with `X-Instance` and `X-Api-Version`), and the small
//! handlers. The streaming ones live in [`crate::streaming`].

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tracing::debug;

use crate::crash;
use crate::faults::{self, Verdict};
use crate::params::{integer_in_range, BadRequest, QueryParams};
use crate::readiness::Readiness;
use crate::state::SharedState;
use crate::streaming;
use crate::websocket;

/// Names this instance on every response, 404s included.
const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-instance");

/// Names the version this instance runs on every response, 404s included.
const VERSION_HEADER: HeaderName = HeaderName::from_static("x-api-version");

/// Longest `/delay`: a minute.
const MAX_DELAY_MS: u64 = 60_000;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/", get(identify))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/delay", get(delay))
        .route("/status", get(status))
        .route("/headers", get(request_headers))
        .route("/echo", post(streaming::echo))
        .route("/bytes", get(streaming::bytes))
        .route("/ws", get(websocket::upgrade))
        .route("/admin/faults", get(faults::show))
        .route("/admin/ready", post(faults::set_ready))
        .route("/admin/fail", post(faults::set_fail))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_fault_and_tag,
        ))
        .with_state(state)
}

/// Counts the request before its handler runs (so `GET /` includes itself); for an ordinary
/// request, applies the faults ([`faults::Faults::admit`]: the delay, a failure answered instead
/// of serving it, the crash once it is answered, or no answer at all); adds `X-Instance: N` and
/// `X-Api-Version: NAME` to whatever is answered.
async fn count_fault_and_tag(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    state.count_request();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let mut then_crash = false;
    let mut response = if faults::is_ordinary(uri.path()) {
        match state.faults.admit() {
            Verdict::Unanswered => return std::future::pending().await,
            Verdict::Answer {
                delay,
                failure,
                then_crash: crash,
            } => {
                then_crash = crash;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match failure {
                    Some(failure) => failure.into_response(),
                    None => next.run(request).await,
                }
            }
        }
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(INSTANCE_HEADER, HeaderValue::from(state.instance));
    if let Ok(version) = HeaderValue::from_str(&state.version) {
        headers.insert(VERSION_HEADER, version);
    }
    debug!(%method, %uri, status = response.status().as_u16(), "request");
    if then_crash {
        response = crash::once_sent(response);
    }
    response
}

/// `GET /`: who answered, and which version.
async fn identify(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({
        "instance": state.instance,
        "version": state.version,
        "pid": state.pid,
        "listen": state.listen.to_string(),
        "requests_served": state.requests_served(),
    }))
}

/// `GET /health/live`: the process is up and serving.
async fn live() -> &'static str {
    "ok"
}

/// `GET /health/ready`: 200 `ready`, or 503 `starting` / `draining` / `held` (by
/// `POST /admin/ready off`).
async fn ready(State(state): State<SharedState>) -> (StatusCode, &'static str) {
    state.faults.count_ready_probe();
    let readiness = state.readiness.get();
    match readiness {
        Readiness::Ready if state.faults.holds_readiness() => {
            (StatusCode::SERVICE_UNAVAILABLE, "held")
        }
        Readiness::Ready => (StatusCode::OK, readiness.as_str()),
        Readiness::Starting | Readiness::Draining => {
            (StatusCode::SERVICE_UNAVAILABLE, readiness.as_str())
        }
    }
}

/// `GET /delay?ms=N`: a slow response, N in 0..=60000.
async fn delay(
    State(state): State<SharedState>,
    Query(query): Query<QueryParams>,
) -> Result<Json<Value>, BadRequest> {
    let delay_ms = integer_in_range(&query, "ms", 0..=MAX_DELAY_MS)?;
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Ok(Json(json!({
        "instance": state.instance,
        "version": state.version,
        "delayed_ms": delay_ms,
    })))
}

/// `GET /status?code=N`: answers with status N (200..=599) and a one-line body naming it.
async fn status(Query(query): Query<QueryParams>) -> Result<Response, BadRequest> {
    let code: u16 = integer_in_range(&query, "code", 200..=599)?;
    let status = StatusCode::from_u16(code).expect("200..=599 are valid status codes");
    // These statuses must not carry a body.
    if matches!(code, 204 | 205 | 304) {
        return Ok(status.into_response());
    }
    let reason = status.canonical_reason().unwrap_or("Unknown");
    Ok((status, format!("{code} {reason}\n")).into_response())
}

/// `GET /headers`: the request headers as received (lower-case names; repeated headers joined
/// with ", "), so proxy tests can check `X-Forwarded-For`, `X-Request-Id` and the like.
async fn request_headers(headers: HeaderMap) -> Json<BTreeMap<String, String>> {
    let received = headers
        .keys()
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()))
                .collect();
            (name.as_str().to_owned(), values.join(", "))
        })
        .collect();
    Json(received)
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}
