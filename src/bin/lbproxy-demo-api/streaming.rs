//! The body endpoints: `POST /echo` sends the request body straight back, `GET /bytes?n=N`
//! sends N bytes of a fixed pattern.
//!
//! `/echo` streams: the response body *is* the request body, so each chunk goes back out as
//! soon as it arrives and memory stays bounded whatever the size. The response has the same
//! framing as the request (`Content-Length` in, `Content-Length` out; chunked in, chunked out)
//! and the same `Content-Type`. Because nothing is buffered, a client (or proxy) must read the
//! response while it is still sending a large body, or both sides stall on full socket buffers.
//!
//! `/bytes` builds its body in one buffer for now: a body made of generated chunks needs a
//! `Stream` or `http_body::Body` implementation, and neither trait (nor `Frame`) can be named
//! without a direct `futures-core`/`http-body` dependency, which this crate does not have yet.

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::params::{integer_in_range, BadRequest, QueryParams};

/// Largest `/bytes` body: 1 GiB.
const MAX_BYTES: u64 = 1 << 30;

/// Byte `i` of a `/bytes` body is `i % PATTERN_PERIOD` (a prime, so it never lines up with
/// power-of-two chunk or buffer sizes and misplaced data shows).
const PATTERN_PERIOD: usize = 251;

/// `POST /echo`: the request body, streamed back with the request's `Content-Type`.
pub async fn echo(request_headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    if let Some(content_type) = request_headers.get(CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.clone());
    }
    response
}

/// `GET /bytes?n=N`: N bytes (0..=1 GiB), byte `i` = `i % 251`, with `Content-Length: N`.
pub async fn bytes(Query(query): Query<QueryParams>) -> Result<Response, BadRequest> {
    let length = integer_in_range(&query, "n", 0..=MAX_BYTES)?;
    let length = usize::try_from(length).expect("1 GiB fits in usize");
    // A body of known size: hyper sends `Content-Length: N` by itself.
    let body = Body::from(pattern_bytes(length));
    let content_type = HeaderValue::from_static("application/octet-stream");
    Ok(([(CONTENT_TYPE, content_type)], body).into_response())
}

/// The first `length` bytes of the repeating pattern 0, 1, …, 250, 0, 1, ….
fn pattern_bytes(length: usize) -> Bytes {
    let period: Vec<u8> = (0..PATTERN_PERIOD).map(|i| i as u8).collect();
    let mut content = Vec::with_capacity(length);
    while content.len() < length {
        let take = (length - content.len()).min(PATTERN_PERIOD);
        content.extend_from_slice(&period[..take]);
    }
    Bytes::from(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_byte_i_is_i_mod_251() {
        let content = pattern_bytes(1000);
        assert_eq!(content.len(), 1000);
        assert!(content
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
        assert!(pattern_bytes(0).is_empty());
    }
}
