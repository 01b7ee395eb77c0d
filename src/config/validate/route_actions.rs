//! What a route does besides forwarding as sent: its redirect (`redirect`, `redirect_status`)
//! and its rewrite of the upstream path (`rewrite_prefix`, `rewrite_regex`), each checked with the
//! fix for every mistake, and the templates both use (a parse error names its offset; a capture
//! the pattern does not have, and `{backend}`, are errors). `listeners::route` calls them after
//! `route_match`, whose `path_regex` says which captures a redirect may name.
//!
//! Combinations refused (each names the fix): `redirect` with `upstream`, `allow_connect` or a
//! rewrite (nothing is forwarded); `redirect_status` without `redirect`; `rewrite_prefix` without
//! a `path_prefix` other than `/`; `rewrite_prefix` with `rewrite_regex`.

use super::templates::TemplateSite;
use super::Validator;
use crate::config::error::quote;
use crate::config::file::FileRoute;
use crate::config::key_path::KeyPath;
use crate::config::{PathRewrite, Redirect, RouteMatch};

/// Redirect statuses: permanent or not, method kept (307/308) or not (301/302).
const REDIRECT_STATUSES: [i64; 4] = [301, 302, 307, 308];

impl Validator<'_> {
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
        // What only a forwarded request has: a redirect would silently ignore it.
        let forwarding_keys = [
            ("request_headers", raw.request_headers.is_some()),
            ("response_headers", raw.response_headers.is_some()),
            ("timeouts", raw.timeouts.is_some()),
            ("retry", raw.retry.is_some()),
            ("max_body", raw.max_body.is_some()),
            ("compress", raw.compress.is_some()),
        ];
        for (key, _) in forwarding_keys.into_iter().filter(|(_, set)| *set) {
            ok = false;
            self.push(
                path.key(key),
                "",
                format!(
                    "a redirect route is answered by the proxy itself, so {key} would never apply"
                ),
                format!("remove {key} from this route (or remove `redirect` to forward)"),
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
        let location = self.template(text, TemplateSite::Target, captures, &path.key("redirect"));
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
            Some(pattern) => self.template(
                to,
                TemplateSite::Target,
                Some(Some(pattern)),
                &path.key(key).index(1),
            ),
            None => self.template(to, TemplateSite::Target, None, &path.key(key).index(1)),
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
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, first_route, one_error, one_route};
    use crate::config::{PathRewrite, RouteAction};

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
        let e = one_error(&one_route("redirect = \"https://{host{uri}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"https://{host{uri}\"",
            "error at offset 8",
            "{{ and }} are literal braces",
        );
        let e = one_error(&one_route(
            "path_regex = \"^/u/(.*)$\"\nredirect = \"/v/{2}\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"/v/{2}\"",
            "{2}: the pattern \"^/u/(.*)$\" has 1 capture group(s)",
            "{1} is the first",
        );
        let e = one_error(&one_route("redirect = \"/v/{1}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"/v/{1}\"",
            "the route has no path_regex",
            "add path_regex",
        );
        let e = one_error(&one_route("redirect = \"https://{hots}{uri}\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"https://{hots}{uri}\"",
            "unknown variable {hots}",
            "did you mean `host`?",
        );
        let e = one_error(&one_route("redirect = \"http://{backend}/\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect",
            "\"http://{backend}/\"",
            "{backend}",
            "remove {backend}",
        );
        let e = one_error(&one_route("redirect = \"/x\"\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].upstream",
            "\"api\"",
            "forwards nothing upstream",
            "remove `upstream`",
        );
        let e = one_error(&one_route("redirect = \"/x\"\nredirect_status = 303"));
        assert_error(
            &e,
            "listener.http.route[0].redirect_status",
            "303",
            "not a redirect status",
            "301 or 308",
        );
        let e = one_error(&one_route("redirect_status = 301\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].redirect_status",
            "301",
            "without a redirect",
            "add redirect",
        );
        let e = one_error(&one_route(
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
        let e = one_error(&one_route("rewrite_prefix = \"/v2/\"\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_prefix",
            "\"/v2/\"",
            "this route has none",
            "add path_prefix",
        );
        let e = one_error(&one_route(
            "path_prefix = \"/api/\"\nrewrite_prefix = \"/v2\"\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_prefix",
            "\"/v2\"",
            "ends with `/`",
            "write \"/v2/\"",
        );
        let e = one_error(&one_route(
            "rewrite_regex = [\"^/(a\", \"/{1}\"]\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_regex[0]",
            "\"^/(a\"",
            "error at offset 2: unclosed group",
            "`)`",
        );
        let e = one_error(&one_route(
            "rewrite_regex = [\"^/(a)\", \"/{2}\"]\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_regex[1]",
            "\"/{2}\"",
            "has 1 capture group(s)",
            "{1}",
        );
        let e = one_error(&one_route("rewrite_regex = [\"^/a\"]\nupstream = \"api\""));
        assert_error(
            &e,
            "listener.http.route[0].rewrite_regex",
            "[\"^/a\"]",
            "a pattern and its replacement",
            "rewrite_regex = [",
        );
    }

    #[test]
    fn a_redirect_route_takes_no_forwarding_keys() {
        for key in [
            "response_headers = { remove = [\"Server\"] }",
            "request_headers = { add = { \"X-A\" = \"1\" } }",
            "timeouts = { upstream_response = \"5s\" }",
            "retry = { max_retries = 1 }",
            "max_body = \"1MiB\"",
            "compress = true",
        ] {
            let name = key.split(' ').next().unwrap();
            let e = one_error(&one_route(&format!("redirect = \"/x\"\n{key}")));
            assert_error(
                &e,
                &format!("listener.http.route[0].{name}"),
                "",
                "would never apply",
                &format!("remove {name}"),
            );
        }
    }
}
