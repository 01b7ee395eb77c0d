//! One request/response exchange with an upstream group.
//!
//! Flow: the failover engine ([`crate::upstream::failover`]) picks a backend (balancer, health,
//! ejection, drain, backups, the queue) and takes a pooled connection or connects; this module is
//! its HTTP [`Leg`]: send the head, then — when the request has a body — upload it while the
//! response is read, so a backend that answers before reading the whole body (or echoes it as it
//! reads) cannot deadlock us. The response is relayed by [`body::relay_response`], and the
//! upstream connection goes back to the pool only if both messages ended exactly at their framing
//! ([`Backend::checkin`]). The engine judges failures; a relayed response is judged here by its
//! status ([`Attempt::verdict_for_status`]).
//!
//! [`Attempt::verdict_for_status`]: crate::upstream::outlier::Attempt::verdict_for_status
//!
//! What may be retried is the failure's [`RetrySafety`] (within `retry.max_retries` and the
//! worker's retry budget, see [`crate::upstream::retry`]):
//! - a connect failure → the next candidate, any method (nothing was sent); a refused one
//!   without counting against the limits (each backend once per request);
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
//! log says why no retry was made ([`GaveUp`]); with no usable backend at all, 503.
//!
//! [`GaveUp`]: crate::upstream::failover::GaveUp
//!
//! [`RetrySafety`]: crate::upstream::failure::RetrySafety

use super::body::{self, BodyEnd, Relay, RelayError, ResponseRelayed, UploadError, UploadProgress};
use super::client::{linger_close, respond_and_close, ClientConn, PendingRequest};
use super::record::RequestRecord;
use crate::http::{Method, RequestBody, Version};
use crate::net::io::write_all_within;
use crate::runtime::context::WorkerContext;
use crate::upstream::backend::Backend;
use crate::upstream::connect::connect;
use crate::upstream::failover::{self, GaveUp, GiveUp, Leg, Protocol, Retrying, Served};
use crate::upstream::failure::UpstreamFailure;
use crate::upstream::outlier::Verdict;
use crate::upstream::pool::UpstreamConn;
use crate::upstream::scale_from_zero::{self, scaled_to_zero};
use crate::upstream::UpstreamGroup;
use monoio::io::AsyncWriteRentExt;
use std::cell::Cell;
use std::future::Future;
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
    record.finish(ctx, client.logged(), request);
    ctx.count_request();
    keep_client
}

/// Runs the failover engine with the HTTP leg, then judges the attempt that answered or answers
/// the client with why none did. A group scaled to zero makes the request wait for an instance
/// first ([`scale_from_zero`]), then run on the generation that has one.
async fn forward_with_failover(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &mut PendingRequest,
    record: &RequestRecord,
) -> bool {
    // Set when the request first waits for an instance: `queue_timeout` from then.
    let mut instance_deadline = None;
    loop {
        let generation = request.generation.clone();
        let group = &generation.upstreams[request.upstream()];
        let keys = request.keys;
        let mut leg = HttpLeg {
            ctx,
            client: &mut *client,
            request: &mut *request,
            record,
            group,
        };
        let give_up = match failover::run(ctx.id, group, keys, &mut leg).await {
            Ok(Served {
                index,
                attempt,
                output,
            }) => match output {
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
                        group.backends[index].stats.failed_attempt();
                        attempt.finish(ctx.id, Verdict::Failed(failure));
                    }
                    return false;
                }
                AttemptEnd::ClientError { status, detail } => {
                    drop(attempt);
                    GiveUp::client_error(group.backends[index].address, status, detail)
                }
            },
            Err(give_up) if give_up.reason == GaveUp::NoUsableBackend && scaled_to_zero(group) => {
                let deadline = *instance_deadline
                    .get_or_insert_with(|| Instant::now() + group.config.queue_timeout);
                let current = || ctx.generation();
                match scale_from_zero::wait_for_instance(group, deadline, current, &ctx.commits)
                    .await
                {
                    Some((next, upstream)) => match request.move_to(next, upstream) {
                        true => continue,
                        // Its route is gone from the configuration: it stays on its own.
                        false => give_up,
                    },
                    None => GiveUp::no_instance(group),
                }
            }
            Err(give_up) => give_up,
        };
        return fail(ctx, client, request, group, give_up, record).await;
    }
}

