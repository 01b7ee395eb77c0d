//! `lbproxy rollout` under a real systemd (the sandbox of tests/common/systemd.rs): the units
//! installed by `lbproxy systemd install --user`, `systemctl --user start api@{1..3} lbproxy`, and
//! the rollout run inside the sandbox as an operator would run it — under continuous load
//! (keep-alive and `Connection: close` clients, and slow requests in flight at each drain) with
//! every failed request counted; then its refusals, its dry run, and a failure that stops it with
//! the instance drained (with slow start, which the rollout waits out).

mod common;

use common::client;
use common::load::{Connections, Load};
use common::systemd::{proxy_addr, text, Sandbox};
use common::wait_until;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const API: [&str; 3] = ["api@1.service", "api@2.service", "api@3.service"];
const BACKENDS: [&str; 3] = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"];
const LBPROXY: &str = "lbproxy.service";
const START: Duration = Duration::from_secs(30);

/// `old` → `new` in `text`, which must hold `old` exactly once.
fn replace_once(text: &str, old: &str, new: &str) -> String {
    assert_eq!(
        text.matches(old).count(),
        1,
        "{old:?} in the default config"
    );
    text.replace(old, new)
}

/// The default configuration, probing every 200 ms (the shipped 2 s would make each instance's
/// turn take seconds).
fn config_with_fast_probes() -> String {
    replace_once(
        lbproxy::config::EMBEDDED_DEFAULT,
        "interval = \"2s\"",
        "interval = \"200ms\"",
    )
}

/// The default configuration without its `[upstream.api.health]` section.
fn config_without_health_checks() -> String {
    let default = lbproxy::config::EMBEDDED_DEFAULT;
    let start = default
        .find("# Active health checks")
        .expect("the default config has a health section");
    let end = start + default[start..].find("fall = 3\n").unwrap() + "fall = 3\n".len();
    let config = format!("{}{}", &default[..start], &default[end..]);
    assert!(!config.contains("[upstream.api.health]"), "{config}");
    config
}

fn start_all(sandbox: &Sandbox) {
    let mut units = API.to_vec();
    units.push(LBPROXY);
    sandbox.start_units(&units);
}

/// `/api/backends` of the sandbox's proxy.
fn backends(sandbox: &Sandbox) -> serde_json::Value {
    sandbox.in_net(|| {
        let admin = "127.0.0.1:9901".parse().unwrap();
        common::admin::json(admin, "/api/backends", None)
    })
}

fn backend_field(api: &serde_json::Value, address: &str, field: &str) -> serde_json::Value {
    common::admin::backend(api, "api", address.parse().unwrap())[field].clone()
}

