//! Single values: the checks every section shares. Each parses one raw value (defaulting it
//! when absent), records a problem with a fix when it is wrong, and returns `None` then.

use std::net::SocketAddr;
use std::time::Duration;

use super::Validator;
use crate::config::error::{did_you_mean, list, quote, KeyPath};
use crate::config::file::{FileBool, FileDuration, FileInt, FileScalar, FileSize};
use crate::config::units::{format_duration, parse_duration, parse_size, UnitError};

impl Validator<'_> {
    pub(super) fn choice<T: Copy>(
        &mut self,
        text: &str,
        path: &KeyPath,
        what: &str,
        choices: &[(&str, T)],
        note: &str,
    ) -> Option<T> {
        if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*choice);
        }
        let names = || choices.iter().map(|(name, _)| *name);
        self.push(
            path.clone(),
            quote(text),
            format!("unknown {what} `{text}`"),
            format!(
                "{}use one of {}{note}",
                did_you_mean(text, names()),
                list(names())
            ),
        );
        None
    }

    pub(super) fn address(
        &mut self,
        text: &str,
        path: &KeyPath,
        example: &str,
        backend: bool,
    ) -> Option<SocketAddr> {
        let Ok(address) = text.trim().parse::<SocketAddr>() else {
            let (problem, fix) = address_problem(text.trim(), example);
            self.push(path.clone(), quote(text), problem, fix);
            return None;
        };
        if backend && address.port() == 0 {
            self.push(
                path.clone(),
                quote(text),
                "port 0 cannot be connected to",
                format!("write the port the backend listens on, e.g. \"{example}\""),
            );
            return None;
        }
        Some(address)
    }

    pub(super) fn duration(
        &mut self,
        raw: Option<&FileDuration>,
        path: &KeyPath,
        default: Duration,
        positive: bool,
    ) -> Option<Duration> {
        let Some(FileDuration(scalar)) = raw else {
            return Some(default);
        };
        let text = match scalar {
            FileScalar::Str(text) => text.clone(),
            FileScalar::Int(n) => n.to_string(),
        };
        match parse_duration(&text) {
            Ok(duration) if positive && duration.is_zero() => {
                self.push(
                    path.clone(),
                    scalar.as_written(),
                    "must be greater than zero",
                    format!(
                        "write a positive duration; the default is \"{}\"",
                        format_duration(default)
                    ),
                );
                None
            }
            Ok(duration) => Some(duration),
            Err(error) => {
                self.push(path.clone(), scalar.as_written(), error.problem, error.fix);
                None
            }
        }
    }

    pub(super) fn size(
        &mut self,
        raw: Option<&FileSize>,
        path: &KeyPath,
        default: u64,
    ) -> Option<u64> {
        let Some(FileSize(scalar)) = raw else {
            return Some(default);
        };
        let parsed = match scalar {
            FileScalar::Int(n) => u64::try_from(*n).map_err(|_| UnitError {
                problem: "a size cannot be negative".into(),
                fix: "write a number of bytes or a size such as \"16KiB\"".into(),
            }),
            FileScalar::Str(text) => parse_size(text),
        };
        match parsed {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                self.push(path.clone(), scalar.as_written(), error.problem, error.fix);
                None
            }
        }
    }

    pub(super) fn int(
        &mut self,
        raw: Option<&FileInt>,
        path: &KeyPath,
        default: i64,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let Some(FileInt(scalar)) = raw else {
            return Some(default);
        };
        let value = match scalar {
            FileScalar::Int(n) => *n,
            FileScalar::Str(text) => match text.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    self.push(
                        path.clone(),
                        scalar.as_written(),
                        "not an integer",
                        format!("write a whole number, e.g. {default}"),
                    );
                    return None;
                }
            },
        };
        if (min..=max).contains(&value) {
            return Some(value);
        }
        self.push(
            path.clone(),
            scalar.as_written(),
            format!("must be between {min} and {max}"),
            format!("write a whole number from {min} to {max}; the default is {default}"),
        );
        None
    }

    pub(super) fn boolean(
        &mut self,
        raw: Option<&FileBool>,
        path: &KeyPath,
        default: bool,
    ) -> Option<bool> {
        match raw {
            None => Some(default),
            Some(FileBool::Bool(b)) => Some(*b),
            Some(FileBool::Str(text)) => match text.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => {
                    self.push(
                        path.clone(),
                        quote(text),
                        "not true or false",
                        format!("write true or false; the default is {default}"),
                    );
                    None
                }
            },
        }
    }
    /// A URL path (`path_prefix`, `ready_path`).
    pub(super) fn path(&mut self, text: &str, path: &KeyPath, example: &str) -> Option<String> {
        let problem = if !text.starts_with('/') {
            let fixed = format!("/{}", text.trim_start_matches(['/', ' ']));
            Some((
                "must start with \"/\"".to_string(),
                format!("write {}", quote(&fixed)),
            ))
        } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some((
                "a path cannot contain spaces".into(),
                format!("percent-encode them (%20), e.g. \"{example}\""),
            ))
        } else if text.contains(['?', '#']) {
            Some((
                "a path cannot contain `?` or `#`".into(),
                format!("remove the query or fragment, e.g. \"{example}\""),
            ))
        } else {
            None
        };
        match problem {
            Some((problem, fix)) => {
                self.push(path.clone(), quote(text), problem, fix);
                None
            }
            None => Some(text.to_string()),
        }
    }
}

