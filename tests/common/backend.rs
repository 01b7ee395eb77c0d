//! A raw recording backend: accepts connections on 127.0.0.1:0, splits what it receives into
//! complete requests (Content-Length or chunked framing), records every byte (in all and per
//! connection), and answers as told, including with exact bad bytes. Tests assert on exactly what
//! the proxy forwarded, and on how many connections it opened and closed.
//!
//! The W3C `traceparent` the proxy adds carries random ids: what the accessors (and `Echo`)
//! return has each valid `traceparent` value replaced by [`TRACEPARENT_MASK`] (same length, so
//! framing is untouched); an invalid value stays as received, so the exact-bytes comparisons
//! still catch it. [`RawBackend::unmasked_requests`] gives the bytes as they came.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer each complete request with these exact bytes; keep the connection.
    Fixed(Vec<u8>),
    /// Answer each request `200` with the raw bytes of that request as the body.
    Echo,
    /// After one complete request, send these exact bytes and close.
    ThenClose(Vec<u8>),
    /// After one complete request, close without answering.
    CloseWithoutResponse,
    /// Answer each request with these bytes after a delay (simulated slow work).
    Delayed(Duration, Vec<u8>),
    /// Read forever, never answer.
    Silent,
    /// Answer the n-th request on each connection with the n-th entry (the last entry for any
    /// request beyond); keep the connection.
    Script(Vec<Vec<u8>>),
}

pub struct RawBackend {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Vec<u8>>>,
    bytes: Mutex<Vec<u8>>,
    /// Bytes received on each connection, in accept order.
    per_connection: Mutex<Vec<Vec<u8>>>,
    connections: AtomicUsize,
    /// Connections whose handler returned: the peer closed (or reset) it, or the reply closed it.
    finished: AtomicUsize,
    stop: AtomicBool,
}

impl RawBackend {
    pub fn start(reply: Reply) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let index = {
                    let mut per_connection = accept_state.per_connection.lock().unwrap();
                    per_connection.push(Vec::new());
                    per_connection.len() - 1
                };
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let state = accept_state.clone();
                let reply = reply.clone();
                std::thread::spawn(move || {
                    serve(stream, index, &state, &reply);
                    state.finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawBackend { addr, state }
    }

    /// Every complete request received, in order, as raw bytes (trace ids masked).
    pub fn requests(&self) -> Vec<Vec<u8>> {
        let requests = self.state.requests.lock().unwrap();
        requests.iter().map(|r| mask_traceparents(r)).collect()
    }

    /// Every complete request received, in order, exactly as received.
    pub fn unmasked_requests(&self) -> Vec<Vec<u8>> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every byte received on any connection (including incomplete requests; trace ids masked).
    pub fn bytes(&self) -> Vec<u8> {
        mask_traceparents(&self.state.bytes.lock().unwrap())
    }

    /// Bytes received on each connection, in the order the connections were accepted (trace
    /// ids masked).
    pub fn bytes_per_connection(&self) -> Vec<Vec<u8>> {
        let per_connection = self.state.per_connection.lock().unwrap();
        per_connection
            .iter()
            .map(|c| mask_traceparents(c))
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections that have ended: the proxy closed (or reset) them, or the reply closed them.
    /// Once every connection has finished, [`Self::bytes`] is all the proxy will ever send.
    pub fn finished_connections(&self) -> usize {
        self.state.finished.load(Ordering::SeqCst)
    }

    /// Waits until `count` connections have been accepted and every one has ended (the proxy
    /// closed it), within 5 s. (The proxy's connect completes in the kernel before this backend
    /// accepts, so a connection can exist before [`Self::connections`] counts it.)
    pub fn wait_closed(&self, count: usize) {
        super::wait_until(
            Duration::from_secs(5),
            &format!("{count} backend connections, all closed by the proxy"),
            || self.connections() == count && self.finished_connections() == count,
        );
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut stream: TcpStream, index: usize, state: &State, reply: &Reply) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Answers go out at once, not after a delayed ACK of the previous write (Nagle).
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut answered = 0;
    loop {
        while let Some(len) = complete_request_len(&buf) {
            let request: Vec<u8> = buf.drain(..len).collect();
            state.requests.lock().unwrap().push(request.clone());
            answered += 1;
            match reply {
                Reply::Fixed(bytes) => {
                    if stream.write_all(bytes).is_err() {
                        return;
                    }
                }
                Reply::Echo => {
                    let mut answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        request.len()
                    )
                    .into_bytes();
                    answer.extend_from_slice(&mask_traceparents(&request));
                    if stream.write_all(&answer).is_err() {
                        return;
                    }
                }
                Reply::ThenClose(bytes) => {
                    let _ = stream.write_all(bytes);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                Reply::CloseWithoutResponse => {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                Reply::Delayed(delay, bytes) => {
                    std::thread::sleep(*delay);
                    if stream.write_all(bytes).is_err() {
                        return;
                    }
                }
                Reply::Silent => {}
                Reply::Script(steps) => {
                    let bytes = &steps[(answered - 1).min(steps.len() - 1)];
                    if stream.write_all(bytes).is_err() {
                        return;
                    }
                }
            }
        }
        match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return,
            Ok(n) => {
                state.bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                state.per_connection.lock().unwrap()[index].extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// What a valid `traceparent` value reads as in recorded bytes: 55 characters, like the real one.
pub const TRACEPARENT_MASK: &str = "00-tttttttttttttttttttttttttttttttt-pppppppppppppppp-01";

/// `bytes` with the value of every `traceparent: ` field line that holds a valid traceparent
/// replaced by [`TRACEPARENT_MASK`].
pub fn mask_traceparents(bytes: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"\r\ntraceparent: ";
    let mut out = bytes.to_vec();
    let mut from = 0;
    while let Some(at) = out[from..].windows(NAME.len()).position(|w| w == NAME) {
        let start = from + at + NAME.len();
        let end = start + TRACEPARENT_MASK.len();
        let line_ends = out.get(end..end + 2) == Some(b"\r\n");
        if line_ends && lbproxy::http::Traceparent::parse(&out[start..end]).is_some() {
            out[start..end].copy_from_slice(TRACEPARENT_MASK.as_bytes());
        }
        from = start;
    }
    out
}

/// Length of the first complete request in `buf`, if there is one. Trusts the framing the proxy
/// writes (it is what the tests check).
pub fn complete_request_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = request.parse(buf) else {
        return None;
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        chunked_len(&buf[head_len..]).map(|n| head_len + n)
    } else {
        let length: usize = header("content-length").map_or(0, |v| v.trim().parse().unwrap_or(0));
        (buf.len() >= head_len + length).then_some(head_len + length)
    }
}

/// Length of a complete chunked body (chunks, last chunk, trailers, final CRLF) at the start of
/// `body`, if it is all there. Trusts the framing (it parses what the proxy wrote).
pub fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let line_end = find_crlf(&body[pos..])? + pos;
        let size_text = std::str::from_utf8(&body[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let end = find_crlf(&body[pos..])? + pos;
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Some(pos);
                }
            }
        }
        pos += size + 2;
        if pos > body.len() {
            return None;
        }
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}
