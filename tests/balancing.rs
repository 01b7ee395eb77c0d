//! Balancing algorithms end to end, through real proxies to real demo-API processes (and a raw
//! backend that holds a request): least connections and power-of-two choices send nothing to a
//! backend busy with a slow request while others are idle, random
//! spreads evenly, slow start ramps a returning backend up, and Maglev routes each key alike from
//! two independent lbproxy processes and moves few keys when a backend is removed.
//!
//! Shares are checked with tolerances many standard deviations wide (or exactly, where the
//! algorithm is deterministic on one worker), so they cannot flake.

mod common;

use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::demo::DemoApi;
use common::process::LbproxyProcess;
use common::{on_both_drivers, wait_until, Proxy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

on_both_drivers!(
    least_conn_sends_nothing_to_a_backend_busy_with_a_slow_request,
    p2c_avoids_a_backend_busy_with_a_slow_request,
    random_spreads_evenly,
    slow_start_ramps_a_returning_backend_up,
    maglev_routes_each_key_alike_from_two_proxy_processes,
    maglev_moves_only_the_removed_backends_keys_on_reload,
);

fn proxy_config(driver: &str, workers: usize, backends: &[String], group: &str) -> String {
    common::group_config(driver, workers, backends, group)
}

fn quoted(addrs: &[SocketAddr]) -> Vec<String> {
    addrs.iter().map(|a| format!("\"{a}\"")).collect()
}

/// Which backend answered: the demo API's `X-Instance`, or "slow" for the raw slow backend.
fn who(response: &client::Response) -> String {
    response.header("x-instance").unwrap_or("slow").to_owned()
}

/// `clients` threads each send `per_client` keep-alive GETs; returns who answered each.
fn concurrent_gets(addr: SocketAddr, clients: usize, per_client: usize) -> HashMap<String, usize> {
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut seen = Vec::new();
                for _ in 0..per_client {
                    conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
                    let response = conn.read_response("GET").expect("a response");
                    assert_eq!(response.status, 200, "{}", response.text());
                    seen.push(who(&response));
                }
                seen
            })
        })
        .collect();
    let mut counts = HashMap::new();
    for thread in threads {
        for name in thread.join().unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

/// Loads the slow (silent) backend with one request that stays in flight: GETs, each on its
/// own connection, until one lands there. Returns the thread holding it (it ends when the
/// connection does; nothing waits for it).
fn hold_one_request_on(slow: &RawBackend, proxy: SocketAddr) -> std::thread::JoinHandle<()> {
    let holder = std::thread::spawn(move || loop {
        match client::try_request(
            proxy,
            b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        ) {
            Ok(response) if response.status == 200 => continue,
            _ => return,
        }
    });
    wait_until(
        Duration::from_secs(20),
        "a request in flight at the slow backend",
        || slow.requests().len() == 1,
    );
    holder
}

/// The slow backend answers nothing (until the proxy gives up on it at shutdown): whatever the
/// machine's speed, its request stays in flight for the whole test.
fn slow_backend() -> RawBackend {
    RawBackend::start(Reply::Silent)
}

const HOLD: &str = "[timeouts]\nupstream_response = \"120s\"\n";

fn least_conn_sends_nothing_to_a_backend_busy_with_a_slow_request(driver: &str) {
    let fast: Vec<DemoApi> = (1..=2).map(DemoApi::start).collect();
    let slow = slow_backend();
    let proxy = Proxy::start(
        &proxy_config(
            driver,
            1,
            &quoted(&[slow.addr, fast[0].addr, fast[1].addr]),
            &format!("balance = \"least_conn\"\n{HOLD}"),
        )
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"0s\""),
    );
    let _holder = hold_one_request_on(&slow, proxy.addr);
    // One request in flight there, none at the others: every new request goes elsewhere, and
    // the two idle ones share them (ties rotate).
    let counts = concurrent_gets(proxy.addr, 1, 60);
    assert_eq!(slow.requests().len(), 1, "{counts:?}");
    assert_eq!((counts.get("1"), counts.get("2")), (Some(&30), Some(&30)));
}

fn p2c_avoids_a_backend_busy_with_a_slow_request(driver: &str) {
    let fast: Vec<DemoApi> = (1..=2).map(DemoApi::start).collect();
    let slow = slow_backend();
    let proxy = Proxy::start(
        &proxy_config(
            driver,
            1,
            &quoted(&[fast[0].addr, slow.addr, fast[1].addr]),
            &format!("balance = \"p2c\"\n{HOLD}"),
        )
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"0s\""),
    );
    let _holder = hold_one_request_on(&slow, proxy.addr);
    // Whenever the busy backend is one of the two random picks, the other (idle) one wins.
    let counts = concurrent_gets(proxy.addr, 1, 90);
    assert_eq!(slow.requests().len(), 1, "{counts:?}");
    for instance in ["1", "2"] {
        // Uniformly random between the two otherwise: 45 ± 4.7; 25 is over 4 deviations.
        let n = counts.get(instance).copied().unwrap_or(0);
        assert!((25..=65).contains(&n), "{counts:?}");
    }
}

