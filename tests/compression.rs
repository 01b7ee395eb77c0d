//! `[compression]` end to end: a raw backend sends exact responses, a raw client shows the exact
//! head the proxy wrote, and the body, de-chunked and decoded with the reference decoders (flate2,
//! brotli, zstd, and curl's), must equal what the backend sent. Responses that must not be
//! compressed arrive byte for byte as sent (plus `Vary` where the type is compressible). A
//! streamed response reaches the client compressed before the backend sends the rest.

mod common;

use common::backend::{RawBackend, Reply};
use common::raw::{RawConn, RawResponse, DEADLINE};
use common::spec::spec_config;
use common::{on_both_drivers, require_tool, Proxy};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;

on_both_drivers!(
    each_coding_gives_the_original_back,
    a_chunked_or_close_delimited_body_is_compressed_too,
    what_must_not_be_compressed_arrives_as_sent,
    a_route_can_turn_compression_off,
    a_streamed_response_is_flushed_as_it_comes,
    a_backend_failing_mid_body_leaves_a_truncated_body,
    curl_compressed_decodes_it,
    header_rules_and_compression_share_the_head,
);

const ENABLED: &str = "[compression]\nenabled = true\n";

/// A JSON body of `items` entries: compressible, not trivially.
fn json(items: usize) -> Vec<u8> {
    let entries: Vec<String> = (0..items)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {}\",\"ok\":true}}", i % 37))
        .collect();
    format!("[{}]", entries.join(",")).into_bytes()
}

fn answer(head: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn get(path: &str, accept: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\nAccept-Encoding: {accept}\r\n\r\n").into_bytes()
}

/// The payload of a chunked body as framed on the wire (no trailers expected).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("size line");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
            .expect("hex size");
        body = &body[line_end + 2..];
        if size == 0 {
            assert_eq!(body, b"\r\n", "last chunk, no trailers");
            return payload;
        }
        payload.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut decoded),
        "br" => brotli::Decompressor::new(data, 4096).read_to_end(&mut decoded),
        "zstd" => zstd::stream::read::Decoder::new(data)
            .unwrap()
            .read_to_end(&mut decoded),
        other => panic!("no decoder for {other}"),
    }
    .unwrap_or_else(|e| panic!("{coding} body does not decode: {e}"));
    decoded
}

/// `expected` with `{id}` replaced by the response's request id.
fn assert_head(response: &RawResponse, expected: &str) {
    let head_len = response.raw.len() - response.body.len();
    let head = String::from_utf8_lossy(&response.raw[..head_len]).into_owned();
    assert_eq!(head, expected.replace("{id}", &response.request_id()));
}

fn each_coding_gives_the_original_back(driver: &str) {
    let body = json(800);
    let backend = RawBackend::start(Reply::Fixed(answer(
        &format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nETag: \"v1\"\r\n\
             Accept-Ranges: bytes\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        &body,
    )));
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ENABLED));
    let mut conn = RawConn::open(proxy.addr);
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("zstd;q=0.5, br;q=0.4, gzip;q=0.9", "gzip"),
    ] {
        conn.send(&get("/data", accept));
        let response = conn.read_response("GET");
        assert_head(
            &response,
            &format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
                 ETag: W/\"v1\"\r\nVary: Accept-Encoding\r\nContent-Encoding: {coding}\r\n\
                 X-Request-Id: {{id}}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
        );
        let compressed = dechunk(&response.body);
        assert!(
            compressed.len() < body.len() / 4,
            "{coding}: {} bytes",
            compressed.len()
        );
        assert_eq!(decode(coding, &compressed), body, "{coding}");
    }
    // The same connection served them all, and the upstream one was reused.
    assert_eq!(backend.connections(), 1);

    // Counted per coding once the worker has published (its 100 ms tick).
    let admin = proxy.admin_addr();
    let deadline = std::time::Instant::now() + DEADLINE;
    let samples = loop {
        let text = common::admin::get(admin, "/metrics", None).text();
        let samples = common::admin::parse_metrics(&text);
        let responses = |coding| {
            common::admin::sum(
                &samples,
                "lbproxy_compression_responses_total",
                &[("algorithm", coding)],
            )
        };
        if responses("gzip") == 2.0 {
            assert_eq!((responses("br"), responses("zstd")), (1.0, 1.0));
            break samples;
        }
        assert!(std::time::Instant::now() < deadline, "not counted: {text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let bytes = |name, coding| common::admin::sum(&samples, name, &[("algorithm", coding)]);
    assert_eq!(
        bytes("lbproxy_compression_bytes_in_total", "gzip"),
        2.0 * body.len() as f64
    );
    let out = bytes("lbproxy_compression_bytes_out_total", "br");
    assert!(out > 0.0 && out < body.len() as f64 / 4.0, "{out}");
}

fn a_chunked_or_close_delimited_body_is_compressed_too(driver: &str) {
    let body = json(300);
    let mut chunked =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for piece in body.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let until_close = answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", &body);
    for reply in [Reply::Fixed(chunked), Reply::ThenClose(until_close)] {
        let backend = RawBackend::start(reply);
        let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ENABLED));
        let mut conn = RawConn::open(proxy.addr);
        conn.send(&get("/", "gzip"));
        let response = conn.read_response("GET");
        assert_head(
            &response,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVary: Accept-Encoding\r\n\
             Content-Encoding: gzip\r\nX-Request-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(decode("gzip", &dechunk(&response.body)), body);
        // The client connection stays usable even when the backend's ended by closing.
        conn.send(&get("/", "br"));
        let again = conn.read_response("GET");
        assert_eq!(again.header("content-encoding"), Some("br"));
        assert_eq!(decode("br", &dechunk(&again.body)), body);
    }
}

