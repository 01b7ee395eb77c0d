//! One API instance run by `lbproxy up`: spawned in its own process group, probed until ready,
//! restarted with exponential backoff when it dies, and stopped with SIGTERM (SIGKILL if it does
//! not exit in time).

use anyhow::Context;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PROBE_EVERY: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An instance that ran this long before dying starts over at the first backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// SIGTERM lets an instance drain in-flight requests; after this it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What to run for instance `number`, placeholders already filled in.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// 1-based.
    pub number: usize,
    pub address: SocketAddr,
    pub argv: Vec<String>,
}

impl InstanceSpec {
    /// Fills `{instance}`, `{port}` and `{address}` in every argument of `template`.
    pub fn new(number: usize, address: SocketAddr, template: &[String]) -> Self {
        let argv = template
            .iter()
            .map(|arg| {
                arg.replace("{instance}", &number.to_string())
                    .replace("{port}", &address.port().to_string())
                    .replace("{address}", &address.to_string())
            })
            .collect();
        Self {
            number,
            address,
            argv,
        }
    }
}

#[derive(Debug)]
pub struct Instance {
    pub spec: InstanceSpec,
    ready_path: String,
    child: Option<Child>,
    started_at: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
    /// When [`Instance::begin_stop`] sent SIGTERM.
    stopping_since: Option<Instant>,
}

impl Instance {
    pub fn start(spec: InstanceSpec, ready_path: &str) -> anyhow::Result<Instance> {
        let child = spawn(&spec)?;
        tracing::info!(instance = spec.number, pid = child.id(), address = %spec.address, "started API instance");
        Ok(Instance {
            spec,
            ready_path: ready_path.to_owned(),
            child: Some(child),
            started_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            restart_at: None,
            stopping_since: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Polls `GET ready_path` until it answers 2xx. Fails if the process exits first or the
    /// timeout passes; returns early (Ok) if `stop` is set.
    pub fn wait_ready(&mut self, timeout: Duration, stop: &AtomicBool) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                anyhow::bail!(
                    "API instance {} ({}) exited during startup ({status}); its own log above says why \
                     (a port already in use?)",
                    self.spec.number,
                    self.spec.argv.join(" ")
                );
            }
            if probe(self.spec.address, &self.ready_path) {
                tracing::info!(instance = self.spec.number, "API instance is ready");
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "API instance {} did not answer 2xx on http://{}{} within {timeout:?}",
                self.spec.number,
                self.spec.address,
                self.ready_path
            );
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// Restarts the instance (after its backoff) if it has exited.
    pub fn supervise(&mut self) {
        if let Some(at) = self.restart_at {
            if Instant::now() >= at {
                self.restart_at = None;
                match spawn(&self.spec) {
                    Ok(child) => {
                        tracing::info!(
                            instance = self.spec.number,
                            pid = child.id(),
                            "restarted API instance"
                        );
                        self.child = Some(child);
                        self.started_at = Instant::now();
                    }
                    Err(e) => {
                        tracing::error!(
                            instance = self.spec.number,
                            "could not restart API instance: {e:#}"
                        );
                        self.schedule_restart();
                    }
                }
            }
            return;
        }
        if let Some(status) = self.exit_status() {
            self.child = None;
            if self.started_at.elapsed() >= STABLE_AFTER {
                self.backoff = FIRST_BACKOFF;
            }
            tracing::warn!(
                instance = self.spec.number,
                "API instance exited ({status}); restarting in {:?}",
                self.backoff
            );
            self.schedule_restart();
        }
    }

    fn schedule_restart(&mut self) {
        self.restart_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// SIGTERM, wait for the instance to drain and exit, SIGKILL after [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.restart_at = None;
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped: it cannot have been
        // recycled for another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::info!(
                    instance = self.spec.number,
                    "API instance stopped ({status})"
                );
                return;
            }
            std::thread::sleep(PROBE_EVERY);
        }
        tracing::warn!(
            instance = self.spec.number,
            "API instance did not stop within {STOP_TIMEOUT:?}; killing it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// One readiness probe, without waiting: true once `ready_path` answers 2xx.
    pub fn probe_ready(&self) -> bool {
        self.child.is_some() && probe(self.spec.address, &self.ready_path)
    }

    /// SIGTERM without waiting (the autoscaler's scale-in): [`Instance::poll_stopped`] follows
    /// the exit, and kills it after [`STOP_TIMEOUT`]. No restart follows.
    pub fn begin_stop(&mut self) {
        self.restart_at = None;
        if let Some(child) = &self.child {
            if self.stopping_since.is_none() {
                // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            }
        }
        self.stopping_since.get_or_insert_with(Instant::now);
    }

    /// After [`Instance::begin_stop`]: true once the process has exited (and was reaped).
    pub fn poll_stopped(&mut self) -> bool {
        let Some(child) = &mut self.child else {
            return true;
        };
        if let Ok(Some(status)) = child.try_wait() {
            tracing::info!(
                instance = self.spec.number,
                "API instance stopped ({status})"
            );
            self.child = None;
            return true;
        }
        if self
            .stopping_since
            .is_some_and(|since| since.elapsed() >= STOP_TIMEOUT)
        {
            tracing::warn!(
                instance = self.spec.number,
                "API instance did not stop within {STOP_TIMEOUT:?}; killing it"
            );
            let _ = child.kill();
            let _ = child.wait();
            self.child = None;
            return true;
        }
        false
    }

    /// Whether a restart is waiting for its backoff (the process exited).
    pub fn restarting(&self) -> bool {
        self.restart_at.is_some() || self.child.is_none()
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(spec: &InstanceSpec) -> anyhow::Result<Child> {
    let (program, args) = spec.argv.split_first().context("`[up] command` is empty")?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        // Own process group: a terminal's Ctrl-C reaches `lbproxy up` only, which then stops the
        // instances in order.
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2), which is
    // async-signal-safe. PR_SET_PDEATHSIG makes the kernel send SIGTERM to the instance if
    // `lbproxy up` dies without stopping it (e.g. SIGKILL): nothing is left behind. The signal is
    // tied to the spawning thread, which is `up`'s main thread, alive until exit.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().with_context(|| {
        format!(
            "starting API instance {}: {}",
            spec.number,
            spec.argv.join(" ")
        )
    })
}

/// One `GET path` on a fresh connection; true on a 2xx status line.
fn probe(address: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, PROBE_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nUser-Agent: lbproxy-up\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = [0u8; 12];
    stream.read_exact(&mut status_line).is_ok()
        && status_line.starts_with(b"HTTP/1.")
        && status_line[9] == b'2'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_every_argument() {
        let template: Vec<String> = [
            "my-api",
            "--port={port}",
            "--bind",
            "{address}",
            "--id",
            "api-{instance}",
        ]
        .map(String::from)
        .to_vec();
        let spec = InstanceSpec::new(2, "127.0.0.1:8002".parse().unwrap(), &template);
        assert_eq!(
            spec.argv,
            [
                "my-api",
                "--port=8002",
                "--bind",
                "127.0.0.1:8002",
                "--id",
                "api-2"
            ]
        );
    }
}
