//! `[listener.NAME.connection_limits]` end to end: clients bound to their own 127.x.y.z source
//! addresses open real connections; a served one gets the backend's exact answer, a refused one
//! is closed (reset) before any answer, and the refusals are counted in /metrics.
//!
//! `per_client` runs on two workers steered by client address: every connection of an address
//! must land on one worker for exactly N to be served (split across workers, each would allow
//! ⌈N/2⌉ and some addresses would be refused early).

mod common;

use common::backend::{RawBackend, Reply};
use common::client::{read_response, Response};
use common::{on_both_drivers, wait_until, Proxy};
use socket2::{Domain, Socket, Type};
use std::io::{BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

on_both_drivers!(
    max_caps_the_listener_and_frees_a_place_when_one_closes,
    per_client_serves_exactly_n_per_address_across_workers,
    per_client_rate_refuses_the_connection_past_the_burst,
    a_listener_without_limits_takes_every_connection,
    a_trusted_proxy_is_not_limited_per_client,
);

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const WITHIN: Duration = Duration::from_secs(10);

/// A client connection from `source`.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(source: IpAddr, proxy: SocketAddr) -> Client {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
        socket
            .connect(&proxy.into())
            .expect("the kernel completes it");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(WITHIN)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// One request; `Some` with the response when served, `None` when the proxy closed or reset
    /// the connection instead.
    fn request(&mut self) -> Option<Response> {
        let sent = self
            .reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nhost: limits.test\r\n\r\n");
        sent.ok()?;
        read_response(&mut self.reader, "GET").ok()
    }

    /// Connects and makes one request; `Some` when it was served.
    fn served(source: IpAddr, proxy: SocketAddr) -> Option<Client> {
        let mut client = Client::connect(source, proxy);
        let response = client.request()?;
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"ok"[..])
        );
        Some(client)
    }
}

fn proxy(driver: &str, workers: usize, backend: SocketAddr, listener: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = {workers}\ndriver = \"{driver}\"\ndrain_timeout = \"1s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n{listener}\n\
         [upstream.api]\nbackends = [\"{backend}\"]\n"
    ))
}

/// The listener's counter `name` in /metrics (summed over its samples).
fn counter(proxy: &Proxy, name: &str) -> u64 {
    let text = common::admin::get(proxy.admin_addr(), "/metrics", None).text();
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn wait_for_counter(proxy: &Proxy, name: &str, expected: u64) {
    wait_until(WITHIN, &format!("{name} = {expected}"), || {
        counter(proxy, name) == expected
    });
}

const MAX_REFUSED: &str = "lbproxy_listener_refused_connections_max_total";
const PER_CLIENT_REFUSED: &str = "lbproxy_listener_refused_connections_per_client_total";

fn max_caps_the_listener_and_frees_a_place_when_one_closes(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(ANSWER.to_vec()));
    let proxy = proxy(
        driver,
        1,
        backend.addr,
        "[listener.http.connection_limits]\nmax = 3",
    );
    let local: IpAddr = [127, 0, 0, 1].into();
    let mut held: Vec<Client> = (0..3)
        .map(|i| Client::served(local, proxy.addr).unwrap_or_else(|| panic!("connection {i}")))
        .collect();
    assert!(
        Client::served(local, proxy.addr).is_none(),
        "the 4th connection was served"
    );
    wait_for_counter(&proxy, MAX_REFUSED, 1);
    // The held ones are still served.
    for client in &mut held {
        assert_eq!(client.request().expect("still served").status, 200);
    }
    // One closes: its place is free again (once the proxy has seen the close).
    held.pop();
    let mut again = None;
    wait_until(WITHIN, "a new connection after one closed", || {
        again = Client::served(local, proxy.addr);
        again.is_some()
    });
    assert!(Client::served(local, proxy.addr).is_none(), "full again");
    assert_eq!(counter(&proxy, PER_CLIENT_REFUSED), 0);
}

