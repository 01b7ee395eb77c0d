//! The settings a route or its group overrides (timeouts, retries, the body limit), resolved
//! into each route once the global values and the groups are known: route, else group, else
//! global (`retry.max_retries`: route, else the group's own).
//!
//! Flow: `[upstream.NAME]` `timeouts`/`max_body` become the group's [`GroupSettings`]
//! ([`Validator::group_settings`]); a route's `timeouts`/`retry`/`max_body` are checked by
//! `route()` ([`Validator::route_overrides`]) and kept in the validator by the route's key path
//! until [`resolve`] fills every route's [`RouteSettings`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::Validator;
use crate::config::file::{
    FileDuration, FileRoute, FileScalar, FileSettingsTimeouts, FileSize, FileUpstream,
};
use crate::config::key_path::KeyPath;
use crate::config::{
    GroupSettings, LimitsConfig, ListenerConfig, RouteSettings, TimeoutsConfig, UpstreamConfig,
};

/// A route's own overrides, from `route()` to [`resolve`].
#[derive(Debug, Default)]
pub(super) struct RouteOverrides {
    pub settings: GroupSettings,
    pub max_retries: Option<u32>,
}

/// The routes' overrides, by the key path of each `[[listener.NAME.route]]`.
pub(super) type Overrides = BTreeMap<KeyPath, RouteOverrides>;

impl Validator<'_> {
    /// `[upstream.NAME]` `timeouts` and `max_body`.
    pub(super) fn group_settings(
        &mut self,
        raw: &FileUpstream,
        path: &KeyPath,
    ) -> Option<GroupSettings> {
        self.settings(raw.timeouts.as_ref(), raw.max_body.as_ref(), path)
    }

    /// A route's `timeouts`, `retry.max_retries` and `max_body`, kept for [`resolve`]. `false`
    /// when one is wrong (reported).
    pub(super) fn route_overrides(&mut self, raw: &FileRoute, path: &KeyPath) -> bool {
        let settings = self.settings(raw.timeouts.as_ref(), raw.max_body.as_ref(), path);
        let max_retries = match raw.retry.as_ref().and_then(|r| r.max_retries.as_ref()) {
            None => Some(None),
            Some(raw) => self
                .int(Some(raw), &path.key("retry").key("max_retries"), 2, 0, 10)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some),
        };
        let (Some(settings), Some(max_retries)) = (settings, max_retries) else {
            return false;
        };
        if settings != GroupSettings::default() || max_retries.is_some() {
            let overrides = RouteOverrides {
                settings,
                max_retries,
            };
            self.route_overrides.insert(path.clone(), overrides);
        }
        true
    }

    /// The keys of this file and of `route_headers` on a route of a tcp listener, which relays
    /// bytes and has no HTTP head, timeout or body of its own to apply them to. `false` when one
    /// is there (reported).
    pub(super) fn http_only_route_keys(&mut self, raw: &FileRoute, path: &KeyPath) -> bool {
        let keys = [
            ("request_headers", raw.request_headers.is_some()),
            ("response_headers", raw.response_headers.is_some()),
            ("timeouts", raw.timeouts.is_some()),
            ("retry", raw.retry.is_some()),
            ("max_body", raw.max_body.is_some()),
        ];
        let mut ok = true;
        for (key, _) in keys.into_iter().filter(|(_, present)| *present) {
            ok = false;
            self.push(
                path.key(key),
                "",
                format!("a tcp listener sees no HTTP requests, so a route cannot set {key}"),
                "remove it (a tcp listener's connections use the group's retry.max_retries and \
                 the global timeouts.tcp_idle), or set protocol = \"http\" on the listener",
            );
        }
        ok
    }

    /// `timeouts = { upstream_response, client_body }` and `max_body` (a size or
    /// `"unlimited"`), with the global keys' parsers.
    fn settings(
        &mut self,
        timeouts: Option<&FileSettingsTimeouts>,
        max_body: Option<&FileSize>,
        path: &KeyPath,
    ) -> Option<GroupSettings> {
        let timeouts_path = path.key("timeouts");
        // A route falls back to its group, a group to the global value.
        let fallback = if path.to_string().starts_with("upstream.") {
            "the global [timeouts] value"
        } else {
            "the group's or the global [timeouts] value"
        };
        let timeout = |v: &mut Self, raw: Option<&FileDuration>, key: &str| {
            let Some(raw) = raw else { return Some(None) };
            let at = timeouts_path.key(key);
            let duration = v.duration(Some(raw), &at, Duration::ZERO, false)?;
            if duration.is_zero() {
                v.push(
                    at,
                    raw.0.as_written(),
                    "must be greater than zero",
                    format!(
                        "write a positive duration such as \"30s\", or leave {key} out to use \
                         {fallback}"
                    ),
                );
                return None;
            }
            Some(Some(duration))
        };
        let upstream_response = timeout(
            self,
            timeouts.and_then(|t| t.upstream_response.as_ref()),
            "upstream_response",
        );
        let client_body = timeout(
            self,
            timeouts.and_then(|t| t.client_body.as_ref()),
            "client_body",
        );
        let max_body_bytes = match max_body {
            None => Some(None),
            Some(FileSize(FileScalar::Str(text))) if text.trim() == "unlimited" => Some(Some(None)),
            Some(raw) => self
                .size(Some(raw), &path.key("max_body"), 0)
                .map(|bytes| Some(Some(bytes))),
        };
        Some(GroupSettings {
            upstream_response: upstream_response?,
            client_body: client_body?,
            max_body_bytes: max_body_bytes?,
        })
    }
}

