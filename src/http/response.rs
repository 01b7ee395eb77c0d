//! Response heads from backends: strict parsing and the head we send to the client.

use super::{Method, ResponseBody, Version};

/// Why a backend's response was refused: the client gets 502 and that upstream connection is
/// never reused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("invalid response from upstream: {0}")]
    Invalid(&'static str),
    #[error("upstream response header section larger than the limit")]
    HeadTooLarge,
}

/// What the proxy decides about the client leg when writing a response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext<'a> {
    /// The client's request method and version.
    pub request_method: Method,
    pub client_version: Version,
    /// Whether the proxy will keep the client connection open after this response. When false,
    /// `Connection: close` is written.
    pub client_keep_alive: bool,
    /// Added as `X-Request-Id` when the response has none.
    pub request_id: &'a str,
}

/// A complete, validated response head borrowed from the read buffer.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub version: Version,
    /// Framing as seen on the upstream leg, given the request method and the status.
    pub body: ResponseBody,
    /// Whether the backend lets us reuse the connection (HTTP/1.1 without `Connection: close`,
    /// HTTP/1.0 with `Connection: keep-alive`, and never for `UntilClose`).
    pub keep_alive: bool,
    /// Bytes of the head, including the final empty line.
    pub head_len: usize,
}

/// Parses a response head at the start of `buf` for a request with `method`.
///
/// `Ok(None)`: incomplete. Checks: status line, header syntax, duplicate/invalid Content-Length,
/// Content-Length with Transfer-Encoding, a Transfer-Encoding other than `chunked` — all `Invalid`.
pub fn parse_response<'a>(
    buf: &'a [u8],
    method: Method,
    max_head_bytes: usize,
) -> Result<Option<Response<'a>>, ResponseError> {
    let _ = (buf, method, max_head_bytes);
    todo!()
}

impl Response<'_> {
    /// How the body is framed toward the client: `Chunked` stays chunked for an HTTP/1.1 client
    /// and becomes `UntilClose` (decoded, connection closed) for HTTP/1.0; the rest is unchanged.
    pub fn client_framing(&self, client_version: Version) -> ResponseBody {
        let _ = client_version;
        todo!()
    }

    /// Appends the head for the client: status line `HTTP/1.1 <status> <reason>`, headers minus
    /// hop-by-hop ones and those named in `Connection`, framing written by us per
    /// `client_framing`, `Connection: close` when `!ctx.client_keep_alive` (or when framing is
    /// `UntilClose`), `X-Request-Id` when absent. 1xx heads (100 Continue, 101) are written as
    /// they came, minus hop-by-hop fields (a 101 keeps `Connection: upgrade` and `Upgrade`).
    pub fn write_client_head(&self, ctx: &ResponseContext<'_>, out: &mut Vec<u8>) {
        let _ = (ctx, out);
        todo!()
    }
}
