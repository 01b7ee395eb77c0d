//! The admin plane end to end: `/metrics` parsed by a real Prometheus parser and counting exactly
//! the traffic sent; drain, enable and weight through the real `lbproxy ctl` while traffic flows
//! (in-flight requests finish, the distribution shifts); health probes and slow start after an
//! enable in `/api/backends`; reload through the API; token enforcement on a non-loopback bind;
//! clear `ctl` errors. Data-plane scenarios run on both io drivers. The dashboard's browser test is in tests/dashboard.rs.

mod common;

use common::admin::{self, backend, ctl, parse_metrics, said, sum};
use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::demo::DemoApi;
use common::tcp::{round_trip, tcp_config, EchoServer};
use common::{config, free_port, on_both_drivers, refusing_port, wait_until, Proxy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

on_both_drivers!(
    metrics_parse_and_count_exactly_the_traffic_sent,
    tcp_connections_are_counted_by_listener_group_and_backend,
    drain_through_ctl_lets_in_flight_requests_finish_and_enable_brings_it_back,
    weight_through_ctl_shifts_the_distribution_until_the_next_reload,
    probes_show_in_the_api_and_a_backend_enabled_after_a_drain_ramps_up,
);

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "test-admin-token-0123456789";

fn metrics(admin: SocketAddr, token: Option<&str>) -> Vec<admin::Sample> {
    let response = admin::get(admin, "/metrics", token);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_metrics(&response.text())
}

fn metrics_parse_and_count_exactly_the_traffic_sent(driver: &str) {
    let ok = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let busy = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".to_vec(),
    ));
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\n\
         [[listener.http.route]]\npath_prefix = \"/api/\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\", \"{}\"]\n\
         [upstream.api.outlier]\nconsecutive_failures = 0\n",
        ok.addr, busy.addr
    ));
    let admin = proxy.admin_addr();

    // 120 requests on 6 keep-alive connections, then 7 that no route matches (404, each on its
    // own connection: the proxy closes after an error).
    let (connections, per_connection, unrouted) = (6, 20, 7);
    let request = b"GET /api/item HTTP/1.1\r\nHost: metrics.test\r\n\r\n";
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for _ in 0..connections {
        let mut conn = Conn::open(proxy.addr);
        for _ in 0..per_connection {
            conn.send(request);
            *statuses
                .entry(conn.read_response("GET").unwrap().status)
                .or_default() += 1;
        }
    }
    for _ in 0..unrouted {
        assert_eq!(client::get(proxy.addr, "/elsewhere").status, 404);
    }
    let forwarded = connections * per_connection;
    let (served_ok, served_busy) = (statuses[&200], statuses[&503]);
    assert_eq!(served_ok + served_busy, forwarded);

    let total = (forwarded + unrouted) as f64;
    let mut samples = Vec::new();
    wait_until(WAIT, "the workers to publish every request", || {
        samples = metrics(admin, None);
        sum(&samples, "lbproxy_listener_requests_total", &[]) == total
    });
    let count = |name: &str, labels: &[(&str, &str)]| sum(&samples, name, labels);
    let (ok_addr, busy_addr) = (ok.addr.to_string(), busy.addr.to_string());

    // Listener: every request by class, every connection, every request byte.
    let listener = [("listener", "http")];
    let with = |extra: (&'static str, &'static str)| [listener[0], extra];
    assert_eq!(
        count("lbproxy_listener_requests_total", &with(("code", "2xx"))),
        served_ok as f64
    );
    assert_eq!(
        count("lbproxy_listener_requests_total", &with(("code", "5xx"))),
        served_busy as f64
    );
    assert_eq!(
        count("lbproxy_listener_requests_total", &with(("code", "4xx"))),
        unrouted as f64
    );
    assert_eq!(
        count("lbproxy_listener_connections_total", &listener),
        (connections + unrouted) as f64
    );
    let unrouted_head = "GET /elsewhere HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    assert_eq!(
        count("lbproxy_listener_received_bytes_total", &listener),
        (forwarded * request.len() + unrouted * unrouted_head.len()) as f64,
        "every request head, refused ones included"
    );
    assert!(count("lbproxy_listener_sent_bytes_total", &listener) > 0.0);
    assert_eq!(count("lbproxy_listener_open_connections", &listener), 0.0);

    // Route, group and backends agree with what the clients got.
    assert_eq!(
        count(
            "lbproxy_route_requests_total",
            &[("route", "/api/"), ("upstream", "api")]
        ),
        forwarded as f64
    );
    let api = [("upstream", "api")];
    assert_eq!(
        count("lbproxy_upstream_requests_total", &api),
        forwarded as f64
    );
    assert_eq!(
        count(
            "lbproxy_upstream_requests_total",
            &[api[0], ("code", "5xx")]
        ),
        served_busy as f64
    );
    assert_eq!(
        count(
            "lbproxy_backend_requests_total",
            &[("backend", &ok_addr), ("code", "2xx")]
        ),
        served_ok as f64
    );
    assert_eq!(
        count(
            "lbproxy_backend_requests_total",
            &[("backend", &busy_addr), ("code", "5xx")]
        ),
        served_busy as f64
    );
    assert!(served_ok > 0 && served_busy > 0, "both backends served");
    assert_eq!(
        count("lbproxy_upstream_request_duration_seconds_count", &api),
        forwarded as f64
    );
    assert_eq!(
        count(
            "lbproxy_upstream_request_duration_seconds_bucket",
            &[api[0], ("le", "+Inf")]
        ),
        forwarded as f64
    );
    assert_eq!(
        count("lbproxy_backend_request_duration_seconds_count", &api),
        forwarded as f64
    );
    assert_eq!(
        count("lbproxy_backend_pool_hits_total", &api)
            + count("lbproxy_backend_pool_misses_total", &api),
        forwarded as f64,
        "one pool checkout per request"
    );
    for idle in [
        "lbproxy_upstream_in_flight_requests",
        "lbproxy_backend_in_flight_requests",
    ] {
        assert_eq!(count(idle, &api), 0.0, "{idle}");
    }
    assert_eq!(count("lbproxy_upstream_retries_total", &api), 0.0);
    assert_eq!(count("lbproxy_backend_up", &api), 2.0);
    assert_eq!(
        count("lbproxy_backend_state", &[api[0], ("state", "up")]),
        4.0,
        "2 backends × 2 workers"
    );

    // Workers: their requests add up, and each says its driver.
    assert_eq!(
        count("lbproxy_worker_requests_total", &[]),
        forwarded as f64
    );
    assert_eq!(
        count("lbproxy_worker_driver_info", &[("driver", driver)]),
        2.0
    );
    assert_eq!(count("lbproxy_info", &[("driver", driver)]), 1.0);
    assert!(samples
        .iter()
        .any(|s| s.name == "lbproxy_worker_event_loop_lag_seconds"));

    // The JSON API says the same.
    let status = admin::json(admin, "/api/status", None);
    assert_eq!(status["totals"]["requests"], forwarded + unrouted);
    let listed = backend(&status, "api", ok.addr);
    assert_eq!(listed["requests_total"], served_ok);
    assert_eq!(listed["state"], "up");
    assert_eq!(status["workers"].as_array().unwrap().len(), 2);
}

