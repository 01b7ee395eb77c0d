//! Which responses are compressed, and what that changes in the head written to the client.
//!
//! Decided once per response, and only on routes that compress ([`Response::compression`]): one
//! pass over the backend's fields. A response is *compressible by type* when its `Content-Type`
//! (media type alone, any case) is configured and is not `text/event-stream`; such a response gets
//! `Vary: Accept-Encoding` whether it is compressed or not, so that a cache keys on the field. It
//! is compressed when, besides, a coding was negotiated and:
//! - the request is not HEAD and the client speaks HTTP/1.1 (chunked is the only framing for a
//!   body whose length is not known ahead; HTTP/1.0 clients get the original, as nginx's
//!   `gzip_http_version 1.1`);
//! - the status is 200..=203 (as HAProxy: other statuses are errors, partial content or bodiless);
//! - there is no `Content-Encoding` (never twice), no `Content-Range`, no
//!   `Cache-Control: no-transform` (RFC 9111 §5.2.2.6);
//! - the body is there and, when its length is announced, at least `min_size`.
//!
//! Compressed, the head loses `Content-Length` and `Accept-Ranges` (byte ranges of the original
//! mean nothing in the encoded body), a strong `ETag` becomes weak (`W/`: the bytes differ from
//! the original's), and gains `Content-Encoding` and `Transfer-Encoding: chunked`.

use super::super::headers::{list_elements, push_field, trim_ows, FieldLines};
use super::super::{Response, ResponseBody, Version};
use crate::config::{CompressionConfig, Encoding};
use crate::http::Method;

/// What compression does to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadChange {
    /// The body is compressed with this coding.
    pub encode: Option<Encoding>,
    /// `Vary: Accept-Encoding` is added.
    pub vary: bool,
}

impl HeadChange {
    /// The response goes as it came.
    pub const NONE: HeadChange = HeadChange {
        encode: None,
        vary: false,
    };

    pub fn is_none(self) -> bool {
        self == Self::NONE
    }
}

/// What the compression decision reads from a response's fields.
#[derive(Debug, Default)]
struct Seen<'a> {
    content_type: Option<&'a [u8]>,
    content_encoding: bool,
    content_range: bool,
    no_transform: bool,
    /// `Vary` already lists `Accept-Encoding`, or is `*`.
    varies: bool,
}

impl Response<'_> {
    /// The change for a response to a request of `method` from an HTTP `client_version` client
    /// that accepts `chosen` (negotiated from its `Accept-Encoding`), on a route that compresses.
    pub fn compression(
        &self,
        config: &CompressionConfig,
        chosen: Option<Encoding>,
        method: Method,
        client_version: Version,
    ) -> HeadChange {
        let seen = self.seen();
        let compressible = seen
            .content_type
            .is_some_and(|value| type_matches(value, &config.content_types));
        if !compressible {
            return HeadChange::NONE;
        }
        let large_enough = match self.body {
            ResponseBody::Length(length) => length >= config.min_size,
            ResponseBody::Chunked | ResponseBody::UntilClose => true,
            ResponseBody::None => false,
        };
        let encode = chosen.filter(|_| {
            method != Method::Head
                && client_version == Version::Http11
                && (200..=203).contains(&self.status)
                && !seen.content_encoding
                && !seen.content_range
                && !seen.no_transform
                && large_enough
        });
        HeadChange {
            encode,
            vary: !seen.varies,
        }
    }

    fn seen(&self) -> Seen<'_> {
        let mut seen = Seen::default();
        for (index, (name, value)) in FieldLines::new(self.fields).enumerate() {
            if self.dropped.contains(index) {
                continue;
            }
            let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
            if is(b"content-type") {
                seen.content_type.get_or_insert(value);
            } else if is(b"content-encoding") {
                seen.content_encoding = true;
            } else if is(b"content-range") {
                seen.content_range = true;
            } else if is(b"cache-control") {
                seen.no_transform |=
                    list_elements(value).any(|d| d.eq_ignore_ascii_case(b"no-transform"));
            } else if is(b"vary") {
                seen.varies |= list_elements(value)
                    .any(|v| v == b"*" || v.eq_ignore_ascii_case(b"accept-encoding"));
            }
        }
        seen
    }

    /// Appends the backend's fields (those not dropped, and none that `skip` names: a route's
    /// header rules) as `change` has them; [`push_compression_fields`] adds the new ones.
    pub(in crate::http) fn write_changed_fields(
        &self,
        change: HeadChange,
        skip: impl Fn(&[u8]) -> bool,
        out: &mut Vec<u8>,
    ) {
        for (index, (name, value)) in FieldLines::new(self.fields).enumerate() {
            if self.dropped.contains(index) || skip(name) {
                continue;
            }
            if change.encode.is_some() {
                if name.eq_ignore_ascii_case(b"accept-ranges") {
                    continue;
                }
                if name.eq_ignore_ascii_case(b"etag") && value.first() == Some(&b'"') {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": W/");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                    continue;
                }
            }
            push_field(out, name, value);
        }
    }
}

/// The fields compression adds: `Vary: Accept-Encoding` and `Content-Encoding`.
pub(in crate::http) fn push_compression_fields(change: HeadChange, out: &mut Vec<u8>) {
    if change.vary {
        // A second `Vary` line is the same list as one (RFC 9110 §5.3).
        push_field(out, b"Vary", b"Accept-Encoding");
    }
    if let Some(encoding) = change.encode {
        push_field(out, b"Content-Encoding", encoding.token().as_bytes());
    }
}

