//! Binding listening sockets: one `SO_REUSEPORT` socket per listener per worker, so the kernel
//! spreads new connections across workers with no shared accept queue.
//!
//! All sockets are bound on the control thread before any worker starts, so a bind error is
//! reported before anything runs, and a port-0 listener (tests) gets one port shared by every
//! worker: the first bind picks it, the others reuse it.

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};

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
    fn a_taken_port_is_reported_with_its_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind_reuseport(addr, 1).unwrap_err();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
