//! What every answer the proxy makes itself after routing shares — a redirect
//! ([`super::redirect`]), a refusal such as a rate limit's 429 ([`super::refuse`]), an access
//! list's denial ([`super::deny`]): the request's [`OwnAnswer`] (its generation, listener, route,
//! id, summary and start), what becomes of a body it did not read ([`settle_body`]), and one
//! place that counts the answer on the listener and the route and writes its access-log line
//! ([`OwnAnswer::finish`]). Nothing of such a request is forwarded.

use super::client::{linger_close, ClientConn, LoggedClient};
use crate::http::RequestBody;
use crate::metrics::counters::Outcome;
use crate::net::io::write_all_within;
use crate::runtime::context::WorkerContext;
use crate::upstream::route::route_label;
use crate::upstream::Generation;
use std::rc::Rc;
use std::time::Instant;

/// A routed request the proxy answers itself.
#[derive(Debug)]
pub struct OwnAnswer {
    /// The generation it was routed on (its route's configuration and counters).
    pub generation: Rc<Generation>,
    pub listener: usize,
    pub route: usize,
    pub request_id: String,
    /// `METHOD target`, for the access log.
    pub summary: String,
    /// When its head was complete.
    pub started: Instant,
}

/// What the access log line says about the kind of answer.
#[derive(Debug, Clone, Copy)]
pub enum Why<'a> {
    /// A redirect route's answer, with the `Location` sent.
    Redirect { location: &'a [u8] },
    /// Refused by what `by` names (`rate_limit:NAME`).
    Refused { by: &'a str },
    /// Refused by an access list: answered 403, or reset.
    Denied { reset: bool },
}

/// What becomes of the request's body when the proxy answers without forwarding it: its length
/// when it is already all in the read buffer (dropped from there, and the connection may go on
/// as `keep_alive` says), else 0 and the connection must close (the rest of the body is never
/// read as the next request).
pub fn settle_body(client: &mut ClientConn, body: RequestBody, keep_alive: bool) -> (u64, bool) {
    match body {
        RequestBody::None => (0, keep_alive),
        RequestBody::Length(n) if n <= client.buf.len() as u64 => {
            client.buf.drain(..n as usize);
            (n, keep_alive)
        }
        RequestBody::Length(_) | RequestBody::Chunked => (0, false),
    }
}

impl OwnAnswer {
    /// Sends `out` (the whole answer, of `status`), counts and logs it, then — unless the
    /// connection goes on (`keep`) — closes the connection gracefully. `body`: the request body
    /// bytes dropped ([`settle_body`]). `true`: the connection goes on to its next request.
    pub async fn send(
        &self,
        ctx: &WorkerContext,
        client: &mut ClientConn,
        out: Vec<u8>,
        (status, body, keep): (u16, u64, bool),
        why: Why<'_>,
    ) -> bool {
        let len = out.len() as u64;
        let write_limit = self.generation.config.timeouts.client_idle;
        let written = write_all_within(&mut client.w, out, write_limit)
            .await
            .is_ok();
        let (status, sent) = if written { (status, len) } else { (0, 0) };
        self.finish(ctx, client.logged(), status, (sent, body), why);
        if !written {
            return false;
        }
        if !keep {
            linger_close(client).await;
        }
        keep
    }

    /// Counts the answer (`status` 0: none was sent) on the listener and the route, with the
    /// `sent` and `body` bytes, and logs it when `[log] access` is on.
    pub fn finish(
        &self,
        ctx: &WorkerContext,
        client: LoggedClient,
        status: u16,
        (sent, body): (u64, u64),
        why: Why<'_>,
    ) {
        let micros = self.started.elapsed().as_micros() as u64;
        let outcome = Outcome::of(status, micros);
        let listener = &ctx.listeners[self.listener];
        listener.count(&outcome);
        listener.add_received(body);
        listener.add_sent(sent);
        let generation = &self.generation;
        generation.routes[self.listener][self.route].count(&outcome);
        if !generation.config.log.access {
            return;
        }
        let (location, refused_by, gave_up) = match why {
            Why::Redirect { location } => (String::from_utf8_lossy(location), "-", "-"),
            Why::Refused { by } => ("-".into(), by, "-"),
            Why::Denied { reset: false } => ("-".into(), "-", "denied"),
            Why::Denied { reset: true } => ("-".into(), "-", "denied_reset"),
        };
        let config = &generation.config.listeners[self.listener];
        tracing::info!(
            target: "lbproxy::access",
            worker = ctx.id,
            request_id = %self.request_id,
            trace_id = %"-",
            client = %client,
            peer = %client.peer,
            request = %self.summary,
            rewritten = %"-",
            location = %location,
            listener = %config.name,
            route = %route_label(&config.routes[self.route]),
            upstream = %"-",
            backend = %"-",
            refused_by = %refused_by,
            status,
            bytes_sent = sent,
            bytes_received = body,
            duration_us = micros,
            retries = 0,
            gave_up,
            "{} {} {status} {micros}us",
            client.ip(),
            self.summary,
        );
    }
}
