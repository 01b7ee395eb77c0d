//! systemd notifications (`Type=notify` units): `READY=1` once listening and warmed up,
//! `STOPPING=1` when the drain starts. Without `NOTIFY_SOCKET` (not under systemd) these do
//! nothing; a failure to notify is logged, never fatal.

use std::net::SocketAddr;

use sd_notify::NotifyState;
use tracing::warn;

pub fn notify_ready(listen: SocketAddr) {
    let status = format!("ready, listening on {listen}");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

fn notify(states: &[NotifyState<'_>]) {
    // `false`: keep NOTIFY_SOCKET in the environment, STOPPING=1 comes later.
    if let Err(error) = sd_notify::notify(false, states) {
        warn!("cannot notify systemd: {error}");
    }
}
