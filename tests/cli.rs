//! The `lbproxy` binary as a new user meets it: logs written to a file or a pipe are plain text
//! with addresses written as addresses; `--help` shows what it means; `lbproxy reload --pid`
//! signals only a proxy and says when it cannot tell how the reload went; a reload refused
//! through the admin API is logged once, with its fix.

mod common;

use common::admin::{self, said};
use common::backend::{RawBackend, Reply};
use common::wait_until;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const STARTED: &str = "lbproxy is accepting connections";
const INSTALLED: &str = "signal handlers installed";

fn lbproxy() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    command
        .env("LBPROXY_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    command
}

/// [`lbproxy`] with its state directory under `dir`: every `serve` records its configuration
/// there, never in the real ~/.local/state.
fn lbproxy_in(dir: &std::path::Path) -> Command {
    let mut command = lbproxy();
    common::isolate_state(&mut command, &dir.join("state"));
    command
}

/// Reads a child's log as it comes: each read sends the whole log so far; the thread returns
/// the whole log once the child closes it.
fn read_log(
    mut stderr: std::process::ChildStderr,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = [0; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&chunk[..n]);
            let _ = lines_tx.send(String::from_utf8_lossy(&all).into_owned());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    (lines, reader)
}

/// SIGTERM, then waits for the exit.
fn stop(child: &mut Child) {
    // SAFETY: SIGTERM to our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut exited = false;
    wait_until(WAIT, "lbproxy to exit after SIGTERM", || {
        exited = child.try_wait().unwrap().is_some();
        exited
    });
}

/// Kills the child if a test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The `NAME=VALUE` field of a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split(' ').next()
}

