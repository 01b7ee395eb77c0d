//! Who says who the client is: `trusted_proxies` (the peers whose `X-Forwarded-For` and
//! `Forwarded` fields are believed, and the only peers a PROXY header is accepted from) and
//! `accept_proxy_protocol` (every connection starts with a PROXY header, from one of them).
//!
//! Flow: the list is read as networks ([`Validator::cidr_set`]), the flag as a boolean, then the
//! combinations that cannot work are refused with their fix: a PROXY header nobody may send (no
//! `trusted_proxies`), and a trust list on a tcp listener that would never be read (a tcp
//! listener reads no HTTP field; only a PROXY header names its client).

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::file::FileListener;
use crate::config::{CidrSet, ListenerProtocol};

impl Validator<'_> {
    /// `(trusted_proxies, accept_proxy_protocol)` of a listener.
    pub(super) fn trust(
        &mut self,
        raw: &FileListener,
        protocol: Option<ListenerProtocol>,
        path: &KeyPath,
    ) -> Option<(CidrSet, bool)> {
        let trusted = match &raw.trusted_proxies {
            Some(list) => self.cidr_set(list, &path.key("trusted_proxies"))?,
            None => CidrSet::default(),
        };
        let proxy_protocol = self.boolean(
            raw.accept_proxy_protocol.as_ref(),
            &path.key("accept_proxy_protocol"),
            false,
        )?;
        if proxy_protocol && trusted.is_empty() {
            self.push(
                path.key("accept_proxy_protocol"),
                "true".to_owned(),
                "a PROXY header is accepted only from a peer in `trusted_proxies`, and the \
                 listener lists none: every connection would be refused",
                "list the addresses of the load balancer in front in `trusted_proxies` \
                 (e.g. trusted_proxies = [\"10.0.0.0/8\"])",
            );
            return None;
        }
        if protocol == Some(ListenerProtocol::Tcp) && !trusted.is_empty() && !proxy_protocol {
            let written: Vec<String> = trusted
                .written
                .iter()
                .map(|c| quote(&c.to_string()))
                .collect();
            self.push(
                path.key("trusted_proxies"),
                format!("[{}]", written.join(", ")),
                "a tcp listener reads no `X-Forwarded-For` or `Forwarded` field: only a PROXY \
                 header can name the client, and `accept_proxy_protocol` is off",
                "set `accept_proxy_protocol = true` if the load balancer in front sends PROXY \
                 headers, else remove `trusted_proxies`",
            );
            return None;
        }
        Some((trusted, proxy_protocol))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, valid, API, LISTENER};

    #[test]
    fn a_proxy_header_without_trusted_proxies_is_refused() {
        let text = format!("{LISTENER}accept_proxy_protocol = true\n{API}");
        assert_error(
            &one_error(&text),
            "listener.http.accept_proxy_protocol",
            "true",
            "accepted only from a peer in `trusted_proxies`",
            "list the addresses of the load balancer",
        );
    }

    #[test]
    fn trusted_proxies_on_a_tcp_listener_need_the_proxy_protocol() {
        let text = format!(
            "[listener.db]\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\nupstream = \"api\"\n\
             trusted_proxies = [\"10.0.0.0/8\"]\n{API}"
        );
        assert_error(
            &one_error(&text),
            "listener.db.trusted_proxies",
            "[\"10.0.0.0/8\"]",
            "a tcp listener reads no `X-Forwarded-For`",
            "set `accept_proxy_protocol = true`",
        );
    }

    #[test]
    fn the_valid_combinations_load() {
        let text = format!(
            "{LISTENER}trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\naccept_proxy_protocol = true\n{API}"
        );
        let config = valid(&text);
        let policy = &config.listeners[0].policy;
        assert!(policy.accept_proxy_protocol);
        assert!(policy.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(!policy.trusted_proxies.contains("11.1.2.3".parse().unwrap()));
        let text = format!(
            "[listener.db]\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\nupstream = \"api\"\n\
             trusted_proxies = [\"10.0.0.0/8\"]\naccept_proxy_protocol = true\n{API}"
        );
        assert!(valid(&text).listeners[0].policy.accept_proxy_protocol);
        // Without either, nobody is trusted.
        let config = valid(&format!("{LISTENER}{API}"));
        assert!(!config.listeners[0].policy.accept_proxy_protocol);
        assert!(config.listeners[0].policy.trusted_proxies.is_empty());
    }
}
