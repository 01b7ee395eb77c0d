//! HTTP/1.1 message codec: sans-io and strict.
//!
//! The proxy reads bytes into a buffer and asks this module three questions:
//! 1. is there a complete, valid request head? ([`parse_request`]) — and if so, what head do we
//!    send upstream ([`Request::write_upstream_head`]) and how is the body framed;
//! 2. the same for a response head from a backend ([`parse_response`],
//!    [`Response::write_client_head`]);
//! 3. how do chunked bodies decode and re-encode ([`ChunkedDecoder`]).
//!
//! Nothing here does I/O. Every rule of `docs/http.md` that concerns parsing lives here, so that
//! nothing ambiguous ever reaches a backend: the head forwarded is rebuilt from the parsed fields
//! (bare LF normalised to CRLF, hop-by-hop headers and those named in `Connection` removed,
//! framing headers written by us from the framing we decided).
//!
//! Files: `request.rs` (limits, request line, httparse) → `request_fields.rs` (what the fields
//! mean, which are dropped) → `forward.rs` (the upstream head); `response.rs` (parse and client
//! head); `chunked.rs` (decoder) over `chunk_lines.rs` (chunk header and trailer grammar);
//! shared by all: `framing.rs` (Content-Length, Transfer-Encoding), `target.rs` (request targets,
//! Host), `headers.rs` (field names, lists, the per-field mask, head writers);
//! `trace_context.rs` (W3C `traceparent`); `edits.rs` (a route's header rules, applied by both
//! head writers); `compress/` (response compression: `Accept-Encoding`, which responses, the
//! encoders).

mod chunk_lines;
mod chunked;
mod client_address;
pub mod compress;
mod edits;
mod error_response;
mod forward;
mod framing;
mod headers;
mod lookup;
mod request;
mod request_fields;
mod response;
mod target;
mod trace_context;

pub use chunked::{ChunkedDecoder, ChunkedError, ChunkedOutput, DecodeProgress};
pub use client_address::resolve_client;
pub use error_response::{reason_phrase, write_error_response};
pub use request::{
    parse_request, ClientCertificate, ForwardContext, HeadLimits, Request, RequestError,
};
pub use response::{parse_response, Response, ResponseContext, ResponseError};
pub use trace_context::{TracePrefix, Traceparent, TRACEPARENT_LEN};

/// HTTP version of a message. Anything other than 1.0 or 1.1 is rejected by the parsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Request method. `Other` keeps extension methods (forwarded unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Patch,
    Other,
}

impl Method {
    /// RFC 9110 §9.2.2: safe to retry on a reused connection that failed before any response byte.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// How a request body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No body (no Content-Length and no Transfer-Encoding, or `Content-Length: 0`).
    None,
    /// `Content-Length: n`, n > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// How a response body is framed (RFC 9112 §6.3), given the request method and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// HEAD response, 1xx, 204, 304, or `Content-Length: 0`.
    None,
    Length(u64),
    Chunked,
    /// No length and not chunked: the body runs until the backend closes.
    UntilClose,
}
