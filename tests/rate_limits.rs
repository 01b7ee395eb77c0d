//! Request rate limits (`[rate_limit.NAME]`) end to end: a raw client sends requests through the
//! proxy to a raw backend and sees exactly which were served (200, and the backend got them) and
//! which were refused (429 with the exact head: `Retry-After`, `RateLimit-Policy`, `RateLimit`,
//! `Content-Length`, `X-Request-Id`); the counts are read back from `/metrics`.
//!
//! Every limit is slow ("1/min", "1/h") with a burst, so which requests pass depends on their
//! count only, never on how fast the test runs.

mod common;

use common::backend::{RawBackend, Reply};
use common::raw::{RawConn, RawResponse, DEADLINE};
use common::Proxy;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Instant;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// One worker (unless `workers` says otherwise), the listener with `listener` keys added, every
/// request to the backend, and `extra` (the limits) after.
fn proxy(backend: &RawBackend, workers: usize, listener: &str, extra: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = {workers}\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n{listener}\n\
         [upstream.api]\nbackends = [\"{}\"]\n{extra}\n",
        backend.addr
    ))
}

fn get(path: &str, fields: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
}

/// Sends `request` on `conn` and reads its response.
fn ask(conn: &mut RawConn, request: &[u8]) -> RawResponse {
    conn.send(request);
    conn.read_response("GET")
}

/// The statuses of `count` requests sent one after another on one connection.
fn statuses(proxy: &Proxy, request: &[u8], count: usize) -> Vec<u16> {
    let mut conn = RawConn::open(proxy.addr);
    (0..count).map(|_| ask(&mut conn, request).status).collect()
}

/// The value of the sample `series` (name and labels exactly as the exposition writes them) in
/// `/metrics`, once `done` holds for it (the workers publish every 100 ms).
fn metric_once(proxy: &Proxy, series: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = common::admin::get(proxy.admin_addr(), "/metrics", None).text();
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().expect("a number"));
        if let Some(value) = value.filter(|v| done(*v)) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series}: {value:?} never satisfied the test; /metrics:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `metric_once` waiting for exactly `expected`.
fn assert_metric(proxy: &Proxy, series: &str, expected: f64) {
    metric_once(proxy, series, |v| v == expected);
}

fn requests(limit: &str, outcome: &str) -> String {
    format!("lbproxy_rate_limit_requests_total{{limit=\"{limit}\",outcome=\"{outcome}\"}}")
}

#[test]
fn a_client_gets_its_burst_then_an_exact_429_on_a_kept_connection() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = proxy(
        &backend,
        1,
        "rate_limits = [\"per_client\"]",
        "[rate_limit.per_client]\nrate = \"1/min\"\nburst = 3\n",
    );
    let mut conn = RawConn::open(proxy.addr);
    for _ in 0..3 {
        assert_eq!(ask(&mut conn, &get("/", "")).status, 200);
    }
    let refused = ask(&mut conn, &get("/", ""));
    // The next request conforms one interval (60 s) after the burst was spent, less the time the
    // test took; a full burst is back two intervals after that.
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{}", refused.text());
    let body = format!("too many requests (rate limit per_client): retry after {retry} s\n");
    let expected = format!(
        "HTTP/1.1 429 Too Many Requests\r\n\
         Retry-After: {retry}\r\n\
         RateLimit-Policy: \"per_client\";q=1;w=60\r\n\
         RateLimit: \"per_client\";r=0;t={}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         X-Request-Id: {}\r\n\r\n{body}",
        retry + 120,
        body.len(),
        refused.request_id()
    );
    assert_eq!(refused.text(), expected);
    // The connection stays: a request with a body that came whole is refused, then another.
    conn.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    let posted = conn.read_response("POST");
    assert_eq!(posted.status, 429);
    assert_eq!(posted.header("connection"), None, "{}", posted.text());
    assert_eq!(ask(&mut conn, &get("/", "")).status, 429);
    // A client that says close is answered and closed.
    let closing = ask(&mut conn, &get("/", "Connection: close\r\n"));
    assert_eq!(closing.header("connection"), Some("close"));
    conn.assert_closed();
    // Only the three allowed reached the backend.
    assert_eq!(backend.requests().len(), 3);
    assert_metric(&proxy, &requests("per_client", "limited"), 4.0);
    assert_metric(&proxy, &requests("per_client", "allowed"), 3.0);
    assert_metric(&proxy, &requests("per_client", "dry_run"), 0.0);
    assert_metric(
        &proxy,
        "lbproxy_listener_rate_limited_requests_total{listener=\"http\"}",
        4.0,
    );
    assert_metric(
        &proxy,
        "lbproxy_listener_requests_total{listener=\"http\",code=\"4xx\"}",
        4.0,
    );
    assert_metric(&proxy, "lbproxy_rate_limit_keys{limit=\"per_client\"}", 1.0);
}

