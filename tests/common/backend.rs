//! A raw recording backend: accepts connections on 127.0.0.1:0, splits what it receives into
//! complete requests (Content-Length or chunked framing), records every byte, and answers as told.
//! Tests assert on exactly what the proxy forwarded.

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
}

pub struct RawBackend {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Vec<u8>>>,
    bytes: Mutex<Vec<u8>>,
    connections: AtomicUsize,
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
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let state = accept_state.clone();
                let reply = reply.clone();
                std::thread::spawn(move || serve(stream, &state, &reply));
            }
        });
        RawBackend { addr, state }
    }

    /// Every complete request received, in order, as raw bytes.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every byte received on any connection (including incomplete requests).
    pub fn bytes(&self) -> Vec<u8> {
        self.state.bytes.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut stream: TcpStream, state: &State, reply: &Reply) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        while let Some(len) = complete_request_len(&buf) {
            let request: Vec<u8> = buf.drain(..len).collect();
            state.requests.lock().unwrap().push(request.clone());
            match reply {
                Reply::Fixed(bytes) => {
                    if stream.write_all(bytes).is_err() {
                        return;
                    }
                }
                Reply::Echo => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        request.len()
                    );
                    if stream
                        .write_all(head.as_bytes())
                        .and_then(|_| stream.write_all(&request))
                        .is_err()
                    {
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
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                state.bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Length of the first complete request in `buf`, if there is one. Trusts the framing the proxy
/// writes (it is what the tests check).
pub fn complete_request_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
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

fn chunked_len(body: &[u8]) -> Option<usize> {
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
