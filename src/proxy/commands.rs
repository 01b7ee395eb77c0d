//! The worker's side of [`crate::runtime::command`]: drains the command channel on each tick and
//! applies what it says to the worker's [`WorkerContext`].

use super::context::WorkerContext;
use super::upstream::Generation;
use crate::health::HealthTable;
use crate::runtime::command::{PrepareReply, WorkerCommand};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

#[derive(Debug)]
pub struct Inbox {
    commands: Receiver<WorkerCommand>,
    /// The generation built by the last `Prepare`, waiting for its `Commit` or `Abort`.
    prepared: Option<(u64, Generation)>,
    /// The latest active-health verdicts, applied again to each committed generation.
    health: Option<Arc<HealthTable>>,
}

impl Inbox {
    pub fn new(commands: Receiver<WorkerCommand>) -> Self {
        Self {
            commands,
            prepared: None,
            health: None,
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
                reply,
            } => {
                let next = ctx.generation().next(config, ctx.id);
                self.prepared = Some((reload, next));
                let _ = reply.send(PrepareReply {
                    worker: ctx.id,
                    reload,
                    result: Ok(()),
                });
            }
            WorkerCommand::Commit { reload, done } => match self.prepared.take() {
                Some((prepared, next)) if prepared == reload => {
                    tracing::debug!(worker = ctx.id, reload, "configuration committed");
                    ctx.commit(next);
                    if let Some(table) = &self.health {
                        ctx.generation().apply_health(table, ctx.id);
                    }
                    let _ = done.send(ctx.id);
                }
                other => {
                    tracing::error!(
                        worker = ctx.id,
                        reload,
                        prepared = ?other.as_ref().map(|(n, _)| n),
                        "commit for a reload this worker did not prepare; keeping the current \
                         configuration"
                    );
                }
            },
            WorkerCommand::Abort { reload } => {
                if self.prepared.as_ref().is_some_and(|(n, _)| *n == reload) {
                    self.prepared = None;
                }
            }
            WorkerCommand::Health(table) => {
                ctx.generation().apply_health(&table, ctx.id);
                self.health = Some(table);
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