/// Fills every route's [`RouteSettings`]: the route's own value, else its group's, else the
/// global one. The routes of `listeners[l].routes[i]` were `[[listener.NAME.route]]` number `i`
/// (the catch-all `upstream`, last, has no overrides of its own).
pub(super) fn resolve(
    listeners: &mut [ListenerConfig],
    upstreams: &[UpstreamConfig],
    timeouts: &TimeoutsConfig,
    limits: &LimitsConfig,
    overrides: &Overrides,
) {
    for listener in listeners {
        let routes_path = KeyPath::root()
            .key("listener")
            .key(&listener.name)
            .key("route");
        for (i, route) in listener.routes.iter_mut().enumerate() {
            let mut settings = RouteSettings {
                upstream_response: timeouts.upstream_response,
                client_body: timeouts.client_body,
                max_retries: 0,
                max_body_bytes: limits.max_body_bytes,
            };
            let Some(group) = route.upstream().map(|u| &upstreams[u]) else {
                // A redirect: the global values.
                route.settings = settings;
                continue;
            };
            settings.max_retries = group.retry.max_retries;
            apply(&mut settings, &group.settings);
            if let Some(own) = overrides.get(&routes_path.index(i)) {
                apply(&mut settings, &own.settings);
                if let Some(max) = own.max_retries {
                    settings.max_retries = max;
                }
            }
            route.settings = settings;
        }
    }
}

