//! What the fields of a parsed request head mean, and whether together with the request line
//! they make a request we can forward without ambiguity.
//!
//! Flow: [`validate`] checks the target form against the method, then one pass over the fields
//! reads the ones with a meaning here (Host, framing, Connection, Upgrade, Expect, forwarding
//! fields) and marks every field the proxy must not copy upstream as it came; a second pass, only
//! when `Connection` names other fields, marks those. Framing and Host are decided from the fields
//! as received, before any stripping, so `Connection: content-length` or `Connection: host`
//! cannot unframe a body or drop the Host.

use super::framing::{CodingError, ContentLength, TransferCodings};
use super::headers::{
    classify, is_field_value_byte, list_elements, ConnectionOptions, FieldMask, KnownField,
};
use super::request::{Request, RequestError};
use super::target::{authority_host, classify_target, PortRule, TargetForm};
use super::trace_context::Traceparent;
use super::{Method, RequestBody, Version};

/// The request line as httparse read it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestLine<'a> {
    pub(super) method: Method,
    pub(super) method_str: &'a str,
    pub(super) target: &'a str,
    pub(super) version: Version,
}

/// What one pass over the fields learns.
#[derive(Debug, Default)]
struct FieldScan<'a> {
    host: Option<&'a str>,
    content_length: ContentLength,
    codings: TransferCodings,
    connection: ConnectionOptions,
    upgrade: Option<&'a str>,
    expect_continue: bool,
    request_id: Option<&'a str>,
    traceparent: Option<&'a [u8]>,
    dropped: FieldMask,
    forwarded_for: FieldMask,
    forwarded: FieldMask,
}

/// Checks a complete head (`buf[..head_len]`, whose fields httparse parsed into `fields`)
/// against every request rule of docs/http.md.
pub(super) fn validate<'a>(
    buf: &'a [u8],
    head_len: usize,
    line: RequestLine<'a>,
    fields: &[httparse::Header<'a>],
) -> Result<Request<'a>, RequestError> {
    let target_form =
        classify_target(line.method, line.target).map_err(RequestError::BadRequest)?;
    let mut scan = scan_fields(fields)?;
    if scan.connection.names_fields {
        drop_fields_named_by_connection(fields, &mut scan);
    }

    let body = request_body(&scan, line.version)?;
    if line.version == Version::Http11 && scan.host.is_none() {
        return Err(RequestError::BadRequest("missing Host"));
    }
    let authority = match target_form {
        TargetForm::Absolute {
            authority_start,
            origin_start,
        } => Some(&line.target[authority_start..origin_start]),
        _ => scan.host,
    };
    // Both sources were validated already; this only strips the port.
    let host = authority
        .map(|a| authority_host(a, PortRule::Optional))
        .transpose()
        .map_err(|()| RequestError::BadRequest("invalid Host"))?;

    let is_http11 = line.version == Version::Http11;
    let keep_alive = !scan.connection.close && (is_http11 || scan.connection.keep_alive);
    // Upgrade and Expect are HTTP/1.1 mechanisms: an HTTP/1.0 server ignores both (RFC 9110
    // §7.8 and §10.1.1).
    let upgrade = scan
        .upgrade
        .filter(|_| is_http11 && scan.connection.upgrade);

    // Offsets of httparse's slices into `buf`: the field section starts at the first name.
    let fields_start = fields.first().map_or(head_len, |f| {
        f.name.as_ptr() as usize - buf.as_ptr() as usize
    });
    Ok(Request {
        method: line.method,
        method_str: line.method_str,
        target: line.target,
        version: line.version,
        host,
        body,
        keep_alive,
        expect_continue: scan.expect_continue && is_http11,
        upgrade,
        request_id: scan.request_id,
        traceparent: scan.traceparent,
        head_len,
        target_form,
        authority,
        fields: &buf[fields_start..head_len],
        dropped: scan.dropped,
        forwarded_for: scan.forwarded_for,
        forwarded: scan.forwarded,
        explicit_zero_length: scan.content_length.value() == Some(0) && !scan.codings.is_present(),
    })
}

