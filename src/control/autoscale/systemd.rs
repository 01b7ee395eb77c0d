//! The autoscaler's [`InstanceActions`] for systemd units: a thread, `lbproxy-instances`, that
//! starts and stops units over D-Bus (StartUnit/StopUnit, waiting for each job), one at a time,
//! and logs each outcome.
//!
//! Flow: the control loop calls [`InstanceActions::start`]/[`InstanceActions::stop`], which only
//! queue the request (a request already queued or running for the same unit is not queued
//! twice: the controller asks again on every tick until the units it reads show the change) →
//! the thread takes the next one, finds the group's bus in the running configuration (its
//! `discover` table), connects to that bus on first use (and again after an error), runs the job
//! with a deadline ([`JOB_WITHIN`]) and logs the outcome under target `lbproxy::autoscale`
//! (`event` = `started`, `stopped`, `start-failed` or `stop-failed`; `upstream`; `instance`: the
//! unit). The outcome reaches the controller through discovery: the unit's state, read over the
//! watcher's own connection.
//!
//! The thread stops with the loop: requests still queued are dropped; a job in progress is left
//! to systemd (the thread ends once it returns) rather than holding up the proxy's exit.

use super::InstanceActions;
use crate::config::{Config, SystemdBus};
use crate::control::background::Background;
use crate::deploy::version::VersionChange;
use crate::systemd::bus::{BusError, Manager};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long systemd's job for one start or stop may take (a start waits for the unit's
/// `Type=notify` readiness, a stop for its drain).
pub const JOB_WITHIN: Duration = Duration::from_secs(90);
/// How often the idle thread looks at its stop flag.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Start or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// One queued action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    pub group: String,
    pub unit: String,
    /// Done to the unit's version file: before a start or restart, after a stop.
    pub version: VersionChange,
}

/// Carries out one request on the thread (D-Bus in production, a fake in tests).
type Actuate = Box<dyn FnMut(&Request) -> Result<(), String> + Send>;

/// The running thread.
#[derive(Debug)]
pub struct SystemdInstances {
    queue: Sender<Request>,
    /// Queued or running, by unit: a repeated request is dropped.
    pending: Arc<Mutex<BTreeSet<(Verb, String)>>>,
    /// A request is being carried out.
    busy: Arc<AtomicBool>,
    thread: Option<Background>,
}

impl SystemdInstances {
    /// Starts the thread; it reads each group's bus from the running configuration, which
    /// `config` returns (the loop's `Shared`: a getter, since `Shared` holds the autoscale board).
    pub fn spawn(
        config: impl Fn() -> Arc<Config> + Send + 'static,
    ) -> std::io::Result<SystemdInstances> {
        let mut managers = Managers::default();
        Self::spawn_with(Box::new(move |request| {
            managers.actuate(&config(), request)
        }))
    }

    /// Starts the thread with `actuate` in place of D-Bus.
    fn spawn_with(mut actuate: Actuate) -> std::io::Result<SystemdInstances> {
        let (queue, requests) = mpsc::channel::<Request>();
        let pending: Arc<Mutex<BTreeSet<(Verb, String)>>> = Arc::default();
        let busy = Arc::new(AtomicBool::new(false));
        let thread = Background::spawn("lbproxy-instances", {
            let (pending, busy) = (pending.clone(), busy.clone());
            move |stop| {
                while !stop.load(Ordering::Relaxed) {
                    let request = match requests.recv_timeout(LOOK_EVERY) {
                        Ok(request) => request,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    busy.store(true, Ordering::SeqCst);
                    let began = Instant::now();
                    let outcome = actuate(&request);
                    log_outcome(&request, &outcome, began.elapsed());
                    let key = (request.verb, request.unit);
                    pending
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&key);
                    busy.store(false, Ordering::SeqCst);
                }
            }
        })?;
        Ok(SystemdInstances {
            queue,
            pending,
            busy,
            thread: Some(thread),
        })
    }

    fn queue(&self, verb: Verb, group: &str, unit: &str, version: VersionChange) {
        let fresh = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((verb, unit.to_owned()));
        if !fresh {
            tracing::debug!(
                target: "lbproxy::autoscale",
                upstream = group,
                instance = unit,
                "{} {unit}: already queued",
                verb.as_str()
            );
            return;
        }
        let request = Request {
            verb,
            group: group.to_owned(),
            unit: unit.to_owned(),
            version,
        };
        if self.queue.send(request).is_err() {
            tracing::error!(
                target: "lbproxy::autoscale",
                upstream = group,
                instance = unit,
                "cannot {} {unit}: the instance-actions thread has stopped",
                verb.as_str()
            );
        }
    }

