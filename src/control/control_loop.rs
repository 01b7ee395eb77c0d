//! The control loop: one thread, `lbproxy-control`, that owns every change made to a running
//! proxy from outside its workers (sozu's command hub; pingora's background services).
//!
//! Flow: [`ControlLoop::spawn`] starts the thread, which schedules the periodic work and then
//! waits for whichever comes first — a [`Command`] on its channel, or the next due job or
//! controller tick ([`Schedule`]) — handles it, and waits again, until [`Command::Exit`]:
//!
//! - **commands** ([`Command`]): reloads (SIGHUP, `POST /api/reload`, `lbproxy up`), the stop
//!   (SIGTERM/SIGINT), backend drain/enable/weight (admin API), health verdicts (the health
//!   checker), fault injection. One at a time, in order, each answered on its reply channel;
//! - **jobs** ([`Job`]): the sampler every second; under systemd the `STATUS=` line, the honest
//!   watchdog, and once the drain began its progress (`EXTEND_TIMEOUT_USEC=`);
//! - **controllers** ([`Controller`]): each ticked on its period with a fresh [`View`]; the loop
//!   executes the [`Action`]s it returns.
//!
//! Everything that reaches the workers goes through [`Workers`]: the loop is the only sender on
//! their command channels. Gathers block the loop for at most their deadline (normally one or two
//! worker ticks), which is why the watchdog job, also run here, stays honest: a loop stuck longer
//! than the watchdog's stall limit stops feeding it, as a stuck worker does.
//!
//! The health checker's probes stay on their own thread ([`HealthChecker`]): they are network I/O,
//! many at once, each with its own timeout, which a monoio runtime does well and a blocking loop
//! cannot do without stalling its jobs. The loop owns that thread (started with the loop, stopped
//! when it exits), and the checker talks to it: it reads the running configuration from
//! [`Shared`] and sends its verdicts as [`Command::Health`], which the loop keeps for the view and
//! publishes to the workers.

use super::autoscale::InstanceActions;
use super::broadcast::{Gathered, Workers};
use super::command::{Command, Commands, Inbox, ReloadFrom};
use super::controller::{Action, Controller, View};
use super::controllers::{AutoscaleController, DeployController, DiscoveryController};
use super::discovery::DiscoveredUnit;
use super::discovery_watcher::DiscoveryWatcher;
use super::handle::ControlHandle;
use super::health_checker::HealthChecker;
use super::job::{Job, JobContext, Next, SampleJob, SAMPLE_EVERY};
use super::reload::{self, ReloadError, ReloadReport};
use super::schedule::Schedule;
use super::shared::{Shared, WorkerLink};
use super::systemd::reload::Reloader;
use super::systemd::reload::StateFile;
use super::systemd::watchdog::Watchdog;
use super::systemd::{drain, status};
use crate::config::{self, Config};
use crate::health::HealthTable;
use crate::history::Recorder;
use crate::runtime::command::{BackendChange, BackendCommand, Reply, WorkerCommand};
use crate::runtime::WorkerShared;
use crate::systemd::Notifier;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long every worker together may take to apply a backend change (each applies it on its
/// next 100 ms tick).
const APPLY_WITHIN: Duration = Duration::from_secs(2);
/// The longest the loop sleeps when nothing is scheduled.
const IDLE: Duration = Duration::from_secs(1);

/// Reworks a configuration read for a reload before it is applied (`lbproxy up` puts back the
/// instances it runs); an `Err` refuses the reload.
pub type AdjustReload = Box<dyn FnMut(&mut Config) -> Result<(), ReloadError> + Send>;

/// How the loop runs in this process. The default — no systemd, nothing adjusted, no controller
/// — is what tests and library users get.
pub struct LoopOptions {
    /// systemd's notify socket: `RELOADING=1`/`READY=1` around reloads, `STATUS=`, the drain.
    pub notifier: Notifier,
    /// The unit's `WatchdogSec=`, fed while every worker ticks.
    pub watchdog: Option<Watchdog>,
    /// Where reload outcomes are recorded for `lbproxy reload` (`$RUNTIME_DIRECTORY`).
    pub state_file: Option<StateFile>,
    /// Applied to every configuration read for a reload.
    pub adjust_reload: Option<AdjustReload>,
    /// Ticked from the start, each on its own period.
    pub controllers: Vec<Box<dyn Controller>>,
    /// Who starts and stops instances for the autoscaler; `None`: systemd's units over D-Bus
    /// (a thread the loop starts).
    pub instances: Option<Box<dyn InstanceActions>>,
    /// Where deployments and the instances' version files are kept (`lbproxy serve`: the
    /// state directory); `None`: deployments refuse to start (they need version files).
    pub state_dir: Option<PathBuf>,
    /// Where the configurations that serve are recorded (`lbproxy serve` and `lbproxy up`: the
    /// state directory's history); `None`: nowhere.
    pub history: Option<Recorder>,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            notifier: Notifier::disabled(),
            watchdog: None,
            state_file: None,
            adjust_reload: None,
            controllers: Vec::new(),
            instances: None,
            state_dir: None,
            history: None,
        }
    }
}