fn per_client_serves_exactly_n_per_address_across_workers(driver: &str) {
    const PER_CLIENT: usize = 2;
    let backend = RawBackend::start(Reply::Fixed(ANSWER.to_vec()));
    // No worker_steering written: per-client limits on a directly reached listener steer by
    // client address.
    let proxy = proxy(
        driver,
        2,
        backend.addr,
        &format!("[listener.http.connection_limits]\nper_client = {PER_CLIENT}"),
    );
    let mut held = Vec::new();
    for host in 1..=20u8 {
        let source: IpAddr = [127, 0, 1, host].into();
        for i in 0..PER_CLIENT {
            let client = Client::served(source, proxy.addr);
            held.push(client.unwrap_or_else(|| panic!("{source}: connection {i} refused")));
        }
        assert!(
            Client::served(source, proxy.addr).is_none(),
            "{source}: connection {PER_CLIENT} was served"
        );
    }
    wait_for_counter(&proxy, PER_CLIENT_REFUSED, 20);
    assert_eq!(counter(&proxy, MAX_REFUSED), 0);
    // An address whose connection closes gets its place back (once the proxy has seen it).
    let first: IpAddr = [127, 0, 1, 1].into();
    held.remove(0);
    let mut again = None;
    wait_until(WITHIN, "a new connection after one closed", || {
        again = Client::served(first, proxy.addr);
        again.is_some()
    });
    assert!(
        Client::served(first, proxy.addr).is_none(),
        "{first} full again"
    );
}

fn per_client_rate_refuses_the_connection_past_the_burst(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(ANSWER.to_vec()));
    let proxy = proxy(
        driver,
        2,
        backend.addr,
        "[listener.http.connection_limits]\nper_client_rate = \"1/min\"\nper_client_burst = 2",
    );
    let first: IpAddr = [127, 0, 2, 1].into();
    // Opened and closed one after the other: the rate counts new connections, not open ones.
    for i in 0..2 {
        assert!(
            Client::served(first, proxy.addr).is_some(),
            "connection {i} refused"
        );
    }
    assert!(
        Client::served(first, proxy.addr).is_none(),
        "the 3rd new connection within the minute was served"
    );
    let other: IpAddr = [127, 0, 2, 2].into();
    assert!(
        Client::served(other, proxy.addr).is_some(),
        "another address"
    );
    wait_for_counter(&proxy, PER_CLIENT_REFUSED, 1);
}

fn a_listener_without_limits_takes_every_connection(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(ANSWER.to_vec()));
    let proxy = proxy(driver, 2, backend.addr, "");
    let source: IpAddr = [127, 0, 3, 1].into();
    let held: Vec<Client> = (0..16)
        .map(|i| Client::served(source, proxy.addr).unwrap_or_else(|| panic!("connection {i}")))
        .collect();
    assert_eq!(held.len(), 16);
    let metrics = common::admin::get(proxy.admin_addr(), "/metrics", None).text();
    assert!(metrics.contains(MAX_REFUSED), "{metrics}");
    assert_eq!(counter(&proxy, MAX_REFUSED), 0);
    assert_eq!(counter(&proxy, PER_CLIENT_REFUSED), 0);
}

fn a_trusted_proxy_is_not_limited_per_client(driver: &str) {
    let backend = RawBackend::start(Reply::Fixed(ANSWER.to_vec()));
    // Its requests name their clients (X-Forwarded-For): the connections are the proxy's.
    let proxy = proxy(
        driver,
        1,
        backend.addr,
        "trusted_proxies = [\"127.0.4.1/32\"]\n\
         [listener.http.connection_limits]\nper_client = 1",
    );
    let trusted: IpAddr = [127, 0, 4, 1].into();
    let held: Vec<Client> = (0..3)
        .map(|i| Client::served(trusted, proxy.addr).unwrap_or_else(|| panic!("connection {i}")))
        .collect();
    assert_eq!(held.len(), 3);
    // Anyone else is limited.
    let other: IpAddr = [127, 0, 4, 2].into();
    let _first = Client::served(other, proxy.addr).expect("the first connection");
    assert!(Client::served(other, proxy.addr).is_none(), "a second one");
    wait_for_counter(&proxy, PER_CLIENT_REFUSED, 1);
}
