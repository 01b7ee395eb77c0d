//! docs/http.md, "Responses (backend → proxy)", end to end: a raw backend sends exact (often
//! bad) bytes, a raw client shows exactly what the proxy made of them. Each case asserts the exact
//! bytes the client receives, whether its connection closes or stays in sync, the exact bytes the
//! backend received, and whether the upstream connection was reused (backend connection counts):
//! a broken upstream connection never is.

mod common;

use common::backend::{RawBackend, Reply};
use common::raw::{RawConn, RawResponse};
use common::spec::{assert_proxy_error, spec_config, upstream, with_id};
use common::{on_both_drivers, refusing_port, Proxy};
use std::net::SocketAddr;

on_both_drivers!(
    refused_backends_are_502,
    none_healthy_is_503,
    backend_closing_without_response_is_retried_only_when_safe,
    silent_backend_is_504_and_its_connection_closed,
    invalid_status_line_or_fields_are_502_and_never_reused,
    ambiguous_response_framing_is_502_and_never_reused,
    head_closed_midway_is_502,
    short_body_is_forwarded_as_is_then_the_client_is_closed,
    bodiless_responses_consume_no_body_and_stay_in_sync,
    http10_client_gets_no_interim_responses,
    close_delimited_body_is_forwarded_until_close,
    chunked_trailers_are_forwarded_only_on_a_chunked_leg,
    invalid_chunked_response_body,
    stray_bytes_after_a_bodiless_response_are_never_read_as_the_next_response,
);

fn proxy_for(driver: &str, backends: &[SocketAddr], extra: &str) -> Proxy {
    Proxy::start(&spec_config(driver, backends, extra))
}

/// What the backend receives for `GET {path}` with `Host: a` and nothing else.
fn get_upstream(path: &str) -> String {
    upstream(&format!("GET {path} HTTP/1.1\r\nHost: a\r\n"), "\r\n")
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
}

/// The request id in a raw response text.
fn id_in(text: &str) -> String {
    text.split("X-Request-Id: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .unwrap_or_else(|| panic!("no X-Request-Id in {text:?}"))
        .to_owned()
}

fn assert_forwarded(received: &[u8], template: &str, id: &str) {
    assert_eq!(
        String::from_utf8_lossy(received),
        String::from_utf8_lossy(&with_id(template, id)),
        "bytes forwarded"
    );
}

// http.md: backend refuses → 502 (and the next backend is tried first). Without health checks
// every backend is tried, so the last failure decides.
fn refused_backends_are_502(driver: &str) {
    let proxy = proxy_for(driver, &[refusing_port(), refusing_port()], "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/r"));
    assert_proxy_error(
        &conn.read_response("GET"),
        502,
        "upstream \"api\": all 2 backends failed; the last one refused the connection",
    );
    conn.assert_closed();

    let good = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let proxy = proxy_for(driver, &[refusing_port(), good.addr], "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/r"));
    let response = conn.read_response("GET");
    let id = response.request_id();
    assert_eq!(
        response.text(),
        format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\n\r\nok")
    );
    assert_forwarded(&good.requests()[0], &get_upstream("/r"), &id);
}

// http.md: backend accepts and closes without a response → 502; retry elsewhere only if no byte
// of the request was sent or the method is idempotent (here: idempotent and without a body, as a
// streamed body cannot be replayed).
// http.md: none healthy → 503, naming why; no backend is contacted.
fn none_healthy_is_503(driver: &str) {
    let dead = refusing_port();
    let proxy = proxy_for(
        driver,
        &[dead],
        "[upstream.api.health]\ntype = \"tcp\"\ninterval = \"50ms\"\n",
    );
    // Its first probe fails, which takes it out (a backend starts on probation).
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the probe to mark the backend down",
        || {
            let mut conn = RawConn::open(proxy.addr);
            conn.send(&get("/h"));
            conn.read_response("GET").text().starts_with("HTTP/1.1 503")
        },
    );
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/h"));
    assert_proxy_error(
        &conn.read_response("GET"),
        503,
        "upstream \"api\" has no usable backend (1 backend: 1 down)",
    );
    conn.assert_closed();
}

