//! TLS over a monoio `TcpStream`: the handshake, then two halves ([`TlsReader`], [`TlsWriter`])
//! that can be used at the same time, as the proxy does when it uploads a request body while it
//! relays the response, or relays a WebSocket both ways.
//!
//! Flow: [`handshake`] drives a rustls [`Connection`] (server or client side) over the whole
//! stream until the handshake is done, then splits the TCP stream and shares the connection
//! between the halves in an `Rc<RefCell<_>>`. Every borrow of it is synchronous: ciphertext is
//! moved between rustls and each half's own buffer while borrowed, and the socket is read or
//! written only after the borrow ended, so the halves never hold it across an `.await`.
//!
//! - The reader reads ciphertext into its own buffer, feeds it to rustls and copies the plaintext
//!   out. Records rustls wants to send in reply (a TLS 1.3 key update, an alert) wait in rustls
//!   until the writer's next write or its shutdown.
//! - The writer hands plaintext to rustls, collects the resulting records in its own buffer and
//!   writes them to the socket.
//!
//! Why not monoio-rustls' split halves: they share one stream (buffers included) through an
//! `UnsafeCell`, and a read that hits a TLS error writes the alert itself; if the other half is in
//! the middle of a write at that moment, its buffer is out on loan and the crate panics ("buffer
//! mut expected") — with `panic = "abort"` a client could stop the whole proxy by sending a bad
//! record while a response is being written to it.
//!
//! A peer that closes TCP without `close_notify` reads as an ordinary end of stream (as plain TCP
//! would), not as an error: many HTTP clients and servers close that way.
//!
//! A read or write future dropped before it completes (a timeout) leaves the stream in an unknown
//! state (a record half read or half written); every later call on that half fails, so the
//! connection can only be closed.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::Connection;
use std::cell::RefCell;
use std::io::{self, BufRead};
use std::rc::Rc;

/// Ciphertext read per socket read: one full TLS record (16 KiB of plaintext plus its header,
/// padding and tag) fits.
const INCOMING_BUFFER: usize = 17 * 1024;

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer closed the connection before the handshake completed.
    #[error("the peer closed the connection during the TLS handshake")]
    Closed,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not a valid TLS handshake, or the two sides found nothing
    /// in common (versions, cipher suites, ALPN), or the peer's certificate was refused.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

/// Completes the TLS handshake of `conn` over `tcp` and returns the stream as two halves.
/// Bytes the peer sent after its last handshake message (a request following at once) are kept
/// for the reader.
pub async fn handshake(
    mut tcp: TcpStream,
    mut conn: Connection,
) -> Result<(TlsReader, TlsWriter), HandshakeError> {
    let mut incoming = Vec::with_capacity(INCOMING_BUFFER);
    let mut fed = 0;
    let mut outgoing = Vec::new();
    loop {
        encrypt_pending(&mut conn, &mut outgoing)?;
        if !outgoing.is_empty() {
            let (result, out) = tcp.write_all(outgoing).await;
            result?;
            outgoing = out;
            outgoing.clear();
        }
        if !conn.is_handshaking() {
            break;
        }
        if fed == incoming.len() {
            incoming.clear();
            fed = 0;
            let (result, buf) = tcp.read(incoming).await;
            incoming = buf;
            if result? == 0 {
                return Err(HandshakeError::Closed);
            }
        }
        match conn.read_tls(&mut &incoming[fed..])? {
            0 => return Err(stalled().into()),
            n => fed += n,
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the peer why (the alert rustls queued), as far as the socket lets us.
            outgoing.clear();
            if encrypt_pending(&mut conn, &mut outgoing).is_ok() && !outgoing.is_empty() {
                let _ = tcp.write_all(outgoing).await;
            }
            return Err(e.into());
        }
    }
    incoming.drain(..fed);
    let (tcp_r, tcp_w) = tcp.into_split();
    let conn = Rc::new(RefCell::new(conn));
    let reader = TlsReader {
        conn: conn.clone(),
        tcp: tcp_r,
        incoming,
        fed: 0,
        eof: false,
        broken: false,
    };
    let writer = TlsWriter {
        conn,
        tcp: tcp_w,
        outgoing,
        broken: false,
    };
    Ok((reader, writer))
}

/// Moves every record rustls wants to send into `out`.
fn encrypt_pending(conn: &mut Connection, out: &mut Vec<u8>) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(out)?;
    }
    Ok(())
}

/// rustls took no more ciphertext although it has nothing to give: never expected, but looping
/// on it would spin.
fn stalled() -> io::Error {
    io::Error::other("rustls accepted no more TLS data")
}

fn broken() -> io::Error {
    io::Error::other("an earlier TLS read or write on this connection was cancelled midway")
}

/// The reading half: plaintext from the peer.
#[derive(Debug)]
pub struct TlsReader {
    conn: Rc<RefCell<Connection>>,
    tcp: OwnedReadHalf<TcpStream>,
    /// Ciphertext read from the socket; `incoming[fed..]` is not yet given to rustls.
    incoming: Vec<u8>,
    fed: usize,
    /// The socket reached its end.
    eof: bool,
    /// A read was cancelled while the socket read was in flight.
    broken: bool,
}

