//! One request/response exchange with an upstream group.
//!
//! Flow: pick a backend ([`select::choose`]: balancer, health, ejection, drain, backups), take
//! a pooled connection or connect, send the head, then — when the request has a body — upload it
//! while the response is read, so a backend that answers before reading the whole body (or
//! echoes it as it reads) cannot deadlock us. The response is relayed by
//! [`body::relay_response`], and the upstream connection goes back to the pool only if both
//! messages ended exactly at their framing. Every try is an [`Attempt`], judged for outlier
//! detection when it ends.
//!
//! Retries (each within `retry.max_retries` and the worker's retry budget, see [`crate::upstream::retry`]):
//! - a connect failure → the next candidate, any method (nothing was sent); a refused one
//!   without counting against the limits (each backend once per request, see [`crate::upstream::retry`]);
//! - writing the request head (with the body bytes that arrived with it) failed → again, any
//!   method: the backend cannot have received a complete request, and no byte of the body has
//!   left the client's buffer yet;
//! - the connection was lost before any response byte → again only for an idempotent request
//!   without a body (RFC 9110 §9.2.2; a streamed body cannot be replayed): on a fresh connection
//!   to the same backend when the lost one came from the pool (it may just have been stale; this
//!   one does not count against the limits), else on another backend.
//!
//! Timeouts and invalid responses are not retried, a request that may have reached a backend
//! with a body (a POST it may have acted on) never is, and nothing is once a response byte has
//! reached the client. When retries run out the client gets the last failure (502/504) and the
//! log says why no retry was made; with no usable backend at all, 503.

use super::body::{self, BodyEnd, Relay, RelayError, ResponseRelayed, UploadError, UploadProgress};
use super::record::{GaveUp, RequestRecord};
use super::session::{linger_close, respond_and_close, ClientConn, PendingRequest};
use crate::http::{Method, RequestBody, Version};
use crate::net::io::write_all_within;
use crate::runtime::context::WorkerContext;
use crate::upstream::connect::connect;
use crate::upstream::failure::UpstreamFailure;
use crate::upstream::outlier::{Attempt, Verdict};
use crate::upstream::pool::UpstreamConn;
use crate::upstream::retry::{Refusal, RetryBudget, RetryCount};
use crate::upstream::select;
use crate::upstream::UpstreamGroup;
use monoio::io::AsyncWriteRentExt;
use std::cell::Cell;
use std::net::SocketAddr;

use std::time::Instant;

/// Forwards `request` and relays the response, then logs what happened. Returns whether the client
/// connection may carry another request.
pub async fn forward(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &mut PendingRequest,
) -> bool {
    let record = RequestRecord::new(Instant::now());
    request.generation.upstreams[request.upstream()]
        .state
        .stats
        .request_started();
    let keep_client = forward_with_failover(ctx, client, request, &record).await;
    record.finish(ctx, client.peer, request);
    ctx.count_request();
    keep_client
}

