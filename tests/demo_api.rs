//! Integration tests for `lbproxy-demo-api`.
//!
//! Each test starts the real binary on a free port (`--listen 127.0.0.1:0`), learns the port from
//! its one stdout line, and talks HTTP to it: ureq for plain requests, a raw `TcpStream` where
//! the test needs full control (chunked request bodies, repeated headers, reading the echo while
//! still sending). Waiting is always polling against a deadline, never a fixed sleep. The
//! [`DemoApi`] guard kills the process when a test ends, failed or not, and prints its log on
//! failure. The bad-version flags (`--fail-ratio`, `--delay`, `--crash-after`, `--version`) are
//! checked at the end, as the deployment tests rely on them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The instance number every test passes; responses must report it.
const INSTANCE: u16 = 7;
/// How long the process may take to print its "listening on" line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long any other awaited event (readiness change, exit) may take.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Gap between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Size of the `/echo` bodies: several MiB, so streaming (not buffering) is what makes it work.
const ECHO_BODY_LEN: usize = 4 << 20;
/// The version an instance reports without `--version` or `LBPROXY_VERSION`.
const DEFAULT_VERSION: &str = "v1";

// ---------------------------------------------------------------------------------------------
// The process under test
// ---------------------------------------------------------------------------------------------

/// A running `lbproxy-demo-api`, killed when dropped.
struct DemoApi {
    child: Child,
    addr: SocketAddr,
    /// Everything the process logged so far (printed if the test fails).
    log: Arc<Mutex<String>>,
}

impl DemoApi {
    /// Starts an instance on a free port with `extra_args` and waits for its listening line.
    fn start(extra_args: &[&str]) -> DemoApi {
        DemoApi::start_with_env(extra_args, &[])
    }

    /// [`DemoApi::start`] with extra environment variables (`NOTIFY_SOCKET` and
    /// `LBPROXY_VERSION` are only ever set from here, never inherited).
    fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> DemoApi {
        let mut command = Command::new(common::demo::demo_api_binary());
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--instance",
                &INSTANCE.to_string(),
            ])
            .args(extra_args)
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied());
        DemoApi::spawn(command)
    }

    /// Starts an instance socket-activated on `listener`, as systemd would (see
    /// [`activated_command`]). The test keeps `listener` open, as systemd keeps its socket.
    fn start_activated(listener: &TcpListener, extra_args: &[&str]) -> DemoApi {
        let mut command = activated_command(listener.as_raw_fd());
        command
            .args(["--instance", &INSTANCE.to_string()])
            .args(extra_args)
            .env_remove("NOTIFY_SOCKET");
        DemoApi::spawn(command)
    }

    /// Spawns `command` (the binary, its arguments, `NOTIFY_SOCKET` removed or set) with the
    /// test's stdio and log level, and waits for its listening line. `LBPROXY_VERSION` is not
    /// inherited (the instance reports `v1`) unless the command sets it.
    fn spawn(mut command: Command) -> DemoApi {
        let sets_version = command
            .get_envs()
            .any(|(name, value)| name == "LBPROXY_VERSION" && value.is_some());
        if !sets_version {
            command.env_remove("LBPROXY_VERSION");
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start lbproxy-demo-api");
        let stdout = child.stdout.take().expect("stdout is piped");
        let log = collect_log(child.stderr.take().expect("stderr is piped"));
        // From here on the guard kills the process if anything below panics.
        let mut api = DemoApi {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        api.addr = parse_listening_line(&first_stdout_line(stdout));
        api
    }

    fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    fn send_signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own live child.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot query the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "lbproxy-demo-api did not exit within {WAIT_TIMEOUT:?}"
            );
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for DemoApi {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let log = self.log();
            eprintln!("--- lbproxy-demo-api log ---\n{log}--- end of log ---");
        }
    }
}

