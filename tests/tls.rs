//! https listeners and TLS to backends, end to end on real sockets: certificates chosen by SNI
//! (rustls and curl clients), clients that send garbage or nothing, session resumption, bodies and
//! WebSockets through TLS, verified TLS to backends with pooled connections, and certificates
//! that reload (or refuse to). Every scenario runs on both io drivers.

mod common;

use common::backend::{RawBackend, Reply};
use common::client;
use common::demo::DemoApi;
use common::tls::{curl, https_config, Pki, TlsBackend};
use common::{on_both_drivers, Proxy};
use lbproxy::server::ReloadError;
use rustls::HandshakeKind;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

on_both_drivers!(
    sni_picks_the_certificate_and_unknown_names_get_the_default,
    curl_sees_the_right_certificate_and_backends_see_https,
    garbage_and_silent_clients_are_closed_while_others_are_served,
    a_bad_record_while_a_response_is_written_closes_only_that_connection,
    sessions_resume_on_tls13_and_tls12,
    bodies_stream_both_ways_through_tls,
    websocket_echo_through_https_and_http,
    tls_to_backends_is_verified_carries_sni_and_is_pooled,
    certificates_reload_and_a_bad_one_keeps_the_old_serving,
);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn sni_picks_the_certificate_and_unknown_names_get_the_default(driver: &str) {
    let pki = Pki::new();
    let default = pki.leaf("default", &["default.test", "127.0.0.1"]);
    let a = pki.leaf("a", &["a.test"]);
    let wild = pki.leaf("wild", &["*.b.test"]);
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&https_config(
        driver,
        &[&default, &a, &wild],
        &[backend.addr],
        "",
    ));
    let client = pki.client_without_resumption();

    for (name, expected) in [
        ("a.test", &a),
        ("A.TEST", &a),
        ("x.b.test", &wild),
        ("default.test", &default),
        ("127.0.0.1", &default), // an IP address: no SNI at all
    ] {
        let mut conn = client
            .connect(proxy.addr, name)
            .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
        assert_eq!(
            client.seen().as_ref(),
            Some(&expected.der),
            "certificate for {name}"
        );
        assert_eq!(conn.tls().alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(conn.get("/").body, b"ok");
    }

    // A name no certificate covers gets the default, which the client rightly refuses.
    let refused = client.connect(proxy.addr, "unknown.test").err();
    assert!(
        matches!(
            refused,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{refused:?}"
    );
    assert_eq!(client.seen().as_ref(), Some(&default.der));
}

fn curl_sees_the_right_certificate_and_backends_see_https(driver: &str) {
    let pki = Pki::new();
    let default = pki.leaf("default", &["default.test"]);
    let a = pki.leaf("a", &["a.test"]);
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&https_config(driver, &[&default, &a], &[backend.addr], ""));

    let (ok, body, stderr) = curl(&pki.ca_path(), "a.test", proxy.addr, "/x", &["-v"]);
    assert!(ok, "{stderr}");
    assert_eq!(body, "ok");
    assert!(stderr.contains("subject: CN=a.test"), "{stderr}");
    assert!(
        stderr.contains("ALPN: server accepted http/1.1"),
        "{stderr}"
    );
    let (ok, _, stderr) = curl(&pki.ca_path(), "default.test", proxy.addr, "/", &["-v"]);
    assert!(
        ok && stderr.contains("subject: CN=default.test"),
        "{stderr}"
    );
    let (ok, _, stderr) = curl(&pki.ca_path(), "other.test", proxy.addr, "/", &["-v"]);
    assert!(!ok, "the default certificate is not for other.test");
    assert!(stderr.contains("subject: CN=default.test"), "{stderr}");
    // TLS 1.2 only, as older clients would.
    let (ok, _, stderr) = curl(
        &pki.ca_path(),
        "a.test",
        proxy.addr,
        "/",
        &["-v", "--tls-max", "1.2"],
    );
    assert!(ok && stderr.contains("TLSv1.2"), "{stderr}");

    let forwarded = String::from_utf8(backend.requests().remove(0)).unwrap();
    assert!(forwarded.starts_with("GET /x HTTP/1.1\r\n"), "{forwarded}");
    assert!(
        forwarded.contains("\r\nX-Forwarded-Proto: https\r\n"),
        "{forwarded}"
    );
}