fn apply(settings: &mut RouteSettings, overrides: &GroupSettings) {
    if let Some(t) = overrides.upstream_response {
        settings.upstream_response = t;
    }
    if let Some(t) = overrides.client_body {
        settings.client_body = t;
    }
    if let Some(max) = overrides.max_body_bytes {
        settings.max_body_bytes = max;
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, invalid, one_error, valid};
    use crate::config::RouteSettings;
    use std::time::Duration;

    /// Two routes on group `api` (the first with `route`'s keys), a third on group `other`,
    /// with `[upstream.api]` extras and global `[timeouts]`/`[limits]` extras.
    fn file(route: &str, group: &str, globals: &str) -> String {
        format!(
            "{globals}[listener.http]\naddress = \"127.0.0.1:8080\"\n\
             [[listener.http.route]]\npath_prefix = \"/slow/\"\nupstream = \"api\"\n{route}\
             [[listener.http.route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
             [listener.admin]\naddress = \"127.0.0.1:8081\"\nupstream = \"other\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n{group}\
             [upstream.other]\nbackends = [\"127.0.0.1:8002\"]\n"
        )
    }

    fn settings(text: &str) -> Vec<RouteSettings> {
        valid(text)
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter().map(|r| r.settings.clone()))
            .collect()
    }

    #[test]
    fn route_then_group_then_global() {
        let all = settings(&file(
            "timeouts = { upstream_response = \"2m\" }\nretry = { max_retries = 0 }\n",
            "timeouts = { upstream_response = \"60s\", client_body = \"10s\" }\n\
             max_body = \"10MiB\"\n[upstream.api.retry]\nmax_retries = 3\n",
            "[timeouts]\nclient_body = \"20s\"\n[limits]\nmax_body = \"1MiB\"\n",
        ));
        // Listeners are sorted by name: admin (group other) first.
        let other = RouteSettings {
            upstream_response: Duration::from_secs(30),
            client_body: Duration::from_secs(20),
            max_retries: 2,
            max_body_bytes: Some(1 << 20),
        };
        let group = RouteSettings {
            upstream_response: Duration::from_secs(60),
            client_body: Duration::from_secs(10),
            max_retries: 3,
            max_body_bytes: Some(10 << 20),
        };
        let own = RouteSettings {
            upstream_response: Duration::from_secs(120),
            max_retries: 0,
            ..group.clone()
        };
        assert_eq!(all, [other, own, group]);
    }

    #[test]
    fn unlimited_overrides_a_global_limit_and_a_route_a_group_s() {
        let all = settings(&file(
            "max_body = \"4KiB\"\n",
            "max_body = \"unlimited\"\n",
            "[limits]\nmax_body = \"1MiB\"\n",
        ));
        assert_eq!(all[0].max_body_bytes, Some(1 << 20));
        assert_eq!(all[1].max_body_bytes, Some(4 << 10));
        assert_eq!(all[2].max_body_bytes, None);
    }

    #[test]
    fn a_tcp_route_cannot_have_them() {
        let e = one_error(
            "[listener.db]\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\n\
             [[listener.db.route]]\nupstream = \"db\"\nretry = { max_retries = 1 }\n\
             [upstream.db]\nbackends = [\"127.0.0.1:5433\"]\n",
        );
        assert_error(
            &e,
            "listener.db.route[0].retry",
            "",
            "a tcp listener sees no HTTP requests",
            "protocol = \"http\"",
        );
    }

    #[test]
    fn bad_values_name_key_value_and_fix() {
        let e = one_error(&file("", "timeouts = { upstream_response = \"0s\" }\n", ""));
        assert_error(
            &e,
            "upstream.api.timeouts.upstream_response",
            "\"0s\"",
            "greater than zero",
            "leave upstream_response out to use the global [timeouts] value",
        );
        let e = one_error(&file("timeouts = { client_body = \"soon\" }\n", "", ""));
        assert_eq!(e.key, "listener.http.route[0].timeouts.client_body", "{e}");
        assert_eq!(e.value, "\"soon\"", "{e}");
        let e = one_error(&file("max_body = \"ten megs\"\n", "", ""));
        assert_eq!(e.key, "listener.http.route[0].max_body", "{e}");
        let e = one_error(&file("", "max_body = -1\n", ""));
        assert_error(&e, "upstream.api.max_body", "-1", "negative", "\"16KiB\"");
        let e = one_error(&file("retry = { max_retries = 11 }\n", "", ""));
        assert_error(
            &e,
            "listener.http.route[0].retry.max_retries",
            "11",
            "between 0 and 10",
            "from 0 to 10",
        );
        let errors = invalid(&file("timeouts = { upstream = \"1s\" }\n", "", ""));
        assert!(
            errors.iter().any(|e| e.problem.contains("upstream")),
            "{errors:#?}"
        );
    }
}
