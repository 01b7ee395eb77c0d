//! For tcp listener tests: configurations, a deterministic byte stream with its SHA-256, backends
//! (a hashing one that exercises both directions and half-close, an echo one that reads a PROXY
//! protocol header first), and a PROXY protocol parser written from the spec, independent of
//! the proxy's encoder.

use ring::digest::{Context, Digest, SHA256};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[listener.tcp]` (first, so `Proxy::addr` is its address) relaying with `relay` to upstream
/// `api` over `backends`, on `driver`, with `listener_extra` keys in the listener and `extra`
/// sections after.
pub fn tcp_config(
    driver: &str,
    relay: &str,
    backends: &[SocketAddr],
    listener_extra: &str,
    extra: &str,
) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\n\
         [listener.tcp]\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nrelay = \"{relay}\"\n\
         upstream = \"api\"\n{listener_extra}\n\n\
         [upstream.api]\nbackends = [{}]\n\n{extra}\n",
        list.join(", ")
    )
}

/// A deterministic stream of `len` bytes: a pseudo-random 1 MiB block (from `seed`), each copy
/// stamped with its index so that a reordered or repeated block changes the hash.
pub struct Blocks {
    block: Vec<u8>,
    len: u64,
}

pub const BLOCK: usize = 1 << 20;

impl Blocks {
    pub fn new(seed: u64, len: u64) -> Blocks {
        let mut state = seed | 1;
        let mut block = Vec::with_capacity(BLOCK);
        while block.len() < BLOCK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            block.extend_from_slice(&state.to_le_bytes());
        }
        Blocks { block, len }
    }

    /// Writes the whole stream to `to`, returning its SHA-256.
    pub fn send(&mut self, to: &mut impl Write) -> std::io::Result<Digest> {
        let mut hash = Context::new(&SHA256);
        let mut sent = 0u64;
        let mut index = 0u64;
        while sent < self.len {
            self.block[..8].copy_from_slice(&index.to_le_bytes());
            let n = (self.len - sent).min(BLOCK as u64) as usize;
            to.write_all(&self.block[..n])?;
            hash.update(&self.block[..n]);
            sent += n as u64;
            index += 1;
        }
        Ok(hash.finish())
    }

    /// The SHA-256 of the whole stream, without sending it.
    pub fn digest(&mut self) -> Digest {
        self.send(&mut std::io::sink()).unwrap()
    }
}

/// Reads `from` until end of stream: (bytes read, SHA-256 of the first `hashed` of them, the
/// bytes after those).
pub fn read_and_hash(from: &mut impl Read, hashed: u64) -> std::io::Result<(u64, Digest, Vec<u8>)> {
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut tail = Vec::new();
    loop {
        // A blocking read with a timeout returns EINTR (rather than restarting) when task work
        // interrupts the thread, e.g. the teardown of the io_uring that this thread's
        // `Server::start` created to probe for io_uring support.
        let n = match from.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if n == 0 {
            return Ok((total, hash.finish(), tail));
        }
        let in_hash = (hashed.saturating_sub(total)).min(n as u64) as usize;
        hash.update(&buf[..in_hash]);
        tail.extend_from_slice(&buf[in_hash..n]);
        total += n as u64;
    }
}

/// A backend for bulk transfers: on each connection it sends `len` bytes of [`Blocks`] (seed 2)
/// while it reads (and hashes) everything the client sends until the client's FIN, then sends
/// that hash (32 bytes) and closes. A client that receives the whole stream and then the hash
/// of what it sent knows both directions arrived byte-exact, and that its half-close reached the
/// backend while the backend's own stream was still flowing back.
pub fn hash_server(len: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = tcp.try_clone().unwrap();
                let received = std::thread::spawn(move || {
                    read_and_hash(&mut reader, u64::MAX).map(|(_, digest, _)| digest)
                });
                let mut writer = tcp;
                if Blocks::new(2, len).send(&mut writer).is_err() {
                    return;
                }
                if let Ok(Ok(digest)) = received.join() {
                    let _ = writer.write_all(digest.as_ref());
                }
                let _ = writer.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// What a PROXY protocol header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A client's connection: its address and the one it connected to.
    Proxied {
        version: u8,
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The proxy's own connection (v1 `UNKNOWN`, v2 `LOCAL`).
    Local { version: u8 },
}

/// Reads one PROXY protocol header (either version) from `from`, byte by byte so nothing after
/// it is consumed.
pub fn read_proxy_header(from: &mut impl Read) -> Result<ProxyHeader, String> {
    let mut first = [0u8; 12];
    from.read_exact(&mut first[..5])
        .map_err(|e| e.to_string())?;
    if &first[..5] == b"PROXY" {
        let mut line = b"PROXY".to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() > 107 {
                return Err("v1 header longer than 107 bytes".into());
            }
            let mut byte = [0u8; 1];
            from.read_exact(&mut byte).map_err(|e| e.to_string())?;
            line.push(byte[0]);
        }
        let text = String::from_utf8(line).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = text.trim_end().split(' ').collect();
        return match parts.as_slice() {
            ["PROXY", "UNKNOWN", ..] => Ok(ProxyHeader::Local { version: 1 }),
            ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
                let ip = |s: &str| -> Result<IpAddr, String> {
                    let ip: IpAddr = s.parse().map_err(|_| format!("bad address {s}"))?;
                    if ip.is_ipv4() != (*family == "TCP4") {
                        return Err(format!("{s} is not a {family} address"));
                    }
                    Ok(ip)
                };
                let port = |s: &str| s.parse::<u16>().map_err(|_| format!("bad port {s}"));
                Ok(ProxyHeader::Proxied {
                    version: 1,
                    source: SocketAddr::new(ip(src)?, port(sport)?),
                    destination: SocketAddr::new(ip(dst)?, port(dport)?),
                })
            }
            _ => Err(format!("not a v1 header: {text:?}")),
        };
    }
    from.read_exact(&mut first[5..])
        .map_err(|e| e.to_string())?;
    if first != *b"\r\n\r\n\0\r\nQUIT\n" {
        return Err(format!("no PROXY header: {first:?}"));
    }
    let mut head = [0u8; 4];
    from.read_exact(&mut head).map_err(|e| e.to_string())?;
    let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut body = vec![0u8; length];
    from.read_exact(&mut body).map_err(|e| e.to_string())?;
    match (head[0], head[1]) {
        (0x20, _) => Ok(ProxyHeader::Local { version: 2 }),
        (0x21, 0x11) if length >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Ok(ProxyHeader::Proxied {
                version: 2,
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        (0x21, 0x21) if length >= 36 => {
            let ip = |at: usize| {
                let octets: [u8; 16] = body[at..at + 16].try_into().unwrap();
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Ok(ProxyHeader::Proxied {
                version: 2,
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        other => Err(format!("unexpected v2 command/family {other:?}")),
    }
}

/// An echo backend that records, per connection, the PROXY header it read first (when
/// `expect_proxy`), then echoes everything back and half-closes when the client does.
pub struct EchoServer {
    pub addr: SocketAddr,
    headers: Arc<Mutex<Vec<Result<ProxyHeader, String>>>>,
    connections: Arc<AtomicUsize>,
}

impl EchoServer {
    pub fn start(expect_proxy: bool) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let headers = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (recorded, accepted) = (headers.clone(), connections.clone());
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                let recorded = recorded.clone();
                std::thread::spawn(move || {
                    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    if expect_proxy {
                        let header = read_proxy_header(&mut tcp);
                        let failed = header.is_err();
                        recorded.lock().unwrap().push(header);
                        if failed {
                            return;
                        }
                    }
                    let mut buf = [0u8; 64 * 1024];
                    loop {
                        match tcp.read(&mut buf) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tcp.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tcp.shutdown(Shutdown::Write);
                });
            }
        });
        EchoServer {
            addr,
            headers,
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The PROXY headers read so far, one per connection.
    pub fn headers(&self) -> Vec<Result<ProxyHeader, String>> {
        self.headers.lock().unwrap().clone()
    }
}

/// Connects to `addr` with a 30 s read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).expect("connect to the proxy");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp
}

/// Sends `data`, half-closes, and reads until the other side closes.
pub fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tcp = connect(addr);
    tcp.write_all(data)?;
    tcp.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out)?;
    Ok(out)
}
