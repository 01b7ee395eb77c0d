//! Listeners and their routes: addresses (no two listeners on one), protocol, host and path
//! patterns (SNI patterns on tcp listeners), the upstream each route names, and routes that can
//! never match because an earlier one always matches first. The listener's own `upstream`
//! becomes a catch-all route, last.
//! What is particular to tcp listeners (`relay`, and what their groups may have) is in `tcp`.

use std::net::SocketAddr;

use super::{all, Validator};
use crate::config::error::{did_you_mean, quote, KeyPath};
use crate::config::file::{FileConfig, FileListener, FileRoute};
use crate::config::{
    ListenerConfig, ListenerPolicy, ListenerProtocol, RouteAction, RouteConfig, RouteSettings,
};

const PROTOCOLS: [&str; 3] = ["http", "https", "tcp"];

impl Validator<'_> {
    pub(super) fn listeners(
        &mut self,
        file: &FileConfig,
        path: &KeyPath,
    ) -> Option<Vec<ListenerConfig>> {
        if file.listener.is_empty() {
            self.push(
                path.clone(),
                "",
                "no listener defined",
                "add one: [listener.http] with address = \"127.0.0.1:8080\" and upstream = \"NAME\"",
            );
            return None;
        }
        let mut listeners = Vec::new();
        let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
        for (name, raw) in &file.listener {
            let listener_path = path.key(name);
            let listener = self.listener(name, raw, &listener_path);
            if let Some(address) = listener.as_ref().map(|l| l.address) {
                if let Some((other, other_address)) =
                    bound.iter().find(|(_, a)| overlaps(*a, address))
                {
                    self.push(
                        listener_path.key("address"),
                        quote(raw.address.as_deref().unwrap_or_default()),
                        format!("listener `{other}` already listens on {other_address}"),
                        "give each listener its own address (or port)",
                    );
                }
                bound.push((name, address));
            }
            listeners.push(listener);
        }
        all(listeners)
    }

    pub(super) fn listener(
        &mut self,
        name: &str,
        raw: &FileListener,
        path: &KeyPath,
    ) -> Option<ListenerConfig> {
        let named = self.name("listener", name, path);
        let address = match &raw.address {
            Some(text) => self.address(text, &path.key("address"), "127.0.0.1:8080", false),
            None => {
                self.push(
                    path.key("address"),
                    "",
                    "missing: a listener needs an address",
                    "add address = \"127.0.0.1:8080\" (IP:PORT)",
                );
                None
            }
        };
        let protocol = match raw.protocol.as_deref() {
            None | Some("http") => Some(ListenerProtocol::Http),
            Some("https") => Some(ListenerProtocol::Https),
            Some("tcp") => Some(ListenerProtocol::Tcp),
            Some(other) => {
                let hint = match other {
                    "tls" | "ssl" => "for HTTP inside TLS, write protocol = \"https\"; to pass \
                                      TLS through untouched, protocol = \"tcp\" "
                        .to_owned(),
                    _ => did_you_mean(other, PROTOCOLS),
                };
                self.push(
                    path.key("protocol"),
                    quote(other),
                    format!("unknown protocol `{other}`"),
                    format!("{hint}(the protocols are `http`, `https` and `tcp`)"),
                );
                None
            }
        };
        let tls = self.listener_tls(protocol, raw.tls.as_ref(), path);
        let relay = self.relay(protocol, raw.relay.as_deref(), path);
        let https_redirect = self.redirect_https(raw, protocol, path);
        let trust = self.trust(raw, protocol, path);
        let access = self.access(raw.access.as_ref(), protocol, false, path);
        let connection_limits = self.connection_limits(raw, protocol, path);
        let listener_rate_limits =
            self.rate_limit_refs(raw.rate_limits.as_ref(), protocol, &path.key("rate_limits"));
        let routes: Vec<Option<RouteConfig>> = raw
            .route
            .iter()
            .enumerate()
            .map(|(i, route)| self.route(route, protocol, &path.key("route").index(i)))
            .collect();
        self.shadowed_routes(&routes, path);
        let catch_all = raw.upstream.as_deref().map(|group| {
            let catch_path = path.key("upstream");
            let index = self.group(group, &catch_path);
            let covering = routes.iter().position(|route| {
                matches!(route, Some(r) if r.host.is_none() && r.path_prefix == "/"
                    && r.matches.is_empty())
            });
            if let Some(j) = covering {
                self.push(
                    catch_path,
                    quote(group),
                    format!("never used: route[{j}] already matches every request"),
                    format!(
                        "remove `upstream` from [{path}], or narrow route[{j}] with a host or \
                         path_prefix"
                    ),
                );
                return None;
            }
            index
        });
        let mistyped = self.issues.has_failed(&path.key("route"))
            || self.issues.has_failed(&path.key("upstream"));
        let redirects = (raw.redirect_https.as_ref()).is_some_and(|v| v.as_bool() != Some(false));
        if raw.route.is_empty() && raw.upstream.is_none() && !mistyped && !redirects {
            self.push(
                path.clone(),
                "",
                "the listener has no routes and no upstream",
                format!(
                    "add upstream = \"NAME\" to send every request to a group, or \
                     [[{path}.route]] tables"
                ),
            );
            return None;
        }
        let mut routes = all(routes)?;
        routes.extend(https_redirect?);
        if let Some(index) = catch_all {
            let mut route = RouteConfig::forward(None, "/", index?, RouteSettings::default());
            route.compress = self.compress_by_default;
            routes.push(route);
        }
        // A route without its own `rate_limits` counts against the listener's.
        let listener_rate_limits = listener_rate_limits?.unwrap_or_default();
        for (i, route) in routes.iter_mut().enumerate() {
            let own = raw.route.get(i).is_some_and(|r| r.rate_limits.is_some());
            if !own {
                route.rate_limits = listener_rate_limits.clone();
            }
        }
        let (trusted_proxies, accept_proxy_protocol) = trust?;
        let (connection_limits, steering) = connection_limits?;
        let policy = ListenerPolicy {
            trusted_proxies,
            accept_proxy_protocol,
            access: access?,
            connection_limits,
            steering,
        };
        named?;
        Some(ListenerConfig {
            name: name.to_string(),
            address: address?,
            protocol: protocol?,
            tls: tls?,
            routes,
            relay: relay?,
            policy,
        })
    }

    pub(super) fn route(
        &mut self,
        raw: &FileRoute,
        protocol: Option<ListenerProtocol>,
        path: &KeyPath,
    ) -> Option<RouteConfig> {
        let tcp = protocol == Some(ListenerProtocol::Tcp);
        let mut ok = true;
        if tcp {
            for (key, value) in [("host", &raw.host), ("path_prefix", &raw.path_prefix)] {
                if let Some(value) = value {
                    ok = false;
                    self.push(
                        path.key(key),
                        quote(value),
                        format!(
                            "a tcp listener sees no HTTP requests, so it cannot route by {key}"
                        ),
                        "route TLS connections by the name in their ClientHello with \
                         sni = \"api.example.com\", or set protocol = \"http\" to route requests",
                    );
                }
            }
        } else if let (Some(protocol), Some(sni)) = (protocol, &raw.sni) {
            ok = false;
            self.push(
                path.key("sni"),
                quote(sni),
                format!(
                    "sni routes are for tcp listeners (TLS passed through); this is an {} listener",
                    protocol.scheme()
                ),
                format!(
                    "write host = {} to route requests by their host, or set protocol = \"tcp\" \
                     to pass TLS through to the backends",
                    quote(sni)
                ),
            );
        }
        let host = match (&raw.host, &raw.sni) {
            (_, Some(text)) if tcp => self.host(text, &path.key("sni")).map(Some),
            (Some(text), _) if !tcp => self.host(text, &path.key("host")).map(Some),
            _ => Some(None),
        };
        let prefix = match &raw.path_prefix {
            Some(text) if !tcp => self.path(text, &path.key("path_prefix"), "/v1/"),
            _ => Some("/".to_string()),
        };
        let upstream = match &raw.upstream {
            Some(group) => self.group(group, &path.key("upstream")),
            // A redirect route names none (`redirect` reports one it names).
            None if raw.redirect.is_some() && !tcp => Some(0),
            None => {
                self.push(
                    path.key("upstream"),
                    "",
                    "missing: a route needs an upstream",
                    format!(
                        "add upstream = \"NAME\" naming one of the groups: {}",
                        self.group_list()
                    ),
                );
                None
            }
        };
        let allow_connect = raw.allow_connect == Some(true);
        if allow_connect && tcp {
            ok = false;
            self.push(
                path.key("allow_connect"),
                "true",
                "a tcp listener sees no HTTP requests, so there is no CONNECT to allow",
                "remove allow_connect, or set protocol = \"http\" on the listener",
            );
        } else if let (true, Some(prefix)) = (allow_connect, &raw.path_prefix) {
            ok = false;
            self.push(
                path.key("path_prefix"),
                quote(prefix),
                "a CONNECT request has no path (its target is host:port), so a route that allows \
                 it never matches one by path",
                "remove path_prefix from this route and match tunnels by host (the CONNECT \
                 target's host), e.g. host = \"db.internal\"",
            );
        }
        let matches = self.route_match(raw, tcp, path);
        let (redirect, rewrite) = if tcp {
            (Some(None), Some(None))
        } else {
            let redirect = self.redirect(raw, matches.as_ref(), path);
            let is_redirect = raw.redirect.is_some();
            let rewrite = self.rewrite(raw, raw.path_prefix.as_deref(), is_redirect, path);
            (redirect, rewrite)
        };
        let headers = self.header_rules(raw, matches.as_ref(), path);
        // Kept by the validator for `route_settings::resolve`.
        ok &= match tcp {
            true => self.http_only_route_keys(raw, path),
            false => self.route_overrides(raw, path),
        };
        let compress = raw.compress;
        let access = self.access(raw.access.as_ref(), protocol, true, path);
        let rate_limits =
            self.rate_limit_refs(raw.rate_limits.as_ref(), protocol, &path.key("rate_limits"));
        ok.then_some(())?;
        let action = match redirect? {
            Some(redirect) => RouteAction::Redirect(redirect),
            None => RouteAction::Forward(upstream?),
        };
        Some(RouteConfig {
            host: host?,
            path_prefix: prefix?,
            matches: matches?,
            action,
            allow_connect,
            rewrite: rewrite?,
            headers: headers?,
            // Resolved once the groups and the global values are known (`route_settings`).
            settings: RouteSettings::default(),
            compress: compress.unwrap_or(self.compress_by_default),
            access: access?,
            // The listener's when the route names none (filled in by `listener`).
            rate_limits: rate_limits?.unwrap_or_default(),
        })
    }

    /// A route that an earlier route always matches first can never be used.
    pub(super) fn shadowed_routes(&mut self, routes: &[Option<RouteConfig>], path: &KeyPath) {
        for (i, later) in routes.iter().enumerate() {
            let Some(later) = later else { continue };
            let earlier = routes[..i].iter().enumerate().find_map(|(j, r)| {
                r.as_ref()
                    .filter(|earlier| covers(earlier, later))
                    .map(|_| j)
            });
            if let Some(j) = earlier {
                self.push(
                    path.key("route").index(i),
                    "",
                    format!(
                        "never matched: route[{j}] comes first and matches every request this \
                         route would"
                    ),
                    format!(
                        "move this route above route[{j}] (the first match wins), or remove it"
                    ),
                );
            }
        }
    }

    pub(super) fn host(&mut self, text: &str, path: &KeyPath) -> Option<String> {
        let host = text.to_ascii_lowercase();
        let example = "write a host name such as \"api.example.com\" or \"*.example.com\"";
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let problem = if host.is_empty() {
            Some((
                "empty host".to_string(),
                format!("remove `host` to match any host, or {example}"),
            ))
        } else if host.chars().any(char::is_whitespace) {
            Some(("a host cannot contain spaces".into(), example.to_string()))
        } else if host.contains('/') {
            Some((
                "a host name, not a URL, is expected".into(),
                format!("{example}; use path_prefix for the path"),
            ))
        } else if let Some((bare, _)) = host.rsplit_once(':') {
            Some((
                "a host is matched without its port".into(),
                format!("write {} (the port is the listener's)", quote(bare)),
            ))
        } else if !host.is_ascii() {
            Some((
                "a host must be ASCII".into(),
                "write the punycode form (xn--…)".into(),
            ))
        } else if name.contains('*') {
            Some((
                "`*` is only allowed as a leading `*.`".into(),
                "write \"*.example.com\" to match every subdomain".into(),
            ))
        } else if name.ends_with('.') {
            Some((
                "a host cannot end with a dot".into(),
                format!("write {}", quote(name.trim_end_matches('.'))),
            ))
        } else if name.split('.').any(|label| {
            label.is_empty()
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            Some((
                "not a valid host name".into(),
                format!("{example} (letters, digits, `-`, dots between labels)"),
            ))
        } else {
            None
        };
        match problem {
            Some((problem, fix)) => {
                self.push(path.clone(), quote(text), problem, fix);
                None
            }
            None => Some(host),
        }
    }
}

