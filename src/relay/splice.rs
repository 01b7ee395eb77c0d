//! One direction of the relay by `splice(2)`: socket → pipe → socket, the bytes never copied
//! through user space. Plain TCP on both sides only.
//!
//! The splices are plain non-blocking syscalls issued by this worker, not io_uring operations:
//! io_uring's splice op on sockets is handed to the kernel's io-wq worker threads, which was
//! measured slower than a 64 KiB copy (bench/results/L4-RELAY.md). When a splice would block,
//! the direction waits for readiness through monoio — `readable`/`writable` on the socket, a
//! poll op with io_uring, the epoll registration with the legacy driver — and tries again. Both
//! sockets are switched to `O_NONBLOCK` first ([`prepare`]).
//!
//! Flow per chunk: splice what the source has (up to the pipe's capacity) into a pipe, then
//! splice all of it out to the sink, waiting for room as needed. The pipe comes from the
//! worker's [`PipePool`] for the chunk and goes back empty, so a connection waiting for data
//! holds no pipe, and pipes are not created and sized per connection.

use super::{Direction, Fault, Progress};
use crate::sys::pipe::{self as sys, Pipe};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;

/// What each pipe is asked to hold (`F_SETPIPE_SZ`); the kernel may grant less. 1 MiB cost a
/// quarter to a third less CPU per byte than 256 KiB or the default 64 KiB
/// (bench/results/L4-RELAY.md): one splice takes whatever the socket holds. The price is the
/// pipe's 256 pages counting against the user's `fs.pipe-user-pages-soft` (16384 pages) while
/// the pipe exists — hence pipes held only while bytes are in them, and few kept idle. Past that
/// limit Linux gives an unprivileged user's new pipes two pages: the relay still works, in small
/// chunks, and the log says so once.
pub const PIPE_SIZE: usize = 1024 * 1024;
/// Empty pipes a worker keeps for the next chunk (each is two fds, and its pages count against
/// the user's pipe limit while kept).
const MAX_IDLE_PIPES: usize = 2;

/// A worker's empty pipes.
#[derive(Debug, Default)]
pub struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    /// Set once a pipe came out smaller than asked (said once in the log).
    warned_small: std::cell::Cell<bool>,
}

impl PipePool {
    fn take(&self) -> io::Result<Pipe> {
        if let Some(pipe) = self.idle.borrow_mut().pop() {
            return Ok(pipe);
        }
        let pipe = Pipe::new(PIPE_SIZE)?;
        if pipe.capacity() < PIPE_SIZE && !self.warned_small.replace(true) {
            tracing::warn!(
                "splice pipes hold {} KiB instead of {} KiB: sysctl fs.pipe-max-size is lower, \
                 or this user's pipes reached fs.pipe-user-pages-soft (many transfers at once); \
                 relaying still works, in smaller chunks (raise the sysctl, or use \
                 relay = \"copy\")",
                pipe.capacity() / 1024,
                PIPE_SIZE / 1024
            );
        }
        Ok(pipe)
    }

    /// Takes back a pipe that is empty.
    fn put(&self, pipe: Pipe) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE_PIPES {
            idle.push(pipe);
        }
    }
}

/// Makes both sockets non-blocking, as splicing needs.
pub fn prepare(client: &TcpStream, backend: &TcpStream) -> io::Result<()> {
    sys::set_nonblocking(client.as_raw_fd())?;
    sys::set_nonblocking(backend.as_raw_fd())
}

/// Splices `from` → `to` in `direction` until end of stream, then half-closes `to`.
pub async fn direction(
    from: &TcpStream,
    to: &TcpStream,
    direction: Direction,
    pipes: &PipePool,
    progress: &Progress,
) -> Result<(), Fault> {
    let (source, sink) = (from.as_raw_fd(), to.as_raw_fd());
    loop {
        // A pipe that fails to come out of the pool fails the connection, not the worker.
        let pipe = pipes.take().map_err(|e| direction.read_failed(e))?;
        let n = match sys::splice(source, pipe.write_end(), pipe.capacity()) {
            Ok(0) => {
                pipes.put(pipe);
                return sys::shutdown_write(sink).map_err(|e| direction.write_failed(e));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                pipes.put(pipe);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read: wait without holding the pipe.
                pipes.put(pipe);
                from.readable(false)
                    .await
                    .map_err(|e| direction.read_failed(e))?;
                continue;
            }
            Err(e) => return Err(direction.read_failed(e)),
        };
        progress.moved(direction, n);
        // On failure the pipe (with bytes still in it) is dropped, not pooled.
        drain(&pipe, to, n, direction, progress).await?;
        pipes.put(pipe);
    }
}

/// Splices all `pending` bytes out of `pipe` into `to`.
async fn drain(
    pipe: &Pipe,
    to: &TcpStream,
    mut pending: usize,
    direction: Direction,
    progress: &Progress,
) -> Result<(), Fault> {
    while pending > 0 {
        match sys::splice(pipe.read_end(), to.as_raw_fd(), pending) {
            Ok(0) => return Err(direction.write_failed(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                pending -= n;
                progress.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to
                .writable(false)
                .await
                .map_err(|e| direction.write_failed(e))?,
            Err(e) => return Err(direction.write_failed(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_back_the_last_pipe_and_keeps_few() {
        let pool = PipePool::default();
        let pipes: Vec<Pipe> = (0..MAX_IDLE_PIPES + 2)
            .map(|_| pool.take().unwrap())
            .collect();
        let last = pipes.last().unwrap().write_end();
        for pipe in pipes {
            pool.put(pipe);
        }
        assert_eq!(
            pool.idle.borrow().len(),
            MAX_IDLE_PIPES,
            "the rest are closed"
        );
        let again = pool.take().unwrap();
        assert_ne!(again.write_end(), last, "the last ones put were closed");
        assert!(again.capacity() >= crate::sys::pipe::DEFAULT_PIPE_SIZE);
    }
}
