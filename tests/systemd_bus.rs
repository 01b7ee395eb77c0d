//! `systemd::bus` against a real systemd user manager (tests/systemd/sandbox.sh): the calls the
//! discovery watcher, the autoscaler and `lbproxy rollout` make, each checked against what
//! `systemctl --user` says. The test process reaches the sandbox's user bus through
//! `/proc/PID/root` ([`Sandbox::user_bus_address`]).

mod common;

use common::systemd::Sandbox;
use common::wait_until;
use lbproxy::config::{SystemdBus, UnitResources};
use lbproxy::systemd_bus::{BusError, Event, Events, Manager};
use std::time::{Duration, Instant};

/// How long a job may take (the demo API starts in milliseconds; a loaded machine is slower).
const JOB: Duration = Duration::from_secs(30);

/// A manager on the sandbox's user bus, once its dbus.socket is there.
fn manager(sandbox: &Sandbox) -> Manager {
    let address = sandbox.user_bus_address();
    let mut last = None;
    wait_until(
        Duration::from_secs(20),
        "the sandbox's user bus",
        || match Manager::connect_address(SystemdBus::User, &address) {
            Ok(manager) => {
                last = Some(Ok(manager));
                true
            }
            Err(e) => {
                last = Some(Err(e.to_string()));
                false
            }
        },
    );
    last.unwrap().unwrap()
}

/// Reads events until `wanted` has seen what it waits for, or `within` passes; every event read.
fn events_until(
    events: &Events,
    within: Duration,
    mut wanted: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while !wanted(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => seen.push(event),
            Err(e) => panic!("{e:?} before the wanted events; read: {seen:#?}"),
        }
    }
    seen
}

/// Threads of this process named `name` (as the kernel keeps it: 15 bytes).
fn threads_named(name: &str) -> usize {
    let short = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == short)
        })
        .count()
}

#[test]
fn units_are_listed_read_followed_and_acted_on() {
    let sandbox = Sandbox::start();
    sandbox.start_units(&["api@1.service", "api@2.service"]);
    let manager = manager(&sandbox);
    assert!(!manager.version().unwrap().is_empty());

    // Every loaded unit, whatever its state: the installed api.target wants api@3 too, which
    // is loaded and not started.
    let listed = manager.list_units(&["api@*.service".to_owned()]).unwrap();
    let systemctl = sandbox.systemctl_ok(&[
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "api@*.service",
    ]);
    let mut expected: Vec<&str> = systemctl
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    for unit in ["api@1.service", "api@2.service"] {
        assert!(listed.iter().any(|l| l == unit), "{unit} in {listed:?}");
    }
    assert!(manager
        .list_units(&["nothing@*.service".to_owned()])
        .unwrap()
        .is_empty());

    let unit = manager.read_unit("api@1.service").unwrap().unwrap();
    assert_eq!(unit.name, "api@1.service");
    assert_eq!(
        (
            unit.load_state.as_str(),
            unit.active_state.as_str(),
            unit.sub_state.as_str()
        ),
        ("loaded", "active", "running"),
        "{unit:#?}"
    );
    assert_eq!(
        unit.main_pid.to_string(),
        sandbox.property("api@1.service", "MainPID")
    );
    assert_ne!(unit.main_pid, 0);
    assert_eq!(
        unit.invocation_id,
        sandbox.property("api@1.service", "InvocationID")
    );
    assert_eq!(unit.invocation_id.len(), 32, "{unit:#?}");
    // Accounted where the sandbox's cgroup tree has the memory controller (systemctl then shows
    // a number, else `[not set]`).
    let memory = sandbox.property("api@1.service", "MemoryCurrent");
    if memory.parse::<u64>().is_ok() {
        assert!(unit.memory_bytes.is_some_and(|m| m > 0), "{unit:#?}");
    } else {
        assert_eq!(memory, "[not set]");
        assert_eq!(unit.memory_bytes, None);
    }
    assert!(unit.cpu_usage_ns.is_some_and(|ns| ns > 0), "{unit:#?}");
    assert_eq!(
        unit.limits.tasks_max.map(|t| t.to_string()),
        Some(sandbox.property("api@1.service", "TasksMax"))
    );
    assert!(unit.active_since_us > 0, "{unit:#?}");
    assert_eq!(unit.n_restarts, 0);
    // Not loaded: unknown to systemd, not an error.
    assert_eq!(manager.read_unit("api@9.service").unwrap(), None);
    // LoadUnit reads it as systemctl show does: the template exists, the instance never ran.
    let never_ran = manager.load_unit("api@9.service").unwrap();
    assert_eq!(
        (
            never_ran.load_state.as_str(),
            never_ran.active_state.as_str()
        ),
        ("loaded", "inactive")
    );
    assert_eq!(never_ran.invocation_id, "");

    // A stop by someone else shows as signals for the unit.
    let events = manager.subscribe().unwrap();
    sandbox.systemctl_ok(&["stop", "api@2.service"]);
    let seen = events_until(&events, JOB, |seen| {
        seen.contains(&Event::Changed("api@2.service".into()))
            && seen.contains(&Event::JobRemoved {
                unit: "api@2.service".into(),
                result: "done".into(),
            })
    });
    assert!(!seen
        .iter()
        .any(|e| matches!(e, Event::JobRemoved { unit, .. } if unit == "api@1.service")));

    // Actions wait for their job.
    manager.start("api@2.service", JOB).unwrap();
    assert_eq!(sandbox.property("api@2.service", "ActiveState"), "active");
    let before = manager.read_unit("api@1.service").unwrap().unwrap();
    manager.restart("api@1.service", JOB).unwrap();
    let after = manager.read_unit("api@1.service").unwrap().unwrap();
    assert_eq!(after.active_state, "active", "{after:#?}");
    assert_ne!(after.invocation_id, before.invocation_id);
    assert_ne!(after.main_pid, before.main_pid);
    assert_eq!(
        after.main_pid.to_string(),
        sandbox.property("api@1.service", "MainPID")
    );
    manager.stop("api@2.service", JOB).unwrap();
    assert_eq!(sandbox.property("api@2.service", "ActiveState"), "inactive");

    // Runtime limits, as systemctl show reads them.
    manager
        .set_resources(
            "api@1.service",
            &UnitResources {
                memory_max: Some(256 << 20),
                cpu_quota_percent: Some(50),
                tasks_max: None,
            },
        )
        .unwrap();
    assert_eq!(sandbox.property("api@1.service", "MemoryMax"), "268435456");
    assert_eq!(
        sandbox.property("api@1.service", "CPUQuotaPerSecUSec"),
        "500ms"
    );
    let limited = manager.read_unit("api@1.service").unwrap().unwrap();
    assert_eq!(
        limited.limits,
        UnitResources {
            memory_max: Some(268_435_456),
            cpu_quota_percent: Some(50),
            tasks_max: limited.limits.tasks_max,
        }
    );
    // Nothing to set: no call, no error.
    manager
        .set_resources("no-such.service", &UnitResources::default())
        .unwrap();

    // Every subscription's thread ends with it (the actions subscribed too).
    assert!(threads_named("lbproxy-bus-events") >= 1);
    drop(events);
    wait_until(
        Duration::from_secs(10),
        "no lbproxy-bus-events thread",
        || threads_named("lbproxy-bus-events") == 0,
    );
    // So do their connections: only the manager's own keeps its zbus executor thread.
    wait_until(
        Duration::from_secs(10),
        "one zbus executor thread (the manager's connection)",
        || threads_named("zbus::Connection executor") == 1,
    );
}

