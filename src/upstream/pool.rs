//! Keep-alive pool of idle upstream connections to one backend, on one worker.
//!
//! The rule that keeps one client from ever reading another's bytes: **a connection is pooled
//! only when nothing beyond its last response was received, and an idle connection that has
//! anything to read is never reused.** The response relay ([`crate::l7::body`]) checks the first half
//! (bytes past a response's framing that arrive with it close the connection); this pool checks
//! the second: every checkout peeks at the socket without blocking, and a connection the backend
//! closed meanwhile, or that holds bytes nobody asked for, is closed instead of reused. The
//! worker's tick also peeks at every idle connection once a second ([`Pool::sweep`]), so such a
//! connection does not even linger. A late segment that arrives after the checkout peek, while
//! the next request is already on its way, cannot be told from that request's response: no
//! HTTP/1.1 proxy can; the peek leaves that window at the microseconds between the peek and the
//! write, instead of the whole idle time.
//!
//! The peek costs one non-blocking `recv(MSG_PEEK)` per reused connection: +0.8 µs of CPU per
//! keep-alive request, measured in bench/results/NOTES.md. It replaced a rule that trusted a
//! connection idle for under a second, which is how a backend's stray bytes once reached the next
//! client.
//!
//! Checkout takes the most recently used connection (warmest, least likely to have been closed by
//! the backend) and drops any idle past the group's `idle_timeout`. What checkout and sweep found
//! is returned as [`Unsolicited`] counts, so the caller can count and log them with the backend.
//!
//! The pool belongs to the backend's worker-local state ([`crate::upstream::Backend`]), which
//! outlives configuration reloads as long as the backend stays in its group, so a reload does not
//! throw warm connections away. The settings ([`PoolConfig`]) come from the group's current
//! configuration with every call.

use crate::config::PoolConfig;
use crate::net::stream::{StreamReader, StreamWriter};
use crate::sys::socket::{peek_idle, IdleState};
use std::cell::{Cell, RefCell};
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
        }
    }
}

/// How often [`Pool::sweep`] peeks at the idle connections (it runs on every 100 ms tick; the
/// peek at checkout is what guarantees no stale byte is read, this only closes them sooner).
const SWEEP_PEEK_EVERY: Duration = Duration::from_secs(1);

/// What an idle connection holds: the socket peeked at, and for TLS also what the reader
/// already took from it (a record larger than the last read leaves plaintext in rustls, where no
/// peek sees it).
fn idle_state(conn: &UpstreamConn) -> IdleState {
    if conn.r.has_buffered() {
        return IdleState::UnexpectedData;
    }
    peek_idle(conn.fd)
}

/// Idle connections that were closed because the backend had sent bytes on them while they were
/// idle: bytes past the end of their last response, which must never be read as the next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsolicited(pub u32);

#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// Idle connections to one backend, most recently used last.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<Vec<Idle>>,
    /// When [`Pool::sweep`] last peeked at every idle connection.
    peeked_at: Cell<Option<Instant>>,
}

