//! Deployments under a real systemd (the sandbox of tests/common/systemd.rs: a user manager with
//! its user D-Bus): the proxy, as the installed `lbproxy.service`, discovers `api@*.service`;
//! `lbproxy deploy` starts new versions of the demo API (its version file passes
//! `DEMO_API_ARGS`: `--fail-ratio`, `--crash-after`) while a load of many clients (each its own
//! `x-client` key, the split's key here) runs through the proxy and every response is counted:
//! a good canary is promoted with no failed request; one answering a fifth with 500s is rolled
//! back after two failed windows, with the client-visible failures bounded by its weight; a
//! crashing one aborts at once; one with no traffic holds; a proxy restart mid-canary resumes
//! it; blue-green switches and switches back with no failed request.

mod common;

use common::client;
use common::systemd::{text, Sandbox};
use common::wait_until;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LBPROXY: &str = "lbproxy.service";
const START: Duration = Duration::from_secs(30);
/// A whole deployment on a loaded machine.
const DEPLOY: Duration = Duration::from_secs(120);

fn proxy_addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn config() -> String {
    "[runtime]\nworkers = 2\n\
     [admin]\naddress = \"127.0.0.1:9901\"\n\
     [listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
     [upstream.api]\nbalance = \"round_robin\"\n\
     [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
     address = \"127.0.0.1:{8000+N}\"\nresync = \"2s\"\n\
     [upstream.api.health]\ninterval = \"500ms\"\nrise = 1\n"
        .to_owned()
}

fn start() -> Sandbox {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config());
    sandbox.start_units(&["api@1.service", "api@2.service", "api@3.service", LBPROXY]);
    sandbox
}

