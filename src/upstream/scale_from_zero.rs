//! Scale from zero: a request (or a TCP connection) to an autoscaled group that has no instance
//! at all waits for one instead of failing — Knative's activator, inside the proxy.
//!
//! When: the failover engine gave up with [`GaveUp::NoUsableBackend`] and the group has
//! `autoscale` and no backend at all ([`scaled_to_zero`]: scaled to zero, or no instance up yet).
//! The check sits on that failure path, in the sessions (`l7/exchange`, `l4/session`), so the
//! engine stays generic and a request to a group with backends pays nothing: not one more branch
//! before the engine runs.
//!
//! How: [`wait_for_instance`] waits until the worker's *current* generation has a usable backend
//! (up, not draining) in the group of the same name, then hands that generation back: the
//! caller moves the request onto it (the old generation's group is the empty one and stays so;
//! a generation never changes its backends). The wait is bounded by the group's `queue_timeout`
//! (then [`GiveUp::no_instance`], a 503 with `gave_up=no_instance`), and is counted in the
//! group's `waiting_for_instance` gauge from its start to its end, whichever way it ends (a
//! guard: a request dropped while waiting, its client gone or the worker stopping, counts
//! down too).
//!
//! Wake-ups: the new instance arrives as a generation commit (the discovery controller's
//! `SetBackends`, or a reload), so the worker wakes every waiter when it commits
//! ([`CommitSignal`], `Rc`-based: the worker is single-threaded) — the first request proceeds
//! on the commit itself, not up to a polling interval later, which is the cold start's latency
//! the issue asks to report. A backend can also become usable without a commit (its first
//! health probe passes, a drain is lifted by an operator), so a waiter re-checks every
//! [`RECHECK`] as well; that timer exists only while a request waits, so it costs nothing
//! otherwise.
//!
//! [`GaveUp::NoUsableBackend`]: super::failover::GaveUp::NoUsableBackend
//! [`GiveUp::no_instance`]: super::failover::GiveUp::no_instance