/// The HTTP side of the failover engine: pooled connections, the exchange, replay only of
/// requests that may be sent twice.
struct HttpLeg<'a> {
    ctx: &'a WorkerContext,
    client: &'a mut ClientConn,
    request: &'a mut PendingRequest,
    record: &'a RequestRecord,
    group: &'a UpstreamGroup,
}

impl Leg for HttpLeg<'_> {
    type Conn = UpstreamConn;
    type Output = AttemptEnd;
    const POOLED: bool = true;
    const PROTOCOL: Protocol = Protocol::Http;

    fn begin(&mut self, index: usize, backend: &Backend) {
        let record = self.record;
        record.backend.set(Some(backend.address));
        record.backend_index.set(Some(index));
        record.attempts.set(record.attempts.get() + 1);
    }

    fn reuse(&mut self, backend: &Backend) -> Option<UpstreamConn> {
        let (pooled, unsolicited) = backend.pool.checkout(&self.group.config.pool);
        backend.report_unsolicited(self.ctx.id, &self.group.name, unsolicited);
        backend.stats.pool_checkout(pooled.is_some());
        pooled
    }

    // The futures themselves, not wrapped in one more `async` state machine each: every poll of
    // the exchange passes through here.
    fn connect(
        &mut self,
        backend: &Backend,
    ) -> impl Future<Output = Result<UpstreamConn, UpstreamFailure>> {
        let limit = self.request.generation.config.timeouts.upstream_connect;
        connect(backend.address, self.group.config.tls.as_ref(), limit)
    }

    fn exchange(
        &mut self,
        backend: &Backend,
        conn: UpstreamConn,
    ) -> impl Future<Output = Result<AttemptEnd, UpstreamFailure>> {
        exchange(
            self.ctx,
            self.client,
            self.request,
            self.group,
            backend,
            conn,
            self.record,
        )
    }

    fn replayable(&self) -> bool {
        self.request.body == RequestBody::None && self.request.method.is_idempotent()
    }

    fn max_retries(&self, _group: &UpstreamGroup) -> u32 {
        // The route's own, else its group's (resolved into the route's settings).
        self.request.route_config().settings.max_retries
    }

    fn retrying(&self, retrying: Retrying<'_>) {
        tracing::debug!(request_id = %self.request.request_id, backend = %retrying.backend, "{retrying}");
    }
}