#[test]
fn a_dry_run_limit_serves_everything_and_counts_what_it_would_refuse() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = proxy(
        &backend,
        1,
        "rate_limits = [\"trial\"]",
        "[rate_limit.trial]\nrate = \"1/min\"\ndry_run = true\n",
    );
    assert_eq!(statuses(&proxy, &get("/", ""), 4), [200; 4]);
    assert_eq!(backend.requests().len(), 4);
    assert_metric(&proxy, &requests("trial", "allowed"), 1.0);
    assert_metric(&proxy, &requests("trial", "dry_run"), 3.0);
    assert_metric(&proxy, &requests("trial", "limited"), 0.0);
    assert_metric(
        &proxy,
        "lbproxy_listener_rate_limit_dry_run_total{listener=\"http\"}",
        3.0,
    );
}

#[test]
fn a_header_key_gives_each_value_its_own_budget_and_spares_requests_without_it() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = proxy(
        &backend,
        1,
        "rate_limits = [\"per_key\"]",
        "[rate_limit.per_key]\nkey = \"header:X-Api-Key\"\nrate = \"1/min\"\nburst = 2\n",
    );
    assert_eq!(statuses(&proxy, &get("/", ""), 4), [200; 4]);
    let a = get("/", "X-Api-Key: a\r\n");
    assert_eq!(statuses(&proxy, &a, 3), [200, 200, 429]);
    // Another connection, the same value: the same budget.
    assert_eq!(statuses(&proxy, &get("/", "x-api-key: a\r\n"), 1), [429]);
    assert_eq!(
        statuses(&proxy, &get("/", "X-Api-Key: b\r\n"), 3),
        [200, 200, 429]
    );
    assert_metric(&proxy, "lbproxy_rate_limit_keys{limit=\"per_key\"}", 2.0);
}

#[test]
fn a_route_key_is_one_budget_for_every_client_of_the_route() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = proxy(
        &backend,
        1,
        "rate_limits = [\"whole\"]\n\
         [[listener.http.route]]\npath_prefix = \"/a\"\nupstream = \"api\"\n\
         [[listener.http.route]]\npath_prefix = \"/b\"\nupstream = \"api\"\n",
        "[rate_limit.whole]\nkey = \"route\"\nrate = \"1/h\"\nburst = 2\n",
    );
    // Three connections (three clients as far as the proxy knows), one budget.
    assert_eq!(statuses(&proxy, &get("/a", ""), 1), [200]);
    assert_eq!(statuses(&proxy, &get("/a/x", ""), 1), [200]);
    assert_eq!(statuses(&proxy, &get("/a", ""), 1), [429]);
    // Another route has its own.
    assert_eq!(statuses(&proxy, &get("/b", ""), 3), [200, 200, 429]);
}

#[test]
fn a_routes_own_list_replaces_the_listeners_and_an_empty_one_turns_limits_off() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = proxy(
        &backend,
        1,
        "rate_limits = [\"strict\"]\n\
         [[listener.http.route]]\npath_prefix = \"/free\"\nupstream = \"api\"\nrate_limits = []\n\
         [[listener.http.route]]\npath_prefix = \"/own\"\nupstream = \"api\"\n\
         rate_limits = [\"loose\"]\n",
        "[rate_limit.strict]\nrate = \"1/min\"\n\
         [rate_limit.loose]\nrate = \"1/min\"\nburst = 3\n",
    );
    assert_eq!(statuses(&proxy, &get("/free", ""), 5), [200; 5]);
    let mut conn = RawConn::open(proxy.addr);
    for _ in 0..3 {
        assert_eq!(ask(&mut conn, &get("/own", "")).status, 200);
    }
    let own = ask(&mut conn, &get("/own", ""));
    assert_eq!(own.header("ratelimit-policy"), Some("\"loose\";q=1;w=60"));
    assert_eq!(ask(&mut conn, &get("/", "")).status, 200);
    let listeners = ask(&mut conn, &get("/", ""));
    assert_eq!(
        listeners.header("ratelimit-policy"),
        Some("\"strict\";q=1;w=60")
    );
    assert_eq!(backend.requests().len(), 9);
}

