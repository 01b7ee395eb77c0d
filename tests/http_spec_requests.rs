//! docs/http.md, "Requests (client → proxy)", framing rows, end to end: a raw client sends exact
//! bytes to an in-process proxy, and a raw recording backend shows exactly what was forwarded.
//! Every refused case asserts the proxy's exact error response, that the client connection closes,
//! and that the backend was never contacted (or, for a body refused after its head went out, that
//! the backend got exactly the head and then a closed connection, never a complete request). Every
//! accepted case asserts the exact forwarded bytes and that the connection stays in sync.
//!
//! The other request rows (Host, targets, limits, timeouts, Expect, Connection, X-Forwarded-For)
//! are in `http_spec_request_fields.rs`; responses in `http_spec_responses.rs`; buffering across
//! splits in `http_spec_splits.rs`.

mod common;

use common::backend::{RawBackend, Reply};
use common::on_both_drivers;
use common::spec::{
    assert_all_body_refused, assert_all_forwarded, assert_all_refused, forwarded, refused,
    spec_config, upstream, BodyRefused,
};
use common::Proxy;

on_both_drivers!(
    content_length_with_transfer_encoding_is_400_and_nothing_is_forwarded,
    invalid_or_conflicting_content_length_is_400,
    identical_content_length_repeats_are_collapsed,
    bad_transfer_encoding_is_400_or_501,
    transfer_encoding_in_http10_is_400,
    obfuscated_field_names_and_values_are_400,
    obs_fold_is_400,
    cr_lf_nul_in_values_and_bare_cr_are_400,
    bare_lf_line_endings_are_forwarded_as_crlf,
    bad_chunked_framing_is_400_after_only_the_head_was_forwarded,
    valid_chunked_body_is_forwarded_canonically,
    body_over_the_limit_is_413,
);

/// A proxy with one worker in front of an echoing backend.
fn echo_proxy(driver: &str, extra: &str) -> (RawBackend, Proxy) {
    let backend = RawBackend::start(Reply::Echo);
    let proxy = Proxy::start(&spec_config(driver, &[backend.addr], extra));
    (backend, proxy)
}

