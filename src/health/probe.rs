//! One probe of one backend: a TCP connect, or an HTTP/1.1 `GET` whose status must be in the
//! expected set. The whole probe (connect, send, first line of the answer) must finish within
//! the timeout. The error says why it failed, for the log line of the flip.
//!
//! Backends of a group with `proxy_protocol` expect a PROXY header on every connection: a probe
//! sends one without addresses first (v1 `UNKNOWN`, v2 `LOCAL`: "this is the proxy itself").

use crate::config::{HealthCheck, ProxyProtocol, StatusSet};
use crate::net::proxy_protocol;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The longest status line we wait for.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// E.g. "HTTP 503 from /health/ready", "connection refused", "no answer within 1s".
    pub reason: String,
    /// The proxy could not even open the connection (out of descriptors, memory or local
    /// ports): the probe says nothing about the backend and must not count against it.
    pub local: bool,
}

impl From<String> for ProbeError {
    fn from(reason: String) -> Self {
        Self {
            reason,
            local: false,
        }
    }
}

impl From<&str> for ProbeError {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// Probes `address` once.
pub async fn probe(
    address: SocketAddr,
    check: &HealthCheck,
    timeout: Duration,
    proxy_protocol: Option<ProxyProtocol>,
) -> Result<(), ProbeError> {
    match monoio::time::timeout(timeout, run(address, check, proxy_protocol)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}").into()),
    }
}

async fn run(
    address: SocketAddr,
    check: &HealthCheck,
    proxy_protocol: Option<ProxyProtocol>,
) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect_addr(address)
        .await
        .map_err(|e| connect_error(&e))?;
    let mut request = proxy_protocol
        .map(proxy_protocol::local)
        .unwrap_or_default();
    let HealthCheck::Http { path, expect, host } = check else {
        if !request.is_empty() {
            // A TCP check is the connect; the header just keeps the backend from logging a
            // connection without one.
            let _ = stream.write_all(request).await;
        }
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| address.to_string());
    request.extend_from_slice(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lbproxy-health-check\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let (written, _) = stream.write_all(request).await;
    written.map_err(|e| format!("sending the probe failed ({e})"))?;
    let line = read_status_line(&mut stream).await?;
    let status = parse_status(&line).ok_or_else(|| {
        format!(
            "not an HTTP response to GET {path}: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(64)])
        )
    })?;
    Ok(check_status(status, expect, path)?)
}

async fn read_status_line(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut received: Vec<u8> = Vec::with_capacity(256);
    let mut buf = vec![0u8; 512];
    loop {
        if let Some(end) = received.iter().position(|&b| b == b'\n') {
            received.truncate(end);
            return Ok(received);
        }
        if received.len() >= MAX_STATUS_LINE {
            return Ok(received);
        }
        let (read, returned) = stream.read(buf).await;
        buf = returned;
        match read {
            Ok(0) => return Err("closed the connection without answering".to_owned()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("reading the answer failed ({e})")),
        }
    }
}

/// `HTTP/1.1 503 Service Unavailable` → 503.
fn parse_status(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.trim_end().split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

fn check_status(status: u16, expect: &StatusSet, path: &str) -> Result<(), String> {
    if expect.contains(status) {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status} from {path} (expected {})",
            expect.describe()
        ))
    }
}

fn connect_error(e: &io::Error) -> ProbeError {
    let local = matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    );
    let reason = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => format!("connect failed ({e})"),
    };
    ProbeError { reason, local }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.0 200"), Some(200));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20 OK"), None);
        let expect = StatusSet::range(200, 399);
        assert_eq!(check_status(204, &expect, "/ready"), Ok(()));
        assert_eq!(
            check_status(503, &expect, "/ready").unwrap_err(),
            "HTTP 503 from /ready (expected 200-399)"
        );
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn probes_real_sockets() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let answers = [
                ("", "HTTP/1.1 200 OK\r\n\r\n"),
                ("", "HTTP/1.1 503 Nope\r\n\r\n"),
                ("PROXY UNKNOWN\r\n", "HTTP/1.1 200 OK\r\n\r\n"),
            ];
            for (header, answer) in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).unwrap();
                    assert!(n > 0, "closed early");
                    request.extend_from_slice(&chunk[..n]);
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let request = request.strip_prefix(header).unwrap_or_else(|| {
                    panic!("expected {header:?} first: {request}");
                });
                assert!(request.starts_with("GET /ready HTTP/1.1\r\n"), "{request}");
                assert!(
                    request.contains(&format!("\r\nHost: {address}\r\n")),
                    "{request}"
                );
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        let check = HealthCheck::Http {
            path: "/ready".into(),
            expect: StatusSet::range(200, 399),
            host: None,
        };
        let second = Duration::from_secs(5);
        assert_eq!(block_on(probe(address, &check, second, None)), Ok(()));
        assert_eq!(
            block_on(probe(address, &check, second, None)),
            Err("HTTP 503 from /ready (expected 200-399)".into())
        );
        let v1 = Some(ProxyProtocol::V1);
        assert_eq!(block_on(probe(address, &check, second, v1)), Ok(()));
        server.join().unwrap();
        assert_eq!(
            block_on(probe(address, &HealthCheck::Tcp, second, None)),
            Err("connection refused".into())
        );
    }
}
