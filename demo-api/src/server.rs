//! Startup and the serving lifetime: install signal handlers, bind, warm up, announce the
//! address on stdout, serve until the graceful shutdown completes.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, info_span, warn, Instrument};

use crate::cli::Cli;
use crate::readiness::start_warm_up;
use crate::routes::router;
use crate::shutdown::{drain_on_signal, ShutdownSignals};
use crate::state::AppState;

/// Runs one instance until it has shut down gracefully.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let span = info_span!("demo-api", instance = cli.instance);
    serve(cli).instrument(span).await
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install().context("cannot install signal handlers")?;
    let requested = cli.listen_address()?;
    let listener = TcpListener::bind(requested)
        .await
        .with_context(|| format!("cannot listen on {requested}"))?;
    let listen = listener
        .local_addr()
        .context("cannot read the bound address")?;

    let state = AppState::new(cli.instance, listen);
    start_warm_up(state.clone(), cli.startup_delay);
    announce(cli.instance, listen);
    info!(%listen, threads = cli.threads, "serving");

    let shutdown = drain_on_signal(signals, state.clone(), cli.shutdown_delay).in_current_span();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving failed")?;
    info!("all connections closed; exiting");
    Ok(())
}

/// The one stdout line, which `lbproxy up` and the tests read to learn the port:
/// `lbproxy-demo-api instance N listening on IP:PORT`.
fn announce(instance: u16, listen: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(
        stdout,
        "lbproxy-demo-api instance {instance} listening on {listen}"
    )
    .and_then(|()| stdout.flush());
    if let Err(error) = written {
        warn!("cannot write the listening line to stdout: {error}");
    }
}
