//! Graceful shutdown on SIGTERM or SIGINT.
//!
//! Sequence (each step logged): readiness turns 503 `draining` and systemd hears `STOPPING=1` →
//! the listener stays open for `--shutdown-delay` so a load balancer's health checks notice →
//! [`drain_on_signal`] resolves, which makes axum stop accepting and wait for in-flight requests
//! → [`crate::server::run`] returns and the process exits 0. A second signal during all this
//! exits at once with status 1.
//!
//! Socket-activated ([`crate::activation`]), the same steps apply, and "closing the listener"
//! closes only this process's descriptor (a plain `close`, never `shutdown(2)`): systemd holds
//! its own copy, so the socket keeps listening and connections that arrive from then on wait in
//! its backlog for the next instance (`systemctl restart api@N` refuses none). The shutdown delay
//! still makes sense there: a proxy's health checks see `draining` before the process goes.
//!
//! The handlers are installed before the listener binds ([`ShutdownSignals::install`]), so a
//! signal that arrives right after the "listening on" line is never lost to the default action.

use std::io;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn, Instrument};

use crate::state::SharedState;
use crate::systemd;

/// Exit status when a second signal cuts the drain short.
const FORCED_EXIT_STATUS: i32 = 1;

pub struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    /// Replaces the default (kill the process) action for SIGTERM and SIGINT.
    pub fn install() -> io::Result<Self> {
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Resolves when the listener should close: after the first signal, the switch to `draining`
/// and the shutdown delay. Pass it to axum's `with_graceful_shutdown`. `socket_activated`: the
/// listener is systemd's socket (only the log line differs: it stays open in systemd).
pub async fn drain_on_signal(
    mut signals: ShutdownSignals,
    state: SharedState,
    shutdown_delay: Duration,
    socket_activated: bool,
) {
    let first = signals.next().await;
    info!("{first} received: draining, readiness now answers 503 draining");
    state.readiness.mark_draining();
    systemd::notify_stopping();

    let exit_on_second_signal = async move {
        let second = signals.next().await;
        warn!("{second} received during the drain: exiting without waiting for requests");
        std::process::exit(FORCED_EXIT_STATUS);
    };
    tokio::spawn(exit_on_second_signal.in_current_span());

    if !shutdown_delay.is_zero() {
        info!(
            ?shutdown_delay,
            "still accepting so health checks see draining"
        );
        tokio::time::sleep(shutdown_delay).await;
    }
    if socket_activated {
        info!(
            "closing our copy of systemd's socket (it keeps listening: new connections wait \
             for the next instance); waiting for in-flight requests to finish"
        );
    } else {
        info!("closing the listener; waiting for in-flight requests to finish");
    }
}
