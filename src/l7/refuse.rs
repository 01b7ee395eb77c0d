//! Requests the proxy refuses itself after routing them (a rate limit's 429, an access list's
//! 403): [`answer`] writes `HTTP/1.1 <status> <reason>`, the refusal's own fields (`Retry-After`,
//! `RateLimit`, …), `Content-Type: text/plain`, `Content-Length`, `X-Request-Id`, then its short
//! text body (the head alone for HEAD). It is counted on the listener and the route (as its
//! status class) and logged with `refused_by`, which says what refused it
//! ([`super::answered`]). Nothing is forwarded.
//!
//! The connection is kept when the client allows it and the request's body (if any) is already
//! all in the read buffer, which is then dropped; otherwise the answer says `Connection: close`
//! and the connection is closed after it (the body is never read into the next request) — as
//! for redirects ([`super::redirect`]).

use super::answered::{settle_body, OwnAnswer, Why};
use super::client::ClientConn;
use crate::http::{RequestBody, Version};
use crate::runtime::context::WorkerContext;

/// A routed request the proxy answers itself with a refusal.
#[derive(Debug)]
pub struct Refusal {
    pub answer: OwnAnswer,
    pub status: u16,
    /// The reason phrase (usually `http::reason_phrase` of the status).
    pub reason: &'static str,
    /// Fields written after the status line, as `Name: value`.
    pub fields: Vec<(&'static str, String)>,
    /// The body, `text/plain`.
    pub text: String,
    /// What refused it, for the access log (`rate_limit:NAME`).
    pub refused_by: String,
    /// A HEAD request: the head only.
    pub head_only: bool,
    pub keep_alive: bool,
    pub version: Version,
    pub body: RequestBody,
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
    line("X-Request-Id", &refusal.answer.request_id);
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

/// Answers `refusal` on `client`. `true`: the connection goes on to its next request.
pub async fn answer(ctx: &WorkerContext, client: &mut ClientConn, refusal: Refusal) -> bool {
    let (body, keep) = settle_body(client, refusal.body, refusal.keep_alive);
    let out = response(&refusal, keep);
    let why = Why::Refused {
        by: &refusal.refused_by,
    };
    (refusal.answer)
        .send(ctx, client, out, (refusal.status, body, keep), why)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{valid, with};
    use crate::http::reason_phrase;
    use crate::upstream::Generation;
    use std::rc::Rc;
    use std::time::Instant;

    fn refusal(head_only: bool, version: Version) -> Refusal {
        let generation = Generation::first(std::sync::Arc::new(valid(&with(""))), 0);
        Refusal {
            answer: OwnAnswer {
                generation: Rc::new(generation),
                listener: 0,
                route: 0,
                request_id: "r1".into(),
                summary: "GET /".into(),
                started: Instant::now(),
            },
            status: 429,
            reason: reason_phrase(429),
            fields: vec![("Retry-After", "7".into())],
            text: "slow down\n".into(),
            refused_by: "rate_limit:x".into(),
            head_only,
            keep_alive: true,
            version,
            body: RequestBody::None,
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