// http.md: `Content-Length` and `Transfer-Encoding` both present → 400 and close; never forward
// both, never forward the bytes after the first message as a second request.
fn content_length_with_transfer_encoding_is_400_and_nothing_is_forwarded(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let both = "both Content-Length and Transfer-Encoding";
    let cases = [
        refused(
            "CL then TE, with a smuggled request behind",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            both,
        ),
        refused(
            "TE then CL, with a smuggled request behind",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            both,
        ),
        refused(
            "TE with Content-Length: 0",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
            400,
            both,
        ),
        refused(
            "unknown coding with CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
            400,
            both,
        ),
        refused(
            "lowercase names",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            both,
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: two different `Content-Length` values, or `5, 6`, `+5`, `-1`, `0x5`, empty, overflow
// → 400 and close.
fn invalid_or_conflicting_content_length_is_400(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let conflicting = "conflicting Content-Length values";
    let invalid = "invalid Content-Length";
    let cases = [
        refused(
            "two different values",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
            conflicting,
        ),
        refused(
            "5, 6",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
            400,
            conflicting,
        ),
        refused(
            "+5",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
            400,
            invalid,
        ),
        refused(
            "-1",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            400,
            invalid,
        ),
        refused(
            "0x5",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
            400,
            invalid,
        ),
        refused(
            "empty",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            400,
            invalid,
        ),
        refused(
            "empty element",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\nhello",
            400,
            invalid,
        ),
        refused(
            "overflow",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            400,
            invalid,
        ),
        refused(
            "5 5",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello",
            400,
            invalid,
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: identical repeats like `5, 5` may be collapsed: forwarded with one Content-Length
// written by the proxy.
fn identical_content_length_repeats_are_collapsed(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let expected = upstream(
        "POST /p HTTP/1.1\r\nHost: a\r\n",
        "Content-Length: 5\r\n\r\nhello",
    );
    let cases = [
        forwarded(
            "5, 5",
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
            expected.clone(),
        ),
        forwarded(
            "two lines of 5",
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
            expected.clone(),
        ),
        forwarded(
            "leading zeros and whitespace",
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length:  005 \r\n\r\nhello",
            expected,
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: `Transfer-Encoding` with an unknown coding, `chunked` not last, `chunked, chunked` →
// 400 (or 501 for an unknown coding) and close.
fn bad_transfer_encoding_is_400_or_501(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let unsupported = "transfer coding other than chunked";
    let not_last = "chunked is not the final transfer coding";
    let twice = "chunked applied more than once";
    let cases = [
        refused(
            "unknown coding before chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            unsupported,
        ),
        refused(
            "unknown coding on its own line",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
            unsupported,
        ),
        refused(
            "unknown coding only",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            400,
            not_last,
        ),
        refused(
            "chunked not last",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            400,
            not_last,
        ),
        refused(
            "identity",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\nhello",
            400,
            not_last,
        ),
        refused(
            "chunked, chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            400,
            twice,
        ),
        refused(
            "chunked on two lines",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            twice,
        ),
        refused(
            "parameters",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
        refused(
            "quoted",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: `Transfer-Encoding` in an HTTP/1.0 request → 400 and close.
fn transfer_encoding_in_http10_is_400(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        refused(
            "HTTP/1.0 chunked",
            b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
        refused(
            "HTTP/1.0 chunked, keep-alive, no Host",
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: obfuscated names: space before the colon, `" Transfer-Encoding"`, control bytes around
// the value → 400.
fn obfuscated_field_names_and_values_are_400(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let name = "invalid header field name or obs-fold line";
    let value = "invalid byte in header field value";
    let cases = [
        refused(
            "space before the colon",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            400,
            name,
        ),
        refused(
            "tab before the colon",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello",
            400,
            name,
        ),
        refused(
            "leading space, first field",
            b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n",
            400,
            name,
        ),
        refused(
            "leading space, later field",
            b"POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            name,
        ),
        refused(
            "NUL in the name",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer\0Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            name,
        ),
        refused(
            "vertical tab before the value",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
            400,
            value,
        ),
        refused(
            "form feed after the value",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0c\r\n\r\n0\r\n\r\n",
            400,
            value,
        ),
        refused(
            "control byte in Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \x015\r\n\r\nhello",
            400,
            value,
        ),
        refused(
            "DEL in a value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Del: a\x7fb\r\n\r\n",
            400,
            value,
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: obs-fold → 400 (the proxy never unfolds), never forward CR/LF inside a value.
fn obs_fold_is_400(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let name = "invalid header field name or obs-fold line";
    let cases = [
        refused(
            "fold with SP",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n",
            400,
            name,
        ),
        refused(
            "fold with HTAB",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n",
            400,
            name,
        ),
        refused(
            "folded Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
            400,
            name,
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: CR, LF or NUL inside a field value; bare CR anywhere → 400.
fn cr_lf_nul_in_values_and_bare_cr_are_400(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let value = "invalid byte in header field value";
    let line_ending = "invalid line ending";
    let cases = [
        refused(
            "CR inside a value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            400,
            value,
        ),
        refused(
            "NUL inside a value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
            400,
            value,
        ),
        refused(
            "CR CR LF",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n",
            400,
            value,
        ),
        refused(
            "LF inside a value starts a bad field",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb c\r\n\r\n",
            400,
            "invalid header field name or obs-fold line",
        ),
        refused(
            "bare CR after the request line",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            400,
            line_ending,
        ),
        refused(
            "bare CR as the empty line",
            b"GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n",
            400,
            line_ending,
        ),
        refused(
            "bare CR in the target",
            b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "invalid request line",
        ),
    ];
    assert_all_refused(proxy.addr, &backend, &cases);
}

// http.md: bare LF line endings → accept and normalise to CRLF when forwarding.
fn bare_lf_line_endings_are_forwarded_as_crlf(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        forwarded(
            "every line",
            b"POST /x HTTP/1.1\nHost: a\nX-A: 1\nContent-Length: 3\n\nabc",
            upstream(
                "POST /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n",
                "Content-Length: 3\r\n\r\nabc",
            ),
        ),
        forwarded(
            "mixed",
            b"GET /y HTTP/1.1\r\nHost: a\nX-A:\t 1 \r\nX-B:\n\r\n",
            upstream("GET /y HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: \r\n", "\r\n"),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

/// The head forwarded for `POST /c` with a chunked body, before the body is read.
fn chunked_head() -> String {
    upstream(
        "POST /c HTTP/1.1\r\nHost: a\r\n",
        "Transfer-Encoding: chunked\r\n\r\n",
    )
}

fn bad_chunked(name: &'static str, body: &[u8], why: &'static str) -> BodyRefused {
    let mut raw = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    BodyRefused {
        name,
        raw,
        status: 400,
        detail: why,
        upstream_head: chunked_head(),
    }
}

// http.md: chunk size overflow, `0x`/`+`/`-` prefixes, whitespace, bad chunk-ext, data
// longer/shorter than declared → 400 and close; never forward a "valid prefix". Bare LF inside
// chunked framing → 400. The head went upstream before the body was read; the backend gets
// nothing more, not even the valid chunk that came before the bad one, and its connection closes.
fn bad_chunked_framing_is_400_after_only_the_head_was_forwarded(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        bad_chunked(
            "size overflow",
            b"10000000000000005\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: chunk size too long",
        ),
        bad_chunked(
            "0x prefix",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: invalid byte in chunk header",
        ),
        bad_chunked(
            "+ prefix",
            b"+5\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: missing chunk size",
        ),
        bad_chunked(
            "- prefix",
            b"-5\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: missing chunk size",
        ),
        bad_chunked(
            "space before the size",
            b" 5\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: missing chunk size",
        ),
        bad_chunked(
            "space after the size",
            b"5 \r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: invalid byte in chunk header",
        ),
        bad_chunked(
            "space before an extension",
            b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: invalid byte in chunk header",
        ),
        bad_chunked(
            "empty extension",
            b"5;\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: invalid chunk extension name",
        ),
        bad_chunked(
            "extension without value",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: invalid chunk extension value",
        ),
        bad_chunked(
            "space in an extension",
            b"5; a=b\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: invalid chunk extension name",
        ),
        bad_chunked(
            "data longer than declared",
            b"3\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: chunk data not followed by CRLF",
        ),
        bad_chunked(
            "data shorter than declared",
            b"5\r\nabc\r\n0\r\n\r\n",
            "invalid chunked body: chunk data not followed by CRLF",
        ),
        bad_chunked(
            "a valid chunk, then a bad one",
            b"3\r\nabc\r\n+5\r\nhello\r\n0\r\n\r\n",
            "invalid chunked body: missing chunk size",
        ),
        bad_chunked(
            "bare LF after the size",
            b"5\nhello\r\n0\r\n\r\n",
            "invalid chunked body: bare LF in chunk header",
        ),
        bad_chunked(
            "bare LF after the data",
            b"5\r\nhello\n0\r\n\r\n",
            "invalid chunked body: chunk data not followed by CRLF",
        ),
        bad_chunked(
            "bare LF in the last chunk",
            b"0\n\n",
            "invalid chunked body: bare LF in chunk header",
        ),
        bad_chunked(
            "bare LF in the trailers",
            b"0\r\nX-T: 1\n\r\n",
            "invalid chunked body: bare LF in trailer section",
        ),
        bad_chunked(
            "obs-fold in the trailers",
            b"0\r\nX-T: 1\r\n folded\r\n\r\n",
            "invalid chunked body: invalid trailer field name",
        ),
    ];
    assert_all_body_refused(proxy.addr, &backend, &cases);
}

// The valid counterpart: sizes written canonically (lowercase hex, no leading zeros), extensions
// dropped, trailer fields kept except those the proxy gives a meaning to.
fn valid_chunked_body_is_forwarded_canonically(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "");
    let cases = [
        forwarded(
            "extensions, leading zeros, uppercase hex, trailers",
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1;q=\"a b\"\r\nhello\r\n00B\r\n, chunked!!\r\n000\r\nX-Checksum: abc\r\n\
              Content-Length: 99\r\nHost: evil\r\n\r\n",
            upstream(
                "POST /c HTTP/1.1\r\nHost: a\r\n",
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nb\r\n, chunked!!\r\n0\r\n\
                 X-Checksum: abc\r\n\r\n",
            ),
        ),
        forwarded(
            "empty body",
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
            upstream(
                "POST /c HTTP/1.1\r\nHost: a\r\n",
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ),
    ];
    assert_all_forwarded(proxy.addr, &backend, &cases);
}

// http.md: body larger than the configured maximum → 413. A Content-Length over the limit is
// refused before any backend is contacted; a chunked body is counted as it streams, so its head
// went out and the backend sees its connection closed before the body is complete. A body of
// exactly the limit goes through.
fn body_over_the_limit_is_413(driver: &str) {
    let (backend, proxy) = echo_proxy(driver, "[limits]\nmax_body = \"1KiB\"\n");
    let mut chunked = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                        200\r\n"
        .to_vec();
    chunked.extend_from_slice(&[b'x'; 0x200]);
    chunked.extend_from_slice(b"\r\n201\r\n");
    chunked.extend_from_slice(&[b'y'; 0x201]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_all_body_refused(
        proxy.addr,
        &backend,
        &[BodyRefused {
            name: "chunked, 1025 bytes",
            raw: chunked,
            status: 413,
            detail: "request body larger than the limit of 1024 bytes",
            upstream_head: chunked_head(),
        }],
    );
    let (backend, proxy) = echo_proxy(driver, "[limits]\nmax_body = \"1KiB\"\n");
    let mut over = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n".to_vec();
    over.extend_from_slice(&[b'z'; 1025]);
    let mut cases = vec![refused(
        "Content-Length: 1025",
        &over,
        413,
        "request body of 1025 bytes is larger than the limit of 1024 bytes",
    )];
    cases.push(refused(
        "Content-Length: 1025 with Expect: 100-continue, body not sent",
        b"POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n",
        413,
        "request body of 1025 bytes is larger than the limit of 1024 bytes",
    ));
    assert_all_refused(proxy.addr, &backend, &cases);

    let mut exact = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n".to_vec();
    exact.extend_from_slice(&[b'z'; 1024]);
    let expected = upstream(
        "POST /u HTTP/1.1\r\nHost: a\r\n",
        &format!("Content-Length: 1024\r\n\r\n{}", "z".repeat(1024)),
    );
    assert_all_forwarded(
        proxy.addr,
        &backend,
        &[forwarded("exactly the limit", &exact, expected)],
    );
}
