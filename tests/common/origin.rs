//! A response-side test origin for malformed-backend tests: it answers `/bad` with a scripted
//! (usually broken) response and then closes, stalls or carries on as told, and any other path
//! `/own/X` with `200` and the body `X`, keeping its connections. It records, per connection in
//! accept order, which paths it served and whether the proxy closed the connection, so a test can
//! assert that a connection that carried a broken response was never used again and that the
//! proxy let go of a stalled one.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the origin does after writing its answer to `/bad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Close the connection.
    Close,
    /// Write nothing more, keep the connection open and keep reading: a request that arrives on it
    /// after this is recorded (as a reuse of a stalled connection) but never answered.
    Stall,
    /// Carry on serving the connection.
    KeepServing,
}

/// The origin's answer to `/bad`: `bytes` in one write, then `then`.
#[derive(Debug, Clone)]
pub struct Script {
    pub bytes: Vec<u8>,
    pub then: Then,
}

#[derive(Debug, Default)]
struct Connection {
    paths: Vec<String>,
    /// The proxy closed it, or the origin did (`Then::Close`).
    closed: bool,
}

pub struct Origin {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<Connection>>>,
    script: Arc<Mutex<Script>>,
}

impl Origin {
    pub fn start(script: Script) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::<Connection>::new()));
        let log = connections.clone();
        let script = Arc::new(Mutex::new(script));
        let scripts = script.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(Connection::default());
                    log.len() - 1
                };
                let (log, script) = (log.clone(), scripts.clone());
                std::thread::spawn(move || serve(tcp, index, &log, &script));
            }
        });
        Origin {
            addr,
            connections,
            script,
        }
    }

    /// Answers later requests for `/bad` with `script` instead.
    pub fn set_script(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    /// The paths each connection served, in accept order.
    pub fn paths_per_connection(&self) -> Vec<Vec<String>> {
        let log = self.connections.lock().unwrap();
        log.iter().map(|c| c.paths.clone()).collect()
    }

    /// Asserts that no connection that served `/bad` served anything after it.
    pub fn assert_bad_connections_not_reused(&self) {
        for paths in self.paths_per_connection() {
            if let Some(at) = paths.iter().position(|p| p == "/bad") {
                assert_eq!(
                    at + 1,
                    paths.len(),
                    "the connection that carried the broken response was used again: {paths:?}"
                );
            }
        }
    }

    /// Waits (5 s) until every connection that served `/bad` is closed (by the proxy, or by the
    /// origin when its script says so).
    pub fn wait_bad_connections_closed(&self) {
        super::wait_until(
            Duration::from_secs(5),
            "the proxy to close the connection that carried the broken response",
            || {
                let log = self.connections.lock().unwrap();
                log.iter()
                    .filter(|c| c.paths.iter().any(|p| p == "/bad"))
                    .all(|c| c.closed)
            },
        );
    }
}

/// The answer to `GET /own/X`: `200` with the body `X`, framed exactly. Tests that check that
/// a client got its own response (and not another's) ask for one.
pub fn own_answer(path: &str) -> Vec<u8> {
    let own = path.trim_start_matches("/own/");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{own}",
        own.len()
    )
    .into_bytes()
}

fn serve(mut tcp: TcpStream, index: usize, log: &Mutex<Vec<Connection>>, script: &Mutex<Script>) {
    tcp.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut stalled = false;
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            log.lock().unwrap()[index].paths.push(path.clone());
            if stalled {
                continue;
            }
            if path == "/bad" {
                let script = script.lock().unwrap().clone();
                let _ = tcp.write_all(&script.bytes);
                match script.then {
                    Then::Close => {
                        let _ = tcp.shutdown(Shutdown::Both);
                        log.lock().unwrap()[index].closed = true;
                        return;
                    }
                    Then::Stall => stalled = true,
                    Then::KeepServing => {}
                }
            } else {
                let _ = tcp.write_all(&own_answer(&path));
            }
        }
        match tcp.read(&mut chunk) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => {
                log.lock().unwrap()[index].closed = true;
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
