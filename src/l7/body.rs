//! Moving message bodies: the response from the backend to the client (head validated and
//! rewritten, body relayed per its framing), the request body from the client to the backend,
//! and the two-way tunnel after `101 Switching Protocols`.
//!
//! Bodies are streamed through bounded buffers, never held whole. Chunked bodies go through the
//! strict [`ChunkedDecoder`], which re-encodes them canonically, so what the other side reads is
//! exactly what we validated. A body the route and the response allow to compress goes through
//! [`compressed`] instead.

mod compressed;

use super::client::{ClientConn, PendingRequest};
use super::record::RequestRecord;
use super::rule_vars::{forwarded_host, split_target, Named, RequestParts, RuleVars};
use crate::config::{HeaderEdits, RouteConfig, RouteSettings, TemplateVars};
use crate::http::compress::{Encoder, HeadChange};
use crate::http::{
    parse_response, ChunkedDecoder, ChunkedOutput, Method, RequestBody, ResponseBody,
    ResponseContext, Version,
};
use crate::net::io::{read_append, read_replace, write_all_within};
use crate::net::stream::{StreamReader, StreamWriter};
use crate::relay::{self, copy, Direction, Progress, Relayed as Tunneled};
use crate::runtime::drain::DrainSignal;
use crate::upstream::failure::UpstreamFailure;
use compressed::relay_compressed;
use monoio::io::AsyncWriteRentExt;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Upper bound for a backend's response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read buffer for the upstream leg: heads and small bodies.
const HEAD_BUFFER: usize = 16 * 1024;
/// Body relay buffer once a body is known to be larger than what arrived with the head.
const RELAY_BUFFER: usize = 64 * 1024;

type ClientWriter = StreamWriter;
type ClientReader = StreamReader;
type UpstreamReader = StreamReader;
type UpstreamWriter = StreamWriter;

/// What the response relay needs to know, shared with the request upload running beside it.
#[derive(Debug)]
pub struct Relay<'a> {
    pub request: &'a PendingRequest,
    /// Whether we intend to keep the client connection (written into the response head).
    pub client_keep_alive: bool,
    /// Set once the first byte of the final response is handed to the client: from then on no
    /// error response can be sent, only a close. (A final head followed by a body that turns out
    /// invalid before anything was written still gets the proxy's 502.)
    pub response_started: &'a Cell<bool>,
    /// Set by the upload once the whole request body was read: only then does a silent backend
    /// count as a timeout.
    pub upload_done: &'a Cell<bool>,
    /// Status and bytes sent are recorded here.
    pub record: &'a RequestRecord,
    /// The client's TCP socket, reset when the client stops reading ([`ClientSink`]).
    pub client_fd: RawFd,
    /// The client's address and the backend answering: what the route's response header rules
    /// may name (`{client_ip}`, `{backend}`).
    pub client_ip: IpAddr,
    pub backend: SocketAddr,
}

/// The client's write half with its write deadline, counting what reaches the client.
///
/// A client that cannot take one buffer's worth within the deadline (`timeouts.client_idle`) has
/// stopped reading, or reads too slowly to be served: its connection is reset, not just closed.
/// A close would leave the unsent bytes queued in the kernel behind a window that hardly opens,
/// for minutes, and the client would never see the end (nginx's `reset_timedout_connection`).
struct ClientSink<'a> {
    w: &'a mut ClientWriter,
    fd: RawFd,
    limit: Duration,
    record: &'a RequestRecord,
    /// [`Relay::response_started`].
    started: &'a Cell<bool>,
}

