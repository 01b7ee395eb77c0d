//! Request heads: strict parsing, httparse plus every request rule of docs/http.md.
//!
//! Flow: [`parse_request`] applies the limits (431/414, decided even on an incomplete head), then
//! httparse checks the syntax of the request line and of each field line (token names, no space
//! before the colon, no obs-fold, no CR/LF/NUL/controls in values, bare LF accepted). A complete
//! head goes to `request_fields.rs`, which checks what the fields mean and marks those not copied
//! upstream; `forward.rs` rebuilds the head sent upstream from the buffer and those marks.

use super::headers::{is_tchar, FieldMask};
use super::request_fields::{validate, RequestLine};
use super::target::TargetForm;
use super::trace_context::Traceparent;
use super::{Method, RequestBody, Version};
use crate::config::{HeaderEdits, TemplateVars};
use std::mem::MaybeUninit;
use std::net::IpAddr;

/// Limits applied while parsing a request head (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line + headers + final CRLF. More bytes without a complete head → `HeadTooLarge`.
    pub max_head_bytes: usize,
    /// Request target length → `UriTooLong`.
    pub max_uri_bytes: usize,
    /// Number of header fields → `TooManyHeaders`. At most 256 (larger values act as 256).
    pub max_headers: usize,
}

/// Why a request was refused. Each maps to one status; `reason()` is the short text the client
/// sees in the error body. Every such error closes the client connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// 400: malformed or ambiguous. The text names what was wrong, e.g.
    /// "both Content-Length and Transfer-Encoding".
    #[error("{0}")]
    BadRequest(&'static str),
    /// 414
    #[error("request target longer than the limit")]
    UriTooLong,
    /// 431: header section over `max_head_bytes`.
    #[error("request header section larger than the limit")]
    HeadTooLarge,
    /// 431
    #[error("too many request header fields")]
    TooManyHeaders,
    /// 501: a transfer coding we do not implement (anything but `chunked`).
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::UriTooLong => 414,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::NotImplemented(_) => 501,
        }
    }

    /// The short text for the error body and the log line (the `Display` text, without
    /// formatting).
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::BadRequest(why) | RequestError::NotImplemented(why) => why,
            RequestError::UriTooLong => "request target longer than the limit",
            RequestError::HeadTooLarge => "request header section larger than the limit",
            RequestError::TooManyHeaders => "too many request header fields",
        }
    }
}

/// What the proxy adds when forwarding a request.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// The client's address: appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// `X-Forwarded-Proto` value: "http" or "https".
    pub proto: &'static str,
    /// `X-Request-Id` value (replaces any incoming one; the proxy passes the incoming one back in
    /// when it was acceptable).
    pub request_id: &'a str,
    /// The W3C `traceparent` to send: the client's, or a trace the proxy started.
    pub traceparent: &'a Traceparent,
    /// Whether the proxy wants the upstream connection kept alive (`Connection: keep-alive` is
    /// implicit in HTTP/1.1: write `Connection: close` only when false).
    pub upstream_keep_alive: bool,
    /// The origin-form target (path and query) to send instead of the client's: the route's
    /// rewrite. `None`: the client's target.
    pub target: Option<&'a [u8]>,
    /// The route's request header rules and what their values name. `None`: the route has none.
    pub edits: Option<(&'a HeaderEdits, &'a TemplateVars<'a>)>,
    /// The client's `X-Forwarded-For` and `Forwarded` fields are believed (it is a trusted
    /// proxy): kept and appended to. Otherwise they are dropped and `X-Forwarded-For` names
    /// `client_ip` alone.
    pub trust_forwarded: bool,
    /// The client certificate that verified in the TLS handshake (mTLS), for the backend
    /// (`X-Client-Cert-Subject`, `X-Client-Cert-Fingerprint`); `None`: none was presented (or
    /// the listener asks for none). A client's own fields of these names are always dropped.
    pub client_cert: Option<&'a ClientCertificate>,
}

