//! `lbproxy serve` as a separate process: what a test needs when two independent proxies must
//! agree (consistent hashing) or when the real binary's behaviour is the point.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct LbproxyProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Where its admin server listens, as it logged it (`None` when it has none).
    pub admin: Option<SocketAddr>,
    /// The configuration file it serves.
    pub config_path: PathBuf,
    /// Its `XDG_STATE_HOME` (its state directory is `lbproxy/` in it).
    pub state_home: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl LbproxyProcess {
    /// Runs `lbproxy serve -c FILE` with `toml` as FILE. Its first listener should be on port 0:
    /// the address the kernel gives it is read from the proxy's log (`listener NAME: URL`), so
    /// no port has to be picked beforehand and taken by another test meanwhile. Returns once it
    /// accepts connections. The proxy's log goes to the test's stderr.
    pub fn start(toml: &str) -> LbproxyProcess {
        Self::start_with_fd_limit(toml, None)
    }

    /// [`start`](Self::start) with its open-files limit (soft and hard) set to `nofile`.
    pub fn start_with_fd_limit(toml: &str, nofile: Option<u64>) -> LbproxyProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbproxy.toml");
        std::fs::write(&path, super::with_admin_on_any_port(toml)).unwrap();
        let state_home = dir.path().join("state");
        let mut process = Self::spawn(&path, &state_home, nofile, &[]);
        process._dir = Some(dir);
        process
    }

    /// Runs `lbproxy serve -c path` with `state_home` as its `XDG_STATE_HOME`, both left in
    /// place when it stops (a test that restarts a proxy on the same files).
    pub fn serve_file(path: &Path, state_home: &Path) -> LbproxyProcess {
        Self::spawn(path, state_home, None, &[])
    }

    /// [`serve_file`](Self::serve_file) with these environment variables set.
    pub fn serve_file_with_env(
        path: &Path,
        state_home: &Path,
        env: &[(&str, &str)],
    ) -> LbproxyProcess {
        Self::spawn(path, state_home, None, env)
    }

    /// The configuration history it records (`configs/history.jsonl` of its state directory),
    /// one JSON value per entry.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let index = self.state_home.join("lbproxy/configs/history.jsonl");
        std::fs::read_to_string(index)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Sends it SIGHUP (a reload, as `systemctl reload` does).
    pub fn sighup(&self) {
        // SAFETY: kill(2) with a valid signal number on our own child, not yet reaped.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(sent, 0, "SIGHUP to lbproxy serve");
    }

    fn spawn(
        path: &Path,
        state_home: &Path,
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> LbproxyProcess {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_lbproxy"));
        super::isolate_state(&mut command, state_home).envs(env.iter().copied());
        command
            .arg("serve")
            .arg("-c")
            .arg(path)
            .env("LBPROXY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(nofile) = nofile {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
            // only reads `limit`, a plain copy.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("spawn lbproxy serve");
        let listening = first_listener(child.stderr.take().expect("stderr is piped"));
        let Ok((addr, admin)) = listening.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let status = child.wait();
            panic!("lbproxy serve logged no listener within 20s (exit: {status:?})");
        };
        let mut process = LbproxyProcess {
            child,
            addr,
            admin,
            config_path: path.to_path_buf(),
            state_home: state_home.to_path_buf(),
            _dir: None,
        };
        super::wait_until(Duration::from_secs(20), "lbproxy serve to listen", || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("lbproxy serve exited early: {status}");
            }
            TcpStream::connect(addr).is_ok()
        });
        process
    }
}

/// Copies the proxy's log to the test's stderr and sends the address of the first
/// `listener NAME: SCHEME://ADDRESS/` line it logs, with its admin server's (the `admin=` field
/// of the startup line, logged before the listeners; `None` when it is `off`).
fn first_listener(
    log: std::process::ChildStderr,
) -> mpsc::Receiver<(SocketAddr, Option<SocketAddr>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut admin = None;
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if line.contains("lbproxy is accepting connections") {
                admin = line
                    .split(" admin=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|address| address.parse().ok());
            }
            let address = line
                .contains(" listener ")
                .then(|| line.split_once("://"))
                .flatten()
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|address| address.parse().ok());
            if let Some(address) = address {
                let _ = tx.send((address, admin));
            }
        }
    });
    rx
}

impl Drop for LbproxyProcess {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
