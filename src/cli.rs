//! Command-line interface: `lbproxy serve`, `check`, `reload`, `up`, `ctl`, `rollout`,
//! `systemd install`, and the recovery commands ([`crate::recovery`]: `config history|rollback`,
//! `backup`, `restore`).
//!
//! The binary only parses arguments and calls into the library; every subcommand that reads a
//! configuration goes through [`crate::config::load`], so `check` validates exactly what `serve`
//! would run. `serve` is systemd-aware through [`crate::systemd`]: outside systemd each of those
//! pieces does nothing.

use crate::config::{self, ConfigArgs};
use crate::control::signals;
use crate::control::systemd as control_sd;
use crate::control::systemd::reload::StateFile;
use crate::control::systemd::watchdog::Watchdog;
use crate::server::{ControlHandle, LoopOptions, Server};
use crate::systemd::activation::InheritedSockets;
use crate::systemd::{self as sd, Notifier};
use crate::up::UpArgs;
use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lbproxy",
    version,
    about = "Thread-per-core io_uring HTTP reverse proxy and load balancer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground (SIGTERM/SIGINT drain and stop it).
    Serve(ConfigArgs),
    /// Validate a configuration without binding anything; exit 0 when valid, 1 otherwise.
    Check(ConfigArgs),
    /// Local deployment: start the API instances, wait until ready, run the proxy in front.
    Up(UpArgs),
    /// Ask a running proxy to reload its configuration (SIGHUP) and wait until it serves it;
    /// exit 1 with the reasons when it refused. The units' `ExecReload=`.
    ///
    /// The pid must be `lbproxy serve` or `lbproxy up` (anything else is refused, unsignalled).
    /// The outcome is read from `$RUNTIME_DIRECTORY/reload-state`, which a unit with
    /// `RuntimeDirectory=` provides to both the proxy and this command. Without
    /// `RUNTIME_DIRECTORY` it sends the signal and exits 2: outcome unknown (0 with `--no-wait`).
    /// From a shell, `lbproxy ctl reload` waits for the outcome through the admin API instead.
    Reload(ReloadArgs),
    /// Talk to a running proxy's admin API: status, backends, drain, enable, weight, reload.
    Ctl(crate::admin::ctl::CtlArgs),
    /// Deploy a new version of a group's systemd instances, canary or blue-green, with automatic
    /// analysis and rollback: start, status, promote, abort, rollback, history.
    Deploy(crate::admin::ctl::DeployArgs),
    /// Restart the API instances one at a time through systemd, with no failed request.
    ///
    /// For each backend of an upstream group in turn: drain it, wait until nothing is in flight,
    /// `systemctl restart` its unit (api@N), wait until the proxy's health checks pass again,
    /// enable it, let it settle. Stops at the first failure, with that instance drained.
    Rollout(crate::rollout::RolloutArgs),
    /// systemd helpers: install the user units.
    #[command(subcommand)]
    Systemd(SystemdCommand),
    /// `lbproxy config history|rollback`, `lbproxy backup`, `lbproxy restore`
    /// (docs/disaster-recovery.md).
    #[command(flatten)]
    Recovery(crate::recovery::RecoveryCommand),
    /// Write the manual pages or shell completions into a directory (packaging/build.sh).
    #[command(hide = true)]
    Generate(crate::generate::GenerateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// The proxy's process id (`$MAINPID` in a unit).
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Seconds to wait for the outcome.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Send the signal and exit 0 without waiting for the outcome.
    #[arg(long)]
    pub no_wait: bool,
}

/// The state directory for deployments; `None` (with a warning: deployments refuse to start)
/// when none can be found or made.
fn deploy_state_dir() -> Option<PathBuf> {
    crate::sys::state_dir::state_dir()
        .map_err(|error| {
            tracing::warn!(
                target: "lbproxy::deploy",
                "{error}: `lbproxy deploy` is refused (deployments need a state directory)"
            );
        })
        .ok()
}

/// `lbproxy reload`'s exit status when the signal was sent but the outcome is unknown.
pub const RELOAD_OUTCOME_UNKNOWN: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum SystemdCommand {
    /// Write the user units (api@.service, api@.socket, api.target, lbproxy.service,
    /// lbproxy.socket) to
    /// ~/.config/systemd/user, running the binaries from this lbproxy's directory, and the
    /// default configuration to ~/.config/lbproxy/lbproxy.toml unless one is there.
    Install(InstallArgs),
}