fn backend_closing_without_response_is_retried_only_when_safe(driver: &str) {
    // One backend: the retry has nowhere to go.
    let closer = RawBackend::start(Reply::CloseWithoutResponse);
    let proxy = proxy_for(driver, &[closer.addr], "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/once"));
    let id = assert_proxy_error(
        &conn.read_response("GET"),
        502,
        "upstream \"api\": all 1 backends failed; the last one closed the connection without responding",
    );
    conn.assert_closed();
    assert_forwarded(&closer.bytes(), &get_upstream("/once"), &id);

    // Two backends, the first closes. Round robin on one worker starts at the first.
    let cases: [(&str, &[u8], String, bool); 4] = [
        ("GET", &get("/g"), get_upstream("/g"), true),
        (
            "DELETE",
            b"DELETE /d HTTP/1.1\r\nHost: a\r\n\r\n",
            upstream("DELETE /d HTTP/1.1\r\nHost: a\r\n", "\r\n"),
            true,
        ),
        (
            "POST",
            b"POST /p HTTP/1.1\r\nHost: a\r\n\r\n",
            upstream("POST /p HTTP/1.1\r\nHost: a\r\n", "\r\n"),
            false,
        ),
        (
            "PUT with a body",
            b"PUT /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            upstream(
                "PUT /b HTTP/1.1\r\nHost: a\r\n",
                "Content-Length: 5\r\n\r\nhello",
            ),
            false,
        ),
    ];
    for (name, raw, forwarded, retried) in cases {
        let closer = RawBackend::start(Reply::CloseWithoutResponse);
        let good = RawBackend::start(Reply::Fixed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ));
        let proxy = proxy_for(driver, &[closer.addr, good.addr], "");
        let mut conn = RawConn::open(proxy.addr);
        conn.send(raw);
        let response = conn.read_response(name.split(' ').next().unwrap());
        let id = response.request_id();
        assert_forwarded(&closer.bytes(), &forwarded, &id);
        if retried {
            assert_eq!(
                response.text(),
                format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\n\r\nok"),
                "{name}"
            );
            assert_forwarded(&good.bytes(), &forwarded, &id);
        } else {
            assert_proxy_error(
                &response,
                502,
                "upstream \"api\" closed the connection without responding",
            );
            conn.assert_closed();
            assert_eq!(good.connections(), 0, "{name} must not be retried");
        }
    }
}

// http.md: no response within the upstream timeout → 504; the upstream connection is closed.
fn silent_backend_is_504_and_its_connection_closed(driver: &str) {
    let backend = RawBackend::start(Reply::Silent);
    let proxy = proxy_for(
        driver,
        &[backend.addr],
        "[timeouts]\nupstream_response = \"300ms\"\n",
    );
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/slow"));
    let id = assert_proxy_error(
        &conn.read_response("GET"),
        504,
        "upstream \"api\" did not respond within 300ms",
    );
    conn.assert_closed();
    backend.wait_closed(1);
    assert_forwarded(&backend.bytes(), &get_upstream("/slow"), &id);
}

/// For each `(name, bad response head, reason)`: a backend that answers its first request on a
/// connection with the bad bytes and any later one with a good response. The client gets exactly
/// the proxy's 502 naming the reason and its connection closes; the proxy closes the upstream
/// connection, so a second request is sent on a new connection and gets the bad bytes again
/// (a reused connection would have answered it with the good response).
fn assert_bad_responses_are_502(driver: &str, cases: &[(&str, &[u8], &str)]) {
    for (name, bad, why) in cases {
        let backend = RawBackend::start(Reply::Script(vec![
            bad.to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ]));
        let proxy = proxy_for(driver, &[backend.addr], "");
        let detail = format!("upstream \"api\" sent an invalid response: {why}");
        for round in 1..=2 {
            let mut conn = RawConn::open(proxy.addr);
            conn.send(&get("/bad"));
            let response = conn.read_response("GET");
            assert_eq!(response.status, 502, "{name}: {}", response.text());
            let id = assert_proxy_error(&response, 502, &detail);
            conn.assert_closed();
            backend.wait_closed(round);
            let received = backend.bytes_per_connection().pop().unwrap();
            assert_forwarded(&received, &get_upstream("/bad"), &id);
        }
    }
}

