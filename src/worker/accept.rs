//! Accepting connections and handing each to the protocol of its listener — the one place where
//! listener protocols are told apart.
//!
//! Flow: [`accept_loop`] accepts until the worker drains and spawns [`connection`] for each
//! socket. `http` connections go straight to [`crate::l7::session::serve`]; `https` ones first complete their
//! TLS handshake ([`accept_tls`]) with the certificates of the configuration generation current at
//! accept time, within `timeouts.tls_handshake` (a client that connects and sends nothing, or
//! sends something that is not TLS, is closed without disturbing anyone else), and a listener
//! asking for client certificates (mTLS) renders the verified one once for the session and counts
//! it (or the handshake that failed on it); `tcp` ones are
//! relayed to a backend by [`crate::l4::session::serve`].

use super::{admission, proxy_header};
use crate::config::ListenerProtocol;
use crate::http::ClientCertificate;
use crate::l4;
use crate::l7;
use crate::net::stream::{self, StreamReader, StreamWriter};
use crate::policy::origin::ClientOrigin;
use crate::runtime::context::{ConnectionGuard, WorkerContext};
use crate::sys::socket;
use crate::tls::client_auth;
use crate::tls::stream::{handshake, HandshakeError};
use monoio::net::{TcpListener, TcpStream};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

/// How long to pause accepting after an accept error (EMFILE, ENFILE, ENOMEM) instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// After an accept completes, up to this many more connections already waiting in the queue are
/// taken at once (HAProxy's `tune.maxaccept` default): the accept loop is one task among
/// thousands, and taking one connection per turn let a burst of new clients wait seconds in the
/// kernel's queue with their requests already sent.
const ACCEPT_BATCH: usize = 64;