/// Picks backends until one answers or retrying stops (see the module doc for what is retried).
async fn forward_with_failover(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &mut PendingRequest,
    record: &RequestRecord,
) -> bool {
    let generation = request.generation.clone();
    let group = &generation.upstreams[request.upstream()];
    let timeouts = &generation.config.timeouts;
    group.state.retry_budget.record_request();
    let mut retries = RetryCount::default();
    let mut tried: Vec<usize> = Vec::new();
    let mut last_failure: Option<UpstreamFailure> = None;
    // Set after a pooled connection was lost: the same backend again, on a fresh connection.
    let mut again_fresh: Option<usize> = None;
    let replayable = request.body == RequestBody::None && request.method.is_idempotent();
    // Set when the request first has to wait for a backend under its `max_connections`.
    let mut queue_deadline: Option<Instant> = None;

    loop {
        let fresh_only = again_fresh.is_some();
        let chosen = again_fresh
            .take()
            .or_else(|| select::choose(group, request.hash_key, &tried));
        if chosen.is_none() && select::all_full(group, &tried) {
            if select::wait_for_slot(group, &mut queue_deadline).await {
                continue;
            }
            let failure = Failure {
                status: 503,
                detail: format!(
                    "upstream \"{}\": every usable backend has its max_connections ({}) in \
                     flight; waited {:?} in the queue",
                    group.name,
                    group
                        .config
                        .max_connections
                        .map_or(0, std::num::NonZero::get),
                    group.config.queue_timeout
                ),
                backend: None,
                gave_up: GaveUp::QueueTimeout,
            };
            return fail(ctx, client, request, group, failure, record).await;
        }
        let Some(index) = chosen else {
            let failure = match &last_failure {
                Some(failure) => Failure {
                    status: failure.status(),
                    detail: if tried.len() == group.backends.len() {
                        format!(
                            "upstream \"{}\": all {} backends failed; the last one {}",
                            group.name,
                            tried.len(),
                            failure.describe()
                        )
                    } else {
                        format!(
                            "upstream \"{}\": no other backend is usable after {} failed \
                             attempts ({}); the last one {}",
                            group.name,
                            record.attempts.get(),
                            select::why_none_usable(group),
                            failure.describe()
                        )
                    },
                    backend: record.backend.get(),
                    gave_up: GaveUp::AllTried,
                },
                None => Failure {
                    status: 503,
                    detail: format!(
                        "upstream \"{}\" has no usable backend ({})",
                        group.name,
                        select::why_none_usable(group)
                    ),
                    backend: None,
                    gave_up: GaveUp::NoUsableBackend,
                },
            };
            return fail(ctx, client, request, group, failure, record).await;
        };
        let target = &group.backends[index];
        let address = target.address;
        record.backend.set(Some(address));
        record.backend_index.set(Some(index));
        record.attempts.set(record.attempts.get() + 1);
        let attempt = Attempt::begin(group, index);
        let pooled = if fresh_only {
            None
        } else {
            let (pooled, unsolicited) = target.pool.checkout(&group.config.pool);
            target.report_unsolicited(ctx.id, &group.name, unsolicited);
            target.stats.pool_checkout(pooled.is_some());
            pooled
        };
        let conn = match pooled {
            Some(conn) => conn,
            None => match connect(
                address,
                group.config.tls.as_ref(),
                timeouts.upstream_connect,
            )
            .await
            {
                Ok(conn) => conn,
                Err(failure) if failure.is_local() => {
                    // The proxy's own limit, not the backend's fault: no verdict, no retry.
                    drop(attempt);
                    let failure = Failure {
                        status: failure.status(),
                        detail: format!(
                            "upstream \"{}\": backend {address} {}",
                            group.name,
                            failure.describe()
                        ),
                        backend: Some(address),
                        gave_up: GaveUp::LocalResources,
                    };
                    return fail(ctx, client, request, group, failure, record).await;
                }
                Err(failure) => {
                    target.stats.connect_error();
                    attempt.finish(ctx.id, Verdict::Failed(&failure));
                    // It refuses new connections: its idle ones are most likely dead too.
                    target.pool.clear();
                    tried.push(index);
                    // Nothing was sent: any method may go to the next backend (a refusal
                    // without counting against the limits).
                    if let Err(refusal) = retries.permit_after(
                        &failure,
                        &group.config.retry,
                        &group.state.retry_budget,
                    ) {
                        let failure = not_retried(group, address, &failure, refusal, record);
                        return fail(ctx, client, request, group, failure, record).await;
                    }
                    tracing::debug!(request_id = %request.request_id, backend = %address, "backend {}; trying the next one", failure.describe());
                    last_failure = Some(failure);
                    continue;
                }
            },
        };
        let reused = conn.reused;
        match exchange(ctx, client, request, group, index, conn, record).await {
            AttemptEnd::Done { keep_client } => {
                record.answered_by_backend.set(true);
                let verdict = attempt.verdict_for_status(record.status.get());
                attempt.finish(ctx.id, verdict);
                return keep_client;
            }
            AttemptEnd::Abort { upstream_failure } => {
                // The response had started (its status is the backend's), or the client left.
                record.answered_by_backend.set(record.status.get() != 0);
                if let Some(failure) = &upstream_failure {
                    target.stats.failed_attempt();
                    attempt.finish(ctx.id, Verdict::Failed(failure));
                }
                return false;
            }
            AttemptEnd::ClientError { status, detail } => {
                drop(attempt);
                let failure = Failure {
                    status,
                    detail,
                    backend: Some(address),
                    gave_up: GaveUp::ClientError,
                };
                return fail(ctx, client, request, group, failure, record).await;
            }
            AttemptEnd::Failed(failure) => {
                // Nothing of the response reached the client. Writing the head failed: the
                // backend has no complete request. Lost after that: it may have one, so only a
                // request that may be sent twice goes again.
                let head_unsent = matches!(failure, UpstreamFailure::Send(_));
                let lost = head_unsent
                    || matches!(
                        failure,
                        UpstreamFailure::ClosedBeforeResponse | UpstreamFailure::Read(_)
                    );
                let may_retry = head_unsent || (lost && replayable);
                if reused && lost {
                    // A stale pooled connection says nothing about the backend: no verdict.
                    drop(attempt);
                    if may_retry {
                        tracing::debug!(request_id = %request.request_id, backend = %address, "pooled connection {}; again on a fresh one", failure.describe());
                        again_fresh = Some(index);
                        last_failure = Some(failure);
                        continue;
                    }
                } else {
                    target.stats.failed_attempt();
                    attempt.finish(ctx.id, Verdict::Failed(&failure));
                    if may_retry {
                        tried.push(index);
                        if let Err(refusal) =
                            retries.permit(&group.config.retry, &group.state.retry_budget)
                        {
                            let failure = not_retried(group, address, &failure, refusal, record);
                            return fail(ctx, client, request, group, failure, record).await;
                        }
                        tracing::debug!(request_id = %request.request_id, backend = %address, "backend {}; retrying", failure.describe());
                        last_failure = Some(failure);
                        continue;
                    }
                }
                // Not retried (the log line's reason says so): a timeout or an invalid
                // response, or a request the backend may have received and acted on.
                let failure = Failure {
                    status: failure.status(),
                    detail: format!("upstream \"{}\" {}", group.name, failure.describe()),
                    backend: Some(address),
                    gave_up: GaveUp::NotRetryable,
                };
                return fail(ctx, client, request, group, failure, record).await;
            }
        }
    }
}

