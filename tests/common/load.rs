//! A small load generator that counts every failure exactly: `threads` clients send `GET /` in a
//! loop (each on a new connection with `Connection: close`, or on one keep-alive connection)
//! until stopped, and report every request that did not get a 2xx — connect refused, reset,
//! timeout or a bad status — with what happened.

use super::client::read_response;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// A new connection per request, `Connection: close` (what `wrk -H 'Connection: close'` does).
    Close,
    /// One connection per client, reused; reopened only after a failure.
    KeepAlive,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    clients: Vec<JoinHandle<()>>,
}

/// What a finished load saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    /// One line per failed request.
    pub failures: Vec<String>,
}

impl Load {
    /// Starts `threads` clients against `addr`; each first runs `enter` (e.g. into a network
    /// namespace).
    pub fn start(
        addr: SocketAddr,
        threads: usize,
        connections: Connections,
        enter: impl Fn() + Send + Sync + Clone + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..threads)
            .map(|_| {
                let (stop, ok, failures, enter) =
                    (stop.clone(), ok.clone(), failures.clone(), enter.clone());
                std::thread::spawn(move || {
                    enter();
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        match one_request(addr, connections, &mut conn) {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(failure) => {
                                conn = None;
                                failures.lock().unwrap().push(failure);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            clients,
        }
    }

    /// Requests answered with 2xx so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests have succeeded (the load is really running), at most
    /// `within`.
    pub fn wait_for_more(&self, more: u64, within: Duration) {
        let target = self.ok() + more;
        super::wait_until(within, &format!("{more} more successful requests"), || {
            self.ok() >= target
        });
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        LoadReport {
            ok: self.ok.load(Ordering::Relaxed),
            failures,
        }
    }
}

fn one_request(
    addr: SocketAddr,
    connections: Connections,
    conn: &mut Option<BufReader<TcpStream>>,
) -> Result<(), String> {
    let reused = conn.is_some();
    if conn.is_none() {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        *conn = Some(BufReader::new(stream));
    }
    let reader = conn.as_mut().unwrap();
    let request: &[u8] = match connections {
        Connections::Close => b"GET / HTTP/1.1\r\nHost: lbproxy\r\nConnection: close\r\n\r\n",
        Connections::KeepAlive => b"GET / HTTP/1.1\r\nHost: lbproxy\r\n\r\n",
    };
    let when = if reused { " (reused connection)" } else { "" };
    reader
        .get_mut()
        .write_all(request)
        .map_err(|e| format!("write{when}: {e}"))?;
    let response = read_response(reader, "GET").map_err(|e| format!("read{when}: {e}"))?;
    let closes = connections == Connections::Close
        || response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if closes {
        *conn = None;
    }
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(format!(
            "status {}: {}",
            response.status,
            response.text().trim()
        ))
    }
}