fn random_spreads_evenly(driver: &str) {
    let apis: Vec<DemoApi> = (1..=3).map(DemoApi::start).collect();
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&proxy_config(
        driver,
        2,
        &quoted(&addrs),
        "balance = \"random\"",
    ));
    let counts = concurrent_gets(proxy.addr, 3, 300);
    // 900 draws: 300 each on average, standard deviation about 14; ±100 is over 7 of them.
    for instance in ["1", "2", "3"] {
        let n = counts.get(instance).copied().unwrap_or(0);
        assert!((200..=400).contains(&n), "instance {instance}: {counts:?}");
    }
}

/// Who answered each of `n` sequential keep-alive GETs.
fn sequential(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut conn = Conn::open(addr);
    (0..n)
        .map(|_| {
            conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
            who(&conn.read_response("GET").expect("a response"))
        })
        .collect()
}

fn share_of(answers: &[String], instance: &str) -> f64 {
    answers.iter().filter(|a| *a == instance).count() as f64 / answers.len() as f64
}

fn slow_start_ramps_a_returning_backend_up(driver: &str) {
    let apis: Vec<DemoApi> = (1..=2).map(DemoApi::start).collect();
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let proxy = Proxy::start(&proxy_config(
        driver,
        1,
        &quoted(&addrs),
        "balance = \"weighted\"\nslow_start = \"10s\"\n\
         [upstream.api.health]\ninterval = \"50ms\"\nrise = 1\nfall = 1\n",
    ));
    assert_eq!(share_of(&sequential(proxy.addr, 100), "2"), 0.5);

    apis[1].set_ready(false);
    wait_until(Duration::from_secs(10), "instance 2 to leave", || {
        share_of(&sequential(proxy.addr, 10), "2") == 0.0
    });
    apis[1].set_ready(true);
    wait_until(Duration::from_secs(10), "instance 2 to return", || {
        share_of(&sequential(proxy.addr, 10), "2") > 0.0
    });
    // Just back: 10% of its weight, growing to 100% over 10 s. Even 5 s into the ramp (on a
    // very slow machine) it would get at most a third of the requests; at once, under a fifth.
    let early = share_of(&sequential(proxy.addr, 100), "2");
    assert!(early < 0.35, "a returning backend got {early} at once");
    wait_until(
        Duration::from_secs(40),
        "instance 2 to get its full share",
        || share_of(&sequential(proxy.addr, 100), "2") == 0.5,
    );
}

fn maglev_group(key: &str) -> String {
    format!("balance = \"maglev\"\nhash_key = \"{key}\"")
}

/// The instance that answers `GET /` for user `user`, sent as `X-User`.
fn instance_for_user(addr: SocketAddr, user: usize) -> String {
    let raw =
        format!("GET / HTTP/1.1\r\nHost: test\r\nX-User: user-{user}\r\nConnection: close\r\n\r\n");
    let response = client::request(addr, raw.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    who(&response)
}

fn maglev_routes_each_key_alike_from_two_proxy_processes(driver: &str) {
    let apis: Vec<DemoApi> = (1..=3).map(DemoApi::start).collect();
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    // The same backends, listed in a different order: the table does not depend on it.
    let mut reversed = addrs.clone();
    reversed.reverse();
    let start = |backends: &[SocketAddr]| {
        let toml = proxy_config(driver, 2, &quoted(backends), &maglev_group("header:X-User"));
        LbproxyProcess::start(&toml)
    };
    let (first, second) = (start(&addrs), start(&reversed));
    let mut spread = HashMap::new();
    for user in 0..90 {
        let a = instance_for_user(first.addr, user);
        let b = instance_for_user(second.addr, user);
        assert_eq!(
            a, b,
            "user-{user} went to instance {a} through one proxy and {b} through the other"
        );
        // Every request for the same user lands on the same instance, whichever worker takes it.
        assert_eq!(instance_for_user(first.addr, user), a);
        *spread.entry(a).or_insert(0) += 1;
    }
    // 90 keys over three equal backends: every backend owns some.
    assert_eq!(spread.len(), 3, "{spread:?}");
}

fn maglev_moves_only_the_removed_backends_keys_on_reload(driver: &str) {
    let apis: Vec<DemoApi> = (1..=4).map(DemoApi::start).collect();
    let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
    let group = maglev_group("header:X-User");
    let proxy = Proxy::start(&proxy_config(driver, 2, &quoted(&addrs), &group));
    let users = 200;
    let before: Vec<String> = (0..users)
        .map(|u| instance_for_user(proxy.addr, u))
        .collect();
    proxy
        .reload(&proxy_config(driver, 2, &quoted(&addrs[..3]), &group))
        .expect("reload");
    let after: Vec<String> = (0..users)
        .map(|u| instance_for_user(proxy.addr, u))
        .collect();

    let on_removed = before.iter().filter(|i| *i == "4").count();
    let moved_others = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| *b != "4" && b != a)
        .count();
    assert!(after.iter().all(|i| i != "4"));
    assert!(
        (20..=80).contains(&on_removed),
        "instance 4 had {on_removed} of {users} keys"
    );
    // Removing one of 4 moves its quarter; Maglev's rebuild moves only a few others.
    assert!(
        moved_others <= users / 20,
        "{moved_others} keys of the remaining backends moved"
    );
}