    /// Stops the thread (the drop does): waits for it when idle; a job in progress is left to
    /// finish on its own.
    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if self.busy.load(Ordering::SeqCst) {
            tracing::info!(
                target: "lbproxy::autoscale",
                "stopping with a start or stop in progress: systemd finishes that job on its own"
            );
            thread.detach();
        } else {
            thread.stop();
        }
    }
}

impl Drop for SystemdInstances {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl InstanceActions for SystemdInstances {
    fn start(&self, group: &str, unit: &str, version: VersionChange) {
        self.queue(Verb::Start, group, unit, version);
    }

    fn stop(&self, group: &str, unit: &str, version: VersionChange) {
        self.queue(Verb::Stop, group, unit, version);
    }

    fn restart(&self, group: &str, unit: &str, version: VersionChange) {
        self.queue(Verb::Restart, group, unit, version);
    }
}

/// One connection per bus, made on first use and dropped after an error.
#[derive(Default)]
struct Managers {
    connected: BTreeMap<SystemdBus, Manager>,
}

impl Managers {
    fn actuate(&mut self, config: &Config, request: &Request) -> Result<(), String> {
        let bus = bus_of(config, &request.group)?;
        let manager = match self.connected.get(&bus) {
            Some(manager) => manager,
            None => {
                let manager = Manager::connect(bus).map_err(|e| e.to_string())?;
                self.connected.entry(bus).or_insert(manager)
            }
        };
        if request.verb != Verb::Stop {
            request.version.apply()?;
        }
        let result = match request.verb {
            Verb::Start => manager.start(&request.unit, JOB_WITHIN),
            Verb::Stop => manager.stop(&request.unit, JOB_WITHIN),
            Verb::Restart => manager.restart(&request.unit, JOB_WITHIN),
        };
        if request.verb == Verb::Stop && result.is_ok() {
            request.version.apply()?;
        }
        if let Err(error) = &result {
            // The connection may be what failed: the next request connects again.
            if matches!(error, BusError::Call { .. } | BusError::Unavailable { .. }) {
                self.connected.remove(&bus);
            }
        }
        result.map_err(|e| e.to_string())
    }
}

/// The bus of `group`'s units: its `discover` table's.
fn bus_of(config: &Config, group: &str) -> Result<SystemdBus, String> {
    let discover = config
        .upstreams
        .iter()
        .find(|g| g.name == group)
        .ok_or_else(|| format!("upstream \"{group}\" is no longer configured"))?
        .discover
        .as_ref()
        .ok_or_else(|| format!("upstream \"{group}\" no longer discovers systemd units"))?;
    if discover.children {
        return Err(format!(
            "upstream \"{group}\"'s instances are lbproxy up's child processes, not units"
        ));
    }
    Ok(discover.bus)
}

fn log_outcome(request: &Request, outcome: &Result<(), String>, took: Duration) {
    let (group, unit) = (&request.group, &request.unit);
    match (request.verb, outcome) {
        (Verb::Start, Ok(())) => tracing::info!(
            target: "lbproxy::autoscale",
            event = "started",
            upstream = %group,
            instance = %unit,
            "started {unit} of upstream \"{group}\" (in {took:.1?})"
        ),
        (Verb::Stop, Ok(())) => tracing::info!(
            target: "lbproxy::autoscale",
            event = "stopped",
            upstream = %group,
            instance = %unit,
            "stopped {unit} of upstream \"{group}\" (in {took:.1?})"
        ),
        (Verb::Start, Err(error)) => tracing::error!(
            target: "lbproxy::autoscale",
            event = "start-failed",
            upstream = %group,
            instance = %unit,
            "cannot start {unit} of upstream \"{group}\": {error}"
        ),
        (Verb::Stop, Err(error)) => tracing::error!(
            target: "lbproxy::autoscale",
            event = "stop-failed",
            upstream = %group,
            instance = %unit,
            "cannot stop {unit} of upstream \"{group}\": {error}"
        ),
        (Verb::Restart, Ok(())) => tracing::info!(
            target: "lbproxy::autoscale",
            event = "restarted",
            upstream = %group,
            instance = %unit,
            "restarted {unit} of upstream \"{group}\" (in {took:.1?})"
        ),
        (Verb::Restart, Err(error)) => tracing::error!(
            target: "lbproxy::autoscale",
            event = "restart-failed",
            upstream = %group,
            instance = %unit,
            "cannot restart {unit} of upstream \"{group}\": {error}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    /// A thread whose actions are recorded; each waits for a go on `gate` (at most 3 s).
    fn gated() -> (
        SystemdInstances,
        Receiver<Request>,
        Sender<Result<(), String>>,
    ) {
        let (seen_tx, seen) = mpsc::channel();
        let (gate, gate_rx) = mpsc::channel::<Result<(), String>>();
        let gate_rx = Mutex::new(gate_rx);
        let instances = SystemdInstances::spawn_with(Box::new(move |request| {
            seen_tx.send(request.clone()).unwrap();
            gate_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(3))
                .unwrap_or(Err("no go".into()))
        }))
        .unwrap();
        (instances, seen, gate)
    }

    fn request(verb: Verb, unit: &str) -> Request {
        Request {
            verb,
            group: "api".into(),
            unit: unit.into(),
            version: VersionChange::Keep,
        }
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn requests_run_in_order_off_the_callers_thread_and_repeats_are_dropped() {
        let (instances, seen, gate) = gated();
        let began = Instant::now();
        instances.start("api", "api@2.service", VersionChange::Keep);
        instances.start("api", "api@2.service", VersionChange::Keep);
        instances.start("api", "api@3.service", VersionChange::Keep);
        instances.stop("api", "api@1.service", VersionChange::Keep);
        assert!(began.elapsed() < Duration::from_millis(100), "never blocks");
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap(),
            request(Verb::Start, "api@2.service")
        );
        // While api@2's start runs, asking again is dropped too.
        instances.start("api", "api@2.service", VersionChange::Keep);
        for _ in 0..3 {
            gate.send(Ok(())).unwrap();
        }
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap(),
            request(Verb::Start, "api@3.service")
        );
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap(),
            request(Verb::Stop, "api@1.service")
        );
        // Once done, the same unit may be asked for again (a failed start is retried).
        let deadline = Instant::now() + WAIT;
        while instances.busy.load(Ordering::SeqCst) || !instances.pending.lock().unwrap().is_empty()
        {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        instances.start("api", "api@2.service", VersionChange::Keep);
        gate.send(Err("refused".into())).unwrap();
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap(),
            request(Verb::Start, "api@2.service")
        );
        assert!(seen.recv_timeout(Duration::from_millis(300)).is_err());
        drop(instances);
    }

