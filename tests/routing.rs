//! Routing beyond host and path prefix (docs/config.md, "Routes"): each condition (exact path,
//! methods, headers, query, pattern) chooses its group; redirect routes and `redirect_https` are
//! answered by the proxy with the exact head; prefix and pattern rewrites change the request line
//! the origin receives and keep the query; the access log shows both targets; `lbproxy check`
//! prints the routes in the order they are tried.

mod common;

use common::backend::{RawBackend, Reply, TRACEPARENT_MASK};
use common::raw::RawConn;
use common::{logs, on_both_drivers, wait_until, Proxy};
use std::time::Duration;

/// The groups, each with one backend answering its own name as the body.
const GROUPS: [&str; 6] = ["exact", "post", "canary", "debug", "rewrite", "fallback"];

const ROUTES: &str = "\
[[listener.http.route]]\npath = \"/login\"\nupstream = \"exact\"\n\
[[listener.http.route]]\npath_prefix = \"/api/\"\nmethods = [\"POST\"]\nupstream = \"post\"\n\
[[listener.http.route]]\nheaders = { X-Canary = \"1\" }\nupstream = \"canary\"\n\
[[listener.http.route]]\nquery = { debug = true }\nupstream = \"debug\"\n\
[[listener.http.route]]\npath_regex = \"^/u/(?P<id>[0-9]+)$\"\n\
redirect = \"https://example.com/users/{id}?via={host}\"\nredirect_status = 301\n\
[[listener.http.route]]\npath = \"/moved\"\nredirect = \"/new-home\"\n\
[[listener.http.route]]\npath_prefix = \"/strip/\"\nrewrite_prefix = \"/\"\nupstream = \"rewrite\"\n\
[[listener.http.route]]\npath_prefix = \"/old/\"\nrewrite_prefix = \"/new/\"\nupstream = \"rewrite\"\n\
[[listener.http.route]]\npath_prefix = \"/r/\"\n\
rewrite_regex = [\"/r/([a-z]+)/([0-9]+)\", \"/items/{2}/{1}\"]\nupstream = \"rewrite\"\n";

struct Setup {
    proxy: Proxy,
    backends: Vec<(&'static str, RawBackend)>,
}

impl Setup {
    fn start(driver: &str) -> Setup {
        let backends: Vec<(&str, RawBackend)> = GROUPS
            .iter()
            .map(|name| {
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                );
                (*name, RawBackend::start(Reply::Fixed(reply.into_bytes())))
            })
            .collect();
        let groups: String = backends
            .iter()
            .map(|(name, b)| format!("[upstream.{name}]\nbackends = [\"{}\"]\n", b.addr))
            .collect();
        let proxy = Proxy::start(&format!(
            "[runtime]\nworkers = 1\ndriver = \"{driver}\"\n[log]\naccess = true\n\
             [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"fallback\"\n\
             {ROUTES}{groups}"
        ));
        Setup { proxy, backends }
    }