/// The answer when a retry was due but refused.
fn not_retried(
    group: &UpstreamGroup,
    address: SocketAddr,
    failure: &UpstreamFailure,
    refusal: Refusal,
    record: &RequestRecord,
) -> Failure {
    let (why, gave_up) = match refusal {
        Refusal::MaxRetries => (
            format!(
                "gave up after {} attempts (retry.max_retries = {})",
                record.attempts.get(),
                group.config.retry.max_retries
            ),
            GaveUp::MaxRetries,
        ),
        Refusal::Budget => (
            format!(
                "not retried: the retry budget is exhausted ({})",
                RetryBudget::describe(&group.config.retry)
            ),
            GaveUp::RetryBudget,
        ),
    };
    Failure {
        status: failure.status(),
        detail: format!(
            "upstream \"{}\": backend {address} {}; {why}",
            group.name,
            failure.describe()
        ),
        backend: Some(address),
        gave_up,
    }
}

/// An error response the proxy makes itself.
struct Failure {
    status: u16,
    detail: String,
    backend: Option<SocketAddr>,
    gave_up: GaveUp,
}

/// Logs the failure (one line, with the request id) and answers the client; the connection then
/// closes (returns false).
async fn fail(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &PendingRequest,
    group: &UpstreamGroup,
    failure: Failure,
    record: &RequestRecord,
) -> bool {
    record.status.set(failure.status);
    record.gave_up.set(Some(failure.gave_up));
    tracing::warn!(
        worker = ctx.id,
        request_id = %request.request_id,
        client = %client.peer,
        request = %request.summary,
        upstream = %group.name,
        // `-` when no backend was tried: `journalctl BACKEND=127.0.0.1:8002` finds the rest.
        backend = %failure.backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        status = failure.status,
        reason = failure.gave_up.as_str(),
        "{}",
        failure.detail
    );
    let head_only = request.method == Method::Head;
    let written = respond_and_close(
        client,
        request.generation.config.timeouts.client_idle,
        failure.status,
        &failure.detail,
        &request.request_id,
        head_only,
    )
    .await;
    record.add_to_client(written);
    false
}

