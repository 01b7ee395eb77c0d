//! Listening sockets for each configured listener, one per worker: either bound here — one
//! `SO_REUSEPORT` socket per worker, so the kernel spreads new connections across workers with no
//! shared accept queue — or inherited from systemd (socket activation, see
//! [`crate::systemd::activation`]): then every worker accepts on a duplicate of the one socket
//! systemd holds, so its queue outlives a restart of the proxy.
//!
//! All sockets are bound on the control thread before any worker starts, so a bind error is
//! reported before anything runs, and a port-0 listener (tests) gets one port shared by every
//! worker: the first bind picks it, the others reuse it.

use crate::config::ListenerConfig;
use crate::systemd::activation::InheritedSockets;
use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};

/// `count` sockets for `listener` (one per worker) and the address they accept on: the
/// inherited socket named like the listener and duplicates of it, else `count` fresh
/// `SO_REUSEPORT` binds of the configured address.
pub fn sockets_for(
    listener: &ListenerConfig,
    count: usize,
    inherited: &mut InheritedSockets,
    only_listener: bool,
) -> anyhow::Result<(Vec<TcpListener>, SocketAddr)> {
    let Some(socket) = inherited.take(&listener.name, only_listener) else {
        return bind_reuseport(listener.address, count);
    };
    let bound = socket
        .local_addr()
        .context("reading the address of the inherited socket")?;
    if bound != listener.address {
        tracing::warn!(
            listener = %listener.name,
            configured = %listener.address,
            inherited = %bound,
            "the socket systemd passed listens on another address than the configuration says; \
             using the socket (lbproxy.socket's ListenStream= decides)"
        );
    } else {
        tracing::info!(listener = %listener.name, address = %bound, "using the socket passed by systemd");
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 1..count {
        sockets.push(
            socket
                .try_clone()
                .context("duplicating the inherited socket for a worker")?,
        );
    }
    sockets.push(socket);
    Ok((sockets, bound))
}

/// Pending-connection queue per socket. The kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Binds `count` sockets on `addr` (resolving port 0 with the first). Returns the sockets and the
/// address actually bound.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> anyhow::Result<(Vec<TcpListener>, SocketAddr)> {
    let first = bind_one(addr)?;
    let bound = first.local_addr().context("reading the bound address")?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_one(bound)?);
    }
    Ok((sockets, bound))
}

fn bind_one(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("creating a socket for {addr}"))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| {
        format!(
            "binding {addr} (is another process listening there? `ss -ltnp 'sport = :{}'` tells)",
            addr.port()
        )
    })?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("listening on {addr}"))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_every_socket() {
        let (sockets, bound) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(bound.port(), 0);
        assert_eq!(sockets.len(), 3);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), bound);
        }
    }

    #[test]
    fn an_inherited_socket_is_shared_by_every_worker() {
        let inherited_socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = inherited_socket.local_addr().unwrap();
        // Configured elsewhere: the socket systemd passes wins (and a warning says so).
        let listener = crate::config::testing::valid(
            "[listener.http]\naddress = \"127.0.0.1:9\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n",
        )
        .listeners[0]
            .clone();
        let mut inherited = InheritedSockets::for_tests(vec![("http", inherited_socket)]);
        let (sockets, bound) = sockets_for(&listener, 3, &mut inherited, true).unwrap();
        assert_eq!(bound, addr);
        assert_eq!(sockets.len(), 3);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        assert!(inherited.unused_names().is_empty());
    }

    #[test]
    fn a_taken_port_is_reported_with_its_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind_reuseport(addr, 1).unwrap_err();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
