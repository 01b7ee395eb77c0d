//! Health end to end with real demo-API processes: active probes take an instance whose
//! readiness fails out of rotation after `fall` probes and back after `rise` (each flip logged
//! once, with its reason); a kill -9 under load fails no request and the restarted instance
//! returns; the circuit breaker ejects a backend answering 5xx, trials it half-open and readmits
//! it; backups serve only while no primary can; draining backends finish what they have and get
//! nothing new; and with no usable backend the answer is 503 saying why.

mod common;

use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::demo::DemoApi;
use common::{logs, on_both_drivers, wait_until, Proxy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_drivers!(
    a_failing_readiness_probe_takes_an_instance_out_after_fall_and_back_after_rise,
    killing_one_of_three_under_load_fails_nothing_and_the_restarted_one_returns,
    a_backend_answering_5xx_is_ejected_trialled_half_open_and_readmitted,
    backups_serve_only_while_no_primary_can,
    a_draining_backend_finishes_its_request_and_gets_no_new_ones,
    no_usable_backend_is_503_saying_why,
);

const WAIT: Duration = Duration::from_secs(20);

fn proxy_config(driver: &str, workers: usize, backends: &[String], group: &str) -> String {
    common::group_config(driver, workers, backends, group)
}

fn quoted(apis: &[&DemoApi]) -> Vec<String> {
    apis.iter().map(|a| format!("\"{}\"", a.addr)).collect()
}

/// Who answered each of `n` sequential keep-alive GETs (`X-Instance`, or the status when the
/// proxy answered itself).
fn answers(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut conn = Conn::open(addr);
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        let response = conn.read_response("GET").expect("a response");
        match response.header("x-instance") {
            Some(instance) => seen.push(instance.to_owned()),
            None => {
                seen.push(response.status.to_string());
                conn = Conn::open(addr);
            }
        }
    }
    seen
}

fn all_from(answers: &[String], instance: &str) -> bool {
    answers.iter().all(|a| a == instance)
}

fn a_failing_readiness_probe_takes_an_instance_out_after_fall_and_back_after_rise(driver: &str) {
    let logs = logs::capture();
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let proxy = Proxy::start(&proxy_config(
        driver,
        2,
        &quoted(&[&apis[0], &apis[1]]),
        "[upstream.api.health]\ninterval = \"50ms\"\nfall = 3\nrise = 2\n",
    ));
    let flaky = apis[1].addr.to_string();
    wait_until(WAIT, "both instances serving", || {
        answers(proxy.addr, 10).contains(&"2".to_owned())
    });

    let probes_before = apis[1].ready_probes();
    apis[1].set_ready(false);
    wait_until(WAIT, "instance 2 out of rotation", || {
        all_from(&answers(proxy.addr, 20), "1")
    });
    let failed_probes = apis[1].ready_probes() - probes_before;
    assert!(
        failed_probes >= 3,
        "out after {failed_probes} probes (fall = 3)"
    );
    let down = logs.lines_with(&[
        &flaky,
        "is DOWN after 3 failed probes: HTTP 503 from /health/ready (expected 200-399)",
    ]);
    assert_eq!(down.len(), 1, "{down:#?}");

    let probes_before = apis[1].ready_probes();
    apis[1].set_ready(true);
    wait_until(WAIT, "instance 2 back in rotation", || {
        answers(proxy.addr, 10).contains(&"2".to_owned())
    });
    let passed_probes = apis[1].ready_probes() - probes_before;
    assert!(
        passed_probes >= 2,
        "back after {passed_probes} probes (rise = 2)"
    );
    assert_eq!(
        logs.lines_with(&[&flaky, "is UP after 2 passing probes"])
            .len(),
        1
    );
    // More failing probes came and went while it was down: still one line per flip.
    assert_eq!(logs.lines_with(&[&flaky, "is DOWN"]).len(), 1);
}

