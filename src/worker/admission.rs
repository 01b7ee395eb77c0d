//! Which connections a listener takes: the listener's `connection_limits` (open connections on
//! the listener, open and new connections per client address) and its access list, checked when
//! a connection opens. A refused connection is closed at once with a reset and counted.
//!
//! Flow: [`admit_at_accept`] runs before a task is spawned for the socket (the cheapest place to
//! refuse: only the listener's own count is known there); once the client's address is settled
//! (after a PROXY header), [`admit_client`] checks the per-client limits and the access list and
//! returns the [`ClientSlot`] that holds the client's place until the connection ends.

use crate::policy::origin::ClientOrigin;
use crate::runtime::context::WorkerContext;
use crate::sys::socket;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Whether the listener takes another connection now (`max`): `false` when it is full, after
/// resetting and counting it.
pub fn admit_at_accept(
    ctx: &WorkerContext,
    listener: usize,
    tcp: &TcpStream,
    peer: SocketAddr,
) -> bool {
    // SKELETON: the connection-limits helper checks `connection_limits.max` here.
    let _ = (ctx, listener, tcp, peer);
    true
}

/// A client's place among its open connections: released when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    // SKELETON: the connection-limits helper keeps the per-client count here.
}

/// Checks the client of a new connection against the listener's access list and per-client
/// limits. `None`: refused (reset and counted).
pub fn admit_client(
    ctx: &WorkerContext,
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
    // SKELETON: the connection-limits helper checks per_client and per_client_rate here.
    Some(ClientSlot {})
}