impl ClientSink<'_> {
    /// Writes bytes of the final response (marking it started) and returns the buffer for reuse.
    async fn send(&mut self, data: Vec<u8>) -> Result<Vec<u8>, RelayError> {
        self.started.set(true);
        self.send_interim(data).await
    }

    /// Writes an interim (1xx) response: a final response, or the proxy's own error, may follow.
    async fn send_interim(&mut self, data: Vec<u8>) -> Result<Vec<u8>, RelayError> {
        let len = data.len();
        let data = match write_all_within(self.w, data, self.limit).await {
            Ok(data) => data,
            Err(e) => {
                if e.kind() == io::ErrorKind::TimedOut {
                    let _ = crate::sys::pipe::reset(self.fd);
                    self.record.slow_reader_reset.set(true);
                }
                return Err(RelayError::Client);
            }
        };
        self.record.add_to_client(len);
        Ok(data)
    }
}

/// A response relayed to its end.
#[derive(Debug)]
pub struct ResponseRelayed {
    /// The backend's message ended exactly at its framing, nothing past it was read, and the
    /// backend allows keep-alive.
    pub upstream_reusable: bool,
    /// How the backend's message ended.
    pub end: BodyEnd,
    pub client_reusable: bool,
    /// `Some(bytes already read from the backend)` after a `101 Switching Protocols` or a 2xx
    /// answer to `CONNECT`: the connection is now a tunnel.
    pub upgraded: Option<Vec<u8>>,
}

/// How a response's body ended, as far as the upstream connection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Exactly at its framing, with nothing more read.
    Exact,
    /// At its framing, but at least this many more bytes came with it: the backend sent more
    /// than its response (a longer body than its `Content-Length`, bytes after the last chunk or
    /// after a bodiless response). Those bytes were not forwarded, and the connection must
    /// close: read as the next response, they would reach another client.
    Overrun(usize),
    /// The backend closed the connection (a close-delimited body), or it now carries another
    /// protocol (after `101`).
    NotReusable,
}

#[derive(Debug)]
pub enum RelayError {
    Upstream(UpstreamFailure),
    /// Writing to the client failed.
    Client,
    /// The upload failed on the client's side; the response relay was abandoned.
    UploadAborted,
}

#[derive(Debug)]
pub enum UploadError {
    /// The client's body was bad, too large or too slow: answer `status` (if no response started).
    Client { status: u16, detail: String },
    /// The client closed or reset mid-body.
    ClientGone,
    /// The response ended before the upload did, and the rest of the body was not read.
    Unfinished,
}

/// How far the request body got, shared by the upload and the exchange that runs it beside the
/// response relay.
///
/// The body goes to the backend while the backend takes it. Once writing to it fails (it may
/// have answered early and closed) or the exchange says the response is complete
/// ([`UploadProgress::stop_sending`]), the upload is *diverted*: the rest of the body is still read
/// from the client — so its connection stays in sync for the next request, and it is never closed
/// with body bytes unread, which would reset it — but dropped.
#[derive(Debug, Default)]
pub struct UploadProgress {
    /// Set once the whole body was read from the client (and sent, unless diverted): only then
    /// does a silent backend count as a timeout.
    pub done: Cell<bool>,
    stop: DrainSignal,
    diverted: Cell<bool>,
    upstream_error: RefCell<Option<io::Error>>,
}

impl UploadProgress {
    /// For a request with a body (`has_body`), or without one (then already done).
    pub fn new(has_body: bool) -> Self {
        let progress = Self::default();
        progress.done.set(!has_body);
        progress
    }

    /// The response is complete: whatever of the body is left is read and dropped.
    pub fn stop_sending(&self) {
        self.stop.trigger();
    }

    /// Whether part of the body was dropped rather than sent (the upstream connection then holds
    /// an unfinished request and cannot be reused).
    pub fn diverted(&self) -> bool {
        self.diverted.get()
    }

    /// Why the backend stopped taking the body, if a write to it failed.
    pub fn take_upstream_error(&self) -> Option<io::Error> {
        self.upstream_error.borrow_mut().take()
    }

    fn divert(&self, error: Option<io::Error>) {
        self.diverted.set(true);
        if error.is_some() {
            *self.upstream_error.borrow_mut() = error;
        }
    }
}