fn scan_fields<'a>(fields: &[httparse::Header<'a>]) -> Result<FieldScan<'a>, RequestError> {
    let mut scan = FieldScan::default();
    for (index, field) in fields.iter().enumerate() {
        let kind = classify(field.name.as_bytes());
        let value = field.value;
        match kind {
            KnownField::Other => continue,
            // Kept as it came, unless the sender is not trusted (`forward`).
            KnownField::Forwarded => {
                scan.forwarded.insert(index);
                continue;
            }
            KnownField::Host => {
                if scan.host.is_some() {
                    return Err(RequestError::BadRequest("duplicate Host"));
                }
                let host = std::str::from_utf8(value)
                    .ok()
                    .filter(|h| authority_host(h, PortRule::Optional).is_ok())
                    .ok_or(RequestError::BadRequest("invalid Host"))?;
                scan.host = Some(host);
            }
            KnownField::ContentLength => {
                scan.content_length
                    .add_field(value)
                    .map_err(RequestError::BadRequest)?;
            }
            KnownField::TransferEncoding => scan.codings.add_field(value),
            KnownField::Connection => scan.connection.add_field(value),
            KnownField::Upgrade => {
                if scan.upgrade.is_some() {
                    return Err(RequestError::BadRequest("duplicate Upgrade"));
                }
                let printable = value
                    .iter()
                    .all(|&b| b.is_ascii() && is_field_value_byte(b));
                let upgrade = std::str::from_utf8(value)
                    .ok()
                    .filter(|_| printable && !value.is_empty());
                scan.upgrade = Some(upgrade.ok_or(RequestError::BadRequest("invalid Upgrade"))?);
            }
            KnownField::Expect => {
                scan.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            KnownField::XForwardedFor => scan.forwarded_for.insert(index),
            KnownField::XRequestId => {
                let acceptable =
                    (1..=128).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic);
                if acceptable && scan.request_id.is_none() {
                    scan.request_id = std::str::from_utf8(value).ok();
                }
            }
            // The first valid one goes upstream (in the proxy's place for it, see `forward`);
            // without one the proxy starts a trace.
            KnownField::Traceparent => {
                if scan.traceparent.is_none() {
                    scan.traceparent = Traceparent::valid_prefix(value);
                }
            }
            KnownField::KeepAlive
            | KnownField::ProxyConnection
            | KnownField::Te
            | KnownField::Trailer
            | KnownField::XForwardedProto
            | KnownField::XForwardedHost
            | KnownField::XClientCertSubject
            | KnownField::XClientCertFingerprint
            | KnownField::Underscored => {}
        }
        // Every known field is either hop-by-hop, framing we write ourselves, replaced by the
        // proxy's own value, or a look-alike of one of those (`Content_Length`).
        scan.dropped.insert(index);
    }
    Ok(scan)
}

