//! The proxy end to end on real sockets: balancing across real demo-API processes, failover when
//! an instance is killed, keep-alive reuse, streamed bodies, pipelining, forwarded headers, and
//! the errors the proxy makes itself. Every scenario runs on both io drivers.

mod common;

use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::demo::DemoApi;
use common::{config, on_both_drivers, Proxy};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_both_drivers!(
    round_robin_spreads_requests_evenly_across_three_instances,
    weighted_backend_gets_three_times_the_requests,
    killing_an_instance_under_load_fails_no_request,
    keep_alive_reuses_upstream_connections,
    large_bodies_stream_through_intact,
    pipelined_requests_are_answered_in_order,
    forwarded_head_is_rebuilt_with_forwarding_headers,
    refused_backends_are_skipped_and_all_refused_is_502,
    silent_backend_is_504_with_the_request_id,
    slowloris_gets_408_while_others_are_served,
    body_over_the_limit_is_413_and_never_forwarded,
    in_flight_requests_finish_during_shutdown,
    a_burst_of_connections_waiting_to_be_accepted_is_served_whole,
    an_early_response_reaches_a_client_still_sending_its_body,
    a_keep_alive_connection_parked_while_idle_is_served_and_still_times_out,
);

fn instance_of(response: &client::Response) -> String {
    response.header("x-instance").unwrap_or("?").to_owned()
}

fn round_robin_spreads_requests_evenly_across_three_instances(driver: &str) {
    let apis: Vec<DemoApi> = (1..=3).map(DemoApi::start).collect();
    let backends: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&config(driver, &backends, ""));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..60 {
        let response = client::get(proxy.addr, "/");
        assert_eq!(response.status, 200, "{}", response.text());
        *counts.entry(instance_of(&response)).or_default() += 1;
    }
    // Each of the 2 workers rotates on its own: per backend, 60/3 ± 1 per worker.
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (instance, count) in &counts {
        assert!(
            (18..=22).contains(count),
            "instance {instance} got {count} of 60: {counts:?}"
        );
    }
}

fn weighted_backend_gets_three_times_the_requests(driver: &str) {
    let heavy = DemoApi::start(1);
    let light = DemoApi::start(2);
    let toml = format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\n[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbalance = \"weighted\"\nbackends = [{{ address = \"{}\", weight = 3 }}, {{ address = \"{}\", weight = 1 }}]\n",
        heavy.addr, light.addr
    );
    let proxy = Proxy::start(&toml);
    let mut conn = Conn::open(proxy.addr);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        let response = conn.read_response("GET").unwrap();
        *counts.entry(instance_of(&response)).or_default() += 1;
    }
    assert_eq!(counts.get("1"), Some(&150), "{counts:?}");
    assert_eq!(counts.get("2"), Some(&50), "{counts:?}");
}

