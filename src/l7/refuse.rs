//! Requests the proxy refuses itself after routing them (a rate limit's 429, an access list's
//! 403): [`answer`] writes `HTTP/1.1 <status> <reason>`, the refusal's own fields (`Retry-After`,
//! `RateLimit`, …), `Content-Type: text/plain`, `Content-Length`, `X-Request-Id`, then its short
//! text body (the head alone for HEAD); counts the response on the listener and the route (as
//! its status class); and writes the access log line (upstream and backend `-`, and
//! `refused_by`, which says what refused it). Nothing is forwarded.
//!
//! The connection is kept when the client allows it and the request's body (if any) is already
//! all in the read buffer, which is then dropped; otherwise the answer says `Connection: close`
//! and the connection is closed after it (the body is never read into the next request) — as
//! for redirects ([`super::redirect`]).

use super::client::{linger_close, ClientConn};
use crate::http::{reason_phrase, RequestBody, Version};
use crate::metrics::counters::Outcome;
use crate::net::io::write_all_within;
use crate::runtime::context::WorkerContext;
use crate::upstream::route::route_label;
use crate::upstream::Generation;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// A routed request the proxy answers itself with a refusal.
#[derive(Debug)]
pub struct Refusal {
    pub generation: Rc<Generation>,
    pub listener: usize,
    pub route: usize,
    pub status: u16,
    /// The reason phrase (usually [`reason_phrase`] of the status).
    pub reason: &'static str,
    /// Fields written after the status line, as `Name: value`.
    pub fields: Vec<(&'static str, String)>,
    /// The body, `text/plain`.
    pub text: String,
    /// What refused it, for the access log (`rate_limit:NAME`, `access`).
    pub refused_by: String,
    pub request_id: String,
    /// `METHOD target`, for the access log.
    pub summary: String,
    /// A HEAD request: the head only.
    pub head_only: bool,
    pub keep_alive: bool,
    pub version: Version,
    pub body: RequestBody,
    /// When its head was complete.
    pub started: Instant,
}

/// The response head and body of `refusal`; `keep`: the connection goes on.
fn response(refusal: &Refusal, keep: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(192 + refusal.text.len());
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    let status = format!("HTTP/1.1 {} {}\r\n", refusal.status, refusal.reason);
    for (name, value) in &refusal.fields {
        line(name, value);
    }
    line("Content-Type", "text/plain; charset=utf-8");
    line("Content-Length", &refusal.text.len().to_string());
    line("X-Request-Id", &refusal.request_id);
    if !keep {
        line("Connection", "close");
    } else if refusal.version == Version::Http10 {
        line("Connection", "keep-alive");
    }
    let mut whole = status.into_bytes();
    whole.append(&mut out);
    whole.extend_from_slice(b"\r\n");
    if !refusal.head_only {
        whole.extend_from_slice(refusal.text.as_bytes());
    }
    whole
}

/// A refusal of `status` with the standard reason phrase.
pub fn standard_reason(status: u16) -> &'static str {
    reason_phrase(status)
}

/// Answers `refusal` on `client`. `true`: the connection goes on to its next request.
pub async fn answer(ctx: &WorkerContext, client: &mut ClientConn, refusal: Refusal) -> bool {
    let (body, keep) = match refusal.body {
        RequestBody::None => (0, refusal.keep_alive),
        RequestBody::Length(n) if n <= client.buf.len() as u64 => {
            client.buf.drain(..n as usize);
            (n, refusal.keep_alive)
        }
        RequestBody::Length(_) | RequestBody::Chunked => (0, false),
    };
    let out = response(&refusal, keep);
    let len = out.len() as u64;
    let write_limit = refusal.generation.config.timeouts.client_idle;
    let written = write_all_within(&mut client.w, out, write_limit)
        .await
        .is_ok();
    let status = if written { refusal.status } else { 0 };
    let sent = if written { len } else { 0 };
    finish(ctx, client.peer, &refusal, status, sent, body);
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
    client: SocketAddr,
    refusal: &Refusal,
    status: u16,
    sent: u64,
    body: u64,
) {
    let micros = refusal.started.elapsed().as_micros() as u64;
    let outcome = Outcome::of(status, micros);
    let listener = &ctx.listeners[refusal.listener];
    listener.count(&outcome);
    listener.add_received(body);
    listener.add_sent(sent);
    let generation = &refusal.generation;
    generation.routes[refusal.listener][refusal.route].count(&outcome);
    if !generation.config.log.access {
        return;
    }
    let config = &generation.config.listeners[refusal.listener];
    tracing::info!(
        target: "lbproxy::access",
        worker = ctx.id,
        request_id = %refusal.request_id,
        trace_id = %"-",
        client = %client,
        request = %refusal.summary,
        rewritten = %"-",
        listener = %config.name,
        route = %route_label(&config.routes[refusal.route]),
        upstream = %"-",
        backend = %"-",
        refused_by = %refusal.refused_by,
        status,
        bytes_sent = sent,
        bytes_received = body,
        duration_us = micros,
        retries = 0,
        gave_up = "-",
        "{} {} {status} {micros}us refused_by={}",
        client.ip(),
        refusal.summary,
        refusal.refused_by,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{valid, with};

    fn refusal(head_only: bool, version: Version) -> Refusal {
        let generation = Generation::first(std::sync::Arc::new(valid(&with(""))), 0);
        Refusal {
            generation: Rc::new(generation),
            listener: 0,
            route: 0,
            status: 429,
            reason: standard_reason(429),
            fields: vec![("Retry-After", "7".into())],
            text: "slow down\n".into(),
            refused_by: "rate_limit:x".into(),
            request_id: "r1".into(),
            summary: "GET /".into(),
            head_only,
            keep_alive: true,
            version,
            body: RequestBody::None,
            started: Instant::now(),
        }
    }

    #[test]
    fn the_head_says_what_the_fields_and_the_connection_do() {
        let kept = response(&refusal(false, Version::Http11), true);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\
             X-Request-Id: r1\r\n\r\nslow down\n"
        );
        let closed = response(&refusal(true, Version::Http10), false);
        assert_eq!(
            String::from_utf8(closed).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\
             X-Request-Id: r1\r\nConnection: close\r\n\r\n"
        );
        let old_kept = response(&refusal(false, Version::Http10), true);
        assert!(String::from_utf8(old_kept)
            .unwrap()
            .contains("\r\nConnection: keep-alive\r\n\r\n"));
    }
}