fn garbage_and_silent_clients_are_closed_while_others_are_served(driver: &str) {
    let pki = Pki::new();
    let leaf = pki.leaf("a", &["a.test"]);
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&https_config(
        driver,
        &[&leaf],
        &[backend.addr],
        "[timeouts]\ntls_handshake = \"500ms\"\n",
    ));
    let client = pki.client(TLS13);

    // Connects and says nothing: closed once the handshake timeout passes.
    let silent = TcpStream::connect(proxy.addr).unwrap();
    let started = Instant::now();
    // Plain HTTP (or any garbage) instead of a ClientHello: closed at once.
    let mut garbage = TcpStream::connect(proxy.addr).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert!(
        read_until_closed(&mut garbage),
        "garbage connection left open"
    );
    let mut half = TcpStream::connect(proxy.addr).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01])
        .unwrap(); // a ClientHello cut short

    // Meanwhile others are served.
    for _ in 0..5 {
        let mut conn = client.connect(proxy.addr, "a.test").expect("handshake");
        assert_eq!(conn.get("/").body, b"ok");
    }

    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(read_until_closed(&mut silent), "silent client never closed");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(read_until_closed(&mut half), "half handshake never closed");
    assert!(
        backend.requests().len() == 5,
        "{}",
        backend.requests().len()
    );
}

/// A backend that answers an upgrade with `101` and then sends without pause, until the proxy
/// closes its side of the tunnel.
fn flooding_upgrade_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = tcp.try_clone().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && reader.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let mut writer = tcp;
                let _ = writer.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: flood\r\nConnection: Upgrade\r\n\r\n",
                );
                let flood = std::thread::spawn(move || {
                    let chunk = [b'f'; 64 * 1024];
                    while writer.write_all(&chunk).is_ok() {}
                });
                // The proxy closing its side ends the flood.
                while reader.read(&mut [0u8; 4096]).is_ok_and(|n| n > 0) {}
                let _ = reader.shutdown(std::net::Shutdown::Both);
                let _ = flood.join();
            });
        }
    });
    addr
}

