//! Demo-API instances as real processes (`lbproxy-demo-api --listen 127.0.0.1:0`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_lbproxy-demo-api"))
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
