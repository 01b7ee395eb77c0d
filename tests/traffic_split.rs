//! A deployment's traffic split end to end, on real sockets: a proxy whose group has a canary
//! backend and a split by cookie, and raw backends that say which side they are on. The split
//! and the canary flag are set on the loaded configuration before the proxy starts, as the
//! deployment controller sets them at runtime (the file cannot set them).
//!
//! A client known by its cookie lands on the same side every time, whatever connection it comes
//! on; a client without the cookie sticks by its address; a reload from the file (which has
//! neither the split nor the canary flag) keeps the running deployment; with the canary drained,
//! its clients are served by the stable backends and the fallbacks are counted.

mod common;

use common::backend::{RawBackend, Reply};
use common::{admin, client, on_both_drivers, wait_until, Proxy};
use lbproxy::config::{HashKey, TrafficSplit};
use std::net::SocketAddr;
use std::time::Duration;

on_both_drivers!(a_cookie_pins_a_client_to_its_side_through_a_reload_until_the_canary_drains);

/// A backend that answers every request 200 with `X-Side: side`.
fn backend(side: &str) -> RawBackend {
    let answer = format!("HTTP/1.1 200 OK\r\nX-Side: {side}\r\nContent-Length: 0\r\n\r\n");
    RawBackend::start(Reply::Fixed(answer.into_bytes()))
}

/// The side that answers a GET with cookie `session` (none: no `Cookie` field), on a fresh
/// connection.
fn side(proxy: SocketAddr, session: Option<&str>) -> String {
    let cookie = session.map_or(String::new(), |s| {
        format!("Cookie: theme=dark; session={s}\r\n")
    });
    let raw = format!("GET / HTTP/1.1\r\nHost: test\r\n{cookie}Connection: close\r\n\r\n");
    let response = client::request(proxy, raw.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    response.header("x-side").expect("X-Side").to_owned()
}

/// `lbproxy_upstream_split_fallbacks_total` of group `api`, from `/metrics`.
fn fallbacks(admin_addr: SocketAddr) -> u64 {
    let text = admin::get(admin_addr, "/metrics", None).text();
    text.lines()
        .find(|l| l.starts_with("lbproxy_upstream_split_fallbacks_total{upstream=\"api\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn a_cookie_pins_a_client_to_its_side_through_a_reload_until_the_canary_drains(driver: &str) {
    let stable = [backend("stable"), backend("stable")];
    let canary = backend("canary");
    let toml = common::config(driver, &[stable[0].addr, stable[1].addr, canary.addr], "");
    let proxy = Proxy::start_adjusted(&toml, |config| {
        let api = &mut config.upstreams[0];
        api.backends[2].canary = true;
        api.split = TrafficSplit {
            weight_bp: 5000,
            key: HashKey::Cookie("session".to_owned()),
        };
    });

    // 40 users, half of them on the canary: P(all on one side) = 2^-39.
    let users: Vec<String> = (0..40).map(|n| format!("user-{n}")).collect();
    let sides: Vec<String> = users.iter().map(|u| side(proxy.addr, Some(u))).collect();
    assert!(sides.iter().any(|s| s == "canary"), "{sides:?}");
    assert!(sides.iter().any(|s| s == "stable"), "{sides:?}");
    let same_sides = |when: &str| {
        for (user, was) in users.iter().zip(&sides) {
            assert_eq!(side(proxy.addr, Some(user)), *was, "{user} moved {when}");
        }
    };
    same_sides("on the next request");
    let by_address = side(proxy.addr, None);
    for _ in 0..5 {
        assert_eq!(side(proxy.addr, None), by_address, "no cookie: by address");
    }

    // SIGHUP: the file has no split and no canary; the running deployment's stay.
    proxy.reload(&toml).expect("the reload applies");
    same_sides("after a reload");
    assert_eq!(fallbacks(proxy.admin_addr()), 0);

    // The canary drains: its clients go to the stable backends rather than fail.
    let drain = format!("/api/backends/api/{}/drain", canary.addr);
    let drained = admin::request(proxy.admin_addr(), "POST", &drain, None, "");
    assert_eq!(drained.status, 200, "{}", drained.text());
    let canary_users: Vec<&String> = users
        .iter()
        .zip(&sides)
        .filter(|(_, s)| *s == "canary")
        .map(|(u, _)| u)
        .collect();
    for user in &canary_users {
        assert_eq!(side(proxy.addr, Some(user)), "stable", "{user}");
    }
    wait_until(
        Duration::from_secs(5),
        "the workers to publish the fallbacks",
        || fallbacks(proxy.admin_addr()) == canary_users.len() as u64,
    );
}
