//! One direction of the relay by plain copy: read into a buffer, write it out, reuse the buffer.
//! Works over anything monoio reads and writes, plain TCP or TLS (WebSockets over https
//! listeners relay this way).
//!
//! The buffer starts small and grows to [`LARGE_BUFFER`] the first time a read fills it: a
//! connection that moves little (a WebSocket, a database session) holds 2 × [`SMALL_BUFFER`]
//! for its whole life; one that streams gets few, large reads and writes.

use super::{Direction, Fault, Progress};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// The buffer each direction starts with.
pub const SMALL_BUFFER: usize = 16 * 1024;
/// The buffer of a direction that has filled its small one: one read and one write per this
/// many bytes of a bulk transfer.
pub const LARGE_BUFFER: usize = 256 * 1024;

/// Copies `from` → `to` in `direction` until end of stream, then half-closes `to`. `pending`:
/// bytes already read from `from` (e.g. with a request head), written first.
pub async fn direction<R, W>(
    from: &mut R,
    to: &mut W,
    direction: Direction,
    pending: Vec<u8>,
    progress: &Progress,
) -> Result<(), Fault>
where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let mut buf = if pending.is_empty() {
        Vec::with_capacity(SMALL_BUFFER)
    } else {
        progress.moved(direction, pending.len());
        let (result, mut pending) = to.write_all(pending).await;
        result.map_err(|e| direction.write_failed(e))?;
        progress.touch();
        pending.clear();
        pending.reserve(SMALL_BUFFER);
        pending
    };
    loop {
        buf.clear();
        let capacity = buf.capacity();
        let (result, slice) = from.read(buf.slice_mut(0..capacity)).await;
        buf = slice.into_inner();
        let n = match result {
            Ok(0) => {
                // End of stream: pass it on, and keep the other direction flowing.
                return to.shutdown().await.map_err(|e| direction.write_failed(e));
            }
            Ok(n) => n,
            Err(e) => return Err(direction.read_failed(e)),
        };
        progress.moved(direction, n);
        let (result, written) = to.write_all(buf).await;
        result.map_err(|e| direction.write_failed(e))?;
        progress.touch();
        buf = written;
        if n == capacity && capacity < LARGE_BUFFER {
            buf = Vec::with_capacity(LARGE_BUFFER);
        }
    }
}
