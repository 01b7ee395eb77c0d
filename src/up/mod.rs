//! `lbproxy up`: the local deployment in one foreground command.
//!
//! Flow: load the config; decide the instances (one per backend of the `[up]` group, or
//! `--instances N` on consecutive ports from the group's first backend: 127.0.0.1:8001.. with
//! the embedded default); bind the proxy's listeners and admin port, so a busy port fails before
//! anything starts; start each instance process and wait until its `ready_path` answers 2xx;
//! start the proxy on the bound sockets; print the URLs and the `lbproxy ctl` command that
//! reaches it; then supervise: an instance that dies is restarted with exponential backoff. On
//! SIGINT/SIGTERM: the proxy stops accepting and drains, then the instances get SIGTERM one by
//! one (in order) and are waited for, so nothing is left behind.
//!
//! A reload (SIGHUP, `lbproxy ctl reload`) is made by the proxy's control loop, like any other;
//! it reads the file again and keeps what `up` set up (`keep_instances`, the loop's reload
//! adjustment): with `--instances`, the group's backends are the instances `up` runs, not the
//! file's list. One signal thread serves both: SIGINT/SIGTERM stop `up`, SIGHUP goes to the
//! control loop (one that arrives while the instances start waits for the proxy). Instances are
//! only started and stopped by `up` itself, so changing which group they form, or how many there
//! are, takes a restart of `up`.
//!
//! Instances run in their own process group, so a Ctrl-C in the terminal reaches only us and
//! the shutdown order stays ours.

mod instance;
mod instances;
mod locate;

use crate::config::ConfigArgs;
use crate::config::{AutoscaleConfig, BackendConfig, Config, DiscoverConfig};
use crate::control::signals::{self, Signal};
use crate::control::{Command, LoopOptions, ReloadError, ReloadFrom};
use crate::server::Server;
use crate::systemd::activation::InheritedSockets;
use anyhow::Context;
use clap::Args;
use instance::{Instance, InstanceSpec};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the supervisor looks at its children.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);

/// `lbproxy up`'s flags.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Number of API instances, on consecutive ports from the group's first backend
    /// (127.0.0.1:8001, :8002, … with the embedded default); they are the group's backends, also
    /// after a reload. Default: one per backend of the upstream group in the config (3 with the
    /// embedded default).
    #[arg(short = 'n', long, value_name = "N")]
    pub instances: Option<u16>,
    /// Scale the instances with the load, as the proxy scales systemd units: the group gets an
    /// autoscale policy (the `[upstream.NAME.autoscale]` defaults: 10 requests in flight per
    /// instance, scale-down window 300 s) between --min and --max. Instance N listens on the
    /// group's first backend's port + N − 1; up starts as many as it would without the flag
    /// (kept within --min and --max), then starts and stops them as the autoscaler decides.
    #[arg(long)]
    pub autoscale: bool,
    /// With --autoscale: never fewer instances. Default 1.
    #[arg(long, value_name = "N", requires = "autoscale")]
    pub min: Option<u32>,
    /// With --autoscale: never more instances. Default twice the starting count (at least 4).
    #[arg(long, value_name = "N", requires = "autoscale")]
    pub max: Option<u32>,
}

