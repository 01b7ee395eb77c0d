//! Response heads from backends: strict parsing and the head we send to the client.
//!
//! Flow: httparse checks the status line and field syntax (no obs-fold, no space before a colon:
//! a backend that sends them gets a 502 rather than a lenient reading). One pass over the fields
//! reads framing and `Connection` and marks the fields not copied to the client; RFC 9112 §6.3
//! then decides the framing from the request method and the status. The client head is rebuilt
//! from the buffer and those marks, with framing written by us for the client's version.

use super::compress::{push_compression_fields, HeadChange};
use super::edits;
use super::framing::{ContentLength, TransferCodings};
use super::headers::{
    classify, list_elements, push_decimal, push_field, ConnectionOptions, FieldLines, FieldMask,
    KnownField,
};
use super::{Method, ResponseBody, Version};
use crate::config::{HeaderEdits, TemplateVars};
use std::mem::MaybeUninit;

/// Why a backend's response was refused: the client gets 502 and that upstream connection is
/// never reused. The text names only what was wrong (e.g. "invalid status line"); the caller says
/// whose response it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("response header section larger than the limit")]
    HeadTooLarge,
}

/// What the proxy decides about the client leg when writing a response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext<'a> {
    /// The client's request method and version.
    pub request_method: Method,
    pub client_version: Version,
    /// Whether the proxy will keep the client connection open after this response. When false,
    /// `Connection: close` is written.
    pub client_keep_alive: bool,
    /// Added as `X-Request-Id` when the response has none.
    pub request_id: &'a str,
    /// The route's response header rules and what their values name (`{backend}`: the backend
    /// that answered). Applied to final responses only: an interim one (`100`, `103`, `101
    /// Switching Protocols`) goes out as the backend sent it. `None`: the route has none.
    pub edits: Option<(&'a HeaderEdits, &'a TemplateVars<'a>)>,
    /// What compression changes ([`Response::compression`]); [`HeadChange::NONE`] on routes
    /// that do not compress.
    pub compression: HeadChange,
}

/// A complete, validated response head borrowed from the read buffer.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub version: Version,
    /// Framing as seen on the upstream leg, given the request method and the status.
    pub body: ResponseBody,
    /// Whether the backend lets us reuse the connection (HTTP/1.1 without `Connection: close`,
    /// HTTP/1.0 with `Connection: keep-alive`, and never for `UntilClose`).
    pub keep_alive: bool,
    /// Bytes of the head, including the final empty line.
    pub head_len: usize,
    /// The field lines of the head, from the first field to the end of the empty line.
    pub(super) fields: &'a [u8],
    /// Fields not copied to the client as they came.
    pub(super) dropped: FieldMask,
    /// The validated Content-Length, forwarded on bodiless HEAD and 304 responses, where it
    /// describes the representation rather than framing this message.
    content_length: Option<u64>,
    /// The `Upgrade` value, re-sent with a 101.
    upgrade: Option<&'a [u8]>,
    /// The backend sent an `X-Request-Id`.
    has_request_id: bool,
    /// The method given to `parse_response`, which decided the framing.
    request_method: Method,
}

