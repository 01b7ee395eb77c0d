//! Autoscaling under a real systemd (the sandbox of tests/common/systemd.rs: a user manager with
//! its user D-Bus): the proxy, as the installed `lbproxy.service`, discovers `api@*.service` and
//! starts and stops instances itself over D-Bus as the load asks. An oha load ramp at stepped
//! rates → the instance count follows up, and back down after the scale-down window with no
//! failed request during the scale-in; a load that oscillates faster than the window makes no
//! instance flap; scaled to zero, the first request starts an instance and is served.

mod common;

use common::systemd::{text, Sandbox};
use common::wait_until;
use std::time::{Duration, Instant};

const LBPROXY: &str = "lbproxy.service";
const START: Duration = Duration::from_secs(30);
/// A decision and the start of a unit, on a loaded machine.
const SCALE: Duration = Duration::from_secs(30);

/// Group `api` discovers `api@*.service` and scales it on requests in flight: `autoscale` goes
/// into its `[upstream.api.autoscale]` table.
fn config(autoscale: &str) -> String {
    format!(
        "[runtime]\nworkers = 2\n\
         [admin]\naddress = \"127.0.0.1:9901\"\n\
         [listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
         [upstream.api]\nqueue_timeout = \"20s\"\n\
         [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
         address = \"127.0.0.1:{{8000+N}}\"\nresync = \"2s\"\n\
         [upstream.api.autoscale]\n{autoscale}\
         [upstream.api.health]\ninterval = \"500ms\"\nrise = 1\n\
         [upstream.api.retry]\nmax_retries = 2\nbudget_percent = 100\n"
    )
}

fn start(autoscale: &str, instances: &[&str]) -> Sandbox {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config(autoscale));
    let mut units = instances.to_vec();
    units.push(LBPROXY);
    sandbox.start_units(&units);
    sandbox
}

/// `/api/autoscale`'s group `api` (`null` before the autoscaler's first tick).
fn autoscale(sandbox: &Sandbox) -> serde_json::Value {
    let answer = sandbox
        .in_net(|| common::admin::json("127.0.0.1:9901".parse().unwrap(), "/api/autoscale", None));
    answer["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["group"] == "api")
        .cloned()
        .unwrap_or_default()
}

/// The `api@N` units systemd runs now.
fn running(sandbox: &Sandbox) -> Vec<u32> {
    let out = sandbox.systemctl_ok(&[
        "list-units",
        "--no-legend",
        "--plain",
        "--state=active",
        "api@*.service",
    ]);
    let mut units: Vec<u32> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|u| {
            u.strip_prefix("api@")?
                .strip_suffix(".service")?
                .parse()
                .ok()
        })
        .collect();
    units.sort_unstable();
    units
}

