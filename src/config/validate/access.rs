//! Access lists: `access = { allow = [...], deny = [...], action = 403 | "reset" }` on a
//! listener (checked when a connection opens, or per request when the connection's forwarded
//! fields are trusted) or a route (checked per request, after routing).
//!
//! Flow: both lists are parsed as networks ([`Validator::cidr_set`]); then the table must do
//! something (a list not empty), `action` must be one this place can take (a listener only
//! resets: there is no request to answer when a connection opens), a tcp listener's routes take
//! no list (they see no request), and no allowed network may be denied whole. A route's default
//! action is `403`.

use super::Validator;
use crate::config::error::{did_you_mean, quote, KeyPath};
use crate::config::file::FileAccess;
use crate::config::{AccessList, CidrSet, DenyAction, ListenerProtocol};

/// The values `action` takes, as written.
const ACTIONS: [&str; 2] = ["403", "reset"];

impl Validator<'_> {
    /// `Some(None)`: no list; `None`: a problem was reported. `on_route`: a route's list (a
    /// listener's refuses `action`: a connection refused when it opens is always reset).
    pub(super) fn access(
        &mut self,
        raw: Option<&FileAccess>,
        protocol: Option<ListenerProtocol>,
        on_route: bool,
        path: &KeyPath,
    ) -> Option<Option<AccessList>> {
        let Some(raw) = raw else { return Some(None) };
        let path = path.key("access");
        if on_route && protocol == Some(ListenerProtocol::Tcp) {
            self.push(
                path,
                "",
                "an access list on a tcp listener's route, which sees no request to check",
                "move `access` to the tcp listener itself (its list is checked when each \
                 connection opens, and a refused one is reset)",
            );
            return None;
        }
        let allow = self.cidr_set(raw.allow.as_deref().unwrap_or_default(), &path.key("allow"));
        let deny = self.cidr_set(raw.deny.as_deref().unwrap_or_default(), &path.key("deny"));
        let action = self.deny_action(raw.action.as_ref(), on_route, &path);
        let (allow, deny) = (allow?, deny?);
        if allow.is_empty() && deny.is_empty() {
            self.push(
                path,
                "",
                "neither `allow` nor `deny` lists a network: the access list does nothing",
                "list the networks that may pass (allow = [\"10.0.0.0/8\"]) or those that may \
                 not (deny = [\"192.0.2.0/24\"]), or remove `access`",
            );
            return None;
        }
        self.allowed_but_denied(&allow, &deny, &path)?;
        Some(Some(AccessList {
            allow,
            deny,
            action: action?,
        }))
    }

    /// `action`: `403` (a route's default) or `"reset"`; a listener's is always a reset and
    /// takes no `action`.
    fn deny_action(
        &mut self,
        raw: Option<&toml::Value>,
        on_route: bool,
        path: &KeyPath,
    ) -> Option<DenyAction> {
        let action_path = path.key("action");
        let Some(value) = raw else {
            return Some(if on_route {
                DenyAction::Forbidden
            } else {
                DenyAction::Reset
            });
        };
        if !on_route {
            self.push(
                action_path,
                value.to_string(),
                "a listener's access list takes no action: a connection refused when it opens \
                 is reset, as there is no request yet to answer",
                "remove `action` here; to answer refused requests with 403, put the access \
                 list on the listener's routes instead (access = { allow = [...] } in \
                 [[listener.NAME.route]])",
            );
            return None;
        }
        match value {
            toml::Value::Integer(403) => Some(DenyAction::Forbidden),
            toml::Value::String(text) if text == "403" => Some(DenyAction::Forbidden),
            toml::Value::String(text) if text == "reset" => Some(DenyAction::Reset),
            other => {
                let hint = match other {
                    toml::Value::String(text) => did_you_mean(text, ACTIONS),
                    _ => String::new(),
                };
                self.push(
                    action_path,
                    other.to_string(),
                    "not an action an access list takes",
                    format!(
                        "{hint}write action = 403 (answer 403 Forbidden, the default) or \
                         action = \"reset\" (reset the connection without an answer)"
                    ),
                );
                None
            }
        }
    }

    /// An `allow` entry that `deny` covers whole lets nobody through: a mistake in one list.
    fn allowed_but_denied(
        &mut self,
        allow: &CidrSet,
        deny: &CidrSet,
        path: &KeyPath,
    ) -> Option<()> {
        let mut ok = true;
        for (i, cidr) in allow.written.iter().enumerate() {
            if deny.covers(cidr) {
                ok = false;
                self.push(
                    path.key("allow").index(i),
                    quote(&cidr.to_string()),
                    format!("every address of {cidr} is also denied, so it allows nobody"),
                    "remove it from `allow`, or narrow the `deny` entries that cover it \
                     (deny wins over allow)",
                );
            }
        }
        ok.then_some(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, valid, with, API};
    use crate::config::DenyAction;

    const LISTENER_HEAD: &str =
        "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n";

    fn on_listener(access: &str) -> String {
        format!("{LISTENER_HEAD}access = {access}\n{API}")
    }

    fn on_route(access: &str) -> String {
        with(&format!(
            "[[listener.http.route]]\npath_prefix = \"/admin\"\nupstream = \"api\"\naccess = \
             {access}\n"
        ))
    }

    #[test]
    fn a_listener_list_resets_and_a_route_list_answers_403_by_default() {
        let config = valid(&on_listener(
            "{ allow = [\"10.0.0.0/8\"], deny = [\"10.0.0.66\"] }",
        ));
        let access = config.listeners[0].policy.access.as_ref().unwrap();
        assert_eq!(access.action, DenyAction::Reset);
        assert!(access.allows("10.1.2.3".parse().unwrap()));
        assert!(!access.allows("10.0.0.66".parse().unwrap()));
        assert!(!access.allows("192.0.2.1".parse().unwrap()));

        let config = valid(&on_route("{ allow = [\"10.0.0.0/8\"] }"));
        let route = &config.listeners[0].routes[0];
        assert_eq!(route.access.as_ref().unwrap().action, DenyAction::Forbidden);
        // The catch-all keeps no list: it costs its requests nothing.
        assert!(config.listeners[0].routes[1].access.is_none());
    }

    #[test]
    fn a_route_takes_403_written_either_way_or_reset() {
        for (written, action) in [
            ("403", DenyAction::Forbidden),
            ("\"403\"", DenyAction::Forbidden),
            ("\"reset\"", DenyAction::Reset),
        ] {
            let text = on_route(&format!(
                "{{ deny = [\"192.0.2.0/24\"], action = {written} }}"
            ));
            let config = valid(&text);
            assert_eq!(
                config.listeners[0].routes[0]
                    .access
                    .as_ref()
                    .unwrap()
                    .action,
                action,
                "{written}"
            );
        }
    }

    #[test]
    fn an_empty_table_or_empty_lists_are_refused() {
        for access in ["{}", "{ allow = [], deny = [] }", "{ action = 403 }"] {
            let e = one_error(&on_route(access));
            assert_error(
                &e,
                "listener.http.route[0].access",
                "",
                "the access list does nothing",
                "or remove `access`",
            );
        }
        let e = one_error(&on_listener("{ allow = [] }"));
        assert_error(&e, "listener.http.access", "", "does nothing", "allow = [");
    }

    #[test]
    fn a_listener_takes_no_action() {
        let e = one_error(&on_listener("{ deny = [\"192.0.2.0/24\"], action = 403 }"));
        assert_error(
            &e,
            "listener.http.access.action",
            "403",
            "a connection refused when it opens is reset",
            "put the access list on the listener's routes",
        );
    }

    #[test]
    fn an_unknown_action_suggests_the_closest() {
        let e = one_error(&on_route(
            "{ deny = [\"192.0.2.0/24\"], action = \"rest\" }",
        ));
        assert_error(
            &e,
            "listener.http.route[0].access.action",
            "\"rest\"",
            "not an action",
            "did you mean `reset`?",
        );
        let e = one_error(&on_route("{ deny = [\"192.0.2.0/24\"], action = 404 }"));
        assert_error(
            &e,
            "listener.http.route[0].access.action",
            "404",
            "not an action",
            "action = 403",
        );
    }

    #[test]
    fn a_tcp_listener_s_route_takes_no_list() {
        let text = format!(
            "[listener.tls]\naddress = \"127.0.0.1:8443\"\nprotocol = \"tcp\"\n\
             access = {{ allow = [\"10.0.0.0/8\"] }}\n\
             [[listener.tls.route]]\nsni = \"a.example.com\"\nupstream = \"api\"\n\
             access = {{ allow = [\"10.0.0.0/8\"] }}\n{API}"
        );
        let e = one_error(&text);
        assert_error(
            &e,
            "listener.tls.route[0].access",
            "",
            "sees no request",
            "move `access` to the tcp listener itself",
        );
    }

    #[test]
    fn an_allowed_network_denied_whole_is_refused() {
        let e = one_error(&on_route(
            "{ allow = [\"10.1.0.0/16\", \"10.2.0.0/16\"], deny = [\"10.2.0.0/15\"] }",
        ));
        assert_error(
            &e,
            "listener.http.route[0].access.allow[1]",
            "\"10.2.0.0/16\"",
            "allows nobody",
            "deny wins over allow",
        );
        // Denying part of an allowed network is what deny is for.
        valid(&on_route(
            "{ allow = [\"10.0.0.0/8\"], deny = [\"10.0.0.66\"] }",
        ));
    }

    #[test]
    fn a_bad_network_is_reported_at_its_index() {
        let e = one_error(&on_route("{ deny = [\"192.0.2.0/24\", \"nope\"] }"));
        assert_error(
            &e,
            "listener.http.route[0].access.deny[1]",
            "\"nope\"",
            "not an IPv4 or IPv6 address",
            "10.0.0.0/8",
        );
    }
}