impl std::fmt::Debug for LoopOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopOptions")
            .field("notifier", &self.notifier)
            .field("watchdog", &self.watchdog)
            .field("state_file", &self.state_file)
            .field("adjust_reload", &self.adjust_reload.is_some())
            .field("controllers", &names(&self.controllers))
            .field("instances", &self.instances.is_some())
            .field("history", &self.history)
            .finish()
    }
}

/// Every loop runs the discovery controller (it does nothing while no group discovers), so a
/// reload may add a `discover` table.
fn with_discovery(mut controllers: Vec<Box<dyn Controller>>) -> Vec<Box<dyn Controller>> {
    controllers.insert(0, Box::new(DiscoveryController::default()));
    controllers
}

fn names(controllers: &[Box<dyn Controller>]) -> Vec<String> {
    controllers.iter().map(|c| c.name().to_owned()).collect()
}

/// Builds the [`View`] a controller is shown (replaced by a fake one in tests).
type Observe = Box<dyn FnMut(&Shared, &Arc<HealthTable>, &Arc<DiscoveredUnits>) -> View + Send>;

/// Each discovered group's units, as the discovery watcher last read them.
type DiscoveredUnits = BTreeMap<String, Vec<DiscoveredUnit>>;

/// What is scheduled: a job or a controller, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Job(usize),
    Controller(usize),
}

/// Whether the loop goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// The loop's state, before and while it runs.
pub struct ControlLoop {
    shared: Arc<Shared>,
    workers: Workers,
    inbox: Inbox,
    commands: Commands,
    notifier: Notifier,
    watchdog: Option<Watchdog>,
    reloader: Reloader,
    adjust_reload: Option<AdjustReload>,
    schedule: Schedule<Task>,
    /// By [`Task::Job`] index; `None` once a job is done.
    jobs: Vec<Option<Box<dyn Job>>>,
    controllers: Vec<Box<dyn Controller>>,
    /// Starts and stops instances for the autoscaler (set at [`ControlLoop::spawn`] when the
    /// options named none).
    instances: Option<Box<dyn InstanceActions>>,
    /// The latest health verdicts, as published to the workers.
    health: Arc<HealthTable>,
    /// The discovered units, as the watcher last sent them.
    units: Arc<DiscoveredUnits>,
    observe: Observe,
    history: Option<Recorder>,
    stopping: bool,
}

