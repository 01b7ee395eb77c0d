//! tcp listeners end to end on real sockets, on both io drivers and with both relays (splice
//! and copy): 256 MiB each way at once arriving byte-exact (SHA-256) across a half-close,
//! half-close in either direction, failover past a refused backend, resets passed on, the idle
//! timeout, PROXY protocol headers the backends parse, open connections counted for `least_conn`
//! and `max_connections` (with its queue), and the idle timeout of WebSocket tunnels.

mod common;

use common::backend::{RawBackend, Reply};
use common::tcp::{
    connect, hash_server, read_and_hash, round_trip, tcp_config, Blocks, EchoServer, ProxyHeader,
};
use common::{on_both_drivers, refusing_port, wait_until, Proxy};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

on_both_drivers!(
    bulk_both_ways_arrives_byte_exact_by_splice,
    bulk_both_ways_arrives_byte_exact_by_copy,
    half_close_from_either_side,
    a_refused_backend_makes_the_proxy_try_the_next,
    resets_are_passed_on,
    idle_connections_are_closed,
    proxy_protocol_headers_carry_the_client_address,
    least_conn_counts_open_connections,
    max_connections_queues_connections_until_one_closes,
    websocket_tunnels_have_their_own_idle_timeout,
);

const RELAYS: [&str; 2] = ["splice", "copy"];
const BULK: u64 = 256 << 20;

/// 256 MiB from the client and 256 MiB from the backend at the same time; the client half-closes
/// when done, and only then does the backend send the hash of what it got.
fn bulk_both_ways(driver: &str, relay: &str) {
    let backend = hash_server(BULK);
    let proxy = Proxy::start(&tcp_config(driver, relay, &[backend], "", ""));
    let tcp = connect(proxy.addr);
    let mut writer = tcp.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        let digest = Blocks::new(1, BULK).send(&mut writer).expect("upload");
        writer.shutdown(Shutdown::Write).unwrap();
        digest
    });
    let mut reader = tcp;
    let (total, downloaded, tail) = read_and_hash(&mut reader, BULK).expect("download");
    let uploaded = upload.join().unwrap();
    assert_eq!(
        total,
        BULK + 32,
        "the stream and the backend's hash, then the close"
    );
    assert_eq!(
        downloaded.as_ref(),
        Blocks::new(2, BULK).digest().as_ref(),
        "backend → client byte-exact"
    );
    assert_eq!(tail, uploaded.as_ref(), "client → backend byte-exact");
}

fn bulk_both_ways_arrives_byte_exact_by_splice(driver: &str) {
    bulk_both_ways(driver, "splice");
}

fn bulk_both_ways_arrives_byte_exact_by_copy(driver: &str) {
    bulk_both_ways(driver, "copy");
}

/// A backend that greets, half-closes, then reads until the client's end of stream and keeps
/// what it read in [`RECEIVED`].
fn greet_then_listen() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                tcp.write_all(b"hello, then FIN").unwrap();
                tcp.shutdown(Shutdown::Write).unwrap();
                let mut got = Vec::new();
                let _ = tcp.read_to_end(&mut got);
                RECEIVED.lock().unwrap().push(got);
            });
        }
    });
    addr
}

static RECEIVED: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn half_close_from_either_side(driver: &str) {
    for relay in RELAYS {
        // Client first: its FIN reaches the echo backend, whose echo still comes back.
        let echo = EchoServer::start(false);
        let proxy = Proxy::start(&tcp_config(driver, relay, &[echo.addr], "", ""));
        let echoed = round_trip(proxy.addr, b"request, then FIN").expect("echo");
        assert_eq!(echoed, b"request, then FIN", "{relay}");
        drop(proxy);

        // Backend first: the client reads its greeting and end of stream, then still sends.
        RECEIVED.lock().unwrap().clear();
        let proxy = Proxy::start(&tcp_config(driver, relay, &[greet_then_listen()], "", ""));
        let mut tcp = connect(proxy.addr);
        let mut greeting = Vec::new();
        tcp.read_to_end(&mut greeting).unwrap();
        assert_eq!(greeting, b"hello, then FIN", "{relay}");
        tcp.write_all(b"still talking").unwrap();
        tcp.shutdown(Shutdown::Write).unwrap();
        wait_until(
            Duration::from_secs(10),
            "the backend to get the rest",
            || !RECEIVED.lock().unwrap().is_empty(),
        );
        assert_eq!(RECEIVED.lock().unwrap()[0], b"still talking", "{relay}");
    }
}

