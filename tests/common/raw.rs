//! A raw client connection that keeps every byte it receives: responses are split off the stream
//! by their framing (interim 1xx responses included, one at a time) and returned with their exact
//! bytes, so tests can assert on what reached the client, not only on the status code; and the end
//! of the connection is observed by reading to EOF within a deadline.

use super::backend::chunked_len;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a test waits for a response or for the proxy to close a connection.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// One response exactly as received.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Every byte of the response: head and body as framed on the wire.
    pub raw: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as framed on the wire (chunk sizes and trailers included for a chunked body).
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `X-Request-Id` the proxy put on the response.
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .unwrap_or_else(|| panic!("no X-Request-Id in {}", self.text()))
            .to_owned()
    }

    /// The whole response as text (lossy), for assertions and failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// A client connection to the proxy with its unread bytes.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    pub fn open(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect to the proxy");
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the proxy");
    }

    /// Like [`Self::send`], but a proxy that already closed the connection is not an error.
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Half-closes the sending side (the proxy reads EOF).
    pub fn finish_sending(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads one response (an interim 1xx is one response too) to a request with `method`.
    /// Panics when none arrives within [`DEADLINE`].
    pub fn read_response(&mut self, method: &str) -> RawResponse {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(response) = split_response(&self.buf, method, self.eof) {
                self.buf.drain(..response.raw.len());
                return response;
            }
            assert!(
                !self.eof,
                "connection closed before a complete response; received {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.fill(deadline);
        }
    }

    /// Reads until the proxy closes the connection and returns the bytes not yet consumed.
    /// Panics when the connection is still open after [`DEADLINE`].
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + DEADLINE;
        while !self.eof {
            self.fill(deadline);
        }
        std::mem::take(&mut self.buf)
    }

    /// Asserts the proxy closes the connection without sending anything more.
    pub fn assert_closed(&mut self) {
        let rest = self.read_to_eof();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got more bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// One read, appended to the buffer. EOF and a reset both end the connection.
    fn fill(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no response and no close within {DEADLINE:?}; received so far {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => self.eof = true,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("reading from the proxy: {e}"),
        }
    }
}

/// The first complete response in `buf`, if there is one. A close-delimited body is complete
/// only at `eof`.
pub fn split_response(buf: &[u8], method: &str, eof: bool) -> Option<RawResponse> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut fields);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!(
            "the proxy sent an invalid response head ({e}): {:?}",
            String::from_utf8_lossy(buf)
        ),
    };
    let status = parsed.code.unwrap();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let rest = &buf[head_len..];
    let bodiless = method == "HEAD" || (100..200).contains(&status) || [204, 304].contains(&status);
    let body_len = if bodiless {
        0
    } else if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        chunked_len(rest)?
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .expect("the proxy writes a valid Content-Length");
        if rest.len() < length {
            return None;
        }
        length
    } else if eof {
        rest.len()
    } else {
        return None;
    };
    Some(RawResponse {
        raw: buf[..head_len + body_len].to_vec(),
        status,
        headers,
        body: rest[..body_len].to_vec(),
    })
}
