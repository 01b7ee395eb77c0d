//! One client connection: read request heads (with the header and idle timeouts), route them,
//! refuse what must be refused (what an access list refuses: [`super::deny`]), answer what a
//! redirect route matched ([`super::redirect`]), and hand the rest to
//! [`super::exchange::forward`], one request at a time, so pipelined requests are answered in
//! order. A route that rewrites the path has its target built here ([`super::rewrite`]). A route
//! that names rate limits has them checked here, after routing (`policy/rate_limit.rs`); a
//! refused request is answered 429 by [`super::refuse`].

use super::answered::OwnAnswer;
use super::client::{respond_and_close, ClientConn, PendingRequest};
use super::deny::{self, Denied};
use super::exchange;
use super::redirect::{self, Redirected};
use super::refuse::{self, Refusal};
use super::rewrite;
use super::rule_vars::{split_target, RequestParts, RuleVars};
use crate::config::RouteAction;
use crate::http::compress::{self, Choice};
use crate::http::{
    parse_request, ClientCertificate, ForwardContext, HeadLimits, Method, RequestBody, Traceparent,
};
use crate::net::io::{read_append, read_unless_quiet, wait_readable, QuietReadCanceller};
use crate::net::stream::{StreamReader, StreamWriter};
use crate::policy::origin::ClientOrigin;
use crate::policy::rate_limit::Limited;
use crate::runtime::context::WorkerContext;
use crate::upstream::route::find_http_route;
use crate::upstream::select;
use crate::upstream::Generation;
use monoio::io::OwnedReadHalf;
use monoio::net::TcpStream;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// First read buffer for a client connection; grows up to `limits.max_header_bytes` for big heads.
const INITIAL_CLIENT_BUFFER: usize = 4096;
/// How long a kept-alive connection waits for its next request holding a read buffer; after
/// that it is parked without one ([`between_requests`]). Clients that send their next request
/// sooner (every busy one) never pay for parking; an idle one costs a cancelled read and a
/// readiness wait, once.
const PARK_AFTER: Duration = Duration::from_millis(500);
/// How long a drain waits for the first byte of a connection accepted just before it.
const FIRST_REQUEST_GRACE_ON_DRAIN: Duration = Duration::from_secs(1);

/// A request read and routed: to forward, or answered by the proxy.
enum Prepared {
    Forward(PendingRequest),
    Redirect(Box<Redirected>),
    /// Answered by the proxy with a refusal (a rate limit's 429).
    Refuse(Box<Refusal>),
    /// An access list refused it: a 403 or a reset, then the connection closes.
    Denied(Box<Denied>),
}

/// What [`prepare`] needs to know of the connection besides the head.
#[derive(Debug, Clone, Copy)]
struct FromClient<'a> {
    /// Who sent the request (the PROXY header's source, else the peer) and whether its forwarded
    /// fields are believed (then its listener's access list is checked per request).
    origin: ClientOrigin,
    /// The request's client address ([`request_ip`]): what access lists, rate limits, hashing,
    /// `{client_ip}` and logs use.
    request_ip: IpAddr,
    /// The verified client certificate (mTLS), for the backend.
    client_cert: Option<&'a ClientCertificate>,
}

/// Why reading the next request ended the connection instead.
enum Stop {
    /// Client closed, idle timeout, or drain: close without a response.
    Close,
    /// Respond with an error, then close.
    Reject {
        status: u16,
        detail: String,
        request_id: String,
    },
}

