//! What is particular to tcp listeners: `relay`, and what the groups they send to may have —
//! no hashing on headers or cookies (a TCP connection has none), no TLS to the backends (a tcp
//! listener relays bytes as they are) — and `proxy_protocol`, which only groups of tcp
//! listeners may have (HTTP backends learn the client's address from `X-Forwarded-For`, and a
//! pooled connection carrying one client's PROXY header must never serve another client).
//!
//! The `sni` and `host`/`path_prefix` keys of routes are checked with the routes (`listeners`).

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::file::FileConfig;
use crate::config::{ListenerProtocol, RelayMode};

const RELAYS: [(&str, RelayMode); 2] = [("copy", RelayMode::Copy), ("splice", RelayMode::Splice)];

impl Validator<'_> {
    /// `relay`: tcp listeners only.
    pub(super) fn relay(
        &mut self,
        protocol: Option<ListenerProtocol>,
        raw: Option<&str>,
        path: &KeyPath,
    ) -> Option<RelayMode> {
        let Some(text) = raw else {
            return Some(RelayMode::DEFAULT);
        };
        let relay_path = path.key("relay");
        match protocol {
            Some(ListenerProtocol::Tcp) => self.choice(
                text,
                &relay_path,
                "relay",
                &RELAYS,
                " (see docs/config.md for what each costs)",
            ),
            Some(other) => {
                self.push(
                    relay_path,
                    quote(text),
                    format!(
                        "relay only applies to tcp listeners, not to {} ones",
                        other.scheme()
                    ),
                    format!(
                        "remove relay from [{path}] (WebSocket tunnels of http and https \
                         listeners always copy), or set protocol = \"tcp\""
                    ),
                );
                None
            }
            // The protocol itself was wrong; that error says enough.
            None => None,
        }
    }

    /// What a listener's protocol requires of the groups it sends to (see the module docs).
    /// Read from the file as written, so it is said even when other parts are wrong.
    pub(super) fn listener_groups(&mut self, file: &FileConfig, path: &KeyPath) {
        for (group, raw) in &file.upstream {
            let group_path = path.key(group);
            let senders: Vec<(&str, &str)> = file
                .listener
                .iter()
                .filter(|(_, l)| {
                    l.upstream.as_deref() == Some(group)
                        || l.route.iter().any(|r| r.upstream.as_deref() == Some(group))
                })
                .map(|(name, l)| (name.as_str(), l.protocol.as_deref().unwrap_or("http")))
                .collect();
            let tcp = senders.iter().find(|(_, protocol)| *protocol == "tcp");
            let http = senders
                .iter()
                .find(|(_, protocol)| matches!(*protocol, "http" | "https"));
            if let Some((listener, _)) = tcp {
                if let Some(key) = raw.hash_key.as_deref() {
                    let key = key.trim();
                    if key.starts_with("header:") || key.starts_with("cookie:") {
                        self.push(
                            group_path.key("hash_key"),
                            quote(key),
                            format!(
                                "tcp listener `{listener}` sends connections to this group, and \
                                 a TCP connection has no headers or cookies to hash"
                            ),
                            "write hash_key = \"client_ip\", or give the tcp listener a group \
                             of its own",
                        );
                    }
                }
                if raw.tls.is_some() {
                    self.push(
                        group_path.key("tls"),
                        "",
                        format!(
                            "tcp listener `{listener}` sends connections to this group, and a \
                             tcp listener relays bytes as they are: it does not speak TLS to \
                             backends"
                        ),
                        format!(
                            "remove [{}] (a client's own TLS passes through to the backends), \
                             or give the tcp listener a group of its own",
                            group_path.key("tls")
                        ),
                    );
                }
            }
            if let (Some(text), Some((listener, protocol))) = (&raw.proxy_protocol, http) {
                self.push(
                    group_path.key("proxy_protocol"),
                    quote(text),
                    format!(
                        "{protocol} listener `{listener}` sends requests to this group, and PROXY \
                         protocol headers only go to the backends of tcp listeners (HTTP \
                         backends learn the client's address from X-Forwarded-For)"
                    ),
                    "remove proxy_protocol, or give the tcp listener a group of its own",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, invalid, one_error, valid, API};
    use crate::config::{ListenerProtocol, ProxyProtocol, RelayMode};
    use std::time::Duration;

    /// A tcp listener `db` in front of group `api`, with `extra` keys in the listener.
    fn tcp(extra: &str) -> String {
        format!(
            "[listener.db]\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\nupstream = \"api\"\n\
             {extra}\n{API}"
        )
    }

    #[test]
    fn a_tcp_listener_relays_with_the_default_unless_told() {
        let config = valid(&tcp(""));
        let listener = &config.listeners[0];
        assert_eq!(listener.protocol, ListenerProtocol::Tcp);
        assert_eq!(listener.relay, RelayMode::DEFAULT);
        assert!(
            !listener.routes_by_sni(),
            "no sni route: nothing is read first"
        );
        assert_eq!(config.timeouts.tcp_idle, Duration::from_secs(3600));
        assert_eq!(config.timeouts.tunnel_idle, Duration::from_secs(3600));
        assert_eq!(
            valid(&tcp("relay = \"copy\"")).listeners[0].relay,
            RelayMode::Copy
        );
        assert_eq!(
            valid(&tcp("relay = \"splice\"")).listeners[0].relay,
            RelayMode::Splice
        );

        let e = one_error(&tcp("relay = \"zerocopy\""));
        assert_error(
            &e,
            "listener.db.relay",
            "\"zerocopy\"",
            "unknown relay `zerocopy`",
            "use one of `copy`, `splice`",
        );
    }

    #[test]
    fn relay_belongs_to_tcp_listeners() {
        let e = one_error(&format!(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\nrelay = \"splice\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.web.relay",
            "\"splice\"",
            "relay only applies to tcp listeners, not to http ones",
            "remove relay from [listener.web] (WebSocket tunnels of http and https listeners \
             always copy), or set protocol = \"tcp\"",
        );
    }

    #[test]
    fn sni_routes_on_tcp_listeners_and_host_routes_elsewhere() {
        let config = valid(&tcp(
            "[[listener.db.route]]\nsni = \"A.Example.com\"\nupstream = \"api\"\n\
             [[listener.db.route]]\nsni = \"*.example.org\"\nupstream = \"api\"\n",
        ));
        let listener = &config.listeners[0];
        assert!(listener.routes_by_sni());
        let patterns: Vec<Option<&str>> =
            listener.routes.iter().map(|r| r.host.as_deref()).collect();
        assert_eq!(
            patterns,
            [Some("a.example.com"), Some("*.example.org"), None],
            "lowercased, then the default"
        );

        let e = one_error(&tcp(
            "[[listener.db.route]]\nhost = \"a.example.com\"\nupstream = \"api\"\n",
        ));
        assert_error(
            &e,
            "listener.db.route[0].host",
            "\"a.example.com\"",
            "a tcp listener sees no HTTP requests, so it cannot route by host",
            "sni = \"api.example.com\"",
        );
        let e = one_error(&tcp(
            "[[listener.db.route]]\nsni = \"a.example.com\"\npath_prefix = \"/v1/\"\nupstream = \"api\"\n",
        ));
        assert_error(
            &e,
            "listener.db.route[0].path_prefix",
            "\"/v1/\"",
            "cannot route by path_prefix",
            "set protocol = \"http\" to route requests",
        );
        let e = one_error(&tcp(
            "[[listener.db.route]]\nsni = \"a.example.com:443\"\nupstream = \"api\"\n",
        ));
        assert_error(
            &e,
            "listener.db.route[0].sni",
            "\"a.example.com:443\"",
            "without its port",
            "write \"a.example.com\"",
        );

        let e = one_error(&format!(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\n\
             [[listener.web.route]]\nsni = \"a.example.com\"\nupstream = \"api\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.web.route[0].sni",
            "\"a.example.com\"",
            "sni routes are for tcp listeners (TLS passed through); this is an http listener",
            "write host = \"a.example.com\"",
        );
        let e = one_error(&tcp(
            "[[listener.db.route]]\nsni = \"*.example.com\"\nupstream = \"api\"\n\
             [[listener.db.route]]\nsni = \"a.example.com\"\nupstream = \"api\"\n",
        ));
        assert_error(
            &e,
            "listener.db.route[1]",
            "",
            "never matched: route[0] comes first",
            "move this route above route[0]",
        );
    }

    #[test]
    fn tls_settings_on_a_tcp_listener_point_to_passthrough_or_https() {
        let e = one_error(&tcp(
            "[[listener.db.tls.certificate]]\ncert = \"a.pem\"\nkey = \"a.key\"\n",
        ));
        assert_error(
            &e,
            "listener.db.tls",
            "",
            "TLS settings on a tcp listener, which passes TLS through untouched",
            "set protocol = \"https\" in [listener.db] to terminate TLS here",
        );
    }

    #[test]
    fn groups_of_tcp_listeners_hash_on_the_client_and_speak_plain_tcp() {
        let e = one_error(&format!(
            "{}balance = \"maglev\"\nhash_key = \"header:X-User\"\n",
            tcp("")
        ));
        assert_error(
            &e,
            "upstream.api.hash_key",
            "\"header:X-User\"",
            "tcp listener `db` sends connections to this group, and a TCP connection has no \
             headers or cookies to hash",
            "write hash_key = \"client_ip\"",
        );
        valid(&format!(
            "{}balance = \"maglev\"\nhash_key = \"client_ip\"\n",
            tcp("")
        ));

        // (The missing CA file is reported too.)
        let errors = invalid(&format!("{}[upstream.api.tls]\nca = \"ca.pem\"\n", tcp("")));
        let e = errors
            .iter()
            .find(|e| e.key == "upstream.api.tls")
            .expect("refused");
        assert_error(
            e,
            "upstream.api.tls",
            "",
            "a tcp listener relays bytes as they are: it does not speak TLS to backends",
            "remove [upstream.api.tls]",
        );
    }

    #[test]
    fn proxy_protocol_goes_to_groups_of_tcp_listeners_only() {
        let config = valid(&format!("{}proxy_protocol = \"v2\"\n", tcp("")));
        assert_eq!(config.upstreams[0].proxy_protocol, Some(ProxyProtocol::V2));
        assert_eq!(valid(&tcp("")).upstreams[0].proxy_protocol, None);

        let e = one_error(&format!("{}proxy_protocol = \"v3\"\n", tcp("")));
        assert_error(
            &e,
            "upstream.api.proxy_protocol",
            "\"v3\"",
            "unknown PROXY protocol version `v3`",
            "use one of `v1`, `v2`",
        );

        let errors = invalid(&format!(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\nprotocol = \"https\"\nupstream = \"api\"\n\
             {API}proxy_protocol = \"v1\"\n"
        ));
        let e = errors
            .iter()
            .find(|e| e.key == "upstream.api.proxy_protocol")
            .expect("refused");
        assert_error(
            e,
            "upstream.api.proxy_protocol",
            "\"v1\"",
            "https listener `web` sends requests to this group, and PROXY protocol headers only \
             go to the backends of tcp listeners",
            "give the tcp listener a group of its own",
        );
    }

    #[test]
    fn idle_timeouts_are_durations_above_zero() {
        let config = valid(&tcp(
            "[timeouts]\ntcp_idle = \"90s\"\ntunnel_idle = \"10m\"\n",
        ));
        assert_eq!(config.timeouts.tcp_idle, Duration::from_secs(90));
        assert_eq!(config.timeouts.tunnel_idle, Duration::from_secs(600));
        let e = one_error(&tcp("[timeouts]\ntcp_idle = \"0s\"\n"));
        assert_error(
            &e,
            "timeouts.tcp_idle",
            "\"0s\"",
            "greater than zero",
            "default is \"1h\"",
        );
    }
}
