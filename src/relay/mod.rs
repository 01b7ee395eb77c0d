//! The two-way byte relay between a client and a backend, shared by tcp listeners and by
//! connections upgraded after `101 Switching Protocols`.
//!
//! Flow: [`run`] drives the two directions (client → backend, backend → client) at once, each a
//! future from [`copy`] or [`splice`], until
//!
//! - both have reached end of stream: each direction that reads EOF half-closes the side it
//!   writes to (`shutdown(SHUT_WR)`) and ends, while the other keeps flowing — a client that
//!   sends its request and its FIN still gets the whole response ([`End::Closed`]);
//! - either fails (a reset, a TLS error, a write to a peer that is gone): the other direction is
//!   abandoned and both connections are reset ([`sys::reset`]), so each peer reads a reset
//!   rather than a clean end it could mistake for a complete stream ([`End::Failed`]);
//! - no byte moved either way for `idle` ([`End::Idle`]): both are closed.
//!
//! Bytes are counted per direction ([`Relayed`]), for the access log.

pub mod copy;
pub mod splice;

use crate::sys::pipe as sys;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The two ends of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

/// Why one direction stopped before end of stream: which side failed, and how.
#[derive(Debug)]
pub struct Fault {
    pub side: Side,
    pub error: io::Error,
}

/// A direction of the relay: from one side to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToBackend,
    ToClient,
}

impl Direction {
    /// The side this direction reads from.
    pub fn source(self) -> Side {
        match self {
            Direction::ToBackend => Side::Client,
            Direction::ToClient => Side::Backend,
        }
    }

    /// The side this direction writes to.
    pub fn sink(self) -> Side {
        match self {
            Direction::ToBackend => Side::Backend,
            Direction::ToClient => Side::Client,
        }
    }

    /// A failed read of this direction's source.
    fn read_failed(self, error: io::Error) -> Fault {
        Fault {
            side: self.source(),
            error,
        }
    }

    /// A failed write to this direction's sink.
    fn write_failed(self, error: io::Error) -> Fault {
        Fault {
            side: self.sink(),
            error,
        }
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached end of stream.
    Closed,
    /// One side failed; both were reset.
    Failed(Fault),
    /// Nothing moved for the idle timeout; both were closed.
    Idle,
}

impl End {
    /// One word for the access log: `closed`, `client_reset`, `backend_reset`, `idle_timeout`
    /// (a failure that is not a reset, e.g. a TLS error, reads as a reset of its side: that is
    /// what the proxy then does to the other side).
    pub fn as_str(&self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Failed(Fault {
                side: Side::Client, ..
            }) => "client_reset",
            End::Failed(Fault {
                side: Side::Backend,
                ..
            }) => "backend_reset",
            End::Idle => "idle_timeout",
        }
    }
}

/// A finished relay.
#[derive(Debug)]
pub struct Relayed {
    pub end: End,
    /// Bytes read from the client and written to the backend.
    pub to_backend: u64,
    /// Bytes read from the backend and written to the client.
    pub to_client: u64,
}

/// What the two directions share: when a byte last moved, and the byte counts.
#[derive(Debug)]
pub struct Progress {
    last_activity: Cell<Instant>,
    to_backend: Cell<u64>,
    to_client: Cell<u64>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            last_activity: Cell::new(Instant::now()),
            to_backend: Cell::new(0),
            to_client: Cell::new(0),
        }
    }

    /// `bytes` were read in `direction` (and are about to be written).
    pub fn moved(&self, direction: Direction, bytes: usize) {
        let counter = match direction {
            Direction::ToBackend => &self.to_backend,
            Direction::ToClient => &self.to_client,
        };
        counter.set(counter.get() + bytes as u64);
        self.touch();
    }

    /// Bytes went out (a write made progress): the connection is not idle.
    pub fn touch(&self) {
        self.last_activity.set(Instant::now());
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let quiet = self.last_activity.get().elapsed();
            if quiet >= idle {
                return;
            }
            monoio::time::sleep(idle - quiet).await;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the two directions to the end (see the module docs), then resets both connections
/// (`client_fd`, `backend_fd`) if one failed. The caller closes them by dropping them.
pub async fn run(
    to_backend: impl Future<Output = Result<(), Fault>>,
    to_client: impl Future<Output = Result<(), Fault>>,
    progress: &Progress,
    idle: Duration,
    (client_fd, backend_fd): (RawFd, RawFd),
) -> Relayed {
    let mut to_backend = std::pin::pin!(to_backend);
    let mut to_client = std::pin::pin!(to_client);
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        if up_done && down_done {
            break End::Closed;
        }
        monoio::select! {
            result = to_backend.as_mut(), if !up_done => match result {
                Ok(()) => up_done = true,
                Err(fault) => break End::Failed(fault),
            },
            result = to_client.as_mut(), if !down_done => match result {
                Ok(()) => down_done = true,
                Err(fault) => break End::Failed(fault),
            },
            _ = progress.idle_for(idle) => break End::Idle,
        }
    };
    if matches!(end, End::Failed(_)) {
        // Best effort: a connection its peer already reset has nothing left to reset.
        let _ = sys::reset(client_fd);
        let _ = sys::reset(backend_fd);
    }
    Relayed {
        end,
        to_backend: progress.to_backend.get(),
        to_client: progress.to_client.get(),
    }
}