pub async fn accept_loop(ctx: Rc<WorkerContext>, listener_index: usize, listener: TcpListener) {
    // A drain cancels the pending accept and the loop awaits its outcome, rather than dropping
    // it: with io_uring, an accept dropped after the kernel completed it would leak that
    // connection, which the client then sees reset when the process exits — and with socket
    // activation such a connection was taken from the queue the next process would have served.
    let canceller = monoio::io::Canceller::new();
    let cancel = canceller.handle();
    monoio::spawn({
        let ctx = ctx.clone();
        async move {
            ctx.drain.triggered().await;
            canceller.cancel();
        }
    });
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((tcp, peer)) => {
                // Accepted, perhaps as the drain began: the client is waiting, so serve it.
                start(&ctx, listener_index, tcp, peer);
                if !ctx.drain.is_triggered() {
                    take_waiting(&ctx, listener_index, &listener);
                }
            }
            Err(_) if ctx.drain.is_triggered() => break,
            Err(e) => {
                tracing::warn!(worker = ctx.id, "accept failed: {e}");
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

fn start(ctx: &Rc<WorkerContext>, listener: usize, tcp: TcpStream, peer: SocketAddr) {
    if !admission::admit_at_accept(ctx, listener, &tcp, peer) {
        return;
    }
    let _ = tcp.set_nodelay(true);
    // Counted open before the task runs: the next accept of a batch sees it (`max`).
    let open = ctx.track_connection(listener);
    monoio::spawn(connection(ctx.clone(), listener, tcp, peer, open));
}

/// Takes up to [`ACCEPT_BATCH`] connections already waiting in the listener's queue, without
/// waiting for more.
fn take_waiting(ctx: &Rc<WorkerContext>, listener_index: usize, listener: &TcpListener) {
    for _ in 0..ACCEPT_BATCH {
        match socket::accept_waiting(listener.as_raw_fd()) {
            Ok(Some((std_tcp, peer))) => match TcpStream::from_std(std_tcp) {
                Ok(tcp) => start(ctx, listener_index, tcp, peer),
                Err(e) => tracing::warn!(worker = ctx.id, "cannot register a connection: {e}"),
            },
            Ok(None) => return,
            Err(e) => {
                // The awaited accept reports it (and backs off) on the next turn.
                tracing::debug!(worker = ctx.id, "accept failed: {e}");
                return;
            }
        }
    }
}

/// One accepted connection, from accept to close.
async fn connection(
    ctx: Rc<WorkerContext>,
    listener: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    _open: ConnectionGuard,
) {
    let Some(origin) = proxy_header::client_origin(&ctx, listener, &tcp, peer).await else {
        return;
    };
    let Some(_client) = admission::admit_client(&ctx, listener, &tcp, origin) else {
        return;
    };
    // A listener's protocol never changes on reload (that needs a restart).
    let protocol = ctx.generation().config.listeners[listener].protocol;
    let fd = tcp.as_raw_fd();
    // A task is allocated at the size of its future, the largest of these branches. The TLS
    // handshake and the L4 relay are about twice the size of a plain HTTP connection's future,
    // so they are boxed: an idle keep-alive HTTP connection does not carry their size
    // (one allocation per TLS or tcp connection instead).
    match protocol {
        ListenerProtocol::Http => {
            let halves = stream::plain(tcp);
            l7::session::serve(&ctx, listener, halves, peer, origin, fd, None).await;
        }
        ListenerProtocol::Https => {
            Box::pin(serve_tls(&ctx, listener, tcp, peer, origin, fd)).await;
        }
        ListenerProtocol::Tcp => {
            Box::pin(l4::session::serve(&ctx, listener, tcp, origin)).await;
        }
    }
}

/// An https connection: the TLS handshake, then HTTP over it.
async fn serve_tls(
    ctx: &Rc<WorkerContext>,
    listener: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    origin: ClientOrigin,
    fd: RawFd,
) {
    if let Some((halves, client_cert)) = accept_tls(ctx, listener, tcp, peer).await {
        l7::session::serve(ctx, listener, halves, peer, origin, fd, client_cert).await;
    }
}

/// The server side of a TLS handshake, with the client certificate it verified (mTLS). `None`:
/// it failed, timed out or the worker is draining (logged at debug level: scanners and health
/// checkers fail handshakes all day).
async fn accept_tls(
    ctx: &WorkerContext,
    listener: usize,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsAccepted> {
    let (rustls, limit, asks_certificates) = {
        let generation = ctx.generation();
        let config = &generation.config;
        let tls = config.listeners[listener].tls.as_ref()?;
        let asks = tls.client_auth.is_some();
        (tls.rustls.clone(), config.timeouts.tls_handshake, asks)
    };
    let server = match rustls::ServerConnection::new(rustls) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(worker = ctx.id, client = %peer, "cannot start a TLS session: {e}");
            return None;
        }
    };
    let handshake = monoio::time::timeout(limit, handshake(tcp, server.into()));
    let outcome = monoio::select! {
        outcome = handshake => outcome,
        // No request has started on this connection: a drain closes it at once.
        _ = ctx.drain.triggered() => return None,
    };
    match outcome {
        Ok(Ok(halves)) => {
            // Only a listener asking for certificates pays for looking (once per connection).
            let client_cert = if asks_certificates {
                let cert = halves.0.with_peer_leaf(|leaf| leaf.map(client_certificate));
                if cert.is_some() {
                    ctx.listeners[listener].client_certificate(true);
                }
                cert
            } else {
                None
            };
            Some((stream::tls(halves), client_cert))
        }
        Ok(Err(e)) => {
            if asks_certificates && refused_client_certificate(&e) {
                ctx.listeners[listener].client_certificate(false);
            }
            tracing::debug!(worker = ctx.id, client = %peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(
                worker = ctx.id,
                client = %peer,
                "TLS handshake not completed within {limit:?}; closing"
            );
            None
        }
    }
}

/// A completed handshake: the streams, and the client certificate it verified.
type TlsAccepted = ((StreamReader, StreamWriter), Option<Box<ClientCertificate>>);

/// The verified leaf as backends are told of it (`X-Client-Cert-Subject`, `-Fingerprint`).
fn client_certificate(leaf: &CertificateDer<'static>) -> Box<ClientCertificate> {
    Box::new(ClientCertificate {
        // rustls verified and so parsed it: the subject is always there.
        subject: client_auth::subject(leaf).unwrap_or_default().into(),
        fingerprint: client_auth::fingerprint(leaf).into(),
    })
}

/// Whether a handshake failed on the client's certificate: none presented where one is
/// required, or one that did not verify (unknown issuer, expired, revoked, wrong usage, bad
/// signature).
fn refused_client_certificate(error: &HandshakeError) -> bool {
    matches!(
        error,
        HandshakeError::Tls(
            rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertificate(_)
                | rustls::Error::InvalidCertRevocationList(_)
        )
    )
}
