//! `[admin]` and `[log]`: the admin server's address and token, and the log format.
//!
//! The rule that matters: an admin address other machines can reach (anything but loopback)
//! needs a token, because the API drains backends, changes weights and reloads. Without one the
//! configuration is refused, so `lbproxy check` and the unit's `ExecStartPre=` say so before the
//! proxy starts.

use std::net::SocketAddr;

use super::{listeners::overlaps, Validator};
use crate::config::error::{quote, KeyPath};
use crate::config::file::FileConfig;
use crate::config::{AdminConfig, AdminToken, ListenerConfig, LogConfig, LogFormat};

/// The admin server's address when `[admin] address` is not set.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9901";

const LOG_FORMATS: [(&str, LogFormat); 2] = [("text", LogFormat::Text), ("json", LogFormat::Json)];

/// How to make a token, for the fixes.
const MAKE_TOKEN: &str = "head -c 32 /dev/urandom | base64";

impl Validator<'_> {
    pub(super) fn log(&mut self, file: &FileConfig, path: &KeyPath) -> Option<LogConfig> {
        let access = self.boolean(file.log.access.as_ref(), &path.key("access"), false);
        let format = match &file.log.format {
            None => Some(LogFormat::Text),
            Some(text) => self.choice(text, &path.key("format"), "log format", &LOG_FORMATS, ""),
        };
        Some(LogConfig {
            access: access?,
            format: format?,
        })
    }

    pub(super) fn admin(&mut self, file: &FileConfig, path: &KeyPath) -> Option<AdminConfig> {
        let raw = &file.admin;
        let enabled = self.boolean(raw.enabled.as_ref(), &path.key("enabled"), true);
        let address_path = path.key("address");
        let address = match &raw.address {
            None => DEFAULT_ADMIN_ADDRESS.parse().ok(),
            Some(text) => self.address(text, &address_path, DEFAULT_ADMIN_ADDRESS, false),
        };
        let token = match (&raw.token, &raw.token_file) {
            (Some(_), Some(file)) => {
                self.push(
                    path.key("token_file"),
                    quote(file),
                    "both admin.token and admin.token_file are set",
                    "keep one: token_file keeps the secret out of the configuration file",
                );
                None
            }
            (Some(token), None) => {
                // A secret is not repeated in error messages.
                let shown = quote("<hidden>");
                self.token(token, &path.key("token"), shown, "").map(Some)
            }
            (None, Some(file)) => self.token_file(file, &path.key("token_file")).map(Some),
            (None, None) => Some(None),
        };
        let (enabled, address, token) = (enabled?, address?, token?);
        if enabled && token.is_none() && !is_loopback(address) {
            self.push(
                address_path,
                quote(raw.address.as_deref().unwrap_or_default()),
                format!(
                    "the admin API (drain, weights, reload) would be reachable from other \
                     machines on {address} without a token"
                ),
                format!(
                    "set admin.token_file to a file holding a token (make one with `{MAKE_TOKEN}`) \
                     or admin.token, or listen on loopback: address = \"{DEFAULT_ADMIN_ADDRESS}\""
                ),
            );
            return None;
        }
        Some(AdminConfig {
            enabled,
            address,
            token,
        })
    }

    /// The admin address must not be a listener's.
    pub(super) fn admin_beside_listeners(
        &mut self,
        file: &FileConfig,
        admin: &AdminConfig,
        listeners: &[ListenerConfig],
    ) {
        if !admin.enabled {
            return;
        }
        if let Some(listener) = listeners
            .iter()
            .find(|l| overlaps(l.address, admin.address))
        {
            self.push(
                KeyPath::root().key("admin").key("address"),
                quote(
                    file.admin
                        .address
                        .as_deref()
                        .unwrap_or(DEFAULT_ADMIN_ADDRESS),
                ),
                format!(
                    "listener `{}` already listens on {}",
                    listener.name, listener.address
                ),
                "give the admin server a port of its own, e.g. \"127.0.0.1:9901\"",
            );
        }
    }

    fn token_file(&mut self, file: &str, path: &KeyPath) -> Option<AdminToken> {
        let resolved = self.base.join(file);
        match std::fs::read_to_string(&resolved) {
            Ok(text) => self.token(
                text.trim_end_matches(['\n', '\r']),
                path,
                quote(file),
                &format!(" in {}", resolved.display()),
            ),
            Err(e) => {
                self.push(
                    path.clone(),
                    quote(file),
                    format!("cannot read {}: {e}", resolved.display()),
                    format!(
                        "create it, readable by the proxy's user: `{MAKE_TOKEN} > {}`",
                        resolved.display()
                    ),
                );
                None
            }
        }
    }

    /// `shown`: the value as the error shows it; `origin`: where the token came from, for the
    /// problem (" in FILE").
    fn token(
        &mut self,
        token: &str,
        path: &KeyPath,
        shown: String,
        origin: &str,
    ) -> Option<AdminToken> {
        let problem = if token.len() < AdminToken::MIN_LEN {
            format!(
                "the admin token{origin} is {} characters long; at least {} are needed",
                token.len(),
                AdminToken::MIN_LEN
            )
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            format!("the admin token{origin} may only hold visible ASCII characters (no spaces)")
        } else {
            return Some(AdminToken::new(token.to_owned()));
        };
        self.push(
            path.clone(),
            shown,
            problem,
            format!("use a random token, e.g. from `{MAKE_TOKEN}`"),
        );
        None
    }
}

