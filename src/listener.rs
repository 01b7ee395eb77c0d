//! Listening sockets for each configured listener, one per worker: either bound here — one
//! `SO_REUSEPORT` socket per worker, so the kernel spreads new connections across workers with no
//! shared accept queue — or inherited from systemd (socket activation, see
//! [`crate::systemd::activation`]): then every worker accepts on a duplicate of the one socket
//! systemd holds, so its queue outlives a restart of the proxy.
//!
//! All sockets are bound on the control thread before any worker starts, so a bind error is
//! reported before anything runs, and a port-0 listener (tests) gets one port shared by every
//! worker: the first bind picks it, the others reuse it.
//!
//! A listener with `worker_steering = "client_address"` gets a reuseport BPF program
//! ([`crate::sys::reuseport`]) that sends every connection of one client address to one worker:
//! the sockets are bound in worker order, so the program's index i is worker i. An inherited
//! socket is one socket shared by every worker and cannot be steered: a warning says so and the
//! kernel spreads its connections as it likes.

use crate::config::{ListenerConfig, WorkerSteering};
use crate::sys::reuseport;
use crate::systemd::activation::InheritedSockets;
use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

/// One listener's sockets, one per worker in worker order.
#[derive(Debug)]
pub struct ListenerSockets {
    pub sockets: Vec<TcpListener>,
    /// The address they accept on (port 0 resolved).
    pub bound: SocketAddr,
    /// Every connection of one client address reaches one worker: steered by address, or one
    /// worker only. Per-client limits are exact then (else each worker enforces its share).
    pub one_worker_per_client: bool,
}

/// `count` sockets for `listener` (one per worker): the inherited socket named like the
/// listener and duplicates of it, else `count` fresh `SO_REUSEPORT` binds of the configured
/// address, steered by client address when the listener asks for it.
pub fn sockets_for(
    listener: &ListenerConfig,
    count: usize,
    inherited: &mut InheritedSockets,
    only_listener: bool,
) -> anyhow::Result<ListenerSockets> {
    let steer = listener.policy.steering == WorkerSteering::ClientAddress;
    let Some(socket) = inherited.take(&listener.name, only_listener) else {
        let (sockets, bound) = bind_reuseport(listener.address, count)?;
        let steered = steer && count > 1 && steer_by_client_address(listener, &sockets);
        return Ok(ListenerSockets {
            sockets,
            bound,
            one_worker_per_client: count == 1 || steered,
        });
    };
    if steer && count > 1 {
        tracing::warn!(
            listener = %listener.name,
            "worker_steering = \"client_address\" cannot steer the one socket systemd passes \
             (every worker accepts on it): per-client connection limits are enforced per worker \
             (each allows its share); bind the listener without socket activation for exact \
             limits"
        );
    }
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
    Ok(ListenerSockets {
        sockets,
        bound,
        one_worker_per_client: count == 1,
    })
}

/// Attaches the client-address program to the group of `sockets`; `false` (after a warning)
/// when the kernel refuses it.
fn steer_by_client_address(listener: &ListenerConfig, sockets: &[TcpListener]) -> bool {
    let count = u32::try_from(sockets.len()).unwrap_or(u32::MAX);
    match reuseport::attach_client_address_steering(sockets[0].as_raw_fd(), count) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                listener = %listener.name,
                "cannot steer connections by client address ({e}): the kernel spreads them; \
                 per-client connection limits are enforced per worker (each allows its share)"
            );
            false
        }
    }
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
        let ListenerSockets { sockets, bound, .. } =
            sockets_for(&listener, 3, &mut inherited, true).unwrap();
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

    /// Which of `sockets` accepts the connection just made (polled with a deadline).
    fn accepted_by(sockets: &[TcpListener]) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            for (i, s) in sockets.iter().enumerate() {
                if s.accept().is_ok() {
                    return i;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no socket accepted");
            std::thread::yield_now();
        }
    }

    #[test]
    fn client_address_steering_sends_each_address_to_one_socket() {
        let (sockets, bound) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        reuseport::attach_client_address_steering(sockets[0].as_raw_fd(), 2).unwrap();
        let mut per_socket = [0usize; 2];
        for host in 1..=40u8 {
            let source: std::net::IpAddr = [127, 0, 1, host].into();
            let expected = reuseport::client_address_index(source, 2) as usize;
            // Several connections per address, each from its own port.
            for _ in 0..3 {
                let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                client.bind(&SocketAddr::new(source, 0).into()).unwrap();
                client.connect(&bound.into()).unwrap();
                let socket = accepted_by(&sockets);
                assert_eq!(socket, expected, "{source} landed on socket {socket}");
                per_socket[socket] += 1;
            }
        }
        assert!(per_socket.iter().all(|&n| n > 0), "{per_socket:?}");
    }

    #[test]
    fn client_address_steering_hashes_an_ipv6_source_as_computed() {
        // Loopback has one IPv6 address: over several group sizes, its connections land where
        // the xor of its four words says (a wrong offset would pick other sockets).
        let source: std::net::IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
        for size in 2..=5u32 {
            let Ok((sockets, bound)) = bind_reuseport("[::1]:0".parse().unwrap(), size as usize)
            else {
                return; // no IPv6 on this machine
            };
            reuseport::attach_client_address_steering(sockets[0].as_raw_fd(), size).unwrap();
            let expected = reuseport::client_address_index(source, size) as usize;
            for _ in 0..4 {
                let _client = std::net::TcpStream::connect(bound).unwrap();
                assert_eq!(accepted_by(&sockets), expected, "group of {size}");
            }
        }
    }
}
