//! `lbproxy up` as a user runs it: real `lbproxy` and `lbproxy-demo-api` processes. It serves
//! through every instance, restarts one that is killed, and on SIGTERM stops everything; a
//! reload keeps the instances `-n` asked for; the `lbproxy ctl` command it prints works; a busy
//! proxy port fails it before any instance starts.

mod common;

use common::admin::{self, said};
use common::client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The pid an instance reports, or None while it is down (or still dying: a reset then).
fn pid_of(instance: SocketAddr) -> Option<u32> {
    let raw = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let text = client::try_request(instance, raw).ok()?.text();
    let start = text.find("\"pid\":")? + 6;
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Stops `lbproxy up` (SIGTERM, so it stops its instances) if the test ends early.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: SIGTERM to our own child, not yet reaped.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `lbproxy up` with a proxy and two instances on free ports; returns once the banner
/// says the proxy listens.
fn start_up(dir: &tempfile::TempDir) -> (Up, SocketAddr, SocketAddr, SocketAddr) {
    let (proxy, api1, api2) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let path = dir.path().join("up.toml");
    std::fs::write(
        &path,
        format!(
            "[runtime]\nworkers = 1\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [listener.http]\naddress = \"{proxy}\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{api1}\", \"{api2}\"]\n"
        ),
    )
    .unwrap();
    let mut up = Up(lbproxy_up(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let (lines_tx, lines) = mpsc::channel();
    let stdout = up.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let banner = format!("proxy (http) listening on http://{proxy}/");
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("lbproxy up prints its banner");
        if line.contains(&banner) {
            return (up, proxy, api1, api2);
        }
    }
}

#[test]
fn up_serves_restarts_a_killed_instance_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, proxy, api1, api2) = start_up(&dir);

    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let response = client::get(proxy, "/");
        assert_eq!(response.status, 200);
        seen.insert(response.header("x-instance").unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "both instances serve: {seen:?}");

    let first = pid_of(api1).expect("instance 1 answers");
    let second = pid_of(api2).expect("instance 2 answers");
    // SAFETY: SIGKILL to the instance's pid, as a crash would.
    unsafe { libc::kill(first as libc::pid_t, libc::SIGKILL) };
    common::wait_until(
        Duration::from_secs(20),
        "instance 1 to be restarted",
        || pid_of(api1).is_some_and(|pid| pid != first),
    );
    let restarted = pid_of(api1).unwrap();
    // Requests keep succeeding through the proxy.
    for _ in 0..4 {
        assert_eq!(client::get(proxy, "/").status, 200);
    }

    // SAFETY: SIGTERM to the child we spawned.
    unsafe { libc::kill(up.0.id() as libc::pid_t, libc::SIGTERM) };
    let mut status = None;
    common::wait_until(Duration::from_secs(30), "lbproxy up to exit", || {
        status = up.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        status.unwrap().success(),
        "lbproxy up exits 0 on SIGTERM: {status:?}"
    );
    assert!(
        !alive(restarted) && !alive(second),
        "instances left running"
    );
    assert!(
        std::net::TcpStream::connect(proxy).is_err(),
        "proxy still listening"
    );
}

#[test]
fn instances_do_not_outlive_a_killed_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, _proxy, api1, api2) = start_up(&dir);
    let pids = [pid_of(api1).unwrap(), pid_of(api2).unwrap()];
    up.0.kill().unwrap();
    up.0.wait().unwrap();
    common::wait_until(
        Duration::from_secs(20),
        "instances to exit after up was SIGKILLed",
        || pids.iter().all(|&pid| !alive(pid) || zombie(pid)),
    );
}

/// `lbproxy up -c path`, once the demo API it runs by default is known to be built (under
/// cargo, `lbproxy up` would build a missing one itself, slowly and silently within a test's
/// deadline), with its state directory beside `path`.
fn lbproxy_up(path: &std::path::Path) -> Command {
    common::demo::demo_api_binary();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    common::isolate_state(&mut command, &path.with_file_name("state"));
    command.args(["up", "-c"]).arg(path);
    command
}

/// An exited child not yet reaped by its (now gone) parent counts as gone.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat.contains(") Z "))
}

/// Runs `lbproxy up -c path ARGS` and returns it with its banner, once printed (up to the
/// `try curl` line, the last).
fn launch(path: &std::path::Path, args: &[&str]) -> (Up, Vec<String>) {
    let mut up = Up(lbproxy_up(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let stdout = up.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut banner = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("lbproxy up prints its banner; so far: {banner:?}"));
        let last = line.contains("try `curl");
        banner.push(line);
        if last {
            return (up, banner);
        }
    }
}

/// The text between `before` and `after` in the banner line that has `before`.
fn from_banner<'a>(banner: &'a [String], before: &str, after: &str) -> &'a str {
    let line = banner
        .iter()
        .find(|l| l.contains(before))
        .unwrap_or_else(|| panic!("no {before:?} in {banner:?}"));
    let start = line.find(before).unwrap() + before.len();
    let end = line[start..].find(after).map_or(line.len(), |i| start + i);
    &line[start..end]
}

/// The first of `n` consecutive ports free right now (each bound once, then released), taken
/// below the kernel's ephemeral range: a port released there can be handed to any other test's
/// bind to port 0 before `lbproxy up` binds it, which made this test fail at random.
fn free_ports(n: u16) -> SocketAddr {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(n).max(10_001));
    // Spread the tests of one run: start from a place of this process's own.
    let mut port = low + (std::process::id() as u16 % (high - low));
    loop {
        let all: Result<Vec<_>, _> = (0..n)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)))
            .collect();
        if all.is_ok() {
            return SocketAddr::from(([127, 0, 0, 1], port));
        }
        port = if port + n >= high { low } else { port + n };
    }
}

