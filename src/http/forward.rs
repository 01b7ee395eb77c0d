//! The request head sent upstream, rebuilt from a parsed [`Request`] instead of copied, so that
//! whatever a backend parses is what this codec validated.
//!
//! Layout: request line (origin-form target, always `HTTP/1.1`), `Host` (the route's `set` of
//! it, else the client's), the client's fields in their order minus the dropped ones (and minus
//! those the route's header rules remove or set), the route's `set` and `add` fields, then the
//! fields the proxy owns: `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Request-Id`, `traceparent`, with mTLS
//! `X-Client-Cert-Subject` and `X-Client-Cert-Fingerprint` (a client's own lines of these two are
//! always dropped, so they cannot be forged), framing, `Connection`/`Upgrade`.
//! Every line ends in CRLF whatever the client used.

use super::edits;
use super::headers::{push_decimal, push_field, FieldLines, FieldMask};
use super::request::{ForwardContext, Request};
use super::target::TargetForm;
use super::{Method, RequestBody};
use crate::config::{HeaderEdits, TemplateVars};
use std::io::Write as _;
use std::net::IpAddr;

impl Request<'_> {
    /// The path part of the target (before `?`), for routing. `/` for `*`, for authority-form
    /// and for an absolute-form target with an empty path.
    pub fn path(&self) -> &str {
        let origin = match self.target_form {
            TargetForm::Origin => self.target,
            TargetForm::Absolute { origin_start, .. } => &self.target[origin_start..],
            TargetForm::Authority | TargetForm::Asterisk => return "/",
        };
        let path = &origin[..origin.find('?').unwrap_or(origin.len())];
        if path.is_empty() {
            "/"
        } else {
            path
        }
    }

    /// Appends the head to send upstream to `out`: request line (origin-form target, or
    /// `ctx.target` when the route rewrote it; HTTP/1.1),
    /// headers minus hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
    /// Transfer-Encoding, Upgrade unless upgrading, Expect) and minus those named in `Connection`,
    /// minus incoming X-Request-Id/X-Forwarded-Proto/X-Forwarded-Host/traceparent (replaced) and
    /// X-Client-Cert-Subject/X-Client-Cert-Fingerprint (written only from `ctx.client_cert`), with
    /// `X-Forwarded-For` appended to, framing written by us (`Content-Length: n` or
    /// `Transfer-Encoding: chunked`), `Connection: close` when `!ctx.upstream_keep_alive`, and
    /// `Connection: upgrade` + `Upgrade` when upgrading. CRLF line endings.
    ///
    /// `Host` comes first, with the value received (for an absolute-form target: the target's
    /// authority). An HTTP/1.0 request without Host gets an empty one: an HTTP/1.1 request
    /// must carry Host, empty when the target has no authority (RFC 9112 §3.2), and strict
    /// backends answer 400 without it. An upgrade on a connection not to be kept writes
    /// `Connection: upgrade, close`.
    ///
    /// With the route's header rules (`ctx.edits`), the client's lines of a name removed or set
    /// are left out, and the `set` then `add` fields follow the client's (a `set` of `Host`
    /// replaces the Host line itself); without, that costs one branch.
    pub fn write_upstream_head(&self, ctx: &ForwardContext<'_>, out: &mut Vec<u8>) {
        // One reservation: the new head is the old one give or take the fields the proxy adds.
        out.reserve(self.head_len + 192 + ctx.request_id.len());
        out.extend_from_slice(self.method_str.as_bytes());
        out.push(b' ');
        match ctx.target {
            Some(target) => out.extend_from_slice(target),
            None => self.write_origin_form(out),
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // An untrusted sender's `Forwarded` lines are left out (its `X-Forwarded-For` ones
        // are dropped always, and their values kept only for a trusted one).
        let dropped = if ctx.trust_forwarded {
            self.dropped
        } else {
            self.dropped.union(self.forwarded)
        };
        match ctx.edits {
            None => {
                push_field(out, b"Host", self.authority.unwrap_or("").as_bytes());
                for (index, (name, value)) in FieldLines::new(self.fields).enumerate() {
                    if !dropped.contains(index) {
                        push_field(out, name, value);
                    }
                }
            }
            Some((rules, vars)) => self.write_edited_fields(rules, vars, dropped, out),
        }
        self.write_forwarded_for(ctx.client_ip, ctx.trust_forwarded, out);
        push_field(out, b"X-Forwarded-Proto", ctx.proto.as_bytes());
        if let Some(authority) = self.authority {
            push_field(out, b"X-Forwarded-Host", authority.as_bytes());
        }
        push_field(out, b"X-Request-Id", ctx.request_id.as_bytes());
        push_field(out, b"traceparent", ctx.traceparent.as_bytes());
        if let Some(cert) = ctx.client_cert {
            push_field(out, b"X-Client-Cert-Subject", cert.subject.as_bytes());
            push_field(
                out,
                b"X-Client-Cert-Fingerprint",
                cert.fingerprint.as_bytes(),
            );
        }
        match self.body {
            RequestBody::Length(length) => {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, length);
                out.extend_from_slice(b"\r\n");
            }
            RequestBody::Chunked => push_field(out, b"Transfer-Encoding", b"chunked"),
            RequestBody::None if self.explicit_zero_length => {
                push_field(out, b"Content-Length", b"0");
            }
            RequestBody::None => {}
        }
        match self.upgrade {
            Some(protocol) => {
                let connection: &[u8] = if ctx.upstream_keep_alive {
                    b"upgrade"
                } else {
                    b"upgrade, close"
                };
                push_field(out, b"Connection", connection);
                push_field(out, b"Upgrade", protocol.as_bytes());
            }
            None if !ctx.upstream_keep_alive => push_field(out, b"Connection", b"close"),
            None => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// `Host` and the client's fields under the route's header rules: a `set` of `Host`
    /// replaces the Host line, the client's lines of a name removed or set are left out, and the
    /// `set`, then `add` fields follow the client's.
    fn write_edited_fields(
        &self,
        rules: &HeaderEdits,
        vars: &TemplateVars<'_>,
        dropped: FieldMask,
        out: &mut Vec<u8>,
    ) {
        match edits::set_value(rules, b"Host") {
            Some(host) => edits::write_field("Host", host, vars, out),
            None => push_field(out, b"Host", self.authority.unwrap_or("").as_bytes()),
        }
        for (index, (name, value)) in FieldLines::new(self.fields).enumerate() {
            if !dropped.contains(index) && !edits::drops(rules, name) {
                push_field(out, name, value);
            }
        }
        edits::write_fields(rules, vars, Some(b"Host"), out);
    }

    fn write_origin_form(&self, out: &mut Vec<u8>) {
        let TargetForm::Absolute { origin_start, .. } = self.target_form else {
            out.extend_from_slice(self.target.as_bytes());
            return;
        };
        let origin = &self.target[origin_start..];
        // RFC 9112 §3.2.4: an absolute OPTIONS target without a path means the server itself.
        if origin.is_empty() && self.method == Method::Options {
            out.push(b'*');
            return;
        }
        if !origin.starts_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(origin.as_bytes());
    }

    /// One `X-Forwarded-For`: a trusted sender's values, all fields folded in order, then the
    /// sender; an untrusted sender's alone.
    fn write_forwarded_for(&self, client_ip: IpAddr, trusted: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"X-Forwarded-For: ");
        if trusted && !self.forwarded_for.is_empty() {
            for (index, (_, value)) in FieldLines::new(self.fields).enumerate() {
                if self.forwarded_for.contains(index) && !value.is_empty() {
                    out.extend_from_slice(value);
                    out.extend_from_slice(b", ");
                }
            }
        }
        // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`; backends expect `a.b.c.d`.
        match client_ip.to_canonical() {
            // Every request writes one: digits by hand, `fmt` cost more (bench/ profile).
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    push_decimal(out, u64::from(octet));
                }
            }
            ip => {
                let _ = write!(out, "{ip}");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::{parse_request, ClientCertificate, HeadLimits};
    use super::super::trace_context::{TracePrefix, Traceparent};
    use super::*;
    use crate::config::Template;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_uri_bytes: 2048,
        max_headers: 64,
    };

    fn context(keep_alive: bool) -> ForwardContext<'static> {
        ForwardContext {
            client_ip: "192.0.2.7".parse().unwrap(),
            proto: "http",
            request_id: "rid-1",
            traceparent: started_trace(),
            upstream_keep_alive: keep_alive,
            target: None,
            edits: None,
            trust_forwarded: true,
            client_cert: None,
        }
    }

    /// The trace the proxy "starts" in these tests.
    fn started_trace() -> &'static Traceparent {
        static STARTED: std::sync::OnceLock<Traceparent> = std::sync::OnceLock::new();
        STARTED.get_or_init(|| Traceparent::start(&TracePrefix::new(0), 1, 2))
    }

    fn forward_with(raw: &str, ctx: &ForwardContext<'_>) -> String {
        let request = parse_request(raw.as_bytes(), &LIMITS)
            .unwrap()
            .expect("complete head");
        let mut out = b"previous bytes|".to_vec();
        request.write_upstream_head(ctx, &mut out);
        let out = String::from_utf8(out).unwrap();
        out.strip_prefix("previous bytes|")
            .expect("appends, never clears")
            .to_owned()
    }

    fn forward(raw: &str) -> String {
        forward_with(raw, &context(true))
    }

    /// The fields every forwarded head ends with, for a request with `Host: example.com`.
    const PROXY_FIELDS: &str = "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
                                X-Forwarded-Host: example.com\r\nX-Request-Id: rid-1\r\ntraceparent: 00-00000000000000000000000000000001-0000000000000002-01\r\n";

    #[test]
    fn plain_get_is_rebuilt_with_host_first_and_proxy_fields_last() {
        let out = forward(
            "GET /a?b=1 HTTP/1.1\r\nAccept: */*\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n",
        );
        let expected = format!("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n{PROXY_FIELDS}\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let raw = "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
                   Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\n\
                   Expect: 100-continue\r\nX-Kept: yes\r\n\r\n";
        let expected =
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nX-Kept: yes\r\n{PROXY_FIELDS}\r\n");
        assert_eq!(forward(raw), expected);
    }

    #[test]
    fn fields_named_by_connection_are_removed() {
        let raw =
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Secret: 1\r\nConnection: X-SECRET, close\r\n\
                   x-secret: 2\r\nX-Secret-Not: 3\r\n\r\n";
        let expected = format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Secret-Not: 3\r\n{PROXY_FIELDS}Connection: close\r\n\r\n"
        );
        // The client asked for close; whether upstream is kept is the proxy's call (ctx).
        assert_eq!(forward_with(raw, &context(false)), expected);
    }

    #[test]
    fn connection_naming_framing_or_host_cannot_unframe_or_drop_them() {
        let raw = "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nConnection: content-length, host\r\n\r\n";
        let expected = format!(
            "POST /p HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}Content-Length: 5\r\n\r\n"
        );
        assert_eq!(forward(raw), expected);
        let raw = "POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n";
        let expected =
            format!("POST /p HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}Transfer-Encoding: chunked\r\n\r\n");
        assert_eq!(forward(raw), expected);
    }

    #[test]
    fn forwarded_for_is_appended_and_folded_into_one_field() {
        let raw = "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: example.com\r\n\
                   x-forwarded-for: 10.0.0.2, 10.0.0.3\r\nX-Forwarded-For:\r\n\r\n";
        let out = forward(raw);
        assert!(
            out.contains("\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("orwarded-For").count(), 1, "{out}");
    }

    #[test]
    fn an_untrusted_sender_s_forwarded_fields_are_replaced_by_its_address_alone() {
        let raw = "GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\nHost: example.com\r\n\
                   Forwarded: for=6.6.6.6;proto=https\r\nAccept: */*\r\n\r\n";
        let mut ctx = context(true);
        ctx.trust_forwarded = false;
        let expected =
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n{PROXY_FIELDS}\r\n");
        assert_eq!(forward_with(raw, &ctx), expected);
        // The same with route header rules (the edited path drops them too).
        let edits = rules(&[], &[("X-Route", "r")], &[]);
        let vars = TemplateVars::default();
        ctx.edits = Some((&edits, &vars));
        let expected = format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Route: r\r\n{PROXY_FIELDS}\r\n"
        );
        assert_eq!(forward_with(raw, &ctx), expected);
    }

    #[test]
    fn a_trusted_sender_s_forwarded_field_is_kept_as_it_came() {
        let raw =
            "GET / HTTP/1.1\r\nHost: example.com\r\nforwarded: for=192.0.2.60;proto=https\r\n\r\n";
        let expected = format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\nforwarded: for=192.0.2.60;proto=https\r\n\
             {PROXY_FIELDS}\r\n"
        );
        assert_eq!(forward(raw), expected);
    }

    #[test]
    fn forwarded_for_named_by_connection_is_not_trusted() {
        let raw = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: x-forwarded-for\r\n\r\n";
        assert_eq!(
            forward(raw),
            format!("GET / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}\r\n")
        );
    }

    #[test]
    fn a_valid_traceparent_goes_on_in_the_proxy_s_place_and_an_invalid_one_is_replaced() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\ntraceparent: {incoming}\r\nX-A: 1\r\n\
             Traceparent: 00-11111111111111111111111111111111-2222222222222222-00\r\n\r\n"
        );
        let request = parse_request(raw.as_bytes(), &LIMITS).unwrap().unwrap();
        let kept = Traceparent::from_valid(request.traceparent.expect("the first valid one"));
        assert_eq!(kept.as_str(), incoming);
        let ctx = ForwardContext {
            traceparent: &kept,
            ..context(true)
        };
        let fields = PROXY_FIELDS.replace(started_trace().as_str(), incoming);
        assert_eq!(
            forward_with(&raw, &ctx),
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n{fields}\r\n"),
            "exactly one traceparent, after X-Request-Id"
        );

        let invalid = "GET / HTTP/1.1\r\nHost: example.com\r\ntraceparent: 00-zz-1-01\r\n\r\n";
        let request = parse_request(invalid.as_bytes(), &LIMITS).unwrap().unwrap();
        assert_eq!(
            request.traceparent, None,
            "the proxy starts a trace instead"
        );
        assert_eq!(
            forward(invalid),
            format!("GET / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}\r\n")
        );
    }

    #[test]
    fn client_ip_is_written_canonically() {
        let mut ctx = context(true);
        ctx.client_ip = "::ffff:192.0.2.9".parse().unwrap();
        assert!(forward_with("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &ctx)
            .contains("X-Forwarded-For: 192.0.2.9\r\n"));
        ctx.client_ip = "2001:db8::1".parse().unwrap();
        assert!(forward_with("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &ctx)
            .contains("X-Forwarded-For: 2001:db8::1\r\n"));
    }

    #[test]
    fn proxy_owned_fields_from_the_client_are_replaced() {
        let raw = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: evil\r\nX-Forwarded-Proto: https\r\n\
                   X-Forwarded-Host: evil.example\r\n\r\n";
        assert_eq!(
            forward(raw),
            format!("GET / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}\r\n")
        );
    }

    #[test]
    fn client_certificate_fields_are_the_proxy_s_alone() {
        let raw = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Client-Cert-Subject: CN=admin\r\n\
                   x-client-cert-fingerprint: 00\r\nX_Client_Cert_Subject: CN=admin\r\n\r\n";
        // Without a verified certificate: dropped, whatever the listener.
        assert_eq!(
            forward(raw),
            format!("GET / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}\r\n")
        );
        let cert = ClientCertificate {
            subject: "CN=alice,O=Example".into(),
            fingerprint: "ab01".into(),
        };
        let mut ctx = context(true);
        ctx.client_cert = Some(&cert);
        assert_eq!(
            forward_with(raw, &ctx),
            format!(
                "GET / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}\
                 X-Client-Cert-Subject: CN=alice,O=Example\r\n\
                 X-Client-Cert-Fingerprint: ab01\r\n\r\n"
            )
        );
    }

    #[test]
    fn bare_lf_and_odd_whitespace_are_normalised() {
        let raw = "GET / HTTP/1.1\nHost:example.com\nA:\t x \t\nB:\n\n";
        let expected =
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nA: x\r\nB: \r\n{PROXY_FIELDS}\r\n");
        assert_eq!(forward(raw), expected);
    }

    #[test]
    fn absolute_form_is_forwarded_in_origin_form_with_the_target_authority_as_host() {
        let raw = "GET http://Example.com:8080/x?y HTTP/1.1\r\nHost: other.example\r\n\r\n";
        let expected = "GET /x?y HTTP/1.1\r\nHost: Example.com:8080\r\nX-Forwarded-For: 192.0.2.7\r\n\
                        X-Forwarded-Proto: http\r\nX-Forwarded-Host: Example.com:8080\r\nX-Request-Id: rid-1\r\ntraceparent: 00-00000000000000000000000000000001-0000000000000002-01\r\n\r\n";
        assert_eq!(forward(raw), expected);
        assert!(
            forward("GET http://a HTTP/1.1\r\nHost: a\r\n\r\n").starts_with("GET / HTTP/1.1\r\n")
        );
        assert!(forward("GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n")
            .starts_with("GET /?q HTTP/1.1\r\n"));
        assert!(forward("OPTIONS http://a HTTP/1.1\r\nHost: a\r\n\r\n")
            .starts_with("OPTIONS * HTTP/1.1\r\n"));
    }

    #[test]
    fn framing_is_written_by_the_proxy() {
        let raw = "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5, 5\r\nContent-Length: 005\r\n\r\n";
        assert_eq!(
            forward(raw),
            format!(
                "POST / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}Content-Length: 5\r\n\r\n"
            )
        );
        let raw = "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            forward(raw),
            format!(
                "POST / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}Content-Length: 0\r\n\r\n"
            )
        );
        let raw = "PUT / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(
            forward(raw),
            format!("PUT / HTTP/1.1\r\nHost: example.com\r\n{PROXY_FIELDS}Transfer-Encoding: chunked\r\n\r\n")
        );
    }

    #[test]
    fn upgrade_keeps_connection_upgrade_and_upgrade() {
        let raw = "GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Key: k\r\n\r\n";
        let expected = format!(
            "GET /ws HTTP/1.1\r\nHost: example.com\r\nSec-WebSocket-Key: k\r\n{PROXY_FIELDS}Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        assert_eq!(forward(raw), expected);
        assert!(forward_with(raw, &context(false))
            .contains("\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n"));
    }

    #[test]
    fn http10_request_without_host_is_forwarded_as_http11_with_an_empty_host() {
        let raw = "GET /old HTTP/1.0\r\nAccept: */*\r\n\r\n";
        let expected = "GET /old HTTP/1.1\r\nHost: \r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
                        X-Request-Id: rid-1\r\ntraceparent: 00-00000000000000000000000000000001-0000000000000002-01\r\nConnection: close\r\n\r\n";
        assert_eq!(forward_with(raw, &context(false)), expected);
    }

    fn rules(remove: &[&str], set: &[(&str, &str)], add: &[(&str, &str)]) -> HeaderEdits {
        let parsed = |fields: &[(&str, &str)]| {
            fields
                .iter()
                .map(|(name, value)| (name.to_string(), Template::parse(value).unwrap()))
                .collect()
        };
        HeaderEdits {
            remove: remove.iter().map(ToString::to_string).collect(),
            set: parsed(set),
            add: parsed(add),
        }
    }

    #[test]
    fn header_rules_remove_set_and_add_after_the_client_s_fields() {
        let raw = "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Debug: 1\r\nX-Env: dev\r\n\
                   Accept: */*\r\nx-env: dev2\r\nX-Tag: client\r\n\r\n";
        let edits = rules(
            &["x-debug"],
            &[("X-Env", "prod")],
            &[
                ("X-Client", "{client_ip}"),
                ("X-Tag", "{route} {method} {path} {query}"),
            ],
        );
        let vars = TemplateVars {
            client_ip: Some("192.0.2.7".parse().unwrap()),
            route: "example.com/a",
            method: "GET",
            path: "/a",
            query: Some("x=1"),
            ..TemplateVars::default()
        };
        let ctx = ForwardContext {
            edits: Some((&edits, &vars)),
            trust_forwarded: true,
            client_cert: None,
            ..context(true)
        };
        assert_eq!(
            forward_with(raw, &ctx),
            format!(
                "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Tag: client\r\n\
                 X-Env: prod\r\nX-Client: 192.0.2.7\r\nX-Tag: example.com/a GET /a x=1\r\n\
                 {PROXY_FIELDS}\r\n"
            )
        );
    }

    #[test]
    fn a_host_rule_replaces_the_host_line_and_forwarded_host_keeps_the_client_s() {
        let raw = "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        let edits = rules(&[], &[("host", "internal.{host}")], &[]);
        let vars = TemplateVars {
            host: Some("example.com"),
            ..TemplateVars::default()
        };
        let ctx = ForwardContext {
            edits: Some((&edits, &vars)),
            trust_forwarded: true,
            client_cert: None,
            ..context(true)
        };
        assert_eq!(
            forward_with(raw, &ctx),
            format!(
                "GET / HTTP/1.1\r\nHost: internal.example.com\r\nAccept: */*\r\n{PROXY_FIELDS}\r\n"
            )
        );
    }

    #[test]
    fn path_for_routing() {
        let path = |raw: &str| {
            parse_request(raw.as_bytes(), &LIMITS)
                .unwrap()
                .unwrap()
                .path()
                .to_owned()
        };
        assert_eq!(path("GET /a/b?c HTTP/1.1\r\nHost: h\r\n\r\n"), "/a/b");
        assert_eq!(path("GET /?c HTTP/1.1\r\nHost: h\r\n\r\n"), "/");
        assert_eq!(
            path("GET http://h/x/y?z HTTP/1.1\r\nHost: h\r\n\r\n"),
            "/x/y"
        );
        assert_eq!(path("GET http://h?z HTTP/1.1\r\nHost: h\r\n\r\n"), "/");
        assert_eq!(path("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), "/");
        assert_eq!(path("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"), "/");
    }
}