#[test]
fn failures_say_what_failed_and_what_to_do() {
    let sandbox = Sandbox::start();
    let unit_dir = sandbox.unit_dir();
    std::fs::write(
        unit_dir.join("broken.service"),
        "[Service]\nType=notify\nExecStart=/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        unit_dir.join("slow.service"),
        "[Service]\nType=oneshot\nExecStart=/bin/sleep 60\n",
    )
    .unwrap();
    std::fs::write(
        unit_dir.join("api@.socket"),
        "[Socket]\nListenStream=127.0.0.1:90%i\n",
    )
    .unwrap();
    sandbox.systemctl_ok(&["daemon-reload"]);
    let manager = manager(&sandbox);

    let error = manager.start("broken.service", JOB).unwrap_err();
    match &error {
        BusError::JobFailed {
            verb,
            unit,
            result,
            journal_hint,
        } => {
            assert_eq!(
                (*verb, unit.as_str(), result.as_str()),
                ("start", "broken.service", "failed")
            );
            assert!(
                journal_hint.contains("journalctl --user-unit broken.service -n 50"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sandbox.property("broken.service", "ActiveState"), "failed");

    let error = manager
        .start("slow.service", Duration::from_millis(300))
        .unwrap_err();
    assert!(
        matches!(&error, BusError::JobTimeout { verb: "start", unit, .. } if unit == "slow.service"),
        "{error:?}"
    );
    assert_eq!(
        sandbox.property("slow.service", "ActiveState"),
        "activating"
    );
    manager.stop("slow.service", JOB).unwrap();

    let error = manager.restart("no-such.service", JOB).unwrap_err();
    match &error {
        BusError::Refused { what, name, .. } => {
            assert_eq!(what, "restart no-such.service");
            assert_eq!(name, "org.freedesktop.systemd1.NoSuchUnit");
        }
        other => panic!("{other:?}"),
    }

    // A socket unit's stream addresses; none for one that is not loaded.
    manager.start("api@11.socket", JOB).unwrap();
    assert_eq!(
        manager.socket_listen("api@11.socket").unwrap(),
        ["127.0.0.1:9011"]
    );
    assert!(manager.socket_listen("api@12.socket").unwrap().is_empty());

    let missing = sandbox.home().join("no-bus");
    let error = Manager::connect_address(
        SystemdBus::User,
        &format!("unix:path={}", missing.display()),
    )
    .unwrap_err();
    assert!(
        matches!(error, BusError::Unavailable { bus: "user", .. }),
        "{error:?}"
    );
    let text = error.to_string();
    for needle in [
        "cannot reach the user service manager over D-Bus: cannot connect to unix:path=",
        "dbus.socket",
        "XDG_RUNTIME_DIR",
        "`backends` instead of `discover`",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}
