//! Which connections a listener takes: the listener's `connection_limits` (open connections on
//! the listener, open and new connections per client address) and its access list, checked when
//! a connection opens. A refused connection is closed at once with a reset and counted.
//!
//! Flow: [`admit_at_accept`] runs before a task is spawned for the socket (the cheapest place to
//! refuse: only the listener's own count is known there); once the client's address is settled
//! (after a PROXY header), [`admit_client`] checks the per-client limits and the access list and
//! returns the [`ClientSlot`] that holds the client's place until the connection ends.

use crate::config::ConnectionLimits;
use crate::policy::gcra::Gcra;
use crate::policy::origin::ClientOrigin;
use crate::runtime::context::WorkerContext;
use crate::sys::socket;
use monoio::net::TcpStream;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

/// Whether the listener takes another connection now (`max`): `false` when it is full, after
/// resetting and counting it. Each worker takes its share, ⌈max / workers⌉, against its own open
/// connections of the listener (counted from before their task starts, so a batch of accepts
/// sees the ones before it).
pub fn admit_at_accept(
    ctx: &WorkerContext,
    listener: usize,
    tcp: &TcpStream,
    _peer: SocketAddr,
) -> bool {
    let share = {
        let generation = ctx.current_generation();
        let config = &generation.config;
        let Some(max) = config.listeners[listener].policy.connection_limits.max else {
            return true;
        };
        share(max, config.runtime.workers.get())
    };
    if ctx.listeners[listener].open() < u64::from(share) {
        return true;
    }
    ctx.listeners[listener].refused_full();
    socket::reset_on_close(tcp.as_raw_fd());
    false
}

/// A worker's part of a limit of `limit` shared by `workers`: ⌈limit / workers⌉ (at least 1).
fn share(limit: u32, workers: usize) -> u32 {
    let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    limit.div_ceil(workers).max(1)
}

/// A client's place among its open connections: released when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    /// Set when the listener counts open connections per client.
    counted: Option<(Rc<WorkerContext>, usize, IpAddr)>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((ctx, listener, client)) = self.counted.take() {
            ctx.clients[listener].closed(client);
        }
    }
}

/// Checks the client of a new connection against the listener's access list and per-client
/// limits. `None`: refused (reset and counted).
pub fn admit_client(
    ctx: &Rc<WorkerContext>,
    listener: usize,
    tcp: &TcpStream,
    origin: ClientOrigin,
) -> Option<ClientSlot> {
    let generation = ctx.generation();
    let policy = &generation.config.listeners[listener].policy;
    // A connection whose requests name their client (trusted forwarded fields) is checked per
    // request instead (l7).
    if let (Some(access), false) = (&policy.access, origin.trust_forwarded) {
        if !access.allows(origin.addr.ip()) {
            ctx.listeners[listener].connection_denied();
            socket::reset_on_close(tcp.as_raw_fd());
            return None;
        }
    }
    let limits = &policy.connection_limits;
    // A trusted proxy's connection carries many clients (its requests name them): not limited
    // per client, like the access list above.
    if !limits.per_client_state() || origin.trust_forwarded {
        return Some(ClientSlot { counted: None });
    }
    let client = origin.addr.ip().to_canonical();
    let workers = generation.config.runtime.workers.get();
    match admit_per_client(ctx, listener, limits, workers, client) {
        true => Some(ClientSlot {
            counted: limits
                .per_client
                .is_some()
                .then(|| (ctx.clone(), listener, client)),
        }),
        false => {
            ctx.listeners[listener].refused_per_client();
            socket::reset_on_close(tcp.as_raw_fd());
            None
        }
    }
}

/// `per_client` and `per_client_rate` for `client`, whole when every connection of an address
/// reaches this worker, else this worker's share; counts the connection as open when admitted.
fn admit_per_client(
    ctx: &WorkerContext,
    listener: usize,
    limits: &ConnectionLimits,
    workers: usize,
    client: IpAddr,
) -> bool {
    let clients = &ctx.clients[listener];
    let ways = if clients.one_worker_per_client() {
        1
    } else {
        workers
    };
    if let Some(per_client) = limits.per_client {
        if clients.open_of(client) >= share(per_client, ways) {
            return false;
        }
    }
    if let Some(rate) = limits.per_client_rate {
        let limit = match ways {
            1 => Gcra::new(rate, limits.per_client_burst),
            _ => Gcra::split(rate, limits.per_client_burst, ways),
        };
        if !clients.check_rate(client, limit) {
            return false;
        }
    }
    if limits.per_client.is_some() {
        clients.opened(client);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn each_worker_takes_its_share_rounded_up() {
        assert_eq!(share(10, 1), 10);
        assert_eq!(share(10, 4), 3);
        assert_eq!(share(8, 4), 2);
        assert_eq!(share(1, 4), 1);
        assert_eq!(share(3, 0), 3);
    }
}