fn killing_one_of_three_under_load_fails_nothing_and_the_restarted_one_returns(driver: &str) {
    let logs = logs::capture();
    let mut apis: Vec<DemoApi> = (1..=3).map(DemoApi::start).collect();
    let victim = apis[1].addr;
    let proxy = Proxy::start(&proxy_config(
        driver,
        2,
        &quoted(&apis.iter().collect::<Vec<_>>()),
        "slow_start = \"1s\"\n[upstream.api.health]\ninterval = \"100ms\"\nfall = 2\nrise = 2\n",
    ));
    let addr = proxy.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let served: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, done, served) = (stop.clone(), done.clone(), served.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut conn = Conn::open(addr);
                while !stop.load(Ordering::SeqCst) {
                    if i % 2 == 1 {
                        conn = Conn::open(addr);
                    }
                    conn.send(b"GET /delay?ms=2 HTTP/1.1\r\nHost: test\r\n\r\n");
                    match conn.read_response("GET") {
                        Ok(r) if r.status == 200 => {
                            let instance = r.header("x-instance").unwrap_or("?").to_owned();
                            *served.lock().unwrap().entry(instance).or_default() += 1;
                        }
                        Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                        Err(e) => {
                            failures.push(e.to_string());
                            conn = Conn::open(addr);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    let served_by = |instance: &str| served.lock().unwrap().get(instance).copied().unwrap_or(0);

    wait_until(WAIT, "100 requests before the kill", || {
        done.load(Ordering::SeqCst) >= 100
    });
    apis[1].kill9();
    let killed_at = done.load(Ordering::SeqCst);
    wait_until(WAIT, "the probes to see it down", || {
        !logs
            .lines_with(&[&victim.to_string(), "is DOWN"])
            .is_empty()
    });
    wait_until(WAIT, "300 requests after the kill", || {
        done.load(Ordering::SeqCst) >= killed_at + 300
    });

    apis[1] = DemoApi::start_on(2, victim);
    let before_return = served_by("2");
    wait_until(WAIT, "the restarted instance to serve again", || {
        served_by("2") >= before_return + 20
    });
    stop.store(true, Ordering::SeqCst);
    common::assert_no_failed_requests(clients);
    assert_eq!(
        logs.lines_with(&[&victim.to_string(), "is UP after 2 passing probes"])
            .len(),
        1
    );
}

fn a_backend_answering_5xx_is_ejected_trialled_half_open_and_readmitted(driver: &str) {
    let logs = logs::capture();
    let apis = [DemoApi::start(1), DemoApi::start(2)];
    let proxy = Proxy::start(&proxy_config(
        driver,
        1,
        &quoted(&[&apis[0], &apis[1]]),
        "[upstream.api.outlier]\nconsecutive_failures = 3\nbase_ejection_time = \"300ms\"\n\
         max_ejection_time = \"2s\"\n",
    ));
    let sick = apis[1].addr.to_string();
    let lines = |what: &str| logs.lines_with(&[&sick, what]).len();
    let mut statuses: Vec<(String, u16)> = Vec::new();
    let mut get = || {
        let response = client::get(proxy.addr, "/");
        let instance = response.header("x-instance").unwrap_or("?").to_owned();
        statuses.push((instance.clone(), response.status));
        instance
    };

    apis[1].fail_with(Some(503));
    wait_until(WAIT, "the failing backend to be ejected", || {
        get();
        lines("ejected for 300ms after 3 consecutive failures (last: answered 503)") == 1
    });
    // Ejected: nothing goes to it until the ejection ends; then exactly one trial, which fails.
    wait_until(WAIT, "a failed half-open trial", || {
        if get() == "2" {
            assert!(
                lines("is half-open") >= 1,
                "a request reached it while ejected"
            );
        }
        lines("ejected for 600ms after a failed half-open trial") == 1
    });
    apis[1].fail_with(None);
    wait_until(WAIT, "readmission after a successful trial", || {
        get();
        lines("readmitted: the half-open trial request succeeded") == 1
    });
    let after: Vec<String> = (0..10).map(|_| get()).collect();
    assert!(
        after.contains(&"1".to_owned()) && after.contains(&"2".to_owned()),
        "{after:?}"
    );

    // Every 503 came from the sick one: three to eject it, one per failed trial.
    let failed_trials = logs
        .lines_with(&[&sick, "after a failed half-open trial"])
        .len();
    let errors: Vec<&(String, u16)> = statuses.iter().filter(|(_, s)| *s != 200).collect();
    assert!(
        errors.iter().all(|(i, s)| i == "2" && *s == 503),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 3 + failed_trials, "{statuses:?}");
}

fn backups_serve_only_while_no_primary_can(driver: &str) {
    let (primary, backup) = (DemoApi::start(1), DemoApi::start(2));
    let backends = [
        format!("\"{}\"", primary.addr),
        format!("{{ address = \"{}\", backup = true }}", backup.addr),
    ];
    let proxy = Proxy::start(&proxy_config(
        driver,
        2,
        &backends,
        "[upstream.api.health]\ninterval = \"50ms\"\nfall = 1\nrise = 1\n",
    ));
    assert!(all_from(&answers(proxy.addr, 20), "1"));
    primary.set_ready(false);
    wait_until(WAIT, "the backup to take over", || {
        all_from(&answers(proxy.addr, 10), "2")
    });
    primary.set_ready(true);
    wait_until(WAIT, "the primary to take back", || {
        all_from(&answers(proxy.addr, 20), "1")
    });
}

fn a_draining_backend_finishes_its_request_and_gets_no_new_ones(driver: &str) {
    let draining = RawBackend::start(Reply::Delayed(
        Duration::from_millis(300),
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec(),
    ));
    let api = DemoApi::start(1);
    let toml = |drain: bool| {
        let backends = [
            format!("{{ address = \"{}\", drain = {drain} }}", draining.addr),
            format!("\"{}\"", api.addr),
        ];
        proxy_config(driver, 1, &backends, "")
    };
    let proxy = Proxy::start(&toml(false));
    // Round robin on one worker starts with the first backend.
    let addr = proxy.addr;
    let in_flight = std::thread::spawn(move || client::get(addr, "/slow"));
    wait_until(WAIT, "the request to reach the backend", || {
        draining.requests().len() == 1
    });
    proxy.reload(&toml(true)).expect("reload");

    let response = in_flight.join().unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));
    assert!(all_from(&answers(proxy.addr, 20), "1"));
    assert_eq!(draining.requests().len(), 1);
    // Its connection was not pooled again: the proxy closed it.
    draining.wait_closed(1);
}

fn no_usable_backend_is_503_saying_why(driver: &str) {
    let api = DemoApi::start(1);
    let toml = |drain: bool| {
        proxy_config(
            driver,
            2,
            &[format!("{{ address = \"{}\", drain = {drain} }}", api.addr)],
            "[upstream.api.health]\ninterval = \"50ms\"\nfall = 1\n",
        )
    };
    let proxy = Proxy::start(&toml(false));
    api.set_ready(false);
    let down =
        "503 Service Unavailable: upstream \"api\" has no usable backend (1 backend: 1 down)";
    wait_until(WAIT, "503 for a down backend", || {
        client::get(proxy.addr, "/").text().starts_with(down)
    });
    proxy.reload(&toml(true)).expect("reload");
    let response = client::get(proxy.addr, "/");
    assert_eq!(response.status, 503);
    assert!(
        response
            .text()
            .contains("has no usable backend (1 backend: 1 draining)"),
        "{}",
        response.text()
    );
}