enum AttemptEnd {
    /// The response was relayed (fully, or as far as the backend sent it before we closed).
    Done { keep_client: bool },
    /// Failed before any response byte reached the client: the caller may retry or answer.
    Failed(UpstreamFailure),
    /// The client's request body was bad: answer `status` and close.
    ClientError { status: u16, detail: String },
    /// Nothing more can be said to the client: close. `upstream_failure`: the backend cut the
    /// response short (it counts against the backend); `None`: the client is gone.
    Abort {
        upstream_failure: Option<UpstreamFailure>,
    },
}

const CLIENT_GONE: AttemptEnd = AttemptEnd::Abort {
    upstream_failure: None,
};

async fn exchange(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &mut PendingRequest,
    group: &UpstreamGroup,
    index: usize,
    mut conn: UpstreamConn,
    record: &RequestRecord,
) -> AttemptEnd {
    let backend = &group.backends[index];
    let generation = request.generation.clone();
    let timeouts = &generation.config.timeouts;
    let has_body = request.body != RequestBody::None;
    if request.expect_continue
        && has_body
        && request.version == Version::Http11
        && !request.continue_sent
    {
        // We answer `Expect: 100-continue` ourselves (the codec strips Expect upstream): the
        // backend is connected, so the body has somewhere to go. Once per request, retries
        // included.
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        if write_all_within(&mut client.w, interim, timeouts.client_idle)
            .await
            .is_err()
        {
            return CLIENT_GONE;
        }
        request.continue_sent = true;
    }

    // Body bytes that arrived with the head go out in the same write (one write instead of
    // two: what a 16 KiB POST costs). They leave the client's buffer only once written: if the
    // write fails, a retry finds them where they were.
    let with_head = match request.body {
        RequestBody::Length(length) => client
            .buf
            .len()
            .min(usize::try_from(length).unwrap_or(usize::MAX)),
        _ => 0,
    };
    let mut head = std::mem::take(&mut request.upstream_head);
    let head_len = head.len();
    head.extend_from_slice(&client.buf[..with_head]);
    match monoio::time::timeout(timeouts.upstream_response, conn.w.write_all(head)).await {
        Ok((Ok(_), mut head)) => {
            head.truncate(head_len);
            request.upstream_head = head;
        }
        Ok((Err(e), mut head)) => {
            head.truncate(head_len);
            request.upstream_head = head;
            return AttemptEnd::Failed(UpstreamFailure::Send(e));
        }
        Err(_) => return AttemptEnd::Failed(UpstreamFailure::Timeout(timeouts.upstream_response)),
    }
    let mut body_left = request.body;
    if let RequestBody::Length(length) = request.body {
        client.buf.drain(..with_head);
        record.add_from_client(with_head as u64);
        body_left = RequestBody::Length(length - with_head as u64);
    }
    let has_body = body_left != RequestBody::None && body_left != RequestBody::Length(0);

    let response_started = Cell::new(false);
    let progress = UploadProgress::new(has_body);
    let relay = Relay {
        request,
        // A CONNECT that is refused by the backend ends the connection: the client may already
        // have sent tunnel bytes after its head, which must not be read as a request.
        client_keep_alive: request.keep_alive
            && !ctx.drain.is_triggered()
            && request.method != Method::Connect,
        response_started: &response_started,
        upload_done: &progress.done,
        record,
        client_fd: client.fd,
    };
    let (relayed, uploaded) = {
        let ClientConn {
            r: client_r,
            w: client_w,
            buf: client_buf,
            ..
        } = &mut *client;
        let UpstreamConn {
            r: up_r, w: up_w, ..
        } = &mut conn;
        let download = body::relay_response(relay, up_r, client_w);
        if !has_body {
            (download.await, Ok(()))
        } else {
            let upload = body::upload(
                &generation.config,
                body_left,
                client_r,
                client_buf,
                up_w,
                &progress,
                record,
            );
            let mut upload = std::pin::pin!(upload);
            let mut download = std::pin::pin!(download);
            let mut uploaded = None;
            let relayed = loop {
                if uploaded.is_some() {
                    break download.as_mut().await;
                }
                monoio::select! {
                    relayed = download.as_mut() => break relayed,
                    result = upload.as_mut() => match result {
                        Ok(()) => uploaded = Some(result),
                        Err(e) => {
                            uploaded = Some(Err(e));
                            break Err(RelayError::UploadAborted);
                        }
                    },
                }
            };
            if let Some(e) = progress.take_upstream_error() {
                // The backend stopped reading; its response, if any, decided.
                tracing::debug!(request_id = %request.request_id, "backend stopped reading the request body: {e}");
            }
            if uploaded.is_none() && matches!(&relayed, Ok(r) if r.client_reusable) {
                // The response is complete, the body is not (an early answer): read the rest
                // of it away, so the client's connection stays in sync and usable.
                progress.stop_sending();
                uploaded = Some(upload.as_mut().await);
            }
            (relayed, uploaded.unwrap_or(Err(UploadError::Unfinished)))
        }
    };

    match &relayed {
        Ok(ResponseRelayed {
            end: BodyEnd::Overrun(past),
            ..
        }) => {
            // Never pooled (`upstream_reusable` is false): counted and logged with the backend.
            backend.stats.protocol_error();
            tracing::warn!(
                worker = ctx.id,
                request_id = %request.request_id,
                upstream = %group.name,
                backend = %backend.address,
                "backend {} sent at least {past} bytes past the end of its response (not \
                 forwarded); its connection is closed, not reused",
                backend.address
            );
        }
        Err(RelayError::Upstream(UpstreamFailure::Invalid(_))) => backend.stats.protocol_error(),
        _ => {}
    }
    match (relayed, uploaded) {
        (
            Ok(ResponseRelayed {
                upgraded: Some(from_upstream),
                ..
            }),
            _,
        ) => {
            let up_fd = conn.fd();
            let UpstreamConn {
                r: up_r, w: up_w, ..
            } = &mut conn;
            let tunneled = body::tunnel(
                client,
                up_r,
                up_w,
                up_fd,
                from_upstream,
                timeouts.tunnel_idle,
            )
            .await;
            record.add_to_client(tunneled.to_client as usize);
            record.add_from_client(tunneled.to_backend);
            AttemptEnd::Done { keep_client: false }
        }
        (Ok(relayed), uploaded) => {
            let body_complete = uploaded.is_ok();
            if relayed.upstream_reusable
                && body_complete
                && !progress.diverted()
                && !backend.is_retired()
                && !backend.is_draining()
            {
                backend.pool.checkin(&group.config.pool, conn);
            } else if !body_complete {
                // The response ended the client connection before the whole body was read (or
                // the client failed while we read it away): closing now, with its bytes unread,
                // would reset the connection and could destroy the response before the client
                // reads it; so half-close, and read and discard for a while first.
                drop(conn);
                linger_close(client).await;
            }
            AttemptEnd::Done {
                keep_client: relayed.client_reusable && body_complete,
            }
        }
        (Err(RelayError::UploadAborted), Err(UploadError::Client { status, detail }))
            if !response_started.get() =>
        {
            AttemptEnd::ClientError { status, detail }
        }
        (Err(RelayError::Upstream(failure)), _) if !response_started.get() => {
            AttemptEnd::Failed(failure)
        }
        (Err(RelayError::Upstream(failure)), _) => {
            tracing::warn!(
                worker = ctx.id,
                request_id = %request.request_id,
                upstream = %group.name,
                backend = %backend.address,
                "response cut short after it started: backend {}",
                failure.describe()
            );
            AttemptEnd::Abort {
                upstream_failure: Some(failure),
            }
        }
        _ => CLIENT_GONE,
    }
}
