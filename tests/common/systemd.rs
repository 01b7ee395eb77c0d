//! A real systemd user manager and journald for a test, in namespaces of their own
//! (tests/systemd/sandbox.sh), with the units installed by `lbproxy systemd install --user` into
//! a private HOME. Commands run inside through `nsenter`; test threads that need the sandbox's
//! loopback (its own: the units use their fixed ports) enter its network namespace.
//!
//! Dropping the sandbox ends it: the script kills every process it started (one cgroup) — also
//! when the test process dies, since the script watches its standard input. On a failing test
//! the drop prints the units' states and the journal first.

use super::wait_until;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one systemctl/journalctl command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the sandbox may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The proxy's listener, as in the default configuration and lbproxy.socket.
pub const PROXY: &str = "127.0.0.1:8080";

pub struct Sandbox {
    script: Child,
    /// A process inside the namespaces, for nsenter and setns.
    pid: u32,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// Starts journald and a user manager, then installs the user units (running this build's
    /// binaries) and the default configuration with `lbproxy systemd install --user`.
    pub fn start() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("systemd-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let home = dir.path().join("home");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/sandbox.sh");
        let mut child = Command::new(&script)
            .arg("start")
            .arg(&home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(pid) = line.strip_prefix("READY ") {
                    let _ = tx.send(pid.trim().parse::<u32>().ok());
                }
            }
            let _ = tx.send(None);
        });
        let pid = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(pid)) => pid,
            other => {
                let _ = child.kill();
                let log = std::fs::read_to_string(home.join("sandbox.log")).unwrap_or_default();
                panic!(
                    "the systemd sandbox did not start ({other:?}); its log:\n{log}\n\
                     (tests/systemd/sandbox.sh needs root, cgroup v2 and systemd: see tests/run.sh)"
                );
            }
        };
        let sandbox = Sandbox {
            script: child,
            pid,
            home,
            _dir: dir,
        };
        // Installs the demo's units (api@.service, api.target) only if lbproxy-demo-api is there.
        super::demo::demo_api_binary();
        let install = sandbox.run(
            env!("CARGO_BIN_EXE_lbproxy"),
            &["systemd", "install", "--user"],
        );
        assert!(
            install.status.success(),
            "lbproxy systemd install --user failed:\n{}",
            text(&install)
        );
        sandbox
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The D-Bus address of the sandbox's user bus (dbus-user-session's `dbus.socket` at
    /// `/run/user/0/bus` in its mount namespace) as this process reaches it: through the root
    /// directory of a process inside. The bus authenticates the caller by its uid, which is the
    /// same on both sides.
    pub fn user_bus_address(&self) -> String {
        format!("unix:path=/proc/{}/root/run/user/0/bus", self.pid)
    }

    /// `~/.config/systemd/user` of the sandbox.
    pub fn unit_dir(&self) -> PathBuf {
        self.home.join(".config/systemd/user")
    }

    /// `~/.config/lbproxy/lbproxy.toml`, the configuration the installed lbproxy.service runs.
    pub fn config_path(&self) -> PathBuf {
        self.home.join(".config/lbproxy/lbproxy.toml")
    }

    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config_path(), toml).unwrap();
    }

    /// Writes a drop-in for `unit` and reloads the manager.
    pub fn drop_in(&self, unit: &str, name: &str, text: &str) {
        let dir = self.unit_dir().join(format!("{unit}.d"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
        self.systemctl_ok(&["daemon-reload"]);
    }

    /// Runs `program args` inside the sandbox as the user manager's user would.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.pid))
            .args(["--mount", "--cgroup", "--net", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", "/run/user/0")
            .env("USER", "root")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null());
        output_within(command, COMMAND_TIMEOUT, &format!("{program} {args:?}"))
    }

    /// `systemctl --user ARGS`.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut all = vec!["--user", "--no-pager"];
        all.extend_from_slice(args);
        self.run("systemctl", &all)
    }

    /// `systemctl --user ARGS`, which must succeed; returns its stdout.
    pub fn systemctl_ok(&self, args: &[&str]) -> String {
        let out = self.systemctl(args);
        assert!(
            out.status.success(),
            "systemctl --user {} failed:\n{}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl --user show -p PROPERTY --value UNIT`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.systemctl_ok(&["show", "-p", property, "--value", unit])
            .trim()
            .to_owned()
    }

    /// Waits until `unit`'s `property` is `value`.
    pub fn wait_for(&self, unit: &str, property: &str, value: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let last = self.property(unit, property);
            if last == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{unit}: {property} is {last:?}, expected {value:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `journalctl ARGS` (no pager, whole lines), its stdout.
    pub fn journal(&self, args: &[&str]) -> String {
        let mut all = vec!["--no-pager", "--quiet"];
        all.extend_from_slice(args);
        let out = self.run("journalctl", &all);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Entries of `unit` (a user unit) matching `matches` (`FIELD=value`), as JSON objects.
    pub fn journal_entries(&self, unit: &str, matches: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["--user-unit", unit, "-o", "json"];
        args.extend_from_slice(matches);
        self.journal(&args)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the journal of `unit` has an entry matching `matches`, and returns the first.
    pub fn wait_for_entry(&self, unit: &str, matches: &[&str]) -> serde_json::Value {
        let mut found = Vec::new();
        wait_until(
            Duration::from_secs(20),
            &format!("a journal entry of {unit} with {matches:?}"),
            || {
                found = self.journal_entries(unit, matches);
                !found.is_empty()
            },
        );
        found.swap_remove(0)
    }

    /// Waits until the sandbox's journal has messages containing each of `needles`. The whole
    /// journal, not one unit's: journald attributes a line to its unit by the sender's cgroup,
    /// which it cannot read once a short-lived sender (an `ExecReload=` command) has exited.
    pub fn wait_for_messages(&self, needles: &[&str]) {
        let mut journal = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !needles.iter().all(|n| journal.contains(n)) {
            assert!(
                Instant::now() < deadline,
                "the journal lacks one of {needles:?}:\n{journal}"
            );
            std::thread::sleep(Duration::from_millis(50));
            journal = self.journal(&["-o", "cat", "_UID=0"]);
        }
    }

    /// Runs `f` on a thread inside the sandbox's network namespace (its loopback).
    pub fn in_net<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let enter = self.net_entry();
        std::thread::spawn(move || {
            enter();
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// A function that moves the calling thread into the sandbox's network namespace.
    pub fn net_entry(&self) -> impl Fn() + Send + Sync + Clone + 'static {
        let path = format!("/proc/{}/ns/net", self.pid);
        move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns(2) reads the descriptor only; it moves this thread alone (network
            // namespaces are per thread for this purpose) and touches no memory of ours.
            let entered =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(
                entered,
                0,
                "setns({path}): {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Starts `units`, which must all become active.
    pub fn start_units(&self, units: &[&str]) {
        let mut args = vec!["start"];
        args.extend_from_slice(units);
        self.systemctl_ok(&args);
        for unit in units {
            assert_eq!(self.property(unit, "ActiveState"), "active", "{unit}");
        }
    }

    fn diagnostics(&self) -> String {
        let units = self.systemctl(&["list-units", "--all", "--no-legend", "api@*", "lbproxy*"]);
        let status = self.systemctl(&["status", "--all", "--lines=0", "api@*", "lbproxy*"]);
        // _UID=0: everything but the kernel's messages.
        let journal = self.journal(&["-n", "300", "-o", "short-monotonic", "_UID=0"]);
        let log = std::fs::read_to_string(self.home.join("sandbox.log")).unwrap_or_default();
        format!(
            "--- units\n{}\n--- status\n{}\n--- journal (last 300)\n{journal}\n--- sandbox.log\n{log}",
            text(&units),
            text(&status)
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "=== systemd sandbox state at the failure ===\n{}",
                self.diagnostics()
            );
        }
        // Closing its stdin tells the script to kill everything and leave.
        drop(self.script.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.script.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// stdout and stderr of a command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command` to completion, killing it after `timeout`.
fn output_within(mut command: Command, timeout: Duration, what: &str) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let (out_reader, err_reader) = (read(Box::new(stdout)), read(Box::new(stderr)));
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) with plain integers.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not finish within {timeout:?}");
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// The sandbox's proxy address.
pub fn proxy_addr() -> SocketAddr {
    PROXY.parse().unwrap()
}