fn tcp_connections_are_counted_by_listener_group_and_backend(driver: &str) {
    let echo = EchoServer::start(false);
    let refused = refusing_port();
    let proxy = Proxy::start(&tcp_config(
        driver,
        "copy",
        &[refused, echo.addr],
        "",
        "[upstream.api.outlier]\nconsecutive_failures = 0\n",
    ));
    let data = b"twelve bytes".repeat(100);
    let connections = 6;
    for _ in 0..connections {
        assert_eq!(round_trip(proxy.addr, &data).unwrap(), data);
    }
    let mut samples = Vec::new();
    wait_until(WAIT, "the workers to publish every connection", || {
        samples = metrics(proxy.admin_addr(), None);
        sum(&samples, "lbproxy_backend_connections_total", &[]) == connections as f64
            && sum(&samples, "lbproxy_listener_open_connections", &[]) == 0.0
    });
    let count = |name: &str, labels: &[(&str, &str)]| sum(&samples, name, labels);
    let (echo_addr, refused_addr) = (echo.addr.to_string(), refused.to_string());
    let bytes = (connections * data.len()) as f64;
    let tcp = [("listener", "tcp")];
    assert_eq!(
        count("lbproxy_listener_connections_total", &tcp),
        connections as f64
    );
    assert_eq!(count("lbproxy_listener_received_bytes_total", &tcp), bytes);
    assert_eq!(count("lbproxy_listener_sent_bytes_total", &tcp), bytes);
    let echoing = [("backend", echo_addr.as_str())];
    assert_eq!(
        count("lbproxy_backend_connections_total", &echoing),
        connections as f64
    );
    assert_eq!(count("lbproxy_backend_open_connections", &echoing), 0.0);
    assert_eq!(count("lbproxy_backend_sent_bytes_total", &echoing), bytes);
    assert_eq!(
        count("lbproxy_backend_received_bytes_total", &echoing),
        bytes
    );
    let connect_errors = count(
        "lbproxy_backend_connect_errors_total",
        &[("backend", refused_addr.as_str())],
    );
    assert!(
        connect_errors >= 1.0,
        "round robin tried the refusing backend"
    );
    assert_eq!(
        count("lbproxy_upstream_retries_total", &[("upstream", "api")]),
        connect_errors,
        "every refused connect was retried on the other backend"
    );
    assert_eq!(
        count(
            "lbproxy_backend_failed_attempts_total",
            &[("backend", refused_addr.as_str())]
        ),
        connect_errors
    );
}

