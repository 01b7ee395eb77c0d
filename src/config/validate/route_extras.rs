//! A route's match conditions beyond host and path prefix (`path`, `path_regex`, `methods`,
//! `headers`, `query`), each checked with the fix for every mistake, and the regular expressions
//! they and rewrites use (compiled here, once per configuration; a mistake names its offset).
//! What a route does besides forwarding (redirect, rewrite) is in `route_actions`.
//!
//! `path` with `path_prefix` or `path_regex` is refused (an exact path says it all; the error
//! says to keep one). On a tcp listener every HTTP-only key, these and the redirect and rewrite
//! ones, is an error (it sees no HTTP requests).

use super::upstreams::is_token;
use super::Validator;
use crate::config::error::quote;
use crate::config::file::FileRoute;
use crate::config::key_path::KeyPath;
use crate::config::{FieldMatch, Pattern, RouteMatch, ValueMatch};

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
    pub(super) fn pattern(&mut self, text: &str, path: &KeyPath) -> Option<Pattern> {
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
    use crate::config::testing::{assert_error, first_route, invalid, one_error, one_route, API};
    use crate::config::{FieldMatch, ValueMatch};

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
        let e = one_error(&one_route(
            "path_regex = \"^/users/(\\\\d+\"\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].path_regex",
            "'^/users/(\\d+'",
            "error at offset 8: unclosed group",
            "close the group with `)`",
        );
        let e = one_error(&one_route("path_regex = \"*x\"\nupstream = \"api\""));
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
        let errors = invalid(&one_route(
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
        let e = one_error(&one_route("path = \"login\"\nupstream = \"api\""));
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
        let e = one_error(&one_route("methods = [\"get\"]\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].methods[0]",
            "\"get\"",
            "case-sensitive",
            "write \"GET\"",
        );
        let e = one_error(&one_route("methods = []\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].methods",
            "[]",
            "no method",
            "remove `methods`",
        );
        let e = one_error(&one_route("methods = [\"GE T\"]\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].methods[0]",
            "\"GE T\"",
            "not a method",
            "GET",
        );
        let e = one_error(&one_route(
            "headers = { \"X Canary\" = \"1\" }\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].headers.\"X Canary\"",
            "\"X Canary\"",
            "not a valid name",
            "a token",
        );
        let e = one_error(&one_route("headers = { X-Canary = 1 }\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].headers.X-Canary",
            "1",
            "not a condition",
            "true (present) or false (absent)",
        );
        let e = one_error(&one_route(
            "query = { debug = \" on\" }\nupstream = \"api\"",
        ));
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
}
