//! The one way the control side talks to every worker: send each the same command, then collect
//! every answer within a deadline, knowing which worker did not answer.
//!
//! A reload's `Prepare` and `Commit` and the admin API's backend changes (drain, enable, weight)
//! all need exactly this. Each worker gets a reply channel of its own, so an answer is attributed
//! by where it arrives (not by trusting a field in it), and a worker that has exited — its command
//! channel closed, or the command dropped unanswered — is known at once instead of at the
//! deadline. Commands that need no answer (`Abort`, health verdicts, fault injection) go out with
//! [`Workers::broadcast`], which reports the workers that are gone.
//!
//! A worker answers on its housekeeping tick ([`crate::runtime::TICK`], 100 ms), so a gather
//! normally returns within one or two ticks; the deadline only matters when a worker is stuck or
//! draining (a draining worker applies no more commands).

use crate::runtime::command::WorkerCommand;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// The control loop's end of every worker's command channel, by worker id.
#[derive(Debug)]
pub struct Workers {
    senders: Vec<Sender<WorkerCommand>>,
}

/// One worker's answer to a gathered command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    Replied(R),
    /// No answer within the deadline: the worker is stuck, or draining.
    Silent,
    /// The worker has exited: the command could not be sent, or it was dropped unanswered.
    Gone,
}

/// Every worker's answer, by worker id, and how long the gather took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered<R> {
    pub answers: Vec<Answer<R>>,
    pub waited: Duration,
}

impl<R> Gathered<R> {
    /// `workers` workers, none of which could be reached (the control loop has exited).
    pub fn unreachable(workers: usize) -> Self {
        Self {
            answers: (0..workers).map(|_| Answer::Gone).collect(),
            waited: Duration::ZERO,
        }
    }

    /// The replies, with the id of the worker that gave each.
    pub fn replies(&self) -> impl Iterator<Item = (usize, &R)> {
        self.answers
            .iter()
            .enumerate()
            .filter_map(|(worker, answer)| match answer {
                Answer::Replied(reply) => Some((worker, reply)),
                Answer::Silent | Answer::Gone => None,
            })
    }

    /// The workers that did not answer in time (stuck or draining).
    pub fn silent(&self) -> Vec<usize> {
        self.ids(|a| matches!(a, Answer::Silent))
    }

    /// The workers that have exited.
    pub fn gone(&self) -> Vec<usize> {
        self.ids(|a| matches!(a, Answer::Gone))
    }

    /// Whether every worker answered.
    pub fn all_replied(&self) -> bool {
        self.answers.iter().all(|a| matches!(a, Answer::Replied(_)))
    }

    fn ids(&self, which: impl Fn(&Answer<R>) -> bool) -> Vec<usize> {
        (0..self.answers.len())
            .filter(|&worker| which(&self.answers[worker]))
            .collect()
    }
}