/// The instance (`X-Instance`) that answered `GET path` on a new connection.
fn instance(proxy: SocketAddr, path: &str) -> String {
    let response = client::get(proxy, path);
    assert_eq!(response.status, 200, "{}", response.text());
    response.header("x-instance").unwrap_or("?").to_owned()
}

fn drain_through_ctl_lets_in_flight_requests_finish_and_enable_brings_it_back(driver: &str) {
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&config(driver, &addrs, ""));
    let admin = proxy.admin_addr();
    let admin_arg = admin.to_string();

    // A slow request is in flight to one of them: that one gets drained.
    let slow = std::thread::spawn({
        let addr = proxy.addr;
        move || client::get(addr, "/delay?ms=2000")
    });
    let mut busy = None;
    wait_until(WAIT, "the slow request to be in flight", || {
        let api = admin::json(admin, "/api/backends", None);
        busy = addrs
            .iter()
            .copied()
            .find(|a| backend(&api, "api", *a)["in_flight"] == 1);
        busy.is_some()
    });
    let busy = busy.unwrap();
    let (busy_instance, idle_instance) = if busy == apis[0].addr {
        ("1", "2")
    } else {
        ("2", "1")
    };

    let drained = ctl(
        &["--admin", &admin_arg, "drain", "api", &busy.to_string()],
        &[],
    );
    let (out, err) = said(&drained);
    assert!(drained.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("api/{busy}: drained on 2 workers")),
        "{out}"
    );

    // Every new request goes to the other backend, on every worker, at once.
    for _ in 0..20 {
        assert_eq!(instance(proxy.addr, "/"), idle_instance);
    }
    // The request in flight finished on the drained backend.
    let response = slow.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-instance"), Some(busy_instance));

    let listed = ctl(&["--admin", &admin_arg, "backends"], &[]);
    let (out, err) = said(&listed);
    assert!(listed.status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&busy.to_string()))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("draining"), "{out}");
    let api = admin::json(admin, "/api/backends", None);
    assert_eq!(backend(&api, "api", busy)["drain_override"], true);
    wait_until(
        WAIT,
        "the finished request to leave the in-flight count",
        || backend(&admin::json(admin, "/api/backends", None), "api", busy)["in_flight"] == 0,
    );

    let enabled = ctl(
        &["--admin", &admin_arg, "enable", "api", &busy.to_string()],
        &[],
    );
    assert!(enabled.status.success(), "{:?}", said(&enabled));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(instance(proxy.addr, "/"));
    }
    assert_eq!(seen.len(), 2, "both take requests again: {seen:?}");
    let api = admin::json(admin, "/api/backends", None);
    assert_eq!(backend(&api, "api", busy)["state"], "up");
}

