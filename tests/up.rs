//! `lbproxy up` as a user runs it: real `lbproxy` and `lbproxy-demo-api` processes. It serves
//! through every instance, restarts one that is killed, and on SIGTERM stops everything.

mod common;

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
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_lbproxy"))
        .args(["up", "-c"])
        .arg(&path)
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

/// An exited child not yet reaped by its (now gone) parent counts as gone.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat.contains(") Z "))
}