/// Two listen addresses that cannot both be bound: same port, and the same IP or a wildcard
/// covering the other (`0.0.0.0` covers IPv4, `[::]` covers both). Port 0 never conflicts.
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |w: SocketAddr, other: SocketAddr| {
        w.ip().is_unspecified() && (w.is_ipv6() || other.is_ipv4())
    };
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

/// `earlier` matches every request `later` matches (so `later` is never reached). Judged
/// conservatively, so it holds however the router implements the details: prefixes are compared
/// at `/` boundaries (string or segment matching), and `*.example.com` is only taken to cover
/// names one label deeper (`a.example.com`).
///
/// An earlier route with conditions beyond host and prefix (exact path, pattern, methods,
/// headers, query) is taken to cover nothing: a request the later route matches may fail them.
/// A later route's exact `path` is compared as a prefix would be; its own extra conditions only
/// narrow it, so an unconditional earlier route still covers it.
fn covers(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    if !earlier.matches.is_empty() {
        return false;
    }
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => {
            e == l
                || e.strip_prefix('*').is_some_and(|suffix| {
                    l.strip_suffix(suffix)
                        .is_some_and(|label| !label.is_empty() && !label.contains(['.', '*']))
                })
        }
    };
    let l = later
        .matches
        .exact_path
        .as_deref()
        .unwrap_or(&later.path_prefix);
    let e = earlier.path_prefix.as_str();
    let prefix = l.starts_with(e)
        && (e.ends_with('/') || l.len() == e.len() || l.as_bytes()[e.len()] == b'/');
    host && prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{assert_error, invalid, one_error, valid, API, LISTENER};

    #[test]
    fn listeners_may_use_port_zero_and_ipv6() {
        let text = format!(
            "[listener.a]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [listener.b]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [listener.c]\naddress = \"[::1]:8080\"\nupstream = \"api\"\n{API}"
        );
        let config = valid(&text);
        let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(config.listeners[2].address, "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn duplicate_listen_addresses() {
        let text = format!(
            "{LISTENER}[listener.other]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [listener.wild]\naddress = \"0.0.0.0:8080\"\nupstream = \"api\"\n{API}"
        );
        let errors = invalid(&text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_error(
            &errors[0],
            "listener.other.address",
            "\"127.0.0.1:8080\"",
            "listener `http` already listens on 127.0.0.1:8080",
            "its own address",
        );
        assert_error(
            &errors[1],
            "listener.wild.address",
            "\"0.0.0.0:8080\"",
            "already listens on",
            "its own address",
        );
    }

    #[test]
    fn unknown_upstream_lists_the_groups() {
        let text = format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\n[[listener.http.route]]\nupstream = \"apii\"\n\
             {API}[upstream.static]\nbackends = [\"127.0.0.1:9001\"]\n[up]\nupstream = \"web\"\n"
        );
        let errors = invalid(&text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_error(
            &errors[0],
            "listener.http.route[0].upstream",
            "\"apii\"",
            "no upstream group named `apii`",
            "did you mean `api`? use one of the defined groups: `api`, `static`",
        );
        assert_error(
            &errors[1],
            "up.upstream",
            "\"web\"",
            "no upstream group named `web`",
            "`api`, `static`",
        );
        let e = one_error(LISTENER);
        assert_error(
            &e,
            "listener.http.upstream",
            "\"api\"",
            "no upstream group named `api`",
            "no upstream groups are defined: add [upstream.api]",
        );
    }

    #[test]
    fn no_listener_and_listener_without_routes() {
        let e = one_error(API);
        assert_error(&e, "listener", "", "no listener defined", "[listener.http]");
        let e = one_error(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.http",
            "",
            "no routes and no upstream",
            "[[listener.http.route]]",
        );
        let e = one_error(&format!("[listener.http]\nupstream = \"api\"\n{API}"));
        assert_error(
            &e,
            "listener.http.address",
            "",
            "needs an address",
            "address = \"127.0.0.1:8080\"",
        );
    }

    #[test]
    fn routes_are_checked_and_lowercased() {
        let route = |body: &str| {
            format!("{LISTENER}{API}[[listener.http.route]]\n{body}\nupstream = \"api\"\n")
        };
        let e = one_error(&route("path_prefix = \"v1/\""));
        assert_error(
            &e,
            "listener.http.route[0].path_prefix",
            "\"v1/\"",
            "must start with \"/\"",
            "write \"/v1/\"",
        );
        let e = one_error(&route("host = \"api.example.com:8080\""));
        assert_error(
            &e,
            "listener.http.route[0].host",
            "\"api.example.com:8080\"",
            "without its port",
            "write \"api.example.com\"",
        );
        let e = one_error(&route("host = \"api.*.com\""));
        assert_error(
            &e,
            "listener.http.route[0].host",
            "\"api.*.com\"",
            "leading `*.`",
            "\"*.example.com\"",
        );
        let e = one_error(&route("host = \"my host\""));
        assert_error(
            &e,
            "listener.http.route[0].host",
            "\"my host\"",
            "spaces",
            "api.example.com",
        );
        let e = one_error(&route("host = \"https://api.example.com\""));
        assert_error(
            &e,
            "listener.http.route[0].host",
            "\"https://api.example.com\"",
            "not a URL",
            "path_prefix",
        );
        let config = valid(&route("host = \"*.Example.COM\""));
        assert_eq!(
            config.listeners[0].routes[0].host.as_deref(),
            Some("*.example.com")
        );
    }

    #[test]
    fn routes_keep_file_order_and_refer_to_sorted_groups() {
        let config = valid(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\nupstream = \"zeta\"\n\
             [[listener.web.route]]\nhost = \"api.example.com\"\nupstream = \"alpha\"\n\
             [[listener.web.route]]\npath_prefix = \"/static/\"\nupstream = \"zeta\"\n\
             [upstream.zeta]\nbackends = [\"127.0.0.1:9001\"]\n\
             [upstream.alpha]\nbackends = [\"127.0.0.1:8001\"]\n",
        );
        let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        let routes: Vec<(Option<&str>, &str, Option<usize>)> = config.listeners[0]
            .routes
            .iter()
            .map(|r| (r.host.as_deref(), r.path_prefix.as_str(), r.upstream()))
            .collect();
        assert_eq!(
            routes,
            [
                (Some("api.example.com"), "/", Some(0)),
                (None, "/static/", Some(1)),
                (None, "/", Some(1))
            ],
            "explicit routes in file order, then the catch-all"
        );
        assert_eq!(config.up.upstream, None, "two groups, none named api");
    }

    #[test]
    fn unreachable_routes() {
        let e = one_error(&format!(
            "{LISTENER}{API}[[listener.http.route]]\npath_prefix = \"/v1/\"\nupstream = \"api\"\n\
             [[listener.http.route]]\npath_prefix = \"/v1/users\"\nupstream = \"api\"\n"
        ));
        assert_error(
            &e,
            "listener.http.route[1]",
            "",
            "never matched: route[0] comes first",
            "move this route above route[0]",
        );
        let e = one_error(&format!(
            "{LISTENER}{API}[[listener.http.route]]\nupstream = \"api\"\n"
        ));
        assert_error(
            &e,
            "listener.http.upstream",
            "\"api\"",
            "never used: route[0] already matches every request",
            "remove `upstream`",
        );
        // Not shadowing: a different segment, a more general route after a specific one.
        valid(&format!(
            "{LISTENER}{API}[[listener.http.route]]\nhost = \"*.example.com\"\npath_prefix = \"/v1\"\nupstream = \"api\"\n\
             [[listener.http.route]]\nhost = \"a.example.com\"\npath_prefix = \"/v10\"\nupstream = \"api\"\n\
             [[listener.http.route]]\nhost = \"example.com\"\nupstream = \"api\"\n"
        ));
    }

    #[test]
    fn protocols_and_names() {
        let listener = |protocol: &str| {
            format!(
                "[listener.http]\naddress = \"127.0.0.1:8443\"\nprotocol = \"{protocol}\"\n\
                 upstream = \"api\"\n{API}"
            )
        };
        assert_eq!(
            valid(&listener("tcp")).listeners[0].protocol,
            ListenerProtocol::Tcp
        );
        let e = one_error(&listener("tls"));
        assert_error(
            &e,
            "listener.http.protocol",
            "\"tls\"",
            "unknown protocol `tls`",
            "write protocol = \"https\"; to pass TLS through untouched, protocol = \"tcp\"",
        );
        let e = one_error(&listener("udp"));
        assert_error(
            &e,
            "listener.http.protocol",
            "\"udp\"",
            "unknown protocol",
            "the protocols are `http`, `https` and `tcp`",
        );
        let e = one_error(&listener("htps"));
        assert_error(
            &e,
            "listener.http.protocol",
            "\"htps\"",
            "unknown protocol",
            "did you mean `http",
        );
        let e = one_error(&format!(
            "[listener.\"my site\"]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.\"my site\"",
            "",
            "may only use letters",
            "`my_site`",
        );
    }

    #[test]
    fn covering_rules() {
        let route = |host: Option<&str>, prefix: &str| {
            RouteConfig::forward(
                host.map(str::to_string),
                prefix,
                0,
                RouteSettings::default(),
            )
        };
        let wild = route(Some("*.example.com"), "/");
        assert!(covers(&wild, &route(Some("a.example.com"), "/x")));
        assert!(
            !covers(&wild, &route(Some("a.b.example.com"), "/")),
            "depth is the router's call"
        );
        assert!(!covers(&wild, &route(Some("example.com"), "/")));
        assert!(!covers(&wild, &route(None, "/")));
        assert!(covers(
            &route(None, "/api"),
            &route(Some("x.org"), "/api/v1")
        ));
        assert!(!covers(&route(None, "/api"), &route(None, "/apis")));
        assert!(covers(&route(None, "/api/"), &route(None, "/api/")));

        // Extra conditions: an earlier conditional route covers nothing; a later one is covered
        // by an unconditional route as its host and prefix (or exact path) are.
        let with = |prefix: &str, matches: crate::config::RouteMatch| {
            let mut r = route(None, prefix);
            r.matches = matches;
            r
        };
        let get = || crate::config::RouteMatch {
            methods: vec!["GET".to_owned()],
            ..Default::default()
        };
        let exact = |path: &str| crate::config::RouteMatch {
            exact_path: Some(path.to_owned()),
            ..Default::default()
        };
        assert!(!covers(&with("/", get()), &route(None, "/x")));
        assert!(!covers(&with("/", get()), &with("/", get())));
        assert!(covers(&route(None, "/api/"), &with("/api/", get())));
        assert!(covers(&route(None, "/api/"), &with("/", exact("/api/x"))));
        assert!(!covers(&route(None, "/api/"), &with("/", exact("/api"))));
    }

    #[test]
    fn routes_with_conditions_shadow_nothing_and_are_shadowed_by_covers() {
        // A GET-only route first, then everything: the second is still used (and the
        // listener's catch-all `upstream` after it would not be).
        valid(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\n{API}\
             [[listener.http.route]]\nmethods = [\"GET\"]\nupstream = \"api\"\n\
             [[listener.http.route]]\nupstream = \"api\"\n"
        ));
        let e = one_error(&format!(
            "{LISTENER}{API}[[listener.http.route]]\npath_prefix = \"/a/\"\nupstream = \"api\"\n\
             [[listener.http.route]]\npath = \"/a/b\"\nupstream = \"api\"\n"
        ));
        assert_error(
            &e,
            "listener.http.route[1]",
            "",
            "never matched: route[0] comes first",
            "move this route above route[0]",
        );
    }

    #[test]
    fn overlap_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("[::]:80"), a("127.0.0.1:80")));
        assert!(!overlaps(a("0.0.0.0:80"), a("[::1]:80")));
        assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!overlaps(a("127.0.0.1:0"), a("127.0.0.1:0")));
    }

    #[test]
    fn allow_connect_is_for_http_routes_matched_by_host() {
        let http = valid(&format!(
            "{LISTENER}{API}[[listener.http.route]]\nhost = \"db.internal\"\nallow_connect = true\n\
             upstream = \"api\"\n"
        ));
        let routes = &http.listeners[0].routes;
        assert!(routes[0].allow_connect);
        assert!(
            !routes[1].allow_connect,
            "the catch-all never allows CONNECT"
        );
        let e = one_error(&format!(
            "{LISTENER}{API}[[listener.http.route]]\nhost = \"db.internal\"\npath_prefix = \"/x/\"\n\
             allow_connect = true\nupstream = \"api\"\n"
        ));
        assert_error(
            &e,
            "listener.http.route[0].path_prefix",
            "\"/x/\"",
            "a CONNECT request has no path",
            "match tunnels by host",
        );
        let e = one_error(&format!(
            "[listener.db]\naddress = \"127.0.0.1:9000\"\nprotocol = \"tcp\"\n\
             [[listener.db.route]]\nallow_connect = true\nupstream = \"api\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.db.route[0].allow_connect",
            "true",
            "no CONNECT to allow",
            "protocol = \"http\"",
        );
    }
}
