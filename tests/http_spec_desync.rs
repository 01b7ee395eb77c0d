//! "Bytes after a complete response never reach any client" (docs/http.md, responses): a
//! backend that sends more than its framing says — a body longer than its `Content-Length`, bytes
//! after the last chunk, bytes after a bodiless response (HEAD, 204, 304) — in the same segment
//! as the response or in a later one, while its connection would go back to the keep-alive pool.
//!
//! Each case: client A asks for the bad response and gets exactly the framed part of it; then
//! three other clients, each on its own connection, ask for their own answer and must get it
//! (before the fix, each got the previous one's). The poisoned connection is never used again,
//! the event is counted in the backend's `protocol_errors_total` and logged. One worker, so there
//! is one pool and the poisoned connection is the one the next request would take.

mod common;

use common::admin;
use common::origin::own_answer;
use common::raw::RawConn;
use common::spec::spec_config;
use common::{on_both_drivers, wait_until, Proxy};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_drivers!(
    body_longer_than_content_length_in_the_same_segment,
    body_longer_than_content_length_beyond_the_head_buffer,
    body_longer_than_content_length_in_a_later_segment,
    bytes_after_the_last_chunk_in_the_same_segment,
    bytes_after_the_last_chunk_in_a_later_segment,
    bytes_after_a_head_response,
    bytes_after_a_204_response,
    bytes_after_a_304_response,
);

/// A complete response a broken backend appends: read as the next request's response, it would
/// reach another client.
const EVIL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL";

/// What the backend does with the request for `/bad`.
struct Misbehaviour {
    /// Written in one write as the answer.
    answer: Vec<u8>,
    /// Written later, in a write of its own, when the test says so.
    later: Option<Vec<u8>>,
}

/// A backend that answers `/bad` as told and any other path `/own/X` with `200` and the body `X`,
/// keeping its connections; it records which connection served which request.
struct Backend {
    addr: SocketAddr,
    served: Arc<Mutex<Vec<(usize, String)>>>,
    release_later: Sender<()>,
    later_written: Receiver<()>,
}

impl Backend {
    fn start(misbehaviour: Misbehaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let (release_later, later_released) = channel::<()>();
        let (later_done, later_written) = channel::<()>();
        let later_released = Arc::new(Mutex::new(later_released));
        let misbehaviour = Arc::new(misbehaviour);
        let log = served.clone();
        std::thread::spawn(move || {
            for (index, tcp) in listener.incoming().flatten().enumerate() {
                let (log, misbehaviour) = (log.clone(), misbehaviour.clone());
                let (later_released, later_done) = (later_released.clone(), later_done.clone());
                std::thread::spawn(move || {
                    serve(
                        tcp,
                        index,
                        &log,
                        &misbehaviour,
                        &later_released,
                        &later_done,
                    );
                });
            }
        });
        Backend {
            addr,
            served,
            release_later,
            later_written,
        }
    }

    /// Has the backend write its late bytes, and returns once they are written.
    fn send_the_late_bytes(&self) {
        self.release_later.send(()).unwrap();
        self.later_written
            .recv_timeout(Duration::from_secs(5))
            .expect("the backend wrote its late bytes");
    }

    /// The connection (in accept order) that served each request, by path.
    fn served(&self) -> Vec<(usize, String)> {
        self.served.lock().unwrap().clone()
    }
}

fn serve(
    mut tcp: TcpStream,
    index: usize,
    log: &Mutex<Vec<(usize, String)>>,
    misbehaviour: &Misbehaviour,
    later_released: &Mutex<Receiver<()>>,
    later_done: &Sender<()>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            log.lock().unwrap().push((index, path.clone()));
            if path == "/bad" {
                let _ = tcp.write_all(&misbehaviour.answer);
                if let Some(later) = &misbehaviour.later {
                    let released = later_released.lock().unwrap().recv();
                    if released.is_ok() {
                        let _ = tcp.write_all(later);
                        let _ = later_done.send(());
                    }
                }
            } else {
                let _ = tcp.write_all(&own_answer(&path));
            }
        }
        match tcp.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The case: `method /bad` gets `answer` (+ `later`); client A must receive exactly `expected`
