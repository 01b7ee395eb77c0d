//! A route's templates expanded for one request: the variables a request gives
//! ([`request_vars`]) and the target sent upstream when the route rewrites the path
//! ([`upstream_target`]). Only routes that rewrite or redirect come here.

use crate::config::{PathRewrite, RouteConfig, Template, TemplateVars, Var};
use crate::http::Request;
use crate::upstream::route::route_label;
use std::net::IpAddr;

/// The target sent upstream for a request of `route`, which rewrites the path (`rewrite`).
pub fn upstream_target(
    rewrite: &PathRewrite,
    route: &RouteConfig,
    request: &Request<'_>,
    scheme: &str,
    client_ip: IpAddr,
    request_id: &str,
) -> Vec<u8> {
    let label = match rewrite {
        PathRewrite::Regex { to, .. } => label_if_named(to, route),
        PathRewrite::Prefix(_) => String::new(),
    };
    let path = request.path();
    let vars = request_vars(request, path, scheme, client_ip, request_id, &label);
    rewritten_target(rewrite, route, request, vars)
}

/// What a template may name of `request` (`path` is its path, `route` its route's label when a
/// template names `{route}`, else empty; see [`label_if_named`]). No backend, no captures: the
/// caller adds the captures its template may name.
pub fn request_vars<'a>(
    request: &'a Request<'a>,
    path: &'a str,
    scheme: &'a str,
    client_ip: IpAddr,
    request_id: &'a str,
    route: &'a str,
) -> TemplateVars<'a> {
    TemplateVars {
        scheme,
        host: request.host,
        path,
        query: request.query(),
        method: request.method_str,
        client_ip: Some(client_ip.to_canonical()),
        request_id,
        route,
        backend: None,
        captures: None,
    }
}

/// The route's label when `template` names `{route}`; empty otherwise (not built for nothing).
pub fn label_if_named(template: &Template, route: &RouteConfig) -> String {
    if template.vars().any(|var| *var == Var::Route) {
        route_label(route)
    } else {
        String::new()
    }
}

/// The origin-form target to send upstream for a request of `route` (which has `rewrite`):
/// the path rewritten, always starting with `/`, then the query as sent. `vars` are the
/// request's (for `rewrite_regex`'s replacement; its captures are added here).
pub fn rewritten_target(
    rewrite: &PathRewrite,
    route: &RouteConfig,
    request: &Request<'_>,
    vars: TemplateVars<'_>,
) -> Vec<u8> {
    let path = vars.path;
    let mut out = Vec::with_capacity(path.len() + 64);
    match rewrite {
        PathRewrite::Prefix(to) => {
            // The router matched the prefix, so the path starts with it.
            let mut rest = path.get(route.path_prefix.len()..).unwrap_or("");
            if to.ends_with('/') && rest.starts_with('/') {
                rest = &rest[1..];
            }
            out.extend_from_slice(to.as_bytes());
            out.extend_from_slice(rest.as_bytes());
        }
        PathRewrite::Regex { pattern, to } => match pattern.0.captures(path) {
            Some(captures) => {
                let whole = captures.get(0).expect("group 0 is the match");
                out.extend_from_slice(&path.as_bytes()[..whole.start()]);
                let vars = TemplateVars {
                    captures: Some(&captures),
                    ..vars
                };
                to.expand(&vars, &mut out);
                out.extend_from_slice(&path.as_bytes()[whole.end()..]);
            }
            None => out.extend_from_slice(path.as_bytes()),
        },
    }
    if !out.starts_with(b"/") {
        out.insert(0, b'/');
    }
    if let Some(query) = request.query() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Pattern, RouteSettings};
    use crate::http::{parse_request, HeadLimits};

    fn target(prefix: &str, rewrite: PathRewrite, line: &str) -> String {
        let head = format!("{line} HTTP/1.1\r\nHost: a.example\r\n\r\n");
        let limits = HeadLimits {
            max_head_bytes: 4096,
            max_uri_bytes: 1024,
            max_headers: 32,
        };
        let request = parse_request(head.as_bytes(), &limits).unwrap().unwrap();
        let route = RouteConfig::forward(None, prefix, 0, RouteSettings::default());
        let path = request.path();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let vars = request_vars(&request, path, "http", ip, "r1", "");
        String::from_utf8(rewritten_target(&rewrite, &route, &request, vars)).unwrap()
    }

    fn regex(pattern: &str, to: &str) -> PathRewrite {
        PathRewrite::Regex {
            pattern: Pattern(regex::Regex::new(pattern).unwrap()),
            to: Template::parse(to).unwrap(),
        }
    }

    #[test]
    fn prefixes_are_stripped_or_replaced_and_the_query_kept() {
        let strip = || PathRewrite::Prefix("/".to_owned());
        assert_eq!(target("/api/", strip(), "GET /api/users?x=1"), "/users?x=1");
        assert_eq!(target("/api", strip(), "GET /api/users"), "/users");
        assert_eq!(target("/api", strip(), "GET /api"), "/");
        assert_eq!(target("/api", strip(), "GET /api?q"), "/?q");
        let v2 = || PathRewrite::Prefix("/v2/".to_owned());
        assert_eq!(target("/api/", v2(), "GET /api/users"), "/v2/users");
        assert_eq!(
            target("/api/", v2(), "GET http://a.example/api/u?q=1"),
            "/v2/u?q=1"
        );
    }

    #[test]
    fn the_first_match_is_replaced_with_its_captures() {
        let rewrite = || regex("/old/([a-z]+)", "/new/{1}/{host}");
        assert_eq!(
            target("/", rewrite(), "GET /x/old/abc/old/def?k=v"),
            "/x/new/abc/a.example/old/def?k=v"
        );
        assert_eq!(target("/", rewrite(), "GET /none?k"), "/none?k");
        assert_eq!(
            target("/", regex("^/", ""), "GET /a"),
            "/a",
            "always a `/` first"
        );
    }
}
