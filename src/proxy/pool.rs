//! Per-worker keep-alive pool of upstream connections, one idle list per backend.
//!
//! Checkout takes the most recently used connection (warmest, least likely to have been closed by
//! the backend), drops it if it has been idle past `idle_timeout`, and peeks at it without
//! blocking to detect a connection the backend closed meanwhile (stale-connection detection).
//! The peek costs a syscall, so it is skipped for a request that may simply be retried on a
//! fresh connection (idempotent, no body) when the connection was idle for under
//! [`TRUST_IDLE_FOR`]: a backend rarely closes a connection that recently.
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
        Self {
            r,
            w,
            fd,
            backend,
            reused: false,
        }
    }
}

/// A connection idle for less than this is reused without a liveness peek when the request can
/// be retried anyway.
const TRUST_IDLE_FOR: Duration = Duration::from_secs(1);

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

    /// A live idle connection to `backend`, if the pool has one. `retryable`: the request can be
    /// sent again on a fresh connection if this one turns out stale.
    pub fn checkout(&self, backend: usize, retryable: bool) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = &mut idle[backend];
        while let Some(entry) = list.pop() {
            let idle_for = entry.since.elapsed();
            if idle_for > self.idle_timeout {
                // Everything below is older still.
                list.clear();
                return None;
            }
            let trusted = retryable && idle_for < TRUST_IDLE_FOR;
            if trusted || peek_idle(entry.conn.fd) == IdleState::Open {
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
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
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
