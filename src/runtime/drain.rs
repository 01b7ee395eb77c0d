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
    waiters: RefCell<Vec<Waker>>,
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
            for waker in self.inner.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Resolves once [`trigger`](Self::trigger) has been called.
    pub fn triggered(&self) -> Triggered {
        Triggered { signal: self.clone() }
    }
}

#[derive(Debug)]
pub struct Triggered {
    signal: DrainSignal,
}

impl Future for Triggered {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &self.signal.inner;
        if inner.triggered.get() {
            return Poll::Ready(());
        }
        let mut waiters = inner.waiters.borrow_mut();
        // Waiters that were dropped leave stale wakers behind; keep the list bounded by pruning
        // wakers that would wake this same task again.
        waiters.retain(|w| !w.will_wake(cx.waker()));
        waiters.push(cx.waker().clone());
        Poll::Pending
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
}
