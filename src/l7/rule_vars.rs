//! What a route's header rules name (`{client_ip}`, `{request_id}`, `{route}`, `{backend}`,
//! captures of its `path_regex`…), gathered per request only for a route that has rules: a
//! route without them never builds one.
//!
//! The request side is built in `session::prepare` from the parsed head; the response side in
//! `body::relay_response` from what the request keeps (its `METHOD target` summary, the head sent
//! upstream for the host) and the backend that answered.

use crate::config::{HeaderEdits, RouteConfig, TemplateVars, Var};
use crate::upstream::route::route_label;
use std::net::{IpAddr, SocketAddr};

/// Which request properties a rule set names: only those are looked up or computed per request
/// (the route's label, the pattern's captures, the host, the target's path and query).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    pub route: bool,
    pub captures: bool,
    pub host: bool,
    pub target: bool,
}

impl Named {
    pub fn by(edits: &HeaderEdits) -> Named {
        let mut named = Named::default();
        for var in edits
            .set
            .iter()
            .chain(&edits.add)
            .flat_map(|(_, t)| t.vars())
        {
            match var {
                Var::Route => named.route = true,
                Var::Capture(_) | Var::NamedCapture(_) => {
                    named.captures = true;
                    named.target = true;
                }
                Var::Host => named.host = true,
                Var::Path | Var::Query | Var::Uri => named.target = true,
                _ => {}
            }
        }
        named
    }
}

/// The owned and borrowed values behind a [`TemplateVars`]: [`RuleVars::vars`] lends them.
pub struct RuleVars<'a> {
    pub scheme: &'static str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
    pub backend: Option<SocketAddr>,
    /// `{route}`, computed only when a value names it.
    route: String,
    /// The route's `path_regex` on the path, computed only when a value names a capture.
    captures: Option<regex::Captures<'a>>,
}

/// The request properties a [`RuleVars`] starts from.
pub struct RequestParts<'a> {
    pub scheme: &'static str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
}

impl<'a> RuleVars<'a> {
    /// The values `edits` (of `route`) name, for a request with `parts`.
    pub fn new(
        route: &RouteConfig,
        edits: &HeaderEdits,
        parts: RequestParts<'a>,
        backend: Option<SocketAddr>,
    ) -> Self {
        let named = Named::by(edits);
        let captures = match (&route.matches.path_regex, named.captures) {
            (Some(pattern), true) => pattern.0.captures(parts.path),
            _ => None,
        };
        RuleVars {
            scheme: parts.scheme,
            host: parts.host,
            path: parts.path,
            query: parts.query,
            method: parts.method,
            client_ip: parts.client_ip,
            request_id: parts.request_id,
            backend,
            route: if named.route {
                route_label(route)
            } else {
                String::new()
            },
            captures,
        }
    }

    pub fn vars(&self) -> TemplateVars<'_> {
        TemplateVars {
            scheme: self.scheme,
            host: self.host,
            path: self.path,
            query: self.query,
            method: self.method,
            client_ip: Some(self.client_ip.to_canonical()),
            request_id: self.request_id,
            route: &self.route,
            backend: self.backend,
            captures: self.captures.as_ref(),
        }
    }
}

/// The path (`/` when empty) and query of a request target as sent: origin-form, or
/// absolute-form (its authority skipped); an authority-form or `*` target has path `/`.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let origin = match target.find("://") {
        Some(at) if !target.starts_with('/') => {
            let rest = &target[at + 3..];
            &rest[rest.find(['/', '?']).unwrap_or(rest.len())..]
        }
        _ if target.starts_with('/') => target,
        _ => return ("/", None),
    };
    let (path, query) = match origin.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (origin, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// The host of the request whose upstream head is `head`, without port, read back from the
/// `X-Forwarded-Host` the proxy wrote (the client's, whatever a rule set as `Host`).
pub fn forwarded_host(head: &[u8]) -> Option<&str> {
    const FIELD: &[u8] = b"\r\nX-Forwarded-Host: ";
    let at = memchr::memmem::find(head, FIELD)? + FIELD.len();
    let len = head[at..].iter().position(|&b| b == b'\r')?;
    let authority = std::str::from_utf8(&head[at..at + len]).ok()?;
    Some(match authority.strip_prefix('[') {
        Some(rest) => &authority[..rest.find(']').map_or(authority.len(), |end| end + 2)],
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_the_route_are_computed_only_when_named() {
        use crate::config::{Pattern, RouteSettings, Template};
        let mut route = RouteConfig::forward(None, "/users/", 0, RouteSettings::default());
        route.matches.path_regex = Some(Pattern(
            regex::Regex::new("^/users/(?P<id>[0-9]+)").unwrap(),
        ));
        let parts = || RequestParts {
            scheme: "http",
            host: Some("a"),
            path: "/users/42/x",
            query: None,
            method: "GET",
            client_ip: "192.0.2.1".parse().unwrap(),
            request_id: "r",
        };
        let edits = |value: &str| HeaderEdits {
            add: vec![("X".into(), Template::parse(value).unwrap())],
            ..HeaderEdits::default()
        };
        let expand = |value: &str| {
            let edits = edits(value);
            let vars = RuleVars::new(&route, &edits, parts(), None);
            let mut out = Vec::new();
            edits.add[0].1.expand(&vars.vars(), &mut out);
            (
                String::from_utf8(out).unwrap(),
                vars.route.is_empty(),
                vars.captures.is_none(),
            )
        };
        assert_eq!(
            expand("{id}/{1} {route}"),
            ("42/42 /users/ ~^/users/(?P<id>[0-9]+)".into(), false, false)
        );
        assert_eq!(expand("{client_ip}"), ("192.0.2.1".into(), true, true));
    }

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1")));
        assert_eq!(split_target("/a"), ("/a", None));
        assert_eq!(split_target("http://h:1/p?q"), ("/p", Some("q")));
        assert_eq!(split_target("http://h?q"), ("/", Some("q")));
        assert_eq!(split_target("h:443"), ("/", None));
        assert_eq!(split_target("*"), ("/", None));
    }

    #[test]
    fn the_host_is_read_back_without_its_port() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: a.example:8080\r\n\r\n";
        assert_eq!(forwarded_host(head), Some("a.example"));
        let head = b"GET / HTTP/1.1\r\nX-Forwarded-Host: [::1]:80\r\n\r\n";
        assert_eq!(forwarded_host(head), Some("[::1]"));
        assert_eq!(forwarded_host(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
