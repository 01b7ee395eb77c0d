//! The signal threads of the control side: the first SIGTERM or SIGINT starts a stop, and every
//! SIGHUP reloads the configuration from its source.

use super::systemd::reload::Reloader;
use anyhow::Context;
use std::sync::{Arc, Mutex};

/// Calls `on_stop` from a dedicated thread on the first SIGTERM or SIGINT.
pub fn spawn_stop_thread(
    on_stop: impl FnOnce(&'static str) + Send + 'static,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("lbproxy-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                on_stop(if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                });
            }
        })?;
    Ok(())
}

/// The reloader, also when a thread panicked while holding it (its state stays consistent: each
/// reload is recorded whole or not at all).
pub fn lock(reloader: &Mutex<Reloader>) -> std::sync::MutexGuard<'_, Reloader> {
    reloader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reloads the configuration from its source on every SIGHUP ([`Reloader::on_sighup`]). A failed
/// reload is logged with every reason and the running configuration keeps serving.
pub fn spawn_reload_thread(reloader: Arc<Mutex<Reloader>>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("installing the SIGHUP handler")?;
    std::thread::Builder::new()
        .name("lbproxy-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("received SIGHUP; reloading the configuration");
                lock(&reloader).on_sighup();
            }
        })?;
    Ok(())
}
