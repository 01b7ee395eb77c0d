//! Scripted streams for the unit tests of failover decisions (here, in `l7` and in `l4`): real
//! loopback sockets, driven by a tiny backend that does what its script says — answer, close or
//! reset after a request head, stay silent — plus addresses that refuse connections or never
//! accept them, a generation built from a few lines of TOML, and a runner on both io drivers.

use super::Generation;
use crate::config::testing::valid;
use crate::config::Config;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `test` on a legacy (epoll) runtime, then on an io_uring one where the kernel allows it,
/// both with timers.
pub fn on_both_drivers<F: Future<Output = ()>>(test: impl Fn() -> F) {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("legacy runtime")
        .block_on(test());
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut runtime) => runtime.block_on(test()),
        Err(e) => eprintln!("io_uring unavailable ({e}): tested on the legacy driver only"),
    }
}

/// A one-worker configuration with `listener` (`"http"` or `"tcp"`) in front of group `api`,
/// whose section (`[upstream.api]` and below) is `group`. Short timeouts, so a silent backend is
/// quick to time out.
pub fn config(listener: &str, group: &str) -> Arc<Config> {
    Arc::new(valid(&format!(
        "[runtime]\nworkers = 1\n\
         [timeouts]\nupstream_connect = \"200ms\"\nupstream_response = \"300ms\"\n\
         client_idle = \"1s\"\n\
         [listener.front]\nprotocol = \"{listener}\"\naddress = \"127.0.0.1:0\"\n\
         upstream = \"api\"\n\
         {group}"
    )))
}

/// The first generation of [`config`].
pub fn generation(listener: &str, group: &str) -> Generation {
    Generation::first(config(listener, group), 0)
}

/// A config like [`config`] whose group "api" autoscales (with a `children` discover, so no bus
/// is read) and has `addresses` as its backends: none at all is a group scaled to zero.
pub fn autoscaled(listener: &str, addresses: &[SocketAddr], extra: &str) -> Arc<Config> {
    let placeholder = [refusing()];
    let listed = if addresses.is_empty() {
        &placeholder[..]
    } else {
        addresses
    };
    let mut config = Config::clone(&config(
        listener,
        &format!("[upstream.api]\n{}{extra}", backends(listed)),
    ));
    let group = &mut config.upstreams[0];
    if addresses.is_empty() {
        group.backends.clear();
    }
    group.discover = Some(crate::config::DiscoverConfig {
        systemd: "api@*.service".to_owned(),
        bus: crate::config::SystemdBus::System,
        address: crate::config::AddressSource::Socket,
        resync: Duration::from_secs(30),
        resources: crate::config::UnitResources::default(),
        children: true,
    });
    group.autoscale = Some(crate::config::AutoscaleConfig::defaults(0, 4));
    Arc::new(config)
}

/// `backends = [...]` for a group section.
pub fn backends(addresses: &[SocketAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    format!("backends = [{}]\n", list.join(", "))
}

/// An address nothing listens on: connecting is refused at once (`ECONNREFUSED`).
pub fn refusing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A listener whose accept queue is full: the kernel drops new connections' SYNs, so a connect
/// to [`Unaccepting::address`] times out.
pub struct Unaccepting {
    pub address: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

impl Unaccepting {
    pub fn start() -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        listener.listen(0).unwrap();
        let address = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        // Fill the queue (a backlog of 0 still holds one or two) until connects hang: twice in
        // a row, so one slow connect on a busy machine is not taken for a full queue.
        let mut hung = 0;
        while hung < 2 {
            match TcpStream::connect_timeout(&address, Duration::from_millis(100)) {
                Ok(stream) => {
                    queued.push(stream);
                    hung = 0;
                }
                Err(_) => hung += 1,
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        Unaccepting {
            address,
            _listener: listener,
            _queued: queued,
        }
    }
}

/// What a scripted backend does with the next request head on a connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Reads a request (head, and a `Content-Length` body) and writes these bytes; the connection
    /// stays open for the next step.
    Answer(&'static [u8]),
    /// Reads a request head, then closes without answering (FIN).
    CloseAfterHead,
    /// Reads a request head, then resets the connection (RST: `SO_LINGER` 0, then close).
    ResetAfterHead,
    /// Reads and never answers, until the peer closes.
    Silent,
    /// Resets the connection 20 ms after accepting it, reading nothing.
    ResetSoon,
}

/// A `200` with a body, keep-alive.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A backend on 127.0.0.1 that runs one script per accepted connection: the n-th connection
/// runs `scripts[n]` (the last script for any beyond), one step per request on it, then closes.
pub struct ScriptedBackend {
    pub address: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    connections: AtomicUsize,
    /// Every request head received, in order.
    heads: Mutex<Vec<Vec<u8>>>,
    stop: AtomicBool,
}

impl ScriptedBackend {
    pub fn start(scripts: Vec<Vec<Step>>) -> Self {
        assert!(!scripts.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accepting = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let n = accepting.connections.fetch_add(1, Ordering::SeqCst);
                let script = scripts[n.min(scripts.len() - 1)].clone();
                let state = accepting.clone();
                std::thread::spawn(move || serve(stream, &script, &state));
            }
        });
        ScriptedBackend { address, state }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.state.heads.lock().unwrap().len()
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

fn serve(mut stream: TcpStream, script: &[Step], state: &State) {
    let mut buf = Vec::new();
    for step in script {
        match step {
            Step::Silent => {
                let mut sink = [0; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Step::ResetSoon => {
                // Not at once: the reset could then beat the client's own view of its connect.
                std::thread::sleep(Duration::from_millis(20));
                return reset(&stream);
            }
            _ => {}
        }
        let Some(head) = read_request(&mut stream, &mut buf) else {
            return;
        };
        state.heads.lock().unwrap().push(head);
        match step {
            Step::Answer(bytes) => {
                if stream.write_all(bytes).is_err() {
                    return;
                }
            }
            Step::CloseAfterHead => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Step::ResetAfterHead => return reset(&stream),
            Step::Silent | Step::ResetSoon => unreachable!(),
        }
    }
}

/// Makes the close of `stream` (when its owner drops it) a reset.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Reads one request (head, and a `Content-Length` body) from `stream`, keeping what follows in
/// `buf`; its head, or `None` when the peer closed first.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf[..end + 4].to_vec();
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < head.len() + length {
                match stream.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return None,
                }
            }
            buf.drain(..head.len() + length);
            return Some(head);
        }
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}