fn a_bad_record_while_a_response_is_written_closes_only_that_connection(driver: &str) {
    let pki = Pki::new();
    let leaf = pki.leaf("a", &["a.test"]);
    let proxy = Proxy::start(&https_config(
        driver,
        &[&leaf],
        &[flooding_upgrade_backend()],
        "",
    ));
    let client = pki.client(TLS13);

    // In a tunnel the proxy reads from and writes to the client's TLS stream at the same time.
    let mut conn = client.connect(proxy.addr, "a.test").expect("handshake");
    conn.send(
        b"GET /flood HTTP/1.1\r\nHost: test\r\nUpgrade: flood\r\nConnection: Upgrade\r\n\r\n",
    );
    // Not reading: the proxy's writes to us stall while its reader still listens. (The pause only
    // makes that interleaving likely; what is asserted below must hold in any case.)
    std::thread::sleep(Duration::from_millis(300));
    let mut stream = conn.into_stream();
    let mut bad = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    bad.extend_from_slice(&[0x42; 32]); // application data that cannot decrypt
    stream.sock.write_all(&bad).unwrap();
    assert!(
        read_until_closed(&mut stream.sock),
        "the bad connection stays open"
    );

    let mut other = client.connect(proxy.addr, "a.test").expect("handshake");
    other.send(b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: flood\r\nConnection: Upgrade\r\n\r\n");
    let response = other.read_response("GET").expect("the proxy still serves");
    assert_eq!(response.status, 101);
}

/// Reads (and discards: an alert may come first) until the peer closes; false on a read timeout.
fn read_until_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn sessions_resume_on_tls13_and_tls12(driver: &str) {
    let pki = Pki::new();
    let leaf = pki.leaf("a", &["a.test"]);
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&https_config(driver, &[&leaf], &[backend.addr], ""));
    for (versions, label) in [(TLS13, "TLS 1.3"), (TLS12, "TLS 1.2")] {
        let client = pki.client(versions);
        let mut first = client.connect(proxy.addr, "a.test").expect("handshake");
        assert_eq!(first.tls().handshake_kind(), Some(HandshakeKind::Full));
        // TLS 1.3 tickets arrive after the handshake: a response read takes them in.
        assert_eq!(first.get("/").body, b"ok");
        // Two workers: the next connections may land on either; tickets work across them.
        for _ in 0..4 {
            let mut again = client.connect(proxy.addr, "a.test").expect("handshake");
            assert_eq!(
                again.tls().handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{label}"
            );
            assert_eq!(again.get("/").body, b"ok");
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn bodies_stream_both_ways_through_tls(driver: &str) {
    let pki = Pki::new();
    let leaf = pki.leaf("a", &["a.test"]);
    let api = DemoApi::start(1);
    let proxy = Proxy::start(&https_config(driver, &[&leaf], &[api.addr], ""));
    let client = pki.client(TLS13);
    let mut conn = client.connect(proxy.addr, "a.test").expect("handshake");
    let body = pattern(4 * 1024 * 1024);

    // Echoed while it uploads: the proxy reads and writes the client's TLS stream at once.
    conn.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    conn.send(&body);
    let echoed = conn.read_response("POST").unwrap();
    assert_eq!(echoed.status, 200);
    assert!(
        echoed.body == body,
        "echo differs ({} bytes)",
        echoed.body.len()
    );

    // Chunked, on the same connection, pipelined with two more requests, one a large download.
    let mut raw =
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(70_001) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw.extend_from_slice(b"GET /status?code=201 HTTP/1.1\r\nHost: test\r\n\r\n");
    raw.extend_from_slice(b"GET /bytes?n=8388608 HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.send(&raw);
    let echoed = conn.read_response("POST").unwrap();
    assert!(echoed.body == body, "chunked echo differs");
    assert_eq!(conn.read_response("GET").unwrap().status, 201);
    let bytes = conn.read_response("GET").unwrap();
    assert_eq!(bytes.header("content-length"), Some("8388608"));
    assert_eq!(bytes.body.len(), 8 * 1024 * 1024);
}

/// A WebSocket echo server on 127.0.0.1:0: every message comes back as sent.
fn websocket_echo_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(tcp) else {
                    return;
                };
                while let Ok(message) = ws.read() {
                    if message.is_close() {
                        break;
                    }
                    if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn websocket_round_trips<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) {
    use tungstenite::Message;
    let big = pattern(300_000);
    for message in [
        Message::text("hello through the proxy"),
        Message::binary(big),
        Message::text("after the big one"),
    ] {
        ws.send(message.clone()).expect("send");
        let back = loop {
            match ws.read().expect("echo") {
                m if m.is_text() || m.is_binary() => break m,
                _ => continue,
            }
        };
        assert_eq!(back, message);
    }
    ws.close(None).expect("close");
    while ws.read().is_ok() {}
}

fn websocket_echo_through_https_and_http(driver: &str) {
    let pki = Pki::new();
    let leaf = pki.leaf("a", &["a.test"]);
    let echo = websocket_echo_server();

    let proxy = Proxy::start(&https_config(driver, &[&leaf], &[echo], ""));
    let conn = pki
        .client(TLS13)
        .connect(proxy.addr, "a.test")
        .expect("handshake");
    let (mut ws, response) =
        tungstenite::client::client("wss://a.test/chat", conn.into_stream()).expect("upgrade");
    assert_eq!(response.status(), 101);
    websocket_round_trips(&mut ws);
    drop(ws);
    drop(proxy);

    let proxy = Proxy::start(&common::config(driver, &[echo], ""));
    let tcp = TcpStream::connect(proxy.addr).unwrap();
    let (mut ws, response) = tungstenite::client::client("ws://a.test/chat", tcp).expect("upgrade");
    assert_eq!(response.status(), 101);
    websocket_round_trips(&mut ws);
}

fn tls_to_backends_is_verified_carries_sni_and_is_pooled(driver: &str) {
    let pki = Pki::new();
    let named = TlsBackend::start(&pki.leaf("backend", &["backend.test"]));
    let by_ip = TlsBackend::start(&pki.leaf("ip", &["127.0.0.1"]));
    let ca = pki.ca_path().display().to_string();
    let upstream = |backend: SocketAddr, tls: &str| {
        format!(
            "[runtime]\nworkers = 1\ndriver = \"{driver}\"\n\
             [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{backend}\"]\n[upstream.api.tls]\n{tls}"
        )
    };

    let proxy = Proxy::start(&upstream(
        named.addr,
        &format!("ca = \"{ca}\"\nserver_name = \"backend.test\"\n"),
    ));
    let mut conn = client::Conn::open(proxy.addr);
    for _ in 0..20 {
        conn.send(b"GET /p HTTP/1.1\r\nHost: test\r\n\r\n");
        let response = conn.read_response("GET").unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "tls"));
    }
    assert_eq!(named.requests().len(), 20);
    assert_eq!(
        named.connections(),
        1,
        "one pooled TLS connection for sequential requests"
    );
    assert_eq!(named.server_names(), [Some("backend.test".to_owned())]);
    let forwarded = String::from_utf8(named.requests().remove(0)).unwrap();
    assert!(
        forwarded.contains("\r\nX-Forwarded-Proto: http\r\n"),
        "{forwarded}"
    );
    drop(proxy);

    // Without server_name: the backend's IP is verified, and no SNI is sent.
    let proxy = Proxy::start(&upstream(by_ip.addr, &format!("ca = \"{ca}\"\n")));
    assert_eq!(client::get(proxy.addr, "/").status, 200);
    assert_eq!(by_ip.server_names(), [None]);
    drop(proxy);

    // A certificate not for the name asked: 502, and nothing reaches the backend.
    let before = named.requests().len();
    let proxy = Proxy::start(&upstream(
        named.addr,
        &format!("ca = \"{ca}\"\nserver_name = \"other.test\"\n"),
    ));
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.text().contains("failed the TLS handshake"),
        "{}",
        response.text()
    );
    assert_eq!(named.requests().len(), before);
    drop(proxy);

    // A backend that is not TLS at all (it waits for an HTTP request): the handshake times out.
    let plain = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&upstream(
        plain.addr,
        &format!("ca = \"{ca}\"\n[timeouts]\nupstream_connect = \"300ms\"\n"),
    ));
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        response
            .text()
            .contains("did not complete the TLS handshake within 300ms"),
        "{}",
        response.text()
    );
    assert!(plain.requests().is_empty());
}

