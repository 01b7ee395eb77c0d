//! Trusted proxies and the PROXY protocol end to end (docs/config.md "Trusted proxies and the
//! PROXY protocol"): the exact head the origin receives — its `X-Forwarded-For` and the
//! resolved client a route writes as `X-Client: {client_ip}` — for an untrusted client, a
//! trusted proxy's chain, a recursive walk, PROXY v1 and v2 headers on http and tcp listeners;
//! refused headers (untrusted peer, missing, late) close the connection and are counted; consistent
//! hashing follows the resolved client.

mod common;

use common::backend::{RawBackend, Reply, TRACEPARENT_MASK};
use common::tcp::{tcp_config, EchoServer, ProxyHeader};
use common::tls::{https_config, Pki};
use common::{admin, client, on_both_drivers, wait_until, Proxy};
use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

on_both_drivers!(
    an_untrusted_client_s_forwarded_fields_are_dropped,
    a_trusted_proxy_s_chain_is_kept_appended_and_walked,
    proxy_headers_on_an_http_listener_name_the_client,
    a_proxy_header_from_an_untrusted_peer_or_a_missing_one_closes_and_counts,
    a_tcp_listener_passes_the_proxy_header_s_client_to_its_backend,
    an_https_listener_reads_the_proxy_header_before_the_handshake,
    consistent_hashing_follows_the_resolved_client,
);

const PROXY_V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// One worker, an http listener with `listener_extra`, a route writing the resolved client as
/// `X-Client`, and the group `api` with `group_extra`.
fn http_config(
    driver: &str,
    backends: &[SocketAddr],
    listener_extra: &str,
    group_extra: &str,
) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"2s\"\n\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\n{listener_extra}\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         request_headers = {{ set = {{ \"X-Client\" = \"{{client_ip}}\" }} }}\n\n\
         [upstream.api]\nbackends = [{}]\n{group_extra}\n",
        list.join(", ")
    )
}

/// What the origin receives for `GET /` with `Host: a`, request id `id`, the client's other
/// fields `kept`, the resolved client `client` and the written `X-Forwarded-For` value.
fn upstream_head(kept: &str, client: &str, xff: &str, id: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{kept}X-Client: {client}\r\nX-Forwarded-For: {xff}\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Request-Id: {id}\r\n\
         traceparent: {TRACEPARENT_MASK}\r\n\r\n"
    )
}

fn request(id: &str, fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: {id}\r\n{fields}Connection: close\r\n\r\n")
        .into_bytes()
}

/// The last request the backend received, as text.
fn last_request(backend: &RawBackend) -> String {
    String::from_utf8(
        backend
            .requests()
            .pop()
            .expect("a request reached the origin"),
    )
    .unwrap()
}

fn an_untrusted_client_s_forwarded_fields_are_dropped(driver: &str) {
    let backend = RawBackend::start(Reply::Echo);
    let proxy = Proxy::start(&http_config(driver, &[backend.addr], "", ""));
    let raw = request(
        "u1",
        "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Kept: 1\r\n",
    );
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head("X-Kept: 1\r\n", "127.0.0.1", "127.0.0.1", "u1")
    );
}

fn a_trusted_proxy_s_chain_is_kept_appended_and_walked(driver: &str) {
    let backend = RawBackend::start(Reply::Echo);
    let listener = "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n";
    let proxy = Proxy::start(&http_config(driver, &[backend.addr], listener, ""));
    // The nearest untrusted hop is the client; the left one (forgeable) is not.
    let raw = request("t1", "X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n");
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head("", "203.0.113.9", "6.6.6.6, 203.0.113.9, 127.0.0.1", "t1")
    );
    // Recursive: trusted hops (10.x) are skipped, with ports and across fields.
    let raw = request(
        "t2",
        "X-Forwarded-For: 198.51.100.4:5000\r\nX-Forwarded-For: 10.1.1.1, 10.2.2.2\r\n",
    );
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head(
            "",
            "198.51.100.4",
            "198.51.100.4:5000, 10.1.1.1, 10.2.2.2, 127.0.0.1",
            "t2"
        )
    );
    // Without X-Forwarded-For, Forwarded's `for=` (kept as it came, from a trusted sender).
    let raw = request(
        "t3",
        "Forwarded: for=\"[2001:db8::1]:80\";proto=https, for=10.0.0.3\r\n",
    );
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head(
            "Forwarded: for=\"[2001:db8::1]:80\";proto=https, for=10.0.0.3\r\n",
            "2001:db8::1",
            "127.0.0.1",
            "t3"
        )
    );
}

