//! The one signal thread, `lbproxy-signals`: it receives SIGTERM, SIGINT and SIGHUP (and SIGUSR2
//! where fault injection is allowed) and turns each into a [`Signal`] for its owner, which makes
//! it a command to the control loop ([`to_control`] for `lbproxy serve`; `lbproxy up` stops its
//! instances too). It only forwards: the reload, the drain and the fault are the loop's.

use super::command::{Command, ReloadFrom, Via};
use super::ControlHandle;
use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};

/// A signal the process acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT (named): drain and stop.
    Stop(&'static str),
    /// SIGHUP: reload the configuration from its source.
    Reload,
    /// SIGUSR2 with `LBPROXY_ALLOW_FAULTS=1`: stall worker 0.
    Fault,
}

/// The handlers, installed; a signal that arrives before [`Installed::spawn`] waits for it
/// (one of each kind), so none is lost to its default action (SIGHUP and SIGTERM end a process
/// that does not handle them) while the proxy starts.
#[derive(Debug)]
pub struct Installed {
    signals: signal_hook::iterator::Signals,
}

/// Installs the handlers: SIGTERM, SIGINT, SIGHUP, and SIGUSR2 only with `faults` (otherwise it
/// keeps its default action). Call it before anything that takes time at start.
pub fn install(faults: bool) -> anyhow::Result<Installed> {
    let mut wanted = vec![SIGTERM, SIGINT, SIGHUP];
    if faults {
        wanted.push(SIGUSR2);
    }
    let signals =
        signal_hook::iterator::Signals::new(&wanted).context("installing signal handlers")?;
    tracing::debug!("signal handlers installed: a signal from now on waits for the control loop");
    Ok(Installed { signals })
}

impl Installed {
    /// Starts the thread that calls `on_signal` for each signal received, in order, those that
    /// arrived since [`install`] first.
    pub fn spawn(self, mut on_signal: impl FnMut(Signal) + Send + 'static) -> anyhow::Result<()> {
        let mut signals = self.signals;
        std::thread::Builder::new()
            .name("lbproxy-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    on_signal(match signal {
                        SIGTERM => Signal::Stop("SIGTERM"),
                        SIGINT => Signal::Stop("SIGINT"),
                        SIGHUP => Signal::Reload,
                        _ => Signal::Fault,
                    });
                }
            })?;
        Ok(())
    }
}

/// What `lbproxy serve` does with each signal: the first SIGTERM or SIGINT starts the drain
/// (later ones change nothing), SIGHUP reloads (the loop logs the outcome), SIGUSR2 stalls
/// worker 0.
pub fn to_control(control: ControlHandle) -> impl FnMut(Signal) + Send + 'static {
    move |signal| match signal {
        Signal::Stop(name) => {
            if !control.is_shutting_down() {
                tracing::info!("received {name}; draining in-flight requests, then exiting");
                control.shutdown();
            }
        }
        Signal::Reload => {
            tracing::info!("received SIGHUP; reloading the configuration");
            control.commands().send(Command::Reload {
                from: ReloadFrom::Source(Via::Signal),
                reply: None,
            });
        }
        Signal::Fault => {
            tracing::warn!("SIGUSR2: stalling worker 0 (fault injection)");
            control.commands().send(Command::FaultStall);
        }
    }
}
