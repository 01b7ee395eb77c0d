//! The live dashboard in a real browser: headless Chromium (Debian's `chromium`, installed by
//! tests/run.sh) loads `/` from a proxy under live traffic, runs its script, and the test reads
//! the rendered DOM: a row per backend, the totals changing between two loads, and a backend
//! drained through `lbproxy ctl` shown as draining, and the Instances, Autoscaling and Deployment
//! panels hidden on a proxy that discovers, autoscales and deploys nothing; and the Autoscaling
//! panel's rows and the Deployment panel's checks, with their data attributes, from hand-made
//! `/api/autoscale` and `/api/deploy` answers. Screenshots are saved to
//! `target/tmp/admin-dashboard*.png` for people to look at.

mod common;

use common::admin::{ctl, said};
use common::demo::DemoApi;
use common::load::{Connections, Load};
use common::{config, Proxy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the page may take to load and render (the script's timers run on virtual time).
const VIRTUAL_TIME_MS: &str = "3000";
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

fn chromium() -> &'static str {
    common::require_tool("chromium", "apt-get install chromium")
}

/// Runs headless Chromium on `url` with `extra` arguments (`--dump-dom`, `--screenshot=…`);
/// returns its stdout.
fn browse(url: &str, profile: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = child.kill();
            panic!("chromium did not finish within {BROWSER_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    out
}

/// The opening tag of the backend row for `address`.
fn row(dom: &str, address: SocketAddr) -> &str {
    let needle = format!("<tr data-backend=\"{address}\"");
    let start = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no row for backend {address} in:\n{dom}"));
    let end = dom[start..].find('>').unwrap() + start;
    &dom[start..=end]
}

fn attribute<'a>(tag: &'a str, name: &str) -> &'a str {
    let needle = format!("{name}=\"");
    let start = tag
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + needle.len();
    &tag[start..start + tag[start..].find('"').unwrap()]
}

/// The opening tag of the element with `id`.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let needle = format!("id=\"{id}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    &dom[start..=at + dom[at..].find('>').unwrap()]
}

/// The text of the element with `id`.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let needle = format!("id=\"{id}\"");
    let start = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let text = start + dom[start..].find('>').unwrap() + 1;
    &dom[text..text + dom[text..].find('<').unwrap()]
}

fn total_requests(dom: &str) -> u64 {
    let text = text_of(dom, "total-requests");
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("requests total {text:?} is not a number"))
}

#[test]
fn the_dashboard_shows_live_backends_in_a_real_browser() {
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&config("io_uring", &addrs, ""));
    let url = format!("http://{}/", proxy.admin_addr());
    let load = Load::start(proxy.addr, 2, Connections::KeepAlive, || {});
    load.wait_for_more(50, Duration::from_secs(10));

    let drained = ctl(
        &[
            "--admin",
            &proxy.admin_addr().to_string(),
            "drain",
            "api",
            &addrs[1].to_string(),
        ],
        &[],
    );
    assert!(drained.status.success(), "{:?}", said(&drained));

    let profile = tempfile::tempdir().unwrap();
    let first = browse(&url, profile.path(), &["--dump-dom"]);
    assert_eq!(
        text_of(&first, "live").trim(),
        "live",
        "the page got its data"
    );
    for address in &addrs {
        let tag = row(&first, *address);
        assert_eq!(attribute(tag, "data-upstream"), "api");
    }
    assert_eq!(attribute(row(&first, addrs[0]), "data-state"), "up");
    assert_eq!(attribute(row(&first, addrs[1]), "data-state"), "draining");
    assert!(first.contains("drained by admin"), "the override is shown");
    assert_eq!(text_of(&first, "kpi-backends"), "1 / 2");
    // No group discovers its backends: the Instances panel stays hidden, with no note (the page
    // is "live" only once /api/instances answered too).
    let instances = tag_with_id(&first, "instances");
    assert!(instances.contains(" hidden"), "{instances}");
    assert_eq!(text_of(&first, "instances-note"), "");
    // No group is autoscaled: the Autoscaling panel stays hidden and empty (the page is "live"
    // only once /api/autoscale answered too).
    let autoscale = tag_with_id(&first, "autoscale");
    assert!(autoscale.contains(" hidden"), "{autoscale}");
    assert!(
        !first.contains("class=\"autoscale-group\""),
        "no group, no row"
    );
    // Nothing was deployed: the Deployment panel stays hidden and empty.
    let deploy = tag_with_id(&first, "deploy");
    assert!(deploy.contains(" hidden"), "{deploy}");
    assert!(!first.contains("class=\"deploy-current\""), "no deployment");
    let before = total_requests(&first);
    assert!(before > 0, "requests total {before}");

    load.wait_for_more(50, Duration::from_secs(10));
    let second = browse(&url, profile.path(), &["--dump-dom"]);
    let after = total_requests(&second);
    assert!(
        after > before,
        "the totals move with the traffic: {before} then {after}"
    );
    assert_ne!(text_of(&second, "kpi-rps"), "–", "a request rate is shown");

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(
        &url,
        profile.path(),
        &[&format!("--screenshot={}", screenshot.display())],
    );
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);

    let report = load.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