/// A v2 PROXY header for a TCP4 client at `source` that reached `destination`.
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!("IPv4 only");
    };
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12 + 7]);
    out.extend_from_slice(&s.ip().octets());
    out.extend_from_slice(&d.ip().octets());
    out.extend_from_slice(&s.port().to_be_bytes());
    out.extend_from_slice(&d.port().to_be_bytes());
    // A TLV (PP2_TYPE_AUTHORITY "a.ts"), skipped.
    out.extend_from_slice(&[0x02, 0, 4]);
    out.extend_from_slice(b"a.ts");
    out
}

fn proxy_headers_on_an_http_listener_name_the_client(driver: &str) {
    let backend = RawBackend::start(Reply::Echo);
    let listener = "trusted_proxies = [\"127.0.0.1\"]\naccept_proxy_protocol = true\n";
    let proxy = Proxy::start(&http_config(driver, &[backend.addr], listener, ""));

    // v1: the header's source is the client, and it is not trusted: its XFF is dropped.
    let mut raw = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n".to_vec();
    raw.extend_from_slice(&request("p1", "X-Forwarded-For: 6.6.6.6\r\n"));
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head("", "203.0.113.7", "203.0.113.7", "p1")
    );

    // v2 with a TLV, from a client that is itself a trusted proxy: its chain is believed.
    let mut raw = v2_header(
        "127.0.0.1:40000".parse().unwrap(),
        "192.0.2.1:80".parse().unwrap(),
    );
    raw.extend_from_slice(&request("p2", "X-Forwarded-For: 198.51.100.8\r\n"));
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head("", "198.51.100.8", "198.51.100.8, 127.0.0.1", "p2")
    );

    // v1 UNKNOWN: the peer is the client.
    let mut raw = b"PROXY UNKNOWN\r\n".to_vec();
    raw.extend_from_slice(&request("p3", ""));
    assert_eq!(client::request(proxy.addr, &raw).status, 200);
    assert_eq!(
        last_request(&backend),
        upstream_head("", "127.0.0.1", "127.0.0.1", "p3")
    );

    // Written a byte at a time, the header and the request still arrive whole.
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut raw = b"PROXY TCP4 203.0.113.8 192.0.2.1 51000 80\r\n".to_vec();
    raw.extend_from_slice(&request("p4", ""));
    for byte in raw {
        tcp.write_all(&[byte]).unwrap();
    }
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200 "), "{response:?}");
    assert_eq!(
        last_request(&backend),
        upstream_head("", "203.0.113.8", "203.0.113.8", "p4")
    );
}

/// `lbproxy_listener_proxy_protocol_errors_total` of listener `http`, from the admin /metrics.
fn proxy_header_errors(proxy: &Proxy) -> u64 {
    let response = admin::get(proxy.admin_addr(), "/metrics", None);
    let text = String::from_utf8(response.body).unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with("lbproxy_listener_proxy_protocol_errors_total{")
                && line.contains("listener=\"http\"")
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// Connects from `source` (any 127.x.y.z), sends `bytes`, and reads until the proxy closes.
fn closed_by_proxy(source: &str, proxy: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&proxy.into()).unwrap();
    let mut tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = tcp.write_all(bytes);
    let mut got = Vec::new();
    // A reset or a close: either way nothing of a response.
    let _ = tcp.read_to_end(&mut got);
    got
}

fn a_proxy_header_from_an_untrusted_peer_or_a_missing_one_closes_and_counts(driver: &str) {
    let backend = RawBackend::start(Reply::Echo);
    let listener = "trusted_proxies = [\"127.0.0.2\"]\naccept_proxy_protocol = true\n";
    let text =
        http_config(driver, &[backend.addr], listener, "") + "[timeouts]\nclient_header = \"1s\"\n";
    let proxy = Proxy::start(&text);
    let mut raw = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n".to_vec();
    raw.extend_from_slice(&request("x1", ""));

    // From 127.0.0.1, not trusted: closed, counted, nothing forwarded.
    assert_eq!(closed_by_proxy("127.0.0.1", proxy.addr, &raw), b"");
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        proxy_header_errors(&proxy) == 1
    });
    // From the trusted 127.0.0.2 without a header: closed, counted.
    assert_eq!(
        closed_by_proxy("127.0.0.2", proxy.addr, &request("x2", "")),
        b""
    );
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        proxy_header_errors(&proxy) == 2
    });
    // Half a header, then nothing: closed when `timeouts.client_header` (1 s here) ends.
    assert_eq!(
        closed_by_proxy("127.0.0.2", proxy.addr, b"PROXY TCP4 203.0"),
        b""
    );
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        proxy_header_errors(&proxy) == 3
    });
    assert!(backend.requests().is_empty());
    // From the trusted 127.0.0.2 with one: served.
    let response = closed_by_proxy("127.0.0.2", proxy.addr, &raw);
    assert!(response.starts_with(b"HTTP/1.1 200 "), "{response:?}");
    assert_eq!(
        last_request(&backend),
        upstream_head("", "203.0.113.7", "203.0.113.7", "x1")
    );
    assert_eq!(proxy_header_errors(&proxy), 3);
}