/// `Connection: x-secret` makes `X-Secret` hop-by-hop. Framing and Host were already read from
/// the fields as received and are written by us, so naming them here changes nothing.
fn drop_fields_named_by_connection(fields: &[httparse::Header<'_>], scan: &mut FieldScan<'_>) {
    let connection_fields = fields
        .iter()
        .filter(|f| classify(f.name.as_bytes()) == KnownField::Connection);
    for connection in connection_fields {
        for token in list_elements(connection.value).filter(|t| !t.is_empty()) {
            for (index, field) in fields.iter().enumerate() {
                if field.name.as_bytes().eq_ignore_ascii_case(token) {
                    scan.dropped.insert(index);
                    scan.forwarded_for.remove(index);
                    scan.forwarded.remove(index);
                }
            }
        }
    }
}

/// RFC 9112 §6.3 for requests, refusing every ambiguity instead of picking a winner.
fn request_body(scan: &FieldScan<'_>, version: Version) -> Result<RequestBody, RequestError> {
    if scan.codings.is_present() {
        if scan.content_length.value().is_some() {
            return Err(RequestError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            return Err(RequestError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        return match scan.codings.check() {
            Ok(()) => Ok(RequestBody::Chunked),
            Err(CodingError::Malformed) => {
                Err(RequestError::BadRequest("invalid Transfer-Encoding"))
            }
            Err(CodingError::ChunkedTwice) => {
                Err(RequestError::BadRequest("chunked applied more than once"))
            }
            Err(CodingError::ChunkedNotLast) => Err(RequestError::BadRequest(
                "chunked is not the final transfer coding",
            )),
            Err(CodingError::Unsupported) => Err(RequestError::NotImplemented(
                "transfer coding other than chunked",
            )),
        };
    }
    Ok(match scan.content_length.value() {
        None | Some(0) => RequestBody::None,
        Some(n) => RequestBody::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::*;
    use super::*;

    // http.md: `Content-Length` and `Transfer-Encoding` both present → 400.
    #[test]
    fn content_length_with_transfer_encoding() {
        let why = bad("both Content-Length and Transfer-Encoding");
        assert_eq!(refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), why);
        assert_eq!(refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"), why);
        assert_eq!(refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"), why);
    }

    // http.md: two different Content-Length values, `5, 6`, `+5`, `-1`, `0x5`, empty, overflow.
    #[test]
    fn invalid_or_conflicting_content_length() {
        let post = |fields: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let conflicting = bad("conflicting Content-Length values");
        assert_eq!(
            refused(&post("Content-Length: 5\r\nContent-Length: 6\r\n")),
            conflicting
        );
        assert_eq!(refused(&post("Content-Length: 5, 6\r\n")), conflicting);
        for value in ["+5", "-1", "0x5", "", "5 5", "1.0", "99999999999999999999"] {
            let raw = post(&format!("Content-Length: {value}\r\n"));
            assert_eq!(refused(&raw), bad("invalid Content-Length"), "{value:?}");
        }
        // Identical repeats collapse.
        assert_eq!(
            complete(&post("Content-Length: 5, 5\r\n")).body,
            RequestBody::Length(5)
        );
        assert_eq!(
            complete(&post("Content-Length: 5\r\ncontent-length: 5\r\n")).body,
            RequestBody::Length(5)
        );
        assert_eq!(
            complete(&post("Content-Length: 0\r\n")).body,
            RequestBody::None
        );
    }

    // http.md: unknown coding, `chunked` not last, `chunked, chunked` → 400 (501 when unknown).
    #[test]
    fn transfer_codings() {
        let post = |fields: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        assert_eq!(
            complete(&post("Transfer-Encoding: chunked\r\n")).body,
            RequestBody::Chunked
        );
        assert_eq!(
            complete(&post("transfer-encoding:  CHUNKED \r\n")).body,
            RequestBody::Chunked
        );
        let cases = [
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                RequestError::NotImplemented("transfer coding other than chunked"),
            ),
            (
                "Transfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n",
                RequestError::NotImplemented("transfer coding other than chunked"),
            ),
            (
                "Transfer-Encoding: chunked, gzip\r\n",
                bad("chunked is not the final transfer coding"),
            ),
            (
                "Transfer-Encoding: gzip\r\n",
                bad("chunked is not the final transfer coding"),
            ),
            (
                "Transfer-Encoding: identity\r\n",
                bad("chunked is not the final transfer coding"),
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                bad("chunked applied more than once"),
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                bad("chunked applied more than once"),
            ),
            ("Transfer-Encoding: \r\n", bad("invalid Transfer-Encoding")),
            (
                "Transfer-Encoding: ,chunked\r\n",
                bad("invalid Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding: chunked;q=1\r\n",
                bad("invalid Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding: \"chunked\"\r\n",
                bad("invalid Transfer-Encoding"),
            ),
        ];
        for (fields, error) in cases {
            let raw = post(fields);
            assert_eq!(refused(&raw), error, "{fields:?}");
        }
        assert_eq!(
            refused(&post("Transfer-Encoding: gzip, chunked\r\n")).status(),
            501
        );
    }

    // http.md: `Transfer-Encoding` in an HTTP/1.0 request → 400.
    #[test]
    fn transfer_encoding_in_http10() {
        let raw = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            refused(raw),
            bad("Transfer-Encoding in an HTTP/1.0 request")
        );
    }

    // http.md: missing, duplicated or invalid `Host` in HTTP/1.1 → 400.
    #[test]
    fn host_rules() {
        assert_eq!(refused("GET / HTTP/1.1\r\n\r\n"), bad("missing Host"));
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            bad("duplicate Host")
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            bad("duplicate Host")
        );
        for host in [
            "",
            "a b",
            "user@a",
            "a:b",
            "a:",
            "a,b",
            "[::1",
            "a/b",
            "a:99999",
            "caf\u{e9}",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(refused(&raw), bad("invalid Host"), "{host:?}");
        }
        assert_eq!(
            complete("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").host,
            Some("[::1]")
        );
        assert_eq!(
            complete("GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n").host,
            Some("10.1.2.3")
        );
        // HTTP/1.0 may omit Host, but not send a bad one.
        assert_eq!(complete("GET / HTTP/1.0\r\n\r\n").host, None);
        assert_eq!(
            refused("GET / HTTP/1.0\r\nHost: a b\r\n\r\n"),
            bad("invalid Host")
        );
    }

    #[test]
    fn absolute_form_takes_the_host_from_the_target_but_still_needs_host() {
        let request = complete("GET http://b.example:81/x HTTP/1.1\r\nHost: a.example\r\n\r\n");
        assert_eq!(request.host, Some("b.example"));
        assert_eq!(
            refused("GET http://b.example/x HTTP/1.1\r\n\r\n"),
            bad("missing Host")
        );
        assert_eq!(
            complete("GET http://b.example/x HTTP/1.0\r\n\r\n").host,
            Some("b.example")
        );
    }

    #[test]
    fn connection_options_decide_keep_alive_and_upgrade() {
        assert!(!complete("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !complete("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n")
                .keep_alive
        );
        assert!(!complete("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let upgrade = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(complete(upgrade).upgrade, Some("websocket"));
        // Upgrade without `Connection: upgrade`, or in HTTP/1.0, is ignored.
        assert_eq!(
            complete("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade,
            None
        );
        assert_eq!(
            complete("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade,
            None
        );
        let twice =
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n";
        assert_eq!(refused(twice), bad("duplicate Upgrade"));
    }

    // http.md: `Expect: 100-continue` is reported, and removed from the forwarded head.
    #[test]
    fn expect_continue() {
        let raw = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
        assert!(complete(raw).expect_continue);
        assert!(!complete("PUT / HTTP/1.1\r\nHost: a\r\nExpect: other\r\n\r\n").expect_continue);
        assert!(!complete("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn incoming_request_id_is_kept_only_when_acceptable() {
        let id = |value: &str| {
            complete(&format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: {value}\r\n\r\n"
            ))
            .request_id
            .map(str::to_owned)
        };
        assert_eq!(id("abc-123"), Some("abc-123".to_owned()));
        assert_eq!(id(&"x".repeat(128)), Some("x".repeat(128)));
        assert_eq!(id(&"x".repeat(129)), None);
        assert_eq!(id("has space"), None);
        assert_eq!(id(""), None);
    }
}
