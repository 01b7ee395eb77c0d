//! docs/http.md, "Requests (client → proxy)", the rows about what fields and targets mean,
//! limits and timeouts, end to end on real sockets: Host, request targets, head limits, slow
//! heads, slow bodies and slow readers, `Expect: 100-continue`, `Connection`-named fields and
//! `X-Forwarded-For`. Each case asserts the exact response, whether the connection closes or stays
//! in sync, and the exact bytes the backend received (or that it was never contacted).

mod common;

use common::backend::{RawBackend, Reply, TRACEPARENT_MASK};
use common::on_both_drivers;
use common::raw::RawConn;
use common::spec::{
    assert_all_forwarded, assert_all_refused, assert_in_sync, assert_proxy_error, echo_response,
    forwarded, proxy_fields, refused, spec_config, upstream, with_id,
};
use common::{wait_until, Proxy};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

on_both_drivers!(
    missing_duplicate_or_invalid_host_is_400,
    http10_without_host_is_forwarded_with_an_empty_host,
    asterisk_connect_and_relative_targets,
    heads_over_the_limits_are_431_or_414_and_never_forwarded,
    slowloris_head_is_408_while_others_are_served,
    trickling_body_is_cut_by_the_total_body_deadline,
    client_that_reads_too_slowly_is_cut,
    expect_100_continue_is_answered_and_stays_in_sync,
    backend_100_continue_is_not_relayed_twice,
    expect_in_http10_gets_no_interim_response,
    connection_named_fields_are_removed_and_framing_is_recomputed,
    client_x_forwarded_for_is_replaced_unless_trusted,
    trusted_proxy_x_forwarded_for_is_appended_to,
    underscore_spellings_of_the_proxys_fields_are_dropped,
    connect_is_refused_unless_a_route_allows_tunnels,
    connect_on_a_route_that_allows_it_becomes_a_tunnel_on_2xx_only,
);

fn echo_proxy(driver: &str, extra: &str) -> (RawBackend, Proxy) {
    let backend = RawBackend::start(Reply::Echo);
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], extra));
    (backend, proxy)
}