    fn backend(&self, name: &str) -> &RawBackend {
        &self.backends.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Sends `request` on a new connection; asserts the group `group` answered it and its backend
    /// received exactly `upstream` (its last request).
    fn assert_routed(&self, request: &str, group: &str, upstream: &str) {
        let mut conn = RawConn::open(self.proxy.addr);
        conn.send(request.as_bytes());
        let method = request.split(' ').next().unwrap();
        let response = conn.read_response(method);
        assert_eq!(
            String::from_utf8_lossy(&response.body),
            group,
            "{request:?} went to the wrong group: {}",
            response.text()
        );
        let requests = self.backend(group).requests();
        let last = String::from_utf8_lossy(requests.last().unwrap()).into_owned();
        assert_eq!(last, upstream, "what {group} received for {request:?}");
    }
}

/// A request as the proxy forwards it: `line` (method and target), the client's `fields`, then
/// the proxy's own.
fn forwarded(line: &str, fields: &str, id: &str) -> String {
    format!(
        "{line} HTTP/1.1\r\nHost: t\r\n{fields}X-Forwarded-For: 127.0.0.1\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: t\r\nX-Request-Id: {id}\r\n\
         traceparent: {TRACEPARENT_MASK}\r\n\r\n"
    )
}

fn request(line: &str, fields: &str, id: &str) -> String {
    format!("{line} HTTP/1.1\r\nHost: t\r\n{fields}X-Request-Id: {id}\r\n\r\n")
}

fn each_condition_chooses_its_group(driver: &str) {
    let setup = Setup::start(driver);
    let cases = [
        ("GET /login", "", "exact", "GET /login"),
        ("GET /login/more", "", "fallback", "GET /login/more"),
        ("POST /api/x", "X-Form: 1\r\n", "post", "POST /api/x"),
        ("GET /api/x", "", "fallback", "GET /api/x"),
        ("GET /c", "X-Canary: 1\r\n", "canary", "GET /c"),
        ("GET /c", "X-Canary: 2\r\n", "fallback", "GET /c"),
        ("GET /q?a=1&debug", "", "debug", "GET /q?a=1&debug"),
        ("GET /q?debugging=1", "", "fallback", "GET /q?debugging=1"),
    ];
    for (i, (line, fields, group, upstream_line)) in cases.into_iter().enumerate() {
        let id = format!("m{i}");
        setup.assert_routed(
            &request(line, fields, &id),
            group,
            &forwarded(upstream_line, fields, &id),
        );
    }
}

fn rewrites_change_the_request_line_and_keep_the_query(driver: &str) {
    let logs = logs::capture();
    let setup = Setup::start(driver);
    let cases = [
        ("GET /strip/a/b?x=1&y=2", "GET /a/b?x=1&y=2"),
        ("GET /strip/", "GET /"),
        ("GET /old/page?k=v", "GET /new/page?k=v"),
        (
            "GET /r/shoes/42/reviews?sort=new",
            "GET /items/42/shoes/reviews?sort=new",
        ),
        ("GET /r/none", "GET /r/none"),
    ];
    for (i, (line, upstream_line)) in cases.into_iter().enumerate() {
        let id = format!("rw{i}");
        setup.assert_routed(
            &request(line, "", &id),
            "rewrite",
            &forwarded(upstream_line, "", &id),
        );
    }
    // The access log shows the target as sent and as forwarded; `-` where nothing is rewritten.
    wait_until(Duration::from_secs(5), "the access log lines", || {
        !logs.lines_with(&["request_id=rw2"]).is_empty()
    });
    let line = &logs.lines_with(&["request_id=rw2"])[0];
    for field in [
        "request=GET /old/page?k=v",
        "rewritten=/new/page?k=v",
        "route=/old/",
        "upstream=rewrite",
    ] {
        assert!(line.contains(field), "missing {field} in: {line}");
    }
    setup.assert_routed(
        &request("GET /plain", "", "plain1"),
        "fallback",
        &forwarded("GET /plain", "", "plain1"),
    );
    wait_until(Duration::from_secs(5), "the access log line", || {
        !logs.lines_with(&["request_id=plain1"]).is_empty()
    });
    let line = &logs.lines_with(&["request_id=plain1"])[0];
    assert!(line.contains("rewritten=-"), "{line}");
}

fn redirects_are_answered_by_the_proxy(driver: &str) {
    let logs = logs::capture();
    let setup = Setup::start(driver);
    let mut conn = RawConn::open(setup.proxy.addr);
    // A capture of the pattern, kept alive for the next request; HEAD gets the same head.
    conn.send(request("GET /u/42", "", "rd1").as_bytes());
    let response = conn.read_response("GET");
    assert_eq!(
        response.text(),
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com/users/42?via=t\r\n\
         Content-Length: 0\r\nX-Request-Id: rd1\r\n\r\n"
    );
    conn.send(request("HEAD /moved", "", "rd2").as_bytes());
    let response = conn.read_response("HEAD");
    assert_eq!(
        response.text(),
        "HTTP/1.1 302 Found\r\nLocation: /new-home\r\nContent-Length: 0\r\nX-Request-Id: rd2\r\n\r\n"
    );
    // A POST whose body came with its head: the body is dropped and the connection goes on.
    conn.send(
        b"POST /moved HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nX-Request-Id: rd3\r\n\r\nabc\
          GET /moved HTTP/1.1\r\nHost: t\r\nX-Request-Id: rd4\r\n\r\n",
    );
    assert_eq!(conn.read_response("POST").status, 302);
    let response = conn.read_response("GET");
    assert_eq!(response.request_id(), "rd4");
    // A chunked body is never read: the answer closes the connection.
    conn.send(
        b"POST /moved HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nX-Request-Id: rd5\r\n\r\n",
    );
    let response = conn.read_response("POST");
    assert_eq!(
        response.text(),
        "HTTP/1.1 302 Found\r\nLocation: /new-home\r\nContent-Length: 0\r\nX-Request-Id: rd5\r\n\
         Connection: close\r\n\r\n"
    );
    conn.assert_closed();
    for (_, backend) in &setup.backends {
        assert!(backend.requests().is_empty(), "a redirect was forwarded");
    }
    wait_until(Duration::from_secs(5), "the access log line", || {
        !logs.lines_with(&["request_id=rd1"]).is_empty()
    });
    let line = &logs.lines_with(&["request_id=rd1"])[0];
    for field in [
        "status=301",
        "upstream=-",
        "backend=-",
        "rewritten=-",
        "request=GET /u/42",
        "route=/ ~^/u/(?P<id>[0-9]+)$",
        "location=https://example.com/users/42?via=t",
    ] {
        assert!(line.contains(field), "missing {field} in: {line}");
    }
}

fn redirect_https_sends_every_request_to_https(driver: &str) {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nredirect_https = 8443\n\
         [upstream.api]\nbackends = [\"{}\"]\n",
        api.addr
    ));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Request-Id: h1\r\n\r\n");
    assert_eq!(
        conn.read_response("GET").text(),
        "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://example.com:8443/a/b?x=1\r\n\
         Content-Length: 0\r\nX-Request-Id: h1\r\n\r\n"
    );
    // HTTP/1.0: kept alive only when asked; without a Host there is no host to redirect to.
    conn.send(b"GET /x HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\nX-Request-Id: h2\r\n\r\n");
    assert_eq!(
        conn.read_response("GET").text(),
        "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://example.com:8443/x\r\n\
         Content-Length: 0\r\nX-Request-Id: h2\r\nConnection: keep-alive\r\n\r\n"
    );
    conn.send(b"GET /x HTTP/1.0\r\n\r\n");
    assert_eq!(conn.read_response("GET").status, 400);
    conn.assert_closed();
    assert!(api.requests().is_empty());
}

