//! One backend's turn: check that another backend serves → drain → wait until nothing is in
//! flight → restart over D-Bus → wait until the proxy's probes pass again → enable → settle.
//! One line per stage with its duration.
//!
//! "Healthy again" means `rise` passing probes that all started after the restart returned, and
//! the workers' verdict up: the verdict alone may never have flipped when the instance restarted
//! faster than `fall` probes, so the probe counts ([`crate::health::ProbeLog`] through
//! `/api/backends`) tell a probe of the new instance from one of the old. A probe that was under
//! way when the restart returned may have started before it; it is not counted.

use super::group::{self, BackendStatus, GroupStatus};
use super::instances::{self, Instances};
use super::plan::Step;
use crate::admin::client::AdminClient;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the admin API is asked while waiting.
const POLL: Duration = Duration::from_millis(100);

/// The waits' bounds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// For the requests in flight to finish after the drain.
    pub drain_timeout: Duration,
    /// For the probes to pass after the restart (and for a slow start beyond its length).
    pub wait_ready: Duration,
    /// How long an enabled backend must stay up before the next one starts (without slow start).
    pub settle: Duration,
}

/// Why a step stopped the rollout.
#[derive(Debug)]
pub enum StepError {
    /// Refused before anything was changed: the backend serves as before.
    Refused(String),
    /// Failed after the drain: the backend stays drained.
    Failed {
        what: String,
        /// Where to look next.
        hint: Option<String>,
    },
}

impl StepError {
    fn failed(what: impl Into<String>) -> Self {
        StepError::Failed {
            what: what.into(),
            hint: None,
        }
    }
}

/// What every step shares.
#[derive(Debug)]
pub struct Runner<'a> {
    pub client: &'a AdminClient,
    pub instances: Instances,
    pub group: &'a str,
    pub timing: Timing,
    /// Set by SIGINT/SIGTERM: the waits stop at their next poll.
    pub interrupted: &'a AtomicBool,
}

