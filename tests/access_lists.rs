//! Access lists end to end: a listener's list resets a refused client's connection as it opens
//! (clients bound to 127.0.0.2 versus 127.0.0.1), a route's list answers 403 (or resets, with
//! `action = "reset"`), and both are counted in `/metrics`.

mod common;

use common::backend::{RawBackend, Reply};
use common::{admin, on_both_drivers, wait_until, Proxy};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

on_both_drivers!(
    a_listener_deny_list_resets_the_client_as_it_connects,
    a_route_allow_list_answers_403_to_others,
    a_route_list_with_action_reset_resets_the_connection,
);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A connection to `proxy` from the local address `source` (any 127.x.y.z is this host).
fn connect_from(source: &str, proxy: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&proxy.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `GET path` and reads the whole answer until the proxy closes: the bytes, or `None` when
/// the connection was reset.
fn get_from(source: &str, proxy: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let mut stream = connect_from(source, proxy);
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    match stream.write_all(request.as_bytes()) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            return None
        }
        Err(e) => panic!("writing to the proxy: {e}"),
    }
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(received),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            // The in-process proxy's threads take signals too.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                assert!(
                    received.is_empty(),
                    "reset after an answer: {:?}",
                    String::from_utf8_lossy(&received)
                );
                return None;
            }
            Err(e) => panic!("reading from the proxy: {e}"),
        }
    }
}

/// The value of `name{listener="http"}` in the proxy's `/metrics`.
fn listener_metric(proxy: &Proxy, name: &str) -> f64 {
    let text = admin::get(proxy.admin_addr(), "/metrics", None).text();
    text.lines()
        .find(|line| line.starts_with(&format!("{name}{{")) && line.contains("listener=\"http\""))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} for listener http in:\n{text}"))
}

fn listener_config(driver: &str, backend: SocketAddr, listener: &str, routes: &str) -> String {
    format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n{listener}\n{routes}\n\
         [upstream.api]\nbackends = [\"{backend}\"]\n"
    )
}

fn a_listener_deny_list_resets_the_client_as_it_connects(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&listener_config(
        driver,
        backend.addr,
        "access = { deny = [\"127.0.0.2\"] }",
        "",
    ));
    assert_eq!(get_from("127.0.0.2", proxy.addr, "/"), None, "reset");
    let served = get_from("127.0.0.1", proxy.addr, "/").expect("served");
    assert!(
        served.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&served)
    );
    assert_eq!(backend.requests().len(), 1, "only 127.0.0.1 reached it");
    wait_until(Duration::from_secs(10), "the refusal is counted", || {
        listener_metric(&proxy, "lbproxy_listener_denied_connections_total") == 1.0
    });
    assert_eq!(
        listener_metric(&proxy, "lbproxy_listener_denied_requests_total"),
        0.0
    );
}

const ROUTES: &str = "[[listener.http.route]]\npath_prefix = \"/admin\"\nupstream = \"api\"\n\
                      access = { allow = [\"127.0.0.2\"] }\n\
                      [[listener.http.route]]\npath_prefix = \"/hidden\"\nupstream = \"api\"\n\
                      access = { deny = [\"127.0.0.0/8\"], action = \"reset\" }\n";

fn a_route_allow_list_answers_403_to_others(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&listener_config(driver, backend.addr, "", ROUTES));
    let refused = get_from("127.0.0.1", proxy.addr, "/admin").expect("answered");
    let text = String::from_utf8_lossy(&refused);
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(backend.requests().is_empty(), "the backend saw nothing");
    // The allowed address, and other routes for everyone.
    let allowed = get_from("127.0.0.2", proxy.addr, "/admin").expect("served");
    assert!(allowed.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let other = get_from("127.0.0.1", proxy.addr, "/public").expect("served");
    assert!(other.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(backend.requests().len(), 2);
    wait_until(Duration::from_secs(10), "the 403 is counted", || {
        listener_metric(&proxy, "lbproxy_listener_denied_requests_total") == 1.0
    });
    assert_eq!(
        listener_metric(&proxy, "lbproxy_listener_denied_connections_total"),
        0.0
    );
}

fn a_route_list_with_action_reset_resets_the_connection(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&listener_config(driver, backend.addr, "", ROUTES));
    assert_eq!(get_from("127.0.0.1", proxy.addr, "/hidden"), None, "reset");
    assert_eq!(
        get_from("127.0.0.3", proxy.addr, "/hidden/x"),
        None,
        "reset"
    );
    assert!(backend.requests().is_empty(), "the backend saw nothing");
    wait_until(Duration::from_secs(10), "both resets are counted", || {
        listener_metric(&proxy, "lbproxy_listener_denied_requests_total") == 2.0
    });
}
