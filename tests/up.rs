//! `lbproxy up` as a user runs it: real `lbproxy` and `lbproxy-demo-api` processes. It serves
//! through every instance, restarts one that is killed, and on SIGTERM stops everything.

mod common;

use common::client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn pid_of(instance: SocketAddr) -> Option<u32> {
    let stream = std::net::TcpStream::connect(instance).ok()?;
    drop(stream);
    let text = client::get(instance, "/").text();
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

#[test]
fn up_serves_restarts_a_killed_instance_and_stops_cleanly() {
    let (proxy, api1, api2) = (
        common::closed_port(),
        common::closed_port(),
        common::closed_port(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.toml");
    std::fs::write(
        &path,
        format!(
            "[runtime]\nworkers = 1\n[listener.http]\naddress = \"{proxy}\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{api1}\", \"{api2}\"]\n"
        ),
    )
    .unwrap();

    let mut up = Command::new(env!("CARGO_BIN_EXE_lbproxy"))
        .args(["up", "-c"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = up.stdout.take().unwrap();
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
            break;
        }
    }

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
    unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGTERM) };
    let mut status = None;
    common::wait_until(Duration::from_secs(30), "lbproxy up to exit", || {
        status = up.try_wait().unwrap();
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
