//! A control-side thread that runs until asked to stop ([`Background`]): the health checker and
//! the discovery watcher are each one. The thread reads its stop flag on its own pace (each
//! probe round, each watcher round); [`Background::stop`] (or the drop) sets it and joins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running thread and the flag that asks it to stop.
#[derive(Debug)]
pub struct Background {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Background {
    /// Starts thread `name` running `body`, which must return soon after its flag is set.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<Background> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn({
            let stop = stop.clone();
            move || body(stop)
        })?;
        Ok(Background {
            thread: Some(thread),
            stop,
        })
    }

    /// Asks the thread to stop and waits for it.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    /// Asks the thread to stop and does not wait for it: it ends on its own (a thread blocked
    /// in a long call, such as a systemd job, finishes it first).
    pub fn detach(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