impl Pool {
    /// A live idle connection, if the pool has one: the most recent one not idle past
    /// `idle_timeout` whose socket has nothing to read (the backend neither closed it nor sent
    /// anything). Connections passed over are closed; those that held bytes are counted in the
    /// returned [`Unsolicited`].
    pub fn checkout(&self, settings: &PoolConfig) -> (Option<UpstreamConn>, Unsolicited) {
        let mut idle = self.idle.borrow_mut();
        let mut unsolicited = Unsolicited::default();
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() > settings.idle_timeout {
                // Everything below is older still.
                idle.clear();
                break;
            }
            match idle_state(&entry.conn) {
                IdleState::Open => {
                    let mut conn = entry.conn;
                    conn.reused = true;
                    return (Some(conn), unsolicited);
                }
                IdleState::UnexpectedData => unsolicited.0 += 1,
                IdleState::Closed => {}
            }
        }
        (None, unsolicited)
    }

    /// Returns a connection whose last exchange completed cleanly: both messages ended exactly
    /// at their framing and nothing more was read. Dropped (closed) when the pool already holds
    /// `max_idle_per_backend` connections.
    pub fn checkin(&self, settings: &PoolConfig, conn: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < settings.max_idle_per_backend {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for longer than `idle_timeout`, any beyond the idle limit (which a
    /// reload may have lowered), and — once every [`SWEEP_PEEK_EVERY`] — those the backend closed
    /// or sent bytes on while they were idle (counted in the returned [`Unsolicited`]).
    pub fn sweep(&self, settings: &PoolConfig, now: Instant) -> Unsolicited {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|entry| now.saturating_duration_since(entry.since) <= settings.idle_timeout);
        let excess = idle.len().saturating_sub(settings.max_idle_per_backend);
        // The oldest are at the front.
        idle.drain(..excess);
        let mut unsolicited = Unsolicited::default();
        let due = self
            .peeked_at
            .get()
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_PEEK_EVERY);
        if due && !idle.is_empty() {
            self.peeked_at.set(Some(now));
            idle.retain(|entry| match idle_state(&entry.conn) {
                IdleState::Open => true,
                IdleState::UnexpectedData => {
                    unsolicited.0 += 1;
                    false
                }
                IdleState::Closed => false,
            });
        }
        unsolicited
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

#[cfg(test)]
mod tests {
    //! The check-in/out rules on real sockets: a backend's side of each pooled connection is a
    //! std `TcpStream` the test writes to or closes.
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream as StdTcpStream};

    fn settings() -> PoolConfig {
        PoolConfig {
            max_idle_per_backend: 8,
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// A pooled connection and the backend's end of it.
    fn connection(listener: &TcpListener) -> (UpstreamConn, StdTcpStream) {
        let std = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (backend, _) = listener.accept().unwrap();
        std.set_nonblocking(true).unwrap();
        let tcp = monoio::net::TcpStream::from_std(std).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        (
            UpstreamConn::new(fd, crate::net::stream::plain(tcp)),
            backend,
        )
    }

    /// Waits until the kernel shows `fd` readable (what the backend sent or its close arrived).
    fn until_readable(conn: &UpstreamConn) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while peek_idle(conn.fd()) == IdleState::Open && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    fn run(test: impl FnOnce(&TcpListener)) {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            test(&listener);
        });
    }

    #[test]
    fn checkout_takes_the_most_recent_live_connection_and_marks_it_reused() {
        run(|listener| {
            let pool = Pool::default();
            let (older, _b1) = connection(listener);
            let (newer, _b2) = connection(listener);
            let newer_fd = newer.fd();
            pool.checkin(&settings(), older);
            pool.checkin(&settings(), newer);
            let (conn, unsolicited) = pool.checkout(&settings());
            let conn = conn.expect("a live connection");
            assert_eq!(conn.fd(), newer_fd, "most recently used first");
            assert!(conn.reused);
            assert_eq!(unsolicited, Unsolicited(0));
            assert_eq!(pool.idle_count(), 1);
        });
    }

    #[test]
    fn a_connection_with_bytes_nobody_asked_for_is_never_reused_and_is_counted() {
        run(|listener| {
            let pool = Pool::default();
            let (clean, _b1) = connection(listener);
            let clean_fd = clean.fd();
            let (poisoned, mut backend) = connection(listener);
            pool.checkin(&settings(), clean);
            pool.checkin(&settings(), poisoned);
            backend
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
                .unwrap();
            let idle = pool.idle.borrow();
            until_readable(&idle.last().unwrap().conn);
            drop(idle);
            // Even a connection idle for microseconds is peeked at: no trust window.
            let (conn, unsolicited) = pool.checkout(&settings());
            assert_eq!(conn.expect("the clean one").fd(), clean_fd);
            assert_eq!(unsolicited, Unsolicited(1));
            assert_eq!(pool.idle_count(), 0, "the poisoned one was closed");
        });
    }

    #[test]
    fn a_connection_the_backend_closed_is_dropped_without_counting() {
        run(|listener| {
            let pool = Pool::default();
            let (conn, backend) = connection(listener);
            pool.checkin(&settings(), conn);
            drop(backend);
            until_readable(&pool.idle.borrow()[0].conn);
            let (conn, unsolicited) = pool.checkout(&settings());
            assert!(conn.is_none());
            assert_eq!(unsolicited, Unsolicited(0));
        });
    }

    #[test]
    fn connections_idle_past_the_timeout_are_not_reused() {
        run(|listener| {
            let pool = Pool::default();
            let (conn, _backend) = connection(listener);
            pool.checkin(&settings(), conn);
            let expired = PoolConfig {
                idle_timeout: Duration::ZERO,
                ..settings()
            };
            // Anything idle for more than zero is past it.
            std::thread::sleep(Duration::from_millis(2));
            assert!(pool.checkout(&expired).0.is_none());
            assert_eq!(pool.idle_count(), 0);
        });
    }

    #[test]
    fn checkin_keeps_at_most_the_idle_limit() {
        run(|listener| {
            let pool = Pool::default();
            let one = PoolConfig {
                max_idle_per_backend: 1,
                ..settings()
            };
            let (a, _b1) = connection(listener);
            let (b, _b2) = connection(listener);
            pool.checkin(&one, a);
            pool.checkin(&one, b);
            assert_eq!(pool.idle_count(), 1);
            let none = PoolConfig {
                max_idle_per_backend: 0,
                ..settings()
            };
            pool.sweep(&none, Instant::now());
            assert_eq!(pool.idle_count(), 0, "a reload that lowers the limit");
        });
    }

    #[test]
    fn sweep_closes_poisoned_and_closed_connections_once_a_second() {
        run(|listener| {
            let pool = Pool::default();
            let (live, _b1) = connection(listener);
            let (poisoned, mut b2) = connection(listener);
            let (closed, b3) = connection(listener);
            for conn in [live, poisoned, closed] {
                pool.checkin(&settings(), conn);
            }
            let start = Instant::now();
            assert_eq!(pool.sweep(&settings(), start), Unsolicited(0));
            b2.write_all(b"x").unwrap();
            drop(b3);
            for entry in pool.idle.borrow().iter().skip(1) {
                until_readable(&entry.conn);
            }
            assert_eq!(
                pool.sweep(&settings(), start + Duration::from_millis(100)),
                Unsolicited(0),
                "not peeked again within the second"
            );
            assert_eq!(pool.idle_count(), 3);
            assert_eq!(
                pool.sweep(&settings(), start + SWEEP_PEEK_EVERY),
                Unsolicited(1)
            );
            assert_eq!(pool.idle_count(), 1, "only the live one stays");
        });
    }

    #[test]
    fn sweep_closes_connections_idle_past_the_timeout() {
        run(|listener| {
            let pool = Pool::default();
            let (conn, _backend) = connection(listener);
            pool.checkin(&settings(), conn);
            let now = Instant::now();
            pool.sweep(&settings(), now);
            assert_eq!(pool.idle_count(), 1);
            pool.sweep(
                &settings(),
                now + settings().idle_timeout + Duration::from_millis(1),
            );
            assert_eq!(pool.idle_count(), 0);
        });
    }

    #[test]
    fn a_retired_or_draining_backend_pools_nothing() {
        use crate::config::testing::valid;
        use crate::upstream::Generation;
        run(|listener| {
            let config = valid(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n",
            );
            let generation = Generation::first(std::sync::Arc::new(config), 0);
            let [serving, leaving] = [0, 1].map(|i| generation.upstreams[0].backends[i].clone());
            serving.checkin(&settings(), connection(listener).0);
            leaving.checkin(&settings(), connection(listener).0);
            assert_eq!(
                (serving.pool.idle_count(), leaving.pool.idle_count()),
                (1, 1)
            );

            leaving.retire();
            assert_eq!(
                leaving.pool.idle_count(),
                0,
                "retiring closes the idle ones"
            );
            leaving.checkin(&settings(), connection(listener).0);
            assert_eq!(
                leaving.pool.idle_count(),
                0,
                "and those still in use are not pooled"
            );

            serving.override_drain(Some(true));
            assert_eq!(
                serving.pool.idle_count(),
                0,
                "draining closes the idle ones"
            );
            serving.checkin(&settings(), connection(listener).0);
            assert_eq!(serving.pool.idle_count(), 0);
            serving.override_drain(None);
            serving.checkin(&settings(), connection(listener).0);
            assert_eq!(serving.pool.idle_count(), 1, "enabled again");
        });
    }
}
