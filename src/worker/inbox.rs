//! The worker's side of [`crate::runtime::command`]: drains the command channel on each tick and
//! applies what it says to the worker's [`WorkerContext`].
//!
//! Confirmations (a committed reload, an applied backend change) are held until the worker has
//! published its metrics for the tick ([`Inbox::confirm`]), so that whoever waited for them —
//! `systemctl reload`, `lbproxy ctl drain` — reads the change in the next `/api/status` too.

use crate::health::HealthTable;
use crate::runtime::command::{BackendChange, BackendCommand, Reply, WorkerCommand};
use crate::runtime::context::WorkerContext;
use crate::upstream::Generation;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
pub struct Inbox {
    commands: Receiver<WorkerCommand>,
    /// The generation built by the last `Prepare`, waiting for its `Commit` or `Abort`, and
    /// whether runtime overrides survive its commit.
    prepared: Option<(u64, Generation, bool)>,
    /// The latest active-health verdicts, applied again to each committed generation.
    health: Option<Arc<HealthTable>>,
    /// Confirmations to send once the tick's metrics are published.
    held: Vec<Confirmation>,
}

#[derive(Debug)]
enum Confirmation {
    Commit(Sender<()>),
    Backend(Sender<Reply>, Reply),
}

impl Inbox {
    pub fn new(commands: Receiver<WorkerCommand>) -> Self {
        Self {
            commands,
            prepared: None,
            health: None,
            held: Vec::new(),
        }
    }

    /// Sends the confirmations held since the last call.
    pub fn confirm(&mut self) {
        for confirmation in self.held.drain(..) {
            match confirmation {
                Confirmation::Commit(done) => {
                    let _ = done.send(());
                }
                Confirmation::Backend(done, reply) => {
                    let _ = done.send(reply);
                }
            }
        }
    }

    /// Applies every command received since the last call.
    pub fn apply(&mut self, ctx: &WorkerContext) {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply_one(ctx, command),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn apply_one(&mut self, ctx: &WorkerContext, command: WorkerCommand) {
        match command {
            WorkerCommand::Prepare {
                reload,
                config,
                keep_overrides,
                reply,
            } => {
                let next = ctx.generation().next(config, ctx.id);
                self.prepared = Some((reload, next, keep_overrides));
                let _ = reply.send(Ok(()));
            }
            WorkerCommand::Commit { reload, done } => match self.prepared.take() {
                Some((prepared, next, keep_overrides)) if prepared == reload => {
                    tracing::debug!(worker = ctx.id, reload, "configuration committed");
                    ctx.commit(next, keep_overrides);
                    if let Some(table) = &self.health {
                        ctx.generation().apply_health(table, ctx.id);
                    }
                    self.held.push(Confirmation::Commit(done));
                }
                other => {
                    tracing::error!(
                        worker = ctx.id,
                        reload,
                        prepared = ?other.as_ref().map(|(n, _, _)| n),
                        "commit for a reload this worker did not prepare; keeping the current \
                         configuration"
                    );
                }
            },
            WorkerCommand::Abort { reload } => {
                if self.prepared.as_ref().is_some_and(|(n, _, _)| *n == reload) {
                    self.prepared = None;
                }
            }
            WorkerCommand::Health(table) => {
                ctx.generation().apply_health(&table, ctx.id);
                self.health = Some(table);
            }
            WorkerCommand::Backend(command) => {
                let result = change_backend(ctx, &command);
                self.held.push(Confirmation::Backend(command.done, result));
            }
            WorkerCommand::FaultStall => {
                tracing::error!(
                    worker = ctx.id,
                    "fault injection: this worker's event loop stops now (LBPROXY_ALLOW_FAULTS=1)"
                );
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

/// Applies an admin change to the serving generation's backend (the override lasts until the
/// next commit).
fn change_backend(ctx: &WorkerContext, command: &BackendCommand) -> Result<(), String> {
    let generation = ctx.generation();
    let group = generation
        .group(&command.group)
        .ok_or_else(|| format!("no upstream group \"{}\"", command.group))?;
    let backend = group.backend(command.address).ok_or_else(|| {
        format!(
            "upstream \"{}\" has no backend {}",
            command.group, command.address
        )
    })?;
    match command.change {
        BackendChange::Drain => backend.override_drain(Some(true)),
        BackendChange::Enable => {
            // Back from a drain (a rolling restart, maintenance): it takes its share gradually,
            // as a backend coming back up does, when `slow_start` is set.
            let was_draining = backend.is_draining();
            backend.override_drain(Some(false));
            if was_draining && backend.is_healthy() {
                backend.start_ramp(Instant::now(), group.config.slow_start);
            }
        }
        BackendChange::Weight(weight) => {
            backend.override_weight(Some(weight));
            group.weights_changed();
        }
        BackendChange::Restarted => backend.restarted(Instant::now(), group.config.slow_start),
    }
    tracing::debug!(
        worker = ctx.id,
        upstream = %command.group,
        backend = %command.address,
        change = ?command.change,
        "admin change applied"
    );
    Ok(())
}
