//! Malformed backends (docs/http.md, "Responses"): a scripted origin breaks its response to
//! `/bad` in one way or another — framing that contradicts itself, an invalid status line, a flood
//! of interim responses, an unsolicited `101`, trailers that try to reframe the message, and a
//! close or a stall at every byte offset of a short response — and each case asserts exactly what
//! the client sees, then that the next clients on the same (single) worker get their own
//! responses and that the connection that carried the broken response was never used again.
//!
//! Bytes after a complete response (past `Content-Length`, after the last chunk) are the subject
//! of tests/http_spec_desync.rs and are not repeated here.

mod common;

use common::origin::{Origin, Script, Then};
use common::raw::RawConn;
use common::spec::spec_config;
use common::{on_both_drivers, Proxy};

on_both_drivers!(
    contradictory_or_invalid_heads_are_502_and_never_reused,
    a_flood_of_interim_responses_reaches_the_client_in_order,
    trailers_cannot_reframe_the_message,
    content_length_response_closed_at_every_offset,
    content_length_response_stalled_at_every_offset,
    chunked_response_closed_at_every_offset,
    chunked_response_stalled_at_every_offset,
);

/// How long the proxy waits for a stalled backend in the stall sweeps: short, so they stay fast
/// (one wait per offset), yet far above what a healthy local answer takes even on a busy
/// machine. Every other test keeps the default (30 s), so none depends on the machine's speed.
const STALL_TIMEOUT: &str = "300ms";

fn proxy_for(driver: &str, origin: &Origin) -> Proxy {
    Proxy::start(&spec_config(driver, &[origin.addr], ""))
}

/// A proxy that gives up on a silent backend after [`STALL_TIMEOUT`].
fn impatient_proxy_for(driver: &str, origin: &Origin) -> Proxy {
    Proxy::start(&spec_config(
        driver,
        &[origin.addr],
        &format!("[timeouts]\nupstream_response = \"{STALL_TIMEOUT}\"\n"),
    ))
}