/// (with its request id in place of `{id}`).
fn run_case(driver: &str, method: &str, answer: Vec<u8>, later: Option<Vec<u8>>, expected: &[u8]) {
    let has_later = later.is_some();
    let backend = Backend::start(Misbehaviour { answer, later });
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ""));

    let mut a = RawConn::open(proxy.addr);
    a.send(format!("{method} /bad HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let response = a.read_response(method);
    let id = response.request_id();
    let expected = String::from_utf8_lossy(expected).replace("{id}", &id);
    assert_eq!(
        response.text(),
        expected,
        "client A gets exactly the framed response, nothing past it"
    );
    if has_later {
        backend.send_the_late_bytes();
    }

    for n in 1..=3 {
        let mut other = RawConn::open(proxy.addr);
        other.send(format!("GET /own/client-{n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let response = other.read_response("GET");
        assert_eq!(
            (
                response.status,
                String::from_utf8_lossy(&response.body).into_owned()
            ),
            (200, format!("client-{n}")),
            "client {n} gets its own response: {}",
            response.text()
        );
    }
    // Client A's connection is still in sync too.
    a.send(b"GET /own/client-a HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(a.read_response("GET").body, b"client-a");

    let served = backend.served();
    let poisoned = served
        .iter()
        .find(|(_, path)| path == "/bad")
        .map(|(connection, _)| *connection)
        .unwrap();
    let reused: Vec<_> = served
        .iter()
        .filter(|(connection, path)| *connection == poisoned && path != "/bad")
        .collect();
    assert!(
        reused.is_empty(),
        "the connection that carried the extra bytes was used again: {served:?}"
    );

    let admin_addr = proxy.admin_addr();
    let protocol_errors = || {
        let api = admin::json(admin_addr, "/api/backends", None);
        admin::backend(&api, "api", backend.addr)["protocol_errors_total"]
            .as_u64()
            .expect("protocol_errors_total is a count")
    };
    wait_until(
        Duration::from_secs(5),
        "the protocol error to be counted",
        || protocol_errors() >= 1,
    );
    assert_eq!(protocol_errors(), 1, "counted once");
}

fn body_longer_than_content_length_in_the_same_segment(driver: &str) {
    let answer = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
        EVIL,
    ]
    .concat();
    run_case(
        driver,
        "GET",
        answer,
        None,
        b"HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 5\r\n\r\nhello",
    );
}

// The reproduction: the body is larger than the head buffer, so the extra bytes come
// with the body's last reads rather than with the head.
fn body_longer_than_content_length_beyond_the_head_buffer(driver: &str) {
    let body = vec![b'b'; 100_000];
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    let answer = [&head[..], &body, EVIL].concat();
    let expected = [
        &b"HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 100000\r\n\r\n"[..],
        &body,
    ]
    .concat();
    run_case(driver, "GET", answer, None, &expected);
}

fn body_longer_than_content_length_in_a_later_segment(driver: &str) {
    run_case(
        driver,
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        Some(EVIL.to_vec()),
        b"HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 5\r\n\r\nhello",
    );
}

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
const CHUNKED_FORWARDED: &[u8] =
    b"HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

fn bytes_after_the_last_chunk_in_the_same_segment(driver: &str) {
    let answer = [CHUNKED, EVIL].concat();
    run_case(driver, "GET", answer, None, CHUNKED_FORWARDED);
}

// The case that fools nginx and HAProxy alike.
fn bytes_after_the_last_chunk_in_a_later_segment(driver: &str) {
    run_case(
        driver,
        "GET",
        CHUNKED.to_vec(),
        Some(EVIL.to_vec()),
        CHUNKED_FORWARDED,
    );
}

fn bytes_after_a_head_response(driver: &str) {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let expected = b"HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 5\r\n\r\n";
    // The body a HEAD response must not have, and then a whole response.
    let same = [&head[..], b"hello", EVIL].concat();
    run_case(driver, "HEAD", same, None, expected);
    run_case(driver, "HEAD", head.to_vec(), Some(EVIL.to_vec()), expected);
}

fn bytes_after_a_204_response(driver: &str) {
    let head = b"HTTP/1.1 204 No Content\r\n\r\n";
    let expected = b"HTTP/1.1 204 No Content\r\nX-Request-Id: {id}\r\n\r\n";
    run_case(driver, "GET", [&head[..], EVIL].concat(), None, expected);
    run_case(driver, "GET", head.to_vec(), Some(EVIL.to_vec()), expected);
}

fn bytes_after_a_304_response(driver: &str) {
    let head = b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n";
    let expected = b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nX-Request-Id: {id}\r\n\r\n";
    run_case(driver, "GET", [&head[..], EVIL].concat(), None, expected);
    run_case(driver, "GET", head.to_vec(), Some(EVIL.to_vec()), expected);
}
