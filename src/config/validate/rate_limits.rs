//! `[rate_limit.NAME]` tables (key, rate, burst, dry run, how many keys to remember) and the
//! `rate_limits = [...]` lists of listeners and routes that name them.
//!
//! Defaults: `key = "client"`; `burst = 1` (nginx's `limit_req` without `burst`: requests are
//! spaced at the rate, none go at once — the strict reading of a rate, and the one a reader of
//! `rate = "10/s"` expects; raise it for clients that send a page's requests together);
//! `dry_run = false`; `max_keys = 1_000_000` over all workers (each key costs about 16 bytes in
//! one of two maps, so at most a few tens of MB per limit). `rate` has no default.

use super::upstreams::is_token;
use super::Validator;
use crate::config::error::{did_you_mean, list, quote, KeyPath};
use crate::config::file::{FileConfig, FileRateLimit};
use crate::config::{ListenerProtocol, RateKey, RateLimitConfig};

/// `burst` when absent: one request at a time, spaced at the rate.
pub(crate) const DEFAULT_BURST: u32 = 1;
/// `max_keys` when absent, over all workers.
pub(crate) const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// The most keys one limit may remember (all workers together).
const MAX_MAX_KEYS: i64 = 100_000_000;

const KEY_FIX: &str =
    "write \"client\" (the client's address), \"header:NAME\" (a request field's value, e.g. \
     \"header:X-Api-Key\") or \"route\" (one budget per route)";