/// The media type of `value` (a `Content-Type`, parameters ignored) is one of `types` (`type/sub`
/// or `type/*`, lowercase), and is not `text/event-stream` (events must not wait in an encoder).
fn type_matches(value: &[u8], types: &[String]) -> bool {
    let media = trim_ows(value.split(|&b| b == b';').next().unwrap_or_default());
    if media.eq_ignore_ascii_case(b"text/event-stream") {
        return false;
    }
    types.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => {
            media.len() > prefix.len()
                && media[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        }
        None => media.eq_ignore_ascii_case(t.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{valid, with};
    use crate::http::{parse_response, ResponseContext};

    fn config() -> CompressionConfig {
        let mut config = valid(&with("[compression]\nmin_size = 100\n")).compression;
        config.content_types.push("font/*".to_owned());
        config
    }

    fn change(head: &str, method: Method, version: Version) -> HeadChange {
        let response = parse_response(head.as_bytes(), method, 4096)
            .unwrap()
            .unwrap();
        response.compression(&config(), Some(Encoding::Gzip), method, version)
    }

    fn get(head: &str) -> HeadChange {
        change(head, Method::Get, Version::Http11)
    }

    const GZIP: HeadChange = HeadChange {
        encode: Some(Encoding::Gzip),
        vary: true,
    };
    const VARY_ONLY: HeadChange = HeadChange {
        encode: None,
        vary: true,
    };

    #[test]
    fn compressible_types_get_vary_and_are_compressed_when_allowed() {
        let json =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n";
        assert_eq!(get(json), GZIP);
        for (head, expected) in [
            ("HTTP/1.1 200 OK\r\nContent-Type: Text/HTML; charset=utf-8\r\nContent-Length: 500\r\n\r\n", GZIP),
            ("HTTP/1.1 203 X\r\ncontent-type: font/woff\r\nTransfer-Encoding: chunked\r\n\r\n", GZIP),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", GZIP),
            ("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 500\r\n\r\n", HeadChange::NONE),
            ("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", HeadChange::NONE),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", HeadChange::NONE),
            ("HTTP/1.1 200 OK\r\nContent-Type: fontx/a\r\nContent-Length: 500\r\n\r\n", HeadChange::NONE),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 99\r\n\r\n", VARY_ONLY),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n", GZIP),
            ("HTTP/1.1 206 Partial\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-499/900\r\nContent-Length: 500\r\n\r\n", VARY_ONLY),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-499/900\r\nContent-Length: 500\r\n\r\n", VARY_ONLY),
            ("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 500\r\n\r\n", VARY_ONLY),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: br\r\nContent-Length: 500\r\n\r\n", VARY_ONLY),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: public, No-Transform\r\nContent-Length: 500\r\n\r\n", VARY_ONLY),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVary: Origin, accept-encoding\r\nContent-Length: 500\r\n\r\n", HeadChange { encode: Some(Encoding::Gzip), vary: false }),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVary: *\r\nContent-Length: 500\r\n\r\n", HeadChange { encode: Some(Encoding::Gzip), vary: false }),
            ("HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\n\r\n", VARY_ONLY),
        ] {
            assert_eq!(get(head), expected, "{head}");
        }
        assert_eq!(change(json, Method::Head, Version::Http11), VARY_ONLY);
        assert_eq!(change(json, Method::Get, Version::Http10), VARY_ONLY);
        let response = parse_response(json.as_bytes(), Method::Get, 4096)
            .unwrap()
            .unwrap();
        assert_eq!(
            response.compression(&config(), None, Method::Get, Version::Http11),
            VARY_ONLY,
            "a client that takes none still gets Vary"
        );
    }

    #[test]
    fn a_compressed_head_is_chunked_encoded_and_weakly_tagged() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"v1\"\r\n\
                   Accept-Ranges: bytes\r\nLast-Modified: x\r\nContent-Length: 500\r\n\r\n";
        let response = parse_response(raw.as_bytes(), Method::Get, 4096)
            .unwrap()
            .unwrap();
        let ctx = ResponseContext {
            request_method: Method::Get,
            client_version: Version::Http11,
            client_keep_alive: true,
            request_id: "rid",
            edits: None,
            compression: GZIP,
        };
        let mut out = Vec::new();
        response.write_client_head(&ctx, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: W/\"v1\"\r\n\
             Last-Modified: x\r\nVary: Accept-Encoding\r\nContent-Encoding: gzip\r\n\
             X-Request-Id: rid\r\nTransfer-Encoding: chunked\r\n\r\n"
        );

        let weak = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: W/\"v1\"\r\n\
                    Accept-Ranges: bytes\r\nContent-Length: 50\r\n\r\n";
        let response = parse_response(weak.as_bytes(), Method::Get, 4096)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        response.write_client_head(
            &ResponseContext {
                compression: VARY_ONLY,
                ..ctx
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: W/\"v1\"\r\n\
             Accept-Ranges: bytes\r\nVary: Accept-Encoding\r\nX-Request-Id: rid\r\n\
             Content-Length: 50\r\n\r\n"
        );
    }
}