/// The demo API, started the way systemd's socket activation starts a service: `fd` (a socket
/// the test keeps open, as systemd keeps its own) becomes the child's fd 3, `LISTEN_FDS=1`, and
/// `LISTEN_PID` is the child's own pid. The pid is known only in the child, and a `pre_exec`
/// closure may do only async-signal-safe work (dup2, fcntl; not setenv), so a `sh` sets
/// `LISTEN_PID=$$` and then execs the binary, keeping its pid. Add the binary's arguments.
fn activated_command(fd: RawFd) -> Command {
    const LISTEN_FDS_START: RawFd = 3;
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#])
        .arg(common::demo::demo_api_binary())
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES");
    let pass_fd = move || {
        if fd == LISTEN_FDS_START {
            // dup2 onto itself would keep the close-on-exec flag std sets on every descriptor.
            // SAFETY: fcntl on a descriptor the parent owns and keeps open; async-signal-safe.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        // SAFETY: dup2 of a descriptor the parent keeps open onto fd 3, which the new copy
        // replaces in the child only; async-signal-safe, allocates nothing.
        } else if unsafe { libc::dup2(fd, LISTEN_FDS_START) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure only calls dup2/fcntl (async-signal-safe) and builds an io::Error
    // from errno on failure, which does not allocate.
    unsafe { command.pre_exec(pass_fd) };
    command
}

/// Reads the process's stderr into a string as it comes (so the pipe never fills up).
fn collect_log(stderr: ChildStderr) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// The first stdout line, or a panic if none comes within [`STARTUP_TIMEOUT`].
fn first_stdout_line(stdout: ChildStdout) -> String {
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = line_tx.send(line);
        // Keep the pipe open (and drained) until the process exits.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    line_rx
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("no listening line on stdout in time")
}

/// `lbproxy-demo-api instance 7 listening on 127.0.0.1:PORT` → the address.
fn parse_listening_line(line: &str) -> SocketAddr {
    let prefix = format!("lbproxy-demo-api instance {INSTANCE} listening on ");
    let address = line
        .strip_suffix('\n')
        .and_then(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"));
    address
        .parse()
        .unwrap_or_else(|_| panic!("bad address in {line:?}"))
}

/// Polls `condition` until it holds, failing the test after [`WAIT_TIMEOUT`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP through ureq
// ---------------------------------------------------------------------------------------------

/// A response, whatever its status (ureq reports 4xx/5xx as errors).
struct Reply {
    status: u16,
    instance: Option<String>,
    /// `X-Api-Version`.
    version: Option<String>,
    content_type: Option<String>,
    content_length: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

fn get(url: &str) -> Reply {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .build();
    let response = match agent.get(url).call() {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("GET {url} failed: {error}"),
    };
    let header = |name: &str| response.header(name).map(str::to_owned);
    let (instance, content_type) = (header("X-Instance"), header("Content-Type"));
    let version = header("X-Api-Version");
    let content_length = header("Content-Length");
    let status = response.status();
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .expect("cannot read the body");
    Reply {
        status,
        instance,
        version,
        content_type,
        content_length,
        body,
    }
}

/// `POST url` with a text body, whatever the status.
fn post(url: &str, body: &str) -> Reply {
    let response = match ureq::post(url).send_string(body) {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("POST {url} failed: {error}"),
    };
    let status = response.status();
    let instance = response.header("X-Instance").map(str::to_owned);
    let version = response.header("X-Api-Version").map(str::to_owned);
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .expect("cannot read the body");
    Reply {
        status,
        instance,
        version,
        content_type: None,
        content_length: None,
        body,
    }
}

/// Issues `GET url` from another thread, for requests that must be in flight during a test step.
fn get_in_background(url: String) -> JoinHandle<Reply> {
    thread::spawn(move || get(&url))
}

/// Waits until the server has received `others` requests besides the `GET /` polls used to
/// watch its `requests_served` counter (i.e. background requests are now in flight).
fn wait_until_received(api: &DemoApi, others: u64) {
    let mut polls = 0;
    wait_until("the background request to reach the server", || {
        polls += 1;
        let served = get(&api.url("/")).json()["requests_served"].as_u64();
        served.expect("requests_served is a number") >= polls + others
    });
}

fn readiness(api: &DemoApi) -> (u16, String) {
    let reply = get(&api.url("/health/ready"));
    (reply.status, reply.text().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1, for what ureq cannot do
// ---------------------------------------------------------------------------------------------

struct RawResponse {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    /// De-chunked if the response was chunked.
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `request` (which should say `Connection: close`) from a writer thread while reading the
/// whole response: `/echo` answers while the body is still arriving, so reading only after
/// sending everything could stall on full socket buffers.
fn raw_exchange(addr: SocketAddr, request: Vec<u8>) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("cannot connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().expect("cannot clone the socket");
    let sender = thread::spawn(move || writer.write_all(&request));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("cannot read the response");
    sender.join().unwrap().expect("cannot send the request");
    parse_raw_response(&raw)
}

fn parse_raw_response(raw: &[u8]) -> RawResponse {
    let head_end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no end of response head");
    let head = std::str::from_utf8(&raw[..head_end]).expect("head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line has a colon");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn encode_chunked(body: &[u8], chunk_size: usize) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(body.len() + body.len() / chunk_size * 16 + 16);
    for chunk in body.chunks(chunk_size) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

fn decode_chunked(mut encoded: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = encoded
            .windows(2)
            .position(|window| window == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&encoded[..line_end]).unwrap();
        let size_text = size_text.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        encoded = &encoded[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&encoded[..size]);
        assert_eq!(
            &encoded[size..size + 2],
            b"\r\n",
            "chunk not followed by CRLF"
        );
        encoded = &encoded[size + 2..];
    }
}

/// Pseudo-random bytes (xorshift), so a dropped, repeated or reordered chunk shows.
fn test_body(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn root_identifies_the_instance_and_counts_requests() {
    let api = DemoApi::start(&[]);

    let first = get(&api.url("/"));
    assert_eq!(first.status, 200);
    assert_eq!(first.instance.as_deref(), Some("7"));
    assert_eq!(
        first.json(),
        json!({
            "instance": INSTANCE,
            "version": DEFAULT_VERSION,
            "pid": api.child.id(),
            "listen": api.addr.to_string(),
            "requests_served": 1,
        })
    );

    assert_eq!(get(&api.url("/health/live")).status, 200);
    assert_eq!(get(&api.url("/no/such/path")).status, 404);
    let later = get(&api.url("/")).json();
    assert_eq!(
        later["requests_served"], 4,
        "every request counts, 404s too"
    );
}

#[test]
fn health_endpoints_report_live_and_ready() {
    let api = DemoApi::start(&[]);

    let live = get(&api.url("/health/live"));
    assert_eq!((live.status, live.text()), (200, "ok"));
    assert_eq!(live.instance.as_deref(), Some("7"));

    let ready = get(&api.url("/health/ready"));
    assert_eq!((ready.status, ready.text()), (200, "ready"));
    assert_eq!(ready.instance.as_deref(), Some("7"));
}

#[test]
fn faults_hold_readiness_and_fail_ordinary_requests_until_lifted() {
    let api = DemoApi::start(&[]);
    assert_eq!(readiness(&api), (200, "ready".to_owned()));

    let held = post(&api.url("/admin/ready"), "off");
    assert_eq!(held.status, 200);
    assert_eq!(held.json()["ready_held"], json!(true));
    assert_eq!(readiness(&api), (503, "held".to_owned()));
    assert_eq!(
        get(&api.url("/")).status,
        200,
        "everything else still serves"
    );
    post(&api.url("/admin/ready"), "on");
    assert_eq!(readiness(&api), (200, "ready".to_owned()));

    let failing = post(&api.url("/admin/fail"), "503");
    assert_eq!(failing.json()["fail"], json!(503));
    let reply = get(&api.url("/status?code=200"));
    assert_eq!(
        (reply.status, reply.text()),
        (503, "503 injected failure\n")
    );
    assert_eq!(reply.instance.as_deref(), Some("7"));
    assert_eq!(readiness(&api).0, 200, "health endpoints are not failed");
    post(&api.url("/admin/fail"), "off");
    assert_eq!(get(&api.url("/status?code=200")).status, 200);

    assert_eq!(post(&api.url("/admin/fail"), "404").status, 400);
    assert_eq!(post(&api.url("/admin/ready"), "maybe").status, 400);
    let faults = get(&api.url("/admin/faults")).json();
    assert_eq!(faults["fail"], Value::Null);
    assert!(faults["ready_probes"].as_u64().unwrap() >= 4, "{faults}");
}

#[test]
fn delay_sleeps_then_answers_and_rejects_bad_durations() {
    let api = DemoApi::start(&[]);

    let started = Instant::now();
    let reply = get(&api.url("/delay?ms=300"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.instance.as_deref(), Some("7"));
    assert_eq!(
        reply.json(),
        json!({ "instance": INSTANCE, "version": DEFAULT_VERSION, "delayed_ms": 300 })
    );

    assert_eq!(get(&api.url("/delay?ms=0")).status, 200);
    for bad in [
        "/delay?ms=60001",
        "/delay?ms=-1",
        "/delay?ms=soon",
        "/delay",
    ] {
        let reply = get(&api.url(bad));
        assert_eq!(reply.status, 400, "{bad}");
        assert!(
            reply.text().contains("0..=60000"),
            "{bad}: {}",
            reply.text()
        );
    }
}

#[test]
fn status_answers_with_the_requested_code() {
    let api = DemoApi::start(&[]);

    for code in [200, 201, 302, 404, 418, 500, 503, 599] {
        let reply = get(&api.url(&format!("/status?code={code}")));
        assert_eq!(reply.status, code);
        assert_eq!(reply.instance.as_deref(), Some("7"));
        assert!(
            reply.text().starts_with(&code.to_string()),
            "{}",
            reply.text()
        );
    }
    assert_eq!(
        get(&api.url("/status?code=418")).text(),
        "418 I'm a teapot\n"
    );
    let no_content = get(&api.url("/status?code=204"));
    assert_eq!(no_content.status, 204);
    assert!(no_content.body.is_empty());

    for bad in [
        "/status?code=199",
        "/status?code=600",
        "/status?code=ok",
        "/status",
    ] {
        let reply = get(&api.url(bad));
        assert_eq!(reply.status, 400, "{bad}");
        assert!(
            reply.text().contains("200..=599"),
            "{bad}: {}",
            reply.text()
        );
    }
}

#[test]
fn headers_shows_request_headers_as_received() {
    let api = DemoApi::start(&[]);

    let request = "GET /headers HTTP/1.1\r\n\
                   Host: demo.test\r\n\
                   X-Forwarded-For: 203.0.113.9\r\n\
                   X-Request-Id: req-42\r\n\
                   X-Multi: first\r\n\
                   X-Multi: second\r\n\
                   Connection: close\r\n\r\n";
    let response = raw_exchange(api.addr, request.as_bytes().to_vec());
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-instance"), Some("7"));
    let received: Value = serde_json::from_slice(&response.body).expect("JSON body");
    assert_eq!(received["host"], "demo.test");
    assert_eq!(received["x-forwarded-for"], "203.0.113.9");
    assert_eq!(received["x-request-id"], "req-42");
    assert_eq!(received["x-multi"], "first, second");
    assert_eq!(received["connection"], "close");
}

#[test]
fn unknown_path_is_404_with_instance_header() {
    let api = DemoApi::start(&[]);

    let reply = get(&api.url("/definitely/not/here"));
    assert_eq!(reply.status, 404);
    assert_eq!(reply.instance.as_deref(), Some("7"));
}

#[test]
fn ws_echoes_websocket_messages_until_closed() {
    use tungstenite::Message;
    let api = DemoApi::start(&[]);
    wait_until("ready", || readiness(&api).0 == 200);
    let tcp = TcpStream::connect(api.addr).expect("connect");
    let (mut ws, response) =
        tungstenite::client::client(format!("ws://{}/ws", api.addr), tcp).expect("upgrade");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["x-instance"].to_str().unwrap(),
        INSTANCE.to_string()
    );
    for text in ["hello", &"x".repeat(70_000)] {
        ws.send(Message::text(text)).expect("send");
        assert_eq!(ws.read().expect("echo"), Message::text(text));
    }
    ws.send(Message::binary(vec![1, 2, 3])).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::binary(vec![1, 2, 3]));
    ws.close(None).expect("close");
    while ws.read().is_ok() {}

    let refused = get(&api.url("/ws"));
    assert_eq!(
        refused.status,
        400,
        "a GET without the handshake: {}",
        refused.text()
    );
}

#[test]
fn echo_round_trips_a_large_content_length_body() {
    let api = DemoApi::start(&[]);
    let body = test_body(ECHO_BODY_LEN);

    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: demo.test\r\nContent-Type: application/x-demo-test\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let response = raw_exchange(api.addr, request);

    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-instance"), Some("7"));
    assert_eq!(
        response.header("content-type"),
        Some("application/x-demo-test")
    );
    assert_eq!(
        response.header("content-length"),
        Some(ECHO_BODY_LEN.to_string().as_str())
    );
    assert_eq!(response.body.len(), body.len());
    assert!(
        response.body == body,
        "echoed body differs from the one sent"
    );
}

#[test]
fn echo_round_trips_a_large_chunked_body() {
    let api = DemoApi::start(&[]);
    let body = test_body(ECHO_BODY_LEN);

    let mut request = b"POST /echo HTTP/1.1\r\nHost: demo.test\r\nContent-Type: text/x-chunks\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    // An odd chunk size, so request chunks never line up with the server's buffers.
    request.extend_from_slice(&encode_chunked(&body, 65_537));
    let response = raw_exchange(api.addr, request);

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/x-chunks"));
    assert_eq!(response.body.len(), body.len());
    assert!(
        response.body == body,
        "echoed body differs from the one sent"
    );
}

#[test]
fn echo_works_for_a_small_body_from_an_ordinary_client() {
    let api = DemoApi::start(&[]);

    let response = ureq::post(&api.url("/echo"))
        .set("Content-Type", "application/json")
        .send_string(r#"{"hello":"proxy"}"#)
        .expect("POST /echo");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_type(), "application/json");
    assert_eq!(response.into_string().unwrap(), r#"{"hello":"proxy"}"#);
}

#[test]
fn bytes_sends_the_pattern_with_content_length() {
    let api = DemoApi::start(&[]);
    let length: usize = (3 << 20) + 17;

    let reply = get(&api.url(&format!("/bytes?n={length}")));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.instance.as_deref(), Some("7"));
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(reply.content_length, Some(length.to_string()));
    assert_eq!(reply.body.len(), length);
    if let Some(i) = (0..length).find(|&i| reply.body[i] != (i % 251) as u8) {
        panic!("byte {i} is {} instead of {}", reply.body[i], i % 251);
    }

    let empty = get(&api.url("/bytes?n=0"));
    assert_eq!(empty.status, 200);
    assert_eq!(empty.content_length.as_deref(), Some("0"));
    assert!(empty.body.is_empty());

    for bad in [
        "/bytes?n=1073741825",
        "/bytes?n=-1",
        "/bytes?n=lots",
        "/bytes",
    ] {
        let reply = get(&api.url(bad));
        assert_eq!(reply.status, 400, "{bad}");
        assert!(
            reply.text().contains("0..=1073741824"),
            "{bad}: {}",
            reply.text()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness and shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn readiness_is_starting_during_the_startup_delay_then_ready() {
    let spawned = Instant::now();
    let api = DemoApi::start(&["--startup-delay", "2s"]);

    assert_eq!(readiness(&api), (503, "starting".to_owned()));
    assert_eq!(
        get(&api.url("/health/live")).status,
        200,
        "live while warming up"
    );
    assert_eq!(get(&api.url("/")).status, 200, "serving while warming up");

    wait_until("readiness to turn ready", || readiness(&api).0 == 200);
    assert_eq!(readiness(&api), (200, "ready".to_owned()));
    assert!(
        spawned.elapsed() >= Duration::from_secs(2),
        "ready before the startup delay was over"
    );
}

#[test]
fn sigterm_drains_with_shutdown_delay_and_exits_zero() {
    let mut api = DemoApi::start(&["--shutdown-delay", "1s"]);
    let in_flight = get_in_background(api.url("/delay?ms=1500"));
    wait_until_received(&api, 1);

    let signalled = Instant::now();
    api.send_signal(libc::SIGTERM);
    // Still accepting during the shutdown delay, and telling health checks to go away.
    wait_until("readiness to turn draining", || {
        readiness(&api) == (503, "draining".to_owned())
    });

    let reply = in_flight.join().expect("in-flight request thread");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({ "instance": INSTANCE, "version": DEFAULT_VERSION, "delayed_ms": 1500 })
    );

    let status = api.wait_for_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "exited before the shutdown delay was over"
    );
}

#[test]
fn sigterm_stops_accepting_but_finishes_in_flight_requests() {
    let mut api = DemoApi::start(&[]);
    let in_flight = get_in_background(api.url("/delay?ms=3000"));
    wait_until_received(&api, 1);

    api.send_signal(libc::SIGTERM);
    wait_until("the listener to close", || {
        TcpStream::connect(api.addr).is_err()
    });
    assert!(
        !in_flight.is_finished(),
        "the listener should close while the request is still in flight"
    );

    let reply = in_flight.join().expect("in-flight request thread");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["delayed_ms"], 3000);
    let status = api.wait_for_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn sigint_shuts_down_cleanly() {
    let mut api = DemoApi::start(&[]);

    api.send_signal(libc::SIGINT);
    let status = api.wait_for_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn second_signal_during_the_drain_exits_at_once_with_status_1() {
    let mut api = DemoApi::start(&["--shutdown-delay", "60s"]);

    api.send_signal(libc::SIGTERM);
    wait_until("readiness to turn draining", || readiness(&api).0 == 503);
    api.send_signal(libc::SIGTERM);
    // wait_for_exit gives up long before the 60 s delay would end.
    let status = api.wait_for_exit();
    assert_eq!(status.code(), Some(1), "exit status {status}");
}

#[test]
fn systemd_hears_ready_after_the_warm_up_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket_path = dir.path().join("notify.sock");
    let notify_socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    notify_socket.set_read_timeout(Some(WAIT_TIMEOUT)).unwrap();
    let next_message = || {
        let mut buffer = [0; 4096];
        let len = notify_socket
            .recv(&mut buffer)
            .expect("no systemd notification in time");
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    };

    let spawned = Instant::now();
    let socket_path = socket_path.to_str().expect("UTF-8 temporary path");
    let mut api = DemoApi::start_with_env(
        &["--startup-delay", "1s"],
        &[("NOTIFY_SOCKET", socket_path)],
    );

    let ready = next_message();
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    assert!(
        spawned.elapsed() >= Duration::from_secs(1),
        "READY=1 before the startup delay was over"
    );
    assert_eq!(readiness(&api).0, 200);

    api.send_signal(libc::SIGTERM);
    let stopping = next_message();
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping:?}"
    );
    let status = api.wait_for_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

// ---------------------------------------------------------------------------------------------
// Socket activation (a listening socket passed as systemd passes it)
// ---------------------------------------------------------------------------------------------

/// `GET /` on a connection made earlier (it may still wait in the backlog): the answering pid.
fn pid_answering(mut stream: TcpStream) -> u64 {
    stream
        .set_read_timeout(Some(STARTUP_TIMEOUT))
        .expect("read timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("no response on the connection");
    let response = parse_raw_response(&raw);
    assert_eq!(response.status, 200);
    let body: Value = serde_json::from_slice(&response.body).expect("JSON body");
    body["pid"].as_u64().expect("pid in GET /")
}

#[test]
fn socket_activated_it_serves_the_passed_socket_and_prints_its_address() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    // --listen is ignored: port 1 could not be bound anyway.
    let api = DemoApi::start_activated(&listener, &["--listen", "127.0.0.1:1"]);

    assert_eq!(api.addr, addr, "the listening line shows the passed socket");
    let reply = get(&api.url("/"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["listen"], addr.to_string());
    assert_eq!(reply.json()["pid"], api.child.id());
    wait_until("the log to say where it serves", || {
        api.log().contains("using the socket passed by systemd")
    });
    assert!(api.log().contains("--listen is ignored"), "{}", api.log());

    // Close-on-exec: sd_listen_fds sets it, so nothing the instance spawns inherits the socket.
    let fdinfo = std::fs::read_to_string(format!("/proc/{}/fdinfo/3", api.child.id()))
        .expect("fd 3 of the instance");
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| i64::from_str_radix(f.trim(), 8).ok())
        .unwrap_or_else(|| panic!("no flags in {fdinfo}"));
    assert_ne!(
        flags & i64::from(libc::O_CLOEXEC),
        0,
        "fd 3 flags {flags:o}"
    );
}

/// The point of socket activation: across a restart (SIGTERM, exit, a new process on the same
/// socket) no connection is refused. Connections made while no instance runs wait in the
/// socket's backlog and the next instance serves them; requests in flight at the SIGTERM finish.
#[test]
fn socket_activated_a_restart_refuses_no_connection_and_the_next_instance_serves_the_queue() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut first = DemoApi::start_activated(&listener, &[]);
    let first_pid = u64::from(first.child.id());
    assert_eq!(pid_answering(TcpStream::connect(addr).unwrap()), first_pid);
    let in_flight = get_in_background(first.url("/delay?ms=1000"));
    // Two others: pid_answering's GET / and the background request, which is in flight once
    // counted (the count is taken as a request starts).
    wait_until_received(&first, 2);

    first.send_signal(libc::SIGTERM);
    let status = first.wait_for_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let reply = in_flight.join().expect("in-flight request thread");
    assert_eq!(
        reply.status, 200,
        "the request in flight at SIGTERM finished"
    );
    assert!(
        first.log().contains("closing our copy of systemd's socket"),
        "{}",
        first.log()
    );

    // No instance runs: the socket still accepts, into its backlog.
    let queued: Vec<TcpStream> = (0..3)
        .map(|i| {
            TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connection {i} refused between the instances: {e}"))
        })
        .collect();

    let second = DemoApi::start_activated(&listener, &[]);
    let second_pid = u64::from(second.child.id());
    assert_ne!(second_pid, first_pid);
    assert_eq!(second.addr, addr);
    for stream in queued {
        assert_eq!(
            pid_answering(stream),
            second_pid,
            "served by the next instance"
        );
    }
}

#[test]
fn socket_activated_a_passed_socket_that_is_not_listening_tcp_fails_the_start_clearly() {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let output = activated_command(udp.as_raw_fd())
        .args(["--instance", "1", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run lbproxy-demo-api");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "it listened anyway");
    assert!(
        stderr.contains("cannot serve on the socket systemd passed (fd 3)")
            && stderr.contains("not a stream socket"),
        "{stderr}"
    );
}

#[test]
fn listen_variables_for_another_process_are_ignored() {
    // LISTEN_PID=1: meant for someone else (an inherited environment); it binds --listen.
    let api = DemoApi::start_with_env(&[], &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    assert_eq!(get(&api.url("/")).status, 200);
    assert!(!api.log().contains("passed by systemd"), "{}", api.log());
}

// ---------------------------------------------------------------------------------------------
// A bad version: --version, --fail-ratio, --delay, --crash-after
// ---------------------------------------------------------------------------------------------

#[test]
fn version_flag_names_the_version_in_every_response_and_in_the_body() {
    let api = DemoApi::start(&["--version", "v7"]);

    let root = get(&api.url("/"));
    assert_eq!(root.version.as_deref(), Some("v7"));
    assert_eq!(root.json()["version"], "v7");
    assert_eq!(get(&api.url("/delay?ms=0")).json()["version"], "v7");
    for path in ["/health/ready", "/no/such/path", "/admin/faults"] {
        assert_eq!(get(&api.url(path)).version.as_deref(), Some("v7"), "{path}");
    }
}

#[test]
fn lbproxy_version_in_the_environment_names_the_version_unless_the_flag_does() {
    let from_env = DemoApi::start_with_env(&[], &[("LBPROXY_VERSION", "v9")]);
    let reply = get(&from_env.url("/"));
    assert_eq!(reply.version.as_deref(), Some("v9"));
    assert_eq!(reply.json()["version"], "v9");

    let flag_wins = DemoApi::start_with_env(&["--version", "v7"], &[("LBPROXY_VERSION", "v9")]);
    assert_eq!(get(&flag_wins.url("/")).version.as_deref(), Some("v7"));

    let default = DemoApi::start(&[]);
    assert_eq!(
        get(&default.url("/")).version.as_deref(),
        Some(DEFAULT_VERSION)
    );
}

#[test]
fn a_bad_version_name_in_the_environment_fails_the_start_naming_the_variable() {
    let output = Command::new(common::demo::demo_api_binary())
        .args(["--listen", "127.0.0.1:0"])
        .env("LBPROXY_VERSION", "v2; rm -rf")
        .stdin(Stdio::null())
        .output()
        .expect("run lbproxy-demo-api");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "it listened anyway");
    assert!(
        stderr.contains("LBPROXY_VERSION") && stderr.contains("not a version name"),
        "{stderr}"
    );
}

#[test]
fn version_without_a_name_prints_the_program_version() {
    for flag in ["--version", "-V"] {
        let output = Command::new(common::demo::demo_api_binary())
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .expect("run lbproxy-demo-api");
        assert!(output.status.success(), "{flag}: {}", output.status);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            format!("lbproxy-demo-api {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn fail_ratio_fails_exactly_its_share_of_ordinary_requests_evenly() {
    let api = DemoApi::start(&["--fail-ratio", "0.2"]);

    let mut failed = Vec::new();
    for n in 1..=100 {
        let reply = get(&api.url("/"));
        match reply.status {
            200 => {}
            500 => {
                assert_eq!(reply.text(), "500 bad version (--fail-ratio)\n");
                assert_eq!(reply.instance.as_deref(), Some("7"));
                failed.push(n);
            }
            other => panic!("request {n}: status {other}"),
        }
        // Probes and admin requests are not ordinary: never failed, and not counted.
        assert_eq!(readiness(&api).0, 200);
    }
    assert_eq!(failed.len(), 20, "{failed:?}");
    assert_eq!(failed, (1..=20).map(|i| i * 5).collect::<Vec<_>>());

    let faults = get(&api.url("/admin/faults")).json();
    assert_eq!(faults["fail_ratio"], json!(0.2), "{faults}");
    assert_eq!(faults["ordinary_requests"], json!(100), "{faults}");
}

#[test]
fn delay_is_added_to_every_ordinary_request() {
    let api = DemoApi::start(&["--delay", "100ms"]);

    for path in ["/", "/status?code=204", "/no/such/path"] {
        let started = Instant::now();
        let reply = get(&api.url(path));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100),
            "{path} took {took:?}, status {}",
            reply.status
        );
    }
    assert_eq!(get(&api.url("/admin/faults")).json()["delay_ms"], 100);
}

#[test]
fn crash_after_answers_n_ordinary_requests_then_exits_with_a_failure() {
    let mut api = DemoApi::start(&["--crash-after", "3"]);

    for n in 1..=3 {
        // Probes do not count towards the crash (asked before, as the crash follows the 3rd).
        assert_eq!(readiness(&api).0, 200);
        let reply = get(&api.url("/"));
        assert_eq!(reply.status, 200, "request {n}");
        assert_eq!(reply.json()["instance"], INSTANCE, "request {n} whole");
    }

    // The fourth gets no answer: refused once the process is gone, or closed unanswered by
    // the crash if it connected before.
    if let Ok(mut stream) = TcpStream::connect(api.addr) {
        stream.set_read_timeout(Some(WAIT_TIMEOUT)).unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => assert!(
                answer.is_empty(),
                "answered after --crash-after 3: {}",
                String::from_utf8_lossy(&answer)
            ),
            Err(error) => assert_ne!(
                error.kind(),
                std::io::ErrorKind::WouldBlock,
                "no crash within {WAIT_TIMEOUT:?}"
            ),
        }
    }
    let status = api.wait_for_exit();
    assert!(
        !status.success(),
        "a crash must not look like a clean exit: {status}"
    );
    assert_eq!(status.code(), Some(70), "exit status {status}");
    assert!(api.log().contains("crashing on purpose"), "{}", api.log());
}
