//! Choosing the upstream group for a request: the listener's routes in order, first match wins.

use crate::config::RouteConfig;

/// The index (in `routes`) of the first route matching `host` (as sent: may carry a port, any
/// case) and `path`. `None`: no route matches (the client gets 404).
pub fn find_route(routes: &[RouteConfig], host: Option<&str>, path: &str) -> Option<usize> {
    let host = host.map(strip_port);
    routes.iter().position(|route| {
        host_matches(route.host.as_deref(), host) && path.starts_with(&route.path_prefix)
    })
}

/// What a route matches, for logs and metrics: `*.example.com/v2/`, or `/v2/` for any host.
pub fn route_label(route: &RouteConfig) -> String {
    format!(
        "{}{}",
        route.host.as_deref().unwrap_or(""),
        route.path_prefix
    )
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
