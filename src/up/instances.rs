//! `lbproxy up --autoscale`: `up` acts as the service manager of its child instances, so the
//! autoscaler drives them exactly as it drives systemd units.
//!
//! Flow: the group gets a `discover` table with `children = true` (units `GROUP@*.service`,
//! instance N on the Nth consecutive port: the address template) and an `autoscale` table
//! ([`scaled`]). The control loop's autoscale controller asks [`ChildActions`] to start or stop
//! `GROUP@N.service`; the request only crosses a channel to `up`'s main thread, which owns every
//! child (their `PR_SET_PDEATHSIG` is tied to the thread that spawned them, so no other thread
//! may). There [`Children::step`], every supervision round: takes the requests (start: spawn
//! instance N; stop: SIGTERM, then reap or kill after the stop timeout, without waiting), probes
//! the starting ones' `ready_path`, restarts one that died, and reports every child as a
//! synthetic systemd unit ([`crate::control::Command::Discovered`], the same command the D-Bus watcher sends):
//! `activating` until ready, `active`, `deactivating` while stopping, gone once exited; a fresh
//! `InvocationID` per process. The discovery controller routes them as it routes units.

use super::instance::{Instance, InstanceSpec};
use crate::config::{
    AddressSource, AddressTemplate, AutoscaleConfig, DiscoverConfig, SystemdBus, UnitResources,
};
use crate::control::autoscale::InstanceActions;
use crate::control::discovery::{Discovered, DiscoveredUnit};
use crate::deploy::version::VersionChange;
use crate::systemd::bus::{instance_of, UnitState};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Every child's state goes to the control loop at least this often (and at once on a change).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The `discover` and `autoscale` tables `--autoscale` gives `up`'s group: instance N of
/// `group` is `GROUP@N.service` on `first`'s port + N − 1.
pub fn scaled(
    group: &str,
    first: SocketAddr,
    min: u32,
    max: u32,
) -> (DiscoverConfig, AutoscaleConfig) {
    let port_offset = first.port() - 1;
    let host = match first {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let discover = DiscoverConfig {
        systemd: format!("{group}@*.service"),
        bus: SystemdBus::User,
        address: AddressSource::Template(AddressTemplate {
            text: format!("{host}:{{{port_offset}+N}}"),
            ip: first.ip(),
            port_offset,
        }),
        resync: Duration::from_secs(30),
        resources: UnitResources::default(),
        children: true,
    };
    let autoscale = AutoscaleConfig::defaults(min, max);
    (discover, autoscale)
}

/// A start or stop the autoscaler asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Start(String),
    Stop(String),
}

/// The autoscaler's [`InstanceActions`] for `up`: each call only queues the request for `up`'s
/// main thread.
#[derive(Debug)]
pub struct ChildActions {
    requests: Mutex<Sender<Request>>,
}

impl InstanceActions for ChildActions {
    fn start(&self, _group: &str, unit: &str, _version: VersionChange) {
        let _ = self.lock().send(Request::Start(unit.to_owned()));
    }

    fn stop(&self, _group: &str, unit: &str, _version: VersionChange) {
        let _ = self.lock().send(Request::Stop(unit.to_owned()));
    }

    /// Deployments run on systemd units only (`lbproxy deploy` refuses `up`'s group), so no
    /// restart is ever asked of a child.
    fn restart(&self, group: &str, unit: &str, _version: VersionChange) {
        tracing::error!(
            "cannot restart {unit} of upstream \"{group}\": lbproxy up's instances are child \
             processes, not units; deployments need systemd"
        );
    }
}

impl ChildActions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sender<Request>> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One child and what it reports.
#[derive(Debug)]
struct Child {
    instance: Instance,
    /// Its `InvocationID`: new for each process.
    invocation: String,
    /// The pid the invocation belongs to (a restart changes it).
    pid: u32,
    /// When it became ready (realtime µs); `None` while starting.
    active_since_us: Option<u64>,
    started_at: Instant,
    /// Restarts after a crash.
    restarts: u32,
    stopping: bool,
    /// A start that timed out was logged.
    late_logged: bool,
}

impl Child {
    fn new(instance: Instance, ready: bool) -> Child {
        let pid = instance.pid();
        Child {
            invocation: invocation_id(pid),
            pid,
            active_since_us: ready.then(now_us),
            instance,
            started_at: Instant::now(),
            restarts: 0,
            stopping: false,
            late_logged: false,
        }
    }

    fn unit(&self, name: String) -> UnitState {
        let restarting = self.instance.restarting();
        let (active, sub) = match (self.stopping, restarting, self.active_since_us) {
            (true, _, _) => ("deactivating", "stop-sigterm"),
            (false, true, _) => ("activating", "auto-restart"),
            (false, false, None) => ("activating", "start"),
            (false, false, Some(_)) => ("active", "running"),
        };
        UnitState {
            name,
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            invocation_id: self.invocation.clone(),
            n_restarts: self.restarts,
            main_pid: self.instance.pid(),
            active_since_us: self.active_since_us.unwrap_or(0),
            ..UnitState::default()
        }
    }
}

