//! The admin server's HTTP/1.1, on blocking std sockets: one request per connection, read with
//! the proxy's own strict codec ([`crate::http::parse_request`]), answered with
//! `Connection: close`. Small limits: the admin API takes short commands, not uploads.

use crate::http::reason_phrase;
use crate::http::{parse_request, HeadLimits, Method, RequestBody};
use std::io::{Read, Write};
use std::net::TcpStream;

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_uri_bytes: 4 * 1024,
    max_headers: 64,
};
/// Request bodies (a weight, a small JSON object) are tiny.
const MAX_BODY: u64 = 64 * 1024;

/// One admin request, owned (the read buffer is gone once it is parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRequest {
    pub method: Method,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// The query (after `?`), as sent; empty without one. See [`AdminRequest::flag`].
    pub query: String,
    /// `Host` without its port, when sent.
    pub host: Option<String>,
    pub authorization: Option<Vec<u8>>,
    pub origin: Option<String>,
    pub body: Vec<u8>,
}

impl AdminRequest {
    /// Whether the query sets `name`: `?name`, `?name=true`, `?name=1` or `?name=yes`.
    pub fn flag(&self, name: &str) -> bool {
        self.query.split('&').any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
            key == name && matches!(value, "true" | "1" | "yes")
        })
    }
}

/// A response: status, content type and body, plus extra header lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl AdminResponse {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON body.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot encode the response: {e}\"}}").into_bytes()
        });
        body.push(b'\n');
        Self::new(status, "application/json", body)
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Why no request could be read: answer this response (or nothing, when the client is gone).
#[derive(Debug)]
pub enum ReadError {
    Closed,
    Respond(AdminResponse),
}

/// Reads one request from `stream` (whose read timeout bounds each read).
pub fn read_request(stream: &mut TcpStream) -> Result<AdminRequest, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match parse_request(&buf, &LIMITS) {
            Ok(Some(request)) => {
                let head_len = request.head_len;
                let length = match request.body {
                    RequestBody::None => 0,
                    RequestBody::Length(n) if n <= MAX_BODY => n as usize,
                    RequestBody::Length(_) => {
                        return Err(refuse(413, "the admin API takes bodies of at most 64 KiB"))
                    }
                    RequestBody::Chunked => {
                        return Err(refuse(411, "send the body with a Content-Length"))
                    }
                };
                let parsed = AdminRequest {
                    method: request.method,
                    path: percent_decode(request.path()),
                    query: request
                        .target
                        .split_once('?')
                        .map_or_else(String::new, |(_, query)| query.to_owned()),
                    host: request.host.map(str::to_owned),
                    authorization: request.header("authorization").map(<[u8]>::to_vec),
                    origin: request
                        .header("origin")
                        .map(|o| String::from_utf8_lossy(o).into_owned()),
                    body: Vec::new(),
                };
                return read_body(stream, buf, head_len, length, parsed);
            }
            Ok(None) => {}
            Err(e) => return Err(refuse(e.status(), e.to_string())),
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) && !buf.is_empty() => {
                return Err(refuse(408, "the request did not arrive in time"))
            }
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn read_body(
    stream: &mut TcpStream,
    buf: Vec<u8>,
    head_len: usize,
    length: usize,
    mut request: AdminRequest,
) -> Result<AdminRequest, ReadError> {
    let mut body = buf[head_len..].to_vec();
    body.truncate(length);
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => body.extend_from_slice(&chunk[..n.min(length - body.len())]),
            Err(e) if is_timeout(&e) => {
                return Err(refuse(408, "the request body did not arrive in time"))
            }
            Err(_) => return Err(ReadError::Closed),
        }
    }
    request.body = body;
    Ok(request)
}

fn refuse(status: u16, message: impl Into<String>) -> ReadError {
    ReadError::Respond(AdminResponse::error(status, message))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Writes `response` and closes our side (the client reads until the end).
pub fn write_response(stream: &mut TcpStream, response: &AdminResponse) {
    let _ = stream.write_all(&response.to_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// `%XX` → the byte; anything malformed is kept as written.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_decoded_and_bad_escapes_kept() {
        assert_eq!(percent_decode("/a%5B%3A%3A1%5D%3A80"), "/a[::1]:80");
        assert_eq!(percent_decode("/x%zz%4"), "/x%zz%4");
        assert_eq!(percent_decode("/plain"), "/plain");
    }

    #[test]
    fn responses_close_and_carry_their_length() {
        let bytes = AdminResponse::new(200, "text/plain", "hi")
            .with_header("X-A", "1")
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\n"), "{text}");
        assert!(
            text.contains("Connection: close\r\nX-A: 1\r\n\r\nhi"),
            "{text}"
        );
    }
}