fn probes_show_in_the_api_and_a_backend_enabled_after_a_drain_ramps_up(driver: &str) {
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let toml = format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbalance = \"weighted\"\nslow_start = \"30s\"\n\
         backends = [\"{}\", \"{}\"]\n\
         [upstream.api.health]\npath = \"/health/ready\"\ninterval = \"100ms\"\n",
        apis[0].addr, apis[1].addr
    );
    let proxy = Proxy::start(&toml);
    let admin = proxy.admin_addr();
    let (one, two) = (apis[0].addr, apis[1].addr);

    // The group's settings, and each backend's probes as they happen.
    let api = admin::json(admin, "/api/backends", None);
    let group = &api["upstreams"][0];
    assert_eq!(group["slow_start_ms"], 30_000);
    let check = &group["health_check"];
    assert_eq!(
        (&check["type"], &check["path"], &check["interval_ms"]),
        (&"http".into(), &"/health/ready".into(), &100.into()),
        "{group:#}"
    );
    assert_eq!((&check["rise"], &check["fall"]), (&2.into(), &3.into()));
    wait_until(WAIT, "two passing probes of each backend", || {
        let api = admin::json(admin, "/api/backends", None);
        [one, two].iter().all(|b| {
            let probes = &backend(&api, "api", *b)["probes"];
            probes["passes_in_a_row"].as_u64() >= Some(2) && probes["last_error"].is_null()
        })
    });
    apis[1].set_ready(false);
    wait_until(
        WAIT,
        "a failing probe of instance 2, with its reason",
        || {
            let api = admin::json(admin, "/api/backends", None);
            let probes = &backend(&api, "api", two)["probes"];
            probes["failures_in_a_row"].as_u64() >= Some(1)
                && probes["passes_in_a_row"] == 0
                && probes["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("503"))
        },
    );
    let before = backend(&admin::json(admin, "/api/backends", None), "api", one)["probes"]["total"]
        .as_u64()
        .unwrap();
    wait_until(WAIT, "more probes of instance 1", || {
        backend(&admin::json(admin, "/api/backends", None), "api", one)["probes"]["total"].as_u64()
            > Some(before)
    });

    // Enabled after a drain (a rolling restart's last step), a backend takes its share gradually.
    // (Instance 2 may be down by now, so the drain may take the last one: forced.)
    let path = |action: &str| format!("/api/backends/api/{one}/{action}");
    assert_eq!(
        admin::request(admin, "POST", &path("drain?force=true"), None, "").status,
        200
    );
    assert_eq!(
        backend(&admin::json(admin, "/api/backends", None), "api", one)["state"],
        "draining"
    );
    assert_eq!(
        admin::request(admin, "POST", &path("enable"), None, "").status,
        200
    );
    let api = admin::json(admin, "/api/backends", None);
    let enabled = backend(&api, "api", one);
    assert_eq!(enabled["state"], "slow-start", "{api:#}");
    assert!(enabled["ramp_percent"].as_f64() < Some(100.0), "{api:#}");
}

/// How many of `n` requests on one keep-alive connection each instance answered.
fn spread(proxy: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut conn = Conn::open(proxy);
    let mut counts = HashMap::new();
    for _ in 0..n {
        conn.send(b"GET / HTTP/1.1\r\nHost: weights.test\r\n\r\n");
        let response = conn.read_response("GET").unwrap();
        let instance = response.header("x-instance").unwrap_or("?").to_owned();
        *counts.entry(instance).or_default() += 1;
    }
    counts
}

fn near(counts: &HashMap<String, usize>, instance: &str, expected: usize) -> bool {
    counts
        .get(instance)
        .copied()
        .unwrap_or(0)
        .abs_diff(expected)
        <= 1
}

fn weight_through_ctl_shifts_the_distribution_until_the_next_reload(driver: &str) {
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let toml = format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbalance = \"weighted\"\nbackends = [\"{}\", \"{}\"]\n",
        apis[0].addr, apis[1].addr
    );
    let proxy = Proxy::start(&toml);
    let admin = proxy.admin_addr().to_string();
    let even = spread(proxy.addr, 100);
    assert!(near(&even, "1", 50) && near(&even, "2", 50), "{even:?}");

    let reweighed = ctl(
        &[
            "--admin",
            &admin,
            "--json",
            "weight",
            "api",
            &apis[0].addr.to_string(),
            "3",
        ],
        &[],
    );
    let (out, err) = said(&reweighed);
    assert!(reweighed.status.success(), "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(answer["change"], "reweighted");
    assert_eq!(answer["workers"], 1);
    let shifted = spread(proxy.addr, 200);
    assert!(
        near(&shifted, "1", 150) && near(&shifted, "2", 50),
        "{shifted:?}"
    );
    let api = admin::json(proxy.admin_addr(), "/api/backends", None);
    let heavy = backend(&api, "api", apis[0].addr);
    assert_eq!(
        (heavy["weight"].clone(), heavy["configured_weight"].clone()),
        (3.into(), 1.into())
    );

    // A reload restores what the configuration says.
    let reloaded = ctl(&["--admin", &admin, "reload"], &[]);
    let (out, err) = said(&reloaded);
    assert!(reloaded.status.success(), "{out}{err}");
    assert!(out.contains("reload 1 applied"), "{out}");
    let api = admin::json(proxy.admin_addr(), "/api/backends", None);
    assert_eq!(backend(&api, "api", apis[0].addr)["weight"], 1);
    assert!(backend(&api, "api", apis[0].addr)["weight_override"].is_null());
    let even = spread(proxy.addr, 100);
    assert!(near(&even, "1", 50) && near(&even, "2", 50), "{even:?}");
}

