//! The two kinds of connection the proxy reads and writes, client side and upstream side: plain
//! TCP, or TLS ([`crate::tls::stream`]). Each is split into a read half and a write half, so a
//! request body can be uploaded while the response is relayed.
//!
//! An enum rather than generics: one copy of the relay code serves both, and the cost for plain
//! connections is one predictable branch per read or write, next to a syscall.

use crate::tls::stream::{TlsReader, TlsWriter};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::io;

/// The read half of a connection.
#[derive(Debug)]
pub enum StreamReader {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(TlsReader),
}

/// The write half of a connection.
#[derive(Debug)]
pub enum StreamWriter {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(TlsWriter),
}

/// Splits a plain TCP connection.
pub fn plain(stream: TcpStream) -> (StreamReader, StreamWriter) {
    let (r, w) = stream.into_split();
    (StreamReader::Plain(r), StreamWriter::Plain(w))
}

/// The halves of a connection whose TLS handshake completed.
pub fn tls((r, w): (TlsReader, TlsWriter)) -> (StreamReader, StreamWriter) {
    (StreamReader::Tls(r), StreamWriter::Tls(w))
}

impl StreamReader {
    /// Whether bytes already read from the socket wait in this reader unread (TLS only: a plain
    /// reader keeps nothing between reads). See [`TlsReader::has_buffered`].
    pub fn has_buffered(&self) -> bool {
        match self {
            StreamReader::Plain(_) => false,
            StreamReader::Tls(r) => r.has_buffered(),
        }
    }
}

impl AsyncReadRent for StreamReader {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            StreamReader::Plain(r) => r.read(buf).await,
            StreamReader::Tls(r) => r.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            StreamReader::Plain(r) => r.readv(buf).await,
            StreamReader::Tls(r) => r.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for StreamWriter {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            StreamWriter::Plain(w) => w.write(buf).await,
            StreamWriter::Tls(w) => w.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            StreamWriter::Plain(w) => w.writev(buf).await,
            StreamWriter::Tls(w) => w.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            StreamWriter::Plain(w) => w.flush().await,
            StreamWriter::Tls(w) => w.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            StreamWriter::Plain(w) => w.shutdown().await,
            StreamWriter::Tls(w) => w.shutdown().await,
        }
    }
}