impl Runner<'_> {
    /// Runs one backend's turn; `label` starts every line (`[2/3] api@2 127.0.0.1:8002`).
    pub fn run(&self, step: &Step, label: &str, pid_before: u32) -> Result<(), StepError> {
        let started = Instant::now();
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(StepError::Refused("interrupted".to_owned()));
        }
        let group = self.fetch().map_err(StepError::Refused)?;
        let health = group.health_check.clone().ok_or_else(|| {
            StepError::Refused(format!(
                "upstream \"{}\" no longer has health checks (was the proxy reloaded?)",
                self.group
            ))
        })?;
        let me = group
            .backend(step.address)
            .map_err(|e| StepError::Refused(e.to_string()))?;
        if !group
            .backends
            .iter()
            .any(|b| b.address != step.address && b.is_usable())
        {
            return Err(StepError::Refused(format!(
                "refusing to restart {} ({}): no other backend of upstream \"{}\" is up ({}), \
                 so it would leave nothing to serve. Bring another one back first, then run the \
                 rollout again",
                step.unit,
                step.address,
                self.group,
                group.others_described(step.address)
            )));
        }
        let was = me.state.clone();

        // Drain: no new requests; those in flight finish.
        let t = Instant::now();
        // A drain that failed may have reached some workers: report it as drained.
        let workers = group::change(self.client, self.group, step.address, "drain")
            .map_err(|e| StepError::failed(format!("{e:#}")))?;
        println!(
            "{label}: drained on {workers} workers, was {was} {}",
            took(t)
        );

        let t = Instant::now();
        let busy_at_drain = me.busy();
        self.wait(self.timing.drain_timeout, step, |b| Ok(b.busy() == 0))
            .map_err(|waited| match waited {
                Waited::Out(b) => StepError::Failed {
                    what: format!(
                        "{} still has {} after {:?} of draining",
                        step.address,
                        running(&b),
                        self.timing.drain_timeout
                    ),
                    hint: Some(format!(
                        "the proxy counts requests, it does not list them: each is logged when \
                         it ends (with [log] access = true: {}). Wait longer with \
                         --drain-timeout, or restart it anyway with `{} restart {}`",
                        journal_for_backend(&self.instances, step.address),
                        self.instances.command_name(),
                        step.unit
                    )),
                },
                Waited::Error(why) => StepError::failed(why),
            })?;
        println!("{label}: in flight: {busy_at_drain} → 0 {}", took(t));

        // Restart: systemd's job ends once the new instance is started (READY=1 for
        // Type=notify).
        let t = Instant::now();
        self.instances
            .restart(&step.unit)
            .map_err(|e| StepError::Failed {
                what: format!("{e:#}"),
                hint: Some(self.unit_hint(&step.unit)),
            })?;
        let restart_took = took(t);
        let after = self.instances.unit_info(&step.unit).unwrap_or_default();
        println!(
            "{label}: restarted, pid {pid_before} → {} ({}) {restart_took}",
            after.main_pid, after.active_state
        );

        // Ready: `rise` passing probes, all started after the restart returned. A group that
        // discovers its backends from systemd had the backend out while its unit restarted:
        // wait for it to be back first.
        let t = Instant::now();
        let probes_then = match self.wait(self.timing.wait_ready, step, |_| Ok(true)) {
            Ok(backend) => backend.probes.as_ref().map_or(0, |p| p.total),
            Err(Waited::Out(backend)) => backend.probes.as_ref().map_or(0, |p| p.total),
            Err(Waited::Error(why)) => return Err(StepError::failed(why)),
        };
        let rise = health.rise;
        let probed = self.wait(self.timing.wait_ready, step, |b| {
            let Some(p) = &b.probes else { return Ok(false) };
            Ok(b.health == "up"
                && p.total > probes_then + u64::from(rise)
                && p.passes_in_a_row >= rise)
        });
        match probed {
            Ok(_) => println!(
                "{label}: healthy: {rise} {} of {} passed since the restart {}",
                if rise == 1 { "probe" } else { "probes" },
                health.target(),
                took(t)
            ),
            Err(Waited::Out(b)) => {
                let now = self.instances.unit_info(&step.unit).unwrap_or_default();
                return Err(StepError::Failed {
                    what: format!(
                        "{} is not healthy {:?} after the restart: {} (health checks: {}); the \
                         unit is {}",
                        step.address,
                        self.timing.wait_ready,
                        b.probe_summary(),
                        health.describe(),
                        instances::describe(&now)
                    ),
                    hint: Some(self.unit_hint(&step.unit)),
                });
            }
            Err(Waited::Error(why)) => return Err(StepError::failed(why)),
        }

        // Enable, then watch it serve: until its slow start ends, or for --settle.
        let t = Instant::now();
        let workers = group::change(self.client, self.group, step.address, "enable")
            .map_err(|e| StepError::failed(format!("{e:#}")))?;
        println!("{label}: enabled on {workers} workers {}", took(t));
        self.settle(step, label, Duration::from_millis(group.slow_start_ms))?;
        println!("{label}: done {}", took(started));
        Ok(())
    }

    fn settle(&self, step: &Step, label: &str, slow_start: Duration) -> Result<(), StepError> {
        let t = Instant::now();
        let usable = |b: &BackendStatus| {
            if b.is_usable() {
                Ok(())
            } else {
                Err(format!(
                    "{} is {} (health {})",
                    step.address, b.state, b.health
                ))
            }
        };
        let trouble = if slow_start.is_zero() {
            // It must stay up (not down, not ejected) for the whole of --settle.
            match self.wait(self.timing.settle, step, |b| usable(b).map(|()| false)) {
                Ok(_) | Err(Waited::Out(_)) => {
                    println!(
                        "{label}: settled: up for {:?} {}",
                        self.timing.settle,
                        took(t)
                    );
                    return Ok(());
                }
                Err(Waited::Error(why)) => why,
            }
        } else {
            let within = slow_start + self.timing.wait_ready;
            match self.wait(within, step, |b| usable(b).map(|()| b.state == "up")) {
                Ok(_) => {
                    println!("{label}: slow start over: at full weight {}", took(t));
                    return Ok(());
                }
                Err(Waited::Out(b)) => format!(
                    "{} still ramps up ({:.0}%) {within:?} after it was enabled, with a slow \
                     start of {slow_start:?}",
                    step.address, b.ramp_percent
                ),
                Err(Waited::Error(why)) => why,
            }
        };
        // It went down or was ejected while taking requests: take it out again.
        let drained = group::change(self.client, self.group, step.address, "drain");
        Err(StepError::Failed {
            what: format!(
                "{trouble} {:.1}s after it was enabled; {}",
                t.elapsed().as_secs_f64(),
                match drained {
                    Ok(_) => "drained it again".to_owned(),
                    Err(e) => format!("draining it again failed too: {e:#}"),
                }
            ),
            hint: Some(self.unit_hint(&step.unit)),
        })
    }

    /// Polls the step's backend until `ready` says so (`Ok(true)`), `within` passes
    /// ([`Waited::Out`] with the last status), `ready` objects (`Err`), or the rollout is
    /// interrupted.
    fn wait(
        &self,
        within: Duration,
        step: &Step,
        mut ready: impl FnMut(&BackendStatus) -> Result<bool, String>,
    ) -> Result<BackendStatus, Waited> {
        let deadline = Instant::now() + within;
        loop {
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(Waited::Error("interrupted".to_owned()));
            }
            let group = self.fetch().map_err(Waited::Error)?;
            // Missing from the group: a discovered backend whose unit is restarting comes back
            // once the unit is active again; anything else is an error at the deadline.
            let backend = match group.backend(step.address) {
                Ok(backend) => backend,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(missing) => return Err(Waited::Error(missing.to_string())),
            };
            match ready(backend) {
                Ok(true) => return Ok(backend.clone()),
                Ok(false) if Instant::now() >= deadline => {
                    return Err(Waited::Out(Box::new(backend.clone())))
                }
                Ok(false) => std::thread::sleep(POLL),
                Err(why) => return Err(Waited::Error(why)),
            }
        }
    }

    fn fetch(&self) -> Result<GroupStatus, String> {
        group::fetch(self.client, self.group).map_err(|e| format!("{e:#}"))
    }

    fn unit_hint(&self, unit: &str) -> String {
        format!(
            "see `{} status {unit}` and `{}`",
            self.instances.command_name(),
            self.instances.journal_hint(unit)
        )
    }
}

/// How a wait ended other than ready.
#[derive(Debug)]
enum Waited {
    /// Time ran out; the backend as last seen.
    Out(Box<BackendStatus>),
    /// Interrupted, the admin API failed, or the check objected.
    Error(String),
}

/// `3 requests in flight and 1 open tcp connection`.
fn running(b: &BackendStatus) -> String {
    let mut parts = Vec::new();
    if b.in_flight > 0 {
        parts.push(format!("{} in flight", counted(b.in_flight, "request")));
    }
    if b.open_connections > 0 {
        parts.push(counted(b.open_connections, "open tcp connection"));
    }
    parts.join(" and ")
}

/// `1 request`, `2 requests`.
fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn journal_for_backend(instances: &Instances, address: std::net::SocketAddr) -> String {
    if instances.user() {
        format!("journalctl --user-unit lbproxy BACKEND={address} -f")
    } else {
        format!("journalctl -u lbproxy BACKEND={address} -f")
    }
}

/// `(0.42s)`.
fn took(since: Instant) -> String {
    format!("({:.2}s)", since.elapsed().as_secs_f64())
}
