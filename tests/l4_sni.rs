//! TLS passthrough: a tcp listener reads the server name from the ClientHello without
//! terminating TLS and routes by it. Behind it, real TLS backends (rustls, each with its own
//! certificate); the client completes its handshake with the chosen backend itself and sees
//! that backend's certificate. Both io drivers, both relays.

mod common;

use common::tcp::{connect, round_trip, EchoServer};
use common::tls::{Pki, TlsBackend};
use common::{on_both_drivers, Proxy};
use std::io::{Read, Write};
use std::net::SocketAddr;

on_both_drivers!(
    two_names_reach_two_backends_that_terminate_tls_themselves,
    unmatched_names_and_other_protocols_go_to_the_default_or_are_closed,
);

/// A tcp listener (with `relay`) routing `a.test` to group `a` and `*.b.test` to group `b`,
/// with `default` (a group name) as its `upstream`, if any.
fn passthrough_config(
    driver: &str,
    relay: &str,
    a: SocketAddr,
    b: SocketAddr,
    default: Option<SocketAddr>,
) -> String {
    let mut text = format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\n\
         [listener.tls]\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nrelay = \"{relay}\"\n"
    );
    if default.is_some() {
        text.push_str("upstream = \"fallback\"\n");
    }
    text.push_str(&format!(
        "[[listener.tls.route]]\nsni = \"a.test\"\nupstream = \"a\"\n\
         [[listener.tls.route]]\nsni = \"*.b.test\"\nupstream = \"b\"\n\n\
         [upstream.a]\nbackends = [\"{a}\"]\n[upstream.b]\nbackends = [\"{b}\"]\n"
    ));
    if let Some(fallback) = default {
        text.push_str(&format!(
            "[upstream.fallback]\nbackends = [\"{fallback}\"]\n"
        ));
    }
    text
}

fn two_names_reach_two_backends_that_terminate_tls_themselves(driver: &str) {
    let pki = Pki::new();
    let leaf_a = pki.leaf("a", &["a.test"]);
    let leaf_b = pki.leaf("b", &["*.b.test"]);
    let backend_a = TlsBackend::start(&leaf_a);
    let backend_b = TlsBackend::start(&leaf_b);
    for relay in ["splice", "copy"] {
        let proxy = Proxy::start(&passthrough_config(
            driver,
            relay,
            backend_a.addr,
            backend_b.addr,
            None,
        ));
        let client = pki.client_without_resumption();
        for (name, leaf, backend) in [
            ("a.test", &leaf_a, &backend_a),
            ("x.b.test", &leaf_b, &backend_b),
            ("A.Test", &leaf_a, &backend_a),
        ] {
            let before = backend.connections();
            let mut conn = client.connect(proxy.addr, name).expect("handshake");
            assert_eq!(client.seen(), Some(leaf.der.clone()), "{relay}: {name}");
            let response = conn.get("/");
            assert_eq!(response.status, 200);
            assert_eq!(response.body, b"tls", "{relay}: {name}");
            assert_eq!(backend.connections(), before + 1, "{relay}: {name}");
            let seen_name = backend.server_names().last().cloned().flatten();
            assert_eq!(
                seen_name.as_deref().map(str::to_ascii_lowercase),
                Some(name.to_ascii_lowercase()),
                "{relay}: the backend got the ClientHello untouched"
            );
        }
    }
}

fn unmatched_names_and_other_protocols_go_to_the_default_or_are_closed(driver: &str) {
    let pki = Pki::new();
    let leaf_a = pki.leaf("a", &["a.test"]);
    let leaf_b = pki.leaf("b", &["*.b.test"]);
    let backend_a = TlsBackend::start(&leaf_a);
    let backend_b = TlsBackend::start(&leaf_b);
    let client = pki.client_without_resumption();

    // Without a default: an unknown name, or no name at all, is closed.
    let proxy = Proxy::start(&passthrough_config(
        driver,
        "splice",
        backend_a.addr,
        backend_b.addr,
        None,
    ));
    assert!(client.connect(proxy.addr, "c.test").is_err());
    assert!(
        client.connect(proxy.addr, "b.test").is_err(),
        "*.b.test is not b.test"
    );
    assert!(client.connect(proxy.addr, "127.0.0.1").is_err(), "no SNI");
    let mut plain = connect(proxy.addr);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut nothing = Vec::new();
    let _ = plain.read_to_end(&mut nothing);
    assert!(nothing.is_empty(), "not TLS, no default: closed");
    assert_eq!(backend_a.connections() + backend_b.connections(), 0);
    drop(proxy);

    // With one: they all go there, bytes untouched (here an echo backend shows them).
    let fallback = EchoServer::start(false);
    let proxy = Proxy::start(&passthrough_config(
        driver,
        "splice",
        backend_a.addr,
        backend_b.addr,
        Some(fallback.addr),
    ));
    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    assert_eq!(round_trip(proxy.addr, request).unwrap(), request);
    assert_eq!(fallback.connections(), 1);
    // A ClientHello for an unknown name reaches the echo backend, which sends it back: not a
    // TLS server, so the handshake fails — at the client, after the proxy forwarded it.
    assert!(client.connect(proxy.addr, "c.test").is_err());
    assert_eq!(fallback.connections(), 2);
    assert_eq!(backend_a.connections() + backend_b.connections(), 0);
}