/// A client certificate verified in a connection's TLS handshake, as backends are told of it:
/// rendered once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The leaf's subject, RFC 4514 (`CN=alice,O=Example`), escaped to be a valid field value.
    pub subject: Box<str>,
    /// SHA-256 of the leaf's DER, lowercase hex.
    pub fingerprint: Box<str>,
}

/// A complete, validated request head borrowed from the read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The method as sent (for `Other` and for logs).
    pub method_str: &'a str,
    /// The request target as sent (origin-form, absolute-form, authority-form for CONNECT, or `*`).
    pub target: &'a str,
    pub version: Version,
    /// Host (from the Host header; for absolute-form, the target's authority), without port,
    /// lowercased only by the router. `None` only for HTTP/1.0 without Host. An IPv6 literal
    /// keeps its brackets (`[::1]`).
    pub host: Option<&'a str>,
    pub body: RequestBody,
    /// Whether the client connection may be kept open after this exchange (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and removed from the forwarded head: the proxy answers
    /// `100 Continue` itself or relays the backend's).
    pub expect_continue: bool,
    /// `Upgrade` value when `Connection: upgrade` was sent (e.g. "websocket").
    pub upgrade: Option<&'a str>,
    /// An incoming `X-Request-Id` when it is 1..=128 visible ASCII characters.
    pub request_id: Option<&'a str>,
    /// The first valid incoming W3C `traceparent` (its 55 characters; see
    /// [`Traceparent::from_valid`]).
    pub traceparent: Option<&'a [u8]>,
    /// Bytes of the head, including the final empty line. The body starts at `buf[head_len..]`.
    pub head_len: usize,
    /// How the target is written upstream (origin-form for absolute-form targets).
    pub(super) target_form: TargetForm,
    /// The authority sent upstream as `Host` and `X-Forwarded-Host`: the Host value as received,
    /// or the absolute-form target's authority, which RFC 9112 §3.2.2 says overrides Host.
    pub(super) authority: Option<&'a str>,
    /// The field lines of the head, from the first field to the end of the empty line.
    pub(super) fields: &'a [u8],
    /// Fields not copied upstream as they came.
    pub(super) dropped: FieldMask,
    /// `X-Forwarded-For` fields, folded into the one we write.
    pub(super) forwarded_for: FieldMask,
    /// `Forwarded` fields: copied as they came from a trusted sender, dropped otherwise.
    pub(super) forwarded: FieldMask,
    /// `Content-Length: 0` was sent; forwarded so that e.g. a POST without content keeps its
    /// length (some servers answer 411 otherwise).
    pub(super) explicit_zero_length: bool,
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (unless `buf.len()` already exceeds the limits, which is an
/// error, not `None`). `Ok(Some)`: a complete head that passed every check of docs/http.md.
///
/// Limits: an incomplete head is `HeadTooLarge` as soon as `buf.len() >= max_head_bytes` (it
/// cannot complete within the limit any more), so a read buffer of `max_head_bytes` always gets
/// an answer once full. A target over `max_uri_bytes` is `UriTooLong` even before the request line
/// is complete, and takes precedence over `HeadTooLarge`. Only the first `max_head_bytes` bytes
/// are ever parsed.
///
/// Always inlined: the proxy's request loop and the admin server both call it, and as a call the
/// proxy's path costs measurably more (callgrind: about 80 instructions per request).
#[inline(always)]
pub fn parse_request<'a>(
    buf: &'a [u8],
    limits: &HeadLimits,
) -> Result<Option<Request<'a>>, RequestError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    // httparse writes every field it parses; uninitialised storage spares zeroing 8 KiB for
    // each request.
    let mut storage = [MaybeUninit::<httparse::Header<'a>>::uninit(); FieldMask::CAPACITY];
    let max_fields = limits.max_headers.min(FieldMask::CAPACITY);
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(window, &mut storage[..max_fields]) {
        Ok(httparse::Status::Complete(head_len)) => {
            let (Some(method_str), Some(target), Some(minor)) =
                (parsed.method, parsed.path, parsed.version)
            else {
                unreachable!("httparse fills the request line of a complete head");
            };
            if target.len() > limits.max_uri_bytes {
                return Err(RequestError::UriTooLong);
            }
            let version = if minor == 0 {
                Version::Http10
            } else {
                Version::Http11
            };
            let line = RequestLine {
                method: method_from(method_str),
                method_str,
                target,
                version,
            };
            validate(buf, head_len, line, parsed.headers).map(Some)
        }
        Ok(httparse::Status::Partial) => {
            if target_exceeds(buf, limits) {
                Err(RequestError::UriTooLong)
            } else if buf.len() >= limits.max_head_bytes {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(None)
            }
        }
        // An over-long target can make httparse fail on a later byte: name the real cause.
        Err(_) if target_exceeds(buf, limits) => Err(RequestError::UriTooLong),
        Err(error) => Err(syntax_error(error)),
    }
}