on_both_drivers!(
    each_condition_chooses_its_group,
    rewrites_change_the_request_line_and_keep_the_query,
    redirects_are_answered_by_the_proxy,
    redirect_https_sends_every_request_to_https,
);

#[test]
fn check_prints_the_routes_in_the_order_they_are_tried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lbproxy.toml");
    let groups: String = GROUPS
        .iter()
        .map(|name| format!("[upstream.{name}]\nbackends = [\"127.0.0.1:9001\"]\n"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"fallback\"\n\
             {ROUTES}[listener.plain]\naddress = \"127.0.0.1:8081\"\nredirect_https = true\n{groups}"
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lbproxy"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        table,
        [
            "listener \"http\" (http): routes in the order they are tried",
            "    #  matches                 action",
            "    0  =/login                 -> exact",
            "    1  /api/ POST              -> post",
            "    2  / h:x-canary=1          -> canary",
            "    3  / q:debug               -> debug",
            "    4  / ~^/u/(?P<id>[0-9]+)$  redirect 301 https://example.com/users/{id}?via={host}",
            "    5  =/moved                 redirect 302 /new-home",
            "    6  /strip/                 -> rewrite (rewrite /strip/ -> /)",
            "    7  /old/                   -> rewrite (rewrite /old/ -> /new/)",
            "    8  /r/                     -> rewrite (rewrite ~/r/([a-z]+)/([0-9]+) -> /items/{2}/{1})",
            "    9  /                       -> fallback",
            "listener \"plain\" (http): routes in the order they are tried",
            "    #  matches  action",
            "    0  /        redirect 308 https://{host}{uri}",
        ],
        "{stdout}"
    );
}