/// Why `text` is not an `IP:PORT`, and the spelling that would be.
fn address_problem(text: &str, example: &str) -> (String, String) {
    let problem = "not an IP:PORT socket address".to_string();
    let generic = format!("write it as IP:PORT, e.g. \"{example}\"");
    let example_port = example.rsplit_once(':').map_or("8080", |(_, port)| port);
    if text.parse::<std::net::Ipv4Addr>().is_ok() {
        return (problem, format!("add the port: \"{text}:{example_port}\""));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return (problem, generic);
    };
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        // "::1:8005" is both an IPv6 address and, likely, "[::1]:8005" without brackets.
        let fix = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("put an IPv6 address in brackets: \"[{host}]:{port}\"")
        } else {
            format!("put an IPv6 address in brackets and add the port: \"[{text}]:{example_port}\"")
        };
        return (problem, fix);
    }
    if let Ok(port) = port.parse::<u64>() {
        if port > u64::from(u16::MAX) {
            return (
                format!("port {port} is out of range"),
                format!("ports go up to 65535, e.g. \"{example}\""),
            );
        }
        let is_name = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && host.chars().any(|c| c.is_ascii_alphabetic());
        if host == "localhost" {
            return (
                problem,
                format!("host names are not resolved: write \"127.0.0.1:{port}\""),
            );
        }
        if is_name {
            return (
                problem,
                format!(
                    "host names are not resolved: write the IP address of {host}, \
                     e.g. \"{example}\""
                ),
            );
        }
    }
    (problem, generic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_fixes() {
        let fix = |text: &str| address_problem(text, "127.0.0.1:8080").1;
        assert_eq!(fix("127.0.0.1"), "add the port: \"127.0.0.1:8080\"");
        assert_eq!(
            fix("::1:9000"),
            "put an IPv6 address in brackets: \"[::1]:9000\""
        );
        assert_eq!(
            fix("::1"),
            "put an IPv6 address in brackets and add the port: \"[::1]:8080\""
        );
        assert_eq!(
            fix("localhost:9000"),
            "host names are not resolved: write \"127.0.0.1:9000\""
        );
        assert!(fix("api.internal:9000").contains("the IP address of api.internal"));
        assert_eq!(
            fix("nonsense"),
            "write it as IP:PORT, e.g. \"127.0.0.1:8080\""
        );
        assert_eq!(
            address_problem("1.2.3.4:70000", "x").0,
            "port 70000 is out of range"
        );
    }
}
