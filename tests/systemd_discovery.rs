//! Backends discovered from systemd units, under a real systemd (the sandbox of
//! tests/common/systemd.rs: a user manager with its user D-Bus): the proxy, as the installed
//! `lbproxy.service`, follows `api@*.service` over D-Bus while clients keep requests flowing, and
//! every failed request is counted. `systemctl start api@4` adds a backend; `systemctl stop
//! api@2` drains it, then removes it; a `kill -9` takes an instance out by its unit state long
//! before the probes could; a bus that went away (signals missed) is repaired by the resync;
//! cgroup limits from the configuration show in `systemctl show`; the inventory shows the units.

mod common;

use common::load::{Connections, Load, LoadReport};
use common::systemd::{proxy_addr, text, Sandbox};
use common::wait_until;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LBPROXY: &str = "lbproxy.service";
const START: Duration = Duration::from_secs(30);
/// How long a change may take to show, on a loaded machine. The figures the proxy reaches
/// (well under a second) are printed, not asserted.
const CHANGE: Duration = Duration::from_secs(20);

/// A proxy on 127.0.0.1:8080 (admin 9901) whose group `api` discovers `api@*.service`, probing
/// every second with a `fall` so high that only the unit state can take a backend out within
/// the test (the probes would need 100 failures in a row, 100 s); `extra` goes into the
/// discover table.
fn discovery_config(extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 2\n\
         [admin]\naddress = \"127.0.0.1:9901\"\n\
         [listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
         [upstream.api]\nslow_start = \"1s\"\n\
         [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
         address = \"127.0.0.1:{{8000+N}}\"\nresync = \"2s\"\n{extra}\
         [upstream.api.health]\ninterval = \"1s\"\nrise = 1\nfall = 100\n\
         [upstream.api.retry]\nmax_retries = 2\nbudget_percent = 100\n"
    )
}

fn backend_address(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000 + n))
}

/// `/api/backends` of the sandbox's proxy.
fn backends(sandbox: &Sandbox) -> serde_json::Value {
    sandbox.in_net(|| common::admin::json("127.0.0.1:9901".parse().unwrap(), "/api/backends", None))
}

