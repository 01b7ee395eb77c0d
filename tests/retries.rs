//! Retries end to end against raw fake backends: what may be sent again and what never is, the
//! per-request limit, and the retry budget that turns a failing group's retries into fast
//! failures (said in the response and in the log).

mod common;

use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::{logs, on_both_drivers, refusing_port, Proxy};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

on_both_drivers!(
    a_post_the_backend_read_and_dropped_is_502_and_never_sent_again,
    a_post_on_a_reused_connection_the_backend_dropped_is_not_sent_again,
    a_refused_connection_sends_any_method_to_the_next_backend,
    an_idempotent_request_lost_before_the_response_goes_to_another_backend,
    max_retries_bounds_the_attempts_and_names_the_last_failure,
    an_exhausted_retry_budget_fails_fast_and_says_so,
    refused_connections_are_free_to_fail_over_and_each_backend_is_tried_once,
    n_minus_one_dead_backends_cost_no_failed_request_with_the_defaults,
);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn proxy_config(driver: &str, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

const POST: &[u8] =
    b"POST /orders HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";

fn a_post_the_backend_read_and_dropped_is_502_and_never_sent_again(driver: &str) {
    let dropping = [
        RawBackend::start(Reply::CloseWithoutResponse),
        RawBackend::start(Reply::CloseWithoutResponse),
    ];
    let proxy = Proxy::start(&proxy_config(
        driver,
        &[dropping[0].addr, dropping[1].addr],
        "",
    ));
    let response = client::request(proxy.addr, POST);
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response
            .text()
            .contains("upstream \"api\" closed the connection without responding"),
        "{}",
        response.text()
    );
    let seen = dropping[0].requests().len() + dropping[1].requests().len();
    assert_eq!(seen, 1, "the POST reached the backends {seen} times");
}

/// A backend that answers the first request on each connection and drops the connection at the
/// second, after reading it whole: a keep-alive connection that dies under a request. Counts
/// the requests it read.
fn answer_once_per_connection() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = false;
                loop {
                    while let Some(len) = common::backend::complete_request_len(&buf) {
                        buf.drain(..len);
                        counted.fetch_add(1, Ordering::SeqCst);
                        if answered {
                            return; // drops the connection without a word
                        }
                        answered = stream.write_all(OK).is_ok();
                    }
                    match stream.read(&mut chunk) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, requests)
}

fn a_post_on_a_reused_connection_the_backend_dropped_is_not_sent_again(driver: &str) {
    let (addr, requests) = answer_once_per_connection();
    let proxy = Proxy::start(&proxy_config(driver, &[addr], ""));
    // The first request leaves a pooled connection; the POST goes out on it and is dropped.
    assert_eq!(client::get(proxy.addr, "/").status, 200);
    let response = client::request(proxy.addr, POST);
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "the POST was sent again"
    );

    // A GET in the same situation is sent again, on a fresh connection, and succeeds.
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 200, "{}", response.text());
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(requests.load(Ordering::SeqCst), 5);
}

fn a_refused_connection_sends_any_method_to_the_next_backend(driver: &str) {
    let echo = RawBackend::start(Reply::Echo);
    let proxy = Proxy::start(&proxy_config(
        driver,
        &[refusing_port(), echo.addr],
        "[upstream.api.outlier]\nconsecutive_failures = 0\n",
    ));
    for _ in 0..4 {
        // Round robin offers the refusing backend first every other time.
        let response = client::request(proxy.addr, POST);
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(
            response.text().ends_with("hello world"),
            "{}",
            response.text()
        );
    }
    assert_eq!(echo.requests().len(), 4);
}

fn an_idempotent_request_lost_before_the_response_goes_to_another_backend(driver: &str) {
    let dropping = RawBackend::start(Reply::CloseWithoutResponse);
    let fine = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&proxy_config(
        driver,
        &[dropping.addr, fine.addr],
        "[upstream.api.outlier]\nconsecutive_failures = 0\n",
    ));
    let mut conn = Conn::open(proxy.addr);
    for _ in 0..6 {
        conn.send(b"DELETE /item/7 HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(conn.read_response("DELETE").unwrap().status, 200);
    }
    assert_eq!(fine.requests().len(), 6);
    // Round robin moves on past the backend that answered, so the dropping one is offered first
    // each time: every request was lost there once, then answered by the other.
    assert_eq!(dropping.requests().len(), 6);
}