/// `up`'s children under the autoscaler, owned by `up`'s main thread.
pub struct Children {
    group: String,
    first: SocketAddr,
    template: Vec<String>,
    ready_path: String,
    ready_timeout: Duration,
    /// By instance number.
    running: BTreeMap<usize, Child>,
    requests: Receiver<Request>,
    /// Where the units go: the control loop's channel, as [`crate::control::Command::Discovered`].
    report: Box<dyn FnMut(Discovered) + Send>,
    sent: Option<Vec<DiscoveredUnit>>,
    sent_at: Option<Instant>,
}

impl Children {
    /// Takes over `instances` (started and ready, numbered from 1 on `first`'s port + N − 1)
    /// and hands each read to `report` (the control loop's channel, as
    /// `Command::Discovered`); the [`ChildActions`] go to the loop's options.
    pub fn new(
        group: &str,
        first: SocketAddr,
        template: Vec<String>,
        (ready_path, ready_timeout): (&str, Duration),
        instances: Vec<Instance>,
        report: Box<dyn FnMut(Discovered) + Send>,
    ) -> (Children, ChildActions) {
        let (sender, requests) = mpsc::channel();
        let running = instances
            .into_iter()
            .map(|i| (i.spec.number, Child::new(i, true)))
            .collect();
        let children = Children {
            group: group.to_owned(),
            first,
            template,
            ready_path: ready_path.to_owned(),
            ready_timeout,
            running,
            requests,
            report,
            sent: None,
            sent_at: None,
        };
        let actions = ChildActions {
            requests: Mutex::new(sender),
        };
        (children, actions)
    }

    /// The unit name of instance `number`.
    fn unit_name(&self, number: usize) -> String {
        format!("{}@{number}.service", self.group)
    }

    fn address(&self, number: usize) -> Option<SocketAddr> {
        let port = usize::from(self.first.port()) + number - 1;
        Some(SocketAddr::new(self.first.ip(), u16::try_from(port).ok()?))
    }