#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Install for the user's systemd (`systemctl --user`). The system units come with the
    /// .deb/.rpm packages.
    #[arg(long, required = true)]
    pub user: bool,
    /// Directory holding lbproxy and lbproxy-demo-api. Default: this executable's directory.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// Runs the parsed command; the exit code follows the usual convention (0 ok, 1 failure).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check(args) => return check(&args),
        Command::Serve(args) => serve(&args),
        Command::Up(args) => crate::up::run(&args),
        Command::Reload(args) => return reload(&args),
        Command::Ctl(args) => crate::admin::ctl::run(&args),
        Command::Deploy(args) => crate::admin::ctl::deploy::run(&args),
        Command::Rollout(args) => crate::rollout::run(&args),
        Command::Systemd(SystemdCommand::Install(args)) => install(&args),
        Command::Recovery(command) => crate::recovery::run(&command),
        Command::Generate(args) => crate::generate::run(&args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &ConfigArgs) -> ExitCode {
    match config::load(args.config.as_deref(), args.env.as_deref()) {
        Ok(config) => {
            let listeners: Vec<String> = config
                .listeners
                .iter()
                .map(|l| format!("{} on {}", l.name, l.address))
                .collect();
            let discovery = match check_discovery(&config) {
                Ok(lines) => lines,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            let backends: usize = config.upstreams.iter().map(|u| u.backends.len()).sum();
            println!(
                "{}: ok ({}; {} upstream group(s), {} backend(s))",
                config.source,
                listeners.join(", "),
                config.upstreams.len(),
                backends
            );
            for line in discovery {
                println!("{line}");
            }
            for line in route_table(&config) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// Each http(s) listener's routes in the order a request tries them (first match wins), with
/// what each one matches (`route_label`) and does: `-> GROUP`, `redirect STATUS LOCATION`, plus
/// the rewrite. tcp listeners' routes are listed by server name.
fn route_table(config: &config::Config) -> Vec<String> {
    use crate::config::{PathRewrite, RouteAction};
    use crate::upstream::route::route_label;
    let mut lines = Vec::new();
    for listener in &config.listeners {
        lines.push(format!(
            "listener \"{}\" ({}): routes in the order they are tried",
            listener.name,
            listener.protocol.scheme()
        ));
        let labels: Vec<String> = listener.routes.iter().map(route_label).collect();
        let width = labels.iter().map(String::len).max().unwrap_or(0).max(7);
        lines.push(format!("  {:>3}  {:<width$}  action", "#", "matches"));
        for (index, (route, label)) in listener.routes.iter().zip(&labels).enumerate() {
            let mut action = match &route.action {
                RouteAction::Forward(group) => format!("-> {}", config.upstreams[*group].name),
                RouteAction::Redirect(redirect) => {
                    format!("redirect {} {}", redirect.status, redirect.location)
                }
            };
            match &route.rewrite {
                Some(PathRewrite::Prefix(to)) => {
                    action.push_str(&format!(" (rewrite {} -> {to})", route.path_prefix));
                }
                Some(PathRewrite::Regex { pattern, to }) => {
                    action.push_str(&format!(" (rewrite ~{} -> {to})", pattern.as_str()));
                }
                None => {}
            }
            let label = if label.is_empty() { "*" } else { label };
            lines.push(format!("  {index:>3}  {label:<width$}  {action}"));
        }
    }
    lines
}

/// For each group that discovers its backends: whether its bus answers, and which units match
/// now — one line per group; `Err` with one line per group whose bus cannot be reached.
fn check_discovery(config: &config::Config) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for group in &config.upstreams {
        let Some(discover) = &group.discover else {
            continue;
        };
        let listed = crate::systemd::bus::Manager::connect(discover.bus)
            .and_then(|manager| manager.list_units(std::slice::from_ref(&discover.systemd)));
        match listed {
            Ok(units) => lines.push(format!(
                "upstream \"{}\": discovers {} on the {} bus ({} unit(s) loaded now{}{})",
                group.name,
                discover.systemd,
                discover.bus.as_str(),
                units.len(),
                if units.is_empty() { "" } else { ": " },
                units.join(", ")
            )),
            Err(error) => errors.push(format!(
                "error: {}: upstream.{}.discover: {error}",
                config.source, group.name
            )),
        }
    }
    match errors.is_empty() {
        true => Ok(lines),
        false => Err(errors.join("\n")),
    }
}

fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
    // First, while no other thread exists: taking the activation sockets unsets LISTEN_*.
    let inherited = InheritedSockets::from_env()?;
    let config = Arc::new(config::load_from_args(args)?);
    crate::logging::set_format(config.log.format);
    // Before the proxy starts: a SIGHUP or SIGTERM while it does waits for the control loop
    // instead of ending the process.
    let signals = signals::install(control_sd::fault::announce())?;
    crate::sys::fd_limit::raise();
    let notifier = Notifier::from_env();
    // systemd's side of the control loop: STATUS=, the watchdog, RELOADING=1/READY=1 around
    // reloads and their record for `lbproxy reload`, the drain's STOPPING=1/EXTEND_TIMEOUT_USEC=.
    let options = LoopOptions {
        notifier: notifier.clone(),
        watchdog: Watchdog::from_env(),
        state_file: StateFile::from_env(),
        state_dir: deploy_state_dir(),
        // Every configuration that serves, in the state directory (`lbproxy config history`).
        history: crate::history::Recorder::from_env(),
        ..LoopOptions::default()
    };
    let server = match Server::bind(config, inherited).and_then(|bound| bound.start_with(options)) {
        Ok(server) => server,
        Err(e) => {
            notifier.status(&format!("failed to start: {e:#}"));
            return Err(e).context("starting the proxy");
        }
    };
    let running = server.control().config();
    let listening: Vec<String> = server
        .listen_addrs()
        .iter()
        .map(|(name, address)| {
            let scheme = running
                .listener(name)
                .map_or("http", |l| l.protocol.scheme());
            tracing::info!("listener {name}: {scheme}://{address}/");
            format!("{name} {address}")
        })
        .collect();
    if let Some(admin) = server.admin_addr() {
        tracing::info!("admin: http://{admin}/ (dashboard, /metrics, /api; `lbproxy ctl`)");
    }

    let control = server.control();
    // SIGHUP and the admin API's `POST /api/reload` reload the same way, one at a time, in the
    // control loop; SIGTERM/SIGINT drain.
    signals.spawn(signals::to_control(control.clone()))?;
    notifier.ready(&ready_status(&control, &listening));

    server.wait()?;
    tracing::info!("stopped");
    Ok(())
}

/// The first `STATUS=` line: what listens where.
fn ready_status(control: &ControlHandle, listening: &[String]) -> String {
    format!(
        "ready: {} workers listening on {}",
        control.worker_count(),
        listening.join(", ")
    )
}

/// `lbproxy reload`: 0 applied (or sent, with `--no-wait`), 1 refused or not a proxy, 2 sent
/// but the outcome unknown (no `RUNTIME_DIRECTORY`).
fn reload(args: &ReloadArgs) -> ExitCode {
    let state = StateFile::from_env().filter(|_| !args.no_wait);
    let timeout = Duration::from_secs(args.timeout);
    let requested = control_sd::reload::ensure_proxy(args.pid)
        .and_then(|()| control_sd::reload::request(args.pid, state.as_ref(), timeout));
    match requested {
        Ok(control_sd::reload::Requested::Applied(message)) => {
            println!("lbproxy reload: {message}");
            ExitCode::SUCCESS
        }
        Ok(control_sd::reload::Requested::Sent(_)) if args.no_wait => {
            println!("lbproxy reload: sent SIGHUP to pid {}", args.pid);
            ExitCode::SUCCESS
        }
        Ok(control_sd::reload::Requested::Sent(message)) => {
            eprintln!("lbproxy reload: {message}");
            ExitCode::from(RELOAD_OUTCOME_UNKNOWN)
        }
        Err(e) => {
            eprintln!("lbproxy reload: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn install(args: &InstallArgs) -> anyhow::Result<()> {
    debug_assert!(args.user);
    let dirs = sd::install::UserDirs::from_env()?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => sd::install::own_bin_dir()?,
    };
    let installed = sd::install::install_user(&dirs, &bin_dir)?;
    println!(
        "installed {} user units in {} (running the binaries in {})",
        installed.units.len(),
        installed.unit_dir.display(),
        installed.bin_dir.display()
    );
    if installed.config_written {
        println!(
            "wrote the default configuration to {}",
            installed.config.display()
        );
    } else {
        println!("kept the configuration in {}", installed.config.display());
    }
    match sd::install::reload_user_manager() {
        Ok(()) => println!("ran systemctl --user daemon-reload"),
        Err(why) => println!(
            "could not run systemctl --user daemon-reload ({why}); run it once your user manager runs"
        ),
    }
    if installed.demo {
        println!("next: systemctl --user start api@{{1..3}} lbproxy");
    } else {
        println!(
            "lbproxy-demo-api is not in {}: its units (api@.service, api@.socket, api.target) \
             were not installed (install the lbproxy-demo package, or `cargo install --locked --path \
             demo-api` from a clone, to have them)",
            installed.bin_dir.display()
        );
        println!(
            "next: point [upstream] in {} at your API, then systemctl --user start lbproxy",
            installed.config.display()
        );
    }
    Ok(())
}
