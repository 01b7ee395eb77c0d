//! The PROXY protocol header (v1 or v2) that starts every connection of a listener with
//! `accept_proxy_protocol = true`, sent by a load balancer in front of lbproxy: who the client is.
//!
//! Flow: [`client_origin`] settles a new connection's [`ClientOrigin`]: without
//! `accept_proxy_protocol`, its TCP peer; with it, the header is read (it must come from a peer in
//! `trusted_proxies`, complete within `timeouts.client_header`), exactly its bytes consumed, and
//! its source address becomes the client's.

use crate::policy::origin::ClientOrigin;
use crate::runtime::context::WorkerContext;
use monoio::net::TcpStream;
use std::net::SocketAddr;

/// The client of a new connection; `None` when it must be closed (a missing, malformed or
/// untrusted PROXY header: counted).
pub async fn client_origin(
    ctx: &WorkerContext,
    listener: usize,
    tcp: &TcpStream,
    peer: SocketAddr,
) -> Option<ClientOrigin> {
    let generation = ctx.generation();
    let policy = &generation.config.listeners[listener].policy;
    // SKELETON: the trust helper reads the PROXY header here.
    let _ = tcp;
    Some(ClientOrigin {
        addr: peer,
        trust_forwarded: policy.trusted_proxies.contains(peer.ip()),
    })
}