fn killing_an_instance_under_load_fails_no_request(driver: &str) {
    let mut apis: Vec<DemoApi> = (1..=3).map(DemoApi::start).collect();
    let backends: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&config(driver, &backends, ""));
    let addr = proxy.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut conn = Conn::open(addr);
                while !stop.load(Ordering::SeqCst) {
                    // Half the clients keep their connection alive, half reconnect every time.
                    if i % 2 == 1 {
                        conn = Conn::open(addr);
                    }
                    conn.send(b"GET /delay?ms=2 HTTP/1.1\r\nHost: test\r\n\r\n");
                    match conn.read_response("GET") {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                        Err(e) => failures.push(e.to_string()),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    common::wait_until(
        Duration::from_secs(20),
        "100 requests before the kill",
        || done.load(Ordering::SeqCst) >= 100,
    );
    apis[1].kill9();
    let killed_at = done.load(Ordering::SeqCst);
    common::wait_until(
        Duration::from_secs(30),
        "300 requests after the kill",
        || done.load(Ordering::SeqCst) >= killed_at + 300,
    );
    stop.store(true, Ordering::SeqCst);
    common::assert_no_failed_requests(clients);
}

fn keep_alive_reuses_upstream_connections(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let proxy = Proxy::start(&config(driver, &[backend.addr], ""));
    for _ in 0..5 {
        let mut conn = Conn::open(proxy.addr);
        for _ in 0..10 {
            conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
            assert_eq!(conn.read_response("GET").unwrap().body, b"ok");
        }
    }
    assert_eq!(backend.requests().len(), 50);
    // One pooled connection per worker is enough for sequential requests.
    assert!(
        backend.connections() <= 2,
        "backend saw {} connections for 50 requests",
        backend.connections()
    );
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn large_bodies_stream_through_intact(driver: &str) {
    let api = DemoApi::start(1);
    let proxy = Proxy::start(&config(driver, &[api.addr], ""));
    let body: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();

    // Content-Length request body, echoed back.
    let mut conn = Conn::open(proxy.addr);
    conn.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    conn.send(&body);
    let echoed = conn.read_response("POST").unwrap();
    assert_eq!(echoed.status, 200);
    assert!(
        echoed.body == body,
        "CL echo differs ({} bytes back)",
        echoed.body.len()
    );

    // Chunked request body in uneven chunks, on the same connection.
    let mut raw =
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(100_003) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    conn.send(&raw);
    let echoed = conn.read_response("POST").unwrap();
    assert_eq!(echoed.status, 200);
    assert!(
        echoed.body == body,
        "chunked echo differs ({} bytes back)",
        echoed.body.len()
    );

    // Large Content-Length response.
    conn.send(b"GET /bytes?n=8388608 HTTP/1.1\r\nHost: test\r\n\r\n");
    let bytes = conn.read_response("GET").unwrap();
    assert_eq!(bytes.header("content-length"), Some("8388608"));
    assert!(
        bytes.body == pattern(8 * 1024 * 1024),
        "8 MiB response differs"
    );
}

/// 300 clients connect and send their request before the proxy has accepted any of them: the
/// accept loop takes the waiting connections in batches (non-blocking accepts after each awaited
/// one), and every one of them is served.
fn a_burst_of_connections_waiting_to_be_accepted_is_served_whole(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let proxy = Proxy::start(&config(driver, &[backend.addr], ""));
    let mut conns: Vec<Conn> = (0..300).map(|_| Conn::open(proxy.addr)).collect();
    for conn in &mut conns {
        conn.send(b"GET / HTTP/1.1\r\nHost: burst\r\n\r\n");
    }
    for conn in &mut conns {
        let response = conn
            .read_response("GET")
            .expect("every connection is answered");
        assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    }
    assert_eq!(backend.requests().len(), 300);
}

/// A backend that answers every request as soon as it has the head — an early 200, as an
/// application refusing an upload does with its own 413 — without reading any body; then it closes
/// the connection, or keeps it open and reads nothing more.
fn early_answering_backend(close_after: bool) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut tcp = tcp;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match std::io::Read::read(&mut tcp, &mut byte) {
                        Ok(1) => head.push(byte[0]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        _ => return,
                    }
                }
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
                if close_after {
                    let _ = tcp.shutdown(std::net::Shutdown::Both);
                } else {
                    std::thread::sleep(Duration::from_secs(30));
                }
            });
        }
    });
    addr
}

/// The backend answers a POST early while the client is still sending an 8 MiB body — more than
/// the socket buffers hold, so the upload is still running when the response is complete. The
/// proxy relays the response and reads the rest of the body away (it is dropped, not sent): every
/// write of the client succeeds, it reads the response whole, and its connection stays in sync
/// for the next request. Closing with the body unread, as the proxy did, reset the connection: the
/// client's writes failed and its response could be lost.
fn an_early_response_reaches_a_client_still_sending_its_body(driver: &str) {
    for close_after in [true, false] {
        let backend = early_answering_backend(close_after);
        let proxy = Proxy::start(&config(driver, &[backend], ""));
        let mut conn = Conn::open(proxy.addr);
        let body = pattern(8 * 1024 * 1024);
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut writer = conn.stream().try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            writer.write_all(head.as_bytes())?;
            writer.write_all(&body)
        });
        let response = conn
            .read_response("POST")
            .expect("the early response arrives whole");
        assert_eq!((response.status, response.text().as_str()), (200, "early"));
        sender
            .join()
            .unwrap()
            .expect("every byte of the body was taken: the proxy read it away, no reset");
        conn.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
        let next = conn
            .read_response("GET")
            .expect("the connection is still in sync");
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "early"),
            "backend closes: {close_after}"
        );
    }
}

