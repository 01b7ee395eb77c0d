//! Redirect routes, answered by the proxy itself: the `Location` is expanded when the request is
//! prepared ([`location`]), then [`answer`] writes `HTTP/1.1 <status> <reason>`, `Location`,
//! `Content-Length: 0` and `X-Request-Id` (the same head for HEAD), counts the response on the
//! listener and the route (the route's response counters are its redirects), and writes the
//! access log line (upstream and backend `-`). Nothing is forwarded.
//!
//! The connection is kept when the client allows it and the request's body (if any) is already
//! all in the read buffer, which is then dropped; otherwise the answer says `Connection: close`
//! and the connection is closed after it (the body is never read into the next request).

use super::client::LoggedClient;
use super::client::{linger_close, ClientConn};
use super::rewrite::{label_if_named, request_vars};
use crate::config::{Redirect, RouteConfig, Var};
use crate::http::{reason_phrase, Request, RequestBody, Version};
use crate::metrics::counters::Outcome;
use crate::net::io::write_all_within;
use crate::runtime::context::WorkerContext;
use crate::upstream::route::route_label;
use crate::upstream::Generation;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

/// A request a redirect route matched, ready to be answered.
#[derive(Debug)]
pub struct Redirected {
    pub generation: Rc<Generation>,
    pub listener: usize,
    pub route: usize,
    pub status: u16,
    pub location: Vec<u8>,
    pub request_id: String,
    /// `METHOD target`, for the access log.
    pub summary: String,
    pub keep_alive: bool,
    pub version: Version,
    pub body: RequestBody,
    /// When its head was complete.
    pub started: Instant,
}

/// The `Location` for `request`: the route's template with the request's variables and the
/// captures of the route's `path_regex`.
pub fn location(
    redirect: &Redirect,
    route: &RouteConfig,
    request: &Request<'_>,
    scheme: &str,
    client_ip: IpAddr,
    request_id: &str,
) -> Vec<u8> {
    let path = request.path();
    let label = label_if_named(&redirect.location, route);
    let vars = request_vars(request, path, scheme, client_ip, request_id, &label);
    let captures = (route.matches.path_regex.as_ref()).and_then(|pattern| pattern.0.captures(path));
    let vars = crate::config::TemplateVars {
        captures: captures.as_ref(),
        ..vars
    };
    let mut out = Vec::with_capacity(64 + path.len());
    redirect.location.expand(&vars, &mut out);
    out
}

/// The `Location` names `{host}` (an HTTP/1.0 request without `Host` cannot be redirected
/// there: it is answered 400).
pub fn names_host(redirect: &Redirect) -> bool {
    redirect.location.vars().any(|var| *var == Var::Host)
}

/// Answers `redirected` on `client`. `true`: the connection goes on to its next request.
pub async fn answer(ctx: &WorkerContext, client: &mut ClientConn, redirected: Redirected) -> bool {
    let (body, keep) = match redirected.body {
        RequestBody::None => (0, redirected.keep_alive),
        RequestBody::Length(n) if n <= client.buf.len() as u64 => {
            client.buf.drain(..n as usize);
            (n, redirected.keep_alive)
        }
        RequestBody::Length(_) | RequestBody::Chunked => (0, false),
    };
    let status = redirected.status;
    let mut out = Vec::with_capacity(160 + redirected.location.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nLocation: ");
    out.extend_from_slice(&redirected.location);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\nX-Request-Id: ");
    out.extend_from_slice(redirected.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if redirected.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let len = out.len() as u64;
    let generation = &redirected.generation;
    let write_limit = generation.config.timeouts.client_idle;
    let written = write_all_within(&mut client.w, out, write_limit)
        .await
        .is_ok();
    let status = if written { status } else { 0 };
    let sent = if written { len } else { 0 };
    finish(ctx, client.logged(), &redirected, status, sent, body);
    if !written {
        return false;
    }
    if !keep {
        linger_close(client).await;
    }
    keep
}

/// Counts the answer on the listener and the route, and logs it when `[log] access` is on.
fn finish(
    ctx: &WorkerContext,
    client: LoggedClient,
    redirected: &Redirected,
    status: u16,
    sent: u64,
    body: u64,
) {
    let micros = redirected.started.elapsed().as_micros() as u64;
    let outcome = Outcome::of(status, micros);
    let listener = &ctx.listeners[redirected.listener];
    listener.count(&outcome);
    listener.add_received(body);
    listener.add_sent(sent);
    let generation = &redirected.generation;
    generation.routes[redirected.listener][redirected.route].count(&outcome);
    if !generation.config.log.access {
        return;
    }
    let config = &generation.config.listeners[redirected.listener];
    tracing::info!(
        target: "lbproxy::access",
        worker = ctx.id,
        request_id = %redirected.request_id,
        trace_id = %"-",
        client = %client,
        peer = %client.peer,
        request = %redirected.summary,
        rewritten = %"-",
        location = %String::from_utf8_lossy(&redirected.location),
        listener = %config.name,
        route = %route_label(&config.routes[redirected.route]),
        upstream = %"-",
        backend = %"-",
        status,
        bytes_sent = sent,
        bytes_received = body,
        duration_us = micros,
        retries = 0,
        gave_up = "-",
        "{} {} {status} {micros}us",
        client.ip(),
        redirected.summary,
    );
}
