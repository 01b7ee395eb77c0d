//! Scale from zero: a request to an autoscaled group that has no instance waits (counted in
//! `waiting_for_instance`) until one is routed, then is served by it; or gets 503 `no_instance`
//! after `queue_timeout`.

mod common;

use common::{client, on_both_drivers, Proxy};
use lbproxy::config::{
    AddressSource, AutoscaleConfig, AutoscaleMetric, BackendConfig, Config, DiscoverConfig,
    SystemdBus,
};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

on_both_drivers!(
    a_waiting_request_is_served_by_the_instance_that_appears,
    nothing_appearing_is_a_503_after_the_queue_timeout,
);

fn start(driver: &str, queue_timeout: &str) -> Proxy {
    // Started with a placeholder backend, then reloaded as a `children` group scaled to zero.
    let placeholder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    Proxy::start(&format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\"]\nqueue_timeout = \"{queue_timeout}\"\n",
        placeholder.local_addr().unwrap()
    ))
}

/// The proxy's configuration with group "api" autoscaled (instances reported by someone else:
/// `children`) and `backends` as its instances.
fn scaled(proxy: &Proxy, backends: &[SocketAddr]) -> Config {
    let mut config = Config::clone(&proxy.control().config());
    let group = &mut config.upstreams[0];
    group.backends = backends
        .iter()
        .map(|&address| BackendConfig {
            address,
            weight: NonZeroU32::MIN,
            backup: false,
            drain: false,
            canary: false,
        })
        .collect();
    group.discover = Some(DiscoverConfig {
        systemd: "api@*.service".to_owned(),
        bus: SystemdBus::System,
        address: AddressSource::Socket,
        resync: Duration::from_secs(30),
        resources: Default::default(),
        children: true,
    });
    group.autoscale = Some(AutoscaleConfig {
        min: 0,
        max: 2,
        metric: AutoscaleMetric::InFlight,
        target: 10.0,
        tolerance: 0.1,
        scale_up_window: Duration::ZERO,
        scale_down_window: Duration::from_secs(300),
        max_step: 1,
        panic_threshold: 2.0,
        panic_window: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(30),
    });
    config
}

/// The proxy-wide `waiting_for_instance` of group "api", as the control side sums it.
fn waiting(proxy: &Proxy) -> u64 {
    proxy.control().aggregate().upstreams[0]
        .counts
        .waiting_for_instance
}

/// A backend that answers every request `ok` and closes.
fn backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    addr
}

fn a_waiting_request_is_served_by_the_instance_that_appears(driver: &str) {
    let proxy = start(driver, "10s");
    proxy.control().reload(scaled(&proxy, &[])).expect("reload");
    let addr = proxy.addr;
    let request = std::thread::spawn(move || {
        let started = Instant::now();
        (client::get(addr, "/"), started)
    });
    common::wait_until(Duration::from_secs(5), "the request to wait", || {
        waiting(&proxy) == 1
    });
    let instance = backend();
    let routed = Instant::now();
    proxy
        .control()
        .reload(scaled(&proxy, &[instance]))
        .expect("reload");
    let (response, started) = request.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "ok");
    eprintln!(
        "first request after scale from zero: {:?} in all, {:?} after the instance was routed",
        started.elapsed(),
        routed.elapsed()
    );
    common::wait_until(Duration::from_secs(5), "the gauge to go back", || {
        waiting(&proxy) == 0
    });
}

fn nothing_appearing_is_a_503_after_the_queue_timeout(driver: &str) {
    let proxy = start(driver, "300ms");
    proxy.control().reload(scaled(&proxy, &[])).expect("reload");
    let started = Instant::now();
    let response = client::get(proxy.addr, "/");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(
        response.text().contains(
            "upstream \"api\" has no instance: scaled to zero and none became ready within 300ms"
        ),
        "{}",
        response.text()
    );
    common::wait_until(Duration::from_secs(5), "the gauge to go back", || {
        waiting(&proxy) == 0
    });
}
