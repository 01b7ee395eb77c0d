//! The access log: with `[log] access = true` every request the proxy answers — relayed or its
//! own error — gives one line with the request id, trace id, route, status, backend, bytes and
//! retries, and every connection of a tcp listener one with its bytes each way and how it ended;
//! without it, none. Captured from the process-wide tracing subscriber this test binary
//! installs; the JSON format (`[log] format = "json"`) from a real `lbproxy serve`'s stderr,
//! together with the W3C `traceparent` the backend received.

mod common;

use common::backend::{RawBackend, Reply};
use common::tcp::{connect, tcp_config, EchoServer};
use common::{client, config, refusing_port, wait_until, Proxy};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once for this test binary (tests here run one per process
/// under nextest, but must not depend on it).
fn captured() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("lbproxy::access=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        logs
    })
}

fn lines_with(logs: &Captured, needle: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_answered_request_gets_one_line_with_its_outcome() {
    let logs = captured();
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ));
    let refused = refusing_port();
    let proxy = Proxy::start(&config(
        "legacy",
        &[refused, backend.addr],
        "[log]\naccess = true\n[upstream.api.pool]\nmax_idle_per_backend = 0\n",
    ));

    // Sent as the request id, so the line can be found; the refused backend may come first in
    // rotation, which then shows as a retry.
    let ok = client::request(
        proxy.addr,
        b"POST /submit HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-ok-1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(ok.status, 200);
    wait_until(Duration::from_secs(5), "the access log line", || {
        !lines_with(logs, "req-ok-1").is_empty()
    });
    let line = &lines_with(logs, "req-ok-1")[0];
    for field in [
        "status=200",
        &format!("backend={}", backend.addr),
        "bytes_received=3",
        "request=POST /submit",
        "listener=http",
        "route=/",
        "upstream=api",
    ] {
        assert!(line.contains(field), "missing {field} in: {line}");
    }
    assert_eq!(
        field(line, "bytes_sent"),
        wire_len("HTTP/1.1 200 OK\r\n", &ok).to_string(),
        "{line}"
    );
    let retries: u32 = field(line, "retries").parse().unwrap();
    assert!(retries <= 1, "{line}");
    let trace_id = field(line, "trace_id");
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );

    // The proxy's own error: every backend refused.
    drop(backend);
    let proxy_down = Proxy::start(&config(
        "legacy",
        &[refusing_port()],
        "[log]\naccess = true\n",
    ));
    let failed = client::request(
        proxy_down.addr,
        b"GET /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-502-1\r\n\r\n",
    );
    assert_eq!(failed.status, 502);
    wait_until(Duration::from_secs(5), "the 502 line", || {
        !lines_with(logs, "req-502-1").is_empty()
    });
    let line = &lines_with(logs, "req-502-1")[0];
    assert!(line.contains("status=502"), "{line}");
    assert_eq!(
        field(line, "bytes_sent"),
        wire_len("HTTP/1.1 502 Bad Gateway\r\n", &failed).to_string(),
        "{line}"
    );
}

#[test]
fn no_line_when_the_access_log_is_off() {
    let logs = captured();
    let backend = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[backend.addr], ""));
    let response = client::request(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-quiet-1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 204);
    // The response is complete, so the line would have been written before it was sent.
    drop(proxy);
    assert!(lines_with(logs, "req-quiet-1").is_empty());
}

