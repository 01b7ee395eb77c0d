//! Relaying a response body compressed: the backend's payload (after its own framing: a length,
//! chunks or until close) goes through an [`Encoder`] and out to the client as chunks.
//!
//! A body without a length (chunked, or until close: how streams are sent — long polls, NDJSON)
//! is flushed at each read from the backend, and what the encoder produced is sent as one chunk,
//! so a stream reaches the client as it comes. A body with a `Content-Length` is not a stream to
//! hurry: the encoder gives out whole blocks as they fill, which compresses better and costs
//! markedly less CPU (bench/: compression), and a read that filled no block sends nothing. The stream is finished, and the last chunk written, only when the backend's
//! message ends at its framing; a backend that fails mid-body ends the relay with the error, and
//! the client, whose body never got its last chunk, sees a truncated message, never a complete
//! one. The upstream side keeps the uncompressed relay's rules: bytes past the framing are never
//! forwarded and make the connection [`BodyEnd::Overrun`]. An encoder that fails (it writes into
//! memory: it does not, short of a bug) ends the relay as a client failure: the connection closes.

use super::{
    end_after, read_more_chunked, read_within, BodyEnd, ClientSink, RelayError, RELAY_BUFFER,
};
use crate::http::compress::{Choice, Encoder, HeadChange};
use crate::http::{ChunkedDecoder, ChunkedOutput, Response, ResponseBody};
use crate::l7::client::PendingRequest;
use crate::l7::record::RequestRecord;
use crate::net::stream::StreamReader;
use crate::upstream::failure::UpstreamFailure;
use std::time::Duration;

/// What compression does to `response`: nothing on a route that does not compress (one branch),
/// else as [`Response::compression`] decides from its status and fields.
pub(super) fn decide(request: &PendingRequest, response: &Response<'_>) -> HeadChange {
    match request.compress {
        Choice::Off => HeadChange::NONE,
        choice => response.compression(
            &request.generation.config.compression,
            choice.coding(),
            request.method,
            request.version,
        ),
    }
}

/// The encoder and the bytes it took and gave, for the record.
struct Compressing<'a> {
    encoder: Encoder,
    /// The encoder's output before it is framed as a chunk.
    packed: Vec<u8>,
    bytes_in: u64,
    bytes_out: u64,
    record: &'a RequestRecord,
}

impl Compressing<'_> {
    /// Compresses `plain` (flushed: see the module docs) and appends what came out as one chunk
    /// to `out` (nothing when the encoder produced nothing: an empty chunk would end the body).
    fn chunk(&mut self, plain: &[u8], flush: bool, out: &mut Vec<u8>) -> Result<(), RelayError> {
        if plain.is_empty() {
            return Ok(());
        }
        self.bytes_in += plain.len() as u64;
        self.encoder
            .compress(plain, flush, &mut self.packed)
            .map_err(|_| RelayError::Client)?;
        self.frame(out);
        Ok(())
    }

    /// Ends the stream and the chunked body.
    fn finish(self, out: &mut Vec<u8>) -> Result<(), RelayError> {
        let Compressing {
            encoder,
            mut packed,
            bytes_in,
            mut bytes_out,
            record,
        } = self;
        let encoding = encoder.encoding();
        encoder
            .finish(&mut packed)
            .map_err(|_| RelayError::Client)?;
        bytes_out += packed.len() as u64;
        push_chunk(out, &packed);
        out.extend_from_slice(b"0\r\n\r\n");
        record.compressed.set(Some((encoding, bytes_in, bytes_out)));
        Ok(())
    }

    fn frame(&mut self, out: &mut Vec<u8>) {
        self.bytes_out += self.packed.len() as u64;
        push_chunk(out, &self.packed);
        self.packed.clear();
    }
}

