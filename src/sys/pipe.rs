//! The raw syscalls of the L4 relay, and the only `unsafe` of [`crate::l4`]: pipes sized with
//! `F_SETPIPE_SZ`, non-blocking `splice(2)`, `O_NONBLOCK`, half-close and abortive close.
//!
//! Every function takes a raw fd that the caller owns (a monoio `TcpStream` or a [`Pipe`]) and
//! keeps open for the duration of the call; an fd that is not open only yields an error return.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pipe whose two ends are non-blocking: bytes spliced in from one socket wait here until
/// they are spliced out to the other.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// What the kernel granted (`F_GETPIPE_SZ`), at most what was asked for.
    capacity: usize,
}

impl Pipe {
    /// A new pipe holding up to `wanted` bytes, or less when the kernel refuses that much:
    /// `F_SETPIPE_SZ` fails above `/proc/sys/fs/pipe-max-size`, and for an unprivileged user
    /// whose pipes already hold `/proc/sys/fs/pipe-user-pages-soft` pages. Halving is tried down
    /// to the default size; the pipe is usable whatever it ends up holding.
    pub fn new(wanted: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open fds that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut size = wanted;
        while size > DEFAULT_PIPE_SIZE {
            // SAFETY: F_SETPIPE_SZ takes an int argument and only resizes the pipe `write` owns.
            let rc =
                unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
            if rc >= 0 {
                break;
            }
            size /= 2;
        }
        // SAFETY: F_GETPIPE_SZ takes no argument and reads the size of the pipe `write` owns.
        let granted = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = usize::try_from(granted).map_err(|_| io::Error::last_os_error())?;
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The end bytes are spliced into.
    pub fn write_end(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// The end bytes are spliced out of.
    pub fn read_end(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// Linux's default pipe size (16 pages).
pub const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

/// Moves up to `len` bytes from `from` to `to`, one of which must be a pipe, without blocking
/// and without copying them through user space. `Ok(0)`: `from` is at end of stream.
/// `WouldBlock`: nothing to read, or no room to write, right now.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets are allowed (sockets and pipes have none); splice reads no memory of
    // ours.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Sets `O_NONBLOCK`: splicing from or to a socket blocks on its file flags, whatever
/// `SPLICE_F_NONBLOCK` says (that flag only covers the pipe).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: F_SETFL takes an int of file status flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `shutdown(SHUT_WR)`: the peer reads end of stream once what was sent before has arrived,
/// and can still send to us.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown takes no pointers.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resets the connection now: the peer reads `ECONNRESET` instead of an end of stream it could
/// take for a complete one, and whatever is still unsent is dropped. Done by dissolving the
/// association (`connect` to `AF_UNSPEC`, which makes TCP send a reset) rather than by
/// `SO_LINGER` 0 and close, because the fd stays owned by monoio, whose write halves send a FIN
/// (`shutdown`) when dropped — that would reach the peer before the reset. Afterwards the socket
/// is unconnected; later shutdowns of it fail harmlessly and closing it sends nothing.
pub fn reset(fd: RawFd) -> io::Result<()> {
    // SAFETY: sockaddr is plain old data; all zeroes with AF_UNSPEC is a valid value.
    let mut address: libc::sockaddr = unsafe { std::mem::zeroed() };
    address.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: the address points to a sockaddr that lives across the call, with its size.
    let rc = unsafe {
        libc::connect(
            fd,
            &address,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_pipe_is_at_least_the_default_and_at_most_what_was_asked() {
        let pipe = Pipe::new(256 * 1024).unwrap();
        assert!(pipe.capacity() >= DEFAULT_PIPE_SIZE, "{}", pipe.capacity());
        assert!(pipe.capacity() <= 256 * 1024, "{}", pipe.capacity());
        // Far beyond any pipe-max-size: still a pipe, of some smaller size.
        let pipe = Pipe::new(1 << 30).unwrap();
        assert!(pipe.capacity() >= DEFAULT_PIPE_SIZE);
    }

    #[test]
    fn splice_moves_bytes_socket_to_pipe_to_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(listener2.local_addr().unwrap()).unwrap();
        let (mut d, _) = listener2.accept().unwrap();
        set_nonblocking(b.as_raw_fd()).unwrap();
        set_nonblocking(c.as_raw_fd()).unwrap();
        let pipe = Pipe::new(DEFAULT_PIPE_SIZE).unwrap();

        let empty = splice(b.as_raw_fd(), pipe.write_end(), 1024).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);

        a.write_all(b"hello").unwrap();
        let mut moved = 0;
        while moved < 5 {
            match splice(b.as_raw_fd(), pipe.write_end(), 1024) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(splice(pipe.read_end(), c.as_raw_fd(), 5).unwrap(), 5);
        let mut got = [0u8; 5];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");

        shutdown_write(a.as_raw_fd()).unwrap();
        let eof = loop {
            match splice(b.as_raw_fd(), pipe.write_end(), 1024) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                other => break other.unwrap(),
            }
        };
        assert_eq!(eof, 0, "end of stream");
    }

    #[test]
    fn reset_sends_a_reset_before_anything_else_the_owner_does() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        a.write_all(b"unread").unwrap();
        reset(b.as_raw_fd()).unwrap();
        // What an owner does afterwards (a write half's drop) reaches nobody.
        let _ = b.shutdown(std::net::Shutdown::Write);
        drop(b);
        let mut buf = [0u8; 1];
        let error = a.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }
}