fn method_from(method: &str) -> Method {
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is an extension method.
    match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "CONNECT" => Method::Connect,
        "PATCH" => Method::Patch,
        _ => Method::Other,
    }
}

fn syntax_error(error: httparse::Error) -> RequestError {
    use httparse::Error;
    RequestError::BadRequest(match error {
        Error::TooManyHeaders => return RequestError::TooManyHeaders,
        // A space before the colon, a leading space (obs-fold or an obfuscated first field) and
        // a control byte in a name all end up here.
        Error::HeaderName => "invalid header field name or obs-fold line",
        Error::HeaderValue => "invalid byte in header field value",
        Error::NewLine => "invalid line ending",
        Error::Version => "unsupported HTTP version",
        Error::Token | Error::Status => "invalid request line",
    })
}

/// Whether the target of a possibly incomplete (or invalid) request line already exceeds
/// `max_uri_bytes`. It reads the line exactly as httparse does up to the first byte httparse
/// would refuse, so that a prefix of the input never gets a different answer than the whole;
/// and only within the window httparse saw, which bounds the work.
fn target_exceeds(buf: &[u8], limits: &HeadLimits) -> bool {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    // Empty lines before the request line are skipped (RFC 9112 §2.2); a bare CR is not one.
    let mut start = 0;
    loop {
        match window[start..] {
            [b'\r', b'\n', ..] => start += 2,
            [b'\n', ..] => start += 1,
            _ => break,
        }
    }
    let method_len = window[start..].iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == 0 || window.get(start + method_len) != Some(&b' ') {
        return false;
    }
    let target = &window[start + method_len + 1..];
    // The bytes httparse accepts in a target: visible ASCII and obs-text.
    let target_len = target
        .iter()
        .take(limits.max_uri_bytes.saturating_add(1))
        .take_while(|&&b| matches!(b, b'!'..=b'~' | 0x80..=0xff))
        .count();
    target_len > limits.max_uri_bytes
}

/// Helpers shared by the request test modules.
#[cfg(test)]
pub(super) mod test_support {
    use super::*;

    pub(in crate::http) const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 4096,
        max_uri_bytes: 1024,
        max_headers: 32,
    };

    pub(in crate::http) fn parse(raw: &[u8]) -> Result<Option<Request<'_>>, RequestError> {
        parse_request(raw, &LIMITS)
    }

    pub(in crate::http) fn complete(raw: &str) -> Request<'_> {
        parse(raw.as_bytes())
            .expect("valid request")
            .expect("complete head")
    }

    pub(in crate::http) fn refused(raw: &str) -> RequestError {
        parse(raw.as_bytes()).expect_err("must be refused")
    }

    pub(in crate::http) fn bad(why: &'static str) -> RequestError {
        RequestError::BadRequest(why)
    }
}

#[cfg(test)]
mod tests {
    use super::super::trace_context::TracePrefix;
    use super::*;
    use proptest::prelude::*;

    use super::test_support::*;

    #[test]
    fn reason_is_the_display_text() {
        for error in [
            bad("invalid Host"),
            RequestError::UriTooLong,
            RequestError::HeadTooLarge,
            RequestError::TooManyHeaders,
            RequestError::NotImplemented("transfer coding other than chunked"),
        ] {
            assert_eq!(error.reason(), error.to_string());
        }
    }

