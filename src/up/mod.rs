//! `lbproxy up`: the local deployment in one foreground command.
//!
//! Flow: load the config; decide the instances (one per backend of the `[up]` group, or
//! `--instances N` on 127.0.0.1:8001..); start each instance process and wait until its
//! `ready_path` answers 2xx; start the proxy in this process; print the URLs; then supervise:
//! an instance that dies is restarted with exponential backoff. On SIGINT/SIGTERM: the proxy
//! stops accepting and drains, then the instances get SIGTERM one by one (in order) and are
//! waited for, so nothing is left behind.
//!
//! Instances run in their own process group, so a Ctrl-C in the terminal reaches only us and
//! the shutdown order stays ours.

mod instance;
mod locate;

use crate::cli::{spawn_signal_thread, UpArgs};
use crate::config::{BackendConfig, Config};
use crate::server::Server;
use anyhow::Context;
use instance::{Instance, InstanceSpec};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the supervisor looks at its children.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// First port of `--instances N`: instance i listens on 127.0.0.1:(8000 + i).
const INSTANCE_BASE_PORT: u16 = 8000;

pub fn run(args: &UpArgs) -> anyhow::Result<()> {
    let mut config = crate::cli::load_config(&args.config)?;
    let group_index = config.up.upstream.context(
        "`lbproxy up` needs to know which upstream group its instances form: set `[up] upstream = \"NAME\"` \
         (or name a group `api`)",
    )?;
    if let Some(count) = args.instances {
        anyhow::ensure!(
            (1..=999).contains(&count),
            "--instances must be between 1 and 999 (got {count})"
        );
        config.upstreams[group_index].backends = (1..=count)
            .map(|i| BackendConfig {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, INSTANCE_BASE_PORT + i)),
                weight: NonZeroU32::MIN,
                backup: false,
                drain: false,
            })
            .collect();
    }
    let specs = instance_specs(&config, group_index)?;

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_thread({
        let stop = stop.clone();
        move |signal| {
            tracing::info!("received {signal}: stopping the proxy, then the instances");
            stop.store(true, Ordering::SeqCst);
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

    crate::cli::raise_fd_limit();
    let server = match Server::start(Arc::new(config.clone())) {
        Ok(server) => server,
        Err(e) => {
            stop_all(&mut instances);
            return Err(e.context("starting the proxy"));
        }
    };
    print_banner(&server, &instances);

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(SUPERVISE_EVERY);
        for instance in &mut instances {
            instance.supervise();
        }
    }

    server.control().shutdown();
    let drained = server.wait();
    stop_all(&mut instances);
    say(format_args!("lbproxy up: stopped"));
    drained
}

fn instance_specs(config: &Config, group_index: usize) -> anyhow::Result<Vec<InstanceSpec>> {
    let group = &config.upstreams[group_index];
    let template = match &config.up.command {
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
    };
    Ok(group
        .backends
        .iter()
        .enumerate()
        .map(|(i, backend)| InstanceSpec::new(i + 1, backend.address, &template))
        .collect())
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

fn print_banner(server: &Server, instances: &[Instance]) {
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
        say(format_args!(
            "lbproxy up: dashboard on http://{admin}/ (metrics: /metrics; `lbproxy ctl status`)"
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
