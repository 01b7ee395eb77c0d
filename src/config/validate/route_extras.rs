//! The parts of a route beyond host, path prefix and group: its other match conditions
//! (`path`, `path_regex`, `methods`, `headers`, `query`), its redirect (`redirect`,
//! `redirect_status`) and its rewrite (`rewrite_prefix`, `rewrite_regex`), each checked with the
//! fix for every mistake. `listeners::route` calls them in that order: the redirect's and the
//! rewrite's templates are checked against the captures of the patterns before them.
//!
//! Combinations refused (each names the fix): `path` with `path_prefix` or `path_regex` (an exact
//! path says it all); `redirect` with `upstream`, `allow_connect` or a rewrite (nothing is
//! forwarded); `redirect_status` without `redirect`; `rewrite_prefix` without a `path_prefix`
//! other than `/`; `rewrite_prefix` with `rewrite_regex`. On a tcp listener every one of these
//! keys is an error (it sees no HTTP requests).

use super::upstreams::is_token;
use super::Validator;
use crate::config::error::{did_you_mean, quote};
use crate::config::file::FileRoute;
use crate::config::key_path::KeyPath;
use crate::config::{
    FieldMatch, PathRewrite, Pattern, Redirect, RouteMatch, Template, ValueMatch, Var,
};

/// The keys only an HTTP route has (a tcp listener's route may not set them).
const HTTP_ONLY: [&str; 9] = [
    "path",
    "path_regex",
    "methods",
    "headers",
    "query",
    "redirect",
    "redirect_status",
    "rewrite_prefix",
    "rewrite_regex",
];

/// Methods written in upper case by every client; `get` is almost surely a typo for `GET`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The variables a template may name besides captures (for suggestions).
const TEMPLATE_VARS: [&str; 9] = [
    "scheme",
    "host",
    "path",
    "query",
    "uri",
    "method",
    "client_ip",
    "request_id",
    "route",
];

/// Redirect statuses: permanent or not, method kept (307/308) or not (301/302).
const REDIRECT_STATUSES: [i64; 4] = [301, 302, 307, 308];