// http.md: invalid status line or headers → 502; that upstream connection is not reused.
fn invalid_status_line_or_fields_are_502_and_never_reused(driver: &str) {
    assert_bad_responses_are_502(
        driver,
        &[
            (
                "four-digit status",
                b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
                "invalid status line",
            ),
            (
                "no status",
                b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
                "invalid status line",
            ),
            (
                "HTTP/2",
                b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
                "unsupported HTTP version",
            ),
            (
                "not HTTP",
                b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
                "unsupported HTTP version",
            ),
            (
                "status below 100",
                b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
                "status code out of range",
            ),
            (
                "NUL in the reason",
                b"HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n",
                "invalid status line",
            ),
            (
                "space before the colon",
                b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
                "invalid header field name or obs-fold line",
            ),
            (
                "obs-fold",
                b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
                "invalid header field name or obs-fold line",
            ),
            (
                "NUL in a value",
                b"HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n",
                "invalid byte in header field value",
            ),
            (
                "CR in a value",
                b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
                "invalid byte in header field value",
            ),
            (
                "101 to a request that asked for no upgrade",
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                "101 Switching Protocols to a request that asked for no upgrade",
            ),
        ],
    );
}

// http.md: two different `Content-Length` values, or CL with TE, or a bad TE → 502.
fn ambiguous_response_framing_is_502_and_never_reused(driver: &str) {
    assert_bad_responses_are_502(
        driver,
        &[
            (
                "two Content-Length values",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                "conflicting Content-Length values",
            ),
            (
                "5, 6",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
                "conflicting Content-Length values",
            ),
            (
                "negative Content-Length",
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "CL with TE",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                "unknown coding",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
                "Transfer-Encoding other than chunked",
            ),
            (
                "chunked, chunked",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "chunked not last",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "TE in HTTP/1.0",
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "Transfer-Encoding in an HTTP/1.0 response",
            ),
        ],
    );
}

// A head cut by the backend's close is an invalid response too, not "no response": 502, and the
// request is not retried elsewhere (the backend did answer).
fn head_closed_midway_is_502(driver: &str) {
    let backend = RawBackend::start(Reply::ThenClose(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()));
    let other = RawBackend::start(Reply::Echo);
    let proxy = proxy_for(driver, &[backend.addr, other.addr], "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/cut"));
    let id = assert_proxy_error(
        &conn.read_response("GET"),
        502,
        "upstream \"api\" sent an invalid response: connection closed in the middle of the response head",
    );
    conn.assert_closed();
    assert_forwarded(&backend.bytes(), &get_upstream("/cut"), &id);
    assert_eq!(other.connections(), 0);
}

// http.md: CL announced N, connection closes after M < N bytes → forward exactly M bytes, then
// close the client connection; never pad, never mark complete, never reuse. The request
// pipelined behind it is never forwarded.
fn short_body_is_forwarded_as_is_then_the_client_is_closed(driver: &str) {
    for (sent, body) in [("hello", "hello"), ("", "")] {
        let backend = RawBackend::start(Reply::ThenClose(
            format!("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{sent}").into_bytes(),
        ));
        let proxy = proxy_for(driver, &[backend.addr], "");
        let mut conn = RawConn::open(proxy.addr);
        let mut pipelined = get("/short");
        pipelined.extend_from_slice(&get("/behind"));
        conn.send(&pipelined);
        let text = String::from_utf8(conn.read_to_eof()).unwrap();
        let id = id_in(&text);
        assert_eq!(
            text,
            format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 10\r\n\r\n{body}")
        );
        backend.wait_closed(1);
        assert_forwarded(&backend.bytes(), &get_upstream("/short"), &id);

        // The next request gets a new upstream connection.
        let mut conn = RawConn::open(proxy.addr);
        conn.send(&get("/next"));
        conn.read_to_eof();
        assert_eq!(backend.connections(), 2);
    }
}

/// One request on a keep-alive connection and what the client must receive for it (`{id}` for
/// the request id, taken from the final response).
struct Exchange {
    request: Vec<u8>,
    method: &'static str,
    upstream: String,
    responses: Vec<String>,
}

fn exchange(request: &[u8], upstream: String, responses: &[&str]) -> Exchange {
    let method = if request.starts_with(b"HEAD") {
        "HEAD"
    } else {
        "GET"
    };
    Exchange {
        request: request.to_vec(),
        method,
        upstream,
        responses: responses
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
    }
}