impl std::fmt::Debug for ControlLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlLoop")
            .field("workers", &self.workers.len())
            .field("schedule", &self.schedule)
            .field(
                "jobs",
                &self
                    .jobs
                    .iter()
                    .map(|j| j.as_ref().map(|j| j.name()))
                    .collect::<Vec<_>>(),
            )
            .field("controllers", &names(&self.controllers))
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl ControlLoop {
    /// A loop for the workers behind `links`, which run `config`, taking its commands from
    /// `channel` (see [`super::channel`]), and the handle that drives it.
    pub fn new(
        config: Arc<Config>,
        links: Vec<WorkerLink>,
        channel: (Commands, Inbox),
        mut options: LoopOptions,
    ) -> (ControlLoop, ControlHandle) {
        let (shared, senders) = links.into_iter().map(|l| (l.shared, l.commands)).unzip();
        options.controllers = with_discovery(options.controllers);
        let state_dir = options.state_dir.take();
        let (mut control_loop, handle) =
            Self::with_workers(config, shared, Workers::new(senders), channel, options);
        let board = control_loop.shared.autoscale().clone();
        control_loop
            .controllers
            .push(Box::new(AutoscaleController::new(board)));
        let deploy = control_loop.shared.deploy().clone();
        control_loop
            .controllers
            .push(Box::new(DeployController::new(deploy, state_dir)));
        (control_loop, handle)
    }

    fn with_workers(
        config: Arc<Config>,
        worker_shared: Vec<Arc<WorkerShared>>,
        workers: Workers,
        (commands, inbox): (Commands, Inbox),
        options: LoopOptions,
    ) -> (ControlLoop, ControlHandle) {
        let shared = Arc::new(Shared::new(config, worker_shared));
        let handle = ControlHandle::new(shared.clone(), commands.clone());
        let control_loop = ControlLoop {
            shared,
            workers,
            inbox,
            commands,
            reloader: Reloader::new(options.notifier.clone(), options.state_file),
            notifier: options.notifier,
            watchdog: options.watchdog,
            adjust_reload: options.adjust_reload,
            schedule: Schedule::default(),
            jobs: Vec::new(),
            controllers: options.controllers,
            instances: options.instances,
            health: Arc::default(),
            units: Arc::default(),
            observe: Box::new(observe),
            history: options.history,
            stopping: false,
        };
        (control_loop, handle)
    }

    /// Starts the health checker, the discovery watcher, the instance actions (systemd's, when
    /// the options named none) and the loop's thread, `lbproxy-control`; all stop with it.
    pub fn spawn(mut self) -> anyhow::Result<LoopThread> {
        use anyhow::Context;
        let commands = self.commands.clone();
        let health =
            HealthChecker::spawn(ControlHandle::new(self.shared.clone(), commands.clone()))
                .context("spawning the health-check thread")?;
        let discovery = DiscoveryWatcher::spawn(self.shared.clone(), commands.clone())
            .context("spawning the discovery thread")?;
        if self.instances.is_none() {
            let shared = self.shared.clone();
            let units = super::autoscale::systemd::SystemdInstances::spawn(move || shared.config())
                .context("spawning the instance-actions thread")?;
            self.instances = Some(Box::new(units));
        }
        let thread = std::thread::Builder::new()
            .name("lbproxy-control".into())
            .spawn(move || {
                self.run();
                // Queued starts and stops are dropped; a job in progress is left to systemd.
                drop(self.instances.take());
                health.stop();
                discovery.stop();
            })
            .context("spawning the control thread")?;
        Ok(LoopThread {
            thread: Some(thread),
            commands,
        })
    }

    fn run(&mut self) {
        // Before any command: the start is the history's entry before any reload's.
        if let Some(history) = &self.history {
            history.started(&self.shared.config());
        }
        self.start(Instant::now());
        loop {
            let wait = self
                .schedule
                .next_due()
                .map_or(IDLE, |due| due.saturating_duration_since(Instant::now()));
            match self.inbox.receiver.recv_timeout(wait) {
                Ok(command) => {
                    if self.handle(command, Instant::now()) == Flow::Exit {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.run_due(Instant::now());
        }
    }

    /// Schedules the periodic work from `now`: the sampler at once; under systemd the watchdog
    /// at once and the status line one period on; each controller one period on.
    fn start(&mut self, now: Instant) {
        self.add_job(Box::new(SampleJob), now, SAMPLE_EVERY);
        if let Some(watchdog) = self.watchdog.take() {
            let every = watchdog.ping_every();
            self.add_job(Box::new(watchdog.job()), now, every);
        }
        if self.notifier.is_enabled() {
            let job = status::StatusJob::new(&self.shared, now);
            self.add_job(Box::new(job), now + status::EVERY, status::EVERY);
        }
        for (index, controller) in self.controllers.iter().enumerate() {
            let every = controller.every();
            self.schedule
                .add(Task::Controller(index), now + every, every);
        }
    }

    fn add_job(&mut self, job: Box<dyn Job>, first: Instant, every: Duration) {
        self.schedule.add(Task::Job(self.jobs.len()), first, every);
        self.jobs.push(Some(job));
    }

    fn handle(&mut self, command: Command, now: Instant) -> Flow {
        match command {
            Command::Reload { from, reply } => {
                let result = self.reload(from);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Stop => self.stop(now),
            Command::Backend {
                group,
                address,
                change,
                reply,
            } => {
                let gathered = self.change_backend(&group, address, change);
                if let Some(reply) = reply {
                    let _ = reply.send(gathered);
                }
            }
            Command::Health(table) => {
                self.workers
                    .broadcast(|_| WorkerCommand::Health(table.clone()));
                self.health = table;
            }
            Command::FaultStall => {
                self.workers.send_to(0, WorkerCommand::FaultStall);
            }
            Command::Discovered(discovered) => {
                self.take_units(discovered);
                // Reads that queued up meanwhile (a generation switch takes a few hundred
                // milliseconds): only the latest counts, so the controllers do not apply stale
                // intermediate states one after another.
                let mut next = None;
                while let Ok(command) = self.inbox.receiver.try_recv() {
                    match command {
                        Command::Discovered(later) => self.take_units(later),
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                for index in 0..self.controllers.len() {
                    if self.controllers[index].follows_units() && !self.stopping {
                        self.tick_controller(index, now);
                    }
                }
                if let Some(command) = next {
                    return self.handle(command, now);
                }
            }
            Command::Exit => return Flow::Exit,
        }
        Flow::Continue
    }

    /// Keeps what the discovery watcher read (per group; groups that no longer discover are
    /// dropped) for the controllers' view.
    fn take_units(&mut self, discovered: super::discovery::Discovered) {
        let mut units = DiscoveredUnits::clone(&self.units);
        units.extend(discovered.groups);
        let config = self.shared.config();
        units.retain(|group, _| {
            config
                .upstreams
                .iter()
                .any(|g| g.name == *group && g.discover.is_some())
        });
        self.units = Arc::new(units);
    }

    /// Runs every job and controller due at `now`.
    fn run_due(&mut self, now: Instant) {
        for task in self.schedule.due(now) {
            match task {
                Task::Job(index) => {
                    let ctx = JobContext {
                        shared: &self.shared,
                        notifier: &self.notifier,
                    };
                    let Some(job) = &mut self.jobs[index] else {
                        continue;
                    };
                    if job.run(now, &ctx) == Next::Done {
                        tracing::debug!(job = job.name(), "control loop: job done");
                        self.jobs[index] = None;
                        self.schedule.remove(task);
                    }
                }
                Task::Controller(index) => self.tick_controller(index, now),
            }
        }
    }

    fn tick_controller(&mut self, index: usize, now: Instant) {
        if self.stopping || self.shared.is_shutting_down() {
            return;
        }
        if !self.controllers[index].applies_to(&self.shared.config()) {
            return;
        }
        let view = (self.observe)(&self.shared, &self.health, &self.units);
        let controller = &mut self.controllers[index];
        let actions = controller.tick(now, &view);
        let name = controller.name().to_owned();
        for action in actions {
            if self.shared.is_shutting_down() {
                return;
            }
            self.execute(&name, action);
        }
        self.controllers[index].actions_done();
    }

    /// Carries out one controller's action; the outcome is logged (the controller sees it in its
    /// next view).
    fn execute(&mut self, controller: &str, action: Action) {
        tracing::info!(controller, "controller {controller}: {action}");
        match action {
            Action::Backend {
                group,
                address,
                change,
            } => {
                let gathered = self.change_backend(&group, address, change);
                let refusals: Vec<String> = gathered
                    .replies()
                    .filter_map(|(w, r)| Some(format!("worker {w}: {}", r.as_ref().err()?)))
                    .collect();
                if !gathered.all_replied() || !refusals.is_empty() {
                    tracing::warn!(
                        controller,
                        "controller {controller}: {change:?} of backend {address} of upstream \
                         \"{group}\" not applied everywhere: refused {refusals:?}, no answer \
                         from workers {:?}, exited {:?}",
                        gathered.silent(),
                        gathered.gone()
                    );
                }
            }
            // Logged by the reload, either way.
            Action::Reload(config) => {
                let result = reload::apply(&self.shared, &self.workers, *config);
                self.count_failure(&result);
            }
            // Logged by the switch, either way; the controller tries again on its next tick if
            // it failed (the running set still differs).
            Action::StartUnit {
                group,
                unit,
                version,
            } => match &self.instances {
                Some(instances) => instances.start(&group, &unit, version),
                None => tracing::error!(controller, "no way to start {unit}: no instance actions"),
            },
            Action::StopUnit {
                group,
                unit,
                version,
            } => match &self.instances {
                Some(instances) => instances.stop(&group, &unit, version),
                None => tracing::error!(controller, "no way to stop {unit}: no instance actions"),
            },
            Action::RestartUnit {
                group,
                unit,
                version,
            } => match &self.instances {
                Some(instances) => instances.restart(&group, &unit, version),
                None => {
                    tracing::error!(controller, "no way to restart {unit}: no instance actions");
                }
            },
            Action::SetSplit { group, split, what } => {
                let mut config = Config::clone(&self.shared.config());
                let Some(target) = config.upstreams.iter_mut().find(|g| g.name == group) else {
                    return;
                };
                target.split = split;
                let _ = reload::apply_discovered(&self.shared, &self.workers, config, &what);
            }
            Action::SetBackends {
                group,
                backends,
                what,
            } => {
                let mut config = Config::clone(&self.shared.config());
                let Some(target) = config.upstreams.iter_mut().find(|g| g.name == group) else {
                    return;
                };
                target.backends = backends;
                let _ = reload::apply_discovered(&self.shared, &self.workers, config, &what);
            }
        }
    }

    fn reload(&mut self, from: ReloadFrom) -> Result<ReloadReport, ReloadError> {
        let result = self.attempt_reload(from);
        self.count_failure(&result);
        result
    }

    /// Counts a refused reload (`lbproxy_reload_failures_total`), unless the proxy refused it
    /// because it is shutting down.
    fn count_failure(&self, result: &Result<ReloadReport, ReloadError>) {
        if matches!(result, Err(e) if !matches!(e, ReloadError::ShuttingDown)) {
            self.shared.reload_failed();
        }
    }

    fn attempt_reload(&mut self, from: ReloadFrom) -> Result<ReloadReport, ReloadError> {
        let (shared, workers) = (&self.shared, &self.workers);
        match from {
            ReloadFrom::Config(config) => reload::apply(shared, workers, *config),
            ReloadFrom::Source(via) => {
                let (adjust, history) = (&mut self.adjust_reload, &self.history);
                let shutting_down = shared.is_shutting_down();
                let (_, result) = self.reloader.attempt(shutting_down, || {
                    let config = read_source(shared, adjust)?;
                    let report = reload::apply(shared, workers, config)?;
                    // Before READY=1 and the answer: whoever asked finds it recorded.
                    if let Some(history) = history {
                        history.reloaded(&shared.config(), via);
                    }
                    Ok(report)
                });
                result
            }
        }
    }

    fn change_backend(
        &self,
        group: &str,
        address: SocketAddr,
        change: BackendChange,
    ) -> Gathered<Reply> {
        self.workers.gather(APPLY_WITHIN, |_, done| {
            WorkerCommand::Backend(BackendCommand {
                group: group.to_owned(),
                address,
                change,
                done,
            })
        })
    }

    /// The drain began: make sure every worker was asked, tell systemd and report the drain's
    /// progress; controllers are ticked no more (the status line and the watchdog end on their
    /// next run).
    fn stop(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.shared.request_drain();
        if self.notifier.is_enabled() {
            let job = drain::begin(&self.shared, &self.notifier);
            self.add_job(Box::new(job), now + drain::LOOK_EVERY, drain::LOOK_EVERY);
        }
        for index in 0..self.controllers.len() {
            self.schedule.remove(Task::Controller(index));
        }
    }
}

/// The configuration read again from where the running one came from (same file, same `--env`
/// overlay, the process environment for `${VAR}`), adjusted. Errors are logged (once, with every
/// reason and its fix, as `lbproxy check` prints them).
fn read_source(shared: &Shared, adjust: &mut Option<AdjustReload>) -> Result<Config, ReloadError> {
    let running = shared.config();
    let path = match &running.source {
        config::ConfigSource::File(path) => Some(path.as_path()),
        config::ConfigSource::Embedded => None,
    };
    let mut config =
        config::load(path, running.env.as_deref()).map_err(|e| reload::logged(e.into()))?;
    if let Some(adjust) = adjust {
        adjust(&mut config).map_err(reload::logged)?;
    }
    keep_discovered(&running, &mut config);
    Ok(config)
}

/// A discovered group's backends are not in the file: a reload keeps the group's running
/// backends — the ones discovered so far, or the static list of a group that begins to
/// discover — until the watcher's next read replaces them (within a second), so the group never
/// has none in between.
fn keep_discovered(running: &Config, config: &mut Config) {
    for group in &mut config.upstreams {
        if group.discover.is_none() {
            continue;
        }
        if let Some(running) = running.upstreams.iter().find(|g| g.name == group.name) {
            group.backends = running.backends.clone();
        }
    }
}

/// The view of the running proxy.
fn observe(shared: &Shared, health: &Arc<HealthTable>, units: &Arc<DiscoveredUnits>) -> View {
    View {
        config: shared.config(),
        reloads: shared.reloads(),
        health: health.clone(),
        metrics: shared.aggregate(),
        latest: shared.sampler().latest(),
        units: units.clone(),
        new_version_units: shared.deploy().new_version_units(),
        stable_versions: shared.deploy().stable_versions(),
    }
}

/// The running loop's thread.
#[derive(Debug)]
pub struct LoopThread {
    thread: Option<JoinHandle<()>>,
    commands: Commands,
}

impl LoopThread {
    /// Asks the loop to exit once it has answered every command sent before, and waits for it
    /// (and for the health checker it stops).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.commands.send(Command::Exit);
            let _ = thread.join();
        }
    }
}

impl Drop for LoopThread {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::control::broadcast::tests::{fake_workers, Behaviour};
    use crate::control::command::channel;
    use crate::control::controller::tests::{view_with_error_rate, ErrorRateGuard, BACKEND};
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::sync::Mutex;

    const SECOND: Duration = Duration::from_secs(1);

    fn config(backends: &str) -> Config {
        valid(&format!(
            "[runtime]\nworkers = 2\n[listener.http]\naddress = \"127.0.0.1:0\"\n\
             upstream = \"api\"\n[upstream.api]\nbackends = [{backends}]\n"
        ))
    }

    /// A loop over fake workers, driven by hand: nothing runs unless a test calls [`step`].
    fn fake_loop(
        behaviours: &[Behaviour],
        options: LoopOptions,
    ) -> (ControlLoop, ControlHandle, Arc<Mutex<Vec<String>>>) {
        let (workers, log) = fake_workers(behaviours);
        let shared = behaviours.iter().map(|_| Arc::default()).collect();
        let config = Arc::new(config("\"127.0.0.1:8001\""));
        let (control_loop, handle) =
            ControlLoop::with_workers(config, shared, workers, channel(), options);
        (control_loop, handle, log)
    }

    /// What one turn of the loop's thread does, at `now` on a fake clock: every command waiting,
    /// then every job and controller due.
    fn step(control_loop: &mut ControlLoop, now: Instant) -> Flow {
        while let Ok(command) = control_loop.inbox.receiver.try_recv() {
            if control_loop.handle(command, now) == Flow::Exit {
                return Flow::Exit;
            }
        }
        control_loop.run_due(now);
        Flow::Continue
    }

    fn taken(log: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *log.lock().unwrap())
    }

    /// The log once it has `entries` entries (commands sent without waiting reach the fake
    /// workers a little later), sorted.
    fn taken_once(log: &Mutex<Vec<String>>, entries: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.lock().unwrap().len() < entries && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut seen = taken(log);
        seen.sort();
        seen
    }

    /// Records when it ran, and is done after `runs` runs.
    struct Recording {
        t0: Instant,
        runs: usize,
        seen: Arc<Mutex<Vec<Duration>>>,
    }

    impl Job for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }

        fn run(&mut self, now: Instant, _ctx: &JobContext<'_>) -> Next {
            let mut seen = self.seen.lock().unwrap();
            seen.push(now - self.t0);
            if seen.len() == self.runs {
                Next::Done
            } else {
                Next::Again
            }
        }
    }

    #[test]
    fn periodic_jobs_run_when_due_on_a_fake_clock() {
        let (mut control_loop, _handle, _log) =
            fake_loop(&[Behaviour::Answers], LoopOptions::default());
        let t0 = Instant::now();
        control_loop.start(t0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let job = Recording {
            t0,
            runs: 3,
            seen: seen.clone(),
        };
        control_loop.add_job(Box::new(job), t0, SECOND);
        for offset_ms in [0, 500, 1000, 1500, 3500, 4000, 10_000] {
            step(&mut control_loop, t0 + Duration::from_millis(offset_ms));
        }
        // Due at 0, 1 s and 2 s; the loop looked at 3.5 s: one late run, then done.
        assert_eq!(
            *seen.lock().unwrap(),
            [Duration::ZERO, SECOND, SECOND * 7 / 2]
        );
        assert_eq!(
            control_loop.schedule.next_due(),
            Some(t0 + Duration::from_secs(11)),
            "only the sampler is left, a second after its last run"
        );
    }

    #[test]
    fn a_controller_drains_a_backend_whose_error_rate_passes_the_threshold() {
        let options = LoopOptions {
            controllers: vec![Box::new(ErrorRateGuard::new(0.5, 2))],
            ..LoopOptions::default()
        };
        let (mut control_loop, _handle, log) =
            fake_loop(&[Behaviour::Answers, Behaviour::Answers], options);
        // The fake view: the backend's error rate, tick after tick.
        let mut script = [0.1, 0.6, 0.7, 0.9, 0.9].into_iter();
        control_loop.observe =
            Box::new(move |_, _, _| view_with_error_rate(script.next().unwrap_or(0.0), 0));
        let t0 = Instant::now();
        control_loop.start(t0);
        step(&mut control_loop, t0);
        assert!(
            taken(&log).is_empty(),
            "first tick one period after the start"
        );

        step(&mut control_loop, t0 + SECOND);
        step(&mut control_loop, t0 + 2 * SECOND);
        assert!(taken(&log).is_empty(), "0.1, then 0.6: one tick above");
        step(&mut control_loop, t0 + 3 * SECOND);
        let mut seen = taken(&log);
        seen.sort();
        let drain = format!("Backend api {BACKEND} Drain");
        assert_eq!(
            seen,
            [format!("worker 0: {drain}"), format!("worker 1: {drain}")],
            "0.7: the second tick above drains it on every worker"
        );
        step(&mut control_loop, t0 + 4 * SECOND);
        assert!(taken(&log).is_empty(), "drained once");

        // Once the drain began no controller is ticked.
        control_loop.handle(Command::Stop, t0 + 4 * SECOND);
        step(&mut control_loop, t0 + 10 * SECOND);
        assert!(taken(&log).is_empty());
    }

    #[test]
    fn a_reload_prepares_then_commits_on_every_worker() {
        let (mut control_loop, handle, log) =
            fake_loop(&[Behaviour::Answers; 2], LoopOptions::default());
        let (reply, outcome) = mpsc::channel();
        let new = config("\"127.0.0.1:8001\", \"127.0.0.1:8002\"");
        handle.commands().send(Command::Reload {
            from: ReloadFrom::Config(Box::new(new)),
            reply: Some(reply),
        });
        step(&mut control_loop, Instant::now());
        let report = outcome.try_recv().unwrap().unwrap();
        assert_eq!(report.reload, 1);
        assert_eq!(handle.reloads(), 1);
        assert_eq!(handle.config().upstreams[0].backends.len(), 2);
        let mut seen = taken(&log);
        seen.sort();
        assert_eq!(
            seen,
            [
                "worker 0: Commit",
                "worker 0: Prepare",
                "worker 1: Commit",
                "worker 1: Prepare"
            ]
        );
    }

    #[test]
    fn a_worker_that_cannot_prepare_aborts_the_reload_everywhere() {
        let (mut control_loop, handle, log) = fake_loop(
            &[Behaviour::Answers, Behaviour::RefusesReloads],
            LoopOptions::default(),
        );
        let (reply, outcome) = mpsc::channel();
        handle.commands().send(Command::Reload {
            from: ReloadFrom::Config(Box::new(config("\"127.0.0.1:8002\""))),
            reply: Some(reply),
        });
        step(&mut control_loop, Instant::now());
        let refused = outcome.try_recv().unwrap().unwrap_err();
        assert!(
            matches!(&refused, ReloadError::Refused { worker: 1, reason } if reason == "no room"),
            "{refused:?}"
        );
        assert_eq!(handle.reloads(), 0);
        assert_eq!(
            handle.config().upstreams[0].backends[0].address.port(),
            8001,
            "the running configuration stays"
        );
        // The abort reaches every worker, after its prepare.
        assert_eq!(
            taken_once(&log, 4),
            [
                "worker 0: Abort",
                "worker 0: Prepare",
                "worker 1: Abort",
                "worker 1: Prepare"
            ]
        );
    }

    #[test]
    fn a_backend_change_is_gathered_from_every_worker_and_an_exited_one_named() {
        let (mut control_loop, handle, _log) = fake_loop(
            &[Behaviour::Answers, Behaviour::Exited],
            LoopOptions::default(),
        );
        let (reply, outcome) = mpsc::channel();
        handle.commands().send(Command::Backend {
            group: "api".into(),
            address: BACKEND.parse().unwrap(),
            change: BackendChange::Enable,
            reply: Some(reply),
        });
        step(&mut control_loop, Instant::now());
        let gathered = outcome.try_recv().unwrap();
        assert_eq!(gathered.replies().count(), 1);
        assert_eq!(gathered.gone(), [1]);
    }

    #[test]
    fn a_stop_drains_every_worker_and_refuses_later_reloads() {
        let (mut control_loop, handle, _log) =
            fake_loop(&[Behaviour::Answers; 2], LoopOptions::default());
        let (reply, outcome) = mpsc::channel();
        handle.commands().send(Command::Stop);
        handle.commands().send(Command::Reload {
            from: ReloadFrom::Config(Box::new(config("\"127.0.0.1:8002\""))),
            reply: Some(reply),
        });
        step(&mut control_loop, Instant::now());
        assert!(control_loop
            .shared
            .workers_for_tests()
            .iter()
            .all(|w| w.drain_requested.load(Ordering::Relaxed)));
        assert!(handle.is_shutting_down());
        assert!(matches!(
            outcome.try_recv().unwrap(),
            Err(ReloadError::ShuttingDown)
        ));
        handle.commands().send(Command::Exit);
        assert_eq!(step(&mut control_loop, Instant::now()), Flow::Exit);
    }

    #[test]
    fn health_verdicts_reach_every_worker_and_the_view() {
        let (mut control_loop, handle, log) =
            fake_loop(&[Behaviour::Answers; 2], LoopOptions::default());
        let mut table = HealthTable::default();
        table.insert(
            "api",
            BACKEND.parse().unwrap(),
            crate::health::Health {
                healthy: false,
                since: Instant::now(),
            },
        );
        handle.publish_health(Arc::new(table));
        step(&mut control_loop, Instant::now());
        let view = (control_loop.observe)(
            &control_loop.shared,
            &control_loop.health,
            &control_loop.units,
        );
        assert!(!view.healthy("api", BACKEND.parse().unwrap()));
        assert_eq!(
            taken_once(&log, 2),
            ["worker 0: Health", "worker 1: Health"]
        );
    }

    /// A loop over one answering fake worker running `config`, with the discovery controller.
    fn discovery_loop(config: Config) -> (ControlLoop, ControlHandle, Arc<Mutex<Vec<String>>>) {
        let (workers, log) = fake_workers(&[Behaviour::Answers]);
        let options = LoopOptions {
            controllers: with_discovery(Vec::new()),
            ..LoopOptions::default()
        };
        let (control_loop, handle) = ControlLoop::with_workers(
            Arc::new(config),
            vec![Arc::default()],
            workers,
            channel(),
            options,
        );
        (control_loop, handle, log)
    }

    #[test]
    fn discovered_units_become_backends_without_a_reload_and_a_reload_keeps_them() {
        use crate::control::discovery::units::testing::unit;
        use crate::control::discovery::Discovered;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbproxy.toml");
        let file = "[runtime]\nworkers = 1\n[listener.http]\naddress = \"127.0.0.1:0\"\n\
                    upstream = \"api\"\n[upstream.api.discover]\nsystemd = \"api@*.service\"\n\
                    address = \"127.0.0.1:{8000+N}\"\n";
        std::fs::write(&path, file).unwrap();
        let config = config::load(Some(&path), None).unwrap();
        let (mut control_loop, handle, log) = discovery_loop(config);
        let t0 = Instant::now();
        control_loop.start(t0);
        handle.commands().send(Command::Discovered(Discovered {
            bus: None,
            groups: [(
                "api".to_owned(),
                vec![unit(1, "active", "a"), unit(2, "activating", "b")],
            )]
            .into(),
        }));
        step(&mut control_loop, t0 + SECOND);
        let addresses = |handle: &ControlHandle| -> Vec<String> {
            handle.config().upstreams[0]
                .backends
                .iter()
                .map(|b| b.address.to_string())
                .collect()
        };
        assert_eq!(addresses(&handle), ["127.0.0.1:8001"]);
        assert_eq!(handle.reloads(), 0, "not a reload");
        assert_eq!(
            taken(&log),
            ["worker 0: Prepare (keeping overrides)", "worker 0: Commit"]
        );
        // SIGHUP: the file has no backends for the group; the discovered one stays.
        handle.commands().send(Command::Reload {
            from: ReloadFrom::Source(crate::history::Via::Signal),
            reply: None,
        });
        step(&mut control_loop, t0 + SECOND * 2);
        assert_eq!(handle.reloads(), 1);
        assert_eq!(addresses(&handle), ["127.0.0.1:8001"]);
        assert_eq!(taken(&log), ["worker 0: Prepare", "worker 0: Commit"]);
    }

    #[test]
    fn a_reload_from_the_file_keeps_a_running_deployments_split_and_canaries() {
        use crate::config::{HashKey, TrafficSplit};
        use crate::control::discovery::units::testing::unit;
        use crate::control::discovery::Discovered;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbproxy.toml");
        let file = "[runtime]\nworkers = 1\n[listener.http]\naddress = \"127.0.0.1:0\"\n\
                    upstream = \"api\"\n[upstream.api.discover]\nsystemd = \"api@*.service\"\n\
                    address = \"127.0.0.1:{8000+N}\"\n";
        std::fs::write(&path, file).unwrap();
        let (mut control_loop, handle, log) =
            discovery_loop(config::load(Some(&path), None).unwrap());
        let t0 = Instant::now();
        control_loop.start(t0);
        handle.commands().send(Command::Discovered(Discovered {
            bus: None,
            groups: [(
                "api".to_owned(),
                vec![unit(1, "active", "a"), unit(2, "active", "b")],
            )]
            .into(),
        }));
        step(&mut control_loop, t0 + SECOND);
        // A deployment: api@2 runs the new version and takes a quarter of the clients.
        let mut backends = handle.config().upstreams[0].backends.clone();
        backends[1].canary = true;
        control_loop.execute(
            "deploy",
            Action::SetBackends {
                group: "api".to_owned(),
                backends,
                what: "api@2 is the canary".to_owned(),
            },
        );
        let split = TrafficSplit {
            weight_bp: 2500,
            key: HashKey::Cookie("session".to_owned()),
        };
        control_loop.execute(
            "deploy",
            Action::SetSplit {
                group: "api".to_owned(),
                split: split.clone(),
                what: "25 %".to_owned(),
            },
        );
        taken(&log);
        // SIGHUP: the file has neither; both stay.
        handle.commands().send(Command::Reload {
            from: ReloadFrom::Source(crate::history::Via::Signal),
            reply: None,
        });
        step(&mut control_loop, t0 + SECOND * 2);
        assert_eq!(handle.reloads(), 1);
        assert_eq!(taken(&log), ["worker 0: Prepare", "worker 0: Commit"]);
        let group = &handle.config().upstreams[0];
        assert_eq!(group.split, split);
        let canary: Vec<(u16, bool)> = group
            .backends
            .iter()
            .map(|b| (b.address.port(), b.canary))
            .collect();
        assert_eq!(canary, [(8001, false), (8002, true)]);
    }

    #[test]
    fn reads_that_queued_up_are_applied_as_the_latest_only() {
        use crate::control::discovery::units::testing::unit;
        use crate::control::discovery::Discovered;
        let mut config = config("\"127.0.0.1:8001\"");
        config.upstreams[0].discover = crate::config::testing::valid(
            "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
             address = \"127.0.0.1:{8000+N}\"\n",
        )
        .upstreams[0]
            .discover
            .clone();
        let (mut control_loop, handle, log) = discovery_loop(config);
        let t0 = Instant::now();
        control_loop.start(t0);
        // api@1 stopping, gone, then back: three reads, queued while the loop was busy.
        let read = |state: &str, invocation: &str| {
            Command::Discovered(Discovered {
                bus: None,
                groups: [("api".to_owned(), vec![unit(1, state, invocation)])].into(),
            })
        };
        handle.commands().send(read("deactivating", "a"));
        handle.commands().send(read("inactive", "a"));
        handle.commands().send(read("active", "b"));
        step(&mut control_loop, t0 + SECOND);
        assert!(
            !taken(&log).iter().any(|l| l.contains("Prepare")),
            "the latest read leaves the backend as it is: no generation"
        );
        assert_eq!(handle.config().upstreams[0].backends.len(), 1);
    }
}
