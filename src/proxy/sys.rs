//! The one raw syscall the data plane needs beyond monoio: a non-blocking peek that tells whether
//! a pooled upstream connection is still open before we reuse it.

use std::os::fd::RawFd;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
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
}
