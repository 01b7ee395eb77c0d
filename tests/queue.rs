//! `max_connections` and the queue: a backend never has more requests in flight than its limit;
//! the others wait at the proxy and are served in turn, or get 503 after `queue_timeout`.

mod common;

use common::{client, on_both_drivers, Proxy};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

on_both_drivers!(
    a_backend_never_gets_more_than_its_max_connections_and_the_rest_queue,
    a_request_that_waits_past_the_queue_timeout_gets_503,
);

/// A backend that answers every request after `delay` and records how many it was answering at
/// once, at most.
struct CountingBackend {
    addr: SocketAddr,
    max_concurrent: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

fn counting_backend(delay: Duration) -> CountingBackend {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let max_concurrent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (max, done) = (max_concurrent.clone(), answered.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (now, max, done) = (now.clone(), max.clone(), done.clone());
            std::thread::spawn(move || {
                let mut tcp = tcp;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(in_flight, Ordering::SeqCst);
                        std::thread::sleep(delay);
                        now.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                        if tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    CountingBackend {
        addr,
        max_concurrent,
        answered,
    }
}

fn config(driver: &str, backend: SocketAddr, extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{backend}\"]\n{extra}\n"
    )
}

fn a_backend_never_gets_more_than_its_max_connections_and_the_rest_queue(driver: &str) {
    let backend = counting_backend(Duration::from_millis(100));
    let proxy = Proxy::start(&config(driver, backend.addr, "max_connections = 2\n"));
    let addr = proxy.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || client::get(addr, "/").status))
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses, [200; 8]);
    assert_eq!(backend.answered.load(Ordering::SeqCst), 8);
    assert_eq!(backend.max_concurrent.load(Ordering::SeqCst), 2);
}

fn a_request_that_waits_past_the_queue_timeout_gets_503(driver: &str) {
    let backend = counting_backend(Duration::from_millis(1500));
    let proxy = Proxy::start(&config(
        driver,
        backend.addr,
        "max_connections = 1\nqueue_timeout = \"200ms\"\n",
    ));
    let addr = proxy.addr;
    let first = std::thread::spawn(move || client::get(addr, "/").status);
    common::wait_until(
        Duration::from_secs(5),
        "the first request to be in flight",
        || backend.max_concurrent.load(Ordering::SeqCst) == 1,
    );
    let queued = client::get(proxy.addr, "/");
    assert_eq!(queued.status, 503, "{}", queued.text());
    assert!(
        queued.text().contains(
            "upstream \"api\": every usable backend has its max_connections (1) in flight; \
             waited 200ms in the queue"
        ),
        "{}",
        queued.text()
    );
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(backend.answered.load(Ordering::SeqCst), 1);
}

/// The proxy runs out of descriptors (its open-files limit is 64): the client whose request
/// finds no descriptor left for the upstream connection gets 503 naming the proxy's own limit —
/// not a 502 blaming the backends — and no backend is held responsible: with outlier detection
/// ejecting after a single failure, both backends still get requests afterwards.
#[test]
fn running_out_of_descriptors_is_503_and_not_held_against_the_backend() {
    let backends = [
        counting_backend(Duration::ZERO),
        counting_backend(Duration::ZERO),
    ];
    let toml = format!(
        "[runtime]\nworkers = 1\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
         [upstream.api]\nbackends = [\"{}\", \"{}\"]\n\
         [upstream.api.pool]\nmax_idle_per_backend = 0\n\
         [upstream.api.outlier]\nconsecutive_failures = 1\nmax_ejection_percent = 100\n",
        backends[0].addr, backends[1].addr
    );
    let proxy = common::process::LbproxyProcess::start_with_fd_limit(&toml, Some(64));
    let addr = proxy.addr;
    // Each kept-alive client holds one descriptor of the proxy (upstream connections are not
    // pooled); the one that takes the last descriptor cannot get an upstream connection.
    let mut kept = Vec::new();
    let refused = loop {
        assert!(kept.len() < 64, "64 clients and no 503");
        let mut conn = client::Conn::open(addr);
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = conn.read_response("GET").expect("an answer");
        if response.status != 200 {
            break response;
        }
        kept.push(conn);
    };
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("the proxy is out of local resources")
            && refused.text().contains("LimitNOFILE"),
        "{}",
        refused.text()
    );
    drop(kept);
    let before: Vec<usize> = backends
        .iter()
        .map(|b| b.answered.load(Ordering::SeqCst))
        .collect();
    for _ in 0..10 {
        // Waits in the listen queue if the proxy has not seen the closes yet.
        let response = client::request(
            addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.status, 200, "{}", response.text());
    }
    for (backend, before) in backends.iter().zip(before) {
        assert!(
            backend.answered.load(Ordering::SeqCst) > before,
            "a backend got no request after the shortage: it was ejected for the proxy's fault"
        );
    }
    drop(proxy);
}
