//! Chunked transfer coding (RFC 9112 §7.1): a strict, resumable decoder that re-encodes as it goes.
//!
//! The decoder never forwards a "valid prefix" of something invalid: bytes are written to `out`
//! only once the chunk header they belong to has been fully validated. Feeding the same input in
//! any split produces the same output and the same error.

/// What the decoder writes while it consumes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedOutput {
    /// Re-encode as canonical chunked (`{size:x}\r\n{data}\r\n`, `0\r\n`, trailers, `\r\n`),
    /// chunk extensions dropped. `keep_trailers` forwards trailer fields.
    Chunked { keep_trailers: bool },
    /// Write the payload only (for a client leg that is not chunked).
    Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body: {0}")]
pub struct ChunkedError(pub &'static str);

/// Progress of one `decode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeProgress {
    /// Input bytes consumed; the caller drops them. Bytes not consumed (an incomplete chunk
    /// header or trailer line) must be fed again, with more appended.
    pub consumed: usize,
    /// Payload bytes (chunk data) decoded in this call.
    pub payload: u64,
    /// The last chunk and trailer section are complete; bytes after `consumed` belong to the
    /// next message.
    pub done: bool,
}

/// Resumable chunked decoder. Limits: chunk-size up to 16 hex digits with no overflow, chunk
/// header line and each trailer line at most 4 KiB, trailer section at most 16 KiB.
#[derive(Debug)]
pub struct ChunkedDecoder {
    output: ChunkedOutput,
    // implementation state
}

impl ChunkedDecoder {
    pub fn new(output: ChunkedOutput) -> Self {
        let _ = output;
        todo!()
    }

    /// Consumes as much of `input` as possible, appending to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<DecodeProgress, ChunkedError> {
        let _ = (input, out);
        todo!()
    }

    pub fn is_done(&self) -> bool {
        todo!()
    }
}