fn a_tcp_listener_passes_the_proxy_header_s_client_to_its_backend(driver: &str) {
    for (header, number) in [
        (
            b"PROXY TCP4 203.0.113.7 198.51.100.1 4000 443\r\n".to_vec(),
            2,
        ),
        (
            v2_header(
                "203.0.113.7:4000".parse().unwrap(),
                "198.51.100.1:443".parse().unwrap(),
            ),
            2,
        ),
    ] {
        let echo = EchoServer::start(true);
        let proxy = Proxy::start(&tcp_config(
            driver,
            "copy",
            &[echo.addr],
            "trusted_proxies = [\"127.0.0.1\"]\naccept_proxy_protocol = true\n",
            "proxy_protocol = \"v2\"\n",
        ));
        let mut tcp = TcpStream::connect(proxy.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.write_all(&header).unwrap();
        tcp.write_all(b"after the header").unwrap();
        tcp.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        tcp.read_to_end(&mut echoed).unwrap();
        assert_eq!(echoed, b"after the header");
        assert_eq!(
            echo.headers(),
            [Ok(ProxyHeader::Proxied {
                version: number,
                source: "203.0.113.7:4000".parse().unwrap(),
                destination: "198.51.100.1:443".parse().unwrap(),
            })]
        );
    }
}

fn consistent_hashing_follows_the_resolved_client(driver: &str) {
    let a = RawBackend::start(Reply::Echo);
    let b = RawBackend::start(Reply::Echo);
    let listener = "trusted_proxies = [\"127.0.0.1\"]\n";
    let group = "balance = \"maglev\"\nhash_key = \"client_ip\"\n";
    let proxy = Proxy::start(&http_config(driver, &[a.addr, b.addr], listener, group));
    let backend_of = |client: &str| -> bool {
        let before = a.requests().len();
        let raw = request("h", &format!("X-Forwarded-For: {client}\r\n"));
        assert_eq!(client::request(proxy.addr, &raw).status, 200);
        a.requests().len() > before
    };
    let mut chosen = HashMap::new();
    for n in 1..=24 {
        let client = format!("198.51.100.{n}");
        let on_a = backend_of(&client);
        chosen.insert(client.clone(), on_a);
        // The same client again: the same backend.
        assert_eq!(backend_of(&client), on_a, "{client}");
    }
    // All from one TCP peer, yet spread by the forwarded client (2^-23 odds of one backend).
    assert!(chosen.values().any(|&on_a| on_a), "{chosen:?}");
    assert!(chosen.values().any(|&on_a| !on_a), "{chosen:?}");
}

fn an_https_listener_reads_the_proxy_header_before_the_handshake(driver: &str) {
    let pki = Pki::new();
    let leaf = pki.leaf("default", &["a.test"]);
    let backend = RawBackend::start(Reply::Echo);
    let text = https_config(driver, &[&leaf], &[backend.addr], "").replacen(
        "upstream = \"api\"\n",
        "upstream = \"api\"\ntrusted_proxies = [\"127.0.0.1\"]\naccept_proxy_protocol = true\n",
        1,
    );
    let proxy = Proxy::start(&text);
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n")
        .unwrap();
    let client = pki.client(rustls::DEFAULT_VERSIONS);
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    let conn = rustls::ClientConnection::new(client.config.clone(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream.write_all(&request("s1", "")).unwrap();
    stream.flush().unwrap();
    let response = client::read_response(&mut BufReader::new(stream), "GET").unwrap();
    assert_eq!(response.status, 200);
    let received = last_request(&backend);
    assert!(
        received.contains("\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"),
        "{received}"
    );
}
