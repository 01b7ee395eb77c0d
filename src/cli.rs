//! Command-line interface: `lbproxy serve`, `lbproxy check`, `lbproxy up`.
//!
//! The binary only parses arguments and calls into the library; every subcommand that reads a
//! configuration goes through [`crate::config::load`], so `check` validates exactly what `serve`
//! would run.

use crate::config::{self, Config};
use crate::server::Server;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML). Without it, the embedded default: 127.0.0.1:8080 →
    /// 127.0.0.1:8001..8003.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Environment overlay to merge over the base: the file's `[env.NAME]` table.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Number of API instances (listening on 127.0.0.1:8001, :8002, …). Default: one per
    /// backend of the upstream group in the config (3 with the embedded default).
    #[arg(short = 'n', long, value_name = "N")]
    pub instances: Option<u16>,
}

/// Runs the parsed command; the exit code follows the usual convention (0 ok, 1 failure).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check(args) => return check(&args),
        Command::Serve(args) => serve(&args),
        Command::Up(args) => crate::up::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads and validates the configuration named by `args`, printing every problem.
pub fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    config::load(args.config.as_deref(), args.env.as_deref())
        .map_err(|errors| anyhow::anyhow!("invalid configuration\n{errors}"))
}

fn check(args: &ConfigArgs) -> ExitCode {
    match config::load(args.config.as_deref(), args.env.as_deref()) {
        Ok(config) => {
            let listeners: Vec<String> = config
                .listeners
                .iter()
                .map(|l| format!("{} on {}", l.name, l.address))
                .collect();
            let backends: usize = config.upstreams.iter().map(|u| u.backends.len()).sum();
            println!(
                "{}: ok ({}; {} upstream group(s), {} backend(s))",
                config.source,
                listeners.join(", "),
                config.upstreams.len(),
                backends
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = Arc::new(load_config(args)?);
    raise_fd_limit();
    let server = Server::start(config).context("starting the proxy")?;
    let running = server.control().config();
    for (name, address) in server.listen_addrs() {
        let scheme = running
            .listener(name)
            .map_or("http", |l| l.protocol.scheme());
        tracing::info!("listener {name}: {scheme}://{address}/");
    }
    spawn_reload_thread(server.control())?;
    let control = server.control();
    spawn_signal_thread(move |signal| {
        tracing::info!("received {signal}; draining in-flight requests, then exiting");
        control.shutdown();
    })?;
    server.wait()?;
    tracing::info!("stopped");
    Ok(())
}

/// Raises the open-files limit to the hard limit (see [`crate::runtime::fd_limit`]).
pub fn raise_fd_limit() {
    match crate::runtime::fd_limit::raise_to_hard_limit() {
        Ok(limit) => tracing::debug!("open files limit: {limit}"),
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
}

/// Calls `on_stop` from a dedicated thread on the first SIGTERM or SIGINT.
pub fn spawn_signal_thread(
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

/// Reloads the configuration from its file on every SIGHUP. A failed reload is logged with every
/// reason and the running configuration keeps serving.
pub fn spawn_reload_thread(control: crate::server::ControlHandle) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("installing the SIGHUP handler")?;
    std::thread::Builder::new()
        .name("lbproxy-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("received SIGHUP; reloading the configuration");
                if let Err(e) = control.reload_from_source() {
                    tracing::error!("reload failed: {e}");
                }
            }
        })?;
    Ok(())
}

/// Logs to stderr; `LBPROXY_LOG` (or `RUST_LOG`) sets the filter, default `info`.
pub fn init_logging() {
    let filter = std::env::var("LBPROXY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .try_init();
}