pub fn run(args: &UpArgs) -> anyhow::Result<()> {
    let mut config = crate::config::load_from_args(&args.config)?;
    let group_index = config.up.upstream.context(
        "`lbproxy up` needs to know which upstream group its instances form: set `[up] upstream = \"NAME\"` \
         (or name a group `api`)",
    )?;
    let group_name = config.upstreams[group_index].name.clone();
    if config.upstreams[group_index].discover.is_some() {
        anyhow::bail!(
            "lbproxy up runs the instances of upstream \"{group_name}\" itself, as child \
             processes, but [upstream.{group_name}.discover] takes them from systemd units: remove \
             the discover table and list backends (or pass --instances N) for `lbproxy up`, or \
             run the units under systemd instead: systemctl --user start api@{{1..3}} lbproxy"
        );
    }
    // With --instances, the group's backends are the instances, at start and at every reload.
    let instances_override = match args.instances {
        Some(count) => {
            let backends = numbered_backends(&config.upstreams[group_index].backends, count)?;
            config.upstreams[group_index].backends = backends.clone();
            Some(backends)
        }
        None => None,
    };
    // With --autoscale, up is the service manager of its instances: the group discovers them
    // (as units that up reports) and the autoscaler starts and stops them.
    let scaled = match args.autoscale {
        true => Some(autoscale_group(&mut config, group_index, args)?),
        false => None,
    };
    let specs = instance_specs(&config, group_index)?;

    // Every socket first: a busy port fails now, before any instance is started.
    crate::sys::fd_limit::raise();
    let bound = Server::bind(Arc::new(config.clone()), InheritedSockets::none())
        .context("lbproxy up: the proxy cannot listen, so no instance was started")?;

    let stop = Arc::new(AtomicBool::new(false));
    signals::install(false)?.spawn({
        let (stop, commands) = (stop.clone(), bound.commands());
        move |signal| match signal {
            Signal::Stop(name) => {
                tracing::info!("received {name}: stopping the proxy, then the instances");
                stop.store(true, Ordering::SeqCst);
            }
            Signal::Reload => {
                tracing::info!("received SIGHUP; reloading the configuration");
                // Logged by the control loop, either way.
                commands.send(Command::Reload {
                    from: ReloadFrom::Source(crate::history::Via::Signal),
                    reply: None,
                });
            }
            Signal::Fault => {}
        }
    })?;

    let mut instances: Vec<Instance> = Vec::with_capacity(specs.len());
    let started = start_all(&specs, &config, &stop, &mut instances);
    if let Err(e) = started {
        stop_all(&mut instances);
        return Err(e);
    }
    if stop.load(Ordering::SeqCst) {
        stop_all(&mut instances);
        return Ok(());
    }

    let keep = Keep {
        group: group_name.clone(),
        instances: instances_override,
        running: specs.iter().map(|s| s.address).collect(),
        scaled: scaled.clone(),
    };
    let mut options = LoopOptions {
        adjust_reload: Some(Box::new(move |config| keep_instances(config, &keep))),
        history: crate::history::Recorder::from_env(),
        ..LoopOptions::default()
    };
    let mut children = None;
    if scaled.is_some() {
        let commands = bound.commands();
        let (owned, actions) = instances::Children::new(
            &group_name,
            config.upstreams[group_index].backends[0].address,
            instance_template(&config)?,
            (&config.up.ready_path, config.up.ready_timeout),
            std::mem::take(&mut instances),
            Box::new(move |read| {
                commands.send(Command::Discovered(read));
            }),
        );
        options.instances = Some(Box::new(actions));
        children = Some(owned);
    }
    let server = match bound.start_with(options) {
        Ok(server) => server,
        Err(e) => {
            stop_all(&mut instances);
            if let Some(children) = &mut children {
                children.stop_all();
            }
            return Err(e.context("starting the proxy"));
        }
    };
    match &children {
        Some(children) => print_banner(&server, children.instances(), args),
        None => print_banner(&server, instances.iter(), args),
    }

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(SUPERVISE_EVERY);
        match &mut children {
            Some(children) => children.step(),
            None => instances.iter_mut().for_each(Instance::supervise),
        }
    }

    server.control().shutdown();
    let drained = server.wait();
    stop_all(&mut instances);
    if let Some(children) = &mut children {
        children.stop_all();
    }
    say(format_args!("lbproxy up: stopped"));
    drained
}

/// `count` backends on consecutive ports from the address of `configured[0]` (the group is never
/// empty): 127.0.0.1:8001, :8002, … for the embedded default.
fn numbered_backends(
    configured: &[BackendConfig],
    count: u16,
) -> anyhow::Result<Vec<BackendConfig>> {
    anyhow::ensure!(
        (1..=999).contains(&count),
        "--instances must be between 1 and 999 (got {count})"
    );
    let first = configured[0].address;
    anyhow::ensure!(
        u32::from(first.port()) + u32::from(count) - 1 <= u32::from(u16::MAX),
        "--instances {count} from {first} would pass port {}",
        u16::MAX
    );
    Ok((0..count)
        .map(|i| BackendConfig {
            address: SocketAddr::new(first.ip(), first.port() + i),
            weight: NonZeroU32::MIN,
            backup: false,
            drain: false,
            canary: false,
        })
        .collect())
}

/// What `lbproxy up` set up, put back into every configuration it reloads.
#[derive(Debug, Clone)]
struct Keep {
    /// The `[up]` group, whose instances `up` runs.
    group: String,
    /// With `--instances`: the group's backends.
    instances: Option<Vec<BackendConfig>>,
    /// The addresses the instances listen on.
    running: Vec<SocketAddr>,
    /// With --autoscale: the group's `discover` (children) and `autoscale` tables.
    scaled: Option<(DiscoverConfig, AutoscaleConfig)>,
}