/// Parses a response head at the start of `buf` for a request with `method`.
///
/// `Ok(None)`: incomplete. Checks: status line, header syntax, duplicate/invalid Content-Length,
/// Content-Length with Transfer-Encoding, a Transfer-Encoding other than `chunked` — all `Invalid`.
/// Also `Invalid`: a status outside 100..=599, Transfer-Encoding in an HTTP/1.0 response
/// (RFC 9112 §6.1: faulty framing), a 101 without `Upgrade`, more than 256 fields. An incomplete
/// head is `HeadTooLarge` once `buf.len() >= max_head_bytes`.
pub fn parse_response<'a>(
    buf: &'a [u8],
    method: Method,
    max_head_bytes: usize,
) -> Result<Option<Response<'a>>, ResponseError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let mut storage = [MaybeUninit::<httparse::Header<'a>>::uninit(); FieldMask::CAPACITY];
    let mut parsed = httparse::Response::new(&mut []);
    let parser = httparse::ParserConfig::default();
    match parser.parse_response_with_uninit_headers(&mut parsed, window, &mut storage) {
        Ok(httparse::Status::Complete(head_len)) => {
            let (Some(minor), Some(status), Some(reason)) =
                (parsed.version, parsed.code, parsed.reason)
            else {
                unreachable!("httparse fills the status line of a complete head");
            };
            let version = if minor == 0 {
                Version::Http10
            } else {
                Version::Http11
            };
            let line = StatusLine {
                version,
                status,
                reason,
            };
            validate(buf, head_len, line, parsed.headers, method).map(Some)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_head_bytes => {
            Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(error) => Err(ResponseError::Invalid(syntax_error(error))),
    }
}

#[derive(Debug, Clone, Copy)]
struct StatusLine<'a> {
    version: Version,
    status: u16,
    reason: &'a str,
}

fn syntax_error(error: httparse::Error) -> &'static str {
    use httparse::Error;
    match error {
        Error::TooManyHeaders => "too many header fields",
        Error::HeaderName => "invalid header field name or obs-fold line",
        Error::HeaderValue => "invalid byte in header field value",
        Error::NewLine => "invalid line ending",
        Error::Version => "unsupported HTTP version",
        Error::Status | Error::Token => "invalid status line",
    }
}