/// A spec file in the sandbox's home: canary of version `v2` with `environment`, `steps`,
/// `interval`, split on the `x-client` header, `min_requests` per window.
fn spec(sandbox: &Sandbox, name: &str, body: &str) -> String {
    let path = sandbox.home().join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn canary_spec(args: &str, steps: &str, interval: &str, min_requests: u32) -> String {
    format!(
        "upstream = \"api\"\nversion = \"v2\"\nstrategy = \"canary\"\n\
         [environment]\nDEMO_API_ARGS = \"{args}\"\n\
         [canary]\nsteps = [{steps}]\ninterval = \"{interval}\"\nkey = \"header:x-client\"\n\
         [analysis]\nmin_requests = {min_requests}\n"
    )
}

fn lbproxy(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    sandbox.run(env!("CARGO_BIN_EXE_lbproxy"), args)
}

/// `GET /api/deploy`.
fn deploy_status(sandbox: &Sandbox) -> serde_json::Value {
    sandbox.in_net(|| common::admin::json("127.0.0.1:9901".parse().unwrap(), "/api/deploy", None))
}

fn current(sandbox: &Sandbox) -> serde_json::Value {
    deploy_status(sandbox)["current"].clone()
}

fn events(current: &serde_json::Value) -> Vec<String> {
    current["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until the current deployment ended; returns it.
fn wait_ended(sandbox: &Sandbox, within: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until(within, "the deployment to end", || {
        last = current(sandbox);
        last["phase"] == "ended"
    });
    last
}

/// What the load saw: responses by status and by `x-api-version`, and failures.
#[derive(Debug, Default)]
struct Seen {
    statuses: BTreeMap<u16, u64>,
    versions: BTreeMap<String, u64>,
    errors: Vec<String>,
}

/// `clients` threads of keep-alive requests through the proxy, each request with its own
/// `x-client` key (1..=500, in turn), until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(sandbox: &Sandbox, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let threads = (0..clients)
            .map(|t| {
                let enter = sandbox.net_entry();
                let (stop, seen) = (stop.clone(), seen.clone());
                std::thread::spawn(move || {
                    enter();
                    let mut conn: Option<client::Conn> = None;
                    let mut key = t;
                    while !stop.load(Ordering::Relaxed) {
                        key = (key + clients) % 500;
                        let open = conn.get_or_insert_with(|| client::Conn::open(proxy_addr()));
                        let request = format!(
                            "GET /?k={key} HTTP/1.1\r\nHost: t\r\nx-client: c{key}\r\n\r\n"
                        );
                        open.send(request.as_bytes());
                        let answer = open.read_response("GET");
                        let mut seen = seen.lock().unwrap();
                        match answer {
                            Ok(response) => {
                                *seen.statuses.entry(response.status).or_default() += 1;
                                let version = response.header("x-api-version").unwrap_or("-");
                                *seen.versions.entry(version.to_owned()).or_default() += 1;
                                let closes = response
                                    .header("connection")
                                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                                if closes {
                                    conn = None;
                                }
                            }
                            Err(e) => {
                                seen.errors.push(e.to_string());
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            seen,
            threads,
        }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// The version (`x-api-version`) that answers client key `key` now.
fn version_for(sandbox: &Sandbox, key: &str) -> String {
    let key = key.to_owned();
    sandbox.in_net(move || {
        let request =
            format!("GET / HTTP/1.1\r\nHost: t\r\nx-client: {key}\r\nConnection: close\r\n\r\n");
        let response = client::request(proxy_addr(), request.as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
        response.header("x-api-version").unwrap_or("-").to_owned()
    })
}

fn started(out: &std::process::Output) {
    assert!(out.status.success(), "deploy start: {}", text(out));
}

#[test]
fn a_good_canary_is_promoted_through_every_step_with_no_failed_request() {
    let sandbox = start();
    let load = Load::start(&sandbox, 4);
    let file = spec(
        &sandbox,
        "good.toml",
        &canary_spec("", "20, 50, 100", "3s", 20),
    );
    let out = lbproxy(&sandbox, &["deploy", "start", &file, "--wait"]);
    let seen = load.stop();
    assert!(out.status.success(), "{}", text(&out));
    let d = current(&sandbox);
    assert_eq!(d["outcome"]["result"], "promoted", "{d:#}");
    let events = events(&d);
    assert_eq!(
        events.iter().filter(|e| *e == "analysis-passed").count(),
        3,
        "{events:?}"
    );
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(
        seen.statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "{seen:?}"
    );
    assert!(
        seen.versions.get("v2").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    // Every instance runs v2 now, the canary is gone.
    for key in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(version_for(&sandbox, key), "v2");
    }
    assert_eq!(
        sandbox.property("api@4.service", "ActiveState"),
        "inactive",
        "the canary stopped"
    );
    println!("good canary: {seen:?}");
}

#[test]
fn a_canary_answering_a_fifth_with_500s_is_rolled_back_after_two_windows() {
    let sandbox = start();
    let load = Load::start(&sandbox, 4);
    let file = spec(
        &sandbox,
        "bad.toml",
        &canary_spec("--fail-ratio 0.2", "20, 50, 100", "3s", 20),
    );
    let out = lbproxy(&sandbox, &["deploy", "start", &file, "--wait"]);
    let seen = load.stop();
    assert!(
        !out.status.success(),
        "an aborted deployment exits 1: {}",
        text(&out)
    );
    let d = current(&sandbox);
    assert_eq!(d["outcome"]["result"], "aborted", "{d:#}");
    let reason = d["outcome"]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("2 of 2 in a row"), "{reason}");
    assert!(reason.contains("error_ratio"), "{reason}");
    assert_eq!(d["step"], 0, "never past the first step: {d:#}");
    assert_eq!(d["weight_bp"], 0);
    // What clients saw: 500s only from the canary at 20 % of the keys, over about two windows.
    let total: u64 = seen.statuses.values().sum();
    let failed = seen.statuses.get(&500).copied().unwrap_or(0);
    let canary = seen.versions.get("v2").copied().unwrap_or(0);
    println!("bad canary: {failed} of {total} requests failed, {canary} answered by the canary");
    assert!(failed > 0, "{seen:?}");
    assert!(
        failed <= canary,
        "only the canary failed: {failed} failures, {canary} canary answers"
    );
    assert!(
        (failed as f64) < 0.2 * 0.2 * total as f64 * 2.0 + 20.0,
        "failures bounded by the weight and the error share: {failed} of {total}"
    );
    for key in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(version_for(&sandbox, key), "v1", "every client back on v1");
    }
}

#[test]
fn a_crashing_canary_aborts_at_once() {
    let sandbox = start();
    let load = Load::start(&sandbox, 2);
    let file = spec(
        &sandbox,
        "crash.toml",
        &canary_spec("--crash-after 30", "50, 100", "300s", 20),
    );
    let out = lbproxy(&sandbox, &["deploy", "start", &file, "--wait"]);
    let seen = load.stop();
    assert!(!out.status.success(), "{}", text(&out));
    let d = current(&sandbox);
    assert_eq!(d["outcome"]["result"], "aborted", "{d:#}");
    let reason = d["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("new instance api@4.service")
            && ["restarted", "failed", "no longer routed"]
                .iter()
                .any(|why| reason.contains(why)),
        "aborted for the crash, not by a window of 300 s: {reason}"
    );
    assert!(
        !events(&d)
            .iter()
            .any(|e| e == "analysis-failed" || e == "analysis-passed"),
        "no window was judged: {:?}",
        events(&d)
    );
    println!("crashing canary: {seen:?}");
}

#[test]
fn a_canary_with_no_traffic_holds_and_is_never_promoted() {
    let sandbox = start();
    let file = spec(
        &sandbox,
        "quiet.toml",
        &canary_spec("", "50, 100", "1s", 20),
    );
    started(&lbproxy(&sandbox, &["deploy", "start", &file]));
    let mut d = serde_json::Value::Null;
    wait_until(DEPLOY, "three holds", || {
        d = current(&sandbox);
        events(&d).iter().filter(|e| *e == "hold").count() >= 3
    });
    assert_eq!(d["phase"], "stepping", "{d:#}");
    assert_eq!(d["step"], 0);
    let hold = d["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["event"] == "hold")
        .unwrap();
    assert!(
        hold["message"]
            .as_str()
            .unwrap()
            .contains("too few requests to judge"),
        "{hold:#}"
    );
    let out = lbproxy(&sandbox, &["deploy", "status"]);
    assert!(text(&out).contains("too few requests"), "{}", text(&out));
    started(&lbproxy(
        &sandbox,
        &["deploy", "abort", "--reason", "test over"],
    ));
    let d = wait_ended(&sandbox, DEPLOY);
    assert_eq!(d["outcome"]["result"], "aborted");
}

#[test]
fn a_proxy_restart_mid_canary_resumes_it_at_its_weight() {
    let sandbox = start();
    let file = spec(
        &sandbox,
        "long.toml",
        &canary_spec("", "50, 100", "600s", 20),
    );
    started(&lbproxy(&sandbox, &["deploy", "start", &file]));
    wait_until(DEPLOY, "the first step", || {
        current(&sandbox)["phase"] == "stepping"
    });
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| version_for(&sandbox, k)).collect();
    assert!(
        before.iter().any(|v| v == "v2") && before.iter().any(|v| v == "v1"),
        "{before:?}"
    );

    sandbox.systemctl_ok(&["restart", LBPROXY]);
    let after: Vec<String> = keys.iter().map(|k| version_for(&sandbox, k)).collect();
    assert_eq!(
        before, after,
        "every client on the same side right after the restart"
    );
    let d = current(&sandbox);
    assert_eq!(d["phase"], "stepping", "{d:#}");
    assert_eq!(d["weight_bp"], 5000);
    wait_until(START, "the resumption recorded", || {
        events(&current(&sandbox)).iter().any(|e| e == "resumed")
    });
    started(&lbproxy(&sandbox, &["deploy", "abort"]));
    let d = wait_ended(&sandbox, DEPLOY);
    assert_eq!(d["outcome"]["result"], "aborted");
    for key in &keys[..10] {
        assert_eq!(version_for(&sandbox, key), "v1");
    }
}

#[test]
fn blue_green_switches_and_switches_back_with_no_failed_request() {
    let sandbox = start();
    let load = Load::start(&sandbox, 4);
    let out = lbproxy(
        &sandbox,
        &[
            "deploy",
            "start",
            "--upstream",
            "api",
            "--version",
            "v2",
            "--strategy",
            "blue-green",
            "--keep-blue",
            "10m",
        ],
    );
    started(&out);
    wait_until(DEPLOY, "the switch to green", || {
        current(&sandbox)["phase"] == "switched"
    });
    for key in ["a", "b", "c", "d"] {
        assert_eq!(version_for(&sandbox, key), "v2", "every client on green");
    }
    started(&lbproxy(
        &sandbox,
        &["deploy", "rollback", "--reason", "test"],
    ));
    wait_until(START, "every client back on blue", || {
        ["a", "b", "c", "d"]
            .iter()
            .all(|k| version_for(&sandbox, k) == "v1")
    });
    let d = wait_ended(&sandbox, DEPLOY);
    let seen = load.stop();
    assert_eq!(d["outcome"]["result"], "rolled-back", "{d:#}");
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(
        seen.statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "{seen:?}"
    );
    assert!(
        seen.versions.get("v2").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    for unit in ["api@4.service", "api@5.service", "api@6.service"] {
        assert_eq!(sandbox.property(unit, "ActiveState"), "inactive", "{unit}");
    }
    println!("blue-green: {seen:?}");
}