#[test]
fn an_unchanged_limit_keeps_its_state_across_a_reload_and_a_changed_one_starts_afresh() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let text = |rate: &str| {
        format!(
            "[runtime]\nworkers = 1\n\
             [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             rate_limits = [\"x\"]\n\
             [upstream.api]\nbackends = [\"{}\"]\n[rate_limit.x]\nrate = \"{rate}\"\n",
            backend.addr
        )
    };
    let proxy = Proxy::start(&text("1/min"));
    // Keep-alive: the reload does not move the listener, the connection stays.
    let mut conn = RawConn::open(proxy.addr);
    assert_eq!(ask(&mut conn, &get("/", "")).status, 200);
    assert_eq!(ask(&mut conn, &get("/", "")).status, 429);
    // Another limit added, this one unchanged.
    let same = format!("{}[rate_limit.y]\nrate = \"5/s\"\n", text("1/min"));
    proxy.reload(&same).expect("reload");
    assert_eq!(ask(&mut conn, &get("/", "")).status, 429);
    proxy.reload(&text("2/min")).expect("reload");
    assert_eq!(ask(&mut conn, &get("/", "")).status, 200);
    // Counters only grow: the fresh table kept the limit's counts.
    assert_metric(&proxy, &requests("x", "allowed"), 2.0);
    assert_metric(&proxy, &requests("x", "limited"), 2.0);
}

/// One request with `Connection: close` from a socket bound to `source`; the status.
fn request_from(source: Ipv4Addr, proxy: SocketAddr) -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket.connect(&proxy.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("a response");
    let text = String::from_utf8_lossy(&response);
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status from {source}: {text:?}"))
}

/// 127.1.0.1, 127.1.0.2, …: `count` loopback addresses, each a client of its own.
fn sources(count: usize) -> impl Iterator<Item = Ipv4Addr> {
    (0..count).map(|i| {
        let n = i + 1;
        Ipv4Addr::new(127, 1, (n / 256) as u8, (n % 256) as u8)
    })
}

#[test]
fn thousands_of_clients_stay_within_max_keys() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = proxy(
        &backend,
        1,
        "rate_limits = [\"per_client\"]",
        "[rate_limit.per_client]\nrate = \"1/h\"\nmax_keys = 1000\n",
    );
    for source in sources(3000) {
        assert_eq!(request_from(source, proxy.addr), 200, "{source}");
    }
    // The table holds two halves of 500 keys; each time the newer half fills, the older one (500
    // live keys: their hour is not over) is dropped: after 3000 keys, four such drops.
    assert_metric(&proxy, &requests("per_client", "allowed"), 3000.0);
    let keys = metric_once(
        &proxy,
        "lbproxy_rate_limit_keys{limit=\"per_client\"}",
        |_| true,
    );
    assert!(keys <= 1000.0, "{keys} keys");
    assert_metric(
        &proxy,
        "lbproxy_rate_limit_evictions_total{limit=\"per_client\"}",
        2000.0,
    );
    // The latest clients are still remembered: limited.
    let last = sources(3000).last().unwrap();
    assert_eq!(request_from(last, proxy.addr), 429);
}

#[test]
fn split_over_two_workers_a_client_gets_at_most_the_whole_burst() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    // Kernel steering: each worker enforces 1/h over 2 = one per two hours, burst ⌈4/2⌉ = 2.
    // Over the test (well under an hour) the bound rate·t + W·⌈B/W⌉ allows 4 in all; a worker
    // that sees any of the client's requests admits exactly 2 of them.
    let proxy = proxy(
        &backend,
        2,
        "rate_limits = [\"per_client\"]",
        "[rate_limit.per_client]\nrate = \"1/h\"\nburst = 4\n",
    );
    // New connections, so the kernel spreads them over both workers (by source port).
    let codes: Vec<u16> = (0..40)
        .map(|_| statuses(&proxy, &get("/", ""), 1)[0])
        .collect();
    let allowed = codes.iter().filter(|&&c| c == 200).count();
    assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
    assert!(allowed == 2 || allowed == 4, "{allowed} allowed: {codes:?}");
    assert_eq!(backend.requests().len(), allowed);
    assert_metric(&proxy, &requests("per_client", "allowed"), allowed as f64);
    assert_metric(
        &proxy,
        &requests("per_client", "limited"),
        (40 - allowed) as f64,
    );
}
