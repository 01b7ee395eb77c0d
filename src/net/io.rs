//! Small rent-style I/O helpers over monoio's `AsyncReadRent`/`AsyncWriteRent`.
//!
//! monoio's reads write from the start of a `Vec`; to append we read into the spare capacity
//! (`slice_mut(len..cap)`), which advances the length by what was read.

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller,
    OwnedReadHalf,
};
use monoio::net::TcpStream;
use std::io;
use std::time::{Duration, Instant};

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

/// The canceller of a connection's [`read_unless_quiet`] calls, kept with the connection: monoio's
/// `Canceller` allocates, and a read between every two requests should not.
#[derive(Default)]
pub struct QuietReadCanceller(Canceller);

impl std::fmt::Debug for QuietReadCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuietReadCanceller")
    }
}

/// Reads once like [`read_append`], unless nothing arrives before `quiet_at`: then the read is
/// cancelled and `None` comes back with the buffer, so the caller can free it while the
/// connection stays quiet ([`wait_readable`]).
///
/// The read is cancelled through the runtime and awaited, never just dropped: a read that
/// completed as the timer fired still hands over its bytes (a dropped read's bytes would be
/// lost, and with them the start of the client's next request).
pub async fn read_unless_quiet(
    r: &mut OwnedReadHalf<TcpStream>,
    mut buf: Vec<u8>,
    min_spare: usize,
    quiet_at: Instant,
    cancel: &mut QuietReadCanceller,
) -> (Option<io::Result<usize>>, Vec<u8>) {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let read = r.cancelable_read(buf.slice_mut(len..cap), cancel.0.handle());
    let mut read = std::pin::pin!(read);
    monoio::select! {
        (result, slice) = &mut read => return (Some(result), slice.into_inner()),
        _ = monoio::time::sleep_until(quiet_at.into()) => {}
    }
    // `cancel` consumes the canceller and gives a fresh one (a cancelled one cancels every
    // later operation at once).
    cancel.0 = std::mem::take(&mut cancel.0).cancel();
    let (result, slice) = read.await;
    match result {
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => (None, slice.into_inner()),
        result => (Some(result), slice.into_inner()),
    }
}

/// Waits until the socket has something to read (or its end, or an error), holding no buffer.
pub async fn wait_readable(r: &OwnedReadHalf<TcpStream>) -> io::Result<()> {
    // SAFETY: the halves share the stream through an `UnsafeCell` (monoio's own split methods
    // read it the same way); `readable` only takes `&self`, and the caller is between requests,
    // where the write half is not in use.
    let stream = unsafe { &*r.0.get() };
    stream.readable(false).await
}
