//! Shared test harness: an in-process proxy on port 0, raw recording backends, demo-API
//! processes, a parsing HTTP client and a raw byte-exact one, and the docs/http.md helpers.
//! Everything binds 127.0.0.1:0; waits poll with a deadline.

#![allow(dead_code, unused_macros, unused_imports)]

pub mod admin;
pub mod backend;
pub mod client;
pub mod demo;
pub mod load;
pub mod logs;
pub mod origin;
pub mod process;
pub mod raw;
pub mod spec;
pub mod systemd;
pub mod tcp;
pub mod tls;

/// Runs each named `fn(driver: &str)` as two tests, `io_uring::NAME` and `legacy::NAME`.
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        mod io_uring { $( #[test] fn $name() { super::$name("io_uring") } )* }
        mod legacy { $( #[test] fn $name() { super::$name("legacy") } )* }
    };
}
pub(crate) use on_both_drivers;

use lbproxy::server::{ControlHandle, ReloadError, ReloadReport, Server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The two io drivers every data-plane test runs on.
pub const DRIVERS: [&str; 2] = ["io_uring", "legacy"];

/// Polls `condition` every 10 ms until it holds or `within` passes.
/// `command`, after checking that it runs (`command --version`): a test that needs a tool fails
/// naming the install step when it is missing, never skips.
pub fn require_tool<'a>(command: &'a str, install: &str) -> &'a str {
    let found = std::process::Command::new(command)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{command} is missing: tests/run.sh installs it ({install})"
    );
    command
}

/// One listener, group `api` over `backends` (TOML entries, as written), `workers` workers,
/// with `group` (keys and sections) appended to `[upstream.api]`.
pub fn group_config(driver: &str, workers: usize, backends: &[String], group: &str) -> String {
    format!(
        "[runtime]\nworkers = {workers}\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [{}]\n{group}\n",
        backends.join(", ")
    )
}

/// Joins client threads that each return the requests they saw fail, and asserts there were none
/// (showing the first few).
pub fn assert_no_failed_requests(clients: Vec<std::thread::JoinHandle<Vec<String>>>) {
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

pub fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("LBPROXY_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// A proxy running in this process. Dropping it drains and joins the workers.
pub struct Proxy {
    server: Option<Server>,
    control: ControlHandle,
    pub addr: SocketAddr,
    config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts a proxy from TOML text (written to a temp file and loaded as `lbproxy serve -c`
    /// would). The first listener's bound address is `addr`.
    pub fn start(toml: &str) -> Proxy {
        Self::start_adjusted(toml, |_| {})
    }

    /// [`Proxy::start`], with the loaded configuration changed by `adjust` first: for settings
    /// that only the proxy sets at runtime (a deployment's traffic split, canary backends).
    pub fn start_adjusted(toml: &str, adjust: impl FnOnce(&mut lbproxy::config::Config)) -> Proxy {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbproxy.toml");
        std::fs::write(&path, with_admin_on_any_port(toml)).unwrap();
        let mut config = lbproxy::config::load(Some(&path), None)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{toml}"));
        adjust(&mut config);
        let server = Server::start(Arc::new(config)).expect("proxy starts");
        let addr = server.listen_addrs()[0].1;
        let control = server.control();
        Proxy {
            server: Some(server),
            control,
            addr,
            config_path: path,
            _dir: dir,
        }
    }

    /// Writes `toml` over the proxy's configuration file and reloads it, as SIGHUP would.
    pub fn reload(&self, toml: &str) -> Result<ReloadReport, ReloadError> {
        std::fs::write(&self.config_path, with_admin_on_any_port(toml)).unwrap();
        self.control.reload_from_source()
    }

    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// Where its admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(Server::admin_addr)
            .expect("the admin server is on")
    }

    /// Asks the proxy to drain and waits until its workers have exited.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(server) = self.server.take() {
            self.control.shutdown();
            server.wait().expect("workers exit cleanly");
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// A minimal config: one listener on port 0 routing everything to upstream `api` over
/// `backends`, on `driver`, with `extra` TOML appended (more sections or keys).
pub fn config(driver: &str, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\n\
         [upstream.api]\nbackends = [{}]\n\n{extra}\n",
        list.join(", ")
    )
}

/// Writes `dir/lbproxy.toml`: one worker, the listener and the admin server on port 0, upstream
/// `api` with the one backend `backend`. Returns its path.
pub fn one_backend_config_file(dir: &std::path::Path, backend: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("lbproxy.toml");
    std::fs::write(
        &path,
        format!(
            "[runtime]\nworkers = 1\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{backend}\"]\n"
        ),
    )
    .unwrap();
    path
}

/// Gives `command` (an `lbproxy` that may serve: `serve`, `up`, a script that runs them) a state
/// directory of its own under `state_home` (`XDG_STATE_HOME`; `STATE_DIRECTORY` removed), so that
/// the configuration history it records never goes to the real ~/.local/state and no two tests
/// share one.
pub fn isolate_state<'a>(
    command: &'a mut std::process::Command,
    state_home: &std::path::Path,
) -> &'a mut std::process::Command {
    command
        .env("XDG_STATE_HOME", state_home)
        .env_remove("STATE_DIRECTORY")
}

/// `toml` with the admin server on a port the kernel picks, unless `toml` has its own `[admin]`:
/// tests run side by side, and the default admin port (9901) can only be bound once.
pub fn with_admin_on_any_port(toml: &str) -> String {
    if toml.contains("[admin]") {
        toml.to_owned()
    } else {
        format!("{toml}\n[admin]\naddress = \"127.0.0.1:0\"\n")
    }
}

/// An address that refuses connections: a socket is bound there and never listens, and it stays
/// bound until the test process ends, so the port cannot be handed to another test's server in
/// the meantime (a port merely released can be the next one the kernel gives to a bind to port
/// 0, and a "dead backend" would then answer).
pub fn refusing_port() -> SocketAddr {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    std::mem::forget(socket);
    addr
}

/// A port free right now, for a process under test to bind (bound once, then released; another
/// bind to port 0 could take it first, a race the kernel makes rare by cycling through ports).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
