//! Small rent-style I/O helpers over monoio's `AsyncReadRent`/`AsyncWriteRent`.
//!
//! monoio's reads write from the start of a `Vec`; to append we read into the spare capacity
//! (`slice_mut(len..cap)`), which advances the length by what was read.

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use std::io;
use std::time::Duration;

/// Reads once, appending to `buf`, growing it first so at least `min_spare` bytes fit.
/// Returns the bytes read (0 = EOF) and the buffer.
pub async fn read_append<R: AsyncReadRent>(
    r: &mut R,
    mut buf: Vec<u8>,
    min_spare: usize,
) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (result, slice) = r.read(buf.slice_mut(len..cap)).await;
    (result, slice.into_inner())
}

/// Reads at most `limit` bytes into `buf`, replacing its contents.
pub async fn read_replace<R: AsyncReadRent>(
    r: &mut R,
    mut buf: Vec<u8>,
    limit: usize,
) -> (io::Result<usize>, Vec<u8>) {
    buf.clear();
    let end = buf.capacity().min(limit);
    let (result, slice) = r.read(buf.slice_mut(0..end)).await;
    (result, slice.into_inner())
}

/// Writes all of `buf` within `limit` (a stalled reader becomes `TimedOut`) and returns the
/// buffer for reuse. On error the buffer is dropped: the caller closes the connection anyway.
pub async fn write_all_within<W: AsyncWriteRent, B: IoBuf + 'static>(
    w: &mut W,
    buf: B,
    limit: Duration,
) -> io::Result<B> {
    match monoio::time::timeout(limit, w.write_all(buf)).await {
        Ok((Ok(_), buf)) => Ok(buf),
        Ok((Err(e), _)) => Err(e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}