fn what_must_not_be_compressed_arrives_as_sent(driver: &str) {
    let body = json(100);
    let len = body.len();
    let cases: Vec<(&str, String, &str, bool)> = vec![
        // (what, backend head, request method line + version, Vary added)
        ("HEAD", format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"), "HEAD / HTTP/1.1", true),
        ("206", format!("HTTP/1.1 206 Partial Content\r\nContent-Type: application/json\r\nContent-Range: bytes 0-{}/9999\r\nContent-Length: {len}\r\n\r\n", len - 1), "GET / HTTP/1.1", true),
        ("already encoded", format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {len}\r\n\r\n"), "GET / HTTP/1.1", true),
        ("small", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1023\r\n\r\n".to_owned(), "GET / HTTP/1.1", true),
        ("not a compressible type", format!("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len}\r\n\r\n"), "GET / HTTP/1.1", false),
        ("event stream", format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len}\r\n\r\n"), "GET / HTTP/1.1", false),
        ("no-transform", format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-transform\r\nContent-Length: {len}\r\n\r\n"), "GET / HTTP/1.1", true),
        ("already varies", format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nVary: accept-encoding\r\nContent-Length: {len}\r\n\r\n"), "GET / HTTP/1.1", false),
        ("HTTP/1.0", format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"), "GET / HTTP/1.0", true),
    ];
    for (what, head, line, vary) in cases {
        let sent_len: usize = head
            .split("Content-Length: ")
            .nth(1)
            .and_then(|v| v.split("\r\n").next())
            .unwrap()
            .parse()
            .unwrap();
        let backend = RawBackend::start(Reply::Fixed(answer(&head, &body[..sent_len])));
        let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ENABLED));
        let mut conn = RawConn::open(proxy.addr);
        conn.send(format!("{line}\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\r\n").as_bytes());
        let method = line.split(' ').next().unwrap();
        let response = if line.ends_with("1.0") {
            let raw = conn.read_to_eof();
            common::raw::split_response(&raw, method, true).expect("a response")
        } else {
            conn.read_response(method)
        };
        let fields = head.split_once("\r\n").unwrap().1.trim_end_matches("\r\n");
        let fields = fields
            .lines()
            .filter(|l| !l.starts_with("Content-Length"))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>();
        let status_line = head.lines().next().unwrap();
        let connection = if line.ends_with("1.0") {
            "Connection: close\r\n"
        } else {
            ""
        };
        let expected = format!(
            "{status_line}\r\n{fields}{}X-Request-Id: {{id}}\r\nContent-Length: {sent_len}\r\n{connection}\r\n",
            if vary { "Vary: Accept-Encoding\r\n" } else { "" },
        );
        let head_len = response.raw.len() - response.body.len();
        let got = String::from_utf8_lossy(&response.raw[..head_len]).into_owned();
        assert_eq!(
            got,
            expected.replace("{id}", &response.request_id()),
            "{what}"
        );
        if method != "HEAD" {
            assert_eq!(response.body, &body[..sent_len], "{what}: the body as sent");
        }
    }
}

fn a_route_can_turn_compression_off(driver: &str) {
    let body = json(100);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let backend = RawBackend::start(Reply::Fixed(answer(&head, &body)));
    let routes = format!(
        "{ENABLED}[[listener.http.route]]\npath_prefix = \"/raw\"\nupstream = \"api\"\n\
         compress = false\n"
    );
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], &routes));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/raw/x", "gzip"));
    let plain = conn.read_response("GET");
    assert_head(
        &plain,
        &format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: {{id}}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        ),
    );
    assert_eq!(plain.body, body);
    conn.send(&get("/other", "gzip"));
    let compressed = conn.read_response("GET");
    assert_eq!(
        compressed.header("content-encoding"),
        Some("gzip"),
        "the catch-all compresses"
    );

    // And the other way: off globally, on for one route.
    let routes = "[compression]\nenabled = false\n[[listener.http.route]]\npath_prefix = \"/z\"\n\
                  upstream = \"api\"\ncompress = true\n";
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], routes));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/z", "gzip"));
    assert_eq!(
        conn.read_response("GET").header("content-encoding"),
        Some("gzip")
    );
    conn.send(&get("/", "gzip"));
    let plain = conn.read_response("GET");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), None);
}

/// A backend that answers one request with `first`, then waits for the test's word and sends
/// `rest`.
fn stepping_backend(first: Vec<u8>, rest: Vec<u8>) -> (SocketAddr, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = read_some(&mut stream, &mut buf);
            assert!(n > 0, "the proxy closed before its request");
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(&first).unwrap();
        if wait.recv_timeout(DEADLINE).is_ok() {
            let _ = stream.write_all(&rest);
        }
        let _ = stream.read(&mut buf);
    });
    (addr, go)
}