/// Serves requests on an accepted connection (for https, after its handshake) until it closes.
pub async fn serve(
    ctx: &WorkerContext,
    listener: usize,
    (r, w): (StreamReader, StreamWriter),
    peer: SocketAddr,
    origin: ClientOrigin,
    fd: RawFd,
    client_cert: Option<Box<ClientCertificate>>,
) {
    let mut client = ClientConn {
        r,
        w,
        buf: Vec::with_capacity(INITIAL_CLIENT_BUFFER),
        peer,
        origin,
        request_ip: origin.addr.ip(),
        fd,
        client_cert,
        quiet_read: QuietReadCanceller::default(),
    };
    let mut first = true;
    loop {
        let mut request = match next_request(ctx, &mut client, listener, first).await {
            Ok(Prepared::Forward(request)) => request,
            Ok(Prepared::Redirect(redirected)) => {
                first = false;
                if !redirect::answer(ctx, &mut client, *redirected).await
                    || ctx.drain.is_triggered()
                {
                    return;
                }
                continue;
            }
            Ok(Prepared::Refuse(refusal)) => {
                first = false;
                if !refuse::answer(ctx, &mut client, *refusal).await || ctx.drain.is_triggered() {
                    return;
                }
                continue;
            }
            Ok(Prepared::Denied(denied)) => {
                deny::answer(ctx, &mut client, *denied).await;
                return;
            }
            Err(Stop::Close) => return,
            Err(Stop::Reject {
                status,
                detail,
                request_id,
            }) => {
                tracing::warn!(
                    worker = ctx.id,
                    request_id = %request_id,
                    client = %client.peer,
                    status,
                    "refused request: {detail}"
                );
                let write_limit = ctx.generation().config.timeouts.client_idle;
                let written = respond_and_close(
                    &mut client,
                    write_limit,
                    status,
                    &detail,
                    &request_id,
                    false,
                )
                .await;
                let stats = &ctx.listeners[listener];
                stats.count_response(status);
                stats.add_sent(written as u64);
                return;
            }
        };
        first = false;
        // Boxed: the exchange's state machine is the largest part of this task, and a task is
        // allocated at its largest for as long as the connection lives. Boxed, an idle keep-alive
        // connection holds only what waiting for the next head needs (bench/: idle-connections).
        if !Box::pin(exchange::forward(ctx, &mut client, &mut request)).await {
            return;
        }
        if ctx.drain.is_triggered() {
            return;
        }
    }
}

