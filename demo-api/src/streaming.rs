//! The body endpoints: `POST /echo` sends the request body straight back, `GET /bytes?n=N`
//! sends N bytes of a fixed pattern.
//!
//! `/echo` streams: the response body *is* the request body, so each chunk goes back out as
//! soon as it arrives and memory stays bounded whatever the size. The response has the same
//! framing as the request (`Content-Length` in, `Content-Length` out; chunked in, chunked out)
//! and the same `Content-Type`. Because nothing is buffered, a client (or proxy) must read the
//! response while it is still sending a large body, or both sides stall on full socket buffers.
//!
//! `/bytes` streams too: [`PatternBody`] hands out 64 KiB slices of one static block of the
//! pattern, so even a 1 GiB body costs no memory beyond the socket buffers.

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// Frame size of a streamed `/bytes` body.
const CHUNK_SIZE: usize = 64 * 1024;

/// `CHUNK_SIZE + PATTERN_PERIOD` bytes of the pattern: any frame starting at any phase of the
/// pattern is a slice of it.
static PATTERN_BLOCK: [u8; CHUNK_SIZE + PATTERN_PERIOD] = pattern_block();

const fn pattern_block() -> [u8; CHUNK_SIZE + PATTERN_PERIOD] {
    let mut block = [0u8; CHUNK_SIZE + PATTERN_PERIOD];
    let mut i = 0;
    while i < block.len() {
        block[i] = (i % PATTERN_PERIOD) as u8;
        i += 1;
    }
    block
}

/// `GET /bytes?n=N`: N bytes (0..=1 GiB), byte `i` = `i % 251`, with `Content-Length: N`.
pub async fn bytes(Query(query): Query<QueryParams>) -> Result<Response, BadRequest> {
    let length = integer_in_range(&query, "n", 0..=MAX_BYTES)?;
    // An exact size hint makes hyper send `Content-Length: N`.
    let body = Body::new(PatternBody { sent: 0, length });
    let content_type = HeaderValue::from_static("application/octet-stream");
    Ok(([(CONTENT_TYPE, content_type)], body).into_response())
}

/// The first `length` bytes of the repeating pattern 0, 1, …, 250, 0, 1, …, in frames.
struct PatternBody {
    sent: u64,
    length: u64,
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let left = self.length - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let take = usize::try_from(left).map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE));
        let phase = (self.sent % PATTERN_PERIOD as u64) as usize;
        self.sent += take as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &PATTERN_BLOCK[phase..phase + take],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.length
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length - self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_block_byte_i_is_i_mod_251() {
        assert!(PATTERN_BLOCK
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
    }
}