/// Applies `keep` to a configuration read for a reload: the `[up]` group must be the same; with
/// `--instances` its backends are the instances again. Without it the file's list stands (its
/// weights, backups, drains), and a list that no longer matches the instances is warned about.
fn keep_instances(config: &mut Config, keep: &Keep) -> Result<(), ReloadError> {
    let group = config.up.upstream.map(|i| &mut config.upstreams[i]);
    let Some(group) = group.filter(|g| g.name == keep.group) else {
        return Err(ReloadError::NeedsRestart(vec![format!(
            "lbproxy up runs the instances of upstream \"{}\", which is no longer the [up] group; \
             restart lbproxy up to change it",
            keep.group
        )]));
    };
    if let Some((discover, autoscale)) = &keep.scaled {
        // The running instances stay the backends (the loop keeps a discovered group's).
        group.discover = Some(discover.clone());
        group.autoscale = Some(autoscale.clone());
        return Ok(());
    }
    match &keep.instances {
        Some(backends) => group.backends = backends.clone(),
        None => {
            let listed: Vec<SocketAddr> = group.backends.iter().map(|b| b.address).collect();
            if listed != keep.running {
                tracing::warn!(
                    upstream = %keep.group,
                    "the reloaded configuration lists other backends than the instances lbproxy \
                     up runs ({}); restart lbproxy up to start or stop instances",
                    addresses(&keep.running)
                );
            }
        }
    }
    Ok(())
}

fn addresses(list: &[SocketAddr]) -> String {
    let list: Vec<String> = list.iter().map(SocketAddr::to_string).collect();
    list.join(", ")
}

/// `--autoscale`: the `[up]` group's `discover` (children) and `autoscale` tables, set on
/// `config`; its backends become the instances up starts with (as many as without the flag, kept
/// within the bounds), numbered from its first backend's port.
fn autoscale_group(
    config: &mut Config,
    group_index: usize,
    args: &UpArgs,
) -> anyhow::Result<(DiscoverConfig, AutoscaleConfig)> {
    let group = &mut config.upstreams[group_index];
    let count = u32::try_from(group.backends.len()).unwrap_or(u32::MAX);
    // The file's [upstream.NAME.autoscale] when it has one, else the defaults; --min and --max
    // override its bounds.
    let file = group.autoscale.take();
    let min = args.min.or(file.as_ref().map(|a| a.min)).unwrap_or(1);
    let max = args
        .max
        .or(file.as_ref().map(|a| a.max))
        .unwrap_or((count * 2).max(4));
    anyhow::ensure!(
        min <= max && (1..=999).contains(&max),
        "--autoscale needs min ≤ max, and max between 1 and 999 (got min {min} max {max})"
    );
    // Every instance up may start must have a port.
    numbered_backends(&group.backends, max as u16)?;
    let start = count.clamp(min.max(1), max) as u16;
    group.backends = numbered_backends(&group.backends, start)?;
    anyhow::ensure!(
        crate::config::unit_template(&format!("{}@*.service", group.name)).is_some(),
        "--autoscale names instance N of upstream \"{}\" {0}@N.service: the group's name \
         cannot hold *, ? or [",
        group.name
    );
    let (discover, defaults) = instances::scaled(&group.name, group.backends[0].address, min, max);
    let autoscale = match file {
        Some(file) => AutoscaleConfig { min, max, ..file },
        None => defaults,
    };
    group.discover = Some(discover.clone());
    group.autoscale = Some(autoscale.clone());
    tracing::info!(
        target: "lbproxy::autoscale",
        upstream = %group.name,
        "lbproxy up --autoscale: {start} instance(s) to start, between {min} and {max}"
    );
    Ok((discover, autoscale))
}

fn instance_specs(config: &Config, group_index: usize) -> anyhow::Result<Vec<InstanceSpec>> {
    let group = &config.upstreams[group_index];
    let template = instance_template(config)?;
    Ok(group
        .backends
        .iter()
        .enumerate()
        .map(|(i, backend)| InstanceSpec::new(i + 1, backend.address, &template))
        .collect())
}

/// What runs each instance: `[up] command`, or the demo API.
fn instance_template(config: &Config) -> anyhow::Result<Vec<String>> {
    Ok(match &config.up.command {
        Some(command) => command.clone(),
        None => {
            let demo = locate::demo_api_binary()?;
            vec![
                demo.display().to_string(),
                "--listen".into(),
                "{address}".into(),
                "--instance".into(),
                "{instance}".into(),
            ]
        }
    })
}

