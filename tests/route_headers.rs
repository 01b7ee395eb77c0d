//! Route header rules end to end (docs/config.md, "Header rules"): the exact head a backend
//! receives with `remove`/`set`/`add` and templates, the exact head a client receives with the
//! backend's `Server` hidden and `{backend}` named, and a route without rules untouched.

mod common;

use common::backend::{RawBackend, Reply};
use common::on_both_drivers;
use common::raw::RawConn;
use common::spec::proxy_fields;
use common::Proxy;

on_both_drivers!(
    request_rules_shape_the_upstream_head,
    response_rules_shape_the_client_head,
    a_switching_protocols_response_goes_out_as_sent,
    captures_of_the_route_pattern_name_values_after_a_rewrite,
);

const BACKEND_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.25\r\nX-Powered-By: PHP/8\r\n\
Cache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok";

/// Route `/api/` with header rules, then a catch-all route without, both to `backend`.
fn rules_config(driver: &str, backend: &RawBackend) -> String {
    format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"2s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\n\
         [[listener.http.route]]\npath_prefix = \"/api/\"\nupstream = \"api\"\n\
         request_headers = {{ remove = [\"X-Debug\"], \
           set = {{ \"X-Env\" = \"prod\", \"Host\" = \"internal.{{host}}\" }}, \
           add = {{ \"X-Client\" = \"{{client_ip}}\", \
                    \"X-Route\" = \"{{route}} {{method}} {{path}}?{{query}} {{request_id}}\" }} }}\n\
         response_headers = {{ remove = [\"Server\", \"X-Powered-By\"], \
           set = {{ \"Cache-Control\" = \"no-store\" }}, \
           add = {{ \"X-Backend\" = \"{{backend}}\", \"X-Host\" = \"{{host}} {{uri}}\" }} }}\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\"]\n",
        backend.addr
    )
}

fn request_rules_shape_the_upstream_head(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(BACKEND_REPLY.to_vec()));
    let proxy = Proxy::start(&rules_config(driver, &backend));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(
        b"GET /api/x?y=1 HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\nx-env: dev\r\nAccept: */*\r\n\
          X-Request-Id: req-1\r\nX-ENV: dev2\r\n\r\n",
    );
    assert_eq!(conn.read_response("GET").status, 200);
    let expected = format!(
        "GET /api/x?y=1 HTTP/1.1\r\nHost: internal.a\r\nAccept: */*\r\nX-Env: prod\r\n\
         X-Client: 127.0.0.1\r\nX-Route: /api/ GET /api/x?y=1 req-1\r\n{}\r\n",
        proxy_fields(Some("a"), "req-1")
    );
    assert_eq!(
        String::from_utf8_lossy(&backend.requests()[0]),
        expected,
        "removed and set lines are gone, set and add follow the client's fields, \
         X-Forwarded-Host keeps the client's host"
    );

    // The catch-all route has no rules: the client's fields go as they came.
    conn.send(b"GET /other HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\nX-Request-Id: req-2\r\n\r\n");
    assert_eq!(conn.read_response("GET").status, 200);
    let expected = format!(
        "GET /other HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n{}\r\n",
        proxy_fields(Some("a"), "req-2")
    );
    assert_eq!(String::from_utf8_lossy(&backend.requests()[1]), expected);
    proxy.stop();
}

fn response_rules_shape_the_client_head(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(BACKEND_REPLY.to_vec()));
    let proxy = Proxy::start(&rules_config(driver, &backend));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /api/x?y=1 HTTP/1.1\r\nHost: a:8080\r\nX-Request-Id: req-1\r\n\r\n");
    let response = conn.read_response("GET");
    let expected = format!(
        "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nX-Backend: {}\r\nX-Host: a /api/x?y=1\r\n\
         X-Request-Id: req-1\r\nContent-Length: 2\r\n\r\nok",
        backend.addr
    );
    assert_eq!(
        response.text(),
        expected,
        "Server and X-Powered-By hidden, Cache-Control replaced, the backend named"
    );

    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: req-2\r\n\r\n");
    let response = conn.read_response("GET");
    assert_eq!(
        response.text(),
        "HTTP/1.1 200 OK\r\nServer: nginx/1.25\r\nX-Powered-By: PHP/8\r\n\
         Cache-Control: max-age=60\r\nX-Request-Id: req-2\r\nContent-Length: 2\r\n\r\nok",
        "a route without rules relays the backend's fields"
    );
    proxy.stop();
}

// The rules apply to final responses: a `101 Switching Protocols` (like any 1xx) goes out as the
// backend sent it, and the tunnel works.
fn a_switching_protocols_response_goes_out_as_sent(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 101 Switching Protocols\r\nServer: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            .to_vec(),
    ));
    let proxy = Proxy::start(&rules_config(driver, &backend));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(
        b"GET /api/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    let response = conn.read_response("GET");
    assert_eq!(
        response.text(),
        "HTTP/1.1 101 Switching Protocols\r\nServer: ws\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    proxy.stop();
}

/// A route with a pattern, a rewrite and header rules: the request rules name the pattern's
/// captures (of the path as the client sent it), the upstream gets the rewritten target.
fn captures_of_the_route_pattern_name_values_after_a_rewrite(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(BACKEND_REPLY.to_vec()));
    let config = format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"2s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\n\
         [[listener.http.route]]\npath_regex = \"^/users/(?P<id>[0-9]+)/(.*)$\"\n\
         rewrite_regex = [\"^/users/([0-9]+)/\", \"/u/{{1}}/\"]\nupstream = \"api\"\n\
         request_headers = {{ set = {{ \"X-User\" = \"{{id}}\", \"X-Rest\" = \"{{2}}\" }} }}\n\
         [upstream.api]\nbackends = [\"{}\"]\n",
        backend.addr
    );
    let proxy = Proxy::start(&config);
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /users/42/posts/7?full=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: req-9\r\n\r\n");
    assert_eq!(conn.read_response("GET").status, 200);
    let expected = format!(
        "GET /u/42/posts/7?full=1 HTTP/1.1\r\nHost: a\r\nX-Rest: posts/7\r\nX-User: 42\r\n{}\r\n",
        proxy_fields(Some("a"), "req-9")
    );
    assert_eq!(String::from_utf8_lossy(&backend.requests()[0]), expected);
    proxy.stop();
}
