//! One worker: the top of the data plane, one per core.
//!
//! Flow: [`spawn::spawn`] starts the worker's thread and monoio runtime; [`run_worker`] converts
//! the worker's bound listeners, reports ready, and runs one accept loop per listener
//! ([`accept`], which also runs the TLS handshake of https listeners) plus a housekeeping tick.
//! Each accepted connection runs the session of its listener's protocol: the HTTP session
//! ([`crate::l7`]) or the L4 session ([`crate::l4`]), both choosing and connecting backends
//! through [`crate::upstream`] and reading and writing through [`crate::net`].
//!
//! The tick applies the control thread's commands ([`inbox`]): a reload swaps the worker's
//! [`Generation`] between requests, a health snapshot marks backends up or down, the admin API
//! drains, enables or reweighs a backend; it advances time-driven state (ejections, slow start,
//! retry budgets), and publishes the worker's metrics ([`publish`]).
//!
//! Everything here is worker-local: no lock and no shared atomic on the request path.

mod accept;
mod admission;
mod inbox;
mod proxy_header;
mod publish;
pub mod spawn;

use crate::runtime::context::WorkerContext;
use crate::runtime::TICK;
use crate::upstream::Generation;
use spawn::WorkerSpec;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Runs one worker until it has drained. Called inside the worker's monoio runtime.
pub async fn run_worker(spec: WorkerSpec, ready: Sender<Result<(), String>>) {
    let ctx = Rc::new(WorkerContext::new(
        spec.id,
        Generation::first(spec.config.clone(), spec.id),
    ));
    for (clients, &steered) in ctx.clients.iter().zip(&spec.one_worker_per_client) {
        clients.set_one_worker_per_client(steered);
    }
    let mut commands = inbox::Inbox::new(spec.commands);
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
