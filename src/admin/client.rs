//! The admin API's client, for `lbproxy ctl` and `lbproxy rollout`: one blocking HTTP/1.1 request per call on a std
//! socket, `Connection: close`, the body read to the end. Failures say what to do: the proxy is
//! not running (or listens elsewhere), the token is wrong, or what the server answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A reload waits for every worker; give it room.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the lbproxy admin server at {address}: {error}. Is the proxy running, and \
         is {address} its [admin] address? (set it with --admin ADDR or LBPROXY_ADMIN; \
         `lbproxy ctl -c FILE` reads it from the proxy's configuration)"
    )]
    NotRunning {
        address: String,
        error: std::io::Error,
    },
    #[error(
        "the admin server at {address} refused the token ({message}). Give the proxy's \
         [admin] token with LBPROXY_ADMIN_TOKEN=… or --token-file FILE"
    )]
    Unauthorized { address: String, message: String },
    #[error("the admin server answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("talking to the admin server at {address} failed: {why}")]
    Broken { address: String, why: String },
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct AdminClient {
    /// `HOST:PORT` as given.
    address: String,
    token: Option<String>,
}

impl AdminClient {
    /// `address`: `HOST:PORT` (an `http://` prefix and a trailing `/` are accepted).
    pub fn new(address: &str, token: Option<String>) -> Self {
        let address = address
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        Self { address, token }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.call("GET", path, b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        self.call("POST", path, body)
    }

    /// Sends the request; a 2xx reply is `Ok`, anything else an error with the server's message.
    fn call(&self, method: &str, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        let mut stream = self.connect()?;
        let broken = |why: String| ClientError::Broken {
            address: self.address.clone(),
            why,
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lbproxy-ctl/{}\r\n\
             Accept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.set_read_timeout(Some(RESPONSE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(RESPONSE_TIMEOUT));
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .map_err(|e| broken(format!("sending the request: {e}")))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| broken(format!("reading the response: {e}")))?;
        let reply = parse_reply(&raw).map_err(broken)?;
        if (200..300).contains(&reply.status) {
            return Ok(reply);
        }
        let message = error_message(&reply.body);
        Err(if reply.status == 401 {
            ClientError::Unauthorized {
                address: self.address.clone(),
                message,
            }
        } else {
            ClientError::Refused {
                status: reply.status,
                message,
            }
        })
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let not_running = |error| ClientError::NotRunning {
            address: self.address.clone(),
            error,
        };
        let addresses: Vec<SocketAddr> = self
            .address
            .to_socket_addrs()
            .map_err(not_running)?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(not_running(last))
    }
}

/// `/api/backends/{group}/{backend}/{action}`, each segment percent-encoded.
pub fn backend_path(group: &str, backend: &str, action: &str) -> String {
    format!(
        "/api/backends/{}/{}/{action}",
        encode(group),
        encode(backend)
    )
}

/// Percent-encodes what a path segment may not carry as is.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The status and body of a whole `Connection: close` response (read to its end). Deliberately
/// simple — the status line, then everything after the empty line — rather than a second user
/// of httparse: the proxy's response parser is then still inlined into its relay loop.
fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response ended before its head did")?;
    let status_line = raw[..head_end]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let status = std::str::from_utf8(status_line)
        .ok()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(status_line)
            )
        })?;
    Ok(Reply {
        status,
        body: raw[head_end + 4..].to_vec(),
    })
}

/// The `error` of a JSON error body, else the body as text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_error_messages_are_read() {
        let reply = parse_reply(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\n{\"error\": \"nope\"}",
        )
        .unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(error_message(&reply.body), "nope");
        assert_eq!(error_message(b"plain words\n"), "plain words");
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("127.0.0.1:8001"), "127.0.0.1:8001");
        assert_eq!(encode("[::1]:8001"), "%5B::1%5D:8001");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(
            backend_path("api", "127.0.0.1:8001", "drain"),
            "/api/backends/api/127.0.0.1:8001/drain"
        );
    }

    #[test]
    fn nobody_listening_says_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = AdminClient::new(&format!("http://127.0.0.1:{port}/"), None);
        let error = client.get("/api/status").unwrap_err();
        assert!(matches!(error, ClientError::NotRunning { .. }), "{error}");
        assert!(
            error.to_string().contains("Is the proxy running"),
            "{error}"
        );
    }
}
