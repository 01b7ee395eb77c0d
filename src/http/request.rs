//! Request heads: strict parsing (httparse plus the checks of shared/HTTP.md) and the head we
//! forward upstream.

use super::{Method, RequestBody, Version};
use std::net::IpAddr;

/// Limits applied while parsing a request head (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line + headers + final CRLF. More bytes without a complete head → `HeadTooLarge`.
    pub max_head_bytes: usize,
    /// Request target length → `UriTooLong`.
    pub max_uri_bytes: usize,
    /// Number of header fields → `TooManyHeaders`. At most 256.
    pub max_headers: usize,
}

/// Why a request was refused. Each maps to one status; `reason()` is the short text the client
/// sees in the error body. Every such error closes the client connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// 400: malformed or ambiguous. The text names what was wrong, e.g.
    /// "both Content-Length and Transfer-Encoding".
    #[error("{0}")]
    BadRequest(&'static str),
    /// 414
    #[error("request target longer than the limit")]
    UriTooLong,
    /// 431: header section over `max_head_bytes`.
    #[error("request header section larger than the limit")]
    HeadTooLarge,
    /// 431
    #[error("too many request header fields")]
    TooManyHeaders,
    /// 501: a transfer coding we do not implement (anything but `chunked`).
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::UriTooLong => 414,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::NotImplemented(_) => 501,
        }
    }
}

/// What the proxy adds when forwarding a request.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// The client's address: appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// `X-Forwarded-Proto` value: "http" or "https".
    pub proto: &'static str,
    /// `X-Request-Id` value (replaces any incoming one; the proxy passes the incoming one back in
    /// when it was acceptable).
    pub request_id: &'a str,
    /// Whether the proxy wants the upstream connection kept alive (`Connection: keep-alive` is
    /// implicit in HTTP/1.1: write `Connection: close` only when false).
    pub upstream_keep_alive: bool,
}

/// A complete, validated request head borrowed from the read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The method as sent (for `Other` and for logs).
    pub method_str: &'a str,
    /// The request target as sent (origin-form, absolute-form, authority-form for CONNECT, or `*`).
    pub target: &'a str,
    pub version: Version,
    /// Host (from the Host header; for absolute-form, the target's authority), without port,
    /// lowercased only by the router. `None` only for HTTP/1.0 without Host.
    pub host: Option<&'a str>,
    pub body: RequestBody,
    /// Whether the client connection may be kept open after this exchange (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and removed from the forwarded head: the proxy answers
    /// `100 Continue` itself or relays the backend's).
    pub expect_continue: bool,
    /// `Upgrade` value when `Connection: upgrade` was sent (e.g. "websocket").
    pub upgrade: Option<&'a str>,
    /// An incoming `X-Request-Id` when it is 1..=128 visible ASCII characters.
    pub request_id: Option<&'a str>,
    /// Bytes of the head, including the final empty line. The body starts at `buf[head_len..]`.
    pub head_len: usize,
    // The implementation keeps what it needs to rebuild the head (e.g. the header slice).
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (unless `buf.len()` already exceeds the limits, which is an
/// error, not `None`). `Ok(Some)`: a complete head that passed every check of shared/HTTP.md.
pub fn parse_request<'a>(buf: &'a [u8], limits: &HeadLimits) -> Result<Option<Request<'a>>, RequestError> {
    let _ = (buf, limits);
    todo!()
}

impl Request<'_> {
    /// The path part of the target (before `?`), for routing. `/` for `*` and authority-form.
    pub fn path(&self) -> &str {
        todo!()
    }

    /// Appends the head to send upstream to `out`: request line (origin-form target, HTTP/1.1),
    /// headers minus hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
    /// Transfer-Encoding, Upgrade unless upgrading, Expect) and minus those named in `Connection`,
    /// minus incoming X-Request-Id/X-Forwarded-Proto/X-Forwarded-Host (replaced), with
    /// `X-Forwarded-For` appended to, framing written by us (`Content-Length: n` or
    /// `Transfer-Encoding: chunked`), `Connection: close` when `!ctx.upstream_keep_alive`, and
    /// `Connection: upgrade` + `Upgrade` when upgrading. CRLF line endings.
    pub fn write_upstream_head(&self, ctx: &ForwardContext<'_>, out: &mut Vec<u8>) {
        let _ = (ctx, out);
        todo!()
    }
}
