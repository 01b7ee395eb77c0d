//! Per-route and per-group settings end to end (docs/config.md, "Per-route and per-group
//! settings"): a route's own `upstream_response` times out while another route of the same group
//! waits; a group's `max_body` refuses bodies on its routes only; a route's `max_retries = 0`
//! gives up where its group would retry.

mod common;

use common::backend::{RawBackend, Reply};
use common::on_both_drivers;
use common::raw::RawConn;
use common::spec::assert_proxy_error;
use common::Proxy;
use std::time::Duration;

on_both_drivers!(
    a_route_s_upstream_response_times_out_alone,
    a_route_s_client_body_deadline_applies_to_its_requests_only,
    a_group_s_max_body_refuses_only_on_its_routes,
    a_route_without_retries_gives_up_where_its_group_retries,
);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn head(driver: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"2s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\n"
    )
}

fn a_route_s_upstream_response_times_out_alone(driver: &str) {
    let backend = RawBackend::start(Reply::Delayed(Duration::from_millis(800), OK.to_vec()));
    let config = format!(
        "{}[[listener.http.route]]\npath_prefix = \"/fast/\"\nupstream = \"api\"\n\
         timeouts = {{ upstream_response = \"200ms\" }}\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\"]\ntimeouts = {{ upstream_response = \"5s\" }}\n",
        head(driver),
        backend.addr
    );
    let proxy = Proxy::start(&config);

    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /fast/x HTTP/1.1\r\nHost: a\r\n\r\n");
    let response = conn.read_response("GET");
    assert_proxy_error(
        &response,
        504,
        "upstream \"api\" did not respond within 200ms",
    );

    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    let response = conn.read_response("GET");
    assert_eq!(response.status, 200, "{}", response.text());
    proxy.stop();
}

fn a_route_s_client_body_deadline_applies_to_its_requests_only(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let config = format!(
        "{}[[listener.http.route]]\npath_prefix = \"/upload/\"\nupstream = \"api\"\n\
         timeouts = {{ client_body = \"200ms\" }}\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\"]\n",
        head(driver),
        backend.addr
    );
    let proxy = Proxy::start(&config);

    // Half of a body on the catch-all route (the global 60s), then on the route's own (200ms).
    let mut waiting = RawConn::open(proxy.addr);
    waiting.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello");
    common::wait_until(Duration::from_secs(5), "the backend connected", || {
        backend.connections() >= 1
    });
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"POST /upload/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello");
    let response = conn.read_response("POST");
    assert_proxy_error(
        &response,
        408,
        "the request body did not arrive within 200ms",
    );

    // The first one has waited longer than 200ms by now, and still takes the rest.
    waiting.send(b"world");
    let response = waiting.read_response("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    proxy.stop();
}

fn a_group_s_max_body_refuses_only_on_its_routes(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let config = format!(
        "{}[[listener.http.route]]\npath_prefix = \"/small/\"\nupstream = \"small\"\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         [upstream.small]\nbackends = [\"{b}\"]\nmax_body = \"10\"\n\
         [upstream.api]\nbackends = [\"{b}\"]\n[limits]\nmax_body = \"1KiB\"\n",
        head(driver),
        b = backend.addr
    );
    let proxy = Proxy::start(&config);

    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"POST /small/x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    let response = conn.read_response("POST");
    assert_proxy_error(
        &response,
        413,
        "request body of 11 bytes is larger than the limit of 10 bytes",
    );
    conn.read_to_eof();

    let mut conn = RawConn::open(proxy.addr);
    conn.send(
        b"POST /small/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
    );
    let response = conn.read_response("POST");
    assert_proxy_error(
        &response,
        413,
        "request body larger than the limit of 10 bytes",
    );
    conn.read_to_eof();

    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    let response = conn.read_response("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        backend
            .requests()
            .last()
            .unwrap()
            .ends_with(b"\r\n\r\nhello world"),
        "the other group's route takes the body"
    );
    proxy.stop();
}

fn a_route_without_retries_gives_up_where_its_group_retries(driver: &str) {
    let refusing = RawBackend::start(Reply::CloseWithoutResponse);
    let good = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let config = format!(
        "{}[[listener.http.route]]\npath_prefix = \"/once/\"\nupstream = \"api\"\n\
         retry = {{ max_retries = 0 }}\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\", \"{}\"]\n[upstream.api.retry]\nmax_retries = 2\n",
        head(driver),
        refusing.addr,
        good.addr
    );
    let proxy = Proxy::start(&config);

    // Round robin: of two requests in a row, one goes to the backend that closes first.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut conn = RawConn::open(proxy.addr);
        conn.send(b"GET /once/x HTTP/1.1\r\nHost: a\r\n\r\n");
        let response = conn.read_response("GET");
        if response.status == 502 {
            assert!(
                response.text().contains("(retry.max_retries = 0)"),
                "{}",
                response.text()
            );
        }
        statuses.push(response.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 502], "no retry on the route's own limit");
    assert_eq!(
        refusing.requests().len() + good.requests().len(),
        2,
        "each request reached one backend"
    );

    // The group's other route retries on the good backend.
    for _ in 0..2 {
        let mut conn = RawConn::open(proxy.addr);
        conn.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        let response = conn.read_response("GET");
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(
        good.requests().len(),
        3,
        "two more answered by the good backend"
    );
    proxy.stop();
}
