//! A listener's `redirect_https = true` (or the https port): every request on this http
//! listener is answered `308 Permanent Redirect` to `https://{host}{uri}` (`https://{host}:PORT{uri}`
//! for a port other than 443). It becomes the listener's one route, a redirect, so it is
//! answered, counted and logged as any redirect route is. The listener then has no other routes
//! and no `upstream` (an error names them): what it would forward goes to the https listener.

use super::Validator;
use crate::config::error::quote;
use crate::config::file::FileListener;
use crate::config::key_path::KeyPath;
use crate::config::{
    ListenerProtocol, Redirect, RouteAction, RouteConfig, RouteSettings, Template,
};

impl Validator<'_> {
    /// The redirect route `redirect_https` asks for: `Some(None)` when it is absent or `false`.
    pub(super) fn redirect_https(
        &mut self,
        raw: &FileListener,
        protocol: Option<ListenerProtocol>,
        path: &KeyPath,
    ) -> Option<Option<RouteConfig>> {
        let Some(value) = &raw.redirect_https else {
            return Some(None);
        };
        let path = path.key("redirect_https");
        let port = match value {
            toml::Value::Boolean(false) => return Some(None),
            toml::Value::Boolean(true) => None,
            toml::Value::Integer(443) => None,
            toml::Value::Integer(port) if (1..=65535).contains(port) => Some(*port),
            other => {
                self.push(
                    path,
                    other.to_string(),
                    "not true or a port",
                    "write redirect_https = true (to https on port 443), or the https \
                     listener's port, e.g. redirect_https = 8443",
                );
                return None;
            }
        };
        if let Some(protocol @ (ListenerProtocol::Https | ListenerProtocol::Tcp)) = protocol {
            self.push(
                path,
                value.to_string(),
                format!(
                    "only an http listener redirects to https; this is a {} listener",
                    protocol.scheme()
                ),
                "remove redirect_https, and set it on the plain http listener instead",
            );
            return None;
        }
        if !raw.route.is_empty() || raw.upstream.is_some() {
            let what = if raw.upstream.is_some() {
                "`upstream`"
            } else {
                "routes"
            };
            self.push(
                path,
                value.to_string(),
                format!(
                    "every request is redirected, so the listener's {what} would never be used"
                ),
                "remove `upstream` and the [[route]] tables from this listener (serve them on \
                 the https listener), or remove redirect_https",
            );
            return None;
        }
        let location = match port {
            Some(port) => format!("https://{{host}}:{port}{{uri}}"),
            None => "https://{host}{uri}".to_owned(),
        };
        let location = Template::parse(&location)
            .map_err(|_| quote(&location))
            .ok()?;
        let mut route = RouteConfig::forward(None, "/", 0, RouteSettings::default());
        route.action = RouteAction::Redirect(Redirect {
            location,
            status: 308,
        });
        Some(Some(route))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, valid, API};
    use crate::config::RouteAction;

    fn listener(protocol: &str, extra: &str) -> String {
        format!(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\nprotocol = \"{protocol}\"\n{extra}\n\
             [listener.app]\naddress = \"127.0.0.1:8081\"\nupstream = \"api\"\n{API}"
        )
    }

    #[test]
    fn every_request_becomes_a_308_to_https() {
        let config = valid(&listener("http", "redirect_https = true"));
        let routes = &config.listeners[1].routes;
        assert_eq!(routes.len(), 1);
        let RouteAction::Redirect(redirect) = &routes[0].action else {
            panic!("{routes:?}")
        };
        assert_eq!(
            (redirect.status, redirect.location.to_string().as_str()),
            (308, "https://{host}{uri}")
        );
        let config = valid(&listener("http", "redirect_https = 8443"));
        let RouteAction::Redirect(redirect) = &config.listeners[1].routes[0].action else {
            panic!()
        };
        assert_eq!(redirect.location.to_string(), "https://{host}:8443{uri}");
    }

    #[test]
    fn mistakes() {
        let e = one_error(&listener("http", "redirect_https = \"yes\""));
        assert_error(
            &e,
            "listener.web.redirect_https",
            "\"yes\"",
            "not true or a port",
            "redirect_https = 8443",
        );
        let e = one_error(&listener(
            "http",
            "redirect_https = true\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.web.redirect_https",
            "true",
            "`upstream` would never be used",
            "serve them on the https listener",
        );
        let e = one_error(&listener(
            "tcp",
            "redirect_https = true\nupstream = \"api\"",
        ));
        assert_error(
            &e,
            "listener.web.redirect_https",
            "true",
            "this is a tcp listener",
            "plain http listener",
        );
    }
}