/// Runs `exchanges` on one client connection against a backend answering them in turn on one
/// connection, and asserts every response and every forwarded request exactly, and that the one
/// upstream connection carried them all (it stayed in sync).
fn assert_in_sync_exchanges(driver: &str, answers: &[&[u8]], exchanges: &[Exchange]) {
    let backend = RawBackend::start(Reply::Script(answers.iter().map(|a| a.to_vec()).collect()));
    let proxy = proxy_for(driver, &[backend.addr], "");
    let mut conn = RawConn::open(proxy.addr);
    for (index, exchange) in exchanges.iter().enumerate() {
        conn.send(&exchange.request);
        let received: Vec<RawResponse> = exchange
            .responses
            .iter()
            .map(|_| conn.read_response(exchange.method))
            .collect();
        let id = received.last().unwrap().request_id();
        for (response, expected) in received.iter().zip(&exchange.responses) {
            assert_eq!(response.text(), expected.replace("{id}", &id));
        }
        assert_forwarded(&backend.requests()[index], &exchange.upstream, &id);
    }
    assert_eq!(
        backend.connections(),
        1,
        "one upstream connection, reused throughout"
    );
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const OK_TO_CLIENT: &str = "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\n\r\nok";

// http.md: response to HEAD, 1xx, 204, 304 → no body bytes consumed or forwarded; the connection
// stays in sync: the response after it, on the same client and upstream connections, is intact.
fn bodiless_responses_consume_no_body_and_stay_in_sync(driver: &str) {
    let head = b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n";
    let head_upstream = upstream("HEAD /h HTTP/1.1\r\nHost: a\r\n", "\r\n");
    let cases: [(&[u8], Exchange); 6] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
            exchange(
                head,
                head_upstream.clone(),
                &["HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 42\r\n\r\n"],
            ),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            exchange(
                head,
                head_upstream,
                &["HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\n\r\n"],
            ),
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            exchange(
                &get("/n"),
                get_upstream("/n"),
                &["HTTP/1.1 204 No Content\r\nX-Request-Id: {id}\r\n\r\n"],
            ),
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 42\r\n\r\n",
            exchange(
                &get("/m"),
                get_upstream("/m"),
                &["HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nX-Request-Id: {id}\r\nContent-Length: 42\r\n\r\n"],
            ),
        ),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            exchange(
                &get("/e"),
                get_upstream("/e"),
                &[
                    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                    "HTTP/1.1 100 Continue\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\n\r\nhi",
                ],
            ),
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\n\
              Keep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n",
            exchange(
                &get("/z"),
                get_upstream("/z"),
                &["HTTP/1.1 200 OK\r\nX-Kept: 1\r\nX-Request-Id: {id}\r\nContent-Length: 0\r\n\r\n"],
            ),
        ),
    ];
    for (answer, first) in cases {
        let then = exchange(&get("/after"), get_upstream("/after"), &[OK_TO_CLIENT]);
        assert_in_sync_exchanges(driver, &[answer, OK], &[first, then]);
    }
}

// Interim responses are an HTTP/1.1 feature: an HTTP/1.0 client gets only the final one, and a
// kept-alive HTTP/1.0 connection is told so.
fn http10_client_gets_no_interim_responses(driver: &str) {
    let request = b"GET /e HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
    let kept_alive = |body: &str| {
        Exchange {
        request: request.to_vec(),
        method: "GET",
        upstream: upstream("GET /e HTTP/1.1\r\nHost: a\r\n", "\r\n"),
        responses: vec![format!(
            "HTTP/1.1 200 OK\r\nX-Request-Id: {{id}}\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{body}"
        )],
    }
    };
    assert_in_sync_exchanges(
        driver,
        &[
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            OK,
        ],
        &[kept_alive("hi"), kept_alive("ok")],
    );
}