impl Workers {
    pub fn new(senders: Vec<Sender<WorkerCommand>>) -> Self {
        Self { senders }
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Sends `command` to worker `worker` alone; false when it has exited or does not exist.
    pub fn send_to(&self, worker: usize, command: WorkerCommand) -> bool {
        self.senders
            .get(worker)
            .is_some_and(|s| s.send(command).is_ok())
    }

    /// Sends the command `make` builds for each worker id to that worker, without waiting for
    /// anything. Returns the workers that have exited.
    pub fn broadcast(&self, mut make: impl FnMut(usize) -> WorkerCommand) -> Vec<usize> {
        (0..self.senders.len())
            .filter(|&worker| !self.send_to(worker, make(worker)))
            .collect()
    }

    /// Sends every worker the command `make` builds from its id and a reply sender of its own,
    /// then waits until each has replied, or `within` has passed. Replies that arrived by the
    /// deadline all count, whatever order the workers answered in.
    pub fn gather<R>(
        &self,
        within: Duration,
        mut make: impl FnMut(usize, Sender<R>) -> WorkerCommand,
    ) -> Gathered<R> {
        let started = Instant::now();
        let deadline = started + within;
        let pending: Vec<_> = (0..self.senders.len())
            .map(|worker| {
                let (reply, replies) = mpsc::channel();
                // A failed send drops the command, and the reply sender inside it, with it.
                self.send_to(worker, make(worker, reply)).then_some(replies)
            })
            .collect();
        let answers = pending
            .into_iter()
            .map(|replies| {
                let Some(replies) = replies else {
                    return Answer::Gone;
                };
                match replies.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(reply) => Answer::Replied(reply),
                    Err(RecvTimeoutError::Timeout) => Answer::Silent,
                    Err(RecvTimeoutError::Disconnected) => Answer::Gone,
                }
            })
            .collect();
        Gathered {
            answers,
            waited: started.elapsed(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::command::{BackendChange, BackendCommand, Reply};
    use std::sync::mpsc::Receiver;

    /// How a fake worker treats the commands it receives.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Behaviour {
        /// Answers every command, as a worker's tick does.
        Answers,
        /// Answers nothing (a stuck worker), keeping its channel open.
        Silent,
        /// Has exited: its channel is closed.
        Exited,
        /// Answers, but refuses to prepare a reload.
        RefusesReloads,
    }

    /// Workers on threads of their own that answer as `behaviours` say, and the log of what each
    /// received (`"worker N: Command"`, in order).
    pub(crate) fn fake_workers(
        behaviours: &[Behaviour],
    ) -> (Workers, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let senders = behaviours
            .iter()
            .enumerate()
            .map(|(worker, &behaviour)| {
                let (sender, commands) = mpsc::channel();
                match behaviour {
                    Behaviour::Exited => drop(commands),
                    _ => {
                        let log = log.clone();
                        std::thread::spawn(move || fake_worker(worker, behaviour, &commands, &log));
                    }
                }
                sender
            })
            .collect();
        (Workers::new(senders), log)
    }

    fn fake_worker(
        worker: usize,
        behaviour: Behaviour,
        commands: &Receiver<WorkerCommand>,
        log: &std::sync::Mutex<Vec<String>>,
    ) {
        // Replies kept unanswered by a silent worker, so they stay open until it exits.
        let mut held = Vec::new();
        for command in commands {
            let name = match &command {
                WorkerCommand::Prepare {
                    keep_overrides: true,
                    ..
                } => "Prepare (keeping overrides)".to_owned(),
                WorkerCommand::Prepare { .. } => "Prepare".to_owned(),
                WorkerCommand::Commit { .. } => "Commit".to_owned(),
                WorkerCommand::Abort { .. } => "Abort".to_owned(),
                WorkerCommand::FaultStall => "FaultStall".to_owned(),
                WorkerCommand::Health(_) => "Health".to_owned(),
                WorkerCommand::Backend(c) => {
                    format!("Backend {} {} {:?}", c.group, c.address, c.change)
                }
            };
            log.lock().unwrap().push(format!("worker {worker}: {name}"));
            if behaviour == Behaviour::Silent {
                held.push(command);
                continue;
            }
            match command {
                WorkerCommand::Prepare { reply, .. } => {
                    let result = match behaviour {
                        Behaviour::RefusesReloads => Err("no room".to_owned()),
                        _ => Ok(()),
                    };
                    let _ = reply.send(result);
                }
                WorkerCommand::Commit { done, .. } => {
                    let _ = done.send(());
                }
                WorkerCommand::Backend(BackendCommand { done, .. }) => {
                    let _ = done.send(Ok(()));
                }
                WorkerCommand::Abort { .. }
                | WorkerCommand::FaultStall
                | WorkerCommand::Health(_) => {}
            }
        }
    }

    fn drain(_worker: usize, done: Sender<Reply>) -> WorkerCommand {
        WorkerCommand::Backend(BackendCommand {
            group: "api".into(),
            address: "127.0.0.1:8001".parse().unwrap(),
            change: BackendChange::Drain,
            done,
        })
    }

    #[test]
    fn every_answer_is_gathered_by_worker() {
        let (workers, log) = fake_workers(&[Behaviour::Answers; 3]);
        let gathered = workers.gather(Duration::from_secs(5), drain);
        assert!(gathered.all_replied(), "{gathered:?}");
        let replies: Vec<(usize, &Reply)> = gathered.replies().collect();
        assert_eq!(replies, [(0, &Ok(())), (1, &Ok(())), (2, &Ok(()))]);
        assert!(gathered.waited < Duration::from_secs(5));
        assert_eq!(log.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_silent_worker_is_named_once_the_deadline_passed() {
        let (workers, _log) =
            fake_workers(&[Behaviour::Answers, Behaviour::Silent, Behaviour::Answers]);
        let within = Duration::from_millis(200);
        let gathered = workers.gather(within, drain);
        assert_eq!(gathered.silent(), [1]);
        assert!(gathered.gone().is_empty());
        assert_eq!(gathered.replies().count(), 2);
        assert!(gathered.waited >= within, "{:?}", gathered.waited);
    }

    #[test]
    fn an_exited_worker_is_reported_at_once() {
        let (workers, _log) = fake_workers(&[Behaviour::Exited, Behaviour::Answers]);
        let gathered = workers.gather(Duration::from_secs(5), drain);
        assert_eq!(gathered.gone(), [0]);
        assert!(gathered.silent().is_empty());
        assert!(
            gathered.waited < Duration::from_secs(1),
            "no wait for the deadline"
        );
        assert_eq!(workers.broadcast(|_| WorkerCommand::FaultStall), [0]);
    }
}