/// Appends `data` as one chunk (`SIZE CRLF data CRLF`), nothing if it is empty.
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    let digits = format!("{:x}", data.len());
    out.extend_from_slice(digits.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Relays a body compressed by `encoder`, chunked to the client. `buf` holds body bytes that
/// arrived with the head, `out` the client head (sent with the first compressed bytes, or alone
/// before the first read from the backend). Returns how the backend's message ended, as the
/// uncompressed relay does.
#[allow(clippy::too_many_arguments)]
pub(super) async fn relay_compressed(
    up_r: &mut StreamReader,
    client: &mut ClientSink<'_>,
    upstream_body: ResponseBody,
    mut buf: Vec<u8>,
    mut out: Vec<u8>,
    read_limit: Duration,
    encoder: Encoder,
    record: &RequestRecord,
) -> Result<BodyEnd, RelayError> {
    let mut z = Compressing {
        encoder,
        packed: Vec::with_capacity(RELAY_BUFFER / 4),
        bytes_in: 0,
        bytes_out: 0,
        record,
    };
    match upstream_body {
        ResponseBody::None => {
            // Not chosen for compression (`Response::compression`); ends the stream anyway.
            z.finish(&mut out)?;
            client.send(out).await?;
            Ok(end_after(&buf))
        }
        ResponseBody::Length(length) => {
            let first = buf.len().min(usize::try_from(length).unwrap_or(usize::MAX));
            let mut remaining = length - first as u64;
            z.chunk(&buf[..first], false, &mut out)?;
            if remaining == 0 {
                z.finish(&mut out)?;
                client.send(out).await?;
                return Ok(end_after(&buf[first..]));
            }
            out = client.send(out).await?;
            buf.clear();
            if buf.capacity() < RELAY_BUFFER {
                buf = Vec::with_capacity(RELAY_BUFFER);
            }
            loop {
                // A whole buffer, as the plain relay: bytes past the body must be seen.
                let (n, mut b) = read_within(up_r, buf, RELAY_BUFFER, read_limit).await?;
                if n == 0 {
                    return Err(RelayError::Upstream(UpstreamFailure::Invalid(format!(
                        "connection closed with {remaining} of {length} body bytes missing"
                    ))));
                }
                let body_bytes = usize::try_from(remaining).map_or(n, |r| r.min(n));
                b.truncate(body_bytes);
                remaining -= body_bytes as u64;
                out.clear();
                z.chunk(&b, false, &mut out)?;
                if remaining == 0 {
                    z.finish(&mut out)?;
                    client.send(out).await?;
                    return Ok(if n > body_bytes {
                        BodyEnd::Overrun(n - body_bytes)
                    } else {
                        BodyEnd::Exact
                    });
                }
                if !out.is_empty() {
                    out = client.send(out).await?;
                }
                buf = b;
            }
        }
        ResponseBody::Chunked => {
            let mut decoder = ChunkedDecoder::new(ChunkedOutput::Payload);
            let mut plain = Vec::with_capacity(RELAY_BUFFER / 4);
            loop {
                plain.clear();
                let progress = decoder
                    .decode(&buf, &mut plain)
                    .map_err(|e| RelayError::Upstream(UpstreamFailure::Invalid(e.to_string())))?;
                buf.drain(..progress.consumed);
                z.chunk(&plain, true, &mut out)?;
                if progress.done {
                    z.finish(&mut out)?;
                    client.send(out).await?;
                    return Ok(end_after(&buf));
                }
                if !out.is_empty() {
                    out = client.send(out).await?;
                    out.clear();
                }
                buf = read_more_chunked(up_r, buf, read_limit).await?;
            }
        }
        ResponseBody::UntilClose => {
            z.chunk(&buf, true, &mut out)?;
            out = client.send(out).await?;
            buf.clear();
            if buf.capacity() < RELAY_BUFFER {
                buf = Vec::with_capacity(RELAY_BUFFER);
            }
            loop {
                let (n, b) = read_within(up_r, buf, RELAY_BUFFER, read_limit).await?;
                out.clear();
                if n == 0 {
                    z.finish(&mut out)?;
                    client.send(out).await?;
                    return Ok(BodyEnd::NotReusable);
                }
                z.chunk(&b, true, &mut out)?;
                out = client.send(out).await?;
                buf = b;
            }
        }
    }
}