/// What the buffered plaintext gave.
enum Plaintext {
    /// This many bytes were copied (0: the peer sent `close_notify`).
    Copied(usize),
    /// Nothing buffered: more ciphertext is needed.
    NeedMore,
}

impl TlsReader {
    /// `f` of the certificate the peer presented and the handshake verified, leaf first (a
    /// server's client certificate, mTLS); `None` when it presented none.
    pub fn with_peer_leaf<T>(
        &self,
        f: impl FnOnce(Option<&rustls::pki_types::CertificateDer<'static>>) -> T,
    ) -> T {
        let conn = self.conn.borrow();
        f(conn.peer_certificates().and_then(<[_]>::first))
    }

    /// Whether anything already read from the socket waits here unread: ciphertext not yet
    /// given to rustls, plaintext it decrypted that nobody took, or the end of the stream. An
    /// idle pooled connection with any of it holds bytes past its last response, which a peek at
    /// the socket cannot see (see `upstream::pool`).
    pub fn has_buffered(&self) -> bool {
        if self.fed < self.incoming.len() || self.eof || self.broken {
            return true;
        }
        let mut conn = self.conn.borrow_mut();
        let mut reader = conn.reader();
        !matches!(reader.fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Copies buffered plaintext into `dst` (as much as fits, across records).
    fn take_plaintext(&self, dst: &mut impl IoBufMut) -> io::Result<Plaintext> {
        let mut conn = self.conn.borrow_mut();
        let mut reader = conn.reader();
        let mut copied = 0;
        loop {
            let space = dst.bytes_total() - copied;
            if space == 0 {
                return Ok(Plaintext::Copied(copied));
            }
            match reader.fill_buf() {
                Ok([]) => return Ok(Plaintext::Copied(copied)),
                Ok(chunk) => {
                    let n = chunk.len().min(space);
                    copy_into(dst, copied, &chunk[..n]);
                    reader.consume(n);
                    copied += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if copied > 0 {
                        Plaintext::Copied(copied)
                    } else {
                        Plaintext::NeedMore
                    });
                }
                // TCP closed without close_notify: an ordinary end of stream (see module docs).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(Plaintext::Copied(copied))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives rustls the next buffered ciphertext and decrypts it.
    fn feed(&mut self) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        match conn.read_tls(&mut &self.incoming[self.fed..])? {
            0 => return Err(stalled()),
            n => self.fed += n,
        }
        if self.fed == self.incoming.len() {
            self.incoming.clear();
            self.fed = 0;
        }
        conn.process_new_packets()
            .map(drop)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    async fn read_plaintext<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if self.broken {
            return (Err(broken()), buf);
        }
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(Plaintext::Copied(n)) => return (Ok(n), buf),
                Ok(Plaintext::NeedMore) => {}
                Err(e) => return (Err(e), buf),
            }
            if self.eof {
                return (Ok(0), buf);
            }
            if self.incoming.is_empty() {
                self.broken = true;
                let incoming = std::mem::take(&mut self.incoming);
                let (result, incoming) = self.tcp.read(incoming).await;
                self.broken = false;
                self.incoming = incoming;
                match result {
                    Ok(0) => {
                        self.eof = true;
                        // Tell rustls, so a close_notify already received reads as a clean end.
                        let _ = self.conn.borrow_mut().read_tls(&mut &[][..]);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            if let Err(e) = self.feed() {
                return (Err(e), buf);
            }
        }
    }
}

impl AsyncReadRent for TlsReader {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_plaintext(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` owns the memory the RawBuf points to and outlives this call; RawBuf only
        // borrows the first non-empty iovec.
        let Some(raw) = (unsafe { RawBuf::new_from_iovec_mut(&mut buf) }) else {
            return (Ok(0), buf);
        };
        let (result, _) = self.read_plaintext(raw).await;
        if let Ok(n) = result {
            // SAFETY: `n` bytes of the first iovec were just written by `read_plaintext`.
            unsafe { buf.set_init(n) };
        }
        (result, buf)
    }
}

/// The writing half: plaintext to the peer.
#[derive(Debug)]
pub struct TlsWriter {
    conn: Rc<RefCell<Connection>>,
    tcp: OwnedWriteHalf<TcpStream>,
    /// Records waiting to be written to the socket; reused between writes.
    outgoing: Vec<u8>,
    /// A write was cancelled while records were being written.
    broken: bool,
}

impl TlsWriter {
    /// Encrypts what rustls has queued (our plaintext, or replies the reader caused) and writes
    /// it out.
    async fn send_pending(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(broken());
        }
        encrypt_pending(&mut self.conn.borrow_mut(), &mut self.outgoing)?;
        if self.outgoing.is_empty() {
            return Ok(());
        }
        self.broken = true;
        let outgoing = std::mem::take(&mut self.outgoing);
        let (result, mut outgoing) = self.tcp.write_all(outgoing).await;
        self.broken = false;
        outgoing.clear();
        self.outgoing = outgoing;
        result.map(drop)
    }

    async fn write_plaintext<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.broken {
            return (Err(broken()), buf);
        }
        let accepted = {
            let mut conn = self.conn.borrow_mut();
            // rustls takes as much as its send buffer allows (64 KiB by default); `send_pending`
            // empties that buffer every time, so a relay chunk goes in whole.
            std::io::Write::write(&mut conn.writer(), as_slice(&buf))
        };
        let accepted = match accepted {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.send_pending().await {
            Ok(()) => (Ok(accepted), buf),
            Err(e) => (Err(e), buf),
        }
    }
}

impl AsyncWriteRent for TlsWriter {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.write_plaintext(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` owns the memory the RawBuf points to and outlives this call; RawBuf only
        // borrows the first non-empty iovec.
        let Some(raw) = (unsafe { RawBuf::new_from_iovec(&buf) }) else {
            return (Ok(0), buf);
        };
        let (result, _) = self.write_plaintext(raw).await;
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_pending().await?;
        self.tcp.flush().await
    }

    /// Sends `close_notify`, then half-closes the socket.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.send_pending().await?;
        self.tcp.shutdown().await
    }
}

/// The initialized bytes of `buf`.
fn as_slice<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: IoBuf guarantees `read_ptr` points to `bytes_init` initialized bytes that stay valid
    // while `buf` is borrowed.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// Writes `src` into `dst` at `offset` and marks everything up to its end initialized.
/// The caller keeps `offset + src.len() <= dst.bytes_total()`.
fn copy_into(dst: &mut impl IoBufMut, offset: usize, src: &[u8]) {
    assert!(offset + src.len() <= dst.bytes_total());
    // SAFETY: IoBufMut guarantees `write_ptr` points to `bytes_total` writable bytes; the assert
    // keeps the copy inside them, and `src` is our own memory, so the two do not overlap. After
    // the copy, `offset + src.len()` bytes are initialized (the first `offset` by earlier calls).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.write_ptr().add(offset), src.len());
        dst.set_init(offset + src.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::TestCa;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let ca = TestCa::new();
        let leaf = ca.leaf(&["a.test"]);
        let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// The client's last handshake message and its first request arrive in one TCP segment: the
    /// request must not be lost between the handshake and the reader.
    #[test]
    fn bytes_sent_right_after_the_handshake_reach_the_reader() {
        let (server_config, client_config) = configs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();

        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("a.test").unwrap();
            let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            // Up to the server's flight, then Finished and the request written together.
            conn.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            while conn.is_handshaking() {
                let mut out = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut out).unwrap();
                }
                tcp.write_all(&out).unwrap();
                if conn.is_handshaking() && conn.wants_read() {
                    conn.read_tls(&mut tcp).unwrap();
                    conn.process_new_packets().unwrap();
                }
            }
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            tcp.write_all(&out).unwrap();
            // Wait for the server to close, reading (and dropping) its tickets.
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink);
        });

        let received = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let server = rustls::ServerConnection::new(server_config).unwrap();
                let (mut reader, mut writer) = handshake(tcp, server.into()).await.unwrap();
                let mut received = Vec::new();
                while !received.ends_with(b"\r\n\r\n") {
                    let (n, buf) = reader.read(Vec::with_capacity(64)).await;
                    assert!(n.unwrap() > 0, "closed before the request arrived");
                    received.extend_from_slice(&buf);
                }
                writer.shutdown().await.unwrap();
                received
            });
        client.join().unwrap();
        assert_eq!(received, b"GET / HTTP/1.1\r\n\r\n");
    }

    /// A record larger than the reader's buffer leaves plaintext behind in rustls, where no peek
    /// at the socket sees it: `has_buffered` does.
    #[test]
    fn plaintext_left_in_rustls_counts_as_buffered() {
        let (server_config, client_config) = configs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("a.test").unwrap();
            let conn = rustls::ClientConnection::new(client_config, name).unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(b"0123456789").unwrap();
            tls.flush().unwrap();
            let mut sink = Vec::new();
            let _ = tls.read_to_end(&mut sink);
        });
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let server = rustls::ServerConnection::new(server_config).unwrap();
                let (mut reader, mut writer) = handshake(tcp, server.into()).await.unwrap();
                let (n, _) = reader.read(Vec::with_capacity(4)).await;
                assert_eq!(n.unwrap(), 4);
                assert!(reader.has_buffered(), "six bytes are still in rustls");
                let mut rest = Vec::new();
                while rest.len() < 6 {
                    let (n, buf) = reader.read(Vec::with_capacity(64)).await;
                    assert!(n.unwrap() > 0);
                    rest.extend_from_slice(&buf);
                }
                assert_eq!(rest, b"456789");
                assert!(!reader.has_buffered(), "everything was read");
                writer.shutdown().await.unwrap();
            });
        client.join().unwrap();
    }
}