/// Waits until every backend is up and has passed a probe of its own.
fn wait_until_all_probed_up(sandbox: &Sandbox) {
    wait_until(START, "every backend up after a passing probe", || {
        let api = backends(sandbox);
        BACKENDS.iter().all(|b| {
            backend_field(&api, b, "state") == "up"
                && backend_field(&api, b, "probes")["passes_in_a_row"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
        })
    });
}

fn main_pids(sandbox: &Sandbox) -> Vec<String> {
    API.iter()
        .map(|unit| sandbox.property(unit, "MainPID"))
        .collect()
}

/// `lbproxy rollout ARGS` inside the sandbox, as its user.
fn rollout(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    sandbox.run(env!("CARGO_BIN_EXE_lbproxy"), &all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Clients that keep `GET /delay?ms=300` in flight through the proxy, so that every drain finds
/// requests to wait for; each must get its 200.
struct SlowRequests {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl SlowRequests {
    fn start(sandbox: &Sandbox, threads: usize) -> SlowRequests {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let enter = sandbox.net_entry();
                std::thread::spawn(move || {
                    enter();
                    while !stop.load(Ordering::Relaxed) {
                        let raw =
                            b"GET /delay?ms=300 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                        match client::try_request(proxy_addr(), raw) {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures.lock().unwrap().push(format!(
                                "status {}: {}",
                                r.status,
                                r.text().trim()
                            )),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        SlowRequests {
            stop,
            ok,
            failures,
            threads,
        }
    }

    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

fn assert_no_failures(what: &str, ok: u64, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} of {} requests failed during the rollout: {:#?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(20)]
    );
    assert!(ok > 0, "{what}: no request succeeded");
}

#[test]
fn a_rollout_under_load_restarts_every_instance_without_a_failed_request() {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config_with_fast_probes());
    start_all(&sandbox);
    wait_until_all_probed_up(&sandbox);
    let pids_before = main_pids(&sandbox);

    let keep_alive = Load::start(proxy_addr(), 2, Connections::KeepAlive, sandbox.net_entry());
    let close = Load::start(proxy_addr(), 2, Connections::Close, sandbox.net_entry());
    let slow = SlowRequests::start(&sandbox, 3);
    keep_alive.wait_for_more(200, START);
    close.wait_for_more(200, START);

    let out = rollout(&sandbox, &["--user", "--settle", "500ms"]);
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));

    keep_alive.wait_for_more(200, START);
    close.wait_for_more(200, START);
    let (slow_ok, slow_failures) = slow.stop();
    let keep_alive = keep_alive.stop();
    let close = close.stop();
    assert_no_failures("keep-alive clients", keep_alive.ok, &keep_alive.failures);
    assert_no_failures("Connection: close clients", close.ok, &close.failures);
    assert_no_failures("slow requests (/delay?ms=300)", slow_ok, &slow_failures);

    // systemd restarted every instance: new main processes, all running.
    let pids_after = main_pids(&sandbox);
    for ((unit, before), after) in API.iter().zip(&pids_before).zip(&pids_after) {
        assert_ne!(before, after, "{unit} kept its process: {said}");
        assert_ne!(after, "0", "{unit} has no process: {said}");
        assert_eq!(sandbox.property(unit, "ActiveState"), "active", "{unit}");
    }

    // The output names every step of every instance, in order, with each restart over D-Bus and
    // the systemctl command that does the same.
    let mut from = 0;
    for (n, backend) in BACKENDS.iter().enumerate() {
        let label = format!("[{}/3] api@{} {backend}", n + 1, n + 1);
        for line in [
            format!("{label}: drained on 2 workers, was up"),
            format!("{label}: in flight: "),
            format!(
                "  restart api@{}.service over D-Bus (as `systemctl --user restart api@{}`)\n",
                n + 1,
                n + 1
            ),
            format!(
                "{label}: restarted, pid {} → {} (active)",
                pids_before[n], pids_after[n]
            ),
            format!("{label}: healthy: 2 probes of http /health/ready passed since the restart"),
            format!("{label}: enabled on 2 workers"),
            format!("{label}: settled: up for 500ms"),
            format!("{label}: done"),
        ] {
            let at = said[from..]
                .find(&line)
                .unwrap_or_else(|| panic!("{line:?} (in this order) in:\n{said}"));
            from += at + line.len();
        }
    }
    assert!(
        said.contains("lbproxy rollout: restarted api@1, api@2, api@3 in "),
        "{said}"
    );

    // Every backend takes requests again.
    let api = backends(&sandbox);
    for backend in BACKENDS {
        assert_eq!(backend_field(&api, backend, "state"), "up", "{api:#}");
        assert_eq!(backend_field(&api, backend, "drain_override"), false);
    }
}

#[test]
fn without_health_checks_the_rollout_refuses_and_says_how_to_add_them() {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config_without_health_checks());
    start_all(&sandbox);
    let pids_before = main_pids(&sandbox);

    let out = rollout(&sandbox, &["--user"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("upstream \"api\" has no active health checks"),
        "{err}"
    );
    assert!(err.contains("[upstream.api.health]"), "{err}");
    assert!(
        !stdout(&out).contains("over D-Bus (as `systemctl --user restart"),
        "{}",
        text(&out)
    );
    assert_eq!(main_pids(&sandbox), pids_before);
    let api = backends(&sandbox);
    for backend in BACKENDS {
        assert_eq!(backend_field(&api, backend, "state"), "up", "{api:#}");
    }
}

#[test]
fn the_rollout_refuses_to_restart_the_last_backend_that_is_up() {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config_with_fast_probes());
    start_all(&sandbox);
    wait_until_all_probed_up(&sandbox);
    // Instance 3 stopped (its probes fail: down), instance 2 drained at runtime: only 1 serves.
    sandbox.systemctl_ok(&["stop", "api@3.service"]);
    wait_until(START, "127.0.0.1:8003 down", || {
        backend_field(&backends(&sandbox), "127.0.0.1:8003", "state") == "down"
    });
    let drain = sandbox.run(
        env!("CARGO_BIN_EXE_lbproxy"),
        &["ctl", "drain", "api", "127.0.0.1:8002"],
    );
    assert!(drain.status.success(), "{}", text(&drain));
    let pid_1 = sandbox.property("api@1.service", "MainPID");

    let out = rollout(&sandbox, &["--user"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    for needle in [
        "refusing to restart api@1 (127.0.0.1:8001): no other backend of upstream \"api\" is up",
        "127.0.0.1:8002 draining, 127.0.0.1:8003 down",
        "nothing changed for api@1",
    ] {
        assert!(err.contains(needle), "{needle:?} in:\n{}", text(&out));
    }
    assert!(
        !stdout(&out).contains("over D-Bus (as `systemctl --user restart"),
        "{}",
        text(&out)
    );
    assert_eq!(sandbox.property("api@1.service", "MainPID"), pid_1);
    // Instance 1 still serves: it was not even drained.
    let api = backends(&sandbox);
    assert_eq!(backend_field(&api, "127.0.0.1:8001", "state"), "up");
    sandbox.in_net(|| assert_eq!(client::get(proxy_addr(), "/").status, 200));
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config_with_fast_probes());
    start_all(&sandbox);
    wait_until_all_probed_up(&sandbox);
    let pids_before = main_pids(&sandbox);

    let out = rollout(&sandbox, &["--user", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    for (n, backend) in BACKENDS.iter().enumerate() {
        let line = format!(
            "[{}/3] {backend} → api@{}: unit active (running), pid {}; backend up",
            n + 1,
            n + 1,
            pids_before[n]
        );
        assert!(said.contains(&line), "{line:?} in:\n{said}");
    }
    assert!(
        said.contains(
            "each: drain → nothing in flight (at most 60s) → systemctl --user restart UNIT"
        ),
        "{said}"
    );
    assert!(said.contains("dry run: nothing changed"), "{said}");
    assert!(
        !said.contains("over D-Bus (as `systemctl --user restart"),
        "{said}"
    );

    assert_eq!(main_pids(&sandbox), pids_before);
    for unit in API {
        assert_eq!(sandbox.property(unit, "NRestarts"), "0");
    }
    let api = backends(&sandbox);
    for backend in BACKENDS {
        assert_eq!(backend_field(&api, backend, "state"), "up", "{api:#}");
        assert!(backend_field(&api, backend, "drain_override").is_null());
    }
}

#[test]
fn an_instance_that_does_not_come_back_stops_the_rollout_drained_with_the_undo_command() {
    let sandbox = Sandbox::start();
    // With slow start: an enabled backend ramps up, and the rollout waits for the ramp to end.
    sandbox.write_config(&replace_once(
        &config_with_fast_probes(),
        "slow_start = \"0s\"",
        "slow_start = \"1s\"",
    ));
    start_all(&sandbox);
    wait_until_all_probed_up(&sandbox);
    // From its next start on, instance 2 listens on the wrong port: systemd sees it start, the
    // proxy's probes of 127.0.0.1:8002 never pass.
    let demo = common::demo::demo_api_binary().display().to_string();
    sandbox.drop_in(
        "api@2.service",
        "wrong-port.conf",
        &format!("[Service]\nExecStart=\nExecStart={demo} --listen 127.0.0.1:8009\n"),
    );
    let pid_3 = sandbox.property("api@3.service", "MainPID");

    let load = Load::start(proxy_addr(), 2, Connections::KeepAlive, sandbox.net_entry());
    load.wait_for_more(100, START);
    let out = rollout(&sandbox, &["--user", "--wait-ready", "3s"]);
    load.wait_for_more(100, START);
    let report = load.stop();
    assert_no_failures("keep-alive clients", report.ok, &report.failures);

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    for needle in [
        "rollout stopped at [2/3] api@2 127.0.0.1:8002: 127.0.0.1:8002 is not healthy 3s after \
         the restart",
        "api@2 stays drained (no new requests)",
        "  lbproxy ctl enable api 127.0.0.1:8002\n",
        "journalctl --user-unit api@2",
        "restarted: api@1; not started: api@3",
    ] {
        assert!(err.contains(needle), "{needle:?} in:\n{}", text(&out));
    }
    let said = stdout(&out);
    for line in [
        "→ enable → slow start (1s)",
        "[1/3] api@1 127.0.0.1:8001: slow start over: at full weight",
        "[1/3] api@1 127.0.0.1:8001: done",
    ] {
        assert!(said.contains(line), "{line:?} in:\n{}", text(&out));
    }
    assert_eq!(sandbox.property("api@3.service", "MainPID"), pid_3);
    let api = backends(&sandbox);
    assert_eq!(
        backend_field(&api, "127.0.0.1:8002", "state"),
        "draining",
        "{api:#}"
    );

    // The printed undo command works as printed.
    let enable = sandbox.run(
        env!("CARGO_BIN_EXE_lbproxy"),
        &["ctl", "enable", "api", "127.0.0.1:8002"],
    );
    assert!(enable.status.success(), "{}", text(&enable));
    let api = backends(&sandbox);
    assert_eq!(
        backend_field(&api, "127.0.0.1:8002", "drain_override"),
        false
    );
}

#[test]
fn without_a_user_bus_the_rollout_says_how_to_reach_one() {
    let sandbox = Sandbox::start();
    sandbox.write_config(&config_with_fast_probes());
    start_all(&sandbox);
    let pids_before = main_pids(&sandbox);

    // As over sudo or su: XDG_RUNTIME_DIR names no bus.
    let out = sandbox.run(
        "env",
        &[
            "XDG_RUNTIME_DIR=/run/user/none",
            env!("CARGO_BIN_EXE_lbproxy"),
            "rollout",
            "--user",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    for needle in [
        "cannot reach the user service manager over D-Bus: cannot connect to \
         unix:path=/run/user/none/bus",
        "dbus.socket",
        "XDG_RUNTIME_DIR",
    ] {
        assert!(err.contains(needle), "{needle:?} in:\n{}", text(&out));
    }
    assert!(!stdout(&out).contains("over D-Bus (as"), "{}", text(&out));
    assert_eq!(main_pids(&sandbox), pids_before);
}