/// Reads until a complete request head is buffered, then validates and routes it.
async fn next_request(
    ctx: &WorkerContext,
    client: &mut ClientConn,
    listener: usize,
    first: bool,
) -> Result<Prepared, Stop> {
    // Limits and timeouts as configured when the head starts; the request then runs on the
    // generation current when its head is complete (an idle keep-alive connection must not pin an
    // old configuration).
    let (limits, timeouts) = {
        let config = &ctx.generation().config;
        let limits = HeadLimits {
            max_head_bytes: config.limits.max_header_bytes,
            max_uri_bytes: config.limits.max_uri_bytes,
            max_headers: config.limits.max_headers,
        };
        (limits, config.timeouts.clone())
    };
    let start = Instant::now();
    // A new connection must deliver its first head within the header timeout; a kept-alive one
    // may idle for `client_idle`, and once a byte of the next head arrives, the header timeout runs.
    let idle_deadline = start
        + if first {
            timeouts.client_header
        } else {
            timeouts.client_idle
        };
    let mut head_deadline =
        (first || !client.buf.is_empty()).then(|| start + timeouts.client_header);

    loop {
        if !client.buf.is_empty() {
            match parse_request(&client.buf, &limits) {
                Ok(Some(request)) => {
                    let head_len = request.head_len;
                    ctx.listeners[listener].add_received(head_len as u64);
                    let generation = ctx.generation();
                    client.request_ip = request_ip(&generation, listener, client.origin, &request);
                    let from = FromClient {
                        origin: client.origin,
                        request_ip: client.request_ip,
                        client_cert: client.client_cert.as_deref(),
                    };
                    let pending = prepare(ctx, generation, from, listener, request);
                    client.buf.drain(..head_len);
                    return pending;
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Stop::Reject {
                        status: e.status(),
                        detail: e.to_string(),
                        request_id: ctx.request_ids.next_id(),
                    })
                }
            }
            head_deadline.get_or_insert(Instant::now() + timeouts.client_header);
        }

        let waiting_for_first_byte = client.buf.is_empty();
        let deadline = head_deadline.unwrap_or(idle_deadline);
        let park_at = Instant::now() + PARK_AFTER;
        if waiting_for_first_byte && !first && park_at < deadline {
            if let StreamReader::Plain(r) = &mut client.r {
                let buf = std::mem::take(&mut client.buf);
                let cancel = &mut client.quiet_read;
                match between_requests(ctx, r, buf, park_at, idle_deadline, cancel).await {
                    Between::Read(buf) => client.buf = buf,
                    Between::Woken => {}
                    Between::Closed => return Err(Stop::Close),
                }
                continue;
            }
        }
        let buf = std::mem::take(&mut client.buf);
        let read = read_append(&mut client.r, buf, INITIAL_CLIENT_BUFFER);
        let outcome = if waiting_for_first_byte {
            // No byte of a head yet: a drain closes the connection (a new one after a grace).
            monoio::select! {
                outcome = monoio::time::timeout_at(deadline.into(), read) => outcome,
                _ = closed_by_drain(ctx, first) => return Err(Stop::Close),
            }
        } else {
            monoio::time::timeout_at(deadline.into(), read).await
        };
        match outcome {
            Err(_elapsed) if head_deadline.is_some() => {
                return Err(Stop::Reject {
                    status: 408,
                    detail: format!(
                        "the request head did not arrive within {:?}",
                        timeouts.client_header
                    ),
                    request_id: ctx.request_ids.next_id(),
                })
            }
            Err(_elapsed) => return Err(Stop::Close),
            Ok((Ok(0) | Err(_), _)) => return Err(Stop::Close),
            Ok((Ok(_), buf)) => client.buf = buf,
        }
    }
}

/// What waiting between two requests gave.
enum Between {
    /// Bytes of the next request, in the buffer.
    Read(Vec<u8>),
    /// The connection was parked (its buffer freed) and has something to read now.
    Woken,
    /// The client closed, failed, stayed idle for `client_idle`, or the worker drains.
    Closed,
}

/// Waits for the next request on a kept-alive plain connection with nothing buffered. A client
/// quiet for [`PARK_AFTER`] has its connection parked: the read is cancelled, the read buffer
/// freed, and the socket watched for readability without one until `idle_deadline` (an idle
/// keep-alive connection then costs its task and socket only; bench/: idle-connections). TLS
/// connections are not parked: their reader keeps rustls' buffers anyway.
async fn between_requests(
    ctx: &WorkerContext,
    r: &mut OwnedReadHalf<TcpStream>,
    buf: Vec<u8>,
    park_at: Instant,
    idle_deadline: Instant,
    cancel: &mut QuietReadCanceller,
) -> Between {
    let read = read_unless_quiet(r, buf, INITIAL_CLIENT_BUFFER, park_at, cancel);
    let (result, buf) = monoio::select! {
        outcome = read => outcome,
        _ = closed_by_drain(ctx, false) => return Between::Closed,
    };
    match result {
        Some(Ok(n)) if n > 0 => return Between::Read(buf),
        Some(_) => return Between::Closed,
        None => drop(buf),
    }
    let readable = monoio::time::timeout_at(idle_deadline.into(), wait_readable(r));
    monoio::select! {
        outcome = readable => match outcome {
            Ok(Ok(())) => Between::Woken,
            Ok(Err(_)) | Err(_) => Between::Closed,
        },
        _ = closed_by_drain(ctx, false) => Between::Closed,
    }
}