/// Whether `address` is reachable only from this machine.
pub fn is_loopback(address: SocketAddr) -> bool {
    address.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, valid, with};
    use crate::config::LogFormat;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn defaults_are_on_loopback_without_token_and_text_logs() {
        let config = valid(&with(""));
        assert!(config.admin.enabled);
        assert_eq!(config.admin.address, "127.0.0.1:9901".parse().unwrap());
        assert!(config.admin.token.is_none());
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(
            valid(&with("[log]\nformat = \"json\"\n")).log.format,
            LogFormat::Json
        );
        let off = valid(&with(
            "[admin]\nenabled = false\naddress = \"0.0.0.0:9901\"\n",
        ));
        assert!(
            !off.admin.enabled,
            "an admin server that is off needs no token"
        );
    }

    #[test]
    fn an_address_other_machines_reach_needs_a_token() {
        let e = one_error(&with("[admin]\naddress = \"0.0.0.0:9901\"\n"));
        assert_error(
            &e,
            "admin.address",
            "\"0.0.0.0:9901\"",
            "reachable from other machines on 0.0.0.0:9901 without a token",
            "set admin.token_file",
        );
        let with_token = valid(&with(&format!(
            "[admin]\naddress = \"0.0.0.0:9901\"\ntoken = \"{TOKEN}\"\n"
        )));
        assert!(with_token.admin.token.unwrap().matches(TOKEN.as_bytes()));
        valid(&with("[admin]\naddress = \"[::1]:9901\"\n"));
    }

    #[test]
    fn tokens_are_long_visible_and_not_repeated_in_errors() {
        let e = one_error(&with("[admin]\ntoken = \"short\"\n"));
        assert_error(
            &e,
            "admin.token",
            "\"<hidden>\"",
            "5 characters long; at least 16",
            "head -c 32 /dev/urandom | base64",
        );
        let e = one_error(&with("[admin]\ntoken = \"has spaces in the token\"\n"));
        assert_error(
            &e,
            "admin.token",
            "\"<hidden>\"",
            "visible ASCII",
            "random token",
        );
        let e = one_error(&with(&format!(
            "[admin]\ntoken = \"{TOKEN}\"\ntoken_file = \"admin.token\"\n"
        )));
        assert_error(
            &e,
            "admin.token_file",
            "\"admin.token\"",
            "both admin.token and admin.token_file",
            "keep one",
        );
    }

    #[test]
    fn a_token_file_is_read_beside_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.token");
        let e = one_error(&with(&format!(
            "[admin]\ntoken_file = \"{}\"\n",
            missing.display()
        )));
        assert_error(
            &e,
            "admin.token_file",
            &format!("\"{}\"", missing.display()),
            "cannot read",
            "readable by the proxy's user",
        );
        let file = dir.path().join("admin.token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let config = valid(&with(&format!(
            "[admin]\naddress = \"0.0.0.0:9901\"\ntoken_file = \"{}\"\n",
            file.display()
        )));
        assert_eq!(
            config.admin.token.unwrap().as_str(),
            TOKEN,
            "newline trimmed"
        );
    }

    #[test]
    fn the_admin_port_is_not_a_listener_s_and_formats_are_named() {
        let e = one_error(&with("[admin]\naddress = \"127.0.0.1:8080\"\n"));
        assert_error(
            &e,
            "admin.address",
            "\"127.0.0.1:8080\"",
            "listener `http` already listens on 127.0.0.1:8080",
            "a port of its own",
        );
        let e = one_error(&with("[log]\nformat = \"jsn\"\n"));
        assert_error(
            &e,
            "log.format",
            "\"jsn\"",
            "unknown log format",
            "did you mean `json`?",
        );
    }
}