fn pipelined_requests_are_answered_in_order(driver: &str) {
    let api = DemoApi::start(1);
    let proxy = Proxy::start(&config(driver, &[api.addr], ""));
    let mut conn = Conn::open(proxy.addr);
    let mut burst = Vec::new();
    for code in [201, 202, 203, 204, 205] {
        burst.extend_from_slice(
            format!("GET /status?code={code} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        );
    }
    burst.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
    burst.extend_from_slice(b"GET /status?code=206 HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.send(&burst);
    for code in [201, 202, 203, 204, 205] {
        assert_eq!(conn.read_response("GET").unwrap().status, code);
    }
    let echo = conn.read_response("POST").unwrap();
    assert_eq!((echo.status, echo.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(conn.read_response("GET").unwrap().status, 206);
}

fn forwarded_head_is_rebuilt_with_forwarding_headers(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ));
    let proxy = Proxy::start(&config(driver, &[backend.addr], ""));
    let response = client::request(
        proxy.addr,
        b"GET /a?b=c HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close, X-Secret\r\n\
          X-Secret: hop\r\nKeep-Alive: timeout=5\r\nX-Request-Id: from-client-42\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-request-id"), Some("from-client-42"));
    let forwarded = String::from_utf8(backend.requests().remove(0)).unwrap();
    assert!(
        forwarded.starts_with("GET /a?b=c HTTP/1.1\r\n"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("\r\nHost: example.test\r\n"),
        "{forwarded}"
    );
    assert!(
        // 127.0.0.1 is not a trusted proxy: the client's own value is dropped.
        forwarded.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n")
            && !forwarded.contains("203.0.113.9"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("\r\nX-Forwarded-Proto: http\r\n"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("\r\nX-Forwarded-Host: example.test\r\n"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("\r\nX-Request-Id: from-client-42\r\n"),
        "{forwarded}"
    );
    assert!(forwarded.contains("\r\nAccept: */*\r\n"), "{forwarded}");
    let lower = forwarded.to_ascii_lowercase();
    assert!(
        !lower.contains("x-secret"),
        "header named in Connection must go: {forwarded}"
    );
    assert!(
        !lower.contains("keep-alive: timeout"),
        "hop-by-hop header must go: {forwarded}"
    );

    // Without an incoming id the proxy makes one, the same in the forwarded head and the response.
    let response = client::get(proxy.addr, "/b");
    let id = response
        .header("x-request-id")
        .expect("response carries the request id")
        .to_owned();
    let forwarded = String::from_utf8(backend.requests().remove(1)).unwrap();
    assert!(
        forwarded.contains(&format!("\r\nX-Request-Id: {id}\r\n")),
        "{forwarded}"
    );
}

fn refused_backends_are_skipped_and_all_refused_is_502(driver: &str) {
    let api = DemoApi::start(7);
    let (dead1, dead2) = (common::refusing_port(), common::refusing_port());
    let proxy = Proxy::start(&config(driver, &[dead1, api.addr, dead2], ""));
    for _ in 0..12 {
        let response = client::get(proxy.addr, "/");
        assert_eq!(
            (response.status, instance_of(&response)),
            (200, "7".to_owned())
        );
    }
    drop(proxy);

    let proxy = Proxy::start(&config(driver, &[dead1, dead2], ""));
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 502);
    let id = response.header("x-request-id").unwrap().to_owned();
    let text = response.text();
    assert!(
        text.starts_with("502 Bad Gateway: upstream \"api\""),
        "{text}"
    );
    assert!(text.contains("refused the connection"), "{text}");
    assert!(text.contains(&format!("(request id {id})")), "{text}");
    assert_eq!(response.header("connection"), Some("close"));
}

fn silent_backend_is_504_with_the_request_id(driver: &str) {
    let backend = RawBackend::start(Reply::Silent);
    let proxy = Proxy::start(&config(
        driver,
        &[backend.addr],
        "[timeouts]\nupstream_response = \"300ms\"\n",
    ));
    let started = Instant::now();
    let response = client::get(proxy.addr, "/slow");
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let id = response.header("x-request-id").unwrap();
    assert!(response.text().contains(id));
    assert!(
        response.text().contains("did not respond within"),
        "{}",
        response.text()
    );
}

fn slowloris_gets_408_while_others_are_served(driver: &str) {
    let api = DemoApi::start(1);
    let proxy = Proxy::start(&config(
        driver,
        &[api.addr],
        "[timeouts]\nclient_header = \"500ms\"\n",
    ));
    let mut slow = Conn::open(proxy.addr);
    slow.send(b"GET / HTTP/1.1\r\nHost: te");
    let started = Instant::now();
    // Meanwhile a normal client is served.
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 200);
    // The slow client trickles one byte at a time, never finishing the head.
    let trickle = std::thread::spawn({
        let mut stream = slow.stream().try_clone().unwrap();
        move || {
            for _ in 0..10 {
                if stream.write_all(b"s").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let response = slow.read_response("GET").unwrap();
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(response.header("connection"), Some("close"));
    trickle.join().unwrap();
}

fn body_over_the_limit_is_413_and_never_forwarded(driver: &str) {
    let backend = RawBackend::start(Reply::Echo);
    let proxy = Proxy::start(&config(
        driver,
        &[backend.addr],
        "[limits]\nmax_body = \"1KiB\"\n",
    ));
    let response = client::request(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 2048\r\n\r\n",
    );
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.text().contains("larger than the limit"));

    // Chunked bodies are counted as they stream.
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let response = client::request(proxy.addr, &raw);
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(
        backend.requests().is_empty(),
        "no complete request may reach the backend"
    );
}

fn in_flight_requests_finish_during_shutdown(driver: &str) {
    let backend = RawBackend::start(Reply::Delayed(
        Duration::from_millis(800),
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec(),
    ));
    let proxy = Proxy::start(&config(driver, &[backend.addr], ""));
    let addr = proxy.addr;
    let slow = std::thread::spawn(move || client::get(addr, "/slow"));
    common::wait_until(
        Duration::from_secs(10),
        "the request to reach the backend",
        || backend.requests().len() == 1,
    );
    let mut idle = Conn::open(addr);
    let stopping = Instant::now();
    proxy.stop();
    let response = slow.join().unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "drain waited for the idle connection"
    );
    assert!(
        idle.is_closed(),
        "idle keep-alive connection closed by the drain"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

// A kept-alive connection quiet for longer than the proxy's parking delay (500 ms) gives up its
// read buffer and waits for readability without one (src/l7/session.rs, `between_requests`).
// What must not change: the next request is served whole (sent in pieces, or pipelined), the
// `client_idle` timeout still closes it, and a drain still closes it at once.
fn a_keep_alive_connection_parked_while_idle_is_served_and_still_times_out(driver: &str) {
    const PARKED: Duration = Duration::from_millis(800);
    let api = DemoApi::start(1);
    let proxy = Proxy::start(&config(
        driver,
        &[api.addr],
        "[timeouts]\nclient_idle = \"3s\"\n",
    ));
    let mut conn = Conn::open(proxy.addr);
    let get = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    conn.send(get);
    assert_eq!(conn.read_response("GET").unwrap().status, 200);

    // Parked, then a head in two pieces with a pause between them.
    std::thread::sleep(PARKED);
    conn.send(&get[..10]);
    std::thread::sleep(Duration::from_millis(50));
    conn.send(&get[10..]);
    let response = conn.read_response("GET").unwrap();
    assert_eq!((response.status, instance_of(&response)), (200, "1".into()));

    // Parked again, then two pipelined requests in one write: both answered, in order.
    std::thread::sleep(PARKED);
    let mut two = get.to_vec();
    two.extend_from_slice(b"GET /status?code=204 HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.send(&two);
    assert_eq!(conn.read_response("GET").unwrap().status, 200);
    assert_eq!(conn.read_response("GET").unwrap().status, 204);

    // Left idle: closed by `client_idle` (3 s after the last response), not before.
    let idle_since = Instant::now();
    assert!(conn.is_closed(), "the idle connection was closed");
    let idle_for = idle_since.elapsed();
    assert!(
        idle_for >= Duration::from_millis(2500),
        "closed after {idle_for:?} of idleness, before client_idle (3s)"
    );

    // A parked connection is closed by a drain at once.
    let mut parked = Conn::open(proxy.addr);
    parked.send(get);
    assert_eq!(parked.read_response("GET").unwrap().status, 200);
    std::thread::sleep(PARKED);
    let stopping = Instant::now();
    proxy.stop();
    assert!(
        parked.is_closed(),
        "the parked connection closed by the drain"
    );
    // `drain_timeout` is 5s: a drain that waited for the parked connection would take that.
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "the drain waited {:?} for a parked connection",
        stopping.elapsed()
    );
}