/// Logs why the proxy answers itself (one line, with the request id) and answers the client; the
/// connection then closes (returns false).
async fn fail(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &PendingRequest,
    group: &UpstreamGroup,
    failure: GiveUp,
    record: &RequestRecord,
) -> bool {
    record.status.set(failure.status);
    record.gave_up.set(Some(failure.reason));
    tracing::warn!(
        worker = ctx.id,
        request_id = %request.request_id,
        client = %client.peer,
        request = %request.summary,
        upstream = %group.name,
        // `-` when no backend was tried: `journalctl BACKEND=127.0.0.1:8002` finds the rest.
        backend = %failure.backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        status = failure.status,
        reason = failure.reason.as_str(),
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

/// How an exchange that ends the failover ended (a failure before any response byte reached the
/// client is the engine's `Err` instead).
#[derive(Debug)]
enum AttemptEnd {
    /// The response was relayed (fully, or as far as the backend sent it before we closed).
    Done { keep_client: bool },
    /// The client's request body was bad: answer `status` and close.
    ClientError { status: u16, detail: String },
    /// Nothing more can be said to the client: close. `upstream_failure`: the backend cut the
    /// response short (it counts against the backend); `None`: the client is gone.
    Abort {
        upstream_failure: Option<UpstreamFailure>,
    },
}

const CLIENT_GONE: Result<AttemptEnd, UpstreamFailure> = Ok(AttemptEnd::Abort {
    upstream_failure: None,
});

/// Sends the request on `conn` to `backend` and relays the response. `Err`: failed before any
/// response byte reached the client.
async fn exchange(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    request: &mut PendingRequest,
    group: &UpstreamGroup,
    backend: &Backend,
    mut conn: UpstreamConn,
    record: &RequestRecord,
) -> Result<AttemptEnd, UpstreamFailure> {
    let generation = request.generation.clone();
    let timeouts = &generation.config.timeouts;
    // The route's own, or its group's, or the global ones (`RouteSettings`).
    let settings =
        &generation.config.listeners[request.listener()].routes[request.route()].settings;
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
    match monoio::time::timeout(settings.upstream_response, conn.w.write_all(head)).await {
        Ok((Ok(_), mut head)) => {
            head.truncate(head_len);
            request.upstream_head = head;
        }
        Ok((Err(e), mut head)) => {
            head.truncate(head_len);
            request.upstream_head = head;
            return Err(UpstreamFailure::Send(e));
        }
        Err(_) => return Err(UpstreamFailure::Timeout(settings.upstream_response)),
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
        client_ip: client.request_ip,
        backend: backend.address,
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
                settings, body_left, client_r, client_buf, up_w, &progress, record,
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
            Ok(AttemptEnd::Done { keep_client: false })
        }
        (Ok(relayed), uploaded) => {
            let body_complete = uploaded.is_ok();
            if relayed.upstream_reusable && body_complete && !progress.diverted() {
                backend.checkin(&group.config.pool, conn);
            } else if !body_complete {
                // The response ended the client connection before the whole body was read (or
                // the client failed while we read it away): closing now, with its bytes unread,
                // would reset the connection and could destroy the response before the client
                // reads it; so half-close, and read and discard for a while first.
                drop(conn);
                linger_close(client).await;
            }
            Ok(AttemptEnd::Done {
                keep_client: relayed.client_reusable && body_complete,
            })
        }
        (Err(RelayError::UploadAborted), Err(UploadError::Client { status, detail }))
            if !response_started.get() =>
        {
            Ok(AttemptEnd::ClientError { status, detail })
        }
        (Err(RelayError::Upstream(failure)), _) if !response_started.get() => Err(failure),
        (Err(RelayError::Upstream(failure)), _) => {
            tracing::warn!(
                worker = ctx.id,
                request_id = %request.request_id,
                upstream = %group.name,
                backend = %backend.address,
                "response cut short after it started: backend {}",
                failure.describe()
            );
            Ok(AttemptEnd::Abort {
                upstream_failure: Some(failure),
            })
        }
        _ => CLIENT_GONE,
    }
}

#[cfg(test)]
mod tests {
    //! The HTTP leg's decisions on scripted streams: a request as the session prepares it, a real
    //! client socket, and backends from [`crate::upstream::testing`] that answer, close or reset
    //! as told; on both io drivers.
    use super::*;
    use crate::l7::session::testing::{client_pair, pending};
    use crate::upstream::outlier::Attempt;
    use crate::upstream::testing::{
        autoscaled, backends, config, generation, on_both_drivers, refusing, ScriptedBackend, Step,
        OK,
    };
    use crate::upstream::Generation;
    use std::io::Read;
    use std::net::{Shutdown, SocketAddr};
    use std::rc::Rc;
    use std::time::Duration;

    const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    /// Not idempotent: never sent twice once it may have arrived.
    const POST: &str = "POST / HTTP/1.1\r\nHost: a\r\n\r\n";
    const NO_RETRIES: &str =
        "[upstream.api.retry]\nmax_retries = 0\nbudget_percent = 0\nbudget_min_per_second = 0\n";

    /// What one forwarded request left behind.
    #[derive(Debug)]
    struct Forwarded {
        status: u16,
        gave_up: Option<GaveUp>,
        attempts: u32,
        /// What the client received.
        response: String,
    }

    fn context(addresses: &[SocketAddr], extra: &str) -> WorkerContext {
        let group = format!("[upstream.api]\n{}{extra}", backends(addresses));
        WorkerContext::new(0, generation("http", &group))
    }

    /// Forwards `head` from a fresh client that sends nothing more.
    async fn forward_one(ctx: &WorkerContext, head: &str) -> Forwarded {
        let (mut client, mut peer) = client_pair();
        peer.shutdown(Shutdown::Write).unwrap();
        let mut request = pending(ctx, head.as_bytes(), client.peer);
        let record = RequestRecord::new(Instant::now());
        forward_with_failover(ctx, &mut client, &mut request, &record).await;
        drop(client);
        let mut response = String::new();
        peer.read_to_string(&mut response).unwrap();
        Forwarded {
            status: record.status.get(),
            gave_up: record.gave_up.get(),
            attempts: record.attempts.get(),
            response,
        }
    }

    fn backend(ctx: &WorkerContext, index: usize) -> std::rc::Rc<Backend> {
        ctx.generation().upstreams[0].backends[index].clone()
    }

    #[test]
    fn a_refused_backend_is_skipped_for_any_method_without_counting() {
        on_both_drivers(|| async {
            let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
            let ctx = context(&[refusing(), ok.address], NO_RETRIES);
            let forwarded = forward_one(&ctx, POST).await;
            assert_eq!((forwarded.status, forwarded.gave_up), (200, None));
            assert_eq!(forwarded.attempts, 2);
            assert!(forwarded.response.starts_with("HTTP/1.1 200 OK"));
            assert_eq!(backend(&ctx, 0).stats.snapshot().connect_errors, 1);
        });
    }

    #[test]
    fn a_reset_after_the_head_on_a_reused_connection_goes_again_fresh_when_idempotent() {
        on_both_drivers(|| async {
            let scripted = ScriptedBackend::start(vec![
                vec![Step::Answer(OK), Step::ResetAfterHead],
                vec![Step::Answer(OK)],
            ]);
            let ctx = context(&[scripted.address], NO_RETRIES);
            assert_eq!(forward_one(&ctx, GET).await.status, 200);
            assert_eq!(backend(&ctx, 0).pool.idle_count(), 1);

            let forwarded = forward_one(&ctx, GET).await;
            assert_eq!((forwarded.status, forwarded.gave_up), (200, None));
            assert_eq!(
                forwarded.attempts, 2,
                "the same backend, on a fresh connection"
            );
            assert_eq!(scripted.connections(), 2);
            let stats = backend(&ctx, 0).stats.snapshot();
            assert_eq!(
                stats.failed_attempts, 0,
                "a stale connection is not held against it"
            );
            assert_eq!((stats.pool_hits, stats.pool_misses), (1, 1));
        });
    }

    #[test]
    fn a_reset_after_the_head_on_a_reused_connection_is_a_502_for_a_post() {
        on_both_drivers(|| async {
            let scripted = ScriptedBackend::start(vec![
                vec![Step::Answer(OK), Step::ResetAfterHead],
                vec![Step::Answer(OK)],
            ]);
            let ctx = context(&[scripted.address], "");
            assert_eq!(forward_one(&ctx, GET).await.status, 200);

            let forwarded = forward_one(&ctx, POST).await;
            assert_eq!(forwarded.status, 502);
            assert_eq!(forwarded.gave_up, Some(GaveUp::NotRetryable));
            assert_eq!(forwarded.attempts, 1);
            assert!(
                forwarded.response.starts_with("HTTP/1.1 502 Bad Gateway"),
                "{}",
                forwarded.response
            );
            assert_eq!(
                scripted.connections(),
                1,
                "the backend may have acted on it"
            );
            assert_eq!(scripted.requests(), 2);
        });
    }

    #[test]
    fn every_backend_failing_is_a_502_that_says_so() {
        on_both_drivers(|| async {
            let ctx = context(&[refusing(), refusing()], "");
            let forwarded = forward_one(&ctx, GET).await;
            assert_eq!(forwarded.status, 502);
            assert_eq!(forwarded.gave_up, Some(GaveUp::AllTried));
            assert!(
                forwarded.response.contains(
                    "upstream \"api\": all 2 backends failed; the last one refused the connection"
                ),
                "{}",
                forwarded.response
            );
        });
    }

    #[test]
    fn a_spent_retry_budget_answers_with_the_first_failure() {
        on_both_drivers(|| async {
            let closing = ScriptedBackend::start(vec![vec![Step::CloseAfterHead]]);
            let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
            let spent = "[upstream.api.retry]\nbudget_percent = 0\nbudget_min_per_second = 0\n";
            let ctx = context(&[closing.address, ok.address], spent);
            let forwarded = forward_one(&ctx, GET).await;
            assert_eq!(forwarded.status, 502);
            assert_eq!(forwarded.gave_up, Some(GaveUp::RetryBudget));
            assert!(forwarded
                .response
                .contains("not retried: the retry budget is exhausted"));
            assert_eq!(ok.connections(), 0);
        });
    }

    #[test]
    fn a_group_at_its_limit_answers_503_after_the_queue_timeout() {
        on_both_drivers(|| async {
            let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
            let ctx = context(
                &[ok.address],
                "max_connections = 1\nqueue_timeout = \"50ms\"\n",
            );
            let generation = ctx.generation();
            let busy = Attempt::begin(&generation.upstreams[0], 0);
            let forwarded = forward_one(&ctx, GET).await;
            assert_eq!(forwarded.status, 503);
            assert_eq!(forwarded.gave_up, Some(GaveUp::QueueTimeout));
            assert_eq!(forwarded.attempts, 0);
            drop(busy);
            assert_eq!(forward_one(&ctx, GET).await.status, 200);
        });
    }

    #[test]
    fn a_clean_exchange_pools_its_connection_for_the_next_request() {
        on_both_drivers(|| async {
            let scripted = ScriptedBackend::start(vec![vec![Step::Answer(OK), Step::Answer(OK)]]);
            let ctx = context(&[scripted.address], "");
            assert_eq!(forward_one(&ctx, GET).await.status, 200);
            assert_eq!(forward_one(&ctx, GET).await.status, 200);
            assert_eq!(scripted.connections(), 1);
            assert_eq!(backend(&ctx, 0).pool.idle_count(), 1);
        });
    }

    #[test]
    fn a_response_with_bytes_past_its_end_or_that_closes_is_not_pooled() {
        on_both_drivers(|| async {
            let overrun: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAY";
            let closes: &[u8] =
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            for (answer, protocol_errors) in [(overrun, 1), (closes, 0)] {
                let scripted = ScriptedBackend::start(vec![vec![Step::Answer(answer)]]);
                let ctx = context(&[scripted.address], "");
                let forwarded = forward_one(&ctx, GET).await;
                assert_eq!(forwarded.status, 200);
                assert!(
                    forwarded.response.ends_with("\r\n\r\nok"),
                    "{}",
                    forwarded.response
                );
                let backend = backend(&ctx, 0);
                assert_eq!(backend.pool.idle_count(), 0);
                assert_eq!(backend.stats.snapshot().protocol_errors, protocol_errors);
            }
        });
    }

    #[test]
    fn a_retired_backends_connection_is_closed_not_pooled() {
        on_both_drivers(|| async {
            let scripted = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
            let ctx = context(&[scripted.address], "");
            let (mut client, peer) = client_pair();
            peer.shutdown(Shutdown::Write).unwrap();
            // The request starts on the first generation; a reload then drops its backend.
            let mut request = pending(&ctx, GET.as_bytes(), client.peer);
            let first = ctx.generation();
            let other = format!("[upstream.api]\n{}", backends(&[refusing()]));
            ctx.commit(first.next(config("http", &other), 0), false);
            let retired = &first.upstreams[0].backends[0];
            assert!(retired.is_retired());

            let record = RequestRecord::new(Instant::now());
            forward_with_failover(&ctx, &mut client, &mut request, &record).await;
            assert_eq!(record.status.get(), 200, "it finishes on its generation");
            assert_eq!(retired.pool.idle_count(), 0);
        });
    }

    #[test]
    fn a_request_to_a_group_scaled_to_zero_waits_for_an_instance_and_runs_on_its_generation() {
        on_both_drivers(|| async {
            let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
            let ctx = Rc::new(WorkerContext::new(
                0,
                Generation::first(autoscaled("http", &[], ""), 0),
            ));
            let first = ctx.generation();
            let waiting = || {
                first.upstreams[0]
                    .state
                    .stats
                    .snapshot()
                    .waiting_for_instance
            };
            let request = monoio::spawn({
                let ctx = ctx.clone();
                async move { forward_one(&ctx, GET).await }
            });
            monoio::time::sleep(Duration::from_millis(30)).await;
            assert_eq!(waiting(), 1);
            ctx.commit(first.next(autoscaled("http", &[ok.address], ""), 0), true);
            let forwarded = request.await;
            assert_eq!((forwarded.status, forwarded.gave_up), (200, None));
            assert!(forwarded.response.starts_with("HTTP/1.1 200 OK"));
            assert_eq!(waiting(), 0);
            assert_eq!(ok.requests(), 1);
        });
    }

    #[test]
    fn a_group_scaled_to_zero_answers_503_no_instance_after_the_queue_timeout() {
        on_both_drivers(|| async {
            let config = autoscaled("http", &[], "queue_timeout = \"100ms\"\n");
            let ctx = WorkerContext::new(0, Generation::first(config, 0));
            let started = Instant::now();
            let forwarded = forward_one(&ctx, GET).await;
            assert!(started.elapsed() >= Duration::from_millis(100));
            assert_eq!(forwarded.status, 503);
            assert_eq!(forwarded.gave_up, Some(GaveUp::NoInstance));
            assert!(
                forwarded.response.contains(
                    "upstream \"api\" has no instance: scaled to zero and none became ready \
                     within 100ms"
                ),
                "{}",
                forwarded.response
            );
            let counts = ctx.generation().upstreams[0].state.stats.snapshot();
            assert_eq!(counts.waiting_for_instance, 0);
        });
    }
}
