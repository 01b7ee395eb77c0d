//! Request targets (RFC 9112 §3.2) and authorities (RFC 3986 §3.2): which of the four forms a
//! target takes, and whether a `Host` value or an absolute-form authority is one we can route on.
//!
//! Deliberately narrower than the URI grammar where a wider reading would let two parsers
//! disagree: no userinfo, no IPvFuture or zone identifiers, no empty port, no `,` in a host (it
//! is how a duplicated field looks once folded), no fragment and no raw non-ASCII byte in a target.

use super::Method;
use std::net::Ipv6Addr;

/// The form of a validated request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`: the authority is `target[authority_start..origin_start]`,
    /// what follows (possibly empty, or starting with `?`) is forwarded in origin-form.
    Absolute {
        authority_start: usize,
        origin_start: usize,
    },
    /// `host:port`, CONNECT only.
    Authority,
    /// `*`, OPTIONS only.
    Asterisk,
}

/// Classifies `target` for `method`, refusing the forms the method may not use.
pub(crate) fn classify_target(method: Method, target: &str) -> Result<TargetForm, &'static str> {
    // httparse already refused SP, controls and DEL; it lets through a fragment and raw UTF-8,
    // neither of which a client may send and both of which backends read differently.
    if target.bytes().any(|b| b == b'#' || !b.is_ascii()) {
        return Err("invalid byte in request target");
    }
    if method == Method::Connect {
        return authority_host(target, PortRule::Required)
            .map(|_| TargetForm::Authority)
            .map_err(|_| "CONNECT target must be host:port");
    }
    if target == "*" {
        return if method == Method::Options {
            Ok(TargetForm::Asterisk)
        } else {
            Err("`*` target is only valid for OPTIONS")
        };
    }
    if target.starts_with('/') {
        return Ok(TargetForm::Origin);
    }
    let authority_start = scheme_len(target).ok_or("request target must start with `/`")?;
    let after_scheme = &target[authority_start..];
    let authority_len = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    authority_host(&after_scheme[..authority_len], PortRule::Optional)
        .map_err(|_| "invalid authority in absolute-form target")?;
    Ok(TargetForm::Absolute {
        authority_start,
        origin_start: authority_start + authority_len,
    })
}

/// Length of a leading `http://` or `https://` (schemes are case-insensitive), if any.
fn scheme_len(target: &str) -> Option<usize> {
    let bytes = target.as_bytes();
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let prefix = bytes.get(..scheme.len())?;
        prefix
            .eq_ignore_ascii_case(scheme.as_bytes())
            .then_some(scheme.len())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortRule {
    Optional,
    Required,
}

/// Validates `authority = host [ ":" port ]` and returns the host part, without the port (an
/// IPv6 literal keeps its brackets). `host` is a reg-name (unreserved, pct-encoded, sub-delims
/// except `,`), which covers IPv4 literals, or `[IPv6]`; `port` is 1 to 5 digits, at most 65535.
pub(crate) fn authority_host(authority: &str, port_rule: PortRule) -> Result<&str, ()> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(())?;
        authority[1..close].parse::<Ipv6Addr>().map_err(|_| ())?;
        let (host, rest) = authority.split_at(close + 1);
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':').ok_or(())?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !is_reg_name_or_literal(host.as_bytes()) {
        return Err(());
    }
    match port {
        Some(port) if !is_port(port) => Err(()),
        None if port_rule == PortRule::Required => Err(()),
        _ => Ok(host),
    }
}

fn is_reg_name_or_literal(host: &[u8]) -> bool {
    if host[0] == b'[' {
        // Validated as an IPv6 address by the caller.
        return true;
    }
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

fn is_port(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65535)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_we_accept() {
        let optional = PortRule::Optional;
        assert_eq!(authority_host("example.com", optional), Ok("example.com"));
        assert_eq!(
            authority_host("Example.COM:8080", optional),
            Ok("Example.COM")
        );
        assert_eq!(authority_host("10.0.0.1:80", optional), Ok("10.0.0.1"));
        assert_eq!(authority_host("[::1]", optional), Ok("[::1]"));
        assert_eq!(
            authority_host("[2001:db8::1]:443", optional),
            Ok("[2001:db8::1]")
        );
        assert_eq!(
            authority_host("my_host.local:65535", optional),
            Ok("my_host.local")
        );
        assert_eq!(
            authority_host("caf%C3%A9.example", optional),
            Ok("caf%C3%A9.example")
        );
    }

    #[test]
    fn authorities_we_refuse() {
        for bad in [
            "",
            ":80",
            "user@example.com",
            "user:pass@example.com",
            "exa mple.com",
            "example.com:",
            "example.com:65536",
            "example.com:+80",
            "example.com:80:80",
            "example.com/path",
            "a,b",
            "%zz.example",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[v1.fe80::1]",
            "[fe80::1%eth0]",
            "[not-ipv6]",
            "caf\u{e9}.example",
        ] {
            assert_eq!(authority_host(bad, PortRule::Optional), Err(()), "{bad:?}");
        }
        assert_eq!(authority_host("example.com", PortRule::Required), Err(()));
        assert_eq!(
            authority_host("example.com:443", PortRule::Required),
            Ok("example.com")
        );
    }

    #[test]
    fn target_forms() {
        assert_eq!(classify_target(Method::Get, "/a?b"), Ok(TargetForm::Origin));
        assert_eq!(
            classify_target(Method::Options, "*"),
            Ok(TargetForm::Asterisk)
        );
        assert_eq!(
            classify_target(Method::Connect, "example.com:443"),
            Ok(TargetForm::Authority)
        );
        assert_eq!(
            classify_target(Method::Get, "HTTP://example.com:8080/x?y"),
            Ok(TargetForm::Absolute {
                authority_start: 7,
                origin_start: 23
            })
        );
        assert_eq!(
            classify_target(Method::Get, "https://example.com?q"),
            Ok(TargetForm::Absolute {
                authority_start: 8,
                origin_start: 19
            })
        );
    }

    #[test]
    fn target_forms_refused_for_the_method_or_syntax() {
        let cases = [
            (Method::Get, "*", "`*` target is only valid for OPTIONS"),
            (
                Method::Connect,
                "example.com",
                "CONNECT target must be host:port",
            ),
            (Method::Connect, "/path", "CONNECT target must be host:port"),
            (Method::Get, "path", "request target must start with `/`"),
            (
                Method::Get,
                "example.com:80",
                "request target must start with `/`",
            ),
            (
                Method::Get,
                "ftp://example.com/",
                "request target must start with `/`",
            ),
            (
                Method::Get,
                "http://user@example.com/",
                "invalid authority in absolute-form target",
            ),
            (
                Method::Get,
                "http:///path",
                "invalid authority in absolute-form target",
            ),
            (Method::Get, "/a#frag", "invalid byte in request target"),
            (Method::Get, "/caf\u{e9}", "invalid byte in request target"),
        ];
        for (method, target, error) in cases {
            assert_eq!(
                classify_target(method, target),
                Err(error),
                "{method:?} {target:?}"
            );
        }
    }
}
