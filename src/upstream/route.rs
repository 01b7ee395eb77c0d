//! Choosing the route for a request: the listener's routes in order, first match wins.
//!
//! An HTTP request ([`find_http_route`]) is tested against each route's conditions from the
//! cheapest to the most expensive: host, path prefix, exact path, methods, headers, query, and
//! the path pattern last. A route with no condition besides host and prefix costs one more
//! branch than host and prefix alone ([`RouteMatch::is_empty`]). A tcp listener's routes
//! ([`find_route`]) match the TLS server name only.

use crate::config::{FieldMatch, RouteConfig, RouteMatch, ValueMatch};
use crate::http::Request;
use std::fmt::Write as _;

/// The index (in `routes`) of the first route matching `host` (as sent: may carry a port, any
/// case) and `path`, ignoring any other condition: the L4 (SNI) routes, which have none.
/// `None`: no route matches.
pub fn find_route(routes: &[RouteConfig], host: Option<&str>, path: &str) -> Option<usize> {
    let host = host.map(strip_port);
    routes.iter().position(|route| {
        host_matches(route.host.as_deref(), host) && path.starts_with(&route.path_prefix)
    })
}

/// The index (in `routes`) of the first route whose every condition `request` meets. `None`: no
/// route matches (the client gets 404).
pub fn find_http_route(routes: &[RouteConfig], request: &Request<'_>) -> Option<usize> {
    let host = request.host.map(strip_port);
    let path = request.path();
    routes.iter().position(|route| {
        host_matches(route.host.as_deref(), host)
            && path.starts_with(&route.path_prefix)
            && (route.matches.is_empty() || conditions_hold(&route.matches, request, path))
    })
}

/// The conditions besides host and prefix, cheapest first, the pattern last.
fn conditions_hold(conditions: &RouteMatch, request: &Request<'_>, path: &str) -> bool {
    conditions
        .exact_path
        .as_deref()
        .is_none_or(|exact| exact == path)
        && (conditions.methods.is_empty()
            || conditions.methods.iter().any(|m| m == request.method_str))
        && conditions
            .headers
            .iter()
            .all(|field| value_matches(&field.value, request.header_values(&field.name)))
        && conditions.query.iter().all(|field| {
            let values = query_values(request.query(), &field.name);
            value_matches(&field.value, values)
        })
        && conditions
            .path_regex
            .as_ref()
            .is_none_or(|pattern| pattern.0.is_match(path))
}

fn value_matches<'v>(want: &ValueMatch, mut values: impl Iterator<Item = &'v [u8]>) -> bool {
    match want {
        ValueMatch::Present => values.next().is_some(),
        ValueMatch::Absent => values.next().is_none(),
        ValueMatch::Exact(text) => values.any(|value| value == text.as_bytes()),
    }
}

/// The values of the query parameter `name` as sent (not percent-decoded): `a=1&b&a=2` gives
/// `1`, `2` for `a` and an empty value for `b`.
fn query_values<'q>(query: Option<&'q str>, name: &'q str) -> impl Iterator<Item = &'q [u8]> {
    query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value.as_bytes())
        })
}

