//! Helpers for the docs/http.md tests (`tests/http_spec_*.rs`): a one-worker proxy (so backend
//! connection counts are exact: one pool, one balancer), the exact bytes the proxy is expected to
//! forward and to answer, and table runners for requests that must be refused or forwarded.

use super::backend::{RawBackend, TRACEPARENT_MASK};
use super::raw::{RawConn, RawResponse};
use std::net::SocketAddr;

/// A config with ONE worker, one listener on port 0 routing everything to upstream `api` over
/// `backends`, on `driver`, with `extra` TOML appended (e.g. `[timeouts]` or `[limits]`).
pub fn spec_config(driver: &str, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"2s\"\n\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\n\
         [upstream.api]\nbackends = [{}]\n\n{extra}\n",
        list.join(", ")
    )
}

/// The fields the proxy appends to every forwarded head, for a client on 127.0.0.1 without
/// `X-Forwarded-For`, a request with `Host: host` (none for `None`), and request id `id`; the
/// trace the proxy starts shows as [`TRACEPARENT_MASK`] (see [`super::backend`]).
pub fn proxy_fields(host: Option<&str>, id: &str) -> String {
    let forwarded_host = host.map_or(String::new(), |h| format!("X-Forwarded-Host: {h}\r\n"));
    format!(
        "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n{forwarded_host}X-Request-Id: {id}\r\n\
         traceparent: {TRACEPARENT_MASK}\r\n"
    )
}

/// A forwarded request for `Host: a`: `start` (request line, Host and the client's fields kept),
/// then the proxy's fields, then `end` (framing the proxy writes, the empty line, the body).
/// `{id}` stands for the request id until [`with_id`] fills it in.
pub fn upstream(start: &str, end: &str) -> String {
    format!("{start}{}{end}", proxy_fields(Some("a"), "{id}"))
}

/// `template` with `{id}` replaced by the request id.
pub fn with_id(template: &str, id: &str) -> Vec<u8> {
    template.replace("{id}", id).into_bytes()
}

/// What a client receives when [`super::backend::Reply::Echo`] answers `forwarded`: the
/// backend's head rebuilt by the proxy (its `Content-Length` rewritten, `X-Request-Id` added),
/// then the forwarded request as the body.
pub fn echo_response(forwarded: &[u8], id: &str) -> Vec<u8> {
    let mut raw = format!(
        "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: {}\r\n\r\n",
        forwarded.len()
    )
    .into_bytes();
    raw.extend_from_slice(forwarded);
    raw
}

/// The reason phrases of the statuses the proxy makes itself, written out here rather than
/// taken from the crate, so that the test states the expectation on its own.
fn phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => panic!("no proxy error with status {status}"),
    }
}

/// Asserts that `response` is exactly the proxy's own error response with `status` and `detail`
/// (docs/http.md "Errors the proxy makes itself": a short plain body naming the reason and the
/// request id, the same id in `X-Request-Id`, `Connection: close`). Returns the request id.
pub fn assert_proxy_error(response: &RawResponse, status: u16, detail: &str) -> String {
    let id = response.request_id();
    let phrase = phrase(status);
    let body = format!("{status} {phrase}: {detail} (request id {id})\n");
    let expected = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(response.text(), expected);
    id
}

/// A request the proxy must refuse before contacting any backend.
pub struct Refused {
    pub name: &'static str,
    pub raw: Vec<u8>,
    pub status: u16,
    /// The reason named in the error body.
    pub detail: &'static str,
}

pub fn refused(name: &'static str, raw: &[u8], status: u16, detail: &'static str) -> Refused {
    Refused {
        name,
        raw: raw.to_vec(),
        status,
        detail,
    }
}