fn a_refused_backend_makes_the_proxy_try_the_next(driver: &str) {
    for relay in RELAYS {
        let echo = EchoServer::start(false);
        // Round robin puts the refused backend first for some connections on every worker.
        let proxy = Proxy::start(&tcp_config(
            driver,
            relay,
            &[refusing_port(), echo.addr],
            "",
            "[upstream.api.outlier]\nconsecutive_failures = 0\n",
        ));
        for i in 0..8 {
            let message = format!("connection {i}");
            let echoed = round_trip(proxy.addr, message.as_bytes()).expect("echo");
            assert_eq!(
                echoed,
                message.as_bytes(),
                "{relay}: every connection is served"
            );
        }
        drop(proxy);

        // Nothing accepts: the client's connection is closed, with nothing relayed.
        let proxy = Proxy::start(&tcp_config(
            driver,
            relay,
            &[refusing_port(), refusing_port()],
            "",
            "",
        ));
        let mut tcp = connect(proxy.addr);
        let mut nothing = Vec::new();
        match tcp.read_to_end(&mut nothing) {
            Ok(_) => assert!(nothing.is_empty(), "{relay}: bytes from nowhere"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{relay}"),
        }
    }
}

/// A backend that reads a little and then resets the connection.
fn resetting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let mut buf = [0u8; 5];
            let _ = tcp.read_exact(&mut buf);
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            drop(tcp);
        }
    });
    addr
}

/// Reads until the connection ends: `Ok(true)` for a reset, `Ok(false)` for a clean end.
fn ended_by_reset(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn resets_are_passed_on(driver: &str) {
    for relay in RELAYS {
        // Backend resets → the client is reset, not closed cleanly (a clean end could pass for
        // a complete stream).
        let proxy = Proxy::start(&tcp_config(driver, relay, &[resetting_backend()], "", ""));
        let mut tcp = connect(proxy.addr);
        tcp.write_all(b"12345").unwrap();
        assert!(
            ended_by_reset(&mut tcp),
            "{relay}: the client sees the reset"
        );
        drop(proxy);

        // Client resets → the backend is reset.
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy::start(&tcp_config(
            driver,
            relay,
            &[backend.local_addr().unwrap()],
            "",
            "",
        ));
        let mut tcp = connect(proxy.addr);
        tcp.write_all(b"ping").unwrap();
        let (mut upstream, _) = backend.accept().unwrap();
        upstream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut ping = [0u8; 4];
        upstream.read_exact(&mut ping).unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp);
        assert!(
            ended_by_reset(&mut upstream),
            "{relay}: the backend sees the reset"
        );
    }
}

fn idle_connections_are_closed(driver: &str) {
    for relay in RELAYS {
        let echo = EchoServer::start(false);
        let proxy = Proxy::start(&tcp_config(
            driver,
            relay,
            &[echo.addr],
            "",
            "[timeouts]\ntcp_idle = \"300ms\"\n",
        ));
        let mut tcp = connect(proxy.addr);
        tcp.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        tcp.read_exact(&mut pong).unwrap();
        // Then silence: the proxy closes both sides (cleanly: nothing was lost).
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).expect("closed, not reset");
        assert!(rest.is_empty(), "{relay}");
    }
}