    #[test]
    fn simple_get() {
        let raw = "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\nBODY";
        let request = complete(raw);
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.method_str, "GET");
        assert_eq!(request.target, "/a?b");
        assert_eq!(request.version, Version::Http11);
        assert_eq!(request.host, Some("example.com"));
        assert_eq!(request.body, RequestBody::None);
        assert!(request.keep_alive);
        assert!(!request.expect_continue);
        assert_eq!(request.upgrade, None);
        assert_eq!(request.request_id, None);
        assert_eq!(request.head_len, raw.len() - "BODY".len());
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        assert!(matches!(parse(b""), Ok(None)));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r"),
            Ok(None)
        ));
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(
            complete("PATCH / HTTP/1.1\r\nHost: a\r\n\r\n").method,
            Method::Patch
        );
        let other = complete("get / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((other.method, other.method_str), (Method::Other, "get"));
    }

    // http.md: obfuscated names: space before the colon, " Transfer-Encoding", control bytes
    // around the value → 400.
    #[test]
    fn obfuscated_field_names_and_values() {
        let name = bad("invalid header field name or obs-fold line");
        let value = bad("invalid byte in header field value");
        let cases = [
            ("Transfer-Encoding : chunked\r\n", &name),
            ("Transfer-Encoding\t: chunked\r\n", &name),
            (" Transfer-Encoding: chunked\r\n", &name),
            ("\tTransfer-Encoding: chunked\r\n", &name),
            ("Transfer\0Encoding: chunked\r\n", &name),
            ("Transfer-Encoding:\x0bchunked\r\n", &value),
            ("Transfer-Encoding: chunked\x0c\r\n", &value),
            ("Content-Length: \x015\r\n", &value),
            ("X-Del: a\x7fb\r\n", &value),
        ];
        for (field, error) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{field}\r\n");
            assert_eq!(&refused(&raw), error, "{field:?}");
        }
        // Also as the very first field line, right after the request line.
        assert_eq!(
            refused("POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n"),
            name
        );
    }

    // http.md: obs-fold → 400 (we never unfold).
    #[test]
    fn obs_fold() {
        let error = bad("invalid header field name or obs-fold line");
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n"),
            error
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n"),
            error
        );
    }

    // http.md: CR, LF or NUL inside a field value; bare CR anywhere → 400.
    #[test]
    fn cr_lf_nul_in_values_and_bare_cr() {
        let value = bad("invalid byte in header field value");
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
            value
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
            value
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n"),
            value
        );
        // An LF inside a value ends the line; what follows is not a field.
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\nb c\r\n\r\n"),
            bad("invalid header field name or obs-fold line")
        );
        assert_eq!(
            refused("GET / HTTP/1.1\rHost: a\r\n\r\n"),
            bad("invalid line ending")
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n"),
            bad("invalid line ending")
        );
        assert_eq!(
            refused("GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n"),
            bad("invalid request line")
        );
    }

    // http.md: bare LF line endings → accepted (forwarded with CRLF, see forward.rs).
    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let raw = "POST /x HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc";
        let request = complete(raw);
        assert_eq!(request.body, RequestBody::Length(3));
        assert_eq!(request.head_len, raw.len() - 3);
    }

    // http.md: `GET *`, `CONNECT` without a port, a relative target without `/` → 400;
    // `OPTIONS *` is valid.
    #[test]
    fn target_forms() {
        assert_eq!(
            refused("GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            bad("`*` target is only valid for OPTIONS")
        );
        assert_eq!(
            refused("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n"),
            bad("CONNECT target must be host:port")
        );
        assert_eq!(
            refused("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"),
            bad("request target must start with `/`")
        );
        assert_eq!(
            refused("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"),
            bad("invalid byte in request target")
        );
        let options = complete("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((options.method, options.target), (Method::Options, "*"));
        let connect = complete("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
        assert_eq!(connect.method, Method::Connect);
    }

    #[test]
    fn only_http10_and_http11() {
        for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "http/1.1", "HTTP/2"] {
            let raw = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(refused(&raw), bad("unsupported HTTP version"), "{version}");
        }
        assert_eq!(
            refused("GET / HTTP/1.10\r\nHost: a\r\n\r\n"),
            bad("invalid line ending")
        );
        assert_eq!(refused("GET /\r\n\r\n"), bad("invalid request line"));
        assert_eq!(
            refused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
            bad("invalid request line")
        );
    }

    // http.md: request line or header section over the limit; too many headers → 431 (414 for
    // an over-long URI), decided without waiting for the rest.
    #[test]
    fn limits() {
        let limits = HeadLimits {
            max_head_bytes: 64,
            max_uri_bytes: 16,
            max_headers: 2,
        };
        let parse =
            |raw: &str| parse_request(raw.as_bytes(), &limits).map(|r| r.map(|r| r.head_len));
        // At the head limit exactly: accepted.
        let head_with_value = |len: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
                "v".repeat(len)
            )
        };
        let exact = head_with_value(64 - head_with_value(0).len());
        assert_eq!(exact.len(), 64);
        assert_eq!(parse(&exact), Ok(Some(64)));
        // One byte more, complete or not: 431.
        let over = head_with_value(65 - head_with_value(0).len());
        assert_eq!(parse(&over), Err(RequestError::HeadTooLarge));
        assert_eq!(parse(&over[..64]), Err(RequestError::HeadTooLarge));
        assert_eq!(parse(&over[..63]), Ok(None));
        // Too many fields.
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n"),
            Err(RequestError::TooManyHeaders)
        );
        assert_eq!(RequestError::TooManyHeaders.status(), 431);
        // URI: complete, incomplete request line, and incomplete target.
        let long = "/".repeat(17);
        assert_eq!(
            parse(&format!(
                "GET {} HTTP/1.1\r\nHost: a\r\n\r\n",
                "/".repeat(16)
            ))
            .map(|r| r.is_some()),
            Ok(true)
        );
        assert_eq!(
            parse(&format!("GET {long} HTTP/1.1\r\nHost: a\r\n\r\n")),
            Err(RequestError::UriTooLong)
        );
        assert_eq!(
            parse(&format!("GET {long} HTTP/1")),
            Err(RequestError::UriTooLong)
        );
        assert_eq!(parse(&format!("GET {long}")), Err(RequestError::UriTooLong));
        assert_eq!(parse(&format!("GET {}", "/".repeat(16))), Ok(None));
        // A URI that is also past the head limit is reported as a URI problem.
        assert_eq!(
            parse(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(100))),
            Err(RequestError::UriTooLong)
        );
        assert_eq!(RequestError::UriTooLong.status(), 414);
        assert_eq!(RequestError::HeadTooLarge.status(), 431);
    }

    /// The early 414 must not fire where httparse already failed on an earlier byte, or a
    /// prefix of the input would get 400 and the whole input 414 (found by the property test).
    #[test]
    fn early_uri_too_long_only_counts_what_httparse_would_accept() {
        let limits = HeadLimits {
            max_head_bytes: 4096,
            max_uri_bytes: 8,
            max_headers: 8,
        };
        let parse = |raw: &[u8]| parse_request(raw, &limits).map(|r| r.is_some());
        let invalid_line = Err(RequestError::BadRequest("invalid request line"));
        assert_eq!(parse(b"GET \t/aaaaaaaaaaaa HTTP/1.1\r\n"), invalid_line);
        assert_eq!(parse(b"GET \t/aaaaaaaaaaaa"), invalid_line);
        assert_eq!(parse(b"G\0T /aaaaaaaaaaaa HTTP/1.1\r\n"), invalid_line);
        assert_eq!(
            parse(b"\r\rGET /aaaaaaaaaaaa"),
            Err(RequestError::BadRequest("invalid line ending"))
        );
        assert_eq!(
            parse(b"\r\nGET /aaaaaaaaaaaa"),
            Err(RequestError::UriTooLong)
        );
    }

    #[test]
    fn max_headers_is_clamped_to_the_field_mask() {
        let limits = HeadLimits {
            max_head_bytes: 64 * 1024,
            max_uri_bytes: 1024,
            max_headers: 10_000,
        };
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..FieldMask::CAPACITY {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            parse_request(raw.as_bytes(), &limits).map(|r| r.is_some()),
            Err(RequestError::TooManyHeaders)
        );
    }

    /// A valid request head from generated parts, with its body.
    fn valid_request() -> impl Strategy<Value = (String, usize)> {
        let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PURGE"]);
        let path = "/[a-z0-9/._-]{0,20}(\\?[a-z0-9=&]{0,10})?";
        let fields = prop::collection::vec(("X-[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..6);
        let body = prop::option::of("[a-z]{1,10}");
        let crlf = prop::collection::vec(any::<bool>(), 10);
        (method, path, fields, body, crlf).prop_map(|(method, path, fields, body, crlf)| {
            let mut endings = crlf
                .into_iter()
                .cycle()
                .map(|crlf| if crlf { "\r\n" } else { "\n" });
            let mut raw = format!(
                "{method} {path} HTTP/1.1{}Host: example.com{}",
                endings.next().unwrap(),
                endings.next().unwrap()
            );
            for (name, value) in fields {
                raw.push_str(&format!("{name}: {value}{}", endings.next().unwrap()));
            }
            if let Some(body) = &body {
                raw.push_str(&format!(
                    "Content-Length: {}{}",
                    body.len(),
                    endings.next().unwrap()
                ));
            }
            raw.push_str(endings.next().unwrap());
            let head_len = raw.len();
            raw.push_str(body.as_deref().unwrap_or(""));
            (raw, head_len)
        })
    }

    fn upstream_head(request: &Request<'_>) -> Vec<u8> {
        let ctx = ForwardContext {
            client_ip: IpAddr::from([192, 0, 2, 1]),
            proto: "http",
            request_id: "id",
            traceparent: &Traceparent::start(&TracePrefix::new(0), 1, 2),
            upstream_keep_alive: true,
            target: None,
            edits: None,
            trust_forwarded: true,
            client_cert: None,
        };
        let mut out = Vec::new();
        request.write_upstream_head(&ctx, &mut out);
        out
    }

    proptest! {
        /// Every prefix of a valid head is "read more"; the whole gives one result whatever
        /// follows it.
        #[test]
        fn prefixes_of_a_valid_head_are_incomplete((raw, head_len) in valid_request()) {
            let full = parse(raw.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(full.head_len, head_len);
            let expected = upstream_head(&full);
            for end in 0..head_len {
                prop_assert!(matches!(parse(&raw.as_bytes()[..end]), Ok(None)), "prefix {}", end);
            }
            let head_only = parse(&raw.as_bytes()[..head_len]).unwrap().unwrap();
            prop_assert_eq!(upstream_head(&head_only), expected.clone());
            prop_assert_eq!(head_only.body, full.body);
            prop_assert!(!expected.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF forwarded");
        }

        /// With bytes inserted anywhere, a prefix never disagrees with the whole: it is
        /// incomplete, or fails the same way, or ends at the same head.
        #[test]
        fn prefixes_never_disagree_with_the_whole(
            (raw, _) in valid_request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"\r\n :\t\0,/*".to_vec())), 1..4),
        ) {
            let mut raw = raw.into_bytes();
            for (at, byte) in edits {
                let at = at.index(raw.len() + 1);
                raw.insert(at, byte);
            }
            let limits = HeadLimits { max_head_bytes: 160, max_uri_bytes: 24, max_headers: 5 };
            let whole = parse_request(&raw, &limits).map(|r| r.map(|r| r.head_len));
            for end in 0..raw.len() {
                match parse_request(&raw[..end], &limits) {
                    Ok(None) => {}
                    Ok(Some(request)) => prop_assert_eq!(&whole, &Ok(Some(request.head_len)), "prefix {}", end),
                    Err(error) => prop_assert_eq!(&whole, &Err(error), "prefix {}", end),
                }
            }
        }
    }
}