fn backend_addresses(admin: SocketAddr) -> Vec<String> {
    let api = admin::json(admin, "/api/backends", None);
    api["upstreams"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_reload_keeps_the_instances_asked_for_and_the_printed_ctl_command_works() {
    let dir = tempfile::tempdir().unwrap();
    let first = free_ports(3);
    // The file lists one backend; `-n 3` makes three, from its port on.
    let path = common::one_backend_config_file(dir.path(), first);
    let (up, banner) = launch(&path, &["-n", "3"]);
    let proxy: SocketAddr = from_banner(&banner, "listening on http://", "/")
        .parse()
        .unwrap();
    let admin: SocketAddr = from_banner(&banner, "dashboard on http://", "/")
        .parse()
        .unwrap();
    let instances: Vec<String> = (0..3)
        .map(|i| SocketAddr::new(first.ip(), first.port() + i).to_string())
        .collect();
    assert_eq!(backend_addresses(admin), instances);

    // The command `up` printed reaches this proxy (its admin server is on a port of its own).
    let ctl = from_banner(&banner, "; `", " status`");
    assert_eq!(
        ctl,
        format!("lbproxy ctl -c {} --admin {admin}", path.display())
    );
    let args: Vec<&str> = ctl.split(' ').skip(2).collect();
    let status = admin::ctl(&[&args[..], &["reload"]].concat(), &[]);
    let (out, err) = said(&status);
    assert!(status.status.success(), "{out}{err}");
    assert!(out.contains("reload 1 applied"), "{out}");
    assert_eq!(backend_addresses(admin), instances, "after ctl reload");

    // SIGHUP reloads too, and keeps them as well.
    // SAFETY: SIGHUP to our own child, not yet reaped.
    unsafe { libc::kill(up.0.id() as libc::pid_t, libc::SIGHUP) };
    common::wait_until(Duration::from_secs(20), "the second reload", || {
        admin::json(admin, "/api/status", None)["reloads"] == 2
    });
    assert_eq!(backend_addresses(admin), instances, "after SIGHUP");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..9 {
        let response = client::get(proxy, "/");
        assert_eq!(response.status, 200);
        seen.insert(response.header("x-instance").unwrap().to_owned());
    }
    assert_eq!(seen.len(), 3, "every instance serves: {seen:?}");
}

#[test]
fn a_busy_proxy_port_fails_up_before_any_instance_starts() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let instance = common::free_port();
    let path = dir.path().join("up.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\naddress = \"127.0.0.1:0\"\n\
             [listener.http]\naddress = \"{busy}\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{instance}\"]\n"
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = lbproxy_up(&path)
        .env("LBPROXY_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = said(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("the proxy cannot listen, so no instance was started")
            && err.contains(&format!("binding {busy}")),
        "{err}"
    );
    assert!(!err.contains("started API instance"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed at once, not after starting instances"
    );
    assert!(std::net::TcpStream::connect(instance).is_err());
}

#[test]
fn up_autoscale_starts_min_instances_routes_them_as_units_and_keeps_them_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let first = free_ports(3);
    // One backend in the file; --min 2 makes up start two, on consecutive ports from its port.
    let path = common::one_backend_config_file(dir.path(), first);
    let (up, banner) = launch(&path, &["--autoscale", "--min", "2", "--max", "3"]);
    let proxy: SocketAddr = from_banner(&banner, "listening on http://", "/")
        .parse()
        .unwrap();
    let admin: SocketAddr = from_banner(&banner, "dashboard on http://", "/")
        .parse()
        .unwrap();
    let pids: Vec<u32> = banner
        .iter()
        .filter(|l| l.contains("lbproxy up: instance "))
        .map(|l| {
            from_banner(std::slice::from_ref(l), "(pid ", ")")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 2, "two instances: {banner:?}");
    let instances: Vec<String> = (0..2)
        .map(|i| SocketAddr::new(first.ip(), first.port() + i).to_string())
        .collect();
    assert_eq!(backend_addresses(admin), instances);

    // Reported as units (api@1, api@2), they stay routed: every instance serves.
    std::thread::sleep(Duration::from_secs(2));
    let serving = |what: &str| {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..8 {
            let response = client::get(proxy, "/");
            assert_eq!(response.status, 200, "{what}");
            seen.insert(response.header("x-instance").unwrap().to_owned());
        }
        assert_eq!(seen.len(), 2, "both instances serve {what}: {seen:?}");
    };
    serving("once reported");
    assert_eq!(backend_addresses(admin), instances);

    // A reload keeps the autoscaled group and its instances.
    // SAFETY: SIGHUP to our own child, not yet reaped.
    unsafe { libc::kill(up.0.id() as libc::pid_t, libc::SIGHUP) };
    common::wait_until(Duration::from_secs(20), "the reload", || {
        admin::json(admin, "/api/status", None)["reloads"] == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(backend_addresses(admin), instances, "after SIGHUP");
    serving("after the reload");

    drop(up);
    common::wait_until(Duration::from_secs(5), "the instances to exit", || {
        pids.iter().all(|&pid| !alive(pid) || zombie(pid))
    });
}