#[test]
fn json_lines_carry_the_request_and_trace_ids_the_backend_got() {
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lbproxy.toml");
    std::fs::write(
        &path,
        format!(
            "[runtime]\nworkers = 1\n[log]\naccess = true\nformat = \"json\"\n\
             [admin]\naddress = \"127.0.0.1:0\"\n\
             [listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"{}\"]\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    let mut proxy = common::isolate_state(&mut proxy, &dir.path().join("state"))
        .args(["serve", "-c"])
        .arg(&path)
        .env("LBPROXY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stderr = proxy.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // The address the kernel gave the listener, from the proxy's own log (no port picked
    // beforehand that another test could take first).
    let listen: std::net::SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the proxy logs its listener");
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        let message = entry["message"].as_str().unwrap_or_default();
        if let Some(url) = message.strip_prefix("listener http: http://") {
            break url.trim_end_matches('/').parse().unwrap();
        }
    };
    wait_until(Duration::from_secs(20), "lbproxy serve to listen", || {
        std::net::TcpStream::connect(listen).is_ok()
    });

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = client::request(
        listen,
        format!(
            "GET /traced HTTP/1.1\r\nHost: t\r\nX-Request-Id: json-1\r\ntraceparent: {incoming}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(traced.status, 200);
    let fresh = client::request(
        listen,
        b"GET /fresh HTTP/1.1\r\nHost: t\r\nX-Request-Id: json-2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(fresh.status, 200);
    let received = backend.unmasked_requests();
    let sent_trace = |request: &[u8]| {
        let text = String::from_utf8_lossy(request).into_owned();
        let value = text
            .split("\r\ntraceparent: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .unwrap_or_else(|| panic!("no traceparent forwarded: {text}"))
            .to_owned();
        assert_eq!(
            text.matches("traceparent").count(),
            1,
            "exactly one: {text}"
        );
        value
    };
    assert_eq!(
        sent_trace(&received[0]),
        incoming,
        "a client's trace goes on unchanged"
    );
    let started = sent_trace(&received[1]);
    let started = lbproxy::http::Traceparent::parse(started.as_bytes())
        .unwrap_or_else(|| panic!("the proxy started an invalid trace: {started}"));

    let mut found = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while found.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("the two access log lines");
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            panic!("not a JSON line: {line}");
        };
        if entry["target"] == "lbproxy::access" {
            found.insert(entry["request_id"].as_str().unwrap().to_owned(), entry);
        }
    }
    let first = &found["json-1"];
    assert_eq!(
        first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{first}"
    );
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["backend"], backend.addr.to_string(), "{first}");
    assert_eq!(first["listener"], "http", "{first}");
    assert_eq!(first["route"], "/", "{first}");
    assert_eq!(first["upstream"], "api", "{first}");
    assert_eq!(first["request"], "GET /traced", "{first}");
    assert_eq!(first["retries"], 0, "{first}");
    assert!(first["duration_us"].is_u64(), "{first}");
    assert!(first["bytes_sent"].as_u64().unwrap() > 0, "{first}");
    assert!(
        first["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{first}"
    );
    assert_eq!(
        found["json-2"]["trace_id"],
        started.trace_id(),
        "the trace the proxy started"
    );

    // SAFETY: SIGTERM to the child we spawned.
    unsafe { libc::kill(proxy.id() as libc::pid_t, libc::SIGTERM) };
    let status = proxy.wait().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "{status}; its last log lines: {rest:#?}");
}

/// `name=value` from a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    line[start..].split(' ').next().unwrap()
}

/// Bytes of a response as it was on the wire: status line, `Name: value` lines, the empty line,
/// the body.
fn wire_len(status_line: &str, response: &client::Response) -> usize {
    let fields: usize = response
        .headers
        .iter()
        .map(|(n, v)| n.len() + 2 + v.len() + 2)
        .sum();
    status_line.len() + fields + 2 + response.body.len()
}

#[test]
fn every_tcp_connection_gets_one_line_with_bytes_each_way_and_how_it_ended() {
    let logs = captured();
    let echo = EchoServer::start(false);
    let proxy = Proxy::start(&tcp_config(
        "legacy",
        "splice",
        &[echo.addr],
        "",
        "[log]\naccess = true\n",
    ));
    // Found by the client's address, which the line names.
    let mut tcp = connect(proxy.addr);
    let client_addr = tcp.local_addr().unwrap().to_string();
    tcp.write_all(b"twelve bytes").unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    tcp.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"twelve bytes");
    let needle = format!("client={client_addr}");
    wait_until(Duration::from_secs(5), "the tcp access log line", || {
        !lines_with(logs, &needle).is_empty()
    });
    let line = &lines_with(logs, &needle)[0];
    for (name, value) in [
        ("listener", "tcp".to_owned()),
        ("upstream", "api".to_owned()),
        ("backend", echo.addr.to_string()),
        ("bytes_received", "12".to_owned()),
        ("bytes_sent", "12".to_owned()),
        ("end", "closed".to_owned()),
        ("retries", "0".to_owned()),
    ] {
        assert_eq!(field(line, name), value, "{name} in {line}");
    }

    // No backend accepts: the line says why the connection went nowhere.
    let proxy_down = Proxy::start(&tcp_config(
        "legacy",
        "copy",
        &[refusing_port()],
        "",
        "[log]\naccess = true\n",
    ));
    let mut tcp = connect(proxy_down.addr);
    let client_addr = tcp.local_addr().unwrap().to_string();
    let _ = tcp.read_to_end(&mut Vec::new());
    let needle = format!("client={client_addr}");
    wait_until(
        Duration::from_secs(5),
        "the failed connection's line",
        || !lines_with(logs, &needle).is_empty(),
    );
    let line = &lines_with(logs, &needle)[0];
    assert_eq!(field(line, "end"), "all_backends_failed", "{line}");
    assert_eq!(field(line, "bytes_sent"), "0", "{line}");
}
