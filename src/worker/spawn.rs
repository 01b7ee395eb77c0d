//! One worker thread: named `lbproxy-worker-N`, pinned to its CPU, running its own monoio runtime
//! until it has drained.
//!
//! Flow: [`spawn`] starts the thread; the thread builds the runtime for the resolved driver and
//! runs [`crate::worker::run_worker`], which converts the already-bound listeners, reports ready
//! through the channel, accepts until drained, and returns.

use crate::config::Config;
use crate::runtime::command::WorkerCommand;
use crate::runtime::WorkerShared;
use crate::sys::driver::Driver;
use std::net::TcpListener;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Ring size for the io_uring driver: enough submissions in flight for thousands of connections
/// per worker without `EBUSY`.
const URING_ENTRIES: u32 = 4096;

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// The worker's io_uring runtime, with cooperative task running where the kernel has it (5.19+).
///
/// By default the kernel interrupts the worker (an IPI, then task work on the way back to user
/// space) every time a socket it waits on becomes ready — on loopback, for every packet the load
/// generator or a backend sends from another core. `IORING_SETUP_COOP_TASKRUN` lets that work wait
/// until the worker next enters the kernel, which it does on every loop turn anyway; with
/// `IORING_SETUP_TASKRUN_FLAG` the ring says when work is pending. Measured with bench/ (L7
/// keep-alive, one worker): 25 → 18 µs of CPU per request. Older kernels refuse the flags, so
/// the ring is then built without them.
fn uring_runtime() -> std::io::Result<UringRuntime> {
    let mut cooperative = io_uring::IoUring::builder();
    cooperative.setup_coop_taskrun().setup_taskrun_flag();
    let build = |ring: io_uring::Builder| {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(URING_ENTRIES)
            .uring_builder(ring)
            .enable_timer()
            .build()
    };
    build(cooperative).or_else(|e| {
        tracing::debug!("io_uring without cooperative task running ({e})");
        build(io_uring::IoUring::builder())
    })
}

/// Everything a worker thread starts from.
#[derive(Debug)]
pub struct WorkerSpec {
    pub id: usize,
    /// CPU to pin to, when pinning is on.
    pub cpu: Option<usize>,
    pub driver: Driver,
    pub config: Arc<Config>,
    /// One bound listener per `config.listeners` entry, same order.
    pub listeners: Vec<TcpListener>,
    /// Per listener: every connection of one client address reaches one worker (steered by
    /// address, or one worker), so per-client limits apply whole.
    pub one_worker_per_client: Vec<bool>,
    pub shared: Arc<WorkerShared>,
    /// Commands from the control thread, applied on the worker's tick.
    pub commands: Receiver<WorkerCommand>,
}

/// Starts the worker thread. `ready` receives `Ok(())` once the worker accepts on every listener,
/// or the reason it could not start.
pub fn spawn(
    spec: WorkerSpec,
    ready: Sender<Result<(), String>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("lbproxy-worker-{}", spec.id))
        .spawn(move || {
            if let Some(cpu) = spec.cpu {
                if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                    tracing::warn!(
                        worker = spec.id,
                        cpu,
                        "could not pin worker to its CPU: {e:?}"
                    );
                }
            }
            let id = spec.id;
            if let Err(e) = run(spec, ready.clone()) {
                let _ = ready.send(Err(format!("worker {id}: {e}")));
            }
        })
}

fn run(spec: WorkerSpec, ready: Sender<Result<(), String>>) -> std::io::Result<()> {
    match spec.driver {
        Driver::IoUring => uring_runtime()?.block_on(crate::worker::run_worker(spec, ready)),
        Driver::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?
            .block_on(crate::worker::run_worker(spec, ready)),
    }
    Ok(())
}