/// The client address of `request` on a connection from `origin`: the origin's, or — when the
/// origin is a trusted proxy — the one its `X-Forwarded-For` / `Forwarded` chain names (one
/// branch for a listener without `trusted_proxies`).
fn request_ip(
    generation: &Generation,
    listener: usize,
    origin: ClientOrigin,
    request: &crate::http::Request<'_>,
) -> IpAddr {
    if !origin.trust_forwarded {
        return origin.addr.ip();
    }
    let trusted = &generation.config.listeners[listener].policy.trusted_proxies;
    request.client_address(origin.addr.ip(), trusted)
}

/// Routes a parsed head, applies the body limit, and builds the head for the backend (or, for a
/// redirect route, the answer). `from`: who sent the request, its client address
/// ([`request_ip`]) and its verified client certificate.
fn prepare(
    ctx: &WorkerContext,
    generation: Rc<Generation>,
    from: FromClient<'_>,
    listener: usize,
    request: crate::http::Request<'_>,
) -> Result<Prepared, Stop> {
    let client_ip = from.request_ip;
    let config = &generation.config;
    let request_id = request
        .request_id
        .map_or_else(|| ctx.request_ids.next_id(), str::to_owned);
    let reject = |status, detail: String, request_id: &str| Stop::Reject {
        status,
        detail,
        request_id: request_id.to_owned(),
    };

    let routes = &config.listeners[listener].routes;
    let proto = config.listeners[listener].protocol.scheme();
    let Some(route) = find_http_route(routes, &request) else {
        let detail = format!(
            "no route for host {:?} and path {:?}",
            request.host.unwrap_or(""),
            request.path()
        );
        return Err(reject(404, detail, &request_id));
    };
    // The one branch a route without an access list pays (on a connection not from a trusted
    // proxy).
    if routes[route].access.is_some() || from.origin.trust_forwarded {
        let refused = deny::check(
            config,
            listener,
            &routes[route],
            client_ip,
            from.origin.trust_forwarded,
        );
        if let Some((action, list)) = refused {
            return Ok(Prepared::Denied(Box::new(Denied {
                answer: own_answer(generation, listener, route, request_id, &request),
                action,
                list,
                client_ip,
                head_only: request.method == Method::Head,
            })));
        }
    }
    if request.method == Method::Connect {
        // A tunnel the proxy cannot see into: only where a route asks for it. Relayed as a plain
        // request, a backend's 2xx would make the client believe a tunnel is open while the
        // proxy goes on reading its bytes as HTTP.
        if !routes[route].allow_connect {
            let detail = format!(
                "tunnels (CONNECT {}) are not enabled on this route",
                request.target
            );
            return Err(reject(501, detail, &request_id));
        }
        if request.body != RequestBody::None {
            let detail = "a CONNECT request has no content (RFC 9110 §9.3.6)".to_owned();
            return Err(reject(400, detail, &request_id));
        }
    }
    let route_config = &routes[route];
    if let (RequestBody::Length(length), Some(max)) =
        (request.body, route_config.settings.max_body_bytes)
    {
        if length > max {
            let detail =
                format!("request body of {length} bytes is larger than the limit of {max} bytes");
            return Err(reject(413, detail, &request_id));
        }
    }
    // The one branch a route without rate limits pays.
    if !route_config.rate_limits.is_empty() {
        if let Some(limited) =
            rate_limited(ctx, &generation, &request, client_ip, (listener, route))
        {
            let answer = own_answer(generation, listener, route, request_id, &request);
            let refusal = too_many_requests(answer, &limited, &request);
            return Ok(Prepared::Refuse(Box::new(refusal)));
        }
    }
    let upstream = match &routes[route].action {
        RouteAction::Forward(upstream) => *upstream,
        RouteAction::Redirect(redirect) => {
            if request.host.is_none() && redirect::names_host(redirect) {
                let detail = "the redirect names the request's host, and it sent none".to_owned();
                return Err(reject(400, detail, &request_id));
            }
            let location = redirect::location(
                redirect,
                &routes[route],
                &request,
                proto,
                client_ip,
                &request_id,
            );
            return Ok(Prepared::Redirect(Box::new(Redirected {
                status: redirect.status,
                location,
                keep_alive: request.keep_alive,
                version: request.version,
                body: request.body,
                answer: own_answer(generation, listener, route, request_id, &request),
            })));
        }
    };
    let traceparent = match request.traceparent {
        Some(incoming) => Traceparent::from_valid(incoming),
        None => ctx.trace_ids.start(),
    };
    let mut upstream_head = Vec::with_capacity(request.head_len + 256);
    // The one branch a route without a rewrite pays.
    let target = match &routes[route].rewrite {
        Some(rewrite) if request.has_path() => Some(rewrite::upstream_target(
            rewrite,
            &routes[route],
            &request,
            proto,
            client_ip,
            &request_id,
        )),
        _ => None,
    };
    // The route's request header rules: their values are gathered only for a route with some.
    let rules = &route_config.headers.request;
    let rule_vars = (!rules.is_empty()).then(|| {
        let (_, query) = split_target(request.target);
        let parts = RequestParts {
            scheme: proto,
            host: request.host,
            path: request.path(),
            query,
            method: request.method_str,
            client_ip,
            request_id: &request_id,
        };
        RuleVars::new(route_config, rules, parts, None)
    });
    let template_vars = rule_vars.as_ref().map(RuleVars::vars);
    let forward = ForwardContext {
        // The hop appended to a trusted chain is the one that sent this request.
        client_ip: from.origin.addr.ip(),
        proto,
        request_id: &request_id,
        traceparent: &traceparent,
        upstream_keep_alive: config.upstreams[upstream].pool.max_idle_per_backend > 0,
        target: target.as_deref(),
        edits: template_vars.as_ref().map(|vars| (rules, vars)),
        trust_forwarded: from.origin.trust_forwarded,
        client_cert: from.client_cert,
    };
    request.write_upstream_head(&forward, &mut upstream_head);
    let summary = summary(&request);
    let keys = select::request_keys(&generation.upstreams[upstream], &request, client_ip);
    let compress = if routes[route].compress {
        let offered = &config.compression.algorithms;
        match compress::negotiate(request.header_values("accept-encoding"), offered) {
            Some(encoding) => Choice::With(encoding),
            None => Choice::Identity,
        }
    } else {
        Choice::Off
    };
    let pending = PendingRequest {
        generation,
        method: request.method,
        version: request.version,
        body: request.body,
        keep_alive: request.keep_alive,
        expect_continue: request.expect_continue,
        continue_sent: false,
        upgrade: request.upgrade.is_some(),
        // Allocated at its length: no reallocation.
        summary: summary.into_boxed_str(),
        request_id,
        // Lossless: a configuration cannot hold 65536 listeners (one port each) or 2^32 routes.
        listener: listener as u16,
        route: route as u32,
        upstream: upstream as u32,
        keys,
        upstream_head,
        compress,
    };
    Ok(Prepared::Forward(pending))
}

