//! Startup and the serving lifetime: install signal handlers, bind (or take the socket systemd
//! passed, [`crate::activation`]), warm up, announce the address on stdout, serve until the
//! graceful shutdown completes.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, info_span, warn, Instrument};

use crate::activation::Inherited;
use crate::cli::{Cli, VERSION_ENV};
use crate::faults::BadVersion;
use crate::readiness::start_warm_up;
use crate::routes::router;
use crate::shutdown::{drain_on_signal, ShutdownSignals};
use crate::state::AppState;

/// Runs one instance until it has shut down gracefully.
/// `inherited`: the listening socket systemd passed, served instead of `--listen` / 8000+N.
pub async fn run(cli: Cli, inherited: Option<Inherited>) -> anyhow::Result<()> {
    let span = info_span!("demo-api", instance = cli.instance);
    serve(cli, inherited).instrument(span).await
}

async fn serve(cli: Cli, inherited: Option<Inherited>) -> anyhow::Result<()> {
    let version = cli.version_name(std::env::var_os(VERSION_ENV))?;
    let bad_version = BadVersion::new(cli.fail_ratio, cli.delay, cli.crash_after);
    let signals = ShutdownSignals::install().context("cannot install signal handlers")?;
    let socket_activated = inherited.is_some();
    let listener = match inherited {
        Some(inherited) => adopt(&cli, inherited)?,
        None => {
            let requested = cli.listen_address()?;
            TcpListener::bind(requested)
                .await
                .with_context(|| format!("cannot listen on {requested}"))?
        }
    };
    let listen = listener
        .local_addr()
        .context("cannot read the bound address")?;

    let state = AppState::new(cli.instance, version, listen, bad_version);
    start_warm_up(state.clone(), cli.startup_delay);
    announce(cli.instance, listen);
    info!(
        %listen,
        threads = cli.threads,
        version = %state.version,
        fail_ratio = cli.fail_ratio,
        delay = ?cli.delay,
        crash_after = ?cli.crash_after,
        "serving"
    );

    let shutdown = drain_on_signal(signals, state.clone(), cli.shutdown_delay, socket_activated)
        .in_current_span();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving failed")?;
    info!("all connections closed; exiting");
    Ok(())
}

/// The socket systemd passed, as a tokio listener. `--listen` (or the 8000+N default) is not
/// used: systemd's `ListenStream=` decides the address.
fn adopt(cli: &Cli, inherited: Inherited) -> anyhow::Result<TcpListener> {
    let Inherited { listener, name, fd } = inherited;
    listener
        .set_nonblocking(true)
        .context("cannot make the passed socket non-blocking")?;
    let listener =
        TcpListener::from_std(listener).context("cannot register the passed socket with tokio")?;
    let address = listener
        .local_addr()
        .context("cannot read the passed socket's address")?;
    info!(
        fd,
        name = name.as_deref().unwrap_or("-"),
        %address,
        "using the socket passed by systemd"
    );
    if cli.listen.is_some_and(|wanted| wanted != address) {
        warn!(
            listen = ?cli.listen,
            %address,
            "--listen is ignored: serving the socket systemd passed"
        );
    }
    Ok(listener)
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