    /// One supervision round (see the module doc).
    pub fn step(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.take(request);
        }
        let ready_timeout = self.ready_timeout;
        let mut gone = Vec::new();
        for (number, child) in &mut self.running {
            if child.stopping {
                if child.instance.poll_stopped() {
                    gone.push(*number);
                }
                continue;
            }
            child.instance.supervise();
            let pid = child.instance.pid();
            if pid != child.pid && pid != 0 {
                // Restarted after a crash: a new invocation, not ready yet.
                child.pid = pid;
                child.invocation = invocation_id(pid);
                child.active_since_us = None;
                child.started_at = Instant::now();
                child.restarts += 1;
            }
            if child.active_since_us.is_none() && !child.instance.restarting() {
                if child.instance.probe_ready() {
                    tracing::info!(
                        target: "lbproxy::autoscale",
                        instance = *number,
                        "API instance {number} is ready"
                    );
                    child.active_since_us = Some(now_us());
                } else if child.started_at.elapsed() > ready_timeout && !child.late_logged {
                    child.late_logged = true;
                    tracing::warn!(
                        target: "lbproxy::autoscale",
                        instance = *number,
                        "API instance {number} did not answer 2xx on its ready path within \
                         {ready_timeout:?}; not routed until it does"
                    );
                }
            }
        }
        for number in gone {
            self.running.remove(&number);
            let unit = self.unit_name(number);
            tracing::info!(
                target: "lbproxy::autoscale",
                event = "stopped",
                upstream = %self.group,
                instance = %unit,
                "stopped {unit}"
            );
        }
        self.report();
    }

    fn take(&mut self, request: Request) {
        let (Request::Start(unit) | Request::Stop(unit)) = &request;
        let number = instance_of(unit)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1 && unit == &self.unit_name(*n));
        let Some(number) = number else {
            tracing::error!(
                target: "lbproxy::autoscale",
                upstream = %self.group,
                instance = %unit,
                "lbproxy up runs {}@N.service (N from 1) only: {unit} ignored",
                self.group
            );
            return;
        };
        match request {
            Request::Start(_) => self.start(number, unit),
            Request::Stop(_) => match self.running.get_mut(&number) {
                Some(child) if !child.stopping => {
                    child.stopping = true;
                    child.instance.begin_stop();
                    tracing::info!(
                        target: "lbproxy::autoscale",
                        upstream = %self.group,
                        instance = %unit,
                        "stopping {unit} (SIGTERM to pid {})",
                        child.pid
                    );
                }
                _ => {}
            },
        }
    }

    fn start(&mut self, number: usize, unit: &str) {
        if self.running.contains_key(&number) {
            return;
        }
        let Some(address) = self.address(number) else {
            tracing::error!(
                target: "lbproxy::autoscale",
                event = "start-failed",
                upstream = %self.group,
                instance = %unit,
                "cannot start {unit}: its port would pass 65535"
            );
            return;
        };
        let spec = InstanceSpec::new(number, address, &self.template);
        match Instance::start(spec, &self.ready_path) {
            Ok(instance) => {
                tracing::info!(
                    target: "lbproxy::autoscale",
                    event = "started",
                    upstream = %self.group,
                    instance = %unit,
                    "started {unit} on {address} (pid {})",
                    instance.pid()
                );
                self.running.insert(number, Child::new(instance, false));
            }
            Err(error) => tracing::error!(
                target: "lbproxy::autoscale",
                event = "start-failed",
                upstream = %self.group,
                instance = %unit,
                "cannot start {unit}: {error:#}"
            ),
        }
    }

    /// Every child as a unit, sorted by name as systemd lists them.
    fn units(&self) -> Vec<DiscoveredUnit> {
        let mut units: Vec<DiscoveredUnit> = self
            .running
            .iter()
            .map(|(number, child)| DiscoveredUnit {
                unit: child.unit(self.unit_name(*number)),
                address: self.address(*number),
                // No cgroup of their own to read: the `cpu` metric has no figure for children.
                cpu_percent: None,
            })
            .collect();
        units.sort_by(|a, b| a.unit.name.cmp(&b.unit.name));
        units
    }

    /// Sends the units when they changed, or a second after the last report.
    fn report(&mut self) {
        let units = self.units();
        let due = self.sent_at.is_none_or(|at| at.elapsed() >= REPORT_EVERY);
        if !due && self.sent.as_ref() == Some(&units) {
            return;
        }
        (self.report)(Discovered {
            bus: None,
            groups: [(self.group.clone(), units.clone())].into(),
        });
        self.sent = Some(units);
        self.sent_at = Some(Instant::now());
    }

    /// The instances running now, by number.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.running.values().map(|c| &c.instance)
    }

    /// SIGTERM to every child, in order, each waited for.
    pub fn stop_all(&mut self) {
        for child in self.running.values_mut() {
            child.instance.stop();
        }
        self.running.clear();
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A fresh 128-bit id in hex, as systemd's `InvocationID`.
fn invocation_id(pid: u32) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:032x}", nanos ^ (u128::from(pid) << 96))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_name_instance_n_on_the_nth_port() {
        let (discover, autoscale) = scaled("api", "127.0.0.1:8001".parse().unwrap(), 2, 6);
        assert_eq!(discover.systemd, "api@*.service");
        assert!(discover.children);
        assert_eq!(
            crate::config::unit_template(&discover.systemd),
            Some(("api@", ".service"))
        );
        let AddressSource::Template(template) = &discover.address else {
            panic!("a template");
        };
        assert_eq!(template.address("3").unwrap().to_string(), "127.0.0.1:8003");
        assert_eq!(template.text, "127.0.0.1:{8000+N}");
        assert_eq!((autoscale.min, autoscale.max), (2, 6));
    }

    #[test]
    fn children_report_as_units_and_stop_on_request() {
        let (reads, inbox) = mpsc::channel();
        let first: SocketAddr = "127.0.0.1:1".parse().unwrap();
        // `sleep` never answers the ready path: the instance stays activating.
        let template = vec!["sleep".to_owned(), "30".to_owned()];
        let (mut children, actions) = Children::new(
            "api",
            first,
            template,
            ("/", Duration::from_secs(30)),
            Vec::new(),
            Box::new(move |read| reads.send(read).unwrap()),
        );
        actions.start("api", "api@2.service", VersionChange::Keep);
        actions.start("api", "web@3.service", VersionChange::Keep);
        children.step();
        let read = |inbox: &Receiver<Discovered>| {
            let mut last = None;
            while let Ok(read) = inbox.try_recv() {
                last = Some(read);
            }
            last.expect("a report").groups["api"].clone()
        };
        let units = read(&inbox);
        assert_eq!(units.len(), 1, "only api@N is ours");
        assert_eq!(units[0].unit.name, "api@2.service");
        assert_eq!(units[0].unit.active_state, "activating");
        assert_eq!(units[0].address.unwrap().to_string(), "127.0.0.1:2");
        assert!(units[0].unit.main_pid > 0);
        assert_eq!(units[0].unit.invocation_id.len(), 32);

        actions.stop("api", "api@2.service", VersionChange::Keep);
        children.step();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let units = read(&inbox);
            if units.is_empty() {
                break;
            }
            assert_eq!(units[0].unit.active_state, "deactivating");
            assert!(Instant::now() < deadline, "sleep exits on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
            children.sent_at = None;
            children.step();
        }
    }
}
