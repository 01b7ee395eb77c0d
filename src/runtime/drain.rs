//! A worker-local drain signal: connection tasks wait on it while idle so that a shutdown closes
//! idle keep-alive connections at once, and check it between requests.
//!
//! Single-threaded (`Rc`), no lock: the worker's tick turns the cross-thread drain flag into a
//! call to [`DrainSignal::trigger`] on its own thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default, Clone)]
pub struct DrainSignal {
    inner: Rc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: Cell<bool>,
    waiters: RefCell<Waiters>,
}

/// Wakers of pending [`Triggered`] futures, in slots that each future frees when dropped, so an
/// idle connection costs O(1) per wait however many others are waiting.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl DrainSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// Marks the worker as draining and wakes every waiter. Idempotent.
    pub fn trigger(&self) {
        if !self.inner.triggered.replace(true) {
            let wakers: Vec<Waker> = self
                .inner
                .waiters
                .borrow_mut()
                .slots
                .iter_mut()
                .filter_map(Option::take)
                .collect();
            for waker in wakers {
                waker.wake();
            }
        }
    }

    /// Resolves once [`trigger`](Self::trigger) has been called.
    pub fn triggered(&self) -> Triggered {
        Triggered {
            signal: self.clone(),
            slot: None,
        }
    }
}

#[derive(Debug)]
pub struct Triggered {
    signal: DrainSignal,
    slot: Option<usize>,
}

impl Future for Triggered {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.inner.triggered.get() {
            return Poll::Ready(());
        }
        let slot = self.slot;
        let mut waiters = self.signal.inner.waiters.borrow_mut();
        match slot {
            Some(slot) => match &mut waiters.slots[slot] {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = waker;
                        slot
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Triggered {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.signal.inner.waiters.borrow_mut();
            waiters.slots[slot] = None;
            waiters.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[monoio::test(enable_timer = true)]
    async fn waiters_wake_on_trigger() {
        let signal = DrainSignal::new();
        let waiter = monoio::spawn({
            let signal = signal.clone();
            async move {
                signal.triggered().await;
                signal.is_triggered()
            }
        });
        monoio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(!signal.is_triggered());
        signal.trigger();
        assert!(waiter.await);
    }

    #[monoio::test(enable_timer = true)]
    async fn dropped_waiters_free_their_slot() {
        let signal = DrainSignal::new();
        for _ in 0..100 {
            let wait = signal.triggered();
            let _ = monoio::time::timeout(std::time::Duration::from_millis(1), wait).await;
        }
        assert_eq!(signal.inner.waiters.borrow().slots.len(), 1);
    }
}
