//! Who a connection's client is: the peer's address, or — on a listener with `accept_proxy_protocol`
//! — the address the PROXY header from a trusted proxy names; and whether the forwarded fields
//! of its requests (`X-Forwarded-For`, `Forwarded`) are believed.

use std::net::SocketAddr;

/// The client of one connection, settled when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The client's address: the PROXY header's source, else the TCP peer.
    pub addr: SocketAddr,
    /// `addr` is in the listener's `trusted_proxies`, so the forwarded fields of the requests on
    /// this connection are believed (the client address of each request follows them).
    pub trust_forwarded: bool,
    /// The address the client connected to, as a PROXY header names it (the load balancer's
    /// front), for the PROXY header a tcp listener's session writes to its backend; `None`:
    /// the listener's own address.
    pub destination: Option<SocketAddr>,
}

impl ClientOrigin {
    /// A connection whose client is its TCP peer, whose forwarded fields nobody vouches for.
    pub fn peer(addr: SocketAddr) -> Self {
        ClientOrigin {
            addr,
            trust_forwarded: false,
            destination: None,
        }
    }
}