/// Sends each case on its own connection and asserts: exactly the proxy's error response, then
/// the connection closes; and that `backend` was never connected to.
pub fn assert_all_refused(proxy: SocketAddr, backend: &RawBackend, cases: &[Refused]) {
    for case in cases {
        let mut conn = RawConn::open(proxy);
        conn.send_lossy(&case.raw);
        let response = conn.read_response(&method_of(&case.raw));
        assert_eq!(
            response.status,
            case.status,
            "{}: {}",
            case.name,
            response.text()
        );
        assert_proxy_error(&response, case.status, case.detail);
        conn.assert_closed();
        assert_eq!(
            (backend.connections(), backend.bytes()),
            (0, Vec::new()),
            "{}: the backend must never be contacted",
            case.name
        );
    }
}

/// A request whose head is valid and forwarded, but whose body is refused once read: the backend
/// must receive exactly `upstream_head` (`{id}` for the request id) and then see its connection
/// closed, never a complete request.
pub struct BodyRefused {
    pub name: &'static str,
    pub raw: Vec<u8>,
    pub status: u16,
    pub detail: &'static str,
    pub upstream_head: String,
}

/// Sends each case on its own connection and asserts: exactly the proxy's error response, the
/// client connection closed, the backend connection of that case closed after exactly the head,
/// and no complete request at the backend.
pub fn assert_all_body_refused(proxy: SocketAddr, backend: &RawBackend, cases: &[BodyRefused]) {
    for (index, case) in cases.iter().enumerate() {
        let mut conn = RawConn::open(proxy);
        conn.send_lossy(&case.raw);
        let response = conn.read_response(&method_of(&case.raw));
        assert_eq!(
            response.status,
            case.status,
            "{}: {}",
            case.name,
            response.text()
        );
        let id = assert_proxy_error(&response, case.status, case.detail);
        conn.assert_closed();
        backend.wait_closed(index + 1);
        let received = backend.bytes_per_connection().pop().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(&with_id(&case.upstream_head, &id)),
            "{}: bytes forwarded",
            case.name
        );
        assert!(
            backend.requests().is_empty(),
            "{}: no complete request may reach the backend",
            case.name
        );
    }
}

/// A request the proxy must forward, and the exact bytes the backend must receive (`{id}` for the
/// request id).
pub struct Forwarded {
    pub name: &'static str,
    pub raw: Vec<u8>,
    pub upstream: String,
}

pub fn forwarded(name: &'static str, raw: &[u8], upstream: String) -> Forwarded {
    Forwarded {
        name,
        raw: raw.to_vec(),
        upstream,
    }
}

/// Sends each case on one keep-alive connection (the proxy's answer is the echo of what the
/// backend received) and asserts the exact bytes the backend received and the client got back;
/// a plain GET after each case checks that the connection is still in sync.
pub fn assert_all_forwarded(proxy: SocketAddr, backend: &RawBackend, cases: &[Forwarded]) {
    let mut conn = RawConn::open(proxy);
    for case in cases {
        conn.send(&case.raw);
        let response = conn.read_response(&method_of(&case.raw));
        let id = response.request_id();
        let expected = with_id(&case.upstream, &id);
        let received = backend.requests().pop().unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(&expected),
            "{}: bytes forwarded",
            case.name
        );
        assert_eq!(
            response.text(),
            String::from_utf8_lossy(&echo_response(&expected, &id)),
            "{}: response",
            case.name
        );
        assert_in_sync(&mut conn, backend);
    }
}

/// A plain GET on `conn` is forwarded exactly and answered: the connection is still in sync.
pub fn assert_in_sync(conn: &mut RawConn, backend: &RawBackend) {
    conn.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let response = conn.read_response("GET");
    let id = response.request_id();
    let expected = with_id(&upstream("GET /next HTTP/1.1\r\nHost: a\r\n", "\r\n"), &id);
    assert_eq!(
        String::from_utf8_lossy(&backend.requests().pop().unwrap_or_default()),
        String::from_utf8_lossy(&expected),
        "the request after the case"
    );
    assert_eq!(response.raw, echo_response(&expected, &id));
}

/// The method of a raw request (its first word).
pub fn method_of(raw: &[u8]) -> String {
    let line = raw.split(|&b| b == b' ').next().unwrap_or_default();
    String::from_utf8_lossy(line).into_owned()
}