#[test]
fn draining_the_last_serving_backend_needs_force() {
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let (one, two) = (apis[0].addr, apis[1].addr);
    let proxy = Proxy::start(&config("legacy", &[one, two], ""));
    let admin = proxy.admin_addr().to_string();
    let drain = |backend: SocketAddr, force: bool| {
        let mut args = vec!["--admin", &admin, "drain"];
        if force {
            args.push("--force");
        }
        let backend = backend.to_string();
        ctl(&[&args[..], &["api", &backend]].concat(), &[])
    };

    let first = drain(one, false);
    assert!(first.status.success(), "{:?}", said(&first));
    // Back to back: the second sees the first (the API answers once the workers published it).
    let last = drain(two, false);
    let (out, err) = said(&last);
    assert_eq!(last.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!(
            "not draining {two}: no other backend of upstream \"api\" serves ({one} draining)"
        )) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(client::get(proxy.addr, "/").status, 200, "still serving");
    let api = admin::json(proxy.admin_addr(), "/api/backends", None);
    assert_eq!(backend(&api, "api", two)["state"], "up");

    let forced = drain(two, true);
    assert!(forced.status.success(), "{:?}", said(&forced));
    let api = admin::json(proxy.admin_addr(), "/api/backends", None);
    assert_eq!(backend(&api, "api", two)["state"], "draining");
    assert_eq!(
        client::get(proxy.addr, "/").status,
        503,
        "nothing serves now"
    );
}

#[test]
fn a_refused_reload_through_the_api_says_why_and_keeps_serving() {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let toml = config("legacy", &[api.addr], "");
    let proxy = Proxy::start(&toml);
    proxy
        .reload(&toml.replace("[upstream.api]", "[upstream.api]\nbalance = \"fastest\""))
        .expect_err("the file on disk is invalid now");
    let response = admin::request(proxy.admin_addr(), "POST", "/api/reload", None, "");
    assert_eq!(response.status, 422, "{}", response.text());
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(answer["applied"], false);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown balance `fastest`"),
        "{answer}"
    );
    let refused = ctl(&["--admin", &proxy.admin_addr().to_string(), "reload"], &[]);
    assert!(!refused.status.success());
    assert!(said(&refused).1.contains("fastest"), "{:?}", said(&refused));
    assert_eq!(client::get(proxy.addr, "/").status, 204, "still serving");
}

