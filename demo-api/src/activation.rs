//! Socket activation: serve on the listening socket systemd passes (`api@N.socket`), instead of
//! binding a port of our own.
//!
//! Why: the socket unit owns the port. While `api@N.service` restarts, the socket stays open in
//! systemd, so a connection that arrives between the old process's exit and the new one's start
//! waits in the kernel's accept backlog and is served by the new process — never refused.
//!
//! Flow ([`take_listener`], called from `main` before the tokio runtime starts any thread, since
//! it edits the environment): the protocol of sd_listen_fds(3) with `unset_environment = 1` —
//! `LISTEN_PID` must be our pid (otherwise the variables were meant for another process and are
//! ignored), `LISTEN_FDS` says how many descriptors start at fd 3 (`SD_LISTEN_FDS_START`),
//! `LISTEN_FDNAMES` optionally names them. The three variables are removed whatever the outcome,
//! so nothing we spawn inherits them; every passed descriptor gets `FD_CLOEXEC`. With several
//! descriptors the one named `http` is served, else the first. The chosen one must be a
//! listening TCP stream socket (`SO_TYPE`, `SO_ACCEPTCONN`, `SO_DOMAIN`), or the start fails
//! with a message saying what it is instead.
//!
//! Shutdown: the process only ever closes its own descriptor (axum drops the listener). It must
//! never `shutdown(2)` it: on a listening socket that tears down the listen state for every
//! holder, systemd's copy included, and resets the connections waiting in the backlog.

use std::ffi::c_int;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

use anyhow::{bail, Context};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;
/// Among several passed sockets, the one named so (`FileDescriptorName=http`) is served.
const PREFERRED_NAME: &str = "http";

/// A socket systemd passed us, ready to be served.
#[derive(Debug)]
pub struct Inherited {
    pub listener: TcpListener,
    /// Its `LISTEN_FDNAMES` entry (systemd names it after the socket unit by default).
    pub name: Option<String>,
    pub fd: RawFd,
}

/// The listening socket passed by systemd, if any (see the module doc). `Ok(None)`: not
/// socket-activated (no `LISTEN_PID`, another process's, or `LISTEN_FDS=0`).
pub fn take_listener() -> anyhow::Result<Option<Inherited>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Single-threaded here (before the runtime starts), so no other thread reads the
        // environment while it changes.
        std::env::remove_var(variable);
    }

    let Some(pid) = pid else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .with_context(|| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != std::process::id() {
        tracing::debug!(
            pid,
            "LISTEN_PID names another process: not socket-activated"
        );
        return Ok(None);
    }
    let count: RawFd = match fds.as_deref().map(str::parse) {
        Some(Ok(count)) if (0..=1024).contains(&count) => count,
        _ => bail!("LISTEN_FDS={fds:?} is not a number of passed descriptors"),
    };
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<Option<String>> = match names {
        Some(names) => names.split(':').map(|n| Some(n.to_owned())).collect(),
        None => vec![None; count as usize],
    };
    if names.len() != count as usize {
        bail!(
            "LISTEN_FDNAMES has {} names for LISTEN_FDS={count} descriptors",
            names.len()
        );
    }
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        set_cloexec(fd)?;
    }

    let index = names
        .iter()
        .position(|name| name.as_deref() == Some(PREFERRED_NAME))
        .unwrap_or(0);
    let fd = LISTEN_FDS_START + index as RawFd;
    let name = names[index].clone();
    check_listening_tcp(fd).with_context(|| {
        format!(
            "cannot serve on the socket systemd passed (fd {fd}{}); \
             ListenStream= must name a TCP address",
            name.as_deref()
                .map(|n| format!(", named {n:?}"))
                .unwrap_or_default()
        )
    })?;
    if count > 1 {
        tracing::warn!(
            fd,
            count,
            "systemd passed {count} sockets; serving only fd {fd}"
        );
    }
    // SAFETY: `fd` is open (set_cloexec succeeded on it), a listening TCP socket (checked just
    // above), and owned by nothing else in this process: systemd handed it to us and it is taken
    // exactly once, here, with the variables that described it already removed.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(Some(Inherited { listener, name, fd }))
}

/// `FD_CLOEXEC` on `fd`, which must be open.
fn set_cloexec(fd: RawFd) -> anyhow::Result<()> {
    // SAFETY: fcntl(F_GETFD/F_SETFD) reads and sets descriptor flags only; an invalid `fd`
    // fails with EBADF, touching no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        let error = std::io::Error::last_os_error();
        bail!("systemd passed fd {fd} (LISTEN_FDS), but it is not open: {error}");
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        let error = std::io::Error::last_os_error();
        bail!("cannot set FD_CLOEXEC on fd {fd}: {error}");
    }
    Ok(())
}

/// Fails unless `fd` is an IPv4/IPv6 stream socket in the listening state.
fn check_listening_tcp(fd: RawFd) -> anyhow::Result<()> {
    let domain = socket_option(fd, libc::SO_DOMAIN, "SO_DOMAIN").context("it is not a socket")?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        bail!("it is not an IP socket (address family {domain}; a Unix socket?)");
    }
    let kind = socket_option(fd, libc::SO_TYPE, "SO_TYPE")?;
    if kind != libc::SOCK_STREAM {
        bail!("it is not a stream socket (type {kind}; ListenDatagram=?)");
    }
    if socket_option(fd, libc::SO_ACCEPTCONN, "SO_ACCEPTCONN")? == 0 {
        bail!("it is a TCP socket, but not listening (Accept=yes passes connections)");
    }
    Ok(())
}

/// An integer `SOL_SOCKET` option of `fd`.
fn socket_option(fd: RawFd, option: c_int, name: &str) -> anyhow::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals of the sizes passed; getsockopt writes at most
    // `len` bytes into `value` and fails cleanly (ENOTSOCK, EBADF) on a descriptor that is not
    // a socket.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error()).context(format!("getsockopt({name})"));
    }
    Ok(value)
}
