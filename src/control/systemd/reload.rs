//! Reloading under systemd, so that `systemctl reload lbproxy` returns only once the proxy serves
//! the new configuration — and fails when it does not.
//!
//! systemd 252 (Debian 12) has no `Type=notify-reload`: with `Type=notify`, a reload job ends when
//! the unit's `ExecReload=` commands exit, whatever the main process says over `NOTIFY_SOCKET`.
//! So the unit runs two commands:
//!
//! 1. `lbproxy check -c FILE` — a file that does not validate fails the reload before the proxy
//!    hears of it (every error is printed to the journal);
//! 2. `lbproxy reload --pid $MAINPID` — [`ensure_proxy`] checks that the pid is an lbproxy proxy,
//!    then [`request`] reads the clock, sends SIGHUP, and waits until the proxy has recorded the
//!    outcome of a reload it *started after* that signal, then exits 0 (applied) or 1 (refused,
//!    with the reasons; the running configuration stays). Without `RUNTIME_DIRECTORY` there is
//!    nothing to wait on: it exits 2 (signal sent, outcome unknown), or 0 with `--no-wait`.
//!
//! The proxy side is [`Reloader::attempt`], which the control loop wraps around every reload from
//! the configuration's source (SIGHUP, `POST /api/reload`): `RELOADING=1` + `MONOTONIC_USEC=`,
//! the two-phase reload on every worker, the outcome written to [`StateFile`]
//! (`$RUNTIME_DIRECTORY/reload-state`, which both commands see), then `READY=1`.
//! Recording when each attempt *started* (on `CLOCK_MONOTONIC`, the clock systemd uses) makes the
//! wait exact even when signals coalesce: an attempt that began before the helper's signal may
//! have read the old file, so it does not count.

use crate::control::{ReloadError, ReloadReport};
use crate::systemd::Notifier;
use anyhow::Context;
use sd_notify::NotifyState;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file under `$RUNTIME_DIRECTORY` that holds the last reload's outcome.
pub const STATE_FILE_NAME: &str = "reload-state";

/// How often [`request`] looks at the state file.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What one reload attempt of one proxy process came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The proxy process.
    pub pid: u32,
    /// 1 for the first SIGHUP this process handled, then one more each time (failures count).
    pub attempt: u64,
    /// `CLOCK_MONOTONIC` in µs when the proxy began reading the configuration.
    pub started_us: u64,
    pub applied: bool,
    /// What happened, for people: the reload number and warnings, or every reason it failed.
    pub message: String,
}

impl ReloadOutcome {
    fn to_text(&self) -> String {
        format!(
            "pid={}\nattempt={}\nstarted_us={}\nresult={}\n\n{}\n",
            self.pid,
            self.attempt,
            self.started_us,
            if self.applied { "applied" } else { "refused" },
            self.message
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let (head, message) = text.split_once("\n\n")?;
        let mut fields = head.lines().map(|l| l.split_once('='));
        let mut next = |key: &str| match fields.next() {
            Some(Some((k, v))) if k == key => Some(v.to_owned()),
            _ => None,
        };
        Some(Self {
            pid: next("pid")?.parse().ok()?,
            attempt: next("attempt")?.parse().ok()?,
            started_us: next("started_us")?.parse().ok()?,
            applied: match next("result")?.as_str() {
                "applied" => true,
                "refused" => false,
                _ => return None,
            },
            message: message.trim_end().to_owned(),
        })
    }
}

/// Where the proxy records reload outcomes and the helper reads them.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// `$RUNTIME_DIRECTORY/reload-state` (the first directory when the unit names several), or
    /// `None` outside a unit with `RuntimeDirectory=`.
    pub fn from_env() -> Option<Self> {
        let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
        let first = dirs.to_str()?.split(':').next()?.to_owned();
        (!first.is_empty()).then(|| Self::in_dir(Path::new(&first)))
    }

    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(STATE_FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the recorded outcome atomically (write beside, then rename), so a reader never
    /// sees half a file.
    pub fn write(&self, outcome: &ReloadOutcome) -> std::io::Result<()> {
        let partial = self.path.with_extension("partial");
        std::fs::write(&partial, outcome.to_text())?;
        std::fs::rename(&partial, &self.path)
    }

    /// The recorded outcome; `None` when there is none yet (or it cannot be read).
    pub fn read(&self) -> Option<ReloadOutcome> {
        ReloadOutcome::parse(&std::fs::read_to_string(&self.path).ok()?)
    }
}

/// `CLOCK_MONOTONIC` now, in µs — the clock of `MONOTONIC_USEC=` and of systemd's timestamps.
pub fn monotonic_us() -> u64 {
    match NotifyState::monotonic_usec_now() {
        Ok(NotifyState::MonotonicUsec(us)) => u64::try_from(us).unwrap_or(0),
        _ => 0,
    }
}

/// The proxy's side of a reload asked for from outside: announce it, record it, and keep systemd
/// informed. Held by the control loop.
#[derive(Debug)]
pub struct Reloader {
    notifier: Notifier,
    state: Option<StateFile>,
    attempts: u64,
}

impl Reloader {
    pub fn new(notifier: Notifier, state: Option<StateFile>) -> Self {
        Self {
            notifier,
            state,
            attempts: 0,
        }
    }