#[test]
fn a_non_loopback_admin_address_needs_a_token_and_enforces_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open.toml");
    let open = format!(
        "[admin]\naddress = \"0.0.0.0:{}\"\n[listener.http]\naddress = \"{}\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"127.0.0.1:9\"]\n",
        free_port().port(),
        free_port()
    );
    std::fs::write(&file, &open).unwrap();
    // The proxy refuses to start, saying why (and `check` says the same).
    for command in ["check", "serve"] {
        let mut output = std::process::Command::new(env!("CARGO_BIN_EXE_lbproxy"));
        let output = common::isolate_state(&mut output, &dir.path().join("state"))
            .args([command, "-c"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("admin.address") && stderr.contains("without a token"),
            "{command}: {stderr}"
        );
    }

    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let proxy = Proxy::start(&config(
        "legacy",
        &[api.addr],
        &format!(
            "[admin]\naddress = \"0.0.0.0:0\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    ));
    let admin = SocketAddr::from(([127, 0, 0, 1], proxy.admin_addr().port()));
    assert!(proxy.admin_addr().ip().is_unspecified());

    for path in [
        "/metrics",
        "/api/status",
        "/api/backends",
        "/api/instances",
        "/api/autoscale",
    ] {
        let refused = admin::get(admin, path, None);
        assert_eq!(refused.status, 401, "{path}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer realm=\"lbproxy admin\"")
        );
        assert_eq!(
            admin::get(admin, path, Some("wrong-token-0123456789")).status,
            401
        );
        assert_eq!(admin::get(admin, path, Some(TOKEN)).status, 200, "{path}");
    }
    let page = admin::get(admin, "/", None);
    assert_eq!(
        page.status, 200,
        "the page itself is public; its data is not"
    );
    assert!(page.text().contains("<title>lbproxy</title>"));
    let drain = format!("/api/backends/api/{}/drain", api.addr);
    assert_eq!(admin::request(admin, "POST", &drain, None, "").status, 401);
    let listed = admin::json(admin, "/api/backends", Some(TOKEN));
    assert_eq!(
        backend(&listed, "api", api.addr)["state"],
        "up",
        "not drained"
    );

    let admin_arg = admin.to_string();
    let wrong = ctl(
        &["--admin", &admin_arg, "status"],
        &[("LBPROXY_ADMIN_TOKEN", "wrong-token-0123456789")],
    );
    let (_, err) = said(&wrong);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(err.contains("refused the token"), "{err}");
    let none = ctl(&["--admin", &admin_arg, "status"], &[]);
    assert!(said(&none).1.contains("refused the token"));
    let right = ctl(
        &[
            "--admin",
            &admin_arg,
            "--token-file",
            token_file.to_str().unwrap(),
            "drain",
            "--force",
            "api",
            &api.addr.to_string(),
        ],
        &[],
    );
    assert!(right.status.success(), "{:?}", said(&right));
    let from_env = ctl(
        &["--admin", &admin_arg, "backends"],
        &[("LBPROXY_ADMIN_TOKEN", TOKEN)],
    );
    let (out, err) = said(&from_env);
    assert!(from_env.status.success(), "{err}");
    assert!(out.contains("draining"), "{out}");
}

/// Without `discover` there are no instances: the API says so in its shape (the discovery tests
/// fill it with real units), `/metrics` declares the instance families with no sample, and `ctl
/// instances` says how to configure discovery.
#[test]
fn instances_are_empty_without_discovery_and_ctl_says_how_to_discover() {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[api.addr], ""));
    let admin = proxy.admin_addr();

    let listed = admin::json(admin, "/api/instances", None);
    assert_eq!(
        listed,
        serde_json::json!({"read_at_ms": null, "discover": [], "instances": []})
    );
    let post = admin::request(admin, "POST", "/api/instances", None, "");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));

    let exposition = admin::get(admin, "/metrics", None).text();
    for family in [
        "lbproxy_instance_up gauge",
        "lbproxy_instance_restarts_total counter",
    ] {
        assert!(
            exposition.contains(&format!("# TYPE {family}\n")),
            "{family}"
        );
    }
    assert!(
        !exposition
            .lines()
            .any(|line| line.starts_with("lbproxy_instance_")),
        "no instance, no sample"
    );

    let admin_arg = admin.to_string();
    let table = ctl(&["--admin", &admin_arg, "instances"], &[]);
    let (out, err) = said(&table);
    assert!(table.status.success(), "{err}");
    assert!(
        out.starts_with("no instances: no upstream group uses `discover`"),
        "{out}"
    );
    assert!(
        out.contains("`[upstream.NAME.discover]` with `systemd = \"api@*.service\"`"),
        "{out}"
    );
    let json = ctl(&["--admin", &admin_arg, "--json", "instances"], &[]);
    assert!(json.status.success(), "{:?}", said(&json));
    let printed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json is JSON");
    assert_eq!(printed, listed);
}

/// Without `[upstream.NAME.autoscale]` no group is autoscaled: `/api/autoscale` lists none,
/// `/metrics` declares the autoscale families with no sample, and `ctl autoscale` says how to
/// configure autoscaling.
#[test]
fn autoscale_is_empty_without_autoscaling_and_ctl_says_how_to_configure_it() {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[api.addr], ""));
    let admin = proxy.admin_addr();

    let listed = admin::json(admin, "/api/autoscale", None);
    assert_eq!(listed, serde_json::json!({"groups": []}));
    let post = admin::request(admin, "POST", "/api/autoscale", None, "");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));

    let exposition = admin::get(admin, "/metrics", None).text();
    for family in [
        "lbproxy_autoscale_desired_instances gauge",
        "lbproxy_autoscale_decisions_total counter",
        "lbproxy_autoscale_signal gauge",
    ] {
        assert!(
            exposition.contains(&format!("# TYPE {family}\n")),
            "{family}"
        );
    }
    assert!(
        !exposition
            .lines()
            .any(|line| line.starts_with("lbproxy_autoscale_")),
        "no autoscaled group, no sample"
    );

    let admin_arg = admin.to_string();
    let table = ctl(&["--admin", &admin_arg, "autoscale"], &[]);
    let (out, err) = said(&table);
    assert!(table.status.success(), "{err}");
    assert!(
        out.starts_with("no autoscaling: no upstream group has [upstream.NAME.autoscale]"),
        "{out}"
    );
    assert!(out.contains("`min` and `max`"), "{out}");
    let json = ctl(&["--admin", &admin_arg, "--json", "autoscale"], &[]);
    assert!(json.status.success(), "{:?}", said(&json));
    let printed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json is JSON");
    assert_eq!(printed, listed);
}