/// The backends of group `api` as (address, draining) pairs, sorted.
fn discovered(sandbox: &Sandbox) -> Vec<(SocketAddr, bool)> {
    let api = backends(sandbox);
    let mut list: Vec<(SocketAddr, bool)> = api["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == "api")
        .flat_map(|u| u["backends"].as_array().into_iter().flatten())
        .map(|b| {
            (
                b["address"].as_str().unwrap().parse().unwrap(),
                b["state"] == "draining",
            )
        })
        .collect();
    list.sort();
    list
}

fn routed(sandbox: &Sandbox) -> Vec<u16> {
    discovered(sandbox)
        .into_iter()
        .filter(|(_, draining)| !draining)
        .map(|(a, _)| a.port() - 8000)
        .collect()
}

/// Requests backend `n` answered so far; 0 while it is not a backend.
fn requests_to(sandbox: &Sandbox, n: u16) -> u64 {
    let address = backend_address(n).to_string();
    backends(sandbox)["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == "api")
        .flat_map(|u| u["backends"].as_array().into_iter().flatten())
        .find(|b| b["address"] == address)
        .and_then(|b| b["requests_total"].as_u64())
        .unwrap_or(0)
}

/// The main PID of `unit` as the proxy's inventory shows it, while the proxy routes it.
fn routed_pid(sandbox: &Sandbox, unit: &str) -> Option<u64> {
    let inventory = sandbox
        .in_net(|| common::admin::json("127.0.0.1:9901".parse().unwrap(), "/api/instances", None));
    let rows = inventory["instances"].as_array()?;
    let row = rows.iter().find(|r| r["unit"] == unit)?;
    (row["routing"] == "routed").then(|| row["pid"].as_u64())?
}

fn assert_no_failures(what: &str, report: &LoadReport) {
    assert!(
        report.failures.is_empty(),
        "{what}: {} of {} requests failed: {:#?}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        &report.failures[..report.failures.len().min(20)]
    );
    assert!(report.ok > 0, "{what}: no request succeeded");
}

/// The proxy's journal entries with `EVENT=event` about `instance`.
fn events(sandbox: &Sandbox, event: &str, instance: &str) -> Vec<serde_json::Value> {
    sandbox.journal_entries(
        LBPROXY,
        &[&format!("EVENT={event}"), &format!("INSTANCE={instance}")],
    )
}

fn monotonic_us(entry: &serde_json::Value) -> u64 {
    entry["__MONOTONIC_TIMESTAMP"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {entry}"))
}

fn start(extra: &str, instances: &[&str]) -> Sandbox {
    let sandbox = Sandbox::start();
    sandbox.write_config(&discovery_config(extra));
    let mut units = instances.to_vec();
    units.push(LBPROXY);
    sandbox.start_units(&units);
    sandbox
}

#[test]
fn units_join_drain_and_leave_under_load_without_a_failed_request() {
    let sandbox = Sandbox::start();
    sandbox.write_config(&discovery_config(""));
    // api@2 keeps serving for a second after SIGTERM (as an API that finishes its work does),
    // so its unit stays `deactivating` long enough to be seen draining.
    sandbox.drop_in(
        "api@2.service",
        "slow-stop.conf",
        &format!(
            "[Service]\nExecStart=\nExecStart={} --instance %i --shutdown-delay 1s\n",
            common::demo::demo_api_binary().display()
        ),
    );
    sandbox.start_units(&["api@1.service", "api@2.service", "api@3.service", LBPROXY]);
    wait_until(START, "the three running units routed", || {
        routed(&sandbox) == [1, 2, 3]
    });

    let keep_alive = Load::start(proxy_addr(), 2, Connections::KeepAlive, sandbox.net_entry());
    let close = Load::start(proxy_addr(), 2, Connections::Close, sandbox.net_entry());
    keep_alive.wait_for_more(200, START);
    close.wait_for_more(200, START);

    // A fourth instance: routed once active, without a reload.
    let reloads = backends(&sandbox)["reloads"].clone();
    sandbox.systemctl_ok(&["start", "api@4.service"]);
    let active = Instant::now();
    wait_until(CHANGE, "api@4 getting requests", || {
        requests_to(&sandbox, 4) > 0
    });
    eprintln!(
        "api@4 got its first request {:?} after `systemctl start` returned",
        active.elapsed()
    );
    assert_eq!(routed(&sandbox), [1, 2, 3, 4]);
    assert_eq!(backends(&sandbox)["reloads"], reloads, "not a reload");
    let joined = sandbox.wait_for_entry(LBPROXY, &["EVENT=joined", "INSTANCE=api@4.service"]);
    assert_eq!(joined["BACKEND"], "127.0.0.1:8004", "{joined}");

    // Stopping an instance drains it first, then removes it.
    sandbox.systemctl_ok(&["stop", "api@2.service"]);
    wait_until(CHANGE, "api@2 removed", || routed(&sandbox) == [1, 3, 4]);
    wait_until(CHANGE, "api@2 gone from the group", || {
        discovered(&sandbox).iter().all(|(a, _)| a.port() != 8002)
    });
    let draining = sandbox.wait_for_entry(LBPROXY, &["EVENT=draining", "INSTANCE=api@2.service"]);
    let removed = sandbox.wait_for_entry(LBPROXY, &["EVENT=removed", "INSTANCE=api@2.service"]);
    assert!(
        monotonic_us(&draining) <= monotonic_us(&removed),
        "drained before removed: {draining} {removed}"
    );

    keep_alive.wait_for_more(200, START);
    close.wait_for_more(200, START);
    assert_no_failures("keep-alive clients", &keep_alive.stop());
    assert_no_failures("Connection: close clients", &close.stop());
}

#[test]
fn a_killed_instance_leaves_by_its_unit_state_and_comes_back_fresh() {
    let sandbox = start("", &["api@1.service", "api@2.service", "api@3.service"]);
    wait_until(START, "the three running units routed", || {
        routed(&sandbox) == [1, 2, 3]
    });
    let keep_alive = Load::start(proxy_addr(), 2, Connections::KeepAlive, sandbox.net_entry());
    keep_alive.wait_for_more(200, START);

    // api@.service restarts on failure after 1 s; the probes (fall = 100) would take 100 s.
    let pid = sandbox.property("api@3.service", "MainPID");
    let invocation = sandbox.property("api@3.service", "InvocationID");
    let out = sandbox.run("kill", &["-9", &pid]);
    assert!(out.status.success(), "{}", text(&out));
    let killed = Instant::now();
    wait_until(CHANGE, "api@3 out of rotation", || {
        routed(&sandbox) == [1, 2]
    });
    eprintln!("api@3 out of rotation {:?} after kill -9", killed.elapsed());
    assert!(!events(&sandbox, "removed", "api@3.service").is_empty());

    // systemd restarts it (a new invocation): it joins again, as a new backend.
    wait_until(CHANGE, "api@3 restarted by systemd", || {
        sandbox.property("api@3.service", "ActiveState") == "active"
            && sandbox.property("api@3.service", "InvocationID") != invocation
    });
    wait_until(CHANGE, "api@3 routed again", || {
        routed(&sandbox) == [1, 2, 3]
    });
    wait_until(CHANGE, "a flapping event for api@3", || {
        !events(&sandbox, "flapping", "api@3.service").is_empty()
    });
    let instances = sandbox
        .in_net(|| common::admin::json("127.0.0.1:9901".parse().unwrap(), "/api/instances", None));
    let row = instances["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["unit"] == "api@3.service")
        .unwrap_or_else(|| panic!("no api@3 in {instances:#}"))
        .clone();
    assert_eq!(row["restarts"], 1, "{row}");
    assert_eq!(row["flapping"], true, "{row}");
    assert_eq!(row["routing"], "routed", "{row}");
    assert!(row["pid"].as_u64().is_some_and(|pid| pid > 0), "{row}");
    // The same, as an operator reads it.
    let ctl = sandbox.run(env!("CARGO_BIN_EXE_lbproxy"), &["ctl", "instances"]);
    let table = String::from_utf8_lossy(&ctl.stdout).into_owned();
    assert!(ctl.status.success(), "{}", text(&ctl));
    for unit in ["api@1.service", "api@2.service", "api@3.service"] {
        let line = table
            .lines()
            .find(|l| l.contains(unit))
            .unwrap_or_else(|| panic!("no {unit} in\n{table}"));
        assert!(line.contains("active") && line.contains("routed"), "{line}");
    }

    keep_alive.wait_for_more(200, START);
    assert_no_failures("keep-alive clients", &keep_alive.stop());
}

#[test]
fn a_missed_signal_is_repaired_by_the_resync() {
    let sandbox = start("", &["api@1.service"]);
    wait_until(START, "api@1 routed", || routed(&sandbox) == [1]);

    // The user bus goes away: the proxy's connection breaks, and every signal while it is gone
    // is missed. systemctl still works (the manager's private socket).
    sandbox.systemctl_ok(&["stop", "dbus.socket", "dbus.service"]);
    sandbox.wait_for_entry(LBPROXY, &["BUS=user", "PRIORITY=4"]);
    sandbox.systemctl_ok(&["start", "api@2.service"]);
    assert_eq!(routed(&sandbox), [1], "nothing can be seen without the bus");

    sandbox.systemctl_ok(&["start", "dbus.socket"]);
    wait_until(CHANGE, "api@2 routed after the bus came back", || {
        routed(&sandbox) == [1, 2]
    });
}

#[test]
fn cgroup_limits_from_the_configuration_show_in_systemctl_show() {
    let sandbox = start(
        "memory_max = \"256MiB\"\ntasks_max = 64\ncpu_quota = \"50%\"\n",
        &["api@1.service"],
    );
    wait_until(START, "api@1 routed", || routed(&sandbox) == [1]);
    sandbox.wait_for("api@1.service", "MemoryMax", "268435456", CHANGE);
    sandbox.wait_for("api@1.service", "TasksMax", "64", CHANGE);
    sandbox.wait_for("api@1.service", "CPUQuotaPerSecUSec", "500ms", CHANGE);
    // A unit started later gets them too.
    sandbox.systemctl_ok(&["start", "api@2.service"]);
    sandbox.wait_for("api@2.service", "MemoryMax", "268435456", CHANGE);
    let limits = sandbox.wait_for_entry(LBPROXY, &["EVENT=limits", "INSTANCE=api@2.service"]);
    assert!(
        limits["MESSAGE"]
            .as_str()
            .unwrap()
            .contains("MemoryMax=268435456"),
        "{limits}"
    );
}

/// `lbproxy ARGS` with a discovery configuration and no user bus anywhere (as in a container).
fn without_a_bus(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lbproxy.toml");
    let config = discovery_config("").replace("127.0.0.1:9901", "127.0.0.1:0");
    let config = config.replace("127.0.0.1:8080", "127.0.0.1:0");
    std::fs::write(&path, format!("{config}[up]\nupstream = \"api\"\n")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    common::isolate_state(&mut command, &dir.path().join("state"))
        .args(args)
        .arg("-c")
        .arg(&path)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("XDG_RUNTIME_DIR", dir.path())
        .env_remove("JOURNAL_STREAM")
        .stdin(std::process::Stdio::null());
    let out = command.output().unwrap();
    drop(dir);
    out
}

#[test]
fn without_a_bus_check_and_serve_fail_and_say_what_to_use() {
    for verb in ["check", "serve"] {
        let out = without_a_bus(&[verb]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "lbproxy {verb}: {said}");
        assert!(
            said.contains("user service manager over D-Bus"),
            "lbproxy {verb}: {said}"
        );
        assert!(said.contains("/nonexistent/bus"), "lbproxy {verb}: {said}");
        assert!(
            said.contains("backends"),
            "the fix names `backends`: {said}"
        );
    }
    let check = without_a_bus(&["check"]);
    assert!(
        text(&check).contains("upstream.api.discover"),
        "check names the key: {}",
        text(&check)
    );
}

#[test]
fn lbproxy_up_refuses_to_run_instances_that_systemd_should_run() {
    let out = without_a_bus(&["up"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("[upstream.api.discover]"), "{said}");
    assert!(
        said.contains("systemctl --user start api@{1..3} lbproxy"),
        "{said}"
    );
}

#[test]
fn a_rollout_of_a_discovered_group_restarts_each_unit_without_a_failed_request() {
    let sandbox = start("", &["api@1.service", "api@2.service", "api@3.service"]);
    wait_until(START, "the three running units routed", || {
        routed(&sandbox) == [1, 2, 3]
    });
    let pids: Vec<String> = (1..=3)
        .map(|n| sandbox.property(&format!("api@{n}.service"), "MainPID"))
        .collect();
    let keep_alive = Load::start(proxy_addr(), 2, Connections::KeepAlive, sandbox.net_entry());
    let close = Load::start(proxy_addr(), 2, Connections::Close, sandbox.net_entry());
    keep_alive.wait_for_more(200, START);

    wait_until(CHANGE, "the three units in the inventory", || {
        let inventory = sandbox.in_net(|| {
            common::admin::json("127.0.0.1:9901".parse().unwrap(), "/api/instances", None)
        });
        inventory["instances"]
            .as_array()
            .is_some_and(|rows| rows.len() == 3)
    });
    let out = sandbox.run(
        env!("CARGO_BIN_EXE_lbproxy"),
        &["rollout", "--user", "--settle", "500ms"],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("units: as the proxy discovered them"),
        "{said}"
    );
    for (n, before) in (1..=3).zip(&pids) {
        let unit = format!("api@{n}.service");
        assert!(
            said.contains(&format!("→ {unit}")),
            "{unit} planned: {said}"
        );
        assert_ne!(
            &sandbox.property(&unit, "MainPID"),
            before,
            "{unit} restarted"
        );
    }
    wait_until(CHANGE, "every unit routed again", || {
        routed(&sandbox) == [1, 2, 3]
    });
    keep_alive.wait_for_more(200, START);
    assert_no_failures("keep-alive clients", &keep_alive.stop());
    assert_no_failures("Connection: close clients", &close.stop());
}

#[test]
fn socket_activated_instances_are_found_at_their_socket_and_restart_without_a_failed_request() {
    let sandbox = Sandbox::start();
    // Ports that no template would give: the proxy can only have read them from the sockets.
    for (n, port) in [(1, 9101), (2, 9102)] {
        sandbox.drop_in(
            &format!("api@{n}.socket"),
            "listen.conf",
            &format!("[Socket]\nListenStream=127.0.0.1:{port}\n"),
        );
    }
    sandbox.write_config(
        &discovery_config("").replace("address = \"127.0.0.1:{8000+N}\"", "address = \"socket\""),
    );
    sandbox.start_units(&[
        "api@1.socket",
        "api@2.socket",
        "api@1.service",
        "api@2.service",
        LBPROXY,
    ]);
    let expected: Vec<(SocketAddr, bool)> = ["127.0.0.1:9101", "127.0.0.1:9102"]
        .iter()
        .map(|a| (a.parse().unwrap(), false))
        .collect();
    wait_until(
        START,
        "both instances routed at their sockets' addresses",
        || discovered(&sandbox) == expected,
    );

    let keep_alive = Load::start(proxy_addr(), 2, Connections::KeepAlive, sandbox.net_entry());
    let close = Load::start(proxy_addr(), 2, Connections::Close, sandbox.net_entry());
    keep_alive.wait_for_more(200, START);
    for unit in ["api@1.service", "api@2.service", "api@1.service"] {
        sandbox.systemctl_ok(&["restart", unit]);
        // As an operator would: the next restart once the proxy has seen this one through
        // (a socket-activated restart takes systemd a few tens of milliseconds; the proxy
        // follows within a few hundred).
        let pid: u64 = sandbox.property(unit, "MainPID").parse().unwrap();
        wait_until(CHANGE, "the new process routed", || {
            routed_pid(&sandbox, unit) == Some(pid) && discovered(&sandbox) == expected
        });
        keep_alive.wait_for_more(100, START);
    }
    close.wait_for_more(100, START);
    assert_no_failures("keep-alive clients", &keep_alive.stop());
    assert_no_failures("Connection: close clients", &close.stop());
}

/// wrk's own count of what went wrong: the "Non-2xx or 3xx responses" and "Socket errors" lines
/// it prints only when there are some.
fn wrk_errors(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect()
}

#[test]
fn wrk_sees_no_error_while_units_join_and_leave() {
    // wrk exits 1 after printing its version: whether it runs is what counts.
    let wrk = "wrk";
    assert!(
        std::process::Command::new(wrk)
            .arg("--version")
            .output()
            .is_ok(),
        "wrk is missing: tests/run.sh installs it (apt-get install wrk)"
    );
    let sandbox = start("", &["api@1.service", "api@2.service"]);
    wait_until(START, "both units routed", || routed(&sandbox) == [1, 2]);
    let run = {
        let sandbox_run = sandbox.net_entry();
        let wrk = wrk.to_owned();
        std::thread::spawn(move || {
            sandbox_run();
            std::process::Command::new(wrk)
                .args(["-t", "2", "-c", "16", "-d", "8s", "http://127.0.0.1:8080/"])
                .output()
                .unwrap()
        })
    };
    // While wrk runs: one unit joins, another leaves, the first restarts.
    wait_until(START, "wrk's requests arriving", || {
        requests_to(&sandbox, 1) > 100
    });
    sandbox.systemctl_ok(&["start", "api@3.service"]);
    wait_until(CHANGE, "api@3 getting requests", || {
        requests_to(&sandbox, 3) > 0
    });
    sandbox.systemctl_ok(&["stop", "api@2.service"]);
    wait_until(CHANGE, "api@2 removed", || routed(&sandbox) == [1, 3]);
    sandbox.systemctl_ok(&["restart", "api@1.service"]);
    wait_until(CHANGE, "api@1 back", || routed(&sandbox) == [1, 3]);
    let out = run.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(report.contains("Requests/sec"), "{report}");
    assert!(wrk_errors(&report).is_empty(), "wrk saw errors:\n{report}");
    eprintln!("wrk while units joined, left and restarted:\n{report}");
}

/// Depends on the autoscale controller (issue 16, built in parallel): with only api@1 running and
/// `min = 2`, the proxy starts api@2 over D-Bus itself (`lbproxy-instances`), logs it, and
/// discovery routes it.
#[test]
fn the_autoscaler_starts_units_up_to_min_over_dbus() {
    let sandbox = start(
        "[upstream.api.autoscale]\nmin = 2\nmax = 3\n",
        &["api@1.service"],
    );
    common::wait_until(CHANGE, "api@2 started by the proxy and routed", || {
        routed(&sandbox) == [1, 2]
    });
    let state = |unit: &str| {
        let output = sandbox.systemctl(&["is-active", unit]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(state("api@2.service"), "active");
    let started = events(&sandbox, "started", "api@2.service");
    assert!(!started.is_empty(), "the start is in the journal");
    assert!(
        events(&sandbox, "start-failed", "api@2.service").is_empty(),
        "no failed start"
    );
    assert_ne!(
        state("api@3.service"),
        "active",
        "no more than min without load"
    );
}