// http.md: close-delimited body → forward until close, then close the client connection (even
// one that asked to be kept alive; the request pipelined behind is never forwarded).
fn close_delimited_body_is_forwarded_until_close(driver: &str) {
    let cases = [
        (
            "HTTP/1.1 without length",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\nuntil the end",
        ),
        (
            "HTTP/1.0 without length",
            "HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nold\r\n\r\nstyle",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\nold\r\n\r\nstyle",
        ),
        (
            "empty",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (name, answer, expected) in cases {
        let backend = RawBackend::start(Reply::ThenClose(answer.as_bytes().to_vec()));
        let proxy = proxy_for(driver, &[backend.addr], "");
        let mut conn = RawConn::open(proxy.addr);
        let mut pipelined = get("/c");
        pipelined.extend_from_slice(&get("/behind"));
        conn.send(&pipelined);
        let text = String::from_utf8(conn.read_to_eof()).unwrap();
        let id = id_in(&text);
        assert_eq!(text, expected.replace("{id}", &id), "{name}");
        assert_eq!(backend.requests().len(), 1, "{name}");
        assert_forwarded(&backend.bytes(), &get_upstream("/c"), &id);
    }
}

const CHUNKED_WITH_TRAILERS: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
      5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nContent-Length: 99\r\n\r\n";

// http.md: chunked trailers → forward only on a chunked client leg; otherwise drop. An HTTP/1.1
// client gets the body re-chunked canonically with the trailer fields (minus those the proxy gives
// a meaning to); an HTTP/1.0 client gets the decoded payload, close-delimited, without them. The
// upstream message ended at its framing either way, so its connection is reused.
fn chunked_trailers_are_forwarded_only_on_a_chunked_leg(driver: &str) {
    let chunked = "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let exchanges = [
        exchange(&get("/t1"), get_upstream("/t1"), &[chunked]),
        exchange(&get("/t2"), get_upstream("/t2"), &[chunked]),
    ];
    assert_in_sync_exchanges(driver, &[CHUNKED_WITH_TRAILERS], &exchanges);

    let backend = RawBackend::start(Reply::Fixed(CHUNKED_WITH_TRAILERS.to_vec()));
    let proxy = proxy_for(driver, &[backend.addr], "");
    for round in 0..2 {
        let mut conn = RawConn::open(proxy.addr);
        conn.send(b"GET /old HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
        let text = String::from_utf8(conn.read_to_eof()).unwrap();
        let id = id_in(&text);
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\nhello world"
            )
        );
        assert_forwarded(
            &backend.requests()[round],
            &upstream("GET /old HTTP/1.1\r\nHost: a\r\n", "\r\n"),
            &id,
        );
    }
    assert_eq!(
        backend.connections(),
        1,
        "the upstream connection was reused"
    );
}

// A chunked body the backend breaks: when nothing has reached the client yet, it gets the proxy's
// 502; once part of the body went out, the client connection is closed without the last chunk,
// never completed. Neither upstream connection is reused.
fn invalid_chunked_response_body(driver: &str) {
    let backend = RawBackend::start(Reply::Script(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n+3\r\nabc\r\n0\r\n\r\n"
            .to_vec(),
        OK.to_vec(),
    ]));
    let proxy = proxy_for(driver, &[backend.addr], "");
    for round in 1..=2 {
        let mut conn = RawConn::open(proxy.addr);
        conn.send(&get("/bad"));
        let id = assert_proxy_error(
            &conn.read_response("GET"),
            502,
            "upstream \"api\" sent an invalid response: invalid chunked body: missing chunk size",
        );
        conn.assert_closed();
        backend.wait_closed(round);
        assert_forwarded(
            &backend.bytes_per_connection()[round - 1],
            &get_upstream("/bad"),
            &id,
        );
    }

    let backend = RawBackend::start(Reply::ThenClose(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
    ));
    let proxy = proxy_for(driver, &[backend.addr], "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/cut"));
    let text = String::from_utf8(conn.read_to_eof()).unwrap();
    let id = id_in(&text);
    assert_eq!(
        text,
        format!(
            "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
    );
    assert_forwarded(&backend.bytes(), &get_upstream("/cut"), &id);
}

// http.md: responses to HEAD, 204, 304 carry no body and "the connection stays in sync". A broken
// backend that sends bytes after such a response anyway — here a whole fake response, a moment
// later — must not have them read as the answer to the next request reusing that connection: the
// pool checks a connection whose last response was bodiless before reusing it, even right away.
fn stray_bytes_after_a_bodiless_response_are_never_read_as_the_next_response(driver: &str) {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stray_sent, stray_was_sent) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, tcp) in listener.incoming().flatten().enumerate() {
            let stray_sent = stray_sent.clone();
            std::thread::spawn(move || {
                let mut tcp = tcp;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = 0;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        answered += 1;
                        if head.starts_with(b"HEAD") {
                            tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                                .unwrap();
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            let _ =
                                tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
                            let _ = stray_sent.send(());
                        } else {
                            let _ = tcp.write_all(
                                format!("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ngood-{n}")
                                    .as_bytes(),
                            );
                        }
                    }
                    match tcp.read(&mut chunk) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Ok(0) | Err(_) => return,
                        Ok(read) => buf.extend_from_slice(&chunk[..read]),
                    }
                    let _ = answered;
                }
            });
        }
    });
    let proxy = proxy_for(driver, &[addr], "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = conn.read_response("HEAD");
    assert_eq!(head.status, 200);
    stray_was_sent
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.send(&get("/next"));
    let next = conn.read_response("GET");
    assert_eq!(next.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&next.body),
        "good-1",
        "the stray bytes were read as the response, or the connection was reused"
    );
}
