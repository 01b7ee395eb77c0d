//! Demo-API instances as real processes (`lbproxy-demo-api --listen 127.0.0.1:0`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

/// The `lbproxy-demo-api` binary of this build: next to the `lbproxy` binary under test
/// (`target/<profile>/`), where `lbproxy up` and `lbproxy systemd install` look for it too.
///
/// The demo API is a package of its own (demo-api/, a workspace member), and cargo builds a
/// package's binaries for that package's integration tests only: it sets no
/// `CARGO_BIN_EXE_lbproxy-demo-api` here and does not build the binary for these tests, whatever
/// the default members. `cargo build --bin lbproxy-demo-api` does (tests/run.sh runs it before
/// the tests). Panics naming that step when the binary is missing, or older than a source file
/// of demo-api/src (a test would otherwise run the demo as it was before the edit).
pub fn demo_api_binary() -> PathBuf {
    const BUILD: &str = "cargo build --bin lbproxy-demo-api (with --release for release tests)";
    let demo = Path::new(env!("CARGO_BIN_EXE_lbproxy")).with_file_name("lbproxy-demo-api");
    let built = std::fs::metadata(&demo)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: the demo API is a package of its own (demo-api/) that cargo \
                 does not build for lbproxy's tests; build it first: {BUILD}",
                demo.display()
            )
        });
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo-api/src");
    if let Some(newer) = newer_than(&sources, built) {
        panic!(
            "{} is older than {}: rebuild it first: {BUILD}",
            demo.display(),
            newer.display()
        );
    }
    demo
}

/// A file under `dir` modified after `time`, if any.
fn newer_than(dir: &Path, time: SystemTime) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let path = entry.path();
        if path.is_dir() {
            newer_than(&path, time)
        } else {
            let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
            (modified > time).then_some(path)
        }
    })
}

pub struct DemoApi {
    pub child: Child,
    pub addr: SocketAddr,
    pub instance: u32,
}

impl DemoApi {
    /// Starts instance `instance` on a free port and waits for its "listening on" line.
    pub fn start(instance: u32) -> DemoApi {
        DemoApi::start_with(instance, &[])
    }

    pub fn start_with(instance: u32, args: &[&str]) -> DemoApi {
        DemoApi::spawn(instance, "127.0.0.1:0", args)
    }

    /// Starts instance `instance` on `addr` (e.g. again after [`DemoApi::kill9`], as a restart
    /// by systemd would).
    pub fn start_on(instance: u32, addr: SocketAddr) -> DemoApi {
        DemoApi::spawn(instance, &addr.to_string(), &[])
    }

    fn spawn(instance: u32, listen: &str, args: &[&str]) -> DemoApi {
        let mut child = Command::new(demo_api_binary())
            .args([
                "--instance",
                &instance.to_string(),
                "--listen",
                listen,
                "--threads",
                "1",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn lbproxy-demo-api");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from lbproxy-demo-api: {line:?}"));
        DemoApi {
            child,
            addr,
            instance,
        }
    }

    /// `POST /admin/ready on|off`: `/health/ready` answers 503 while held off.
    pub fn set_ready(&self, ready: bool) {
        self.admin("/admin/ready", if ready { "on" } else { "off" });
    }

    /// `POST /admin/fail`: every ordinary request answers `status` (`None`: serve normally).
    pub fn fail_with(&self, status: Option<u16>) {
        let body = status.map_or_else(|| "off".to_owned(), |s| s.to_string());
        self.admin("/admin/fail", &body);
    }

    /// How many `/health/ready` probes the instance has answered.
    pub fn ready_probes(&self) -> u64 {
        let text = super::client::get(self.addr, "/admin/faults").text();
        let start = text
            .find("\"ready_probes\":")
            .expect("ready_probes in /admin/faults")
            + 15;
        text[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no probe count in {text}"))
    }

    fn admin(&self, path: &str, body: &str) {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = super::client::request(self.addr, raw.as_bytes());
        assert_eq!(response.status, 200, "{path} {body}: {}", response.text());
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DemoApi {
    fn drop(&mut self) {
        self.kill9();
    }
}