fn max_retries_bounds_the_attempts_and_names_the_last_failure(driver: &str) {
    let dropping: Vec<RawBackend> = (0..4)
        .map(|_| RawBackend::start(Reply::CloseWithoutResponse))
        .collect();
    let addrs: Vec<SocketAddr> = dropping.iter().map(|b| b.addr).collect();
    let proxy = Proxy::start(&proxy_config(
        driver,
        &addrs,
        "[upstream.api.retry]\nmax_retries = 1\n",
    ));
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 502);
    let text = response.text();
    assert!(
        text.contains("closed the connection without responding"),
        "{text}"
    );
    assert!(
        text.contains("gave up after 2 attempts (retry.max_retries = 1)"),
        "{text}"
    );
    let reached: usize = dropping.iter().map(|b| b.requests().len()).sum();
    assert_eq!(reached, 2);
}

// A refused connection says for certain that nothing listens there and that nothing was sent:
// the next backend is tried even with `max_retries = 0` and no budget, each backend once.
fn refused_connections_are_free_to_fail_over_and_each_backend_is_tried_once(driver: &str) {
    let mut backends: Vec<SocketAddr> = (0..3).map(|_| refusing_port()).collect();
    let good = RawBackend::start(Reply::Fixed(OK.to_vec()));
    backends.push(good.addr);
    let proxy = Proxy::start(&proxy_config(
        driver,
        &backends,
        "[upstream.api.retry]\nmax_retries = 0\nbudget_percent = 0\nbudget_min_per_second = 0\n",
    ));
    for _ in 0..8 {
        let response = client::get(proxy.addr, "/");
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let proxy = Proxy::start(&proxy_config(
        driver,
        &backends[..3],
        "[upstream.api.retry]\nmax_retries = 0\n",
    ));
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 502);
    let text = response.text();
    assert!(
        text.contains("all 3 backends failed; the last one refused the connection"),
        "{text}"
    );
}

// The defaults (no [health], max_retries 2, a 20% budget, max_ejection_percent 10) under
// concurrent load, with 2 of 3 and 3 of 4 backends dead: not one request fails. (Before, a third
// of them did: every pick of a dead backend cost a retry, and the budget ran out.)
fn n_minus_one_dead_backends_cost_no_failed_request_with_the_defaults(driver: &str) {
    use common::load::{Connections, Load};
    for dead in [2, 3] {
        let good = RawBackend::start(Reply::Fixed(OK.to_vec()));
        let mut backends: Vec<SocketAddr> = (0..dead).map(|_| refusing_port()).collect();
        backends.insert(dead / 2, good.addr);
        let proxy = Proxy::start(&proxy_config(driver, &backends, ""));
        let load = Load::start(proxy.addr, 4, Connections::KeepAlive, || {});
        load.wait_for_more(3000, std::time::Duration::from_secs(60));
        let report = load.stop();
        assert!(
            report.failures.is_empty(),
            "{dead} of {} dead: {} of {} requests failed, e.g. {:?}",
            dead + 1,
            report.failures.len(),
            report.ok + report.failures.len() as u64,
            &report.failures[..report.failures.len().min(3)]
        );
    }
}

fn an_exhausted_retry_budget_fails_fast_and_says_so(driver: &str) {
    let logs = logs::capture();
    let dropping = [
        RawBackend::start(Reply::CloseWithoutResponse),
        RawBackend::start(Reply::CloseWithoutResponse),
    ];
    // 0% of requests + 1 retry a second: 10 retries per 10 s window, then fast failures.
    let proxy = Proxy::start(&proxy_config(
        driver,
        &[dropping[0].addr, dropping[1].addr],
        "[upstream.api.outlier]\nconsecutive_failures = 0\n\
         [upstream.api.retry]\nmax_retries = 1\nbudget_percent = 0\nbudget_min_per_second = 1\n",
    ));
    let mut fast_failures = 0;
    for i in 0..20 {
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: test\r\nX-Request-Id: budget-{i}\r\nConnection: close\r\n\r\n"
        );
        let response = client::request(proxy.addr, raw.as_bytes());
        assert_eq!(response.status, 502);
        if response
            .text()
            .contains("not retried: the retry budget is exhausted")
        {
            fast_failures += 1;
        }
    }
    // A retried request reached both backends, a fast failure one.
    let reached = dropping[0].requests().len() + dropping[1].requests().len();
    assert_eq!(reached, 2 * (20 - fast_failures) + fast_failures);
    assert!(fast_failures >= 5, "{fast_failures} fast failures");
    let logged = logs.lines_with(&[
        "reason=\"retry_budget_exhausted\"",
        "retry budget is exhausted",
    ]);
    assert_eq!(logged.len(), fast_failures, "{logged:#?}");
}
