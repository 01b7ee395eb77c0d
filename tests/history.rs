//! The configuration history and disaster recovery, on the real binary: every configuration
//! that serves is recorded (start, each reload, rollbacks) in the proxy's state directory;
//! `lbproxy config rollback` puts the previous one back under load without a failed request, and
//! refuses an invalid one without changing anything; `lbproxy backup` and `lbproxy restore`
//! rebuild a wiped machine that then serves the same responses.
//!
//! Every process here has its state directory in the test's temporary directory
//! (`XDG_STATE_HOME`, [`common::isolate_state`]).

mod common;

use common::backend::{RawBackend, Reply};
use common::load::{Connections, Load};
use common::process::LbproxyProcess;
use common::{client, wait_until};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A backend that answers every request `200` with `body`.
fn answering(body: &str) -> RawBackend {
    RawBackend::start(Reply::Fixed(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    ))
}

/// Two workers, the admin server and the listener on port 0, group `api` over `backend`.
fn config(backend: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 2\ndrain_timeout = \"5s\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{backend}\"]\n{extra}"
    )
}

/// Runs `lbproxy ARGS` with its state directory under `state_home` and no admin variables of
/// the test's own.
fn lbproxy(state_home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    common::isolate_state(&mut command, state_home)
        .args(args)
        .env_remove("LBPROXY_ADMIN")
        .env_remove("LBPROXY_ADMIN_TOKEN")
        .env_remove("LBPROXY_ADMIN_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run lbproxy")
}