/// oha at `rate` req/s for `seconds` on `GET /delay?ms=MS` through the proxy, inside the
/// sandbox; its JSON report.
fn oha(sandbox: &Sandbox, rate: u32, seconds: u32, delay_ms: u32) -> serde_json::Value {
    let oha = oha_path();
    let out = sandbox.run(
        &oha,
        &[
            "-q",
            &rate.to_string(),
            "-z",
            &format!("{seconds}s"),
            "-w",
            "--no-tui",
            "--output-format",
            "json",
            &format!("http://127.0.0.1:8080/delay?ms={delay_ms}"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("oha's JSON: {e}: {}", text(&out)))
}

/// oha's full path (the sandbox's PATH has no ~/.cargo/bin): tests/run.sh installs it.
fn oha_path() -> String {
    common::require_tool("oha", "cargo install oha --locked");
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v oha"])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every request of an oha report answered 200.
fn assert_all_ok(what: &str, report: &serde_json::Value) {
    let statuses = &report["statusCodeDistribution"];
    let errors = &report["errorDistribution"];
    let ok = statuses["200"].as_u64().unwrap_or(0);
    assert!(ok > 0, "{what}: no request succeeded: {report:#}");
    assert!(
        statuses
            .as_object()
            .is_some_and(|s| s.keys().all(|k| k == "200")),
        "{what}: statuses {statuses}"
    );
    assert!(
        errors.as_object().is_none_or(serde_json::Map::is_empty),
        "{what}: errors {errors}"
    );
}

#[test]
fn the_instance_count_follows_a_load_ramp_and_scales_in_without_a_failed_request() {
    // 2 requests in flight per instance; 100 ms requests: 40 req/s ≈ 4 in flight → 2 instances,
    // 100 req/s ≈ 10 → 3 (max). A short panic window, so that the scale-in follows the 8 s
    // scale-down window, not the 60 s default panic window.
    let sandbox = start(
        "min = 1\nmax = 3\ntarget = 2\nscale_down_window = \"8s\"\ndrain_timeout = \"10s\"\n\
         panic_window = \"4s\"\n",
        &["api@1.service"],
    );
    wait_until(START, "api@1 routed", || {
        autoscale(&sandbox)["current"] == 1
    });

    let low = oha(&sandbox, 40, 8, 100);
    assert_all_ok("40 req/s", &low);
    let high = {
        let t = Instant::now();
        let report = oha(&sandbox, 100, 10, 100);
        eprintln!("100 req/s step took {:?}", t.elapsed());
        report
    };
    assert_all_ok("100 req/s", &high);
    wait_until(SCALE, "three instances under the high step", || {
        running(&sandbox) == [1, 2, 3]
    });
    let status = autoscale(&sandbox);
    assert!(status["last_decision"]["reason"].is_string(), "{status:#}");

    // Light load while it scales back in: the instances it stops are drained first.
    let light = oha(&sandbox, 5, 14, 100);
    assert_all_ok("5 req/s during the scale-in", &light);
    wait_until(SCALE, "back to one instance", || running(&sandbox) == [1]);
    let decisions = sandbox.journal_entries(LBPROXY, &["EVENT=scale-down"]);
    assert!(!decisions.is_empty(), "a scale-down in the journal");
}

#[test]
fn a_load_that_oscillates_faster_than_the_window_does_not_flap() {
    let sandbox = start(
        "min = 1\nmax = 3\ntarget = 2\nscale_down_window = \"20s\"\n\
         panic_threshold = \"10000%\"\n",
        &["api@1.service"],
    );
    wait_until(START, "api@1 routed", || {
        autoscale(&sandbox)["current"] == 1
    });
    assert_all_ok("high", &oha(&sandbox, 60, 4, 100));
    wait_until(SCALE, "scaled up", || running(&sandbox).len() >= 2);
    let peak = running(&sandbox).len();
    // High and low every 3 s, for 15 s: shorter than the 20 s scale-down window (panic mode is
    // off here, so the window alone keeps the instances).
    for round in 0..5 {
        let rate = if round % 2 == 0 { 2 } else { 60 };
        assert_all_ok("oscillating", &oha(&sandbox, rate, 3, 100));
        assert!(
            running(&sandbox).len() >= peak,
            "no instance stopped during the oscillation: {:?}",
            running(&sandbox)
        );
    }
    assert!(sandbox
        .journal_entries(LBPROXY, &["EVENT=scale-down"])
        .is_empty());
}

#[test]
fn scaled_to_zero_the_first_request_starts_an_instance_and_is_served() {
    let sandbox = start(
        "min = 0\nmax = 2\ntarget = 2\nscale_down_window = \"3s\"\n",
        &["api@1.service"],
    );
    wait_until(SCALE, "scaled to zero", || running(&sandbox).is_empty());
    let answered = sandbox.in_net(|| {
        let t = Instant::now();
        let response = common::client::try_request(
            "127.0.0.1:8080".parse().unwrap(),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        (
            response
                .map(|r| (r.status, r.text().trim().to_owned()))
                .map_err(|e| e.to_string()),
            t.elapsed(),
        )
    });
    eprintln!("the first request after scale-to-zero: {answered:?}");
    assert_eq!(
        answered.0.as_ref().map(|(status, _)| *status),
        Ok(200),
        "served, not failed: {answered:?}"
    );
    assert_eq!(running(&sandbox).len(), 1);
}