/// Reads the response head (forwarding interim 1xx responses), writes the rewritten head and
/// relays the body to the client.
pub async fn relay_response(
    relay: Relay<'_>,
    up_r: &mut UpstreamReader,
    client_w: &mut ClientWriter,
) -> Result<ResponseRelayed, RelayError> {
    let request = relay.request;
    let timeouts = &request.generation.config.timeouts;
    let route = request.route_config();
    let upstream_response = route.settings.upstream_response;
    // The route's response header rules: their values are gathered only for a route with some.
    let rules = &route.headers.response;
    let rule_vars = (!rules.is_empty()).then(|| response_vars(&relay, route));
    let template_vars = rule_vars.as_ref().map(RuleVars::vars);
    let edits = template_vars.as_ref().map(|vars| (rules, vars));
    let mut client = ClientSink {
        w: client_w,
        fd: relay.client_fd,
        limit: timeouts.client_idle,
        record: relay.record,
        started: relay.response_started,
    };
    let mut buf = Vec::with_capacity(HEAD_BUFFER);
    let mut out = Vec::with_capacity(1024);

    loop {
        if !buf.is_empty() {
            let response = match parse_response(&buf, request.method, MAX_RESPONSE_HEAD) {
                Err(e) => {
                    return Err(RelayError::Upstream(UpstreamFailure::Invalid(
                        e.to_string(),
                    )))
                }
                Ok(None) => None,
                Ok(Some(response)) => Some(response),
            };
            if let Some(response) = response {
                let head_len = response.head_len;
                let status = response.status;
                if (100..200).contains(&status) && status != 101 {
                    // Interim response. Our own `100 Continue` already went out when the client
                    // asked; HTTP/1.0 clients get none (RFC 9110 §15.2).
                    let forward = request.version == Version::Http11
                        && !(status == 100 && request.expect_continue);
                    out.clear();
                    if forward {
                        response
                            .write_client_head(&response_context(request, true, edits), &mut out);
                    }
                    buf.drain(..head_len);
                    if forward {
                        out = client.send_interim(out).await?;
                    }
                    continue;
                }
                // A CONNECT that a route allowed (see `client`) and the backend accepted: after
                // the head, both sides carry the tunnel (RFC 9110 §9.3.6).
                let tunnel = request.method == Method::Connect && (200..300).contains(&status);
                if status == 101 || tunnel {
                    if status == 101 && !request.upgrade {
                        return Err(RelayError::Upstream(UpstreamFailure::Invalid(
                            "101 Switching Protocols to a request that asked for no upgrade"
                                .to_owned(),
                        )));
                    }
                    out.clear();
                    response.write_client_head(&response_context(request, true, edits), &mut out);
                    buf.drain(..head_len);
                    relay.record.status.set(status);
                    client.send(out).await?;
                    return Ok(ResponseRelayed {
                        upstream_reusable: false,
                        end: BodyEnd::NotReusable,
                        client_reusable: false,
                        upgraded: Some(buf),
                    });
                }

                let compression = compressed::decide(request, &response);
                let framing = if compression.encode.is_some() {
                    ResponseBody::Chunked
                } else {
                    response.client_framing(request.version)
                };
                let client_keep = relay.client_keep_alive && framing != ResponseBody::UntilClose;
                let upstream_keep = response.keep_alive;
                let upstream_body = response.body;
                out.clear();
                let mut ctx = response_context(request, client_keep, edits);
                ctx.compression = compression;
                response.write_client_head(&ctx, &mut out);
                buf.drain(..head_len);
                relay.record.status.set(status);
                let read_limit = upstream_response;
                let end = match compression.encode {
                    None => {
                        relay_body(
                            up_r,
                            &mut client,
                            upstream_body,
                            framing,
                            buf,
                            out,
                            read_limit,
                        )
                        .await?
                    }
                    Some(encoding) => {
                        let config = &request.generation.config.compression;
                        let encoder =
                            Encoder::new(encoding, config).map_err(|_| RelayError::Client)?;
                        let (body, record) = (upstream_body, relay.record);
                        relay_compressed(
                            up_r,
                            &mut client,
                            body,
                            buf,
                            out,
                            read_limit,
                            encoder,
                            record,
                        )
                        .await?
                    }
                };
                return Ok(ResponseRelayed {
                    upstream_reusable: upstream_keep && end == BodyEnd::Exact,
                    end,
                    client_reusable: client_keep,
                    upgraded: None,
                });
            }
        }

        // Need more of the head. While the request body is still uploading, the backend may
        // legitimately wait for it: only a silence after the upload counts as a timeout.
        let read = read_append(up_r, std::mem::take(&mut buf), 4096);
        let mut read = std::pin::pin!(read);
        let (result, b) = loop {
            monoio::select! {
                done = read.as_mut() => break done,
                _ = monoio::time::sleep(upstream_response) => {
                    if relay.upload_done.get() {
                        return Err(RelayError::Upstream(UpstreamFailure::Timeout(upstream_response)));
                    }
                }
            }
        };
        buf = b;
        match result {
            Ok(0) if buf.is_empty() => {
                return Err(RelayError::Upstream(UpstreamFailure::ClosedBeforeResponse))
            }
            Ok(0) => {
                return Err(RelayError::Upstream(UpstreamFailure::Invalid(
                    "connection closed in the middle of the response head".to_owned(),
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(RelayError::Upstream(UpstreamFailure::Read(e))),
        }
    }
}

fn response_context<'a>(
    request: &'a PendingRequest,
    client_keep_alive: bool,
    edits: Option<(&'a HeaderEdits, &'a TemplateVars<'a>)>,
) -> ResponseContext<'a> {
    ResponseContext {
        request_method: request.method,
        client_version: request.version,
        client_keep_alive,
        request_id: &request.request_id,
        edits,
        compression: HeadChange::NONE,
    }
}

/// What the route's response header rules name, from what the request kept: its `METHOD target`
/// summary, the host read back from the head sent upstream, and the backend that answered.
fn response_vars<'a>(relay: &Relay<'a>, route: &RouteConfig) -> RuleVars<'a> {
    let request = relay.request;
    let (method, target) = request
        .summary
        .split_once(' ')
        .unwrap_or((&request.summary, ""));
    // Only what the rules name: the host is searched for in the head, the target split.
    let named = Named::by(&route.headers.response);
    let (path, query) = if named.target {
        split_target(target)
    } else {
        ("", None)
    };
    let parts = RequestParts {
        scheme: request.generation.config.listeners[request.listener()]
            .protocol
            .scheme(),
        host: named
            .host
            .then(|| forwarded_host(&request.upstream_head))
            .flatten(),
        path,
        query,
        method,
        client_ip: relay.client_ip,
        request_id: &request.request_id,
    };
    RuleVars::new(route, &route.headers.response, parts, Some(relay.backend))
}

/// Relays a response body. `buf` holds body bytes that arrived with the head, `out` the client
/// head not yet written (sent together with the first body bytes: one write for small responses).
/// Returns how the backend's message ended: bytes read past its framing are never forwarded and
/// make it [`BodyEnd::Overrun`] (reads are never limited to what the framing still expects, so
/// that extra bytes arriving with the last ones are seen here rather than left in the socket).
///
/// The head goes out before the first read from the backend, so a slow body never delays it; the
/// one exception is a chunked body whose bytes that came with the head are already invalid: then
/// nothing is written and the caller answers 502 instead.
async fn relay_body(
    up_r: &mut UpstreamReader,
    client: &mut ClientSink<'_>,
    upstream_body: ResponseBody,
    client_framing: ResponseBody,
    mut buf: Vec<u8>,
    mut out: Vec<u8>,
    read_limit: Duration,
) -> Result<BodyEnd, RelayError> {
    match upstream_body {
        ResponseBody::None => {
            client.send(out).await?;
            Ok(end_after(&buf))
        }
        ResponseBody::Length(length) => {
            let first = buf.len().min(usize::try_from(length).unwrap_or(usize::MAX));
            out.extend_from_slice(&buf[..first]);
            let past_first = buf.len() - first;
            client.send(out).await?;
            if past_first > 0 {
                return Ok(BodyEnd::Overrun(past_first));
            }
            let mut remaining = length - first as u64;
            if remaining > 0 && buf.capacity() < RELAY_BUFFER {
                buf = Vec::with_capacity(RELAY_BUFFER);
            }
            while remaining > 0 {
                // A whole buffer, not just `remaining`: bytes past the body that arrive with its
                // last ones must be seen, not left in the socket for the next request to read.
                let (n, mut b) = read_within(up_r, buf, RELAY_BUFFER, read_limit).await?;
                if n == 0 {
                    // Forward exactly what came, then the caller closes the client connection: the
                    // client sees a short body, never a padded or completed one.
                    return Err(RelayError::Upstream(UpstreamFailure::Invalid(format!(
                        "connection closed with {remaining} of {length} body bytes missing"
                    ))));
                }
                let body_bytes = usize::try_from(remaining).map_or(n, |r| r.min(n));
                b.truncate(body_bytes);
                remaining -= body_bytes as u64;
                buf = client.send(b).await?;
                if n > body_bytes {
                    return Ok(BodyEnd::Overrun(n - body_bytes));
                }
            }
            Ok(BodyEnd::Exact)
        }
        ResponseBody::Chunked => {
            let output = match client_framing {
                ResponseBody::Chunked => ChunkedOutput::Chunked {
                    keep_trailers: true,
                },
                _ => ChunkedOutput::Payload,
            };
            let mut decoder = ChunkedDecoder::new(output);
            loop {
                let progress = decoder
                    .decode(&buf, &mut out)
                    .map_err(|e| RelayError::Upstream(UpstreamFailure::Invalid(e.to_string())))?;
                buf.drain(..progress.consumed);
                if !out.is_empty() {
                    out = client.send(out).await?;
                    out.clear();
                }
                if progress.done {
                    return Ok(end_after(&buf));
                }
                buf = read_more_chunked(up_r, buf, read_limit).await?;
            }
        }
        ResponseBody::UntilClose => {
            out.extend_from_slice(&buf);
            client.send(out).await?;
            let mut buf = Vec::with_capacity(RELAY_BUFFER);
            loop {
                let (n, b) = read_within(up_r, buf, RELAY_BUFFER, read_limit).await?;
                if n == 0 {
                    return Ok(BodyEnd::NotReusable);
                }
                buf = client.send(b).await?;
            }
        }
    }
}

/// How a message ended whose framing is complete, with `left` read past it.
fn end_after(left: &[u8]) -> BodyEnd {
    if left.is_empty() {
        BodyEnd::Exact
    } else {
        BodyEnd::Overrun(left.len())
    }
}

/// Appends the next read of a chunked body to `buf` (the part not decoded yet): the backend
/// closing before the last chunk, failing, or staying silent for `read_limit` is its failure.
async fn read_more_chunked(
    up_r: &mut UpstreamReader,
    buf: Vec<u8>,
    read_limit: Duration,
) -> Result<Vec<u8>, RelayError> {
    let Ok((result, buf)) =
        monoio::time::timeout(read_limit, read_append(up_r, buf, RELAY_BUFFER / 4)).await
    else {
        return Err(RelayError::Upstream(UpstreamFailure::Timeout(read_limit)));
    };
    match result {
        Ok(0) => Err(RelayError::Upstream(UpstreamFailure::Invalid(
            "connection closed in the middle of a chunked body".to_owned(),
        ))),
        Ok(_) => Ok(buf),
        Err(e) => Err(RelayError::Upstream(UpstreamFailure::Read(e))),
    }
}

/// Reads at most `limit` bytes from the backend, replacing `buf`'s contents.
async fn read_within(
    up_r: &mut UpstreamReader,
    buf: Vec<u8>,
    limit: usize,
    read_limit: Duration,
) -> Result<(usize, Vec<u8>), RelayError> {
    match monoio::time::timeout(read_limit, read_replace(up_r, buf, limit)).await {
        Ok((Ok(n), buf)) => Ok((n, buf)),
        Ok((Err(e), _)) => Err(RelayError::Upstream(UpstreamFailure::Read(e))),
        Err(_) => Err(RelayError::Upstream(UpstreamFailure::Timeout(read_limit))),
    }
}

/// Streams the request body from the client to the backend. Bytes of the body already buffered
/// with the head are sent first; bytes after the body (a pipelined request) stay in `client_buf`.
pub async fn upload(
    settings: &RouteSettings,
    body: RequestBody,
    client_r: &mut ClientReader,
    client_buf: &mut Vec<u8>,
    up_w: &mut UpstreamWriter,
    progress: &UploadProgress,
    record: &RequestRecord,
) -> Result<(), UploadError> {
    let deadline = Instant::now() + settings.client_body;
    let too_slow = || UploadError::Client {
        status: 408,
        detail: format!(
            "the request body did not arrive within {:?}",
            settings.client_body
        ),
    };
    let write_limit = settings.upstream_response;

    match body {
        RequestBody::None => {}
        RequestBody::Length(length) => {
            let first = client_buf
                .len()
                .min(usize::try_from(length).unwrap_or(usize::MAX));
            let mut remaining = length - first as u64;
            if first > 0 {
                record.add_from_client(first as u64);
                let chunk: Vec<u8> = client_buf.drain(..first).collect();
                to_upstream(up_w, write_limit, progress, chunk).await;
            }
            let mut relay = Vec::with_capacity(
                usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(RELAY_BUFFER),
            );
            while remaining > 0 {
                let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
                let read =
                    monoio::time::timeout_at(deadline.into(), read_replace(client_r, relay, limit))
                        .await;
                let (n, b) = match read {
                    Err(_) => return Err(too_slow()),
                    Ok((Ok(0) | Err(_), _)) => return Err(UploadError::ClientGone),
                    Ok((Ok(n), b)) => (n, b),
                };
                remaining -= n as u64;
                record.add_from_client(n as u64);
                relay = to_upstream(up_w, write_limit, progress, b).await;
            }
        }
        RequestBody::Chunked => {
            let max = settings.max_body_bytes;
            let mut decoder = ChunkedDecoder::new(ChunkedOutput::Chunked {
                keep_trailers: true,
            });
            let mut out = Vec::with_capacity(RELAY_BUFFER);
            let mut total: u64 = 0;
            loop {
                out.clear();
                let step =
                    decoder
                        .decode(client_buf, &mut out)
                        .map_err(|e| UploadError::Client {
                            status: 400,
                            detail: e.to_string(),
                        })?;
                client_buf.drain(..step.consumed);
                total += step.payload;
                record.add_from_client(step.payload);
                if let Some(max) = max.filter(|&max| total > max) {
                    return Err(UploadError::Client {
                        status: 413,
                        detail: format!("request body larger than the limit of {max} bytes"),
                    });
                }
                if !out.is_empty() {
                    out = to_upstream(up_w, write_limit, progress, out).await;
                }
                if step.done {
                    break;
                }
                let read = monoio::time::timeout_at(
                    deadline.into(),
                    read_append(client_r, std::mem::take(client_buf), RELAY_BUFFER / 4),
                )
                .await;
                match read {
                    Err(_) => return Err(too_slow()),
                    Ok((Ok(0) | Err(_), _)) => return Err(UploadError::ClientGone),
                    Ok((Ok(_), b)) => *client_buf = b,
                }
            }
        }
    }
    progress.done.set(true);
    Ok(())
}

/// Sends `data` to the backend, unless the upload is diverted (see [`UploadProgress`]): then, or
/// when the write fails or the response completes while it waits, `data` is dropped. Returns a
/// buffer to read the next part into.
async fn to_upstream(
    up_w: &mut UpstreamWriter,
    write_limit: Duration,
    progress: &UploadProgress,
    data: Vec<u8>,
) -> Vec<u8> {
    if progress.diverted() {
        return data;
    }
    let write = monoio::time::timeout(write_limit, up_w.write_all(data));
    monoio::select! {
        written = write => match written {
            Ok((Ok(_), data)) => return data,
            Ok((Err(e), _)) => progress.divert(Some(e)),
            Err(_) => progress.divert(Some(io::ErrorKind::TimedOut.into())),
        },
        _ = progress.stop.triggered() => progress.divert(None),
    }
    Vec::with_capacity(RELAY_BUFFER)
}

/// After `101 Switching Protocols`: the L4 relay ([`crate::relay`], by copy: either side
/// may be TLS) between the client and the backend, starting with what each side already sent
/// past the heads, until both have closed, one fails (both are then reset) or nothing moved
/// either way for `idle` (`timeouts.tunnel_idle`).
pub async fn tunnel(
    client: &mut ClientConn,
    up_r: &mut UpstreamReader,
    up_w: &mut UpstreamWriter,
    up_fd: RawFd,
    from_upstream: Vec<u8>,
    idle: Duration,
) -> Tunneled {
    let progress = Progress::new();
    let ClientConn { r, w, buf, fd, .. } = client;
    let from_client = std::mem::take(buf);
    let up = copy::direction(r, up_w, Direction::ToBackend, from_client, &progress);
    let down = copy::direction(up_r, w, Direction::ToClient, from_upstream, &progress);
    relay::run(up, down, &progress, idle, (*fd, up_fd)).await
}

#[cfg(test)]
mod tests {
    //! What the response relay concludes from what a backend sends, on scripted streams: whether
    //! the upstream connection may be pooled, and which failure (with its retry safety) a
    //! response that never started is.
    use super::*;
    use crate::l7::session::testing::{client_pair, pending};
    use crate::runtime::context::WorkerContext;
    use crate::upstream::failure::{RetrySafety, Unsafe};
    use crate::upstream::testing::{backends, generation, on_both_drivers, refusing, OK};
    use std::io::{Read as _, Write as _};
    use std::net::Shutdown;

    /// What the scripted backend does after sending its bytes.
    #[derive(Clone, Copy)]
    enum Then {
        KeepOpen,
        Close,
        Reset,
    }

    /// Relays what a backend sends (`answer`, then `then`) to a client of a `GET`: the relay's
    /// result, whether the response started, and what the client received.
    async fn relay(
        answer: &[u8],
        then: Then,
    ) -> (Result<ResponseRelayed, RelayError>, bool, String) {
        let group = format!("[upstream.api]\n{}", backends(&[refusing()]));
        let ctx = WorkerContext::new(0, generation("http", &group));
        let (mut client, mut peer) = client_pair();
        let request = pending(&ctx, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", client.peer);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_side = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut backend, _) = listener.accept().unwrap();
        proxy_side.set_nonblocking(true).unwrap();
        let (mut up_r, _up_w) =
            crate::net::stream::plain(monoio::net::TcpStream::from_std(proxy_side).unwrap());
        backend.write_all(answer).unwrap();
        let _open = match then {
            Then::KeepOpen => Some(backend),
            Then::Close => {
                drop(backend);
                None
            }
            Then::Reset => {
                socket2::SockRef::from(&backend)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(backend);
                None
            }
        };

        let record = RequestRecord::new(Instant::now());
        let (started, upload_done) = (Cell::new(false), Cell::new(true));
        let relay = Relay {
            request: &request,
            client_keep_alive: true,
            response_started: &started,
            upload_done: &upload_done,
            record: &record,
            client_fd: client.fd,
            client_ip: client.peer.ip(),
            backend: listener.local_addr().unwrap(),
        };
        let result = relay_response(relay, &mut up_r, &mut client.w).await;
        drop(client);
        peer.shutdown(Shutdown::Write).unwrap();
        let mut received = String::new();
        let _ = peer.read_to_string(&mut received);
        (result, started.get(), received)
    }

    fn failure(result: Result<ResponseRelayed, RelayError>) -> UpstreamFailure {
        match result {
            Err(RelayError::Upstream(failure)) => failure,
            other => panic!("expected an upstream failure, got {other:?}"),
        }
    }

    #[test]
    fn a_response_that_ends_at_its_framing_leaves_the_connection_reusable() {
        on_both_drivers(|| async {
            let (result, started, received) = relay(OK, Then::KeepOpen).await;
            let relayed = result.expect("relayed");
            assert!(relayed.upstream_reusable && relayed.client_reusable);
            assert_eq!(relayed.end, BodyEnd::Exact);
            assert!(started);
            assert!(received.starts_with("HTTP/1.1 200 OK") && received.ends_with("ok"));
        });
    }

    #[test]
    fn bytes_past_the_end_of_a_response_are_not_forwarded_and_bar_reuse() {
        on_both_drivers(|| async {
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAY";
            let (result, _, received) = relay(answer, Then::KeepOpen).await;
            let relayed = result.expect("relayed");
            assert!(
                matches!(relayed.end, BodyEnd::Overrun(n) if n > 0),
                "{relayed:?}"
            );
            assert!(!relayed.upstream_reusable);
            assert!(!received.contains("STRAY"), "{received}");
        });
    }

    #[test]
    fn a_backend_that_closes_or_ends_by_closing_is_not_reused() {
        on_both_drivers(|| async {
            let close = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            let relayed = relay(close, Then::KeepOpen).await.0.expect("relayed");
            assert_eq!(relayed.end, BodyEnd::Exact);
            assert!(!relayed.upstream_reusable, "the backend said it closes");

            let until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it";
            let relayed = relay(until_close, Then::Close).await.0.expect("relayed");
            assert_eq!(relayed.end, BodyEnd::NotReusable);
            assert!(!relayed.upstream_reusable && !relayed.client_reusable);
        });
    }

    #[test]
    fn a_connection_lost_before_any_response_byte_may_go_again_if_idempotent() {
        on_both_drivers(|| async {
            let (result, started, received) = relay(b"", Then::Close).await;
            let closed = failure(result);
            assert!(
                matches!(closed, UpstreamFailure::ClosedBeforeResponse),
                "{closed:?}"
            );
            assert_eq!(closed.retry_safety(), RetrySafety::IfIdempotent);
            assert!(
                !started && received.is_empty(),
                "nothing reached the client"
            );

            let reset = failure(relay(b"", Then::Reset).await.0);
            assert_eq!(reset.retry_safety(), RetrySafety::IfIdempotent, "{reset:?}");
        });
    }

    #[test]
    fn a_broken_or_silent_response_is_never_retried() {
        on_both_drivers(|| async {
            let garbage = failure(relay(b"SMTP ready\r\n\r\n", Then::KeepOpen).await.0);
            assert!(
                matches!(garbage, UpstreamFailure::Invalid(_)),
                "{garbage:?}"
            );
            assert_eq!(
                garbage.retry_safety(),
                RetrySafety::Never(Unsafe::InvalidResponse)
            );

            let cut = failure(relay(b"HTTP/1.1 200 OK\r\nContent-", Then::Close).await.0);
            assert!(matches!(cut, UpstreamFailure::Invalid(_)), "{cut:?}");

            let (result, started, _) = relay(b"", Then::KeepOpen).await;
            let silent = failure(result);
            assert!(matches!(silent, UpstreamFailure::Timeout(_)), "{silent:?}");
            assert_eq!(silent.retry_safety(), RetrySafety::Never(Unsafe::TimedOut));
            assert!(!started);
        });
    }
}