fn proxy_protocol_headers_carry_the_client_address(driver: &str) {
    for (version, number) in [("v1", 1), ("v2", 2)] {
        for relay in RELAYS {
            let echo = EchoServer::start(true);
            let proxy = Proxy::start(&tcp_config(
                driver,
                relay,
                &[echo.addr],
                "",
                &format!("proxy_protocol = \"{version}\"\n"),
            ));
            let mut tcp = connect(proxy.addr);
            let client = tcp.local_addr().unwrap();
            tcp.write_all(b"after the header").unwrap();
            tcp.shutdown(Shutdown::Write).unwrap();
            let mut echoed = Vec::new();
            tcp.read_to_end(&mut echoed).unwrap();
            assert_eq!(echoed, b"after the header", "{version} {relay}");
            assert_eq!(
                echo.headers(),
                [Ok(ProxyHeader::Proxied {
                    version: number,
                    source: client,
                    destination: proxy.addr,
                })],
                "{version} {relay}"
            );
        }
    }
}

fn least_conn_counts_open_connections(driver: &str) {
    let a = EchoServer::start(false);
    let b = EchoServer::start(false);
    let config = tcp_config(
        driver,
        "splice",
        &[a.addr, b.addr],
        "",
        "balance = \"least_conn\"\n",
    )
    .replace("workers = 2", "workers = 1");
    let proxy = Proxy::start(&config);
    let mut held = connect(proxy.addr);
    held.write_all(b"x").unwrap();
    held.read_exact(&mut [0u8; 1]).unwrap();
    let (held_by, other) = if a.connections() == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // While it stays open, every other connection goes to the backend with none open.
    for _ in 0..4 {
        assert_eq!(round_trip(proxy.addr, b"y").unwrap(), b"y");
    }
    assert_eq!(held_by.connections(), 1, "only the held connection");
    assert_eq!(other.connections(), 4);
}

fn max_connections_queues_connections_until_one_closes(driver: &str) {
    let echo = EchoServer::start(false);
    let limited = |queue_timeout: &str| {
        tcp_config(
            driver,
            "splice",
            &[echo.addr],
            "",
            &format!("max_connections = 1\nqueue_timeout = \"{queue_timeout}\"\n"),
        )
        .replace("workers = 2", "workers = 1")
    };
    // The one slot is taken: a second connection waits its queue_timeout, then is closed.
    let proxy = Proxy::start(&limited("200ms"));
    let mut first = connect(proxy.addr);
    first.write_all(b"1").unwrap();
    first.read_exact(&mut [0u8; 1]).unwrap();
    // (It sends nothing: unread bytes would make the close a reset.)
    let mut second = connect(proxy.addr);
    let mut nothing = Vec::new();
    second
        .read_to_end(&mut nothing)
        .expect("closed after the queue timeout");
    assert!(nothing.is_empty());
    assert_eq!(echo.connections(), 1, "the backend never saw the second");
    drop((first, proxy));

    // With time to wait, it gets the slot as soon as the first closes.
    let proxy = Proxy::start(&limited("30s"));
    let mut first = connect(proxy.addr);
    first.write_all(b"1").unwrap();
    first.read_exact(&mut [0u8; 1]).unwrap();
    let mut second = connect(proxy.addr);
    second.write_all(b"2").unwrap();
    drop(first);
    let mut two = [0u8; 1];
    second
        .read_exact(&mut two)
        .expect("served once the slot freed");
    assert_eq!(&two, b"2");
}

fn websocket_tunnels_have_their_own_idle_timeout(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n".to_vec(),
    ));
    let proxy = Proxy::start(&common::config(
        driver,
        &[backend.addr],
        "[timeouts]\nclient_idle = \"1h\"\ntunnel_idle = \"300ms\"\n",
    ));
    let mut tcp = connect(proxy.addr);
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)
        .expect("closed after the tunnel idled");
    assert!(
        response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}