fn certificates_reload_and_a_bad_one_keeps_the_old_serving(driver: &str) {
    let pki = Pki::new();
    let first = pki.leaf("a", &["a.test"]);
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let config = https_config(driver, &[&first], &[backend.addr], "");
    let proxy = Proxy::start(&config);
    let client = pki.client_without_resumption();
    let mut kept = client.connect(proxy.addr, "a.test").expect("handshake");
    assert_eq!(client.seen().as_ref(), Some(&first.der));

    // Renewed in place (same files), then reloaded as SIGHUP would.
    let renewed = pki.leaf("a", &["a.test"]);
    proxy.reload(&config).expect("reload");
    client.connect(proxy.addr, "a.test").expect("handshake");
    assert_eq!(client.seen().as_ref(), Some(&renewed.der));
    assert_eq!(
        kept.get("/").body,
        b"ok",
        "open connections are not touched"
    );

    // A broken certificate file: the reload is refused, naming it; the renewed one keeps serving.
    std::fs::write(&renewed.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let err = proxy
        .reload(&config)
        .expect_err("a bad certificate is refused");
    let text = err.to_string();
    assert!(matches!(err, ReloadError::Invalid(_)), "{text}");
    assert!(text.contains(&renewed.cert.display().to_string()), "{text}");
    assert!(
        text.contains("listener.https.tls.certificate[0].cert"),
        "{text}"
    );
    let mut conn = client.connect(proxy.addr, "a.test").expect("handshake");
    assert_eq!(client.seen().as_ref(), Some(&renewed.der));
    assert_eq!(conn.get("/").body, b"ok");
}