/// Serves what a real proxy's admin server answered for the page, its assets and its API, but
/// `answers` (path, JSON) instead where given (no group is autoscaled or deployed without
/// systemd): the page as it renders autoscaled groups and deployments. Returns the address.
fn replay(proxy: SocketAddr, answers: &[(&str, serde_json::Value)]) -> SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let mut replies = std::collections::HashMap::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
        ("/assets/dashboard.css", "text/css; charset=utf-8"),
        ("/api/status", "application/json"),
        ("/api/instances", "application/json"),
        ("/api/autoscale", "application/json"),
        ("/api/deploy", "application/json"),
    ] {
        let body = common::admin::get(proxy, path, None).text();
        replies.insert(path.to_owned(), (content_type, body));
    }
    for (path, answer) in answers {
        replies.insert((*path).to_owned(), ("application/json", answer.to_string()));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
            let (status, content_type, body) = match replies.get(&path) {
                Some((content_type, body)) => ("200 OK", *content_type, body.as_str()),
                None => ("404 Not Found", "text/plain", "no"),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn the_autoscaling_panel_shows_each_group_with_its_chart() {
    let apis = [DemoApi::start(1)];
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&config("legacy", &addrs, ""));
    let now_ms = 1_796_644_800_000_u64;
    let history: Vec<serde_json::Value> = (0..60)
        .map(|i| serde_json::json!([now_ms - 60_000 + i * 1000, 1 + i / 20, 1 + i / 15]))
        .collect();
    let autoscale = serde_json::json!({"groups": [{
        "group": "api", "min": 1, "max": 8, "metric": "in_flight", "target": 10.0,
        "signal": 25.0, "current": 3, "starting": 1, "stopping": 0, "desired": 4,
        "mode": "panic", "holding_reason": null, "waiting": 0,
        "last_decision": {"at_ms": now_ms, "from": 3, "to": 4, "reason": "in_flight 25 > 10"},
        "decisions": {"up": 3, "down": 0}, "history": history,
    }, {
        "group": "batch", "min": 0, "max": 3, "metric": "cpu", "target": 60.0,
        "signal": null, "current": 0, "starting": 0, "stopping": 0, "desired": 0,
        "mode": "holding", "holding_reason": "a start is pending", "waiting": 2,
        "last_decision": null, "decisions": {"up": 0, "down": 0}, "history": [],
    }]});
    let url = format!(
        "http://{}/",
        replay(proxy.admin_addr(), &[("/api/autoscale", autoscale)])
    );
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(&url, profile.path(), &["--dump-dom"]);
    assert_eq!(
        text_of(&dom, "live").trim(),
        "live",
        "the page got its data"
    );
    let panel = tag_with_id(&dom, "autoscale");
    assert!(!panel.contains(" hidden"), "{panel}");
    for (group, mode, current, desired) in
        [("api", "panic", "3", "4"), ("batch", "holding", "0", "0")]
    {
        let needle = format!("<div class=\"autoscale-group\" data-upstream=\"{group}\"");
        let start = dom
            .find(&needle)
            .unwrap_or_else(|| panic!("no row for {group} in:\n{dom}"));
        let tag = &dom[start..=start + dom[start..].find('>').unwrap()];
        assert_eq!(attribute(tag, "data-mode"), mode);
        assert_eq!(attribute(tag, "data-current"), current);
        assert_eq!(attribute(tag, "data-desired"), desired);
    }
    assert!(
        dom.contains("a start is pending"),
        "the holding reason is shown"
    );
    assert!(
        dom.contains("in_flight 25 &gt; 10"),
        "the last decision's reason"
    );
    assert!(
        dom.contains("3 +1 starting"),
        "starting instances are shown"
    );

    let screenshot =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard-autoscale.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(
        &url,
        profile.path(),
        &[&format!("--screenshot={}", screenshot.display())],
    );
    assert!(std::fs::read(&screenshot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
}

#[test]
fn the_deployment_panel_shows_the_canary_against_its_limits() {
    let apis = [DemoApi::start(1)];
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&config("legacy", &addrs, ""));
    let now_ms = 1_796_644_800_000_u64;
    let check = |name: &str, canary: f64, stable: Option<f64>, limit: f64, passed: bool| {
        serde_json::json!({"name": name, "canary": canary, "stable": stable, "limit": limit,
            "passed": passed})
    };
    let analysis = serde_json::json!({
        "verdict": "fail",
        "summary": "p99_ratio 4.0000 > 1.5000",
        "checks": [
            check("error_ratio", 0.0, Some(0.001), 0.05, true),
            check("error_ratio_increase", -0.001, None, 0.02, true),
            check("p99_ms", 40.0, Some(10.0), 1000.0, true),
            check("p99_ratio", 4.0, None, 1.5, false),
        ],
        "canary": {"requests": 120, "server_errors": 0, "failed_attempts": 0,
            "connect_errors": 0, "p99_ms": 40.0},
        "stable": {"requests": 880, "server_errors": 1, "failed_attempts": 0,
            "connect_errors": 0, "p99_ms": 10.0},
    });
    let decision = |at_s: u64, event: &str, weight_bp: u16, message: &str| {
        serde_json::json!({"at_ms": now_ms + at_s * 1000, "event": event, "message": message,
            "weight_bp": weight_bp, "analysis": null})
    };
    let deploy = serde_json::json!({
        "current": {
            "id": 7,
            "spec": {
                "upstream": "api", "version": "v3", "strategy": "canary", "environment": {},
                "canary": {"instances": 1, "steps": [5.0, 25.0, 50.0, 100.0], "interval": 30.0,
                    "key": "client_ip"},
                "analysis": {"min_requests": 50, "max_error_ratio": 0.05,
                    "max_error_ratio_increase": 0.02, "max_p99_ms": 1000.0, "max_p99_ratio": 1.5,
                    "failure_limit": 2},
                "blue_green": {"keep_blue": 300.0},
            },
            "phase": "stepping",
            "from_version": "v2",
            "old_units": ["api@1.service", "api@2.service"],
            "new_units": ["api@3.service"],
            "step": 1,
            "weight_bp": 2500,
            "failures_in_a_row": 1,
            "last_analysis": analysis,
            "started_ms": now_ms,
            "updated_ms": now_ms + 65_000,
            "keep_blue_until_ms": null,
            "decisions": [
                decision(0, "started", 0, "starting api@3.service on v3"),
                decision(5, "step", 500, "step 1 of 4: 5% of the clients"),
                decision(35, "step", 2500, "step 2 of 4: 25% of the clients"),
                decision(65, "analysis-failed", 2500, "p99_ratio 4.0000 > 1.5000"),
            ],
            "outcome": null,
        },
        "history": [],
    });
    let url = format!(
        "http://{}/",
        replay(proxy.admin_addr(), &[("/api/deploy", deploy)])
    );
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(&url, profile.path(), &["--dump-dom"]);
    assert_eq!(
        text_of(&dom, "live").trim(),
        "live",
        "the page got its data"
    );
    let panel = tag_with_id(&dom, "deploy");
    assert!(!panel.contains(" hidden"), "{panel}");
    let start = dom
        .find("<div class=\"deploy-current\"")
        .unwrap_or_else(|| panic!("no deployment in:\n{dom}"));
    let tag = &dom[start..=start + dom[start..].find('>').unwrap()];
    assert_eq!(attribute(tag, "data-id"), "7");
    assert_eq!(attribute(tag, "data-phase"), "stepping");
    assert_eq!(attribute(tag, "data-strategy"), "canary");
    assert_eq!(attribute(tag, "data-weight-bp"), "2500");
    assert!(dom.contains("v2 → v3"), "from and to");
    assert!(dom.contains("step 2 of 4"), "the step");
    assert!(dom.contains("api@3.service"), "the new instance");
    for (check, passed) in [
        ("error_ratio", "true"),
        ("p99_ms", "true"),
        ("p99_ratio", "false"),
    ] {
        let needle = format!("<tr data-check=\"{check}\"");
        let start = dom
            .find(&needle)
            .unwrap_or_else(|| panic!("no row for {check} in:\n{dom}"));
        let tag = &dom[start..=start + dom[start..].find('>').unwrap()];
        assert_eq!(attribute(tag, "data-passed"), passed, "{check}");
    }
    assert!(dom.contains("check-failed"), "the failed check is marked");
    assert!(
        dom.contains("<tr data-event=\"analysis-failed\""),
        "the decisions are listed"
    );

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard-deploy.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(
        &url,
        profile.path(),
        &[&format!("--screenshot={}", screenshot.display())],
    );
    assert!(std::fs::read(&screenshot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
}