/// Fresh clients on the same worker each get their own response.
fn assert_next_clients_unaffected(proxy: &Proxy, tag: &str) {
    for n in 1..=2 {
        let mut conn = RawConn::open(proxy.addr);
        conn.send(format!("GET /own/{tag}-{n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let response = conn.read_response("GET");
        assert_eq!(
            (response.status, String::from_utf8_lossy(&response.body)),
            (200, format!("{tag}-{n}").into()),
            "{tag}: the next client {n} gets its own response: {}",
            response.text()
        );
    }
}

fn get_bad(proxy: &Proxy) -> RawConn {
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /bad HTTP/1.1\r\nHost: a\r\n\r\n");
    conn
}

// Each answer contradicts itself or is not HTTP/1.1: the client gets the proxy's 502 (never a
// byte of the backend's), its connection closes, the backend's connection is closed although the
// backend keeps it open and would answer more, and the next clients are unaffected.
fn contradictory_or_invalid_heads_are_502_and_never_reused(driver: &str) {
    let cases: [(&str, &[u8], &str); 10] = [
        (
            "two different Content-Length fields",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            "conflicting Content-Length values",
        ),
        (
            "Content-Length and Transfer-Encoding",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            "both Content-Length and Transfer-Encoding",
        ),
        (
            "Transfer-Encoding twice",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Transfer-Encoding other than chunked",
        ),
        (
            "an obfuscated Transfer-Encoding",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            "invalid header field name or obs-fold line",
        ),
        (
            "a status line that is not one",
            b"HTTP/1.1 20O OK\r\nContent-Length: 0\r\n\r\n",
            "invalid status line",
        ),
        (
            "no status line at all",
            b"hello\r\n\r\n",
            "",
        ),
        (
            "a bare LF inside the status line",
            b"HTTP/1.1 200\nOK\r\nContent-Length: 0\r\n\r\n",
            "",
        ),
        (
            "HTTP/0.9-style body without a head",
            b"<html>hello</html>",
            "",
        ),
        (
            "a status above 999",
            b"HTTP/1.1 1000 Big\r\nContent-Length: 0\r\n\r\n",
            "invalid status line",
        ),
        (
            "101 to a request that asked for no upgrade",
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
            "101 Switching Protocols to a request that asked for no upgrade",
        ),
    ];
    for (index, (name, bytes, why)) in cases.into_iter().enumerate() {
        let origin = Origin::start(Script {
            bytes: bytes.to_vec(),
            then: Then::KeepServing,
        });
        let proxy = proxy_for(driver, &origin);
        let mut conn = get_bad(&proxy);
        let response = conn.read_response("GET");
        let text = response.text();
        assert_eq!(response.status, 502, "{name}: {text}");
        assert!(
            text.contains("upstream \"api\" sent an invalid response") && text.contains(why),
            "{name}: {text}"
        );
        conn.assert_closed();
        origin.wait_bad_connections_closed();
        assert_next_clients_unaffected(&proxy, &format!("head-{index}"));
        origin.assert_bad_connections_not_reused();
    }
}

// A backend that sends interim responses without end before its final one: each is relayed as
// it came, in order, the final response follows intact, and the connection stays in sync.
fn a_flood_of_interim_responses_reaches_the_client_in_order(driver: &str) {
    const INTERIM: &str = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
    const COUNT: usize = 1000;
    let mut bytes = INTERIM.repeat(COUNT).into_bytes();
    bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
    let origin = Origin::start(Script {
        bytes,
        then: Then::KeepServing,
    });
    let proxy = proxy_for(driver, &origin);
    let mut conn = get_bad(&proxy);
    let mut interim = 0;
    let last = loop {
        let response = conn.read_response("GET");
        if response.status != 103 {
            break response;
        }
        assert_eq!(response.text(), INTERIM, "interim response {interim}");
        interim += 1;
    };
    assert_eq!(interim, COUNT, "every interim response was relayed");
    let id = last.request_id();
    assert_eq!(
        last.text(),
        format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 5\r\n\r\nfinal")
    );
    conn.send(b"GET /own/same-connection HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(conn.read_response("GET").body, b"same-connection");
    assert_next_clients_unaffected(&proxy, "flood");
}

// Trailer fields that would reframe the message if a later hop merged them into the head
// (Content-Length, Transfer-Encoding) are never forwarded; the body and the other trailer fields
// are, and the connection, whose message ended at its framing, stays in sync.
fn trailers_cannot_reframe_the_message(driver: &str) {
    let origin = Origin::start(Script {
        bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\
                 Content-Length: 40\r\nTransfer-Encoding: chunked\r\nX-Checksum: abc\r\n\r\n"
            .to_vec(),
        then: Then::KeepServing,
    });
    let proxy = proxy_for(driver, &origin);
    let mut conn = get_bad(&proxy);
    let response = conn.read_response("GET");
    let id = response.request_id();
    assert_eq!(
        response.text(),
        format!(
            "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"
        )
    );
    conn.send(b"GET /own/after-trailers HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(conn.read_response("GET").body, b"after-trailers");
    assert_next_clients_unaffected(&proxy, "trailers");
}

/// A short response (head + body, about 60 bytes) and what the proxy forwards of it for a
/// request id: the rebuilt head, then the body as the client leg frames it.
struct Shape {
    name: &'static str,
    response: &'static [u8],
    head_len: usize,
    forwarded_head: fn(&str) -> String,
    forwarded_body: &'static [u8],
}

const CONTENT_LENGTH: Shape = Shape {
    name: "content-length",
    response: b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nabcdefghijklmnopqrst",
    head_len: 39,
    forwarded_head: |id| {
        format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 20\r\n\r\n")
    },
    forwarded_body: b"abcdefghijklmnopqrst",
};

const CHUNKED: Shape = Shape {
    name: "chunked",
    response:
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
    head_len: 47,
    forwarded_head: |id| {
        format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n")
    },
    forwarded_body: b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
};

/// For every offset `k` of `shape`'s response: the backend writes its first `k` bytes, then
/// closes or stalls (`then`). The client gets the proxy's own error (502 for a close, 504 for a
/// stall) while the head is incomplete, or else exactly the head and the body bytes the backend
/// sent as far as they reach — never padded, never completed — and then its connection closes;
/// the backend's connection is closed and never reused, and the next clients are unaffected.
/// Finally the whole response, on a connection that stays healthy, reaches the client whole.
fn sweep(driver: &str, shape: &Shape, then: Then) {
    assert_eq!(
        &shape.response[shape.head_len - 4..shape.head_len],
        b"\r\n\r\n"
    );
    let origin = Origin::start(Script {
        bytes: Vec::new(),
        then,
    });
    let proxy = if then == Then::Stall {
        impatient_proxy_for(driver, &origin)
    } else {
        proxy_for(driver, &origin)
    };
    for k in 0..shape.response.len() {
        let case = format!("{} {then:?} after {k} bytes", shape.name);
        origin.set_script(Script {
            bytes: shape.response[..k].to_vec(),
            then,
        });
        let mut conn = get_bad(&proxy);
        if k < shape.head_len {
            let response = conn.read_response("GET");
            let text = response.text();
            let status = if then == Then::Close { 502 } else { 504 };
            assert_eq!(response.status, status, "{case}: {text}");
            assert!(
                text.contains("upstream \"api\"") && text.contains("Connection: close"),
                "{case}: the proxy's own error: {text}"
            );
            conn.assert_closed();
        } else {
            let received = conn.read_to_eof();
            let text = String::from_utf8_lossy(&received).into_owned();
            let id = text
                .split("X-Request-Id: ")
                .nth(1)
                .and_then(|rest| rest.split("\r\n").next())
                .unwrap_or_else(|| panic!("{case}: no X-Request-Id in {text:?}"));
            let head = (shape.forwarded_head)(id);
            assert!(
                text.starts_with(&head),
                "{case}: the head is forwarded: {text:?}"
            );
            let body = &received[head.len()..];
            let sent_body = &shape.response[shape.head_len..k];
            if shape.name == "content-length" {
                assert_eq!(
                    String::from_utf8_lossy(body),
                    String::from_utf8_lossy(sent_body),
                    "{case}: exactly the body bytes sent"
                );
            } else {
                assert!(
                    shape.forwarded_body.starts_with(body)
                        && body.len() < shape.forwarded_body.len(),
                    "{case}: a strict prefix of the chunked body: {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        origin.wait_bad_connections_closed();
        assert_next_clients_unaffected(&proxy, &format!("{}-{k}", shape.name));
        origin.assert_bad_connections_not_reused();
    }

    origin.set_script(Script {
        bytes: shape.response.to_vec(),
        then: Then::KeepServing,
    });
    let mut conn = get_bad(&proxy);
    let response = conn.read_response("GET");
    let id = response.request_id();
    let mut whole = (shape.forwarded_head)(&id).into_bytes();
    whole.extend_from_slice(shape.forwarded_body);
    assert_eq!(response.text(), String::from_utf8_lossy(&whole));
    conn.send(b"GET /own/whole HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(conn.read_response("GET").body, b"whole");
}

fn content_length_response_closed_at_every_offset(driver: &str) {
    sweep(driver, &CONTENT_LENGTH, Then::Close);
}

fn content_length_response_stalled_at_every_offset(driver: &str) {
    sweep(driver, &CONTENT_LENGTH, Then::Stall);
}

fn chunked_response_closed_at_every_offset(driver: &str) {
    sweep(driver, &CHUNKED, Then::Close);
}

fn chunked_response_stalled_at_every_offset(driver: &str) {
    sweep(driver, &CHUNKED, Then::Stall);
}