    /// Makes one reload attempt with `reload` (which reads the configuration again and switches
    /// every worker to it, logging a failure with every reason), and records its outcome; systemd
    /// hears `RELOADING=1` before and `READY=1` after, unless the proxy is `shutting_down` (then
    /// systemd is stopping the unit and must not be confused). Returns the outcome as recorded
    /// and the reload's own result (the admin API answers with its number and warnings).
    pub fn attempt(
        &mut self,
        shutting_down: bool,
        reload: impl FnOnce() -> Result<ReloadReport, ReloadError>,
    ) -> (ReloadOutcome, Result<ReloadReport, ReloadError>) {
        self.attempts += 1;
        let started_us = monotonic_us();
        let notify = !shutting_down;
        if notify {
            self.notifier.reloading();
        }
        let result = reload();
        let outcome = match &result {
            Ok(report) => {
                let mut message = format!("reload {} applied", report.reload);
                for warning in &report.warnings {
                    message.push_str("\nwarning: ");
                    message.push_str(warning);
                }
                ReloadOutcome {
                    pid: std::process::id(),
                    attempt: self.attempts,
                    started_us,
                    applied: true,
                    message,
                }
            }
            // Logged by the reload itself, as every failed reload is.
            Err(e) => ReloadOutcome {
                pid: std::process::id(),
                attempt: self.attempts,
                started_us,
                applied: false,
                message: e.to_string(),
            },
        };
        if let Some(state) = &self.state {
            if let Err(e) = state.write(&outcome) {
                tracing::warn!(
                    path = %state.path().display(),
                    "cannot record the reload outcome ({e}); `lbproxy reload` will time out"
                );
            }
        }
        if notify {
            self.notifier.ready(&if outcome.applied {
                format!("serving; {}", outcome.message.lines().next().unwrap_or(""))
            } else {
                format!(
                    "serving the previous configuration; reload attempt {} refused (see the log)",
                    outcome.attempt
                )
            });
        }
        (outcome, result)
    }
}

/// What [`request`] learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// The proxy serves the new configuration (the message says which reload, and warnings).
    Applied(String),
    /// The signal went out, and nothing says how the reload went (no state file to wait on).
    Sent(String),
}

