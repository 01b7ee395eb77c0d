//! Request heads from clients: `lbproxy::http::parse_request`, then the head it forwards.
//!
//! Input: one flags byte, one cut byte, then the bytes a client sent.
//! - flags bit 0: small limits (head 256 B, target 64 B, 8 fields) instead of the defaults, so the
//!   431 and 414 paths are reached by short inputs;
//! - bit 1: the upstream connection is kept alive; bit 2: an IPv6 client; bit 3: https.
//!
//! Beyond "never panics", it asserts:
//! - a complete head lies within the input, and parsing `input[..head_len]` gives the same head;
//! - reads cut anywhere give the same verdict: a prefix of a valid head is incomplete, and an
//!   error on a prefix is the error of the whole input (the proxy parses again after each read);
//! - a second parser reads the same: the head `write_upstream_head` builds parses, with the same
//!   parser, to the same method, path, query, Host and body framing, as HTTP/1.1, with the
//!   proxy's own request id, traceparent and keep-alive, nothing left over.

#![no_main]

use lbproxy::http::{
    parse_request, ForwardContext, HeadLimits, Method, Request, RequestError, TracePrefix,
    Traceparent, Version,
};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

/// The defaults of `[limits]` (docs/config.md).
const DEFAULT: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_uri_bytes: 8 * 1024,
    max_headers: 100,
};

const SMALL: HeadLimits = HeadLimits {
    max_head_bytes: 256,
    max_uri_bytes: 64,
    max_headers: 8,
};

/// Room for whatever the proxy adds to a head that fitted `DEFAULT`.
const REPARSE: HeadLimits = HeadLimits {
    max_head_bytes: 64 * 1024,
    max_uri_bytes: 64 * 1024,
    max_headers: 256,
};

fuzz_target!(|data: &[u8]| {
    let [flags, cut, ref input @ ..] = *data else {
        return;
    };
    let limits = if flags & 1 != 0 { SMALL } else { DEFAULT };
    let whole = parse_request(input, &limits);
    if let Ok(Some(request)) = &whole {
        assert!(request.head_len <= input.len().min(limits.max_head_bytes));
        assert!(request.target.len() <= limits.max_uri_bytes);
        let head = &input[..request.head_len];
        let again = parse_request(head, &limits)
            .expect("the head alone parses")
            .expect("the head alone is complete");
        assert_eq!(summary(&again), summary(request));
        check_forwarded(request, flags);
    }
    check_prefix(input, &limits, usize::from(cut) * input.len() / 256, &whole);
});

/// `input[..cut]`, what an earlier read held, must not contradict the verdict on all of it.
fn check_prefix(
    input: &[u8],
    limits: &HeadLimits,
    cut: usize,
    whole: &Result<Option<Request<'_>>, RequestError>,
) {
    let prefix = parse_request(&input[..cut], limits);
    match (&prefix, whole) {
        (Ok(None), _) => {}
        (Ok(Some(early)), Ok(Some(late))) => assert_eq!(summary(early), summary(late)),
        (Err(early), Err(late)) => assert_eq!(early, late, "cut at {cut}"),
        _ => panic!(
            "the first {cut} bytes give {:?}, all {} give {:?}",
            prefix.as_ref().map(|r| r.as_ref().map(summary)),
            input.len(),
            whole.as_ref().map(|r| r.as_ref().map(summary)),
        ),
    }
}

/// The head the proxy sends upstream, parsed again.
fn check_forwarded(request: &Request<'_>, flags: u8) {
    let client_ip: IpAddr = if flags & 4 != 0 {
        "2001:db8::7".parse().unwrap()
    } else {
        "192.0.2.7".parse().unwrap()
    };
    let traceparent = Traceparent::start(&TracePrefix::new(7), 1, 2);
    let keep_alive = flags & 2 != 0;
    let ctx = ForwardContext {
        client_ip,
        proto: if flags & 8 != 0 { "https" } else { "http" },
        request_id: "fuzz-request-1",
        traceparent: &traceparent,
        upstream_keep_alive: keep_alive,
        target: None,
        edits: None,
        trust_forwarded: true,
        client_cert: None,
    };
    let mut out = Vec::new();
    request.write_upstream_head(&ctx, &mut out);
    let reparsed = parse_request(&out, &REPARSE);
    if request.host.is_none() {
        // HTTP/1.0 without Host goes upstream with an empty one (docs/http.md), which this
        // parser, stricter than the backends it serves, refuses from a client.
        assert_eq!(
            reparsed.map(|r| r.is_some()),
            Err(RequestError::BadRequest("invalid Host")),
            "{}",
            String::from_utf8_lossy(&out)
        );
        return;
    }
    let upstream = match reparsed {
        Ok(Some(upstream)) => upstream,
        other => panic!(
            "the forwarded head does not parse: {:?}\n{}",
            other.map(|r| r.map(|r| summary(&r))),
            String::from_utf8_lossy(&out)
        ),
    };
    let text = String::from_utf8_lossy(&out);
    assert_eq!(upstream.head_len, out.len(), "{text}");
    assert_eq!(upstream.method, request.method, "{text}");
    assert_eq!(upstream.method_str, request.method_str, "{text}");
    assert_eq!(upstream.version, Version::Http11, "{text}");
    assert_eq!(upstream.path(), request.path(), "{text}");
    assert_eq!(query(upstream.target), query(request.target), "{text}");
    assert_eq!(upstream.host, request.host, "{text}");
    assert_eq!(upstream.body, request.body, "{text}");
    assert_eq!(upstream.upgrade, request.upgrade, "{text}");
    assert_eq!(upstream.keep_alive, keep_alive, "{text}");
    assert!(!upstream.expect_continue, "{text}");
    assert_eq!(upstream.request_id, Some(ctx.request_id), "{text}");
    assert_eq!(upstream.traceparent, Some(traceparent.as_bytes()), "{text}");
    if request.method == Method::Connect {
        assert_eq!(upstream.target, request.target, "{text}");
    }
}

/// The query of a target, if any.
fn query(target: &str) -> Option<&str> {
    target.split_once('?').map(|(_, query)| query)
}

/// What a head decides, for comparing two parses.
fn summary<'a>(r: &Request<'a>) -> impl std::fmt::Debug + PartialEq + 'a {
    (
        (r.method, r.method_str, r.target, r.version, r.host, r.body),
        (r.keep_alive, r.expect_continue, r.upgrade, r.request_id),
        (r.traceparent, r.head_len),
    )
}