    #[test]
    fn stopping_drops_what_is_queued_and_does_not_wait_for_a_job_in_progress() {
        let (instances, seen, _gate) = gated();
        instances.start("api", "api@2.service", VersionChange::Keep);
        instances.start("api", "api@3.service", VersionChange::Keep);
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap(),
            request(Verb::Start, "api@2.service")
        );
        let began = Instant::now();
        drop(instances);
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "the job in progress (gated for 3 s) is not waited for"
        );
        // The gate's 3 s pass without a go: api@3 is never taken.
        assert!(seen.recv_timeout(Duration::from_secs(4)).is_err());
    }

    #[test]
    fn an_idle_thread_stops_at_once() {
        let (instances, _seen, _gate) = gated();
        let began = Instant::now();
        drop(instances);
        assert!(began.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_bus_is_the_groups_discover_tables() {
        let config = crate::config::testing::valid(
            "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api.discover]\nsystemd = \"api@*.service\"\nbus = \"system\"\n\
             address = \"127.0.0.1:{8000+N}\"\n\
             [upstream.web]\nbackends = [\"127.0.0.1:9000\"]\n",
        );
        assert_eq!(bus_of(&config, "api"), Ok(SystemdBus::System));
        assert!(bus_of(&config, "web")
            .unwrap_err()
            .contains("no longer discovers"));
        assert!(bus_of(&config, "gone")
            .unwrap_err()
            .contains("no longer configured"));
        let mut children = config.clone();
        children.upstreams[0].discover.as_mut().unwrap().children = true;
        assert!(bus_of(&children, "api").unwrap_err().contains("lbproxy up"));
    }
}
