//! docs/http.md, "How this is tested": feeding the same bytes in any split must give the same
//! result, because many desync bugs live at buffer boundaries. The codec has property tests for
//! parsing; this checks the proxy's own buffering end to end: the same pipelined requests,
//! delivered whole, one byte at a time, cut once at every position, and cut at random places, must
//! make the backend receive exactly the same bytes and the client exactly the same responses.

mod common;

use common::backend::{RawBackend, Reply};
use common::on_both_drivers;
use common::raw::RawConn;
use common::spec::{assert_proxy_error, echo_response, proxy_fields, spec_config};
use common::Proxy;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

on_both_drivers!(
    chunked_then_bare_lf_pair,
    content_length_then_connection_named_field_pair,
    expect_continue_then_get_pair,
    valid_request_then_smuggling_attempt,
);

/// What the client must receive, response by response.
enum Answer {
    Exact(Vec<u8>),
    /// The proxy's own error (its request id is generated, so not known in advance).
    ProxyError(u16, &'static str),
}

/// Pipelined requests and exactly what they must produce, whatever the split.
struct Scenario {
    /// The client's bytes, every request back to back.
    raw: Vec<u8>,
    /// Every byte the backend must receive.
    forwarded: Vec<u8>,
    answers: Vec<Answer>,
    /// The proxy closes the connection after the last answer.
    closes: bool,
}

/// A forwarded head for `start` (request line and Host) and `fields`, with the client-chosen
/// request id `id`, then `end` (framing, empty line, body).
fn forwarded_head(start: &str, fields: &str, id: &str, end: &str) -> String {
    format!(
        "{start}Host: a\r\n{fields}{}{end}",
        proxy_fields(Some("a"), id)
    )
}

fn echoed(forwarded: &str, id: &str) -> Answer {
    Answer::Exact(echo_response(forwarded.as_bytes(), id))
}

fn chunked_then_bare_lf_pair(driver: &str) {
    let first = forwarded_head(
        "POST /a HTTP/1.1\r\n",
        "",
        "s-1",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n",
    );
    let second = forwarded_head("GET /b HTTP/1.1\r\n", "X-Kept: 2\r\n", "s-2", "\r\n");
    check_every_split(
        driver,
        Scenario {
            raw: b"POST /a HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-1\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5;e=1\r\nhello\r\n01A;q=\"x\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n\
                   GET /b HTTP/1.1\nHost: a\nX-Request-Id: s-2\nX-Kept:  2\n\n"
                .to_vec(),
            forwarded: [first.as_bytes(), second.as_bytes()].concat(),
            answers: vec![echoed(&first, "s-1"), echoed(&second, "s-2")],
            closes: false,
        },
    );
}

fn content_length_then_connection_named_field_pair(driver: &str) {
    let first = forwarded_head(
        "POST /c HTTP/1.1\r\n",
        "",
        "s-3",
        "Content-Length: 11\r\n\r\nhello world",
    );
    let second = forwarded_head("GET /d HTTP/1.1\r\n", "", "s-4", "\r\n");
    let third = forwarded_head("DELETE /e HTTP/1.1\r\n", "", "s-5", "\r\n");
    check_every_split(
        driver,
        Scenario {
            raw: b"POST /c HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-3\r\nContent-Length: 11\r\n\r\nhello world\
                   GET /d HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-4\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n\
                   DELETE /e HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-5\r\n\r\n"
                .to_vec(),
            forwarded: [first.as_bytes(), second.as_bytes(), third.as_bytes()].concat(),
            answers: vec![
                echoed(&first, "s-3"),
                echoed(&second, "s-4"),
                echoed(&third, "s-5"),
            ],
            closes: false,
        },
    );
}

fn expect_continue_then_get_pair(driver: &str) {
    let first = forwarded_head(
        "PUT /e HTTP/1.1\r\n",
        "",
        "s-6",
        "Content-Length: 3\r\n\r\nabc",
    );
    let second = forwarded_head("GET /f HTTP/1.1\r\n", "", "s-7", "\r\n");
    check_every_split(
        driver,
        Scenario {
            raw: b"PUT /e HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-6\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc\
                   GET /f HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-7\r\n\r\n"
                .to_vec(),
            forwarded: [first.as_bytes(), second.as_bytes()].concat(),
            answers: vec![
                Answer::Exact(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
                echoed(&first, "s-6"),
                echoed(&second, "s-7"),
            ],
            closes: false,
        },
    );
}

// The second request is refused whatever the split: only the first is ever forwarded, and the
// bytes after the refused head never reach the backend as a request.
fn valid_request_then_smuggling_attempt(driver: &str) {
    let first = forwarded_head("GET /g HTTP/1.1\r\n", "", "s-8", "\r\n");
    check_every_split(
        driver,
        Scenario {
            raw: b"GET /g HTTP/1.1\r\nHost: a\r\nX-Request-Id: s-8\r\n\r\n\
                   POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
                   0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
                .to_vec(),
            forwarded: first.as_bytes().to_vec(),
            answers: vec![
                echoed(&first, "s-8"),
                Answer::ProxyError(400, "both Content-Length and Transfer-Encoding"),
            ],
            closes: true,
        },
    );
}

/// Delivers `scenario.raw` whole, one byte at a time, cut once at every position, and cut at 20
/// random sets of positions, each on a new connection, and asserts the same outcome every time.
fn check_every_split(driver: &str, scenario: Scenario) {
    let backend = RawBackend::start(Reply::Echo);
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ""));
    let len = scenario.raw.len();
    let mut deliveries: Vec<Vec<usize>> = vec![vec![], (1..len).collect()];
    deliveries.extend((1..len).map(|cut| vec![cut]));
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15 ^ len as u64);
    for _ in 0..20 {
        let mut cuts: Vec<usize> = (0..1 + random.below(6))
            .map(|_| 1 + random.below(len - 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        deliveries.push(cuts);
    }
    for cuts in &deliveries {
        check_delivery(proxy.addr, &backend, &scenario, cuts);
    }
}

/// One delivery of `scenario.raw`, cut at `cuts` with a short pause at each cut.
fn check_delivery(proxy: SocketAddr, backend: &RawBackend, scenario: &Scenario, cuts: &[usize]) {
    let before = backend.bytes().len();
    let mut conn = RawConn::open(proxy);
    let writer = std::thread::spawn({
        let mut stream = conn.stream().try_clone().unwrap();
        let raw = scenario.raw.clone();
        let cuts = cuts.to_vec();
        move || {
            let mut start = 0;
            for end in cuts.into_iter().chain([raw.len()]) {
                // The proxy may close after refusing a request: later writes may fail.
                if stream.write_all(&raw[start..end]).is_err() {
                    return;
                }
                start = end;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    for (index, answer) in scenario.answers.iter().enumerate() {
        let response = conn.read_response("GET");
        match answer {
            Answer::Exact(expected) => assert_eq!(
                response.text(),
                String::from_utf8_lossy(expected),
                "answer {index} with cuts at {cuts:?}"
            ),
            Answer::ProxyError(status, detail) => {
                assert_proxy_error(&response, *status, detail);
            }
        }
    }
    writer.join().unwrap();
    if scenario.closes {
        conn.assert_closed();
    }
    assert_eq!(
        String::from_utf8_lossy(&backend.bytes()[before..]),
        String::from_utf8_lossy(&scenario.forwarded),
        "bytes forwarded with cuts at {cuts:?}"
    );
}

/// A small deterministic generator: the same "random" cuts on every run.
struct XorShift(u64);

impl XorShift {
    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
