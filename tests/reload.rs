//! Reloading the configuration of a running proxy: new requests — including the next request on a
//! kept-alive client connection — use the new configuration, requests in flight finish on the one
//! they started with, and a reload that cannot apply leaves the running configuration serving.

mod common;

use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::{config, on_both_drivers, wait_until, with_admin_on_any_port, Proxy};
use lbproxy::server::ReloadError;
use std::time::Duration;

on_both_drivers!(
    new_requests_and_idle_keep_alive_connections_use_the_reloaded_backends,
    a_request_in_flight_finishes_on_the_configuration_it_started_with,
    a_reload_that_moves_a_listener_is_refused_and_the_old_config_keeps_serving,
    an_invalid_file_is_refused_with_its_errors,
);

fn named(name: &str) -> RawBackend {
    RawBackend::start(Reply::Fixed(
        format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{name}").into_bytes(),
    ))
}

fn get_on(conn: &mut Conn) -> String {
    conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.read_response("GET").expect("response").text()
}

fn new_requests_and_idle_keep_alive_connections_use_the_reloaded_backends(driver: &str) {
    let (a, b) = (named("A"), named("B"));
    let proxy = Proxy::start(&config(driver, &[a.addr], ""));
    let mut kept = Conn::open(proxy.addr);
    assert_eq!(get_on(&mut kept), "A");

    let report = proxy
        .reload(&config(driver, &[b.addr], ""))
        .expect("reload");
    assert_eq!(report.reload, 1);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    for _ in 0..4 {
        assert_eq!(client::get(proxy.addr, "/").text(), "B");
    }
    // The connection stayed open across the reload; its next request follows the new routes.
    assert_eq!(get_on(&mut kept), "B");
    assert_eq!(
        proxy.control().config().upstreams[0].backends[0].address,
        b.addr
    );
}

fn a_request_in_flight_finishes_on_the_configuration_it_started_with(driver: &str) {
    let slow = RawBackend::start(Reply::Delayed(
        Duration::from_millis(500),
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec(),
    ));
    let fast = named("F");
    let proxy = Proxy::start(&config(driver, &[slow.addr], ""));
    let addr = proxy.addr;
    let in_flight = std::thread::spawn(move || client::get(addr, "/"));
    wait_until(
        Duration::from_secs(5),
        "the slow backend to receive the request",
        || !slow.requests().is_empty(),
    );

    proxy
        .reload(&config(driver, &[fast.addr], ""))
        .expect("reload");
    assert_eq!(client::get(proxy.addr, "/").text(), "F");
    let response = in_flight.join().unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));
}

fn a_reload_that_moves_a_listener_is_refused_and_the_old_config_keeps_serving(driver: &str) {
    let (a, b) = (named("A"), named("B"));
    let proxy = Proxy::start(&config(driver, &[a.addr], ""));
    let moved = config(driver, &[b.addr], "").replace("127.0.0.1:0", "127.0.0.1:1");
    match proxy.reload(&moved) {
        Err(ReloadError::NeedsRestart(reasons)) => {
            assert!(
                reasons[0].contains("listener \"http\" moves from 127.0.0.1:0 to 127.0.0.1:1"),
                "{reasons:?}"
            );
        }
        other => panic!("expected NeedsRestart, got {other:?}"),
    }
    assert_eq!(client::get(proxy.addr, "/").text(), "A");
    // The next good reload is number 1: the refused one never counted.
    assert_eq!(
        proxy.reload(&config(driver, &[b.addr], "")).unwrap().reload,
        1
    );
}

fn an_invalid_file_is_refused_with_its_errors(driver: &str) {
    let a = named("A");
    let proxy = Proxy::start(&with_admin_on_any_port(&config(driver, &[a.addr], "")));
    let broken = config(driver, &[a.addr], "[timeouts]\nclient_header = \"soon\"\n");
    let err = proxy
        .reload(&broken)
        .expect_err("invalid config must be refused");
    let text = err.to_string();
    assert!(matches!(err, ReloadError::Invalid(_)), "{text}");
    assert!(text.contains("timeouts.client_header"), "{text}");
    assert!(text.contains("the running one stays"), "{text}");
    assert_eq!(client::get(proxy.addr, "/").text(), "A");
    // Counted for the alert on refused reloads (packaging/monitoring/alerts.yml).
    let metrics = common::admin::get(proxy.admin_addr(), "/metrics", None).text();
    assert!(
        metrics.contains("\nlbproxy_reload_failures_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nlbproxy_reloads_total 0\n"), "{metrics}");
}