/// Runs `lbproxy deploy ARGS` (without the test's own `LBPROXY_ADMIN*` variables).
fn deploy(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lbproxy"))
        .arg("deploy")
        .args(args)
        .env_remove("LBPROXY_ADMIN")
        .env_remove("LBPROXY_ADMIN_TOKEN")
        .env_remove("LBPROXY_ADMIN_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run lbproxy deploy")
}

/// A group of fixed backends cannot be deployed: `/api/deploy` has no deployment, `/metrics`
/// declares the deploy families with no sample, a start is refused with the reason and its fix
/// (through the API and through `lbproxy deploy`, which names a spec's own mistakes before
/// sending it), and promote, abort and rollback say that nothing is in progress.
#[test]
fn a_group_of_fixed_backends_cannot_be_deployed_and_deploy_says_why() {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[api.addr], ""));
    let admin = proxy.admin_addr();

    let overview = admin::json(admin, "/api/deploy", None);
    assert_eq!(
        overview,
        serde_json::json!({"current": null, "history": []})
    );
    assert_eq!(
        admin::json(admin, "/api/deploy/history", None),
        serde_json::json!({"history": []})
    );
    let put = admin::request(admin, "PUT", "/api/deploy", None, "");
    assert_eq!((put.status, put.header("allow")), (405, Some("GET, POST")));
    let get = admin::request(admin, "GET", "/api/deploy/abort", None, "");
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
    let refused = admin::request(
        admin,
        "POST",
        "/api/deploy",
        None,
        r#"{"upstream": "api", "version": "v2"}"#,
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("fixed list of backends"),
        "{}",
        refused.text()
    );
    let abort = admin::request(admin, "POST", "/api/deploy/abort", None, "why");
    assert_eq!(abort.status, 409, "{}", abort.text());

    let exposition = admin::get(admin, "/metrics", None).text();
    for family in [
        "lbproxy_deploy_in_progress gauge",
        "lbproxy_deploys_total counter",
    ] {
        assert!(
            exposition.contains(&format!("# TYPE {family}\n")),
            "{family}"
        );
    }
    assert!(
        !exposition
            .lines()
            .any(|line| line.starts_with("lbproxy_deploy")),
        "nothing deployed, no sample"
    );

    let admin_arg = admin.to_string();
    let target = ["--admin", admin_arg.as_str()];
    let start = deploy(
        &[
            &target[..],
            &["start", "--upstream", "api", "--version", "v2"],
        ]
        .concat(),
    );
    let (out, err) = said(&start);
    assert_eq!(start.status.code(), Some(1), "{out}");
    assert!(err.contains("the proxy refused the deployment"), "{err}");
    assert!(err.contains("[upstream.api.discover]"), "{err}");
    let bad = deploy(
        &[
            &target[..],
            &["start", "--upstream", "api", "--version", "v 2"],
        ]
        .concat(),
    );
    let (_, err) = said(&bad);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        err.contains("the deployment spec (the command line) has 1 problem"),
        "named before it is sent: {err}"
    );
    for action in ["promote", "abort", "rollback"] {
        let output = deploy(&[&target[..], &[action]].concat());
        let (_, err) = said(&output);
        assert_eq!(output.status.code(), Some(1), "{action}");
        assert!(
            err.contains("no deployment is in progress"),
            "{action}: {err}"
        );
    }
    let status = deploy(&[&target[..], &["status"]].concat());
    let (out, err) = said(&status);
    assert!(status.status.success(), "{err}");
    assert!(out.starts_with("no deployment yet; "), "{out}");
    let json = deploy(&[&target[..], &["status", "--json"]].concat());
    let printed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json is JSON");
    assert_eq!(printed, overview);
    let history = deploy(&[&target[..], &["history"]].concat());
    assert!(said(&history).0.starts_with("no deployment has ended yet"));
}

#[test]
fn ctl_says_when_no_proxy_answers() {
    let nobody = refusing_port().to_string();
    let output = ctl(&["--admin", &nobody, "status"], &[]);
    let (out, err) = said(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        err.contains(&format!(
            "cannot reach the lbproxy admin server at {nobody}"
        )),
        "{err}"
    );
    assert!(err.contains("Is the proxy running"), "{err}");
    let unknown = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[unknown.addr], ""));
    let output = ctl(
        &[
            "--admin",
            &proxy.admin_addr().to_string(),
            "drain",
            "api",
            "127.0.0.1:1",
        ],
        &[],
    );
    let err = said(&output).1;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "has no backend \"127.0.0.1:1\"; its backends are: {}",
            unknown.addr
        )),
        "{err}"
    );
}