/// Writes `bytes` one at a time, 20 ms apart, until they run out, a write fails or it is
/// stopped: every read of the proxy makes progress, yet the message takes long.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Trickle {
    fn start(stream: &TcpStream, bytes: &'static [u8]) -> Trickle {
        let mut stream = stream.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                for byte in bytes {
                    if stop.load(Ordering::SeqCst) || stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Trickle { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

// http.md: missing, duplicated or invalid `Host` in HTTP/1.1 → 400.
fn missing_duplicate_or_invalid_host_is_400(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let invalid = "invalid Host";
    let cases = [
        refused("missing", b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
        refused(
            "missing, absolute-form target",
            b"GET http://a/ HTTP/1.1\r\n\r\n",
            400,
            "missing Host",
        ),
        refused(
            "duplicated",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
            "duplicate Host",
        ),
        refused(
            "duplicated, other case",
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            400,
            "duplicate Host",
        ),
        refused("empty", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, invalid),
        refused(
            "space",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            400,
            invalid,
        ),
        refused(
            "userinfo",
            b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            400,
            invalid,
        ),
        refused("list", b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400, invalid),
        refused(
            "bad port",
            b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
            400,
            invalid,
        ),
        refused(
            "empty port",
            b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n",
            400,
            invalid,
        ),
        refused("path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, invalid),
        refused(
            "open bracket",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            400,
            invalid,
        ),
        refused(
            "HTTP/1.0 with an invalid Host",
            b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
            400,
            invalid,
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: HTTP/1.0 may omit Host; it is forwarded as HTTP/1.1, which must carry one: an empty
// Host (the target has no authority; RFC 9112 §3.2), never an invented one. Without keep-alive
// the client connection closes after the response.
fn http10_without_host_is_forwarded_with_an_empty_host(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /old HTTP/1.0\r\nAccept: */*\r\n\r\n");
    let response = conn.read_response("GET");
    let id = response.request_id();
    let expected = format!(
        "GET /old HTTP/1.1\r\nHost: \r\nAccept: */*\r\n{}\r\n",
        proxy_fields(None, &id)
    );
    assert_eq!(
        String::from_utf8_lossy(&backend.requests()[0]),
        expected,
        "bytes forwarded"
    );
    let mut echo = format!(
        "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        expected.len()
    );
    echo.push_str(&expected);
    assert_eq!(response.text(), echo);
    conn.assert_closed();
}

// http.md: `GET *`, `CONNECT` without a port, a relative target without `/` → 400
// (`OPTIONS *` is valid).
fn asterisk_connect_and_relative_targets(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        refused(
            "GET *",
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "`*` target is only valid for OPTIONS",
        ),
        refused(
            "CONNECT without a port",
            b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "CONNECT target must be host:port",
        ),
        refused(
            "CONNECT with an origin-form target",
            b"CONNECT /a HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "CONNECT target must be host:port",
        ),
        refused(
            "relative target",
            b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "request target must start with `/`",
        ),
        refused(
            "fragment",
            b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "invalid byte in request target",
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);

    let cases = [
        forwarded(
            "OPTIONS *",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            upstream("OPTIONS * HTTP/1.1\r\nHost: a\r\n", "\r\n"),
        ),
        forwarded(
            "absolute-form, forwarded in origin-form",
            b"GET http://a/x?y HTTP/1.1\r\nHost: a\r\n\r\n",
            upstream("GET /x?y HTTP/1.1\r\nHost: a\r\n", "\r\n"),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: request line or header section over the limit; too many headers → 431 (414 for an
// over-long URI) and close; the backend is never contacted. A head that cannot complete within
// the limit is refused without waiting for the rest; a head of exactly the limit goes through.
fn heads_over_the_limits_are_431_or_414_and_never_forwarded(driver: &str) {
    let limits = "[limits]\nmax_header_bytes = \"1KiB\"\nmax_uri_bytes = 256\nmax_headers = 4\n\
                  [timeouts]\nclient_header = \"5s\"\n";
    let (backend, proxy) = echo_proxy(driver, limits);
    let head = |target: &str, fields: &str| format!("GET {target} HTTP/1.1\r\n{fields}\r\n");
    let long_target = format!("/{}", "u".repeat(256));
    let filler = |len: usize| format!("Host: a\r\nX-Fill: {}\r\n", "f".repeat(len));
    let overhead = head("/", &filler(0)).len();
    let over_head = head("/", &filler(1025 - overhead));
    let exact_head = head("/", &filler(1024 - overhead));
    assert_eq!((over_head.len(), exact_head.len()), (1025, 1024));
    let uri = "request target longer than the limit";
    let section = "request header section larger than the limit";
    let cases = [
        refused(
            "target over the limit",
            head(&long_target, "Host: a\r\n").as_bytes(),
            414,
            uri,
        ),
        refused(
            "target over the limit, line incomplete",
            format!("GET {long_target}").as_bytes(),
            414,
            uri,
        ),
        refused("head over the limit", over_head.as_bytes(), 431, section),
        refused(
            "head over the limit, never completed",
            &over_head.as_bytes()[..1024],
            431,
            section,
        ),
        refused(
            "too many fields",
            head("/", "Host: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n").as_bytes(),
            431,
            "too many request header fields",
        ),
    ];
    // `client_header` is 5s: an incomplete head waited on would get 408, not 431 or 414.
    assert_all_refused(proxy.addr, &backend, &cases);

    let exact_target = format!("/{}", "u".repeat(255));
    let cases = [
        forwarded(
            "head of exactly the limit",
            exact_head.as_bytes(),
            upstream(
                &format!("GET / HTTP/1.1\r\n{}", filler(1024 - overhead)),
                "\r\n",
            ),
        ),
        forwarded(
            "target of exactly the limit, four fields",
            head(&exact_target, "Host: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n").as_bytes(),
            upstream(
                &format!("GET {exact_target} HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n"),
                "\r\n",
            ),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: headers that trickle in (slowloris) → 408 and close after the header timeout; other
// clients unaffected.
fn slowloris_head_is_408_while_others_are_served(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "[timeouts]\nclient_header = \"300ms\"\n");
    let mut slow = RawConn::open(proxy.addr);
    let trickle = Trickle::start(
        slow.stream(),
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    );
    // Meanwhile another client is served.
    let mut other = RawConn::open(proxy.addr);
    assert_in_sync(&mut other, &backend);

    let response = slow.read_response("GET");
    assert_proxy_error(
        &response,
        408,
        "the request head did not arrive within 300ms",
    );
    trickle.stop();
    slow.assert_closed();
    assert_eq!(
        backend.requests().len(),
        1,
        "only the other client's request was forwarded"
    );
    assert_eq!(backend.connections(), 1);
}

// http.md: body that trickles in → cut by a total body deadline, not only per-read timeouts:
// a byte every 20 ms keeps every read short, yet the body is cut after `client_body` (300ms).
fn trickling_body_is_cut_by_the_total_body_deadline(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "[timeouts]\nclient_body = \"300ms\"\n");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");
    let trickle = Trickle::start(conn.stream(), &[b'b'; 999]);
    let response = conn.read_response("POST");
    let id = assert_proxy_error(
        &response,
        408,
        "the request body did not arrive within 300ms",
    );
    trickle.stop();
    conn.assert_closed();
    backend.wait_closed(1);
    let received = String::from_utf8(backend.bytes()).unwrap();
    let head = String::from_utf8(with_id(
        &upstream(
            "POST /slow HTTP/1.1\r\nHost: a\r\n",
            "Content-Length: 1000\r\n\r\n",
        ),
        &id,
    ))
    .unwrap();
    let body = received
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("forwarded {received:?}"));
    assert!(
        body.len() < 1000 && body.bytes().all(|b| b == b'b'),
        "a prefix of the body, never all of it: {body:?}"
    );
    assert!(backend.requests().is_empty());
}

// http.md: a client that reads too slowly is cut (here: after `client_idle` without being able to
// write a buffer's worth), not kept forever by a trickle of reads. The connection is reset (the
// unsent rest dropped), the backend connection is closed with it, and the client never gets the
// whole body.
fn client_that_reads_too_slowly_is_cut(driver: &str) {
    const BODY: usize = 64 * 1024 * 1024;
    let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    response.resize(response.len() + BODY, b'r');
    let backend = RawBackend::start(Reply::Fixed(response));
    let proxy = Proxy::start(&spec_config(
        driver,
        &[backend.addr],
        "[timeouts]\nclient_idle = \"300ms\"\n",
    ));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    // Read 16 bytes every 20 ms (800 B/s) until the proxy gives up on us and closes upstream.
    let mut stream = conn.stream().try_clone().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut received = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "the proxy to cut the slow reader",
        || {
            let mut chunk = [0u8; 16];
            if let Ok(n) = stream.read(&mut chunk) {
                received.extend_from_slice(&chunk[..n]);
            }
            backend.finished_connections() == 1
        },
    );
    // Reset, not closed: a FIN would sit behind the unsent megabytes in the proxy's kernel.
    let reset = loop {
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading after the cut: {e}"),
        }
    };
    assert!(reset, "the slow reader's connection was closed, not reset");
    drop(conn);
    wait_until(
        Duration::from_secs(5),
        "the reset counted in /metrics",
        || {
            let text = common::admin::get(proxy.admin_addr(), "/metrics", None).text();
            let samples = common::admin::parse_metrics(&text);
            let name = "lbproxy_listener_slow_readers_reset_total";
            common::admin::sum(&samples, name, &[("listener", "http")]) == 1.0
        },
    );
    let head_len = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&received[..head_len]);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\nX-Request-Id: ")
            && head.ends_with(&format!("\r\nContent-Length: {BODY}\r\n\r\n")),
        "{head}"
    );
    assert!(
        received.len() - head_len < BODY,
        "the slow reader got the whole body"
    );
}

// http.md: `Expect: 100-continue` → relayed or answered without desynchronising the connection.
// The proxy answers `100 Continue` itself once a backend is connected, strips `Expect` upstream,
// and the connection carries the next request afterwards.
fn expect_100_continue_is_answered_and_stays_in_sync(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = conn.read_response("PUT");
    assert_eq!(interim.text(), "HTTP/1.1 100 Continue\r\n\r\n");
    conn.send(b"hello");
    let response = conn.read_response("PUT");
    let id = response.request_id();
    let expected = with_id(
        &upstream(
            "PUT /e HTTP/1.1\r\nHost: a\r\n",
            "Content-Length: 5\r\n\r\nhello",
        ),
        &id,
    );
    assert_eq!(
        String::from_utf8_lossy(&backend.requests()[0]),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(response.raw, echo_response(&expected, &id));
    assert_in_sync(&mut conn, &backend);

    // A client that does not wait for the 100 gets it all the same, then the response.
    let cases = [forwarded(
        "body sent at once",
        b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        upstream(
            "PUT /e HTTP/1.1\r\nHost: a\r\n",
            "Content-Length: 5\r\n\r\nhello",
        ),
    )];
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&cases[0].raw);
    assert_eq!(
        conn.read_response("PUT").text(),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    let response = conn.read_response("PUT");
    let id = response.request_id();
    assert_eq!(
        response.raw,
        echo_response(&with_id(&cases[0].upstream, &id), &id)
    );
    assert_in_sync(&mut conn, &backend);

    // Without a body there is nothing to continue: no interim response.
    assert_all_forwarded(
        proxy.addr,
        &backend,
        &[forwarded(
            "GET with Expect",
            b"GET /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            upstream("GET /e HTTP/1.1\r\nHost: a\r\n", "\r\n"),
        )],
    );
}

// A backend that sends its own `100 Continue` (after the body, or unasked) does not make the
// client see two: the proxy already answered the expectation. A 100 to a request that did not ask
// for one is an ordinary interim response and is relayed.
fn backend_100_continue_is_not_relayed_twice(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ""));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(
        conn.read_response("PUT").text(),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    conn.send(b"hello");
    let response = conn.read_response("PUT");
    let id = response.request_id();
    assert_eq!(
        response.text(),
        format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\n\r\nok")
    );
    assert_eq!(
        String::from_utf8_lossy(&backend.requests()[0]),
        String::from_utf8_lossy(&with_id(
            &upstream(
                "PUT /e HTTP/1.1\r\nHost: a\r\n",
                "Content-Length: 5\r\n\r\nhello"
            ),
            &id
        ))
    );

    conn.send(b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        conn.read_response("GET").text(),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    let response = conn.read_response("GET");
    let id = response.request_id();
    assert_eq!(
        response.text(),
        format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\n\r\nok")
    );
    assert_eq!(
        backend.connections(),
        1,
        "the upstream connection stayed in sync"
    );
}

// HTTP/1.0 has no interim responses (RFC 9110 §15.2): no 100 from the proxy, none relayed.
fn expect_in_http10_gets_no_interim_response(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ""));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(
        b"PUT /e HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    let rest = conn.read_to_eof();
    let text = String::from_utf8_lossy(&rest);
    let id = text
        .split("X-Request-Id: ")
        .nth(1)
        .and_then(|s| s.split("\r\n").next())
        .unwrap_or_else(|| panic!("no request id in {text}"));
    assert_eq!(
        text,
        format!(
            "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
    );
    assert_eq!(
        String::from_utf8_lossy(&backend.requests()[0]),
        String::from_utf8_lossy(&with_id(
            &upstream(
                "PUT /e HTTP/1.1\r\nHost: a\r\n",
                "Content-Length: 5\r\n\r\nhello"
            ),
            id
        ))
    );
}

// http.md: `Connection: <field>` naming other headers → remove the named headers (hop-by-hop),
// then compute framing yourself: `Connection: content-length` must never leave a body unframed,
// `Connection: host` never a request without Host.
fn connection_named_fields_are_removed_and_framing_is_recomputed(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        forwarded(
            "Connection: content-length",
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\nhello",
            upstream("POST /p HTTP/1.1\r\nHost: a\r\n", "Content-Length: 5\r\n\r\nhello"),
        ),
        forwarded(
            "Connection: host",
            b"GET /h HTTP/1.1\r\nConnection: host\r\nHost: a\r\n\r\n",
            upstream("GET /h HTTP/1.1\r\nHost: a\r\n", "\r\n"),
        ),
        forwarded(
            "Connection: transfer-encoding",
            b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
            upstream(
                "POST /p HTTP/1.1\r\nHost: a\r\n",
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        forwarded(
            "named fields in any case, on several lines",
            b"GET /n HTTP/1.1\r\nHost: a\r\nX-Secret: 1\r\nConnection: X-SECRET, keep-alive\r\n\
              x-secret: 2\r\nConnection: x-other\r\nX-Other: 3\r\nX-Secret-Not: 4\r\n\r\n",
            upstream("GET /n HTTP/1.1\r\nHost: a\r\nX-Secret-Not: 4\r\n", "\r\n"),
        ),
        forwarded(
            "standard hop-by-hop fields",
            b"GET /h HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
              TE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\nX-Kept: yes\r\n\r\n",
            upstream("GET /h HTTP/1.1\r\nHost: a\r\nX-Kept: yes\r\n", "\r\n"),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// docs/config.md "Trusted proxies": a client outside `trusted_proxies` (the default: nobody) has
// its `X-Forwarded-For` and `Forwarded` dropped; the proxy writes the peer's address alone.
fn client_x_forwarded_for_is_replaced_unless_trusted(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let tail = format!(
        "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Request-Id: {{id}}\r\n\
         traceparent: {TRACEPARENT_MASK}\r\n\r\n"
    );
    let cases = [
        forwarded(
            "one field",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
            format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 127.0.0.1\r\n{tail}"),
        ),
        forwarded(
            "several fields and a Forwarded",
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: a\r\nForwarded: for=6.6.6.6\r\n\
              x-forwarded-for: 10.0.0.2, 10.0.0.3\r\nX-Kept: 1\r\n\r\n",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Kept: 1\r\nX-Forwarded-For: 127.0.0.1\r\n{tail}"
            ),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: a trusted proxy's `X-Forwarded-For` → append the peer address. The proxy's own
// forwarding fields replace the client's.
fn trusted_proxy_x_forwarded_for_is_appended_to(driver: &str) {
    let backend = RawBackend::start(Reply::Echo);
    let text = spec_config(driver, &[backend.addr], "").replacen(
        "upstream = \"api\"\n",
        "upstream = \"api\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
        1,
    );
    let proxy = Proxy::start(&text);
    let tail = format!(
        "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Request-Id: {{id}}\r\n\
         traceparent: {TRACEPARENT_MASK}\r\n\r\n"
    );
    let cases = [
        forwarded(
            "one field",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n{tail}"
            ),
        ),
        forwarded(
            "several fields, folded in order",
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: a\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n\
              X-Forwarded-For:\r\n\r\n",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1\r\n{tail}"
            ),
        ),
        forwarded(
            "named by Connection: dropped",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: x-forwarded-for\r\n\r\n",
            format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 127.0.0.1\r\n{tail}"),
        ),
        forwarded(
            "the proxy's fields replace the client's",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
            format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 127.0.0.1\r\n{tail}"),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: `Transfer_Encoding`, `Content_Length` (underscore spellings of framing fields) are never
// forwarded: a CGI/WSGI backend maps `_` and `-` to the same variable and could see a second
// framing. The same holds for every field the proxy owns (`X_Forwarded_For` would forge the
// client address); other names with `_` are the application's and pass.
fn underscore_spellings_of_the_proxys_fields_are_dropped(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        forwarded(
            "Transfer_Encoding beside Content-Length",
            b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
            upstream("POST /p HTTP/1.1\r\nHost: a\r\n", "Content-Length: 5\r\n\r\nhello"),
        ),
        forwarded(
            "Content_Length on a chunked request",
            b"POST /p HTTP/1.1\r\nHost: a\r\ncontent_length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
            upstream(
                "POST /p HTTP/1.1\r\nHost: a\r\n",
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        forwarded(
            "forged forwarding fields, and an application's own field with _",
            b"GET /f HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX_Request_Id: forged\r\n\
              X-Forwarded_Proto: https\r\nKeep_Alive: 5\r\nX_Tenant: blue\r\n\r\n",
            upstream("GET /f HTTP/1.1\r\nHost: a\r\nX_Tenant: blue\r\n", "\r\n"),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: `CONNECT` → 501 unless a route allows tunnels; never a `200` followed by more HTTP
// parsing. The backend is never contacted.
fn connect_is_refused_unless_a_route_allows_tunnels(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, TUNNEL_ROUTE);
    let cases = [
        refused(
            "CONNECT on a route without allow_connect",
            b"CONNECT api.internal:443 HTTP/1.1\r\nHost: api.internal:443\r\n\r\n",
            501,
            "tunnels (CONNECT api.internal:443) are not enabled on this route",
        ),
        refused(
            "CONNECT with content, where tunnels are allowed",
            b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\nContent-Length: 2\r\n\r\nhi",
            400,
            "a CONNECT request has no content (RFC 9110 §9.3.6)",
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

/// A route that allows tunnels to `db.internal`; everything else goes to the catch-all.
const TUNNEL_ROUTE: &str =
    "[[listener.http.route]]\nhost = \"db.internal\"\nallow_connect = true\nupstream = \"api\"\n";

// A CONNECT that a route allows goes to the backend; its 2xx turns the connection into a tunnel
// (bytes the client sent right after its head included), and HTTP-looking bytes inside it are
// relayed, not parsed. A refusal (403) is relayed and ends the client connection.
fn connect_on_a_route_that_allows_it_becomes_a_tunnel_on_2xx_only(driver: &str) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let head = read_head(&mut tcp);
                let answer: &[u8] = if head.starts_with("CONNECT db.internal:5432 HTTP/1.1\r\n") {
                    b"HTTP/1.1 200 Connection Established\r\n\r\n"
                } else {
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied"
                };
                tcp.write_all(answer).unwrap();
                // Echo whatever comes through the tunnel.
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = tcp.read(&mut chunk) {
                    if tcp.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(&spec_config(driver, &[addr], TUNNEL_ROUTE));

    let mut client = TcpStream::connect(proxy.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nearly")
        .unwrap();
    let head = read_head(&mut client);
    let id = head
        .split("X-Request-Id: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .unwrap_or_else(|| panic!("no request id in {head:?}"))
        .to_owned();
    assert_eq!(
        head,
        format!("HTTP/1.1 200 Connection Established\r\nX-Request-Id: {id}\r\n\r\n")
    );
    let http_inside = b"GET /not-for-the-proxy HTTP/1.1\r\nHost: x\r\n\r\n";
    client.write_all(http_inside).unwrap();
    let expected = [&b"early"[..], http_inside].concat();
    let mut echoed = vec![0u8; expected.len()];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&echoed),
        String::from_utf8_lossy(&expected),
        "the tunnel carries the bytes both ways, untouched"
    );

    let mut refused_conn = RawConn::open(proxy.addr);
    refused_conn.send(b"CONNECT other.internal:22 HTTP/1.1\r\nHost: db.internal\r\n\r\n");
    let response = refused_conn.read_response("GET");
    assert_eq!(response.status, 403);
    assert_eq!(response.body, b"denied");
    assert_eq!(response.header("connection"), Some("close"));
    refused_conn.assert_closed();
}

/// Reads up to the end of a head (`\r\n\r\n`), one byte at a time so nothing after it is taken.
fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