/// The `ExecReload=` helper: asks process `pid` to reload and waits for the outcome recorded in
/// `state`. `Applied` when the new configuration serves, `Err` with the proxy's reasons
/// otherwise. Without a state file it can only send the signal: `Sent`, saying why it cannot
/// wait. Check first that `pid` is a proxy ([`ensure_proxy`]).
pub fn request(
    pid: u32,
    state: Option<&StateFile>,
    timeout: Duration,
) -> anyhow::Result<Requested> {
    let sent_at = monotonic_us();
    send_sighup(pid)?;
    let Some(state) = state else {
        return Ok(Requested::Sent(format!(
            "sent SIGHUP to pid {pid}, but cannot tell whether it serves the new configuration: \
             RUNTIME_DIRECTORY is not set, so there is no reload-state file to wait on (a unit \
             with RuntimeDirectory= sets it for both the proxy and ExecReload=). The proxy's log \
             says how the reload went; `lbproxy ctl reload` reloads through the admin API and \
             waits for the outcome"
        )));
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(outcome) = state.read() {
            if outcome.pid == pid && outcome.started_us >= sent_at {
                return if outcome.applied {
                    Ok(Requested::Applied(format!(
                        "pid {pid} serves the new configuration ({})",
                        outcome.message
                    )))
                } else {
                    Err(anyhow::anyhow!(
                        "pid {pid} refused the new configuration and keeps serving the running \
                         one:\n{}",
                        outcome.message
                    ))
                };
            }
        }
        anyhow::ensure!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} exited before it finished reloading"
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "pid {pid} did not record a reload outcome in {} within {timeout:?}; is it lbproxy \
             serve, started with the same RUNTIME_DIRECTORY?",
            state.path().display()
        );
        std::thread::sleep(POLL_EVERY);
    }
}

/// Checks that `pid` is an lbproxy that reloads on SIGHUP (`lbproxy serve` or `lbproxy up`)
/// before [`request`] signals it: SIGHUP stops most other programs (its default action), so a
/// mistyped pid must not reach one. Reads `/proc/PID/exe` (the program's file, even after it was
/// replaced on disk by an upgrade), else, for another user's process, `/proc/PID/cmdline`.
pub fn ensure_proxy(pid: u32) -> anyhow::Result<()> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = match std::fs::read(dir.join("cmdline")) {
        Ok(cmdline) => cmdline,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("no process has pid {pid}")
        }
        Err(e) => return Err(e).with_context(|| format!("reading /proc/{pid}/cmdline")),
    };
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let exe = std::fs::read_link(dir.join("exe")).ok();
    check_proxy(pid, exe.as_deref(), &args)
}

/// [`ensure_proxy`]'s decision, on what `/proc` said: the executable's path (when readable) and
/// the arguments.
fn check_proxy(pid: u32, exe: Option<&Path>, args: &[String]) -> anyhow::Result<()> {
    let file_name = |path: &Path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // What the kernel shows for a binary replaced since the process started.
        name.trim_end_matches(" (deleted)").to_owned()
    };
    let program = exe
        .map(file_name)
        .or_else(|| args.first().map(|arg0| file_name(Path::new(arg0))));
    let shown = if args.is_empty() {
        "no command line (a kernel thread, or a process that is exiting)".to_owned()
    } else {
        format!("`{}`", args.join(" "))
    };
    anyhow::ensure!(
        program.as_deref() == Some("lbproxy"),
        "pid {pid} is not lbproxy: it runs {shown}; not sending it SIGHUP (which stops most \
         programs). Pass the pid of `lbproxy serve` ($MAINPID in a unit, or `pidof lbproxy`)"
    );
    let subcommand = args.iter().skip(1).find(|arg| !arg.starts_with('-'));
    anyhow::ensure!(
        matches!(subcommand.map(String::as_str), Some("serve" | "up")),
        "pid {pid} is lbproxy but not a proxy: it runs {shown}; only `lbproxy serve` and \
         `lbproxy up` reload on SIGHUP"
    );
    Ok(())
}