#[test]
fn a_log_written_to_a_file_has_no_colour_and_human_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::one_backend_config_file(dir.path(), "127.0.0.1:9".parse().unwrap());
    let log_path = dir.path().join("log.txt");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut proxy = Running(
        lbproxy_in(dir.path())
            .args(["serve", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut text = String::new();
    wait_until(WAIT, "the startup line in the log file", || {
        text = std::fs::read_to_string(&log_path).unwrap();
        text.contains(STARTED)
    });
    stop(&mut proxy.0);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\x1b'), "colour escapes in a file: {text:?}");

    let started = text.lines().find(|l| l.contains(STARTED)).unwrap();
    let listeners = field(started, "listeners").expect("a listeners field");
    let address: SocketAddr = listeners
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("listeners={listeners} is not a URL: {started}"))
        .parse()
        .unwrap_or_else(|e| panic!("listeners={listeners}: {e}: {started}"));
    assert_eq!(address.ip().to_string(), "127.0.0.1");
    let admin = field(started, "admin").expect("an admin field");
    assert!(
        admin.parse::<SocketAddr>().is_ok(),
        "admin={admin}: {started}"
    );
    assert!(!started.contains("Some("), "{started}");
}

#[test]
fn a_reload_refused_through_the_api_is_logged_once_with_its_fix() {
    let backend = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let path = common::one_backend_config_file(dir.path(), backend.addr);
    // stderr is a pipe, as in `lbproxy serve 2>&1 | tee`.
    let mut proxy = Running(
        lbproxy_in(dir.path())
            .args(["serve", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines, reader) = read_log(proxy.0.stderr.take().unwrap());
    let admin = loop {
        let text = lines.recv_timeout(WAIT).expect("the proxy logs its start");
        if let Some(line) = text.lines().find(|l| l.contains(STARTED)) {
            break field(line, "admin").unwrap().parse::<SocketAddr>().unwrap();
        }
    };

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("[runtime]", "[runtime]\nwokers = 2")).unwrap();
    let response = admin::request(admin, "POST", "/api/reload", None, "");
    assert_eq!(response.status, 422, "{}", response.text());
    // The proxy logged before it answered; stopping it closes its stderr.
    stop(&mut proxy.0);
    let log = reader.join().unwrap();

    assert!(!log.contains('\x1b'), "colour escapes in a pipe: {log:?}");
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reload failed"))
        .collect();
    assert_eq!(failures.len(), 1, "logged once: {log}");
    assert!(!log.contains("admin API failed"), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let error = lines
        .iter()
        .position(|l| l.contains("runtime.wokers = 2: unknown key `wokers`"))
        .unwrap_or_else(|| panic!("the reason is logged: {log}"));
    assert!(
        lines[error + 1].starts_with("  fix: did you mean `workers`?"),
        "the fix follows its error: {log}"
    );
}

#[test]
fn rollout_help_shows_the_unit_placeholders_as_written() {
    let output = lbproxy().args(["rollout", "--help"]).output().unwrap();
    let (out, err) = said(&output);
    assert!(output.status.success(), "{err}");
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(
        out.contains("The unit of each backend. `{n}` is the backend's position in the group"),
        "{out}"
    );
    assert!(out.contains("[default: api@{n}]"), "{out}");
}

fn reload_pid(pid: u32, extra: &[&str]) -> Output {
    lbproxy()
        .args(["reload", "--pid", &pid.to_string()])
        .args(extra)
        .output()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Whether process `pid` has a SIGHUP handler (`SigCgt` in /proc/PID/status, a hex mask with
/// bit N-1 for signal N): before it does, SIGHUP would stop it.
fn catches_sighup(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGHUP - 1)) != 0)
}

#[test]
fn reload_refuses_a_process_that_is_not_a_proxy() {
    let mut sleep = Running(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = sleep.0.id();
    let refused = reload_pid(pid, &[]);
    let (out, err) = said(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("pid {pid} is not lbproxy: it runs `sleep 60`")),
        "{err}"
    );
    assert!(alive(pid), "sleep was not signalled");
    assert!(sleep.0.try_wait().unwrap().is_none());
}

#[test]
fn reload_says_when_it_cannot_tell_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::one_backend_config_file(dir.path(), "127.0.0.1:9".parse().unwrap());
    let log_path = dir.path().join("log.txt");
    let mut proxy = Running(
        lbproxy_in(dir.path())
            .args(["serve", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = proxy.0.id();
    wait_until(WAIT, "the proxy to handle SIGHUP", || catches_sighup(pid));

    // No RUNTIME_DIRECTORY: the signal goes out, the outcome is unknown, and it says so.
    let unknown = reload_pid(pid, &[]);
    let (out, err) = said(&unknown);
    assert_eq!(unknown.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("cannot tell whether it serves the new configuration"),
        "{err}"
    );
    assert!(err.contains("lbproxy ctl reload"), "{err}");
    wait_until(WAIT, "the proxy to log the reload", || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("configuration reloaded")
    });
    let sent = reload_pid(pid, &["--no-wait"]);
    let (out, err) = said(&sent);
    assert!(sent.status.success(), "{out}{err}");
    assert!(out.contains(&format!("sent SIGHUP to pid {pid}")), "{out}");
    assert!(alive(pid));
    stop(&mut proxy.0);
}

// A SIGHUP (or SIGTERM) that arrives while the proxy is starting must not end it with the
// signal's default action: the handlers are installed (said at debug level) before the proxy
// starts its workers, and a signal from then on waits for the control loop. Sent the moment the
// handlers are said installed; before, they were installed only after the proxy had started.
#[test]
fn a_sighup_during_start_reloads_instead_of_ending_the_proxy() {
    let backend = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let path = common::one_backend_config_file(dir.path(), backend.addr);
    let mut proxy = Running(
        lbproxy_in(dir.path())
            .env("LBPROXY_LOG", "info,lbproxy::control::signals=debug")
            .args(["serve", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines, _reader) = read_log(proxy.0.stderr.take().unwrap());
    let pid = libc::pid_t::try_from(proxy.0.id()).unwrap();
    let mut signalled = false;
    let log = loop {
        let text = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the proxy logs its start and its reload"));
        if !signalled && text.contains(INSTALLED) {
            // SAFETY: kill(2) with a valid signal number on our own child's pid.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
            signalled = true;
        }
        if text.contains("configuration reloaded") {
            break text;
        }
    };
    assert!(
        proxy.0.try_wait().unwrap().is_none(),
        "the proxy still runs after the SIGHUP: {log}"
    );
    assert!(
        log.find(INSTALLED) < log.find(STARTED),
        "the handlers come before the proxy starts: {log}"
    );
    assert_eq!(common::client::get(listener_of(&log), "/").status, 204);
    stop(&mut proxy.0);
}

/// The address of the first `listener NAME: http://ADDR/` line of `log`.
fn listener_of(log: &str) -> SocketAddr {
    let line = log
        .lines()
        .find(|l| l.contains("listener ") && l.contains("http://"))
        .unwrap_or_else(|| panic!("a listener line: {log}"));
    let url = &line[line.find("http://").unwrap() + "http://".len()..];
    url[..url.find('/').unwrap()].parse().unwrap()
}