impl Validator<'_> {
    /// Every `[rate_limit.NAME]`, sorted by name (as `self.rate_limit_names`).
    pub(super) fn rate_limits(
        &mut self,
        file: &FileConfig,
        path: &KeyPath,
    ) -> Option<Vec<RateLimitConfig>> {
        let limits: Vec<Option<RateLimitConfig>> = file
            .rate_limit
            .iter()
            .map(|(name, raw)| self.rate_limit(name, raw, &path.key(name)))
            .collect();
        super::all(limits)
    }

    fn rate_limit(
        &mut self,
        name: &str,
        raw: &FileRateLimit,
        path: &KeyPath,
    ) -> Option<RateLimitConfig> {
        let named = self.name("rate limit", name, path);
        let key = match raw.key.as_deref() {
            None => Some(RateKey::Client),
            Some(text) => self.rate_key(text, &path.key("key")),
        };
        let rate = match raw.rate.as_deref() {
            Some(text) => self.rate(text, &path.key("rate")),
            None => {
                self.push(
                    path.key("rate"),
                    "",
                    format!("the rate limit `{name}` has no rate"),
                    format!("add rate = \"100/s\" (or \"6000/min\", \"10/h\") to [{path}]"),
                );
                None
            }
        };
        let burst = self.int(
            raw.burst.as_ref(),
            &path.key("burst"),
            i64::from(DEFAULT_BURST),
            1,
            i64::from(u32::MAX),
        );
        let dry_run = self.boolean(raw.dry_run.as_ref(), &path.key("dry_run"), false);
        let max_keys = self.int(
            raw.max_keys.as_ref(),
            &path.key("max_keys"),
            DEFAULT_MAX_KEYS as i64,
            2,
            MAX_MAX_KEYS,
        );
        named?;
        Some(RateLimitConfig {
            name: name.to_owned(),
            key: key?,
            rate: rate?,
            // In range, checked just above.
            burst: burst? as u32,
            dry_run: dry_run?,
            max_keys: max_keys? as usize,
        })
    }

    /// `"client"`, `"header:NAME"` or `"route"`.
    fn rate_key(&mut self, text: &str, path: &KeyPath) -> Option<RateKey> {
        let (kind, name) = match text.split_once(':') {
            Some((kind, name)) => (kind.trim(), Some(name.trim())),
            None => (text.trim(), None),
        };
        let (problem, hint) = match (kind, name) {
            ("client", None) => return Some(RateKey::Client),
            ("route", None) => return Some(RateKey::Route),
            ("header", Some(name)) if is_token(name) => {
                return Some(RateKey::Header(name.to_ascii_lowercase()))
            }
            ("header", _) => (
                "the header name is missing or not a valid field name".to_owned(),
                String::new(),
            ),
            ("client" | "route", Some(_)) => (format!("`{kind}` takes no name"), String::new()),
            _ => (
                "not a rate limit key".to_owned(),
                did_you_mean(kind, ["client", "header", "route"]),
            ),
        };
        self.push(
            path.clone(),
            quote(text),
            problem,
            format!("{hint}{KEY_FIX}"),
        );
        None
    }

    /// A `rate_limits = [...]` list of a listener or route: the indexes of the limits it names.
    /// `Some(None)` when the key is absent.
    pub(super) fn rate_limit_refs(
        &mut self,
        raw: Option<&Vec<String>>,
        protocol: Option<ListenerProtocol>,
        path: &KeyPath,
    ) -> Option<Option<Vec<usize>>> {
        let Some(names) = raw else {
            return Some(None);
        };
        if protocol == Some(ListenerProtocol::Tcp) && !names.is_empty() {
            self.push(
                path.clone(),
                format!(
                    "[{}]",
                    names
                        .iter()
                        .map(|n| quote(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "a tcp listener carries no HTTP requests to limit",
                "remove rate_limits here; limit new connections per client with \
                 [listener.NAME.connection_limits] per_client_rate instead",
            );
            return None;
        }
        let mut ok = true;
        let mut indexes = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let at = path.index(i);
            let Some(index) = self.rate_limit_names.iter().position(|n| n == name) else {
                let fix = if self.rate_limit_names.is_empty() {
                    format!(
                        "no rate limits are defined: add [rate_limit.{name}] with rate = \
                         \"100/s\""
                    )
                } else {
                    format!(
                        "{}use one of the defined limits: {} (or define [rate_limit.{name}])",
                        did_you_mean(name, self.rate_limit_names.iter().map(String::as_str)),
                        list(self.rate_limit_names.iter().map(String::as_str))
                    )
                };
                self.push(
                    at,
                    quote(name),
                    format!("no rate limit named `{name}`"),
                    fix,
                );
                ok = false;
                continue;
            };
            if indexes.contains(&index) {
                self.push(
                    at,
                    quote(name),
                    format!("`{name}` is listed twice"),
                    "list each rate limit once (a request counts once against each)",
                );
                ok = false;
                continue;
            }
            indexes.push(index);
        }
        ok.then_some(Some(indexes))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, valid, with, API};
    use crate::config::{RateKey, RateLimitConfig};

    fn limits(extra: &str) -> Vec<RateLimitConfig> {
        valid(&with(extra)).rate_limits
    }

    #[test]
    fn defaults_and_keys() {
        let all = limits(
            "[rate_limit.per_client]\nrate = \"10/s\"\n\
             [rate_limit.api_key]\nkey = \"header:X-Api-Key\"\nrate = \"6000/min\"\nburst = 50\n\
             dry_run = true\nmax_keys = 1000\n\
             [rate_limit.whole]\nkey = \"route\"\nrate = \"1000/s\"\n",
        );
        let names: Vec<_> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["api_key", "per_client", "whole"]);
        assert_eq!(all[0].key, RateKey::Header("x-api-key".into()));
        assert_eq!(
            (all[0].burst, all[0].dry_run, all[0].max_keys),
            (50, true, 1000)
        );
        assert_eq!(all[0].rate.to_string(), "6000/min");
        assert_eq!(all[1].key, RateKey::Client);
        assert_eq!(
            (all[1].burst, all[1].dry_run, all[1].max_keys),
            (1, false, 1_000_000)
        );
        assert_eq!(all[2].key, RateKey::Route);
    }

    #[test]
    fn a_route_list_replaces_the_listeners_and_empty_turns_it_off() {
        let config = valid(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             rate_limits = [\"b\"]\n{API}\
             [[listener.http.route]]\npath_prefix = \"/own\"\nupstream = \"api\"\n\
             rate_limits = [\"a\", \"b\"]\n\
             [[listener.http.route]]\npath_prefix = \"/free\"\nupstream = \"api\"\n\
             rate_limits = []\n\
             [[listener.http.route]]\npath_prefix = \"/inherits\"\nupstream = \"api\"\n\
             [rate_limit.a]\nrate = \"1/s\"\n[rate_limit.b]\nrate = \"1/s\"\n"
        ));
        let routes: Vec<_> = config.listeners[0]
            .routes
            .iter()
            .map(|r| r.rate_limits.clone())
            .collect();
        assert_eq!(routes, [vec![0, 1], vec![], vec![1], vec![1]]);
    }

    #[test]
    fn a_missing_rate() {
        let error = one_error(&with("[rate_limit.x]\nburst = 5\n"));
        assert_error(
            &error,
            "rate_limit.x.rate",
            "",
            "has no rate",
            "add rate = \"100/s\"",
        );
    }

    #[test]
    fn a_bad_rate() {
        let error = one_error(&with("[rate_limit.x]\nrate = \"10/week\"\n"));
        assert_error(
            &error,
            "rate_limit.x.rate",
            "\"10/week\"",
            "not a unit of time",
            "\"6000/min\"",
        );
    }

    #[test]
    fn a_bad_key() {
        let error = one_error(&with("[rate_limit.x]\nrate = \"1/s\"\nkey = \"clinet\"\n"));
        assert_error(
            &error,
            "rate_limit.x.key",
            "\"clinet\"",
            "not a rate limit key",
            "did you mean `client`? write \"client\"",
        );
        let error = one_error(&with("[rate_limit.x]\nrate = \"1/s\"\nkey = \"header:\"\n"));
        assert_error(
            &error,
            "rate_limit.x.key",
            "\"header:\"",
            "header name is missing",
            "\"header:X-Api-Key\"",
        );
        let error = one_error(&with(
            "[rate_limit.x]\nrate = \"1/s\"\nkey = \"header:X Key\"\n",
        ));
        assert_error(
            &error,
            "rate_limit.x.key",
            "\"header:X Key\"",
            "not a valid",
            "",
        );
        let error = one_error(&with(
            "[rate_limit.x]\nrate = \"1/s\"\nkey = \"client:ip\"\n",
        ));
        assert_error(
            &error,
            "rate_limit.x.key",
            "\"client:ip\"",
            "takes no name",
            "",
        );
    }

    #[test]
    fn burst_and_max_keys_in_range() {
        let error = one_error(&with("[rate_limit.x]\nrate = \"1/s\"\nburst = 0\n"));
        assert_error(
            &error,
            "rate_limit.x.burst",
            "0",
            "must be between 1 and",
            "the default is 1",
        );
        let error = one_error(&with("[rate_limit.x]\nrate = \"1/s\"\nmax_keys = 1\n"));
        assert_error(
            &error,
            "rate_limit.x.max_keys",
            "1",
            "must be between 2 and",
            "the default is 1000000",
        );
        let error = one_error(&with("[rate_limit.x]\nrate = \"1/s\"\ndry_run = \"yes\"\n"));
        assert_error(
            &error,
            "rate_limit.x.dry_run",
            "\"yes\"",
            "not true or false",
            "",
        );
    }

    #[test]
    fn a_bad_name() {
        let error = one_error(&with("[rate_limit.\"per client\"]\nrate = \"1/s\"\n"));
        assert_error(
            &error,
            "rate_limit.\"per client\"",
            "",
            "may only use letters",
            "per_client",
        );
    }

    #[test]
    fn an_unknown_name_suggests_the_closest() {
        let error = one_error(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             rate_limits = [\"per_clinet\"]\n{API}\
             [rate_limit.per_client]\nrate = \"1/s\"\n[rate_limit.per_key]\nrate = \"1/s\"\n"
        ));
        assert_error(
            &error,
            "listener.http.rate_limits[0]",
            "\"per_clinet\"",
            "no rate limit named `per_clinet`",
            "did you mean `per_client`? use one of the defined limits: `per_client`, `per_key`",
        );
        let error = one_error(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n{API}\
             [[listener.http.route]]\npath_prefix = \"/a\"\nupstream = \"api\"\n\
             rate_limits = [\"x\"]\n"
        ));
        assert_error(
            &error,
            "listener.http.route[0].rate_limits[0]",
            "\"x\"",
            "no rate limit named `x`",
            "no rate limits are defined: add [rate_limit.x]",
        );
    }

    #[test]
    fn a_name_listed_twice() {
        let error = one_error(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             rate_limits = [\"a\", \"a\"]\n{API}[rate_limit.a]\nrate = \"1/s\"\n"
        ));
        assert_error(
            &error,
            "listener.http.rate_limits[1]",
            "\"a\"",
            "listed twice",
            "list each rate limit once",
        );
    }

    #[test]
    fn not_on_a_tcp_listener() {
        let error = one_error(&format!(
            "[listener.db]\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\n\
             upstream = \"api\"\nrate_limits = [\"a\"]\n{API}[rate_limit.a]\nrate = \"1/s\"\n"
        ));
        assert_error(
            &error,
            "listener.db.rate_limits",
            "[\"a\"]",
            "tcp listener carries no HTTP requests",
            "per_client_rate",
        );
    }
}
