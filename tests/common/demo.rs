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
        let mut child = Command::new(env!("CARGO_BIN_EXE_lbproxy-demo-api"))
            .args([
                "--instance",
                &instance.to_string(),
                "--listen",
                "127.0.0.1:0",
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
