//! Keep-alive pool of idle upstream connections to one backend, on one worker.
//!
//! Checkout takes the most recently used connection (warmest, least likely to have been closed by
//! the backend), drops it if it has been idle past the group's `idle_timeout`, and peeks at it
//! without blocking to detect a connection the backend closed meanwhile (stale-connection
//! detection). The peek costs a syscall, so it is skipped for a request that may simply be retried
//! on a fresh connection (idempotent, no body) when the connection was idle for under
//! [`TRUST_IDLE_FOR`]: a backend rarely closes a connection that recently.
//! The worker's tick sweeps expired connections so they do not linger in CLOSE_WAIT.
//!
//! The pool belongs to the backend's worker-local state ([`super::upstream::Backend`]), which
//! outlives configuration reloads as long as the backend stays in its group, so a reload does not
//! throw warm connections away. The settings ([`PoolConfig`]) come from the group's current
//! configuration with every call.

use super::stream::{StreamReader, StreamWriter};
use super::sys::{peek_idle, IdleState};
use crate::config::PoolConfig;
use std::cell::RefCell;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// An open connection to one backend (plain or TLS), split so request upload and response
/// download can run at the same time.
#[derive(Debug)]
pub struct UpstreamConn {
    pub r: StreamReader,
    pub w: StreamWriter,
    /// The TCP socket underneath, for the liveness peek (for TLS too: a backend that closed, or
    /// sent anything while idle — an alert, `close_notify` — is not reused).
    fd: RawFd,
    /// Whether it came from the pool (a failure before any response byte may then be a stale
    /// connection rather than a failing backend).
    pub reused: bool,
    /// Peek before the next reuse even within [`TRUST_IDLE_FOR`]: its last response had no body
    /// (HEAD, 204, 304, `Content-Length: 0`), so a backend that wrongly sends one anyway would
    /// have those bytes read as the next request's response.
    pub verify_on_reuse: bool,
}

impl UpstreamConn {
    /// The TCP socket underneath.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// A fresh connection on socket `fd`.
    pub fn new(fd: RawFd, (r, w): (StreamReader, StreamWriter)) -> Self {
        Self {
            r,
            w,
            fd,
            reused: false,
            verify_on_reuse: false,
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

/// Idle connections to one backend, most recently used last.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<Vec<Idle>>,
}

impl Pool {
    /// A live idle connection, if the pool has one. `retryable`: the request can be sent again on
    /// a fresh connection if this one turns out stale.
    pub fn checkout(&self, settings: &PoolConfig, retryable: bool) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        while let Some(entry) = idle.pop() {
            let idle_for = entry.since.elapsed();
            if idle_for > settings.idle_timeout {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            let trusted = retryable && idle_for < TRUST_IDLE_FOR && !entry.conn.verify_on_reuse;
            if trusted || peek_idle(entry.conn.fd) == IdleState::Open {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly. Dropped (closed) when the pool
    /// already holds `max_idle_per_backend` connections.
    pub fn checkin(&self, settings: &PoolConfig, conn: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < settings.max_idle_per_backend {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for longer than `idle_timeout`, and any beyond the idle limit (which
    /// a reload may have lowered).
    pub fn sweep(&self, settings: &PoolConfig) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|entry| entry.since.elapsed() <= settings.idle_timeout);
        let excess = idle.len().saturating_sub(settings.max_idle_per_backend);
        // The oldest are at the front.
        idle.drain(..excess);
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Closes every idle connection (drain, or the backend left the configuration).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}