/// What a route matches, for logs, metrics and `check`, compactly: `*.example.com/v2/`, `/v2/`
/// for any host, `=/login` for an exact path, then the methods (`GET,HEAD`), header and query
/// conditions (`h:x-canary=1`, `h:x-debug`, `h:!cookie`, `q:debug=on`) and the pattern
/// (`~^/u/[0-9]+$`), space-separated: `api.example.com/v2/ GET,HEAD ~^/u/[0-9]+$`.
pub fn route_label(route: &RouteConfig) -> String {
    let host = route.host.as_deref().unwrap_or("");
    let conditions = &route.matches;
    let mut label = match &conditions.exact_path {
        Some(exact) => format!("{host}={exact}"),
        None => format!("{host}{}", route.path_prefix),
    };
    if conditions.is_empty() {
        return label;
    }
    if !conditions.methods.is_empty() {
        let _ = write!(label, " {}", conditions.methods.join(","));
    }
    let fields = |label: &mut String, kind: &str, fields: &[FieldMatch]| {
        for field in fields {
            let _ = match &field.value {
                ValueMatch::Present => write!(label, " {kind}:{}", field.name),
                ValueMatch::Absent => write!(label, " {kind}:!{}", field.name),
                ValueMatch::Exact(value) => write!(label, " {kind}:{}={value}", field.name),
            };
        }
    };
    fields(&mut label, "h", &conditions.headers);
    fields(&mut label, "q", &conditions.query);
    if let Some(pattern) = &conditions.path_regex {
        let _ = write!(label, " ~{}", pattern.as_str());
    }
    label
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

/// `pattern` is lowercase (validated); the request's host is compared case-insensitively.
fn host_matches(pattern: Option<&str>, host: Option<&str>) -> bool {
    let Some(pattern) = pattern else { return true };
    let Some(host) = host else { return false };
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Pattern, RouteAction};
    use crate::http::{parse_request, HeadLimits};

    fn find_upstream(routes: &[RouteConfig], host: Option<&str>, path: &str) -> Option<usize> {
        find_route(routes, host, path).and_then(|i| routes[i].upstream())
    }

    #[test]
    fn labels_say_host_and_prefix() {
        assert_eq!(
            route_label(&route(Some("*.example.com"), "/v2/", 0)),
            "*.example.com/v2/"
        );
        assert_eq!(route_label(&route(None, "/", 0)), "/");
    }

    fn route(host: Option<&str>, prefix: &str, upstream: usize) -> RouteConfig {
        RouteConfig::forward(
            host.map(str::to_owned),
            prefix,
            upstream,
            crate::config::RouteSettings::default(),
        )
    }

    #[test]
    fn first_match_wins_by_host_then_prefix() {
        let routes = [
            route(Some("api.example.com"), "/v2/", 1),
            route(Some("*.example.com"), "/", 2),
            route(None, "/static/", 3),
            route(None, "/", 0),
        ];
        assert_eq!(
            find_upstream(&routes, Some("API.Example.com:8080"), "/v2/x"),
            Some(1)
        );
        assert_eq!(
            find_upstream(&routes, Some("api.example.com"), "/v1/x"),
            Some(2)
        );
        assert_eq!(
            find_upstream(&routes, Some("www.example.com"), "/"),
            Some(2)
        );
        assert_eq!(
            find_upstream(&routes, Some("example.com"), "/static/a"),
            Some(3)
        );
        assert_eq!(find_upstream(&routes, Some("other"), "/x"), Some(0));
        assert_eq!(find_upstream(&routes, None, "/x"), Some(0));
        assert_eq!(find_upstream(&routes, Some("[::1]:80"), "/x"), Some(0));
    }

    /// The index of the route `head` (a request head) goes to.
    fn find_for(routes: &[RouteConfig], head: &str) -> Option<usize> {
        let limits = HeadLimits {
            max_head_bytes: 4096,
            max_uri_bytes: 1024,
            max_headers: 32,
        };
        let request = parse_request(head.as_bytes(), &limits).unwrap().unwrap();
        find_http_route(routes, &request)
    }

    fn with(matches: RouteMatch) -> RouteConfig {
        let mut route = route(None, "/", 0);
        route.matches = matches;
        route
    }

    fn field(name: &str, value: ValueMatch) -> FieldMatch {
        FieldMatch {
            name: name.to_owned(),
            value,
        }
    }

    #[test]
    fn each_condition_narrows_the_route_and_the_first_match_wins() {
        let routes = [
            with(RouteMatch {
                exact_path: Some("/login".to_owned()),
                ..RouteMatch::default()
            }),
            with(RouteMatch {
                methods: vec!["POST".to_owned()],
                ..RouteMatch::default()
            }),
            with(RouteMatch {
                headers: vec![
                    field("x-canary", ValueMatch::Exact("1".to_owned())),
                    field("cookie", ValueMatch::Absent),
                ],
                ..RouteMatch::default()
            }),
            with(RouteMatch {
                query: vec![field("debug", ValueMatch::Present)],
                ..RouteMatch::default()
            }),
            with(RouteMatch {
                path_regex: Some(Pattern(regex::Regex::new("^/u/[0-9]+$").unwrap())),
                ..RouteMatch::default()
            }),
            route(None, "/", 0),
        ];
        let host = "Host: a\r\n";
        let find = |line: &str, fields: &str| {
            find_for(&routes, &format!("{line} HTTP/1.1\r\n{host}{fields}\r\n"))
        };
        assert_eq!(find("POST /login", ""), Some(0), "file order");
        assert_eq!(find("GET /login/x", ""), Some(5), "exact, not a prefix");
        assert_eq!(find("POST /x", "Content-Length: 0\r\n"), Some(1));
        assert_eq!(find("post /x", ""), Some(5), "methods are case-sensitive");
        assert_eq!(find("GET /x", "X-Canary: 0\r\nx-canary: 1\r\n"), Some(2));
        assert_eq!(find("GET /x", "X-Canary: 1\r\nCookie: a=b\r\n"), Some(5));
        assert_eq!(find("GET /x?a=1&debug", ""), Some(3));
        assert_eq!(find("GET /x?debugging=1", ""), Some(5));
        assert_eq!(
            find("GET /u/42?x", ""),
            Some(4),
            "the pattern sees the path only"
        );
        assert_eq!(find("GET /u/42/x", ""), Some(5));
    }

    #[test]
    fn values_of_query_parameters_as_sent() {
        let values: Vec<&[u8]> = query_values(Some("a=1&b&a=2&ab=3"), "a").collect();
        assert_eq!(values, [&b"1"[..], &b"2"[..]]);
        let values: Vec<&[u8]> = query_values(Some("a=1&b"), "b").collect();
        assert_eq!(values, [&b""[..]]);
        assert_eq!(query_values(None, "a").count(), 0);
    }

    #[test]
    fn labels_show_every_condition_compactly() {
        let mut r = route(Some("api.example.com"), "/v2/", 0);
        r.matches = RouteMatch {
            methods: vec!["GET".to_owned(), "HEAD".to_owned()],
            headers: vec![
                field("x-canary", ValueMatch::Exact("1".to_owned())),
                field("cookie", ValueMatch::Absent),
            ],
            query: vec![field("debug", ValueMatch::Present)],
            path_regex: Some(Pattern(regex::Regex::new("^/u/[0-9]+$").unwrap())),
            ..RouteMatch::default()
        };
        assert_eq!(
            route_label(&r),
            "api.example.com/v2/ GET,HEAD h:x-canary=1 h:!cookie q:debug ~^/u/[0-9]+$"
        );
        let mut exact = route(None, "/", 0);
        exact.matches.exact_path = Some("/login".to_owned());
        exact.action = RouteAction::Forward(1);
        assert_eq!(route_label(&exact), "=/login");
    }

    #[test]
    fn wildcard_needs_a_label_before_the_suffix() {
        let routes = [route(Some("*.example.com"), "/", 1)];
        assert_eq!(find_upstream(&routes, Some("example.com"), "/"), None);
        assert_eq!(find_upstream(&routes, Some("badexample.com"), "/"), None);
        assert_eq!(
            find_upstream(&routes, Some("a.b.example.com"), "/"),
            Some(1)
        );
    }
}
