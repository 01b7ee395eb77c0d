//! The data plane of one worker.
//!
//! Flow: [`run_worker`] converts the worker's bound listeners, reports ready, and runs one accept
//! loop per listener ([`accept`], which also runs the TLS handshake of https listeners) plus a
//! housekeeping tick. Each accepted connection runs [`client::serve`] over a plain or TLS
//! [`stream`]: read a request head, route it, and hand it to [`exchange`], which picks a backend
//! ([`select`]: balancer, health, ejection, drain, backups), streams the request body up and the
//! response back, retries what is safe to retry within the limits of [`retry`], judges the
//! backend ([`outlier`]), and returns the upstream connection to the [`pool`] when both sides
//! ended cleanly; a `101 Switching Protocols` turns the connection into the L4 relay
//! ([`body::tunnel`]). Connections of tcp listeners run [`tcp::serve`] instead: route by SNI if
//! asked, pick and connect a backend with the same selection, outlier judgement and retry
//! limits, then relay bytes both ways ([`crate::l4::relay`]).
//!
//! The tick also applies the control thread's commands ([`commands`]): a reload swaps the
//! worker's [`upstream::Generation`] between requests, a health snapshot marks backends up or
//! down, the admin API drains, enables or reweighs a backend; it advances time-driven state
//! (ejections, slow start, retry budgets), and publishes the worker's metrics ([`publish`]).
//! Each request is counted once when it ends ([`record`]).
//!
//! Everything here is worker-local: no lock and no shared atomic on the request path.

mod accept;
mod backend;
mod body;
mod client;
mod commands;
mod context;
mod error;
mod exchange;
mod io;
mod outlier;
mod pool;
mod publish;
mod queue;
mod record;
mod request_id;
mod retry;
mod route;
mod select;
mod stream;
mod sys;
mod tcp;
mod upstream;

pub use error::{reason_phrase, write_error_response};

use crate::runtime::worker::WorkerSpec;
use crate::runtime::TICK;
use context::WorkerContext;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};
use upstream::Generation;

/// Runs one worker until it has drained. Called inside the worker's monoio runtime.
pub async fn run_worker(spec: WorkerSpec, ready: Sender<Result<(), String>>) {
    let ctx = Rc::new(WorkerContext::new(
        spec.id,
        Generation::first(spec.config.clone(), spec.id),
    ));
    let mut commands = commands::Inbox::new(spec.commands);
    let mut accept_loops = Vec::new();
    for (index, std_listener) in spec.listeners.into_iter().enumerate() {
        match monoio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => accept_loops.push(monoio::spawn(accept::accept_loop(
                ctx.clone(),
                index,
                listener,
            ))),
            Err(e) => {
                let _ = ready.send(Err(format!("listener {index}: {e}")));
                return;
            }
        }
    }
    spec.shared.beat();
    let mut publisher = publish::Publisher::new(spec.driver);
    publisher.tick(&ctx, &spec.shared, Duration::ZERO);
    let _ = ready.send(Ok(()));

    // Housekeeping until a drain is requested.
    loop {
        let lag = sleep_tick().await;
        spec.shared.beat();
        commands.apply(&ctx);
        ctx.generation().tick(Instant::now(), ctx.id);
        publisher.tick(&ctx, &spec.shared, lag);
        commands.confirm();
        if spec.shared.drain_requested.load(Ordering::Relaxed) {
            break;
        }
    }

    // Drain: stop accepting, close idle connections, give in-flight requests until the deadline.
    ctx.drain.trigger();
    for handle in accept_loops {
        handle.await;
    }
    let generation = ctx.generation();
    for (_, backend) in generation.backends() {
        backend.pool.clear();
    }
    let deadline = Instant::now() + generation.config.runtime.drain_timeout;
    while ctx.open_connections() > 0 && Instant::now() < deadline {
        let lag = sleep_tick().await;
        spec.shared.beat();
        publisher.tick(&ctx, &spec.shared, lag);
    }
    publisher.tick(&ctx, &spec.shared, Duration::ZERO);
    if ctx.open_connections() > 0 {
        tracing::warn!(
            worker = ctx.id,
            open = ctx.open_connections(),
            "drain timeout reached; closing the remaining connections"
        );
    }
}

/// Sleeps one [`TICK`]; returns how much later than asked the event loop woke up.
async fn sleep_tick() -> Duration {
    let asleep = Instant::now();
    monoio::time::sleep(TICK).await;
    asleep.elapsed().saturating_sub(TICK)
}
