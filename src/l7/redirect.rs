//! Redirect routes, answered by the proxy itself: the `Location` is expanded when the request is
//! prepared ([`location`]), then [`answer`] writes `HTTP/1.1 <status> <reason>`, `Location`,
//! `Content-Length: 0` and `X-Request-Id` (the same head for HEAD); it is counted on the
//! listener and the route (the route's response counters are its redirects) and logged with its
//! `location` ([`super::answered`]). Nothing is forwarded.
//!
//! The connection is kept when the client allows it and the request's body (if any) is already
//! all in the read buffer, which is then dropped; otherwise the answer says `Connection: close`
//! and the connection is closed after it (the body is never read into the next request).

use super::answered::{settle_body, OwnAnswer, Why};
use super::client::ClientConn;
use super::rewrite::{label_if_named, request_vars};
use crate::config::{Redirect, RouteConfig, Var};
use crate::http::{reason_phrase, Request, RequestBody, Version};
use crate::runtime::context::WorkerContext;
use std::net::IpAddr;

/// A request a redirect route matched, ready to be answered.
#[derive(Debug)]
pub struct Redirected {
    pub answer: OwnAnswer,
    pub status: u16,
    pub location: Vec<u8>,
    pub keep_alive: bool,
    pub version: Version,
    pub body: RequestBody,
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
    let (body, keep) = settle_body(client, redirected.body, redirected.keep_alive);
    let status = redirected.status;
    let mut out = Vec::with_capacity(160 + redirected.location.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nLocation: ");
    out.extend_from_slice(&redirected.location);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\nX-Request-Id: ");
    out.extend_from_slice(redirected.answer.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if redirected.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let why = Why::Redirect {
        location: &redirected.location,
    };
    (redirected.answer)
        .send(ctx, client, out, (status, body, keep), why)
        .await
}
