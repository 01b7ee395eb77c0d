//! The client side of one HTTP/1.1 connection as the session, the exchange and the body relay
//! share it: its streams and read buffer ([`ClientConn`]), the request being served
//! ([`PendingRequest`]), and the two ways the proxy ends a connection itself
//! ([`respond_and_close`], [`linger_close`]).

use crate::config::RouteConfig;
use crate::http::compress::Choice;
use crate::http::write_error_response;
use crate::http::ClientCertificate;
use crate::http::{Method, RequestBody, Version};
use crate::net::io::{write_all_within, QuietReadCanceller};
use crate::net::stream::{StreamReader, StreamWriter};
use crate::policy::origin::ClientOrigin;
use crate::upstream::select::RequestKeys;
use crate::upstream::Generation;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// After an error response, how long we keep reading (and discarding) what the client still sends,
/// so that closing does not reset the connection before the client has read our response.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 1 << 20;
/// The client side of a connection (plain or TLS). `buf` holds bytes read but not yet consumed: a partial head,
/// body bytes that arrived with the head, or the next pipelined request.
#[derive(Debug)]
pub struct ClientConn {
    pub r: StreamReader,
    pub w: StreamWriter,
    pub buf: Vec<u8>,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Who the client is (the PROXY header's source, else the peer) and whether its requests'
    /// forwarded fields are believed.
    pub origin: ClientOrigin,
    /// The client address of the request being served: `origin`'s, or the one its trusted
    /// `X-Forwarded-For` / `Forwarded` names. Set when each request is prepared; what limits,
    /// hashing, access lists, `{client_ip}` and logs use.
    pub request_ip: IpAddr,
    /// The TCP socket underneath (TLS or not), to reset it when a tunnel's backend fails.
    pub fd: RawFd,
    /// The client certificate verified in the TLS handshake (mTLS), rendered once for the
    /// backends; `None` for plain connections and clients that sent none.
    pub client_cert: Option<Box<ClientCertificate>>,
    /// For the reads between requests that may park the connection
    /// ([`super::session`]'s `between_requests`).
    pub quiet_read: QuietReadCanceller,
}

impl ClientConn {
    /// Who the access log names for the request being served.
    pub fn logged(&self) -> LoggedClient {
        LoggedClient {
            origin: self.origin.addr,
            ip: self.request_ip,
            peer: self.peer,
        }
    }
}

/// The access log's `client` (the request's client address: with its port when it is the
/// connection's own client, the address alone when a trusted proxy's forwarded field named it)
/// and `peer` (the TCP peer).
#[derive(Debug, Clone, Copy)]
pub struct LoggedClient {
    origin: SocketAddr,
    ip: IpAddr,
    pub peer: SocketAddr,
}

impl LoggedClient {
    /// The request's client address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl std::fmt::Display for LoggedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ip.to_canonical() == self.origin.ip().to_canonical() {
            self.origin.fmt(f)
        } else {
            self.ip.fmt(f)
        }
    }
}

/// A request that passed parsing, routing and limits, with the head for the backend built.
#[derive(Debug)]
pub struct PendingRequest {
    /// The configuration generation the request started on; it finishes on it even if a reload
    /// commits meanwhile.
    pub generation: Rc<Generation>,
    pub method: Method,
    pub version: Version,
    pub body: RequestBody,
    /// The client wants the connection kept open afterwards.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Our `100 Continue` went out (a retry must not send a second one).
    pub continue_sent: bool,
    pub upgrade: bool,
    pub request_id: String,
    /// The listener it arrived on, the route that matched it (index into that listener's
    /// routes) and the upstream group the route chose (index into `generation.upstreams`): see
    /// [`PendingRequest::listener`], [`PendingRequest::route`], [`PendingRequest::upstream`].
    /// Packed small: the request is moved a few times on its way, and at 128 bytes the compiler
    /// moves it inline rather than through `memcpy` (callgrind: two calls per request).
    pub(super) listener: u16,
    pub(super) route: u32,
    pub(super) upstream: u32,
    /// What the group balances it on: the hash key of a consistent-hashing group (client IP,
    /// header or cookie; none when the header or cookie is absent) and the bucket of a group
    /// with a traffic split. Computed once, when the request is prepared.
    pub keys: RequestKeys,
    /// The head to send upstream (request line and headers, rebuilt by the codec), with the W3C
    /// `traceparent` (the client's, or one the proxy started): see [`PendingRequest::trace_id`].
    pub upstream_head: Vec<u8>,
    /// `METHOD target` for log lines (boxed: 8 bytes less than a `String`, which keeps the
    /// request within 128 bytes).
    pub summary: Box<str>,
    /// Whether its response may be compressed, and with what ([`Choice::Off`] unless its route
    /// compresses: `Accept-Encoding` is read only then).
    pub compress: Choice,
}

