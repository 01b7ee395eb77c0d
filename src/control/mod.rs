//! The control side: one loop that owns every change made to a running proxy from outside its
//! workers, the handle that drives it, and the pieces it runs.
//!
//! Flow: `Server::start` builds a [`ControlLoop`] over the workers' command channels and starts
//! its thread, `lbproxy-control`. Everything else talks to it through a [`ControlHandle`]
//! (cloneable, `Send`), which reads what the loop publishes ([`Shared`]: the running
//! configuration, the workers' heartbeats and metrics, the probe log, the sampler's history)
//! without waiting, and sends it [`Command`]s for changes: the signal thread ([`signals`]:
//! SIGHUP → reload, SIGTERM/SIGINT → drain, SIGUSR2 → fault), the admin API (backend drain,
//! enable, weight; reload), `lbproxy up` (its reloads) and the health checker (its verdicts).
//! The loop handles one command at a time, runs its periodic [`Job`](job::Job)s (the sampler;
//! under systemd the `STATUS=` line, the honest watchdog, the drain's progress), and ticks the
//! [`Controller`](controller::Controller)s that plug into it, executing the
//! [`Action`](controller::Action)s they return.
//!
//! Files: `control_loop.rs` (the loop), `command.rs` (what it is asked), `handle.rs` (the
//! handle), `shared.rs` (what anyone may read), `broadcast.rs` (the one
//! send-to-every-worker-and-gather primitive, [`Workers`](broadcast::Workers)), `reload.rs` (what
//! a reload may change, and the two-phase reload on every worker), `schedule.rs` (next-due
//! scheduling of jobs and controllers), `job.rs` (the job interface, the sampler's job),
//! `sampler.rs` (rates, percentiles, history), `controller.rs` (the controller interface, its
//! view and actions), `health_checker.rs` (active probes, on their own thread), `signals.rs` (the
//! one signal thread), `systemd/` (the jobs and the reload record that speak to systemd).

pub mod autoscale;
mod background;
mod broadcast;
mod command;
mod control_loop;
mod controller;
mod controllers;
pub mod discovery;
mod discovery_watcher;
mod handle;
mod health_checker;
pub mod job;
mod reload;
pub mod sampler;
mod schedule;
mod shared;
pub mod signals;
pub mod systemd;

pub use command::{channel, Command, Commands, Inbox, ReloadFrom};
pub use control_loop::{ControlLoop, LoopOptions, LoopThread};
pub use discovery_watcher::with_first_backends;
pub use handle::ControlHandle;
pub use reload::{ReloadError, ReloadReport};
pub use shared::{Counters, Shared, WorkerLink};
