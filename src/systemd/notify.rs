//! Talking to the service manager over `$NOTIFY_SOCKET` (`Type=notify` units): `READY=1`,
//! `RELOADING=1`, `STOPPING=1`, `STATUS=`, `WATCHDOG=1`, `EXTEND_TIMEOUT_USEC=`.
//!
//! [`Notifier`] is cheap to clone and `Send`; every thread that has something to say holds one.
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing. A message that cannot be sent is
//! logged once per kind and never fatal: the proxy keeps serving whether or not systemd hears.

use sd_notify::NotifyState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sends state changes to systemd when the process runs under it.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    /// Set after the first failed send, so a missing socket is reported once, not every tick.
    failed_once: AtomicBool,
}

impl Notifier {
    /// A notifier for this process: enabled when `NOTIFY_SOCKET` is set. The variable stays in
    /// the environment (the notifier reads it on every send; children of the proxy do not exist).
    pub fn from_env() -> Self {
        Self::with_enabled(std::env::var_os("NOTIFY_SOCKET").is_some())
    }

    /// A notifier that never sends (the control loop's default: tests, `lbproxy up`).
    pub fn disabled() -> Self {
        Self::with_enabled(false)
    }

    fn with_enabled(enabled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                enabled,
                failed_once: AtomicBool::new(false),
            }),
        }
    }

    /// Whether messages go anywhere (the process runs under systemd with `Type=notify`).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// `READY=1` with a status line: startup finished (every worker listens), or a reload ended.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` and `MONOTONIC_USEC=` (the clock reading systemd ≥ 253 matches against).
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    /// `STOPPING=1`: the drain began.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// `STATUS=`: one line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: every worker is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `EXTEND_TIMEOUT_USEC=`: the current phase (here: the drain) needs up to `by` more; the
    /// manager only uses it past the unit's own `TimeoutStopSec=`.
    pub fn extend_timeout(&self, by: Duration, status: &str) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[
            NotifyState::ExtendTimeoutUsec(usec),
            NotifyState::Status(status),
        ]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.inner.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            if !self.inner.failed_once.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cannot notify systemd through NOTIFY_SOCKET ({e}); the unit may time out \
                     or be killed by its watchdog"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_disabled_notifier_sends_nothing_and_does_not_fail() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready("ready");
        notifier.watchdog();
    }

    /// The datagrams systemd would read, in the protocol's `KEY=value` lines.
    #[test]
    fn messages_are_the_documented_key_value_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // Process-wide environment: only this test in this crate sets NOTIFY_SOCKET (and sd-notify
        // reads it on every send).
        std::env::set_var("NOTIFY_SOCKET", &path);
        let notifier = Notifier::from_env();

        let mut buf = [0u8; 512];
        let mut next = || {
            let n = socket.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        notifier.ready("serving");
        assert_eq!(next(), "READY=1\nSTATUS=serving\n");
        notifier.reloading();
        let reloading = next();
        assert!(
            reloading.starts_with("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC="),
            "{reloading}"
        );
        notifier.extend_timeout(Duration::from_secs(3), "draining");
        assert_eq!(next(), "EXTEND_TIMEOUT_USEC=3000000\nSTATUS=draining\n");
        notifier.watchdog();
        assert_eq!(next(), "WATCHDOG=1\n");
        std::env::remove_var("NOTIFY_SOCKET");
    }
}