use super::{Generation, UpstreamGroup};
use crate::metrics::stats::UpstreamStats;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often a waiting request re-checks without a commit (a backend's health can change
/// without one).
pub const RECHECK: Duration = Duration::from_millis(25);

/// Whether a request that found no usable backend in `group` should wait for an instance:
/// the group autoscales and has no backend, or only draining ones — the last instance of a
/// scale to zero is leaving (its unit stops a moment later), or every instance is being
/// replaced. A group whose instances are up but unhealthy or ejected still fails at once.
#[inline]
pub fn scaled_to_zero(group: &UpstreamGroup) -> bool {
    group.config.autoscale.is_some() && group.backends.iter().all(|b| b.is_draining())
}

/// Whether some backend of `group` may take a request now (up and not draining; ejection and
/// `max_connections` are the engine's business).
fn has_usable_backend(group: &UpstreamGroup) -> bool {
    group.backends.iter().any(|b| b.admits(true))
}

/// Wakes the tasks waiting for the worker's next generation commit. Worker-local.
#[derive(Debug, Default)]
pub struct CommitSignal {
    /// Commits seen since the worker started.
    commits: Cell<u64>,
    waiters: RefCell<Vec<Weak<RefCell<Option<Waker>>>>>,
}

impl CommitSignal {
    /// A generation was committed: wakes every waiter.
    pub fn notify(&self) {
        self.commits.set(self.commits.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            if let Some(waker) = waiter.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Resolves at the next commit after this call.
    pub fn next(&self) -> NextCommit<'_> {
        NextCommit {
            signal: self,
            seen: self.commits.get(),
            slot: None,
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// See [`CommitSignal::next`].
#[derive(Debug)]
pub struct NextCommit<'a> {
    signal: &'a CommitSignal,
    seen: u64,
    /// Registered once; its waker is replaced in place on later polls.
    slot: Option<Rc<RefCell<Option<Waker>>>>,
}

impl Future for NextCommit<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.commits.get() != self.seen {
            return Poll::Ready(());
        }
        let this = &mut *self;
        match &this.slot {
            Some(slot) => *slot.borrow_mut() = Some(cx.waker().clone()),
            None => {
                let slot = Rc::new(RefCell::new(Some(cx.waker().clone())));
                this.signal.waiters.borrow_mut().push(Rc::downgrade(&slot));
                this.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

/// Counts one waiting request in the group's `waiting_for_instance` gauge while it lives.
struct Waiting<'a>(&'a UpstreamStats);

impl<'a> Waiting<'a> {
    fn start(stats: &'a UpstreamStats) -> Self {
        stats.instance_wait_started();
        Waiting(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.instance_wait_ended();
    }
}

/// Waits until the generation `current` gives has a usable backend in the group named like
/// `group` (of the generation the request started on, which has none), until `deadline`: that
/// generation and the group's index in it, or `None` at the deadline. See the module doc.
pub async fn wait_for_instance(
    group: &UpstreamGroup,
    deadline: Instant,
    current: impl Fn() -> Rc<Generation>,
    commits: &CommitSignal,
) -> Option<(Rc<Generation>, usize)> {
    let _waiting = Waiting::start(&group.state.stats);
    loop {
        // Registered before the check, so a commit between the check and the wait is not lost.
        let next_commit = commits.next();
        let generation = current();
        let found = generation
            .upstreams
            .iter()
            .position(|g| g.name == group.name)
            .filter(|&index| has_usable_backend(&generation.upstreams[index]));
        if let Some(index) = found {
            return Some((generation, index));
        }
        drop(generation);
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let recheck = monoio::time::sleep(RECHECK.min(deadline - now));
        monoio::select! {
            _ = next_commit => {}
            _ = recheck => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::testing::{self, generation};
    use std::net::SocketAddr;

    /// A generation whose group "api" autoscales, with `addresses` as its backends.
    fn autoscaled(previous: Option<&Generation>, addresses: &[SocketAddr]) -> Generation {
        let config = testing::autoscaled("http", addresses, "");
        match previous {
            Some(previous) => previous.next(config, 0),
            None => Generation::first(config, 0),
        }
    }

    #[monoio::test(enable_timer = true)]
    async fn a_commit_wakes_the_waiter_onto_the_new_generation_and_the_gauge_counts_it() {
        let current = Rc::new(RefCell::new(Rc::new(autoscaled(None, &[]))));
        let commits = Rc::new(CommitSignal::default());
        let first = current.borrow().clone();
        assert!(scaled_to_zero(&first.upstreams[0]));
        let waiter = monoio::spawn({
            let (current, commits, first) = (current.clone(), commits.clone(), first.clone());
            async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                let get = || current.borrow().clone();
                wait_for_instance(&first.upstreams[0], deadline, get, &commits)
                    .await
                    .map(|(g, i)| (g.number, i))
            }
        });
        monoio::time::sleep(Duration::from_millis(5)).await;
        let waiting = || {
            first.upstreams[0]
                .state
                .stats
                .snapshot()
                .waiting_for_instance
        };
        assert_eq!(waiting(), 1);
        assert_eq!(commits.registered(), 1);
        let next = autoscaled(Some(&first), &["127.0.0.1:1".parse().unwrap()]);
        *current.borrow_mut() = Rc::new(next);
        let committed = Instant::now();
        commits.notify();
        assert_eq!(waiter.await, Some((1, 0)));
        assert!(committed.elapsed() < RECHECK, "woken by the commit");
        assert_eq!(waiting(), 0);
    }

    #[monoio::test(enable_timer = true)]
    async fn nothing_appearing_ends_at_the_deadline_and_the_gauge_goes_back_to_zero() {
        let first = Rc::new(autoscaled(None, &[]));
        let commits = CommitSignal::default();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(60);
        let got = wait_for_instance(&first.upstreams[0], deadline, || first.clone(), &commits);
        assert!(got.await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert_eq!(
            first.upstreams[0]
                .state
                .stats
                .snapshot()
                .waiting_for_instance,
            0
        );
    }

    #[monoio::test(enable_timer = true)]
    async fn a_waiter_dropped_while_waiting_counts_down() {
        let first = Rc::new(autoscaled(None, &[]));
        let commits = CommitSignal::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let wait = wait_for_instance(&first.upstreams[0], deadline, || first.clone(), &commits);
        let gone = monoio::time::timeout(Duration::from_millis(10), wait).await;
        assert!(gone.is_err());
        assert_eq!(
            first.upstreams[0]
                .state
                .stats
                .snapshot()
                .waiting_for_instance,
            0
        );
    }

    #[test]
    fn only_an_autoscaled_group_without_backends_waits() {
        let empty = autoscaled(None, &[]);
        assert!(scaled_to_zero(&empty.upstreams[0]));
        let one = autoscaled(None, &["127.0.0.1:1".parse().unwrap()]);
        assert!(!scaled_to_zero(&one.upstreams[0]));
        let fixed = generation("http", "[upstream.api]\nbackends = [\"127.0.0.1:1\"]\n");
        assert!(!scaled_to_zero(&fixed.upstreams[0]));
    }
}