fn said(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `lbproxy ctl --admin ADDR reload`.
fn ctl_reload(proxy: &LbproxyProcess) -> Output {
    let admin = proxy.admin.expect("an admin server").to_string();
    lbproxy(&proxy.state_home, &["ctl", "--admin", &admin, "reload"])
}

/// The body the proxy answers `GET path` with.
fn body(addr: SocketAddr, path: &str) -> String {
    let response = client::get(addr, path);
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

/// The proxy's history once it has `count` entries.
fn history_of(proxy: &LbproxyProcess, count: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    wait_until(WAIT, &format!("{count} history entries"), || {
        entries = proxy.history();
        entries.len() >= count
    });
    assert_eq!(entries.len(), count, "{entries:#?}");
    entries
}

fn configs_dir(proxy: &LbproxyProcess) -> std::path::PathBuf {
    proxy.state_home.join("lbproxy/configs")
}

#[test]
fn every_configuration_that_serves_is_recorded_once_with_its_text() {
    let (one, two) = (answering("one"), answering("two"));
    let first = config(one.addr, "");
    let proxy = LbproxyProcess::start(&first);
    let path = proxy.config_path.clone();
    let dir = configs_dir(&proxy);

    let entries = history_of(&proxy, 1);
    assert_eq!(entries[0]["id"], 1);
    assert_eq!(entries[0]["who"], "start");
    assert_eq!(entries[0]["path"], path.display().to_string());
    assert_eq!(entries[0]["stored"], 1);
    assert_eq!(std::fs::read_to_string(dir.join("1.toml")).unwrap(), first);

    // SIGHUP, then the admin API (lbproxy ctl reload) on the same text.
    let second = config(two.addr, "");
    std::fs::write(&path, &second).unwrap();
    proxy.sighup();
    let entries = history_of(&proxy, 2);
    assert_eq!(
        (&entries[1]["who"], &entries[1]["via"]),
        (&Value::from("reload"), &Value::from("signal"))
    );
    assert_eq!(std::fs::read_to_string(dir.join("2.toml")).unwrap(), second);
    assert_eq!(body(proxy.addr, "/"), "two");
    let reloaded = ctl_reload(&proxy);
    assert!(reloaded.status.success(), "{}", said(&reloaded));
    // Recorded before the API answered: no wait.
    let entries = proxy.history();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert_eq!(entries[2]["via"], "api");
    assert_eq!(entries[2]["sha256"], entries[1]["sha256"]);
    assert_eq!(entries[2]["stored"], 2, "the same text is not stored twice");
    assert!(!dir.join("3.toml").exists());

    // A refused reload serves nothing new, so records nothing.
    std::fs::write(&path, second.replace("[runtime]", "[runtime]\nwokers = 2")).unwrap();
    let refused = ctl_reload(&proxy);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    assert_eq!(proxy.history().len(), 3);

    let third = config(one.addr, "# back to one\n");
    std::fs::write(&path, &third).unwrap();
    assert!(ctl_reload(&proxy).status.success());
    let entries = proxy.history();
    assert_eq!(entries.len(), 4, "{entries:#?}");
    assert_eq!(
        (&entries[3]["id"], &entries[3]["stored"]),
        (&Value::from(4), &Value::from(4))
    );
    assert_eq!(std::fs::read_to_string(dir.join("4.toml")).unwrap(), third);
    let ids: Vec<u64> = entries.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    for entry in &entries {
        let time = entry["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        assert!(entry["unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(entry["sha256"].as_str().unwrap().len(), 64);
    }

    // The same, as `lbproxy config history` shows it.
    let listed = lbproxy(&proxy.state_home, &["config", "history", "--json"]);
    assert!(listed.status.success(), "{}", said(&listed));
    let listed: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, entries);
    let table = lbproxy(&proxy.state_home, &["config", "history"]);
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID  TIME"), "{text}");
    assert!(lines[2].contains("reload (signal)"), "{text}");
    assert!(lines[3].contains("reload (api)"), "{text}");
    let short = &entries[0]["sha256"].as_str().unwrap()[..12];
    assert!(
        lines[1].contains(short) && lines[1].contains(" start "),
        "{text}"
    );
    assert!(lines[1].ends_with(&path.display().to_string()), "{text}");
    assert!(
        text.contains("the last configuration that served: 4"),
        "{text}"
    );
}

#[test]
fn a_rollback_under_load_serves_the_previous_configuration_with_no_failed_request() {
    let (one, two) = (answering("one"), answering("two"));
    let first = config(one.addr, "");
    let proxy = LbproxyProcess::start(&first);
    let admin = proxy.admin.unwrap().to_string();
    let second = config(two.addr, "");
    std::fs::write(&proxy.config_path, &second).unwrap();
    assert!(ctl_reload(&proxy).status.success());
    assert_eq!(body(proxy.addr, "/"), "two");

    let keep_alive = Load::start(proxy.addr, 2, Connections::KeepAlive, || {});
    let close = Load::start(proxy.addr, 2, Connections::Close, || {});
    keep_alive.wait_for_more(100, WAIT);
    close.wait_for_more(100, WAIT);
    let (ok_before, started) = (keep_alive.ok() + close.ok(), std::time::Instant::now());
    let rollback = lbproxy(
        &proxy.state_home,
        &["config", "rollback", "--admin", &admin],
    );
    let (took, during) = (started.elapsed(), keep_alive.ok() + close.ok() - ok_before);
    assert!(rollback.status.success(), "{}", said(&rollback));
    let out = stdout(&rollback);
    assert!(
        out.contains("now serves entry 1's configuration instead of entry 2's"),
        "{out}"
    );
    assert!(out.contains("history entry 3"), "{out}");
    let changed = |sign: &str, backend: SocketAddr| {
        out.lines().any(|l| {
            l.trim_start().starts_with(sign) && l.ends_with(&format!("backends = [\"{backend}\"]"))
        })
    };
    assert!(
        changed("- ", two.addr) && changed("+ ", one.addr),
        "what changed: {out}"
    );
    assert!(out.contains("undo: lbproxy config rollback 2"), "{out}");
    // The rollback serves at once, everywhere: the answer came once every worker had it.
    for _ in 0..10 {
        assert_eq!(body(proxy.addr, "/"), "one");
    }
    keep_alive.wait_for_more(100, WAIT);
    close.wait_for_more(100, WAIT);
    eprintln!("config rollback took {took:?}; {during} requests answered meanwhile");
    for load in [keep_alive.stop(), close.stop()] {
        eprintln!("{} requests, {} failed", load.ok, load.failures.len());
        assert!(load.ok > 0);
        assert!(
            load.failures.is_empty(),
            "{} failed requests: {:?}",
            load.failures.len(),
            &load.failures[..load.failures.len().min(5)]
        );
    }
    assert_eq!(std::fs::read_to_string(&proxy.config_path).unwrap(), first);
    let entries = proxy.history();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert_eq!(entries[2]["who"], "rollback");
    assert_eq!(
        (&entries[2]["from"], &entries[2]["restores"]),
        (&Value::from(2), &Value::from(1))
    );
    assert_eq!(entries[2]["stored"], 1);
    assert!(!configs_dir(&proxy).join("rollback.json").exists());

    // Undone the same way.
    let undo = lbproxy(
        &proxy.state_home,
        &["config", "rollback", "2", "--admin", &admin],
    );
    assert!(undo.status.success(), "{}", said(&undo));
    assert_eq!(body(proxy.addr, "/"), "two");
    assert_eq!(std::fs::read_to_string(&proxy.config_path).unwrap(), second);
    let entries = proxy.history();
    assert_eq!(
        (&entries[3]["from"], &entries[3]["restores"]),
        (&Value::from(3), &Value::from(2))
    );
}

#[test]
fn an_invalid_stored_configuration_is_refused_and_nothing_changes() {
    let (one, two) = (answering("one"), answering("two"));
    let dir = tempfile::tempdir().unwrap();
    let (path, state_home) = (dir.path().join("lbproxy.toml"), dir.path().join("state"));
    // Valid where the proxy runs (it has the variable), invalid where the rollback runs.
    std::fs::write(&path, config("${LBPROXY_TEST_BACKEND}", "")).unwrap();
    let proxy = LbproxyProcess::serve_file_with_env(
        &path,
        &state_home,
        &[("LBPROXY_TEST_BACKEND", &one.addr.to_string())],
    );
    assert_eq!(body(proxy.addr, "/"), "one");
    let second = config(two.addr, "");
    std::fs::write(&path, &second).unwrap();
    assert!(ctl_reload(&proxy).status.success());
    let before = proxy.history();
    assert_eq!(before.len(), 2);

    let admin = proxy.admin.unwrap().to_string();
    let refused = lbproxy(&state_home, &["config", "rollback", "--admin", &admin]);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("entry 1's configuration is invalid"), "{err}");
    assert!(
        err.contains("LBPROXY_TEST_BACKEND"),
        "the errors are shown: {err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), second);
    assert_eq!(proxy.history(), before);
    assert!(!state_home.join("lbproxy/configs/rollback.json").exists());
    assert_eq!(body(proxy.addr, "/"), "two");

    // A stored text changed since it was recorded is refused too.
    let stored = state_home.join("lbproxy/configs/1.toml");
    std::fs::write(&stored, config(one.addr, "")).unwrap();
    let changed = lbproxy(&state_home, &["config", "rollback", "1", "--admin", &admin]);
    assert_eq!(changed.status.code(), Some(1), "{}", said(&changed));
    assert!(
        String::from_utf8_lossy(&changed.stderr).contains("changed after it was recorded"),
        "{}",
        said(&changed)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), second);
    assert_eq!(proxy.history(), before);
}

#[test]
fn a_rollback_the_proxy_refuses_puts_the_file_back() {
    let one = answering("one");
    let dir = tempfile::tempdir().unwrap();
    let (path, state_home) = (dir.path().join("lbproxy.toml"), dir.path().join("state"));
    std::fs::write(&path, config(one.addr, "")).unwrap();
    let first = LbproxyProcess::serve_file(&path, &state_home);
    history_of(&first, 1);
    drop(first);
    // Restarted with a second listener: going back would remove it, which needs a restart.
    let with_two_listeners = config(
        one.addr,
        "[listener.other]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n",
    );
    std::fs::write(&path, &with_two_listeners).unwrap();
    let proxy = LbproxyProcess::serve_file(&path, &state_home);
    assert_eq!(history_of(&proxy, 2)[1]["who"], "start");

    let admin = proxy.admin.unwrap().to_string();
    let refused = lbproxy(&state_home, &["config", "rollback", "--admin", &admin]);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("the proxy refused entry 1's configuration"),
        "{err}"
    );
    assert!(err.contains("listener \"other\""), "its reason: {err}");
    assert!(err.contains("is back as it was"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), with_two_listeners);
    assert_eq!(proxy.history().len(), 2);
    assert!(!state_home.join("lbproxy/configs/rollback.json").exists());
}

