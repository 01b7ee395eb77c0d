//! Socket activation: listening sockets handed over by systemd (`lbproxy.socket`) through
//! `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`.
//!
//! Flow: [`InheritedSockets::from_env`] runs first thing in `lbproxy serve`, before any thread
//! exists (it unsets the variables, so nothing started later mistakes them for its own). Each
//! descriptor is checked to be a listening TCP socket and kept under its name — the socket unit's
//! `FileDescriptorName=`, which must equal the listener's name in the configuration (`http` for
//! `[listener.http]`). [`crate::listener`] then takes the socket of each configured listener
//! instead of binding one; every worker accepts on a duplicate of it, so they share one accept
//! queue, and that queue — owned by systemd — survives `systemctl restart lbproxy`: connections
//! that arrive while the proxy restarts wait in the kernel's backlog instead of being refused.
//!
//! Without names (`LISTEN_FDNAMES` unset, e.g. `systemd-socket-activate` without
//! `--fdname`), a single descriptor is given to a configuration with a single listener.

use anyhow::Context;
use socket2::{Socket, Type};
use std::net::TcpListener;
use std::os::fd::FromRawFd;

/// The name systemd gives a descriptor whose socket unit sets no `FileDescriptorName=`.
const UNNAMED: &str = "unknown";

/// Listening sockets passed by the service manager, by name. Empty when not socket-activated.
#[derive(Debug, Default)]
pub struct InheritedSockets {
    sockets: Vec<(String, TcpListener)>,
}

impl InheritedSockets {
    /// No inherited sockets: every listener binds its own.
    pub fn none() -> Self {
        Self::default()
    }

    /// Takes the sockets systemd passed to this process, if any, and unsets the `LISTEN_*`
    /// variables. Call before starting any thread (it changes the environment).
    pub fn from_env() -> anyhow::Result<Self> {
        let passed = sd_notify::listen_fds_with_names(true)
            .context("reading LISTEN_FDS/LISTEN_FDNAMES (socket activation)")?;
        let mut sockets = Vec::new();
        for (fd, name) in passed {
            // SAFETY: systemd passes these descriptors to this process (LISTEN_PID matched our pid,
            // checked by sd-notify) and nothing else in the process knows or owns them; each is
            // wrapped exactly once, so the `Socket` is its only owner.
            let socket = unsafe { Socket::from_raw_fd(fd) };
            sockets.push((name.clone(), checked(socket, fd, &name)?));
        }
        Ok(Self { sockets })
    }

    /// Whether systemd passed any socket.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Takes the socket for the listener `name`: the one named so, or the only unnamed socket
    /// when the configuration has a single listener (`only_listener`).
    pub fn take(&mut self, name: &str, only_listener: bool) -> Option<TcpListener> {
        let index = self
            .sockets
            .iter()
            .position(|(n, _)| n == name)
            .or_else(|| {
                (only_listener && self.sockets.len() == 1 && self.sockets[0].0 == UNNAMED)
                    .then_some(0)
            })?;
        Some(self.sockets.remove(index).1)
    }

    /// Names of the sockets no listener took. They are closed when `self` drops.
    pub fn unused_names(&self) -> Vec<String> {
        self.sockets.iter().map(|(n, _)| n.clone()).collect()
    }

    #[cfg(test)]
    pub(crate) fn for_tests(sockets: Vec<(&str, TcpListener)>) -> Self {
        Self {
            sockets: sockets
                .into_iter()
                .map(|(n, s)| (n.to_owned(), s))
                .collect(),
        }
    }
}

/// Accepts `socket` only if it is a listening TCP (stream, IPv4/IPv6) socket, made non-blocking.
fn checked(socket: Socket, fd: i32, name: &str) -> anyhow::Result<TcpListener> {
    let what = || format!("socket-activation descriptor {fd} (FileDescriptorName={name})");
    let is_tcp = socket.r#type().with_context(what)? == Type::STREAM
        && socket
            .local_addr()
            .with_context(what)?
            .as_socket()
            .is_some();
    anyhow::ensure!(
        is_tcp && socket.is_listener().with_context(what)?,
        "{} is not a listening TCP socket: lbproxy.socket must use ListenStream=IP:PORT",
        what()
    );
    socket.set_nonblocking(true).with_context(what)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    #[test]
    fn sockets_are_matched_by_name_and_unused_ones_are_reported() {
        let (http, admin) = (listener(), listener());
        let http_addr = http.local_addr().unwrap();
        let mut inherited = InheritedSockets::for_tests(vec![("admin", admin), ("http", http)]);
        let taken = inherited.take("http", false).unwrap();
        assert_eq!(taken.local_addr().unwrap(), http_addr);
        assert!(inherited.take("tcp", false).is_none());
        assert_eq!(inherited.unused_names(), ["admin"]);
    }

    #[test]
    fn one_unnamed_socket_serves_a_single_listener_only() {
        let mut inherited = InheritedSockets::for_tests(vec![(UNNAMED, listener())]);
        assert!(inherited.take("http", false).is_none());
        assert!(inherited.take("http", true).is_some());
    }

    #[test]
    fn a_socket_that_is_not_listening_is_refused_with_its_descriptor_and_name() {
        let bound = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
        bound
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let fd = bound.as_raw_fd();
        let err = checked(bound, fd, "http").unwrap_err().to_string();
        assert!(err.contains("FileDescriptorName=http"), "{err}");
        assert!(err.contains("not a listening TCP socket"), "{err}");
    }

    #[test]
    fn a_listening_tcp_socket_is_accepted_non_blocking() {
        let socket = Socket::from(listener());
        let fd = socket.as_raw_fd();
        let accepted = checked(socket, fd, "http").unwrap();
        let fd = accepted.into_raw_fd();
        // SAFETY: `fd` was just released by `into_raw_fd` and is owned by nothing else.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        assert!(socket.nonblocking().unwrap());
    }
}
