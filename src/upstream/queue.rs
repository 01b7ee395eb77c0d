//! Waiting for a connection slot: when every usable backend of a group already has
//! `max_connections` requests in flight on this worker, a request waits here (FIFO) until an
//! attempt to one of them ends, or until `queue_timeout` — HAProxy's server `maxconn` with its
//! queue. The backends see at most their limit; a burst queues at the proxy, where waiting costs a
//! few bytes, instead of piling up on the instances or using up descriptors.
//!
//! Worker-local (`Rc`, `Cell`): [`SlotQueue::wait`] registers a waiter at the back,
//! [`SlotQueue::notify_one`] wakes the oldest live one. A woken waiter that is dropped before it
//! used its turn (its request timed out or the client left) passes the turn on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct SlotQueue {
    waiters: RefCell<VecDeque<Weak<Waiter>>>,
}

#[derive(Debug, Default)]
struct Waiter {
    woken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl SlotQueue {
    /// Resolves when a slot may have freed up (the caller chooses again: another request may have
    /// taken it first, then it waits again).
    pub fn wait(self: &Rc<Self>) -> WaitForSlot {
        WaitForSlot {
            queue: self.clone(),
            waiter: None,
        }
    }

    /// Wakes the oldest waiter still waiting, if any.
    pub fn notify_one(&self) {
        loop {
            let next = self.waiters.borrow_mut().pop_front();
            let Some(weak) = next else { return };
            if let Some(waiter) = weak.upgrade() {
                waiter.woken.set(true);
                if let Some(waker) = waiter.waker.borrow_mut().take() {
                    waker.wake();
                }
                return;
            }
        }
    }

    /// Requests waiting now (dropped waiters may still be counted until the next notify).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiters.borrow().len()
    }
}

#[derive(Debug)]
pub struct WaitForSlot {
    queue: Rc<SlotQueue>,
    waiter: Option<Rc<Waiter>>,
}

impl Future for WaitForSlot {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.waiter {
            Some(waiter) if waiter.woken.get() => {
                // Our turn is used now: nothing to pass on when we are dropped.
                self.waiter = None;
                Poll::Ready(())
            }
            Some(waiter) => {
                *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
            None => {
                let waiter = Rc::new(Waiter::default());
                *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                self.queue
                    .waiters
                    .borrow_mut()
                    .push_back(Rc::downgrade(&waiter));
                self.waiter = Some(waiter);
                Poll::Pending
            }
        }
    }
}

impl Drop for WaitForSlot {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            if waiter.woken.get() {
                // Woken but never resumed (timed out at the same moment, or the client left):
                // the freed slot goes to the next in line.
                self.queue.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[monoio::test(enable_timer = true)]
    async fn waiters_are_woken_one_at_a_time_in_order() {
        let queue = Rc::new(SlotQueue::default());
        let order = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..3 {
            let (queue, order) = (queue.clone(), order.clone());
            tasks.push(monoio::spawn(async move {
                queue.wait().await;
                order.borrow_mut().push(n);
            }));
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(queue.len(), 3);
        queue.notify_one();
        monoio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(*order.borrow(), [0]);
        queue.notify_one();
        queue.notify_one();
        for task in tasks {
            task.await;
        }
        assert_eq!(*order.borrow(), [0, 1, 2]);
    }

    #[monoio::test(enable_timer = true)]
    async fn a_waiter_that_gives_up_after_being_woken_passes_its_turn_on() {
        let queue = Rc::new(SlotQueue::default());
        let first = queue.wait();
        let mut first = Box::pin(first);
        // Registers the first waiter.
        assert!(
            monoio::time::timeout(Duration::from_millis(1), first.as_mut())
                .await
                .is_err()
        );
        let second = monoio::spawn({
            let queue = queue.clone();
            async move { queue.wait().await }
        });
        monoio::time::sleep(Duration::from_millis(1)).await;
        queue.notify_one();
        // The first was woken but leaves without taking its turn: the second gets it.
        drop(first);
        monoio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the turn was passed on");
    }

    #[monoio::test(enable_timer = true)]
    async fn a_waiter_dropped_before_being_woken_is_skipped() {
        let queue = Rc::new(SlotQueue::default());
        {
            let mut gone = Box::pin(queue.wait());
            let _ = monoio::time::timeout(Duration::from_millis(1), gone.as_mut()).await;
        }
        let waiting = monoio::spawn({
            let queue = queue.clone();
            async move { queue.wait().await }
        });
        monoio::time::sleep(Duration::from_millis(1)).await;
        queue.notify_one();
        monoio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the live waiter was woken");
    }
}
