//! `lbproxy-demo-api`: the demo HTTP API that stands in for a user's own service behind lbproxy.
//!
//! Several instances run behind the proxy (systemd `api@N.service` units, or `lbproxy up`). Each
//! one identifies itself (the `X-Instance` header on every response, `GET /`) so balancing is
//! visible, and offers endpoints that exercise a proxy: slow responses, arbitrary statuses,
//! streamed bodies in both directions, a WebSocket echo (`GET /ws`), a view of the request headers as received, and fault
//! injection ([`faults`]: at runtime readiness held off and every request failing; from the
//! start a bad version, with `--fail-ratio`, `--delay` and `--crash-after`). `--version NAME` (or
//! `LBPROXY_VERSION`, which a deployment's version file sets) names the version it runs, in the
//! `X-Api-Version` header and `GET /`.
//!
//! Flow: [`cli::Cli`] parses the flags → [`activation`] takes the listening socket systemd passed,
//! if any (socket activation, `api@N.socket`) → a tokio runtime with `--threads` workers starts →
//! [`server::run`] installs the signal handlers, binds (or serves the passed socket), starts the
//! warm-up ([`readiness`]) and prints the one stdout line `lbproxy-demo-api instance N listening
//! on IP:PORT` (the socket's real local address) → [`routes`] serve requests → on SIGTERM/SIGINT [`shutdown`] drains (readiness 503, `--shutdown-delay`,
//! stop accepting, let in-flight requests finish) and the process exits 0. systemd is told
//! `READY=1` and `STOPPING=1` along the way ([`systemd`]).
//!
//! Exit status: 0 after a graceful shutdown, 1 on a startup error (e.g. the address is in use, or
//! the passed descriptor is not a listening TCP socket) or
//! a second signal during the drain, 2 on bad command-line arguments, 70 for the crash
//! `--crash-after` asks for ([`crash`]).

mod activation;
mod cli;
mod crash;
mod faults;
mod params;
mod readiness;
mod routes;
mod server;
mod shutdown;
mod state;
mod streaming;
mod systemd;
mod websocket;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.prints_program_version() {
        print!("{}", cli::Cli::command().render_version());
        return ExitCode::SUCCESS;
    }
    init_logging();
    // Before the runtime starts its threads: this edits the environment (unsets LISTEN_*).
    let inherited = match activation::take_listener() {
        Ok(inherited) => inherited,
        Err(error) => {
            tracing::error!("{error:#}");
            return ExitCode::FAILURE;
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.get())
        .thread_name("demo-api-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(server::run(cli, inherited)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries only the "listening on" line), coloured only on a terminal;
/// `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