fn a_streamed_response_is_flushed_as_it_comes(driver: &str) {
    let event = b"data: {\"n\":1}\n\n";
    let mut first =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    first.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
    first.extend_from_slice(event);
    first.extend_from_slice(b"\r\n");
    let rest = b"f\r\ndata: {\"n\":2}\n\n\r\n0\r\n\r\n".to_vec();
    let (addr, go) = stepping_backend(first, rest);
    let proxy = Proxy::start(&spec_config(driver, &[addr], ENABLED));
    let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
    stream.write_all(&get("/events", "gzip")).unwrap();

    // Before the backend sends more: the head and a chunk that decodes to the first event.
    let mut received = Vec::new();
    let mut decoded = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    while decoded != event {
        assert!(
            std::time::Instant::now() < deadline,
            "first event not flushed: {received:?}"
        );
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let n = read_some(&mut stream, &mut buf);
        assert!(n > 0, "closed early");
        received.extend_from_slice(&buf[..n]);
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..head_end]);
        assert!(head.contains("\r\nContent-Encoding: gzip"), "{head}");
        // Whole chunks so far, decoded as far as they go.
        let mut body = &received[head_end + 4..];
        let mut compressed = Vec::new();
        while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
            if body.len() < line_end + 2 + size + 2 {
                break;
            }
            compressed.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
            body = &body[line_end + 4 + size..];
        }
        decoded.clear();
        let mut decoder = flate2::read::GzDecoder::new(&compressed[..]);
        let mut out = [0u8; 256];
        if let Ok(n) = decoder.read(&mut out) {
            decoded.extend_from_slice(&out[..n]);
        }
    }
    go.send(()).unwrap();
    let mut conn_rest = Vec::new();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    while !conn_rest.ends_with(b"0\r\n\r\n") {
        let n = read_some(&mut stream, &mut buf);
        assert!(n > 0, "closed before the end");
        conn_rest.extend_from_slice(&buf[..n]);
    }
    received.extend_from_slice(&conn_rest);
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let all = decode("gzip", &dechunk(&received[head_end + 4..]));
    assert_eq!(all, b"data: {\"n\":1}\n\ndata: {\"n\":2}\n\n");
}

fn a_backend_failing_mid_body_leaves_a_truncated_body(driver: &str) {
    let body = json(200);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let backend = RawBackend::start(Reply::ThenClose(answer(&head, &body[..body.len() / 2])));
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ENABLED));
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/", "gzip"));
    let received = conn.read_to_eof();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Encoding: gzip\r\n"), "{text}");
    assert!(
        !received.ends_with(b"0\r\n\r\n"),
        "a truncated body never gets its last chunk"
    );
}

fn curl_compressed_decodes_it(driver: &str) {
    let curl = require_tool("curl", "apt-get install curl");
    let body = json(500);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let backend = RawBackend::start(Reply::Fixed(answer(&head, &body)));
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], ENABLED));
    let output = std::process::Command::new(curl)
        .args(["-s", "--compressed", "-D", "-", "--max-time", "5"])
        .arg(format!("http://{}/", proxy.addr))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = output.stdout;
    let head_end = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&text[..head_end]);
    assert!(head.contains("\r\nContent-Encoding: "), "{head}");
    assert_eq!(&text[head_end..], &body[..], "curl decoded the original");
}

/// A route that compresses and has response header rules: the backend's `Server` is hidden, the
/// rule's field and compression's fields all in one head, the body decoded whole.
fn header_rules_and_compression_share_the_head(driver: &str) {
    let body = json(300);
    let backend = RawBackend::start(Reply::Fixed(answer(
        &format!(
            "HTTP/1.1 200 OK\r\nServer: origin/1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        ),
        &body,
    )));
    let config = format!(
        "[runtime]\nworkers = 1\ndriver = \"{driver}\"\ndrain_timeout = \"2s\"\n\
         [listener.http]\naddress = \"127.0.0.1:0\"\n\
         [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\ncompress = true\n\
         response_headers = {{ remove = [\"Server\"], add = {{ \"X-Backend\" = \"{{backend}}\" }} }}\n\
         [upstream.api]\nbackends = [\"{}\"]\n",
        backend.addr
    );
    let proxy = Proxy::start(&config);
    let mut conn = RawConn::open(proxy.addr);
    conn.send(&get("/data", "gzip"));
    let response = conn.read_response("GET");
    assert_head(
        &response,
        &format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Backend: {}\r\n\
             Vary: Accept-Encoding\r\nContent-Encoding: gzip\r\nX-Request-Id: {{id}}\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            backend.addr
        ),
    );
    assert_eq!(decode("gzip", &dechunk(&response.body)), body);
    proxy.stop();
}

/// One read of what has arrived, retried when a signal interrupts it (the proxy runs in this
/// process, and a read with a timeout is not restarted after a signal).
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> usize {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            outcome => return outcome.unwrap(),
        }
    }
}
