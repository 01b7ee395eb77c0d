//! Per-worker keep-alive pool of upstream connections, one idle list per backend.
//!
//! Checkout takes the most recently used connection (warmest, least likely to have been closed by
//! the backend), drops it if it has been idle past `idle_timeout`, and peeks at it without
//! blocking to detect a connection the backend closed meanwhile (stale-connection detection).
//! The worker's tick sweeps expired connections so they do not linger in CLOSE_WAIT.

use super::sys::{peek_idle, IdleState};
use crate::config::PoolConfig;
use monoio::io::{OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// An open connection to one backend, split so request upload and response download can run at
/// the same time.
#[derive(Debug)]
pub struct UpstreamConn {
    pub r: OwnedReadHalf<TcpStream>,
    pub w: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    /// Index of the backend within its group.
    pub backend: usize,
    /// Whether it came from the pool (a failure before any response byte may then be a stale
    /// connection rather than a failing backend).
    pub reused: bool,
}

impl UpstreamConn {
    pub fn new(stream: TcpStream, backend: usize) -> Self {
        let fd = stream.as_raw_fd();
        let (r, w) = stream.into_split();
        Self { r, w, fd, backend, reused: false }
    }
}

#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

#[derive(Debug)]
pub struct Pool {
    idle: RefCell<Vec<Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(backends: usize, config: &PoolConfig) -> Self {
        Self {
            idle: RefCell::new((0..backends).map(|_| Vec::new()).collect()),
            max_idle: config.max_idle_per_backend,
            idle_timeout: config.idle_timeout,
        }
    }

    /// A live idle connection to `backend`, if the pool has one.
    pub fn checkout(&self, backend: usize) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = &mut idle[backend];
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() > self.idle_timeout {
                // Everything below is older still.
                list.clear();
                return None;
            }
            if peek_idle(entry.conn.fd) == IdleState::Open {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly. Dropped when the backend's list
    /// is full.
    pub fn checkin(&self, conn: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        let list = &mut idle[conn.backend];
        if list.len() < self.max_idle {
            list.push(Idle { conn, since: Instant::now() });
        }
    }

    /// Closes connections idle for longer than `idle_timeout`.
    pub fn sweep(&self) {
        let timeout = self.idle_timeout;
        for list in self.idle.borrow_mut().iter_mut() {
            list.retain(|entry| entry.since.elapsed() <= timeout);
        }
    }

    /// Closes every idle connection (drain).
    pub fn clear(&self) {
        for list in self.idle.borrow_mut().iter_mut() {
            list.clear();
        }
    }
}