impl PendingRequest {
    pub fn listener(&self) -> usize {
        usize::from(self.listener)
    }

    pub fn route(&self) -> usize {
        self.route as usize
    }

    pub fn upstream(&self) -> usize {
        self.upstream as usize
    }

    /// The route it matched, as configured in its generation (its settings, header rules,
    /// compression).
    pub fn route_config(&self) -> &RouteConfig {
        &self.generation.config.listeners[self.listener()].routes[self.route()]
    }

    /// Moves the request onto generation `next`, where its group is `upstream` (scale from zero:
    /// the generation it started on had no instance). `false`, unchanged, when `next` no longer
    /// has its route.
    pub fn move_to(&mut self, next: Rc<Generation>, upstream: usize) -> bool {
        let Some(route) = next.route_index(&self.generation, self.listener(), self.route()) else {
            return false;
        };
        self.route = route as u32;
        self.upstream = upstream as u32;
        self.generation = next;
        true
    }

    /// The target sent upstream when the route rewrote it, read back from the head's request
    /// line (for the access log's `rewritten`); `-` when the route does not rewrite.
    pub fn rewritten(&self) -> &str {
        if self.route_config().rewrite.is_none() {
            return "-";
        }
        let line = self
            .upstream_head
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or(&[]);
        let mut parts = line.splitn(3, |&b| b == b' ');
        parts
            .nth(1)
            .and_then(|target| std::str::from_utf8(target).ok())
            .unwrap_or("-")
    }

    /// The trace id of the `traceparent` sent upstream, read back from the head (for the access
    /// log: keeping a copy would cost every request, logged or not).
    pub fn trace_id(&self) -> &str {
        const FIELD: &[u8] = b"\r\ntraceparent: 00-";
        let head = &self.upstream_head;
        head.windows(FIELD.len())
            .position(|w| w == FIELD)
            .and_then(|at| head.get(at + FIELD.len()..at + FIELD.len() + 32))
            .and_then(|id| std::str::from_utf8(id).ok())
            .unwrap_or("-")
    }
}

/// Sends an error response (head only for HEAD requests) and closes the connection gracefully.
/// The caller must not use the connection afterwards. Returns the bytes written (0 when the
/// client could not be written to).
pub async fn respond_and_close(
    client: &mut ClientConn,
    write_limit: Duration,
    status: u16,
    detail: &str,
    request_id: &str,
    head_only: bool,
) -> usize {
    let mut out = Vec::with_capacity(256);
    write_error_response(status, detail, request_id, head_only, &mut out);
    let len = out.len();
    if write_all_within(&mut client.w, out, write_limit)
        .await
        .is_err()
    {
        return 0;
    }
    linger_close(client).await;
    len
}

/// Half-closes our side, then reads and discards what the client still sends for a short while:
/// closing with unread data would make the kernel send a reset that can destroy the response
/// before the client has read it.
pub async fn linger_close(client: &mut ClientConn) {
    if client.w.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    let mut buf = Vec::with_capacity(16 * 1024);
    while discarded < LINGER_MAX_BYTES {
        match monoio::time::timeout_at(deadline.into(), client.r.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                discarded += n;
                buf = b;
                buf.clear();
            }
            _ => return,
        }
    }
}