/// Checks the request against its route's rate limits: the first that refuses it. Out of line:
/// `prepare` stays small for the routes without limits.
#[inline(never)]
fn rate_limited(
    ctx: &WorkerContext,
    generation: &Generation,
    request: &crate::http::Request<'_>,
    client_ip: IpAddr,
    (listener, route): (usize, usize),
) -> Option<Limited> {
    let indexes = &generation.config.listeners[listener].routes[route].rate_limits;
    ctx.rate_limits.borrow_mut().check(
        indexes,
        request,
        client_ip,
        (listener, route),
        &ctx.listeners[listener],
    )
}

/// The 429 for a request `limited` refused: `Retry-After`, and the IETF draft's
/// `RateLimit-Policy` and `RateLimit` fields.
fn too_many_requests(
    answer: OwnAnswer,
    limited: &Limited,
    request: &crate::http::Request<'_>,
) -> Refusal {
    let name = &limited.name;
    let fields = vec![
        ("Retry-After", limited.retry_after_secs.to_string()),
        (
            "RateLimit-Policy",
            format!("\"{name}\";q={};w={}", limited.quota, limited.window_secs),
        ),
        (
            "RateLimit",
            format!("\"{name}\";r=0;t={}", limited.reset_secs),
        ),
    ];
    Refusal {
        answer,
        status: 429,
        reason: crate::http::reason_phrase(429),
        fields,
        text: format!(
            "too many requests (rate limit {name}): retry after {} s\n",
            limited.retry_after_secs
        ),
        refused_by: format!("rate_limit:{name}"),
        head_only: request.method == Method::Head,
        keep_alive: request.keep_alive,
        version: request.version,
        body: request.body,
    }
}