#[test]
fn a_busy_admin_port_fails_the_start_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lbproxy.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\naddress = \"{address}\"\n[listener.http]\naddress = \"127.0.0.1:0\"\n\
             upstream = \"api\"\n[upstream.api]\nbackends = [\"127.0.0.1:9\"]\n"
        ),
    )
    .unwrap();
    let config = lbproxy::config::load(Some(&path), None).unwrap();
    let error = lbproxy::server::Server::start(std::sync::Arc::new(config))
        .expect_err("the admin port is taken");
    let text = format!("{error:#}");
    assert!(
        text.contains(&format!("the admin server cannot listen on {address}"))
            && text.contains("[admin] address"),
        "{text}"
    );
}

#[test]
fn pages_from_other_sites_cannot_drive_a_tokenless_admin_server() {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[api.addr], ""));
    let admin = proxy.admin_addr();
    let post = |host: &str, origin: &str| {
        let raw = format!(
            "POST /api/backends/api/{}/drain?force=true HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            api.addr
        );
        client::request(admin, raw.as_bytes()).status
    };
    assert_eq!(
        post("evil.example:9901", "http://evil.example:9901"),
        403,
        "DNS rebinding"
    );
    assert_eq!(
        post(&admin.to_string(), "http://evil.example"),
        403,
        "cross-site"
    );
    let listed = admin::json(admin, "/api/backends", None);
    assert_eq!(backend(&listed, "api", api.addr)["state"], "up");
    assert_eq!(
        post(&admin.to_string(), &format!("http://{admin}")),
        200,
        "same origin"
    );
}

// `POST /api/reload` under systemd: the same `RELOADING=1` … `READY=1` as SIGHUP, and the outcome
// recorded where `lbproxy reload` (the unit's `ExecReload=`) looks. The service manager's end is a
// datagram socket named by NOTIFY_SOCKET, as systemd passes it.
#[test]
fn a_reload_through_the_api_tells_systemd_as_sighup_does() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    // The next message that `wanted` accepts, within 20s; every message on the way goes to `seen`.
    let next_message = |what: &str, wanted: &dyn Fn(&str) -> bool, seen: &dyn Fn(&str)| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "no {what} notification within 20s");
            notify.set_read_timeout(Some(left)).unwrap();
            let mut buffer = [0; 4096];
            let len = notify
                .recv(&mut buffer)
                .unwrap_or_else(|e| panic!("no {what} notification: {e}"));
            let message = String::from_utf8_lossy(&buffer[..len]).into_owned();
            seen(&message);
            if wanted(&message) {
                return message;
            }
        }
    };
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let admin_addr = free_port();
    let file = dir.path().join("lbproxy.toml");
    std::fs::write(
        &file,
        format!(
            "[runtime]\nworkers = 1\n[admin]\naddress = \"{admin_addr}\"\n\
             [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{}\"]\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut proxy = std::process::Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    let mut proxy = common::isolate_state(&mut proxy, &dir.path().join("state"))
        .args(["serve", "-c"])
        .arg(&file)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUNTIME_DIRECTORY", dir.path())
        .env("LBPROXY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stop = scopeguard(|| {
        let _ = proxy.kill();
        let _ = proxy.wait();
    });
    let is_ready = |message: &str| message.lines().any(|line| line == "READY=1");
    next_message("startup READY=1", &is_ready, &|_| {});

    let response = admin::request(admin_addr, "POST", "/api/reload", None, "");
    assert_eq!(response.status, 200, "{}", response.text());
    // STATUS= updates may come in between; RELOADING=1 comes first, then READY=1.
    let reloading = next_message(
        "RELOADING=1",
        &|message| message.contains("RELOADING=1"),
        &|message| assert!(!is_ready(message), "READY before RELOADING: {message:?}"),
    );
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    let ready = next_message("READY=1 after the reload", &is_ready, &|_| {});
    assert!(
        ready.contains("STATUS=serving; reload 1 applied"),
        "{ready:?}"
    );
    let state = std::fs::read_to_string(dir.path().join("reload-state")).unwrap();
    assert!(
        state.contains("attempt=1\n") && state.contains("result=applied\n"),
        "{state}"
    );
    drop(stop);
}

/// Runs `f` when dropped (also when the test panics), so a failed test leaves no process behind.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
