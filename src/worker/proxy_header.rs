//! The PROXY protocol header (v1 or v2) that starts every connection of a listener with
//! `accept_proxy_protocol = true`, sent by a load balancer in front of lbproxy: who the client is.
//!
//! Flow: [`client_origin`] settles a new connection's [`ClientOrigin`]: without
//! `accept_proxy_protocol`, its TCP peer; with it, the peer must be in `trusted_proxies` (else
//! the connection is reset at once), and the header is read within `timeouts.client_header`
//! with exactly its bytes consumed: each turn peeks (`MSG_PEEK`) at what arrived, asks the
//! sans-io reader ([`crate::net::proxy_protocol_parse`]) how much of it is header, and reads
//! only that much, so the TLS handshake, the HTTP session or the tcp relay that follows sees
//! the stream from the client's first byte. The header's source becomes the client's address
//! (its destination the front the client reached); a `LOCAL` / `UNKNOWN` header leaves the peer.
//! Every refusal (untrusted peer, missing, malformed or late header) is counted as the
//! listener's `proxy_header_error`, logged at debug level and closed with a reset; a drain
//! closes a connection still waiting for its header.
//!
//! `trust_forwarded` is then whether the address that writes the HTTP requests (the header's
//! source, else the peer) is itself in `trusted_proxies`.

use crate::net::proxy_protocol_parse::{parse, Parsed, V1_MAX};
use crate::policy::origin::ClientOrigin;
use crate::runtime::context::WorkerContext;
use crate::sys::socket::reset_on_close;
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

/// The most bytes peeked in one turn: a v1 header fits (its limit is 107 bytes), a v2 one with
/// its TLVs (up to 64 KiB, never seen in practice beyond a few hundred bytes) takes a few turns.
const PEEK: usize = 512;

/// The client of a new connection; `None` when it must be closed (a missing, malformed or
/// untrusted PROXY header: counted, and the socket set to reset on close).
pub async fn client_origin(
    ctx: &WorkerContext,
    listener: usize,
    tcp: &TcpStream,
    peer: SocketAddr,
) -> Option<ClientOrigin> {
    let generation = ctx.generation();
    let config = &generation.config;
    let policy = &config.listeners[listener].policy;
    if !policy.accept_proxy_protocol {
        return Some(ClientOrigin {
            trust_forwarded: policy.trusted_proxies.contains(peer.ip()),
            ..ClientOrigin::peer(peer)
        });
    }
    let refuse = |why: &dyn std::fmt::Display| {
        tracing::debug!(
            worker = ctx.id,
            client = %peer,
            listener = %config.listeners[listener].name,
            "PROXY header refused: {why}; closing"
        );
        ctx.listeners[listener].proxy_header_error();
        reset_on_close(tcp.as_raw_fd());
        None
    };
    if !policy.trusted_proxies.contains(peer.ip()) {
        return refuse(&"the peer is not in trusted_proxies");
    }
    let limit = config.timeouts.client_header;
    let read = monoio::time::timeout(limit, read_header(tcp));
    let outcome = monoio::select! {
        outcome = read => outcome,
        // No request has started on this connection: a drain closes it at once.
        _ = ctx.drain.triggered() => return None,
    };
    let addresses = match outcome {
        Ok(Ok(addresses)) => addresses,
        Ok(Err(e)) => return refuse(&e),
        Err(_) => return refuse(&format_args!("not complete within {limit:?}")),
    };
    let (addr, destination) = match addresses {
        Some((source, destination)) => (source, Some(destination)),
        None => (peer, None),
    };
    Some(ClientOrigin {
        addr,
        trust_forwarded: policy.trusted_proxies.contains(addr.ip()),
        destination,
    })
}

/// Reads the header, consuming exactly its bytes: its `(source, destination)`, or `None` when
/// it names no client.
async fn read_header(tcp: &TcpStream) -> io::Result<Option<(SocketAddr, SocketAddr)>> {
    let fd = tcp.as_raw_fd();
    let mut header = Vec::with_capacity(V1_MAX);
    let mut peeked = [0u8; PEEK];
    loop {
        tcp.readable(false).await?;
        let n = match recv(fd, &mut peeked, libc::MSG_PEEK) {
            // Woken with nothing to read after all: wait again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            n => n?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before its header ended",
            ));
        }
        let start = header.len();
        header.extend_from_slice(&peeked[..n]);
        let (take, done) = match parse(&header) {
            Ok(Parsed::Partial) => (n, None),
            Ok(Parsed::Complete { len, addresses }) => (len - start, Some(addresses)),
            Err(malformed) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, malformed.0));
            }
        };
        // Consume what is header, and not a byte more; it was peeked, so it is all there.
        let mut consumed = 0;
        while consumed < take {
            let got = recv(fd, &mut peeked[consumed..take], 0)?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            consumed += got;
        }
        header.truncate(start + take);
        if let Some(addresses) = done {
            return Ok(addresses);
        }
    }
}

/// One non-blocking `recv` into `buf` (0: the peer closed; `WouldBlock`: nothing there yet).
fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` writable bytes; `fd` is the caller's open socket.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