/// Starts every instance in order and waits until each is ready.
fn start_all(
    specs: &[InstanceSpec],
    config: &Config,
    stop: &AtomicBool,
    instances: &mut Vec<Instance>,
) -> anyhow::Result<()> {
    for spec in specs {
        let mut instance = Instance::start(spec.clone(), &config.up.ready_path)?;
        let ready = instance.wait_ready(config.up.ready_timeout, stop);
        instances.push(instance);
        ready?;
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(())
}

fn stop_all(instances: &mut [Instance]) {
    for instance in instances.iter_mut() {
        instance.stop();
    }
}

fn print_banner<'a>(server: &Server, instances: impl Iterator<Item = &'a Instance>, args: &UpArgs) {
    say(format_args!(""));
    let running = server.control().config();
    for (name, address) in server.listen_addrs() {
        let scheme = running
            .listener(name)
            .map_or("http", |l| l.protocol.scheme());
        say(format_args!(
            "lbproxy up: proxy ({name}) listening on {scheme}://{address}/"
        ));
    }
    if let Some(admin) = server.admin_addr() {
        let ctl = crate::admin::ctl::command_for(
            args.config.config.as_deref(),
            args.config.env.as_deref(),
            running.admin.address,
            admin,
            running.admin.token.is_some(),
        );
        say(format_args!(
            "lbproxy up: dashboard on http://{admin}/ (metrics: /metrics; `{ctl} status`)"
        ));
    }
    for instance in instances {
        say(format_args!(
            "lbproxy up: instance {} on http://{}/ (pid {})",
            instance.spec.number,
            instance.spec.address,
            instance.pid()
        ));
    }
    if let Some((_, address)) = server.listen_addrs().first() {
        say(format_args!(
            "lbproxy up: try `curl -s http://{address}/` a few times: the instance rotates. Ctrl-C stops everything."
        ));
    }
}

/// A line for the person at the terminal. A closed stdout (a pipe whose reader went away) must
/// not stop the deployment, so write errors are ignored.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(list: &[&str]) -> Vec<BackendConfig> {
        list.iter()
            .map(|a| BackendConfig {
                address: a.parse().unwrap(),
                weight: NonZeroU32::MIN,
                backup: false,
                drain: false,
                canary: false,
            })
            .collect()
    }

    #[test]
    fn instances_count_up_from_the_first_backend() {
        let numbered = numbered_backends(&backends(&["127.0.0.1:8001", "127.0.0.1:8002"]), 5);
        let ports: Vec<u16> = numbered.unwrap().iter().map(|b| b.address.port()).collect();
        assert_eq!(ports, [8001, 8002, 8003, 8004, 8005]);
        assert!(numbered_backends(&backends(&["127.0.0.1:65534"]), 3).is_err());
        assert!(numbered_backends(&backends(&["127.0.0.1:8001"]), 0).is_err());
    }

    #[test]
    fn a_reload_keeps_the_instances_and_the_group() {
        let config = |backends_toml: &str| {
            crate::config::testing::valid(&format!(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [upstream.api]\nbackends = [{backends_toml}]\n"
            ))
        };
        let five = backends(&[
            "127.0.0.1:8001",
            "127.0.0.1:8002",
            "127.0.0.1:8003",
            "127.0.0.1:8004",
            "127.0.0.1:8005",
        ]);
        let keep = Keep {
            group: "api".into(),
            instances: Some(five.clone()),
            running: five.iter().map(|b| b.address).collect(),
            scaled: None,
        };
        let mut reread = config("\"127.0.0.1:8001\", \"127.0.0.1:8002\", \"127.0.0.1:8003\"");
        keep_instances(&mut reread, &keep).unwrap();
        assert_eq!(reread.upstreams[0].backends, five);

        // Without --instances the file's list stands.
        let keep = Keep {
            instances: None,
            ..keep
        };
        let mut reread = config("{ address = \"127.0.0.1:8001\", weight = 3 }");
        keep_instances(&mut reread, &keep).unwrap();
        assert_eq!(reread.upstreams[0].backends.len(), 1);
        assert_eq!(reread.upstreams[0].backends[0].weight.get(), 3);

        let keep = Keep {
            group: "web".into(),
            ..keep
        };
        let refused = keep_instances(&mut reread, &keep).unwrap_err().to_string();
        assert!(refused.contains("restart lbproxy up"), "{refused}");
    }
}