impl Validator<'_> {
    /// `path`, `path_regex`, `methods`, `headers`, `query`. On a tcp listener (`tcp`) every
    /// HTTP-only key (these and the redirect and rewrite keys) is reported here.
    pub(super) fn route_match(
        &mut self,
        raw: &FileRoute,
        tcp: bool,
        path: &KeyPath,
    ) -> Option<RouteMatch> {
        if tcp {
            return self.no_http_keys(raw, path).then(RouteMatch::default);
        }
        let mut ok = true;
        let exact_path = match &raw.path {
            Some(text) => {
                for (key, set) in [
                    ("path_prefix", raw.path_prefix.is_some()),
                    ("path_regex", raw.path_regex.is_some()),
                ] {
                    if set {
                        ok = false;
                        self.push(
                            path.key("path"),
                            quote(text),
                            format!("`path` (an exact path) and `{key}` in one route"),
                            format!(
                                "keep one: path = {} matches only that path; remove `{key}`, or \
                                 remove `path` and let `{key}` choose",
                                quote(text)
                            ),
                        );
                    }
                }
                self.path(text, &path.key("path"), "/login").map(Some)
            }
            None => Some(None),
        };
        let path_regex = match &raw.path_regex {
            Some(text) => self.pattern(text, &path.key("path_regex")).map(Some),
            None => Some(None),
        };
        let methods = match &raw.methods {
            Some(methods) => self.methods(methods, &path.key("methods")),
            None => Some(Vec::new()),
        };
        let headers = match &raw.headers {
            Some(table) => self.field_matches(table, true, &path.key("headers")),
            None => Some(Vec::new()),
        };
        let query = match &raw.query {
            Some(table) => self.field_matches(table, false, &path.key("query")),
            None => Some(Vec::new()),
        };
        ok.then_some(())?;
        Some(RouteMatch {
            exact_path: exact_path?,
            path_regex: path_regex?,
            methods: methods?,
            headers: headers?,
            query: query?,
        })
    }

    /// `redirect` and `redirect_status`: `Some(None)` for a route that forwards. `matches` (the
    /// route's conditions, when valid) tells which captures `{1}`/`{name}` may name.
    pub(super) fn redirect(
        &mut self,
        raw: &FileRoute,
        matches: Option<&RouteMatch>,
        path: &KeyPath,
    ) -> Option<Option<Redirect>> {
        let Some(text) = &raw.redirect else {
            if let Some(status) = &raw.redirect_status {
                self.push(
                    path.key("redirect_status"),
                    status.0.as_written(),
                    "a status without a redirect",
                    "add redirect = \"https://{host}{uri}\" (the Location), or remove \
                     redirect_status",
                );
                return None;
            }
            return Some(None);
        };
        let mut ok = true;
        if let Some(group) = &raw.upstream {
            ok = false;
            self.push(
                path.key("upstream"),
                quote(group),
                "a redirect route is answered by the proxy: it forwards nothing upstream",
                "remove `upstream` from this route (or remove `redirect` to forward)",
            );
        }
        if raw.allow_connect == Some(true) {
            ok = false;
            self.push(
                path.key("allow_connect"),
                "true",
                "a redirect route opens no tunnel",
                "remove allow_connect from this route",
            );
        }
        let status = self.int(
            raw.redirect_status.as_ref(),
            &path.key("redirect_status"),
            302,
            0,
            i64::from(u16::MAX),
        );
        if let Some(status) = status.filter(|s| !REDIRECT_STATUSES.contains(s)) {
            ok = false;
            self.push(
                path.key("redirect_status"),
                status.to_string(),
                "not a redirect status",
                "write 301 or 308 (permanent) or 302 or 307 (temporary); 307 and 308 keep the \
                 method and body, 301 and 302 let clients turn a POST into a GET. Default 302",
            );
        }
        // Without valid conditions, no capture can be judged: report only parse errors then.
        let captures = matches.map(|m| m.path_regex.as_ref());
        let location = self.template(text, captures, &path.key("redirect"));
        ok.then_some(())?;
        Some(Some(Redirect {
            location: location?,
            status: status? as u16,
        }))
    }

    /// `rewrite_prefix`, `rewrite_regex`. `prefix` is the route's `path_prefix` as written;
    /// `redirect`: the route answers with a redirect.
    pub(super) fn rewrite(
        &mut self,
        raw: &FileRoute,
        prefix: Option<&str>,
        redirect: bool,
        path: &KeyPath,
    ) -> Option<Option<PathRewrite>> {
        let (key, value) = match (&raw.rewrite_prefix, &raw.rewrite_regex) {
            (None, None) => return Some(None),
            (Some(text), Some(_)) => {
                self.push(
                    path.key("rewrite_prefix"),
                    quote(text),
                    "`rewrite_prefix` and `rewrite_regex` in one route",
                    "keep one: rewrite_prefix replaces the path_prefix, rewrite_regex = \
                     [pattern, replacement] anything else",
                );
                return None;
            }
            (Some(text), None) => ("rewrite_prefix", quote(text)),
            (None, Some(pair)) => ("rewrite_regex", format!("{pair:?}")),
        };
        if redirect {
            self.push(
                path.key(key),
                value,
                "a redirect route forwards nothing, so there is no path to rewrite",
                "remove the rewrite, or name the target in the redirect (`/new{path}`)",
            );
            return None;
        }
        if let Some(text) = &raw.rewrite_prefix {
            return self.rewrite_prefix(text, prefix, &path.key(key)).map(Some);
        }
        let Some([pattern, to]) = raw.rewrite_regex.as_deref() else {
            self.push(
                path.key(key),
                value,
                "rewrite_regex is a pattern and its replacement",
                "write rewrite_regex = [\"^/old/(.*)$\", \"/new/{1}\"]",
            );
            return None;
        };
        let pattern = self.pattern(pattern, &path.key(key).index(0));
        let to = match &pattern {
            Some(pattern) => self.template(to, Some(Some(pattern)), &path.key(key).index(1)),
            None => self.template(to, None, &path.key(key).index(1)),
        };
        Some(Some(PathRewrite::Regex {
            pattern: pattern?,
            to: to?,
        }))
    }

    fn rewrite_prefix(
        &mut self,
        text: &str,
        prefix: Option<&str>,
        path: &KeyPath,
    ) -> Option<PathRewrite> {
        let Some(prefix) = prefix.filter(|p| *p != "/") else {
            self.push(
                path.clone(),
                quote(text),
                "rewrite_prefix replaces the route's path_prefix, and this route has none",
                format!(
                    "add path_prefix = \"/api/\" (what to replace), or use rewrite_regex = \
                     [\"^/\", {}] to prepend",
                    quote(text)
                ),
            );
            return None;
        };
        let text = self.path(text, path, "/v2/")?;
        if prefix.ends_with('/') && !text.ends_with('/') {
            self.push(
                path.clone(),
                quote(&text),
                format!(
                    "path_prefix {} ends with `/` and its replacement does not: `{prefix}users` \
                     would become `{text}users`",
                    quote(prefix)
                ),
                format!("write {}", quote(&format!("{text}/"))),
            );
            return None;
        }
        Some(PathRewrite::Prefix(text))
    }

    /// A tcp listener's route: every HTTP-only key it sets is an error. `true` when none is set.
    fn no_http_keys(&mut self, raw: &FileRoute, path: &KeyPath) -> bool {
        let set = [
            raw.path.is_some(),
            raw.path_regex.is_some(),
            raw.methods.is_some(),
            raw.headers.is_some(),
            raw.query.is_some(),
            raw.redirect.is_some(),
            raw.redirect_status.is_some(),
            raw.rewrite_prefix.is_some(),
            raw.rewrite_regex.is_some(),
        ];
        let mut ok = true;
        for (key, _) in HTTP_ONLY.iter().zip(set).filter(|(_, set)| *set) {
            ok = false;
            self.push(
                path.key(key),
                "",
                format!("a tcp listener sees no HTTP requests, so a route cannot use {key}"),
                "route TLS connections by the name in their ClientHello with \
                 sni = \"api.example.com\", or set protocol = \"http\" to route requests",
            );
        }
        ok
    }

    /// A regular expression (the `regex` crate's syntax), compiled once here. A mistake names
    /// its byte offset in the pattern.
    fn pattern(&mut self, text: &str, path: &KeyPath) -> Option<Pattern> {
        let error = match regex::Regex::new(text) {
            Ok(regex) => return Some(Pattern(regex)),
            Err(error) => error,
        };
        let (problem, fix) = match regex_syntax::Parser::new().parse(text) {
            Err(regex_syntax::Error::Parse(e)) => {
                let fix = match e.kind() {
                    regex_syntax::ast::ErrorKind::GroupUnclosed => "close the group with `)`",
                    regex_syntax::ast::ErrorKind::GroupUnopened => {
                        "remove the `)` or write `\\)` to match it"
                    }
                    regex_syntax::ast::ErrorKind::ClassUnclosed => {
                        "close the class with `]`, or write `\\[` to match a `[`"
                    }
                    regex_syntax::ast::ErrorKind::RepetitionMissing => {
                        "put something before the `*`, `+` or `?`, or escape it (`\\*`)"
                    }
                    _ => {
                        "fix the pattern there (escape `.`, `(`, `[`, `{`, `*`, `+`, `?` with \
                          `\\` to match them as written)"
                    }
                };
                let at = e.span().start.offset;
                (
                    format!("error at offset {at}: {}", e.kind()),
                    fix.to_owned(),
                )
            }
            Err(regex_syntax::Error::Translate(e)) => {
                let at = e.span().start.offset;
                (
                    format!("error at offset {at}: {}", e.kind()),
                    "write the pattern without it (Unicode classes other than \\w, \\d and \\s \
                     are not available)"
                        .to_owned(),
                )
            }
            _ => (
                format!("not a usable regular expression: {error}"),
                "write a simpler pattern".to_owned(),
            ),
        };
        self.push(path.clone(), quote(text), problem, fix);
        None
    }

    /// A template forwarded upstream or sent to the client. `captures`: `Some(pattern)` when the
    /// captures it may name are known (`Some(None)`: the route has no pattern, so it may name
    /// none); `None` when they are not (the pattern itself was wrong).
    fn template(
        &mut self,
        text: &str,
        captures: Option<Option<&Pattern>>,
        path: &KeyPath,
    ) -> Option<Template> {
        if text.chars().any(char::is_control) {
            self.push(
                path.clone(),
                quote(text),
                "control characters (a line break, a tab) cannot be sent in a request line or \
                 a field",
                "remove them; percent-encode what the target needs (%0A)",
            );
            return None;
        }
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(e) => {
                self.push(
                    path.clone(),
                    quote(text),
                    format!("error at offset {}: {}", e.offset, e.problem),
                    "variables are written {host}, {path}, {uri}, {query}, {scheme}, {method}, \
                     {client_ip}, {request_id}, {route}, or a capture {1} / {name}; {{ and }} \
                     are literal braces",
                );
                return None;
            }
        };
        let mut ok = true;
        for var in template.vars() {
            let problem = match var {
                Var::Backend => Some((
                    "{backend} names the backend, and none is chosen yet".to_owned(),
                    "remove {backend}; it is only known for response header rules".to_owned(),
                )),
                Var::Capture(index) => match captures {
                    Some(None) => Some((
                        format!("{{{index}}} names a capture, and there is no pattern to capture"),
                        "add a path_regex with groups, e.g. path_regex = \"^/users/([0-9]+)$\", \
                         or remove it"
                            .to_owned(),
                    )),
                    Some(Some(pattern)) if *index >= pattern.0.captures_len() => Some((
                        format!(
                            "{{{index}}} names a capture, and the pattern {} has {} group(s)",
                            quote(pattern.as_str()),
                            pattern.0.captures_len() - 1
                        ),
                        "name one of its groups ({1} is the first, {0} the whole match)".to_owned(),
                    )),
                    _ => None,
                },
                Var::NamedCapture(name) => {
                    let names: Vec<&str> = match captures {
                        Some(Some(pattern)) => pattern.0.capture_names().flatten().collect(),
                        Some(None) => Vec::new(),
                        None => continue,
                    };
                    (!names.contains(&name.as_str())).then(|| {
                        let candidates = TEMPLATE_VARS.iter().copied().chain(names);
                        (
                            format!("no variable or named capture `{{{name}}}`"),
                            format!(
                                "{}variables: {{host}}, {{path}}, {{uri}}, {{query}}, \
                                 {{scheme}}, {{method}}, {{client_ip}}, {{request_id}}, \
                                 {{route}}; a named group (?P<{name}>…) in the pattern",
                                did_you_mean(name, candidates)
                            ),
                        )
                    })
                }
                _ => None,
            };
            if let Some((problem, fix)) = problem {
                ok = false;
                self.push(path.clone(), quote(text), problem, fix);
            }
        }
        ok.then_some(template)
    }

    /// `methods = ["GET", "HEAD"]`: tokens, as sent (case-sensitive).
    fn methods(&mut self, methods: &[String], path: &KeyPath) -> Option<Vec<String>> {
        if methods.is_empty() {
            self.push(
                path.clone(),
                "[]",
                "no method would match",
                "remove `methods` to match any method, or list some: methods = [\"GET\", \"HEAD\"]",
            );
            return None;
        }
        let mut ok = true;
        for (i, method) in methods.iter().enumerate() {
            let upper = method.to_ascii_uppercase();
            let problem = if !is_token(method) {
                Some((
                    "not a method (a token: letters, digits, `-`, …)".to_owned(),
                    "write a method such as \"GET\"".to_owned(),
                ))
            } else if upper != *method && STANDARD_METHODS.contains(&upper.as_str()) {
                Some((
                    "methods are case-sensitive and clients send them upper case".to_owned(),
                    format!("write {}", quote(&upper)),
                ))
            } else if methods[..i].contains(method) {
                Some(("listed twice".to_owned(), "remove one".to_owned()))
            } else {
                None
            };
            if let Some((problem, fix)) = problem {
                ok = false;
                self.push(path.index(i), quote(method), problem, fix);
            }
        }
        ok.then(|| methods.to_vec())
    }

    /// `headers = { "X-Canary" = "1", "X-Debug" = true }` (names lowercased) or `query = { … }`
    /// (names as written).
    fn field_matches(
        &mut self,
        table: &toml::Table,
        headers: bool,
        path: &KeyPath,
    ) -> Option<Vec<FieldMatch>> {
        let mut ok = true;
        let mut fields = Vec::with_capacity(table.len());
        for (name, value) in table {
            let key = path.key(name);
            let bad_name = if headers {
                !is_token(name)
            } else {
                name.is_empty() || name.contains(['&', '=', '#', ' '])
            };
            if bad_name {
                ok = false;
                let fix = if headers {
                    "a field name is a token: letters, digits and `-`, as in \"X-Canary\""
                } else {
                    "a parameter name as sent, without `&`, `=`, `#` or spaces"
                };
                self.push(key, quote(name), "not a valid name", fix);
                continue;
            }
            let value = match value {
                toml::Value::Boolean(true) => ValueMatch::Present,
                toml::Value::Boolean(false) => ValueMatch::Absent,
                toml::Value::String(text) => {
                    let bad = text.chars().any(char::is_control) || text.trim() != text;
                    if bad {
                        ok = false;
                        self.push(
                            key,
                            quote(text),
                            "a value is matched as received, trimmed, without control characters",
                            format!("write {}", quote(text.trim())),
                        );
                        continue;
                    }
                    ValueMatch::Exact(text.clone())
                }
                other => {
                    ok = false;
                    self.push(
                        key,
                        other.to_string(),
                        "not a condition",
                        format!(
                            "write \"value\" (exactly this value), true (present) or false \
                             (absent), e.g. {} = \"1\"",
                            quote(name)
                        ),
                    );
                    continue;
                }
            };
            let name = if headers {
                name.to_ascii_lowercase()
            } else {
                name.clone()
            };
            fields.push(FieldMatch { name, value });
        }
        ok.then_some(fields)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, invalid, one_error, valid, API, LISTENER};
    use crate::config::{FieldMatch, PathRewrite, RouteAction, RouteConfig, ValueMatch};

    /// A listener with one route of `body` (the catch-all `api` after it).
    fn route(body: &str) -> String {
        format!("{LISTENER}{API}[[listener.http.route]]\n{body}\n")
    }

    fn first_route(body: &str) -> RouteConfig {
        valid(&route(body)).listeners[0].routes[0].clone()
    }

    #[test]
    fn conditions_are_parsed_and_header_names_lowercased() {
        let r = first_route(
            "path = \"/login\"\nmethods = [\"GET\", \"HEAD\"]\nupstream = \"api\"\n\
             headers = { \"X-Canary\" = \"1\", \"X-Debug\" = true, Cookie = false }\n\
             query = { Debug = \"on\" }",
        );
        assert_eq!(r.matches.exact_path.as_deref(), Some("/login"));
        assert_eq!(r.matches.methods, ["GET", "HEAD"]);
        let exact = |name: &str, value: &str| FieldMatch {
            name: name.to_owned(),
            value: ValueMatch::Exact(value.to_owned()),
        };
        assert_eq!(
            r.matches.headers,
            [
                FieldMatch {
                    name: "cookie".to_owned(),
                    value: ValueMatch::Absent
                },
                exact("x-canary", "1"),
                FieldMatch {
                    name: "x-debug".to_owned(),
                    value: ValueMatch::Present
                },
            ]
        );
        assert_eq!(r.matches.query, [exact("Debug", "on")]);
        let r =
            first_route("path_prefix = \"/u/\"\npath_regex = \"^/u/[0-9]+$\"\nupstream = \"api\"");
        assert_eq!(r.matches.path_regex.unwrap().as_str(), "^/u/[0-9]+$");
    }

    #[test]
    fn a_pattern_that_does_not_compile_names_its_offset() {
        let e = one_error(&route(
            "path_regex = \"^/users/(\\\\d+\"\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].path_regex",
            "'^/users/(\\d+'",
            "error at offset 8: unclosed group",
            "close the group with `)`",
        );
        let e = one_error(&route("path_regex = \"*x\"\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].path_regex",
            "\"*x\"",
            "error at offset 0: repetition operator missing expression",
            "escape it",
        );
    }

    #[test]
    fn exact_path_excludes_prefix_and_pattern() {
        let errors = invalid(&route(
            "path = \"/a\"\npath_prefix = \"/a\"\npath_regex = \"a\"\nupstream = \"api\"",
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_error(
            &errors[0],
            "listener.http.route[0].path",
            "\"/a\"",
            "`path` (an exact path) and `path_prefix`",
            "remove `path_prefix`",
        );
        assert_error(
            &errors[1],
            "listener.http.route[0].path",
            "\"/a\"",
            "and `path_regex`",
            "keep one",
        );
        let e = one_error(&route("path = \"login\"\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].path",
            "\"login\"",
            "must start with \"/\"",
            "write \"/login\"",
        );
    }

    #[test]
    fn methods_headers_and_query_mistakes() {
        let e = one_error(&route("methods = [\"get\"]\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].methods[0]",
            "\"get\"",
            "case-sensitive",
            "write \"GET\"",
        );
        let e = one_error(&route("methods = []\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].methods",
            "[]",
            "no method",
            "remove `methods`",
        );
        let e = one_error(&route("methods = [\"GE T\"]\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].methods[0]",
            "\"GE T\"",
            "not a method",
            "GET",
        );
        let e = one_error(&route(
            "headers = { \"X Canary\" = \"1\" }\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].headers.\"X Canary\"",
            "\"X Canary\"",
            "not a valid name",
            "a token",
        );
        let e = one_error(&route("headers = { X-Canary = 1 }\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].headers.X-Canary",
            "1",
            "not a condition",
            "true (present) or false (absent)",
        );
        let e = one_error(&route("query = { debug = \" on\" }\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].query.debug",
            "\" on\"",
            "trimmed",
            "write \"on\"",
        );
    }

    #[test]
    fn tcp_routes_have_no_http_conditions() {
        let e = one_error(&format!(
            "[listener.db]\naddress = \"127.0.0.1:9000\"\nprotocol = \"tcp\"\n\
             [[listener.db.route]]\nsni = \"a.example.com\"\nmethods = [\"GET\"]\nupstream = \"api\"\n\
             [[listener.db.route]]\nupstream = \"api\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.db.route[0].methods",
            "",
            "a tcp listener sees no HTTP requests, so a route cannot use methods",
            "sni = \"api.example.com\"",
        );
    }

    #[test]
    fn redirects_with_captures_and_status() {
        let r = first_route(
            "path_regex = \"^/u/(?P<id>[0-9]+)/(.*)$\"\n\
             redirect = \"https://{host}/users/{id}/{2}\"\nredirect_status = 301",
        );
        let RouteAction::Redirect(redirect) = &r.action else {
            panic!("{r:?}")
        };
        assert_eq!(redirect.status, 301);
        assert_eq!(
            redirect.location.to_string(),
            "https://{host}/users/{id}/{2}"
        );
        let r = first_route("path = \"/old\"\nredirect = \"/new\"");
        assert!(matches!(&r.action, RouteAction::Redirect(r) if r.status == 302));
    }

    #[test]
    fn redirect_mistakes() {
        let e = one_error(&route("redirect = \"https://{host{uri}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"https://{host{uri}\"",
            "error at offset 8",
            "{{ and }} are literal braces",
        );
        let e = one_error(&route("path_regex = \"^/u/(.*)$\"\nredirect = \"/v/{2}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"/v/{2}\"",
            "{2} names a capture, and the pattern \"^/u/(.*)$\" has 1 group(s)",
            "{1} is the first",
        );
        let e = one_error(&route("redirect = \"/v/{1}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"/v/{1}\"",
            "no pattern to capture",
            "add a path_regex",
        );
        let e = one_error(&route("redirect = \"https://{hots}{uri}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"https://{hots}{uri}\"",
            "no variable or named capture `{hots}`",
            "did you mean `host`?",
        );
        let e = one_error(&route("redirect = \"http://{backend}/\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"http://{backend}/\"",
            "{backend}",
            "remove {backend}",
        );
        let e = one_error(&route("redirect = \"/x\"\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].upstream",
            "\"api\"",
            "forwards nothing upstream",
            "remove `upstream`",
        );
        let e = one_error(&route("redirect = \"/x\"\nredirect_status = 303"));
        assert_error(
            &e,
            "listener.http.route[0].redirect_status",
            "303",
            "not a redirect status",
            "301 or 308",
        );
        let e = one_error(&route("redirect_status = 301\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect_status",
            "301",
            "without a redirect",
            "add redirect",
        );
        let e = one_error(&route(
            "path_prefix = \"/a/\"\nredirect = \"/x\"\nrewrite_prefix = \"/\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_prefix",
            "\"/\"",
            "no path to rewrite",
            "remove the rewrite",
        );
    }

    #[test]
    fn rewrites() {
        let r = first_route("path_prefix = \"/api/\"\nrewrite_prefix = \"/\"\nupstream = \"api\"");
        assert_eq!(r.rewrite, Some(PathRewrite::Prefix("/".to_owned())));
        let r = first_route(
            "path_prefix = \"/old/\"\nrewrite_regex = [\"^/old/(.*)$\", \"/new/{1}\"]\n\
             upstream = \"api\"",
        );
        let Some(PathRewrite::Regex { pattern, to }) = r.rewrite else {
            panic!()
        };
        assert_eq!(
            (pattern.as_str(), to.to_string().as_str()),
            ("^/old/(.*)$", "/new/{1}")
        );
    }

    #[test]
    fn rewrite_mistakes() {
        let e = one_error(&route("rewrite_prefix = \"/v2/\"\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_prefix",
            "\"/v2/\"",
            "this route has none",
            "add path_prefix",
        );
        let e = one_error(&route(
            "path_prefix = \"/api/\"\nrewrite_prefix = \"/v2\"\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_prefix",
            "\"/v2\"",
            "ends with `/`",
            "write \"/v2/\"",
        );
        let e = one_error(&route(
            "rewrite_regex = [\"^/(a\", \"/{1}\"]\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_regex[0]",
            "\"^/(a\"",
            "error at offset 2: unclosed group",
            "`)`",
        );
        let e = one_error(&route(
            "rewrite_regex = [\"^/(a)\", \"/{2}\"]\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_regex[1]",
            "\"/{2}\"",
            "has 1 group(s)",
            "{1}",
        );
        let e = one_error(&route("rewrite_regex = [\"^/a\"]\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_regex",
            "[\"^/a\"]",
            "a pattern and its replacement",
            "rewrite_regex = [",
        );
    }
}