fn send_sighup(pid: u32) -> anyhow::Result<()> {
    let target = libc::pid_t::try_from(pid).context("pid out of range")?;
    anyhow::ensure!(target > 0, "pid must be positive, got {pid}");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(target, libc::SIGHUP) };
    if sent != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending SIGHUP to pid {pid}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(applied: bool, message: &str) -> ReloadOutcome {
        ReloadOutcome {
            pid: 42,
            attempt: 3,
            started_us: 123_456,
            applied,
            message: message.to_owned(),
        }
    }

    #[test]
    fn the_state_file_round_trips_multi_line_messages() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::in_dir(dir.path());
        assert_eq!(state.read(), None);
        let refused = outcome(
            false,
            "invalid\n\nerror: x.toml: runtime.wokers = 4: unknown key",
        );
        state.write(&refused).unwrap();
        assert_eq!(state.read(), Some(refused));
        let applied = outcome(true, "reload 2 applied");
        state.write(&applied).unwrap();
        assert_eq!(state.read(), Some(applied));
    }

    #[test]
    fn every_attempt_is_numbered_and_recorded_whether_it_applied_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::in_dir(dir.path());
        let mut reloader = Reloader::new(Notifier::disabled(), Some(state.clone()));
        let (applied, result) = reloader.attempt(false, || {
            Ok(ReloadReport {
                reload: 4,
                warnings: vec!["runtime.workers changed".into()],
            })
        });
        assert_eq!(result.unwrap().reload, 4);
        assert_eq!((applied.attempt, applied.applied), (1, true));
        assert_eq!(
            applied.message,
            "reload 4 applied\nwarning: runtime.workers changed"
        );
        assert_eq!(state.read(), Some(applied));

        let (refused, result) = reloader.attempt(true, || Err(ReloadError::ShuttingDown));
        assert!(matches!(result, Err(ReloadError::ShuttingDown)));
        assert_eq!((refused.attempt, refused.applied), (2, false));
        assert_eq!(refused.message, "the proxy is shutting down");
        assert_eq!(state.read(), Some(refused));
    }

    #[test]
    fn a_garbled_file_reads_as_no_outcome() {
        assert_eq!(ReloadOutcome::parse("pid=1\nattempt=x\n\nmsg"), None);
        assert_eq!(ReloadOutcome::parse("nothing"), None);
    }

    #[test]
    fn the_helper_waits_for_an_attempt_started_after_its_signal() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::in_dir(dir.path());
        // An outcome recorded before the signal (here: by "us", with an old start) must not
        // satisfy the helper: it times out instead. SIGHUP to ourselves is harmless only with a
        // handler, so install a counting one.
        let signals = signal_hook::iterator::Signals::new([libc::SIGHUP]).unwrap();
        let stale = ReloadOutcome {
            pid: std::process::id(),
            started_us: monotonic_us() - 1,
            ..outcome(true, "reload 1 applied")
        };
        state.write(&stale).unwrap();
        let err =
            request(std::process::id(), Some(&state), Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not record"), "{err}");
        drop(signals);
    }

    #[test]
    fn only_a_proxy_is_sent_sighup() {
        let args = |line: &str| -> Vec<String> { line.split(' ').map(str::to_owned).collect() };
        let serve = args("/usr/bin/lbproxy serve -c /etc/lbproxy/lbproxy.toml");
        assert!(check_proxy(7, Some(Path::new("/usr/bin/lbproxy")), &serve).is_ok());
        // Upgraded on disk since it started; or another user's process (no exe link).
        let upgraded = Path::new("/usr/bin/lbproxy (deleted)");
        assert!(check_proxy(7, Some(upgraded), &serve).is_ok());
        assert!(check_proxy(7, None, &serve).is_ok());
        assert!(check_proxy(7, None, &args("lbproxy up -n 5")).is_ok());

        let sleep = check_proxy(9, Some(Path::new("/usr/bin/sleep")), &args("sleep 60"));
        let message = sleep.unwrap_err().to_string();
        assert!(
            message.starts_with("pid 9 is not lbproxy: it runs `sleep 60`"),
            "{message}"
        );
        // Named lbproxy on the command line only: the executable decides.
        let renamed = check_proxy(9, Some(Path::new("/usr/bin/sleep")), &serve);
        assert!(renamed.is_err());
        let ctl = check_proxy(9, None, &args("lbproxy ctl status")).unwrap_err();
        assert!(
            ctl.to_string().contains("is lbproxy but not a proxy"),
            "{ctl}"
        );
        let kernel = check_proxy(2, None, &[]).unwrap_err();
        assert!(kernel.to_string().contains("kernel thread"), "{kernel}");
    }

    #[test]
    fn the_first_runtime_directory_is_used() {
        std::env::set_var("RUNTIME_DIRECTORY", "/run/lbproxy:/run/other");
        let state = StateFile::from_env().unwrap();
        std::env::remove_var("RUNTIME_DIRECTORY");
        assert_eq!(state.path(), Path::new("/run/lbproxy/reload-state"));
    }
}
