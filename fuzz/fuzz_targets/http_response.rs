//! Response heads from backends: `lbproxy::http::parse_response`, then the head it relays.
//!
//! Input: one flags byte, one cut byte, then the bytes a backend sent.
//! - flags bits 0-1: the request method (GET, HEAD, CONNECT, POST);
//! - bit 2: an HTTP/1.0 client; bit 3: the client connection is kept alive; bit 4: a 256-byte
//!   head limit instead of 16 KiB.
//!
//! Beyond "never panics", it asserts:
//! - a complete head lies within the input, and parsing `input[..head_len]` gives the same head;
//! - reads cut anywhere give the same verdict (a prefix of a valid head is incomplete; an error
//!   on a prefix is the error of the whole);
//! - a second parser reads the same: the head `write_client_head` builds parses, with the same
//!   parser, to the same status and reason, framed as `client_framing` says, and is never kept
//!   alive when the proxy closes the client connection.

#![no_main]

use lbproxy::http::{
    parse_response, Method, Response, ResponseBody, ResponseContext, ResponseError, Version,
};
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 4] = [Method::Get, Method::Head, Method::Connect, Method::Post];

fuzz_target!(|data: &[u8]| {
    let [flags, cut, ref input @ ..] = *data else {
        return;
    };
    let method = METHODS[usize::from(flags & 3)];
    let max_head = if flags & 16 != 0 { 256 } else { 16 * 1024 };
    let whole = parse_response(input, method, max_head);
    if let Ok(Some(response)) = &whole {
        assert!(response.head_len <= input.len().min(max_head));
        let again = parse_response(&input[..response.head_len], method, max_head)
            .expect("the head alone parses")
            .expect("the head alone is complete");
        assert_eq!(summary(&again), summary(response));
        let client_version = if flags & 4 != 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        check_relayed(response, method, client_version, flags & 8 != 0);
    }
    let cut = usize::from(cut) * input.len() / 256;
    let prefix = parse_response(&input[..cut], method, max_head);
    match (&prefix, &whole) {
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
});

/// The head the proxy sends the client, parsed again.
fn check_relayed(
    response: &Response<'_>,
    method: Method,
    client_version: Version,
    client_keep_alive: bool,
) {
    let ctx = ResponseContext {
        request_method: method,
        client_version,
        client_keep_alive,
        request_id: "fuzz-request-1",
        edits: None,
        compression: lbproxy::http::compress::HeadChange::NONE,
    };
    let mut out = Vec::new();
    response.write_client_head(&ctx, &mut out);
    let text = String::from_utf8_lossy(&out);
    let relayed: Result<Option<Response<'_>>, ResponseError> =
        parse_response(&out, method, 64 * 1024);
    // The proxy reads at most 256 fields and adds up to three (X-Request-Id, framing,
    // Connection), so a relayed head can have more fields than this parser reads: legal HTTP,
    // and the client's to judge.
    if field_lines(&out) > 256 {
        assert_eq!(
            relayed.map(|r| r.is_some()),
            Err(ResponseError::Invalid("too many header fields"))
        );
        return;
    }
    let relayed = match relayed {
        Ok(Some(relayed)) => relayed,
        other => panic!(
            "the relayed head does not parse: {:?}\n{text}",
            other.map(|r| r.map(|r| summary(&r)))
        ),
    };
    assert_eq!(relayed.head_len, out.len(), "{text}");
    assert_eq!(relayed.status, response.status, "{text}");
    assert_eq!(relayed.reason, response.reason, "{text}");
    assert_eq!(relayed.version, Version::Http11, "{text}");
    if response.status >= 200 {
        assert_eq!(
            relayed.body,
            response.client_framing(client_version),
            "{text}"
        );
        if !client_keep_alive {
            assert!(!relayed.keep_alive, "{text}");
        }
    } else {
        assert_eq!(relayed.body, ResponseBody::None, "{text}");
    }
}

/// Field lines of a head the proxy wrote (CRLF line endings).
fn field_lines(head: &[u8]) -> usize {
    head.windows(2).filter(|w| w == b"\r\n").count() - 2
}

/// What a head decides, for comparing two parses.
fn summary<'a>(r: &Response<'a>) -> impl std::fmt::Debug + PartialEq + 'a {
    (
        r.status,
        r.reason,
        r.version,
        r.body,
        r.keep_alive,
        r.head_len,
    )
}