fn validate<'a>(
    buf: &'a [u8],
    head_len: usize,
    line: StatusLine<'a>,
    fields: &[httparse::Header<'a>],
    method: Method,
) -> Result<Response<'a>, ResponseError> {
    let status = line.status;
    if !(100..=599).contains(&status) {
        return Err(ResponseError::Invalid("status code out of range"));
    }
    let mut content_length = ContentLength::default();
    let mut codings = TransferCodings::default();
    let mut connection = ConnectionOptions::default();
    let mut dropped = FieldMask::default();
    let mut upgrade = None;
    for (index, field) in fields.iter().enumerate() {
        match classify(field.name.as_bytes()) {
            KnownField::ContentLength => content_length
                .add_field(field.value)
                .map_err(ResponseError::Invalid)?,
            KnownField::TransferEncoding => codings.add_field(field.value),
            KnownField::Connection => connection.add_field(field.value),
            KnownField::Upgrade => upgrade = Some(field.value),
            kind if kind.is_hop_by_hop() => {}
            _ => continue,
        }
        dropped.insert(index);
    }
    if connection.names_fields {
        drop_fields_named_by_connection(fields, &mut dropped);
    }
    let has_request_id = fields.iter().enumerate().any(|(index, f)| {
        !dropped.contains(index) && classify(f.name.as_bytes()) == KnownField::XRequestId
    });

    if codings.is_present() {
        if content_length.value().is_some() {
            return Err(ResponseError::Invalid(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if line.version == Version::Http10 {
            return Err(ResponseError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        codings
            .check()
            .map_err(|_| ResponseError::Invalid("Transfer-Encoding other than chunked"))?;
    }
    if status == 101 && upgrade.is_none() {
        return Err(ResponseError::Invalid("101 without Upgrade"));
    }

    // RFC 9112 §6.3, in its order: these never have content, whatever their fields say.
    let tunnel = method == Method::Connect && (200..300).contains(&status);
    let bodiless =
        method == Method::Head || status < 200 || status == 204 || status == 304 || tunnel;
    let body = if bodiless {
        ResponseBody::None
    } else if codings.is_present() {
        ResponseBody::Chunked
    } else {
        match content_length.value() {
            Some(0) => ResponseBody::None,
            Some(length) => ResponseBody::Length(length),
            None => ResponseBody::UntilClose,
        }
    };
    // After a 101 or a CONNECT 2xx the connection carries another protocol: never back in a pool.
    let keep_alive = body != ResponseBody::UntilClose
        && status != 101
        && !tunnel
        && !connection.close
        && (line.version == Version::Http11 || connection.keep_alive);

    let fields_start = fields.first().map_or(head_len, |f| {
        f.name.as_ptr() as usize - buf.as_ptr() as usize
    });
    Ok(Response {
        status,
        reason: line.reason,
        version: line.version,
        body,
        keep_alive,
        head_len,
        fields: &buf[fields_start..head_len],
        dropped,
        content_length: content_length.value(),
        upgrade,
        has_request_id,
        request_method: method,
    })
}

/// `Connection: x-backend-secret` makes that field hop-by-hop.
fn drop_fields_named_by_connection(fields: &[httparse::Header<'_>], dropped: &mut FieldMask) {
    let connection_fields = fields
        .iter()
        .filter(|f| classify(f.name.as_bytes()) == KnownField::Connection);
    for connection in connection_fields {
        for token in list_elements(connection.value).filter(|t| !t.is_empty()) {
            for (index, field) in fields.iter().enumerate() {
                if field.name.as_bytes().eq_ignore_ascii_case(token) {
                    dropped.insert(index);
                }
            }
        }
    }
}

impl Response<'_> {
    /// How the body is framed toward the client: `Chunked` stays chunked for an HTTP/1.1 client
    /// and becomes `UntilClose` (decoded, connection closed) for HTTP/1.0; the rest is unchanged.
    pub fn client_framing(&self, client_version: Version) -> ResponseBody {
        match self.body {
            ResponseBody::Chunked if client_version == Version::Http10 => ResponseBody::UntilClose,
            framing => framing,
        }
    }

    /// Appends the head for the client: status line `HTTP/1.1 <status> <reason>`, headers minus
    /// hop-by-hop ones and those named in `Connection`, framing written by us per
    /// `client_framing`, `Connection: close` when `!ctx.client_keep_alive` (or when framing is
    /// `UntilClose`), `X-Request-Id` when absent. 1xx heads (100 Continue, 101) are written as
    /// they came, minus hop-by-hop fields (a 101 keeps `Connection: upgrade` and `Upgrade`).
    ///
    /// Bodiless responses: a HEAD or 304 response keeps the backend's `Content-Length` (it
    /// describes the representation), a 204 or CONNECT 2xx gets no framing field, any other gets
    /// `Content-Length: 0`. An HTTP/1.0 client kept alive gets `Connection: keep-alive`.
    ///
    /// The route's response header rules (`ctx.edits`) apply to final responses: the backend's
    /// lines of a name removed or set are left out and the `set`, then `add` fields follow the
    /// backend's; when they name `X-Request-Id`, the proxy does not add one.
    pub fn write_client_head(&self, ctx: &ResponseContext<'_>, out: &mut Vec<u8>) {
        debug_assert_eq!(
            ctx.request_method, self.request_method,
            "context of another request"
        );
        out.reserve(self.head_len + 96 + ctx.request_id.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let rules = ctx.edits.filter(|_| self.status >= 200);
        if rules.is_none() && ctx.compression.is_none() {
            for (index, (name, value)) in FieldLines::new(self.fields).enumerate() {
                if !self.dropped.contains(index) {
                    push_field(out, name, value);
                }
            }
        } else {
            let skip = |name: &[u8]| rules.is_some_and(|(rules, _)| edits::drops(rules, name));
            self.write_changed_fields(ctx.compression, skip, out);
            if let Some((rules, vars)) = rules {
                edits::write_fields(rules, vars, None, out);
            }
            push_compression_fields(ctx.compression, out);
        }
        if self.status < 200 {
            if let (101, Some(protocol)) = (self.status, self.upgrade) {
                push_field(out, b"Connection", b"upgrade");
                push_field(out, b"Upgrade", protocol);
            }
            out.extend_from_slice(b"\r\n");
            return;
        }
        let id_ruled = rules.is_some_and(|(rules, _)| edits::names(rules, b"X-Request-Id"));
        if !self.has_request_id && !id_ruled {
            push_field(out, b"X-Request-Id", ctx.request_id.as_bytes());
        }
        let framing = if ctx.compression.encode.is_some() {
            ResponseBody::Chunked
        } else {
            self.client_framing(ctx.client_version)
        };
        match framing {
            ResponseBody::Length(length) => push_content_length(out, length),
            ResponseBody::Chunked => push_field(out, b"Transfer-Encoding", b"chunked"),
            ResponseBody::UntilClose => {}
            ResponseBody::None => self.write_bodiless_length(out),
        }
        if !ctx.client_keep_alive || framing == ResponseBody::UntilClose {
            push_field(out, b"Connection", b"close");
        } else if ctx.client_version == Version::Http10 {
            // HTTP/1.0 closes by default: persistence must be announced (RFC 9112 §9.3).
            push_field(out, b"Connection", b"keep-alive");
        }
        out.extend_from_slice(b"\r\n");
    }

    fn write_bodiless_length(&self, out: &mut Vec<u8>) {
        let tunnel = self.request_method == Method::Connect && (200..300).contains(&self.status);
        if self.status == 204 || tunnel {
            // RFC 9110 §8.6: a sender must not send Content-Length in these.
        } else if self.request_method == Method::Head || self.status == 304 {
            if let Some(length) = self.content_length {
                push_content_length(out, length);
            }
        } else {
            // `Content-Length: 0` from the backend: without it the client would read until close.
            push_content_length(out, 0);
        }
    }
}

fn push_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, length);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HEAD: usize = 4096;

    fn parse(raw: &str, method: Method) -> Result<Option<Response<'_>>, ResponseError> {
        parse_response(raw.as_bytes(), method, MAX_HEAD)
    }

    fn complete(raw: &str, method: Method) -> Response<'_> {
        parse(raw, method)
            .expect("valid response")
            .expect("complete head")
    }

    fn invalid(raw: &str) -> ResponseError {
        parse(raw, Method::Get).expect_err("must be refused")
    }

    fn context(method: Method, version: Version, keep_alive: bool) -> ResponseContext<'static> {
        ResponseContext {
            request_method: method,
            client_version: version,
            client_keep_alive: keep_alive,
            request_id: "rid-1",
            edits: None,
            compression: HeadChange::NONE,
        }
    }

    fn client_head(raw: &str, ctx: &ResponseContext<'_>) -> String {
        let response = complete(raw, ctx.request_method);
        let mut out = b"previous|".to_vec();
        response.write_client_head(ctx, &mut out);
        String::from_utf8(out)
            .unwrap()
            .strip_prefix("previous|")
            .expect("appends")
            .to_owned()
    }

    fn client_head_11(raw: &str) -> String {
        client_head(raw, &context(Method::Get, Version::Http11, true))
    }

    #[test]
    fn header_rules_apply_to_final_responses_only() {
        let template = |text| crate::config::Template::parse(text).unwrap();
        let rules = HeaderEdits {
            remove: vec!["server".into(), "x-powered-by".into()],
            set: vec![("Cache-Control".into(), template("no-store"))],
            add: vec![("X-Backend".into(), template("{backend} {request_id}"))],
        };
        let vars = TemplateVars {
            backend: Some("10.0.0.1:8080".parse().unwrap()),
            request_id: "rid-1",
            ..TemplateVars::default()
        };
        let ctx = ResponseContext {
            edits: Some((&rules, &vars)),
            ..context(Method::Get, Version::Http11, true)
        };
        let raw = "HTTP/1.1 200 OK\r\nServer: nginx/1.2\r\ncache-control: max-age=60\r\n\
                   X-Powered-By: PHP\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            client_head(raw, &ctx),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n\
             X-Backend: 10.0.0.1:8080 rid-1\r\nX-Request-Id: rid-1\r\nContent-Length: 0\r\n\r\n"
        );
        let interim = "HTTP/1.1 103 Early Hints\r\nServer: nginx\r\nLink: </a>\r\n\r\n";
        assert_eq!(
            client_head(interim, &ctx),
            "HTTP/1.1 103 Early Hints\r\nServer: nginx\r\nLink: </a>\r\n\r\n"
        );
        // A rule naming X-Request-Id leaves it to the rule.
        let rules = HeaderEdits {
            set: vec![("X-Request-Id".into(), template("id-{request_id}"))],
            ..HeaderEdits::default()
        };
        let ctx = ResponseContext {
            edits: Some((&rules, &vars)),
            ..context(Method::Get, Version::Http11, true)
        };
        assert_eq!(
            client_head("HTTP/1.1 204 No Content\r\n\r\n", &ctx),
            "HTTP/1.1 204 No Content\r\nX-Request-Id: id-rid-1\r\n\r\n"
        );
    }

    #[test]
    fn ordinary_response() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let response = complete(raw, Method::Get);
        assert_eq!(
            (response.status, response.reason, response.version),
            (200, "OK", Version::Http11)
        );
        assert_eq!(response.body, ResponseBody::Length(5));
        assert!(response.keep_alive);
        assert_eq!(response.head_len, raw.len() - 5);
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-Id: rid-1\r\nContent-Length: 5\r\n\r\n"
        );
    }

    /// The proxy writes `upstream "api" sent an invalid response: {error}`: the error itself must
    /// not say "invalid response from upstream" again.
    #[test]
    fn error_text_names_only_the_reason() {
        assert_eq!(
            invalid("HTTP/1.1 OK\r\n\r\n").to_string(),
            "invalid status line"
        );
        assert_eq!(
            ResponseError::HeadTooLarge.to_string(),
            "response header section larger than the limit"
        );
    }

    #[test]
    fn incomplete_and_too_large_heads() {
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nA: b\r\n", Method::Get),
            Ok(None)
        ));
        let big = format!("HTTP/1.1 200 OK\r\nA: {}\r\n", "b".repeat(64));
        assert!(matches!(
            parse_response(big.as_bytes(), Method::Get, 64),
            Err(ResponseError::HeadTooLarge)
        ));
        assert!(matches!(
            parse_response(&big.as_bytes()[..63], Method::Get, 64),
            Ok(None)
        ));
    }

    // http.md: invalid status line or headers → 502; that upstream connection is not reused.
    #[test]
    fn invalid_status_lines_and_fields() {
        let cases = [
            ("HTTP/1.1 2000 OK\r\n\r\n", "invalid status line"),
            ("HTTP/1.1 20 OK\r\n\r\n", "invalid status line"),
            ("HTTP/1.1 OK\r\n\r\n", "invalid status line"),
            ("HTTP/1.1 200 O\0K\r\n\r\n", "invalid status line"),
            ("HTTP/2 200 OK\r\n\r\n", "unsupported HTTP version"),
            ("ICY 200 OK\r\n\r\n", "unsupported HTTP version"),
            ("HTTP/1.1 099 Low\r\n\r\n", "status code out of range"),
            ("HTTP/1.1 600 High\r\n\r\n", "status code out of range"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
                "invalid header field name or obs-fold line",
            ),
            (
                "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
                "invalid header field name or obs-fold line",
            ),
            (
                "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
                "invalid byte in header field value",
            ),
            (
                "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
                "invalid byte in header field value",
            ),
        ];
        for (raw, why) in cases {
            assert_eq!(invalid(raw), ResponseError::Invalid(why), "{raw:?}");
        }
    }

    // http.md: two different Content-Length values, or CL with TE, or a bad TE → 502.
    #[test]
    fn ambiguous_framing() {
        let cases = [
            (
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                "conflicting Content-Length values",
            ),
            (
                "Content-Length: 5, 6\r\n",
                "conflicting Content-Length values",
            ),
            ("Content-Length: -1\r\n", "invalid Content-Length"),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "Transfer-Encoding: chunked, gzip\r\n",
                "Transfer-Encoding other than chunked",
            ),
            (
                "Transfer-Encoding: gzip\r\n",
                "Transfer-Encoding other than chunked",
            ),
        ];
        for (fields, why) in cases {
            let raw = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
            assert_eq!(invalid(&raw), ResponseError::Invalid(why), "{fields:?}");
        }
        let raw = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            invalid(raw),
            ResponseError::Invalid("Transfer-Encoding in an HTTP/1.0 response")
        );
        // Identical repeats collapse.
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7, 7\r\n\r\n";
        assert_eq!(complete(raw, Method::Get).body, ResponseBody::Length(7));
    }

    // http.md: response to HEAD, 1xx, 204, 304 → no body bytes; the connection stays in sync.
    #[test]
    fn bodiless_responses() {
        let with_length = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n";
        let head = complete(with_length, Method::Head);
        assert_eq!((head.body, head.keep_alive), (ResponseBody::None, true));
        assert_eq!(
            client_head(with_length, &context(Method::Head, Version::Http11, true)),
            "HTTP/1.1 200 OK\r\nX-Request-Id: rid-1\r\nContent-Length: 42\r\n\r\n"
        );
        let chunked_head = complete(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Head,
        );
        assert_eq!(chunked_head.body, ResponseBody::None);

        let not_modified = "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(complete(not_modified, Method::Get).body, ResponseBody::None);
        assert_eq!(
            client_head_11(not_modified),
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nX-Request-Id: rid-1\r\nContent-Length: 42\r\n\r\n"
        );

        let no_content = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(no_content, Method::Get).body, ResponseBody::None);
        assert_eq!(
            client_head_11(no_content),
            "HTTP/1.1 204 No Content\r\nX-Request-Id: rid-1\r\n\r\n"
        );

        let early_hints = complete(
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            Method::Get,
        );
        assert_eq!(early_hints.body, ResponseBody::None);

        let tunnel = complete(
            "HTTP/1.1 200 Connection established\r\n\r\n",
            Method::Connect,
        );
        assert_eq!(
            (tunnel.body, tunnel.keep_alive),
            (ResponseBody::None, false)
        );
    }

    #[test]
    fn empty_length_is_written_so_the_client_does_not_wait_for_close() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(raw, Method::Get).body, ResponseBody::None);
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nX-Request-Id: rid-1\r\nContent-Length: 0\r\n\r\n"
        );
    }

    // http.md: close-delimited body: forward until close, then close the client connection.
    #[test]
    fn close_delimited_body() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        let response = complete(raw, Method::Get);
        assert_eq!(
            (response.body, response.keep_alive),
            (ResponseBody::UntilClose, false)
        );
        assert_eq!(
            response.client_framing(Version::Http11),
            ResponseBody::UntilClose
        );
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-Id: rid-1\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn chunked_stays_chunked_for_http11_and_is_decoded_for_http10() {
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n";
        let response = complete(raw, Method::Get);
        assert_eq!(response.body, ResponseBody::Chunked);
        assert_eq!(
            response.client_framing(Version::Http11),
            ResponseBody::Chunked
        );
        assert_eq!(
            response.client_framing(Version::Http10),
            ResponseBody::UntilClose
        );
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nX-Request-Id: rid-1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            client_head(raw, &context(Method::Get, Version::Http10, true)),
            "HTTP/1.1 200 OK\r\nX-Request-Id: rid-1\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn upstream_keep_alive() {
        let keep = |raw: &str| complete(raw, Method::Get).keep_alive;
        assert!(keep("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"));
        assert!(keep(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n"
        ));
    }

    #[test]
    fn client_connection_field() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n";
        // The backend's `close` is about the upstream leg; the client leg is the proxy's call.
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nX-Request-Id: rid-1\r\nContent-Length: 1\r\n\r\n"
        );
        assert!(
            client_head(raw, &context(Method::Get, Version::Http11, false))
                .ends_with("Content-Length: 1\r\nConnection: close\r\n\r\n")
        );
        assert!(
            client_head(raw, &context(Method::Get, Version::Http10, true))
                .ends_with("Content-Length: 1\r\nConnection: keep-alive\r\n\r\n")
        );
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_removed() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\nX-Internal: secret\r\n\
                   Proxy-Connection: close\r\nUpgrade: h2c\r\nTE: trailers\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nX-Kept: 1\r\nX-Request-Id: rid-1\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn request_id_is_added_only_when_absent() {
        let raw = "HTTP/1.1 200 OK\r\nx-request-id: from-backend\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 200 OK\r\nx-request-id: from-backend\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn interim_responses_are_relayed_as_they_came() {
        let raw = "HTTP/1.1 100 Continue\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n";
        let response = complete(raw, Method::Post);
        assert_eq!(response.body, ResponseBody::None);
        assert_eq!(
            client_head(raw, &context(Method::Post, Version::Http11, false)),
            "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n"
        );

        let raw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: k\r\n\r\n";
        let response = complete(raw, Method::Get);
        assert_eq!(
            (response.body, response.keep_alive),
            (ResponseBody::None, false)
        );
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: k\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        assert_eq!(
            invalid("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            ResponseError::Invalid("101 without Upgrade")
        );
    }

    #[test]
    fn status_line_is_rebuilt_as_http11_with_bare_lf_normalised() {
        let raw = "HTTP/1.0 404 Not Found\nContent-Length: 3\n\n";
        assert_eq!(
            client_head_11(raw),
            "HTTP/1.1 404 Not Found\r\nX-Request-Id: rid-1\r\nContent-Length: 3\r\n\r\n"
        );
        // A missing reason phrase stays empty.
        assert!(client_head_11("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
            .starts_with("HTTP/1.1 200 \r\n"));
    }

    /// From the fuzzer (fuzz/, `http_response`): a response with as many fields as the proxy
    /// reads (256) is relayed whole, and the proxy's own fields come on top, so the client may
    /// get more than 256 (here 258). One more field from the backend is refused.
    #[test]
    fn a_head_with_the_most_fields_is_relayed_whole_with_the_proxys_fields_added() {
        let mut raw = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..255 {
            raw.push_str(&format!("X-{i}: {i}\r\n"));
        }
        raw.push_str("Content-Length: 5\r\n\r\n");
        let response = parse_response(raw.as_bytes(), Method::Get, 8192)
            .expect("256 fields are read")
            .expect("complete head");
        let mut out = Vec::new();
        response.write_client_head(&context(Method::Get, Version::Http11, false), &mut out);
        let out = String::from_utf8(out).unwrap();
        let fields: Vec<&str> = out
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(fields.len(), 258, "{out}");
        assert_eq!((fields[0], fields[254]), ("X-0: 0", "X-254: 254"));
        assert_eq!(
            &fields[255..],
            [
                "X-Request-Id: rid-1",
                "Content-Length: 5",
                "Connection: close"
            ]
        );

        let too_many = raw.replacen("\r\n", "\r\nX-Extra: 1\r\n", 1);
        assert_eq!(
            parse_response(too_many.as_bytes(), Method::Get, 8192).err(),
            Some(ResponseError::Invalid("too many header fields"))
        );
    }

    #[test]
    fn any_split_of_a_response_head_gives_the_same_result() {
        let raw = "HTTP/1.1 200 OK\nA: 1\r\nTransfer-Encoding: chunked\r\nB:  two \n\r\n5\r\nhello";
        let head_len = raw.len() - "5\r\nhello".len();
        let full = client_head_11(raw);
        for end in 0..head_len {
            assert!(
                matches!(parse(&raw[..end], Method::Get), Ok(None)),
                "prefix {end}"
            );
        }
        assert_eq!(complete(&raw[..head_len], Method::Get).head_len, head_len);
        assert_eq!(client_head_11(&raw[..head_len]), full);
    }
}