/// What a request the proxy answers itself is counted and logged as.
fn own_answer(
    generation: Rc<Generation>,
    listener: usize,
    route: usize,
    request_id: String,
    request: &crate::http::Request<'_>,
) -> OwnAnswer {
    OwnAnswer {
        generation,
        listener,
        route,
        request_id,
        summary: summary(request),
        started: Instant::now(),
    }
}

/// `METHOD target`, for log lines; built without `format!`, which costs several times the copy
/// (bench/ profile).
fn summary(request: &crate::http::Request<'_>) -> String {
    let mut summary = String::with_capacity(request.method_str.len() + 1 + request.target.len());
    summary.push_str(request.method_str);
    summary.push(' ');
    summary.push_str(request.target);
    summary
}

/// Resolves when a drain should close a connection that has not sent a byte of its next head:
/// at once for a kept-alive connection between requests, after [`FIRST_REQUEST_GRACE_ON_DRAIN`]
/// for a connection that has not sent its first request yet — its client connected to send one,
/// and it was accepted before the drain (with socket activation, `systemctl restart` must not
/// turn such a connection into an error).
async fn closed_by_drain(ctx: &WorkerContext, first: bool) {
    ctx.drain.triggered().await;
    if first {
        monoio::time::sleep(FIRST_REQUEST_GRACE_ON_DRAIN).await;
    }
}

/// A request and a client connection as [`serve`] would have them, for the exchange's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// `head` parsed and prepared as a request of listener 0 from `peer`.
    pub(crate) fn pending(ctx: &WorkerContext, head: &[u8], peer: SocketAddr) -> PendingRequest {
        let limits = HeadLimits {
            max_head_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
        };
        let request = parse_request(head, &limits)
            .expect("a valid head")
            .expect("a complete head");
        let from = FromClient {
            origin: ClientOrigin::peer(peer),
            request_ip: peer.ip(),
            client_cert: None,
        };
        match prepare(ctx, ctx.generation(), from, 0, request) {
            Ok(Prepared::Forward(pending)) => pending,
            Ok(Prepared::Redirect(_) | Prepared::Refuse(_) | Prepared::Denied(_)) | Err(_) => {
                panic!("refused: {}", String::from_utf8_lossy(head))
            }
        }
    }

    /// A client connection on loopback: the proxy's side, and the client's (a std socket).
    pub(crate) fn client_pair() -> (ClientConn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let tcp = TcpStream::from_std(accepted).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        let (r, w) = crate::net::stream::plain(tcp);
        let conn = ClientConn {
            r,
            w,
            buf: Vec::new(),
            peer,
            origin: ClientOrigin::peer(peer),
            request_ip: peer.ip(),
            fd,
            client_cert: None,
            quiet_read: QuietReadCanceller::default(),
        };
        (conn, client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_request_stays_small_enough_to_move_inline() {
        // Moved a few times per request; past 128 bytes the compiler calls memcpy for each move.
        assert!(
            std::mem::size_of::<PendingRequest>() <= 128,
            "PendingRequest is {} bytes",
            std::mem::size_of::<PendingRequest>()
        );
    }
}