#[test]
fn a_backup_restored_on_a_wiped_machine_serves_the_same_responses() {
    let (one, two) = (answering("one"), answering("two"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/lbproxy.toml");
    let state_home = dir.path().join("state");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let routed = |extra: &str| {
        format!(
            "{}[[listener.http.route]]\npath_prefix = \"/two/\"\nupstream = \"two\"\n\
             [upstream.two]\nbackends = [\"{}\"]\n{extra}",
            config(one.addr, ""),
            two.addr
        )
    };
    std::fs::write(&path, routed("")).unwrap();
    let proxy = LbproxyProcess::serve_file(&path, &state_home);
    std::fs::write(&path, routed("# reloaded\n")).unwrap();
    assert!(ctl_reload(&proxy).status.success());
    let served = |addr| (body(addr, "/"), body(addr, "/two/x"));
    let before = served(proxy.addr);
    assert_eq!(before, ("one".to_owned(), "two".to_owned()));
    let state = state_home.join("lbproxy");
    for (file, text) in [
        ("deploy/current.json", "{\"id\": 7}\n"),
        ("deploy/history.jsonl", "{\"id\": 6}\n"),
        ("versions/api@1.service.env", "LBPROXY_VERSION=2.1\n"),
    ] {
        std::fs::create_dir_all(state.join(file).parent().unwrap()).unwrap();
        std::fs::write(state.join(file), text).unwrap();
    }
    let history_before = proxy.history();
    let config_before = std::fs::read_to_string(&path).unwrap();

    let archive = dir.path().join("backup.tar.gz");
    let backup = lbproxy(
        &state_home,
        &["backup", "--output", archive.to_str().unwrap()],
    );
    assert!(backup.status.success(), "{}", said(&backup));
    let out = stdout(&backup);
    assert!(
        out.contains(&format!("configuration: {}", path.display())),
        "{out}"
    );
    assert!(
        out.contains("3 file(s) of configuration history, 2 of deployments, 1 version file(s)"),
        "{out}"
    );
    drop(proxy);

    // The machine is lost: configuration and state directory gone.
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_dir_all(&state_home).unwrap();
    let restore = lbproxy(&state_home, &["restore", archive.to_str().unwrap()]);
    assert!(restore.status.success(), "{}", said(&restore));
    let out = stdout(&restore);
    assert!(out.contains("next: lbproxy check -c"), "{out}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), config_before);
    assert_eq!(
        std::fs::read_to_string(state.join("versions/api@1.service.env")).unwrap(),
        "LBPROXY_VERSION=2.1\n"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("deploy/current.json")).unwrap(),
        "{\"id\": 7}\n"
    );

    // What it wrote is the same as the archive: nothing to do again; a file changed since is a
    // conflict, refused without --force.
    let again = lbproxy(&state_home, &["restore", archive.to_str().unwrap()]);
    assert!(
        stdout(&again).contains("restored 0 file(s)"),
        "{}",
        said(&again)
    );
    std::fs::write(&path, config(two.addr, "")).unwrap();
    let conflict = lbproxy(&state_home, &["restore", archive.to_str().unwrap()]);
    assert_eq!(conflict.status.code(), Some(1), "{}", said(&conflict));
    assert!(
        String::from_utf8_lossy(&conflict.stderr).contains("exist and differ"),
        "{}",
        said(&conflict)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        config(two.addr, "")
    );
    let forced = lbproxy(
        &state_home,
        &["restore", "--force", archive.to_str().unwrap()],
    );
    assert!(forced.status.success(), "{}", said(&forced));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), config_before);

    // Started again: the same responses, the history back, and this start recorded after it.
    let proxy = LbproxyProcess::serve_file(&path, &state_home);
    assert_eq!(served(proxy.addr), before);
    let entries = history_of(&proxy, 3);
    assert_eq!(entries[..2], history_before[..]);
    assert_eq!(
        (&entries[2]["id"], &entries[2]["who"]),
        (&Value::from(3), &Value::from("start"))
    );
    assert_eq!(
        entries[2]["stored"], 2,
        "the restored text is the one stored"
    );
    drop(proxy);

    // Elsewhere, as -c and --state-dir say.
    let other = dir.path().join("other");
    let elsewhere = lbproxy(
        &state_home,
        &[
            "restore",
            archive.to_str().unwrap(),
            "-c",
            other.join("lb.toml").to_str().unwrap(),
            "--state-dir",
            other.join("state").to_str().unwrap(),
        ],
    );
    assert!(elsewhere.status.success(), "{}", said(&elsewhere));
    assert_eq!(
        std::fs::read_to_string(other.join("lb.toml")).unwrap(),
        config_before
    );
    assert!(other.join("state/configs/history.jsonl").is_file());

    // A damaged archive writes nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = dir.path().join("damaged.tar.gz");
    std::fs::write(&damaged, bytes).unwrap();
    let fresh = dir.path().join("fresh");
    let refused = lbproxy(
        &state_home,
        &[
            "restore",
            damaged.to_str().unwrap(),
            "-c",
            fresh.join("lb.toml").to_str().unwrap(),
            "--state-dir",
            fresh.join("state").to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    assert!(!fresh.exists(), "nothing written: {}", said(&refused));
}
