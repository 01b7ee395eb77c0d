//! The raw syscalls the data plane needs beyond monoio: a non-blocking peek that tells whether
//! a pooled upstream connection is still open before we reuse it, and a non-blocking accept that
//! takes the connections already waiting in a listener's queue.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

/// What a non-blocking peek at an idle connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum IdleState {
    /// Nothing to read: the peer has not closed. Safe to reuse.
    Open,
    /// The peer closed (EOF) or the socket is in error.
    Closed,
    /// The peer sent bytes while idle (an unsolicited response): not safe to reuse.
    UnexpectedData,
}

/// Peeks at `fd` without blocking and without consuming anything.
pub fn peek_idle(fd: RawFd) -> IdleState {
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid 1-byte buffer for the duration of the call; MSG_PEEK leaves the
    // socket's queue untouched and MSG_DONTWAIT keeps the call from blocking. An invalid fd only
    // yields an error return.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => IdleState::Closed,
        n if n > 0 => IdleState::UnexpectedData,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock => IdleState::Open,
            _ => IdleState::Closed,
        },
    }
}

/// Makes closing `fd` reset the connection (`SO_LINGER` 0: an RST, no FIN, nothing kept in
/// `TIME_WAIT`): how a refused client connection is dropped cheaply. Errors are ignored (the
/// connection is being dropped anyway).
pub fn reset_on_close(fd: RawFd) {
    // SAFETY: `fd` is the caller's open socket, which outlives this call.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&socket).set_linger(Some(std::time::Duration::ZERO));
}

/// Takes one connection already waiting on the non-blocking listening socket `fd`, without
/// waiting for one: `Ok(None)` when the queue is empty. The socket is returned non-blocking and
/// close-on-exec, ready for monoio.
pub fn accept_waiting(fd: RawFd) -> std::io::Result<Option<(std::net::TcpStream, SocketAddr)>> {
    // SAFETY: `fd` is the caller's open listening socket, which outlives this call; the borrow
    // ends with it.
    let listener = unsafe { BorrowedFd::borrow_raw(fd) };
    let accepted = socket2::SockRef::from(&listener).accept();
    match accepted {
        Ok((socket, address)) => {
            socket.set_nonblocking(true)?;
            let peer = address.as_socket().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an IP peer address")
            })?;
            Ok(Some((socket.into(), peer)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn tells_open_closed_and_unexpected_data_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(peek_idle(client.as_raw_fd()), IdleState::Open);

        server.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while peek_idle(client.as_raw_fd()) == IdleState::Open
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        assert_eq!(peek_idle(client.as_raw_fd()), IdleState::UnexpectedData);

        let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let client2 = TcpStream::connect(listener2.local_addr().unwrap()).unwrap();
        drop(listener2.accept().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while peek_idle(client2.as_raw_fd()) == IdleState::Open
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        assert_eq!(peek_idle(client2.as_raw_fd()), IdleState::Closed);
    }

    #[test]
    fn accept_waiting_takes_what_is_queued_then_says_none() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        assert!(accept_waiting(listener.as_raw_fd()).unwrap().is_none());
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(listener.local_addr().unwrap()).unwrap())
            .collect();
        let mut accepted = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while accepted.len() < 3 && std::time::Instant::now() < deadline {
            if let Some((stream, peer)) = accept_waiting(listener.as_raw_fd()).unwrap() {
                assert!(clients.iter().any(|c| c.local_addr().unwrap() == peer));
                accepted.push(stream);
            }
        }
        assert_eq!(accepted.len(), 3);
        assert!(accepted.iter().all(|s| {
            // Non-blocking: a read with nothing to read says WouldBlock rather than waiting.
            let mut byte = [0u8; 1];
            matches!((&*s).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }));
        assert!(accept_waiting(listener.as_raw_fd()).unwrap().is_none());
    }
}
