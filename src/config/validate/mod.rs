//! Validation: [`FileConfig`] → [`Config`], every problem collected.
//!
//! Each section is checked even when an earlier one failed, and each check records its problem
//! and carries on, so one run lists everything that is wrong. Defaults are filled in here (they
//! are documented in `docs/config.md` and on the `Config` types).
//!
//! Flow: the upstream group names are fixed first (sorted, as in `Config::upstreams`), so a
//! route or `[up]` naming a group becomes an index even while that group itself has problems;
//! then `[runtime]`, `[limits]`, `[timeouts]`, the groups (`upstreams`), the listeners and their
//! routes (`listeners`) and `[up]` are checked. Single values (durations, sizes, addresses, …)
//! are parsed by the helpers in `values`.
//!
//! A [`Config`] is returned only when nothing at all was wrong.

mod access;
mod admin;
mod autoscale;
mod cidrs;
mod client_auth;
mod compression;
mod connection_limits;
#[cfg(test)]
pub(crate) use compression::DEFAULT_CONTENT_TYPES;
mod discover;
pub use admin::{is_loopback, DEFAULT_ADMIN_ADDRESS};
mod health;
mod listeners;
mod rate_limits;
mod rates;
mod redirect_https;
mod route_actions;
mod route_extras;
mod route_headers;
mod route_settings;
mod tcp;
mod templates;
mod tls;
mod trust;
mod upstreams;
pub(crate) use upstreams::parse_hash_key;
mod values;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{did_you_mean, is_bare_key, list, quote, Issues, KeyPath};
use super::file::{FileConfig, FileDuration, FileScalar, FileSize, FileUp};
use super::units::format_size;
use super::{
    Config, ConfigSource, DriverChoice, LimitsConfig, RuntimeConfig, SourceText, TimeoutsConfig,
    UpConfig,
};

/// Environment variable that overrides `runtime.driver`.
pub(crate) const DRIVER_VAR: &str = "LBPROXY_DRIVER";

/// What validation needs besides the file.
#[derive(Debug)]
pub(crate) struct Context {
    pub source: ConfigSource,
    pub env: Option<String>,
    /// The text being validated, kept in the [`Config`].
    pub text: SourceText,
    /// The value of [`DRIVER_VAR`], if set.
    pub driver_override: Option<String>,
}

const DRIVERS: [(&str, DriverChoice); 3] = [
    ("auto", DriverChoice::Auto),
    ("io_uring", DriverChoice::IoUring),
    ("legacy", DriverChoice::Legacy),
];
const PLACEHOLDERS: [&str; 3] = ["instance", "port", "address"];

/// Checks everything; `Some` only when `issues` stayed empty.
pub(crate) fn validate(file: FileConfig, ctx: Context, issues: &mut Issues) -> Option<Config> {
    let groups: Vec<String> = file.upstream.keys().cloned().collect();
    let rate_limit_names: Vec<String> = file.rate_limit.keys().cloned().collect();
    // Files the configuration names are relative to its own directory.
    let base = match &ctx.source {
        ConfigSource::File(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ConfigSource::Embedded => PathBuf::new(),
    };
    let mut v = Validator {
        issues,
        groups,
        rate_limit_names,
        base,
        compress_by_default: false,
        route_overrides: route_settings::Overrides::new(),
    };
    let root = KeyPath::root();
    let runtime = v.runtime(&file, &root.key("runtime"), ctx.driver_override.as_deref());
    let limits = v.limits(&file, &root.key("limits"));
    let timeouts = v.timeouts(&file, &root.key("timeouts"));
    let log = v.log(&file, &root.key("log"));
    let admin = v.admin(&file, &root.key("admin"));
    let upstreams = v.upstreams(&file, &root.key("upstream"));
    let compression = v.compression(&file, &root.key("compression"));
    let rate_limits = v.rate_limits(&file, &root.key("rate_limit"));
    v.compress_by_default = compression.as_ref().is_some_and(|c| c.enabled);
    let mut listeners = v.listeners(&file, &root.key("listener"));
    v.listener_groups(&file, &root.key("upstream"));
    let up = v.up(&file.up, &root.key("up"));
    if let (Some(admin), Some(listeners)) = (&admin, &listeners) {
        v.admin_beside_listeners(&file, admin, listeners);
    }
    if let (Some(listeners), Some(upstreams), Some(timeouts), Some(limits)) =
        (&mut listeners, &upstreams, &timeouts, &limits)
    {
        route_settings::resolve(listeners, upstreams, timeouts, limits, &v.route_overrides);
    }
    let config = Config {
        source: ctx.source,
        env: ctx.env,
        runtime: runtime?,
        limits: limits?,
        timeouts: timeouts?,
        log: log?,
        admin: admin?,
        listeners: listeners?,
        upstreams: upstreams?,
        up: up?,
        compression: compression?,
        rate_limits: rate_limits?,
        text: ctx.text,
    };
    v.issues.is_empty().then_some(config)
}

struct Validator<'a> {
    issues: &'a mut Issues,
    /// Upstream group names, sorted: a group's index here is its index in `Config::upstreams`.
    groups: Vec<String>,
    /// `[rate_limit.NAME]` names, sorted: a limit's index here is its index in
    /// `Config::rate_limits`.
    rate_limit_names: Vec<String>,
    /// Directory that relative file paths (certificates, keys) are resolved against.
    base: PathBuf,
    /// `compression.enabled`: what a route without `compress` does.
    compress_by_default: bool,
    /// The routes' own settings, from `route()` until `route_settings::resolve`.
    route_overrides: route_settings::Overrides,
}

/// `Some` of every item only if all are `Some`, after looking at all of them.
fn all<T>(items: Vec<Option<T>>) -> Option<Vec<T>> {
    items.into_iter().collect()
}

impl Validator<'_> {
    fn push(
        &mut self,
        path: KeyPath,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.issues.push(path, value, problem, fix);
    }

    fn runtime(
        &mut self,
        file: &FileConfig,
        path: &KeyPath,
        driver_override: Option<&str>,
    ) -> Option<RuntimeConfig> {
        let raw = &file.runtime;
        let workers = self.workers(raw.workers.as_ref().map(|w| &w.0), &path.key("workers"));
        let mut driver = match &raw.driver {
            None => Some(DriverChoice::Auto),
            Some(text) => self.choice(text, &path.key("driver"), "driver", &DRIVERS, ""),
        };
        if let Some(value) = driver_override
            .map(str::trim)
            .filter(|value| !value.is_empty())
        {
            match DRIVERS.iter().find(|(name, _)| *name == value) {
                Some((_, choice)) => driver = driver.map(|_| *choice),
                None => {
                    self.push(
                        KeyPath::root().key(DRIVER_VAR),
                        quote(value),
                        format!(
                            "the environment variable {DRIVER_VAR} (which overrides \
                             runtime.driver) is not a driver"
                        ),
                        format!(
                            "{}set {DRIVER_VAR} to one of {}, or unset it to use runtime.driver",
                            did_you_mean(value, DRIVERS.iter().map(|(name, _)| *name)),
                            list(DRIVERS.iter().map(|(name, _)| *name))
                        ),
                    );
                    driver = None;
                }
            }
        }
        let pin_workers = self.boolean(raw.pin_workers.as_ref(), &path.key("pin_workers"), true);
        let drain_timeout = self.duration(
            raw.drain_timeout.as_ref(),
            &path.key("drain_timeout"),
            secs(30),
            false,
        );
        Some(RuntimeConfig {
            workers: workers?,
            driver: driver?,
            pin_workers: pin_workers?,
            drain_timeout: drain_timeout?,
        })
    }

    fn workers(&mut self, raw: Option<&FileScalar>, path: &KeyPath) -> Option<NonZeroUsize> {
        let cpus = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        let fix = format!(
            "write a positive number of worker threads, or \"auto\" for one per CPU ({cpus} here)"
        );
        let count = match raw {
            None => return Some(cpus),
            Some(FileScalar::Str(text)) if text.trim() == "auto" => return Some(cpus),
            Some(FileScalar::Int(n)) => *n,
            Some(FileScalar::Str(text)) => match text.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    let hint = did_you_mean(text, ["auto"]);
                    self.push(
                        path.clone(),
                        quote(text),
                        "not \"auto\" or a number",
                        format!("{hint}{fix}"),
                    );
                    return None;
                }
            },
        };
        let written = raw.map(FileScalar::as_written).unwrap_or_default();
        match usize::try_from(count).ok().and_then(NonZeroUsize::new) {
            Some(workers) => Some(workers),
            None => {
                self.push(path.clone(), written, "workers must be at least 1", fix);
                None
            }
        }
    }

    fn limits(&mut self, file: &FileConfig, path: &KeyPath) -> Option<LimitsConfig> {
        let raw = &file.limits;
        let header_path = path.key("max_header_bytes");
        let header = self.size(raw.max_header_bytes.as_ref(), &header_path, 16 << 10);
        let header = header.and_then(|bytes| {
            let (min, max) = (1 << 10, 1 << 20);
            if (min..=max).contains(&bytes) {
                return Some(bytes);
            }
            let written = raw
                .max_header_bytes
                .as_ref()
                .map(|s| s.0.as_written())
                .unwrap_or_default();
            self.push(
                header_path.clone(),
                written,
                format!(
                    "must be between {} and {}",
                    format_size(min),
                    format_size(max)
                ),
                format!(
                    "write a size from \"{}\" to \"{}\"; \"16KiB\" suits most clients",
                    format_size(min),
                    format_size(max)
                ),
            );
            None
        });
        let uri_path = path.key("max_uri_bytes");
        // Unset: 8KiB, or max_header_bytes when that is smaller (the request line is part of it).
        let uri_default = header.map_or(8 << 10, |header| header.min(8 << 10));
        let uri = self.size(raw.max_uri_bytes.as_ref(), &uri_path, uri_default);
        let uri = uri.and_then(|bytes| {
            let written = raw.max_uri_bytes.as_ref().map(|s| s.0.as_written()).unwrap_or_default();
            if bytes == 0 {
                let fix = "write a size such as \"8KiB\"";
                self.push(uri_path.clone(), written, "must be at least 1 byte", fix);
                return None;
            }
            match header {
                Some(header) if bytes > header => {
                    self.push(
                        uri_path.clone(),
                        written,
                        format!("larger than max_header_bytes ({})", format_size(header)),
                        format!(
                            "write at most \"{}\", or raise max_header_bytes: the request line is part of the header section",
                            format_size(header)
                        ),
                    );
                    None
                }
                _ => Some(bytes),
            }
        });
        let max_headers = self.int(
            raw.max_headers.as_ref(),
            &path.key("max_headers"),
            100,
            1,
            256,
        );
        let body_path = path.key("max_body");
        let max_body = match &raw.max_body {
            Some(FileSize(FileScalar::Str(text))) if text.trim() == "unlimited" => Some(None),
            other => self.size(other.as_ref(), &body_path, 100 << 20).map(Some),
        };
        Some(LimitsConfig {
            max_header_bytes: usize::try_from(header?).ok()?,
            max_uri_bytes: usize::try_from(uri?).ok()?,
            max_headers: usize::try_from(max_headers?).ok()?,
            max_body_bytes: max_body?,
        })
    }

    fn timeouts(&mut self, file: &FileConfig, path: &KeyPath) -> Option<TimeoutsConfig> {
        let raw = &file.timeouts;
        let timeout = |v: &mut Self, value: &Option<FileDuration>, key: &str, default: Duration| {
            v.duration(value.as_ref(), &path.key(key), default, true)
        };
        let client_header = timeout(self, &raw.client_header, "client_header", secs(10));
        let client_idle = timeout(self, &raw.client_idle, "client_idle", secs(60));
        let client_body = timeout(self, &raw.client_body, "client_body", secs(60));
        let upstream_connect = timeout(self, &raw.upstream_connect, "upstream_connect", secs(2));
        let upstream_response =
            timeout(self, &raw.upstream_response, "upstream_response", secs(30));
        let tls_handshake = timeout(self, &raw.tls_handshake, "tls_handshake", secs(10));
        let tcp_idle = timeout(self, &raw.tcp_idle, "tcp_idle", secs(3600));
        let tunnel_idle = timeout(self, &raw.tunnel_idle, "tunnel_idle", secs(3600));
        Some(TimeoutsConfig {
            client_header: client_header?,
            client_idle: client_idle?,
            client_body: client_body?,
            upstream_connect: upstream_connect?,
            upstream_response: upstream_response?,
            tls_handshake: tls_handshake?,
            tcp_idle: tcp_idle?,
            tunnel_idle: tunnel_idle?,
        })
    }

    fn up(&mut self, raw: &FileUp, path: &KeyPath) -> Option<UpConfig> {
        let upstream = match &raw.upstream {
            Some(group) => self.group(group, &path.key("upstream")).map(Some),
            None => Some(
                self.groups
                    .iter()
                    .position(|g| g == "api")
                    .or_else(|| (self.groups.len() == 1).then_some(0)),
            ),
        };
        let command = match &raw.command {
            None => Some(None),
            Some(argv) => self.command(argv, &path.key("command")).map(Some),
        };
        let ready_path = match &raw.ready_path {
            None => Some("/health/ready".to_string()),
            Some(text) => self.path(text, &path.key("ready_path"), "/health/ready"),
        };
        let ready_timeout = self.duration(
            raw.ready_timeout.as_ref(),
            &path.key("ready_timeout"),
            secs(30),
            true,
        );
        Some(UpConfig {
            upstream: upstream?,
            command: command?,
            ready_path: ready_path?,
            ready_timeout: ready_timeout?,
        })
    }

    fn command(&mut self, argv: &[String], path: &KeyPath) -> Option<Vec<String>> {
        if argv.first().is_none_or(|program| program.trim().is_empty()) {
            self.push(
                path.clone(),
                if argv.is_empty() { "[]".to_string() } else { quote(&argv[0]) },
                "the command needs a program",
                "write the program and its arguments, e.g. [\"my-api\", \"--port\", \"{port}\"], or remove `command` to run the bundled demo API",
            );
            return None;
        }
        let mut ok = true;
        for (i, arg) in argv.iter().enumerate() {
            for name in placeholders(arg) {
                if !PLACEHOLDERS.contains(&name) {
                    ok = false;
                    self.push(
                        path.index(i),
                        quote(arg),
                        format!("unknown placeholder `{{{name}}}`"),
                        format!(
                            "{}the placeholders are {{instance}}, {{port}} and {{address}}",
                            did_you_mean(name, PLACEHOLDERS)
                        ),
                    );
                }
            }
        }
        ok.then(|| argv.to_vec())
    }

    /// A listener or group name: it appears in logs, metrics and the admin API.
    fn name(&mut self, kind: &str, name: &str, path: &KeyPath) -> Option<()> {
        if is_bare_key(name) {
            return Some(());
        }
        let suggestion: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.push(
            path.clone(),
            "",
            format!(
                "{kind} name {} may only use letters, digits, `-` and `_`",
                quote(name)
            ),
            format!("rename it, e.g. to `{suggestion}` (names appear in logs and metrics)"),
        );
        None
    }

    /// Index of a group named in a route or in `[up]`.
    fn group(&mut self, name: &str, path: &KeyPath) -> Option<usize> {
        if let Some(index) = self.groups.iter().position(|g| g == name) {
            return Some(index);
        }
        let fix = if self.groups.is_empty() {
            format!(
                "no upstream groups are defined: add [upstream.{name}] with \
                 backends = [\"IP:PORT\", …]"
            )
        } else {
            format!(
                "{}use one of the defined groups: {} (or define [upstream.{name}])",
                did_you_mean(name, self.groups.iter().map(String::as_str)),
                self.group_list()
            )
        };
        self.push(
            path.clone(),
            quote(name),
            format!("no upstream group named `{name}`"),
            fix,
        );
        None
    }

    fn group_list(&self) -> String {
        list(self.groups.iter().map(String::as_str))
    }
}

/// `{name}` placeholders in an argument (braces around anything else are left alone).
fn placeholders(arg: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}') {
            let name = &rest[..close];
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                found.push(name);
            }
        }
    }
    found
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{assert_error, one_error, valid, with, LISTENER};

    #[test]
    fn a_bare_number_duration_asks_for_a_unit() {
        let e = one_error(&with("[timeouts]\nclient_header = 10\n"));
        assert_error(
            &e,
            "timeouts.client_header",
            "10",
            "needs a unit",
            "add a unit: \"10s\"",
        );
        let e = one_error(&with("[runtime]\ndrain_timeout = \"1.5s\"\n"));
        assert_error(
            &e,
            "runtime.drain_timeout",
            "\"1.5s\"",
            "whole number",
            "\"1500ms\"",
        );
    }

    #[test]
    fn timeouts_must_be_positive_but_drain_may_be_zero() {
        let e = one_error(&with("[timeouts]\nupstream_connect = \"0s\"\n"));
        assert_error(
            &e,
            "timeouts.upstream_connect",
            "\"0s\"",
            "greater than zero",
            "default is \"2s\"",
        );
        let config = valid(&with("[runtime]\ndrain_timeout = \"0ms\"\n"));
        assert_eq!(config.runtime.drain_timeout, Duration::ZERO);
    }

    #[test]
    fn access_log_is_a_boolean_off_by_default() {
        assert!(!valid(&with("")).log.access);
        assert!(valid(&with("[log]\naccess = true\n")).log.access);
        let e = one_error(&with("[log]\naccess = \"yes\"\n"));
        assert_error(
            &e,
            "log.access",
            "\"yes\"",
            "not true or false",
            "write true or false; the default is false",
        );
    }

    #[test]
    fn sizes_and_their_limits() {
        let e = one_error(&with("[limits]\nmax_header_bytes = \"16KB\"\n"));
        assert_error(
            &e,
            "limits.max_header_bytes",
            "\"16KB\"",
            "unknown size unit",
            "\"16KiB\"",
        );
        let e = one_error(&with("[limits]\nmax_header_bytes = \"2MiB\"\n"));
        assert_error(
            &e,
            "limits.max_header_bytes",
            "\"2MiB\"",
            "between 1KiB and 1MiB",
            "\"1KiB\" to \"1MiB\"",
        );
        let e = one_error(&with("[limits]\nmax_header_bytes = 512\n"));
        assert_error(
            &e,
            "limits.max_header_bytes",
            "512",
            "between 1KiB and 1MiB",
            "\"16KiB\"",
        );
        let e = one_error(&with(
            "[limits]\nmax_header_bytes = \"4KiB\"\nmax_uri_bytes = \"8KiB\"\n",
        ));
        assert_error(
            &e,
            "limits.max_uri_bytes",
            "\"8KiB\"",
            "larger than max_header_bytes (4KiB)",
            "at most \"4KiB\"",
        );
        let e = one_error(&with("[limits]\nmax_body = -1\n"));
        assert_error(&e, "limits.max_body", "-1", "negative", "16KiB");
    }

    #[test]
    fn limits_in_range_are_taken() {
        let config = valid(&with(
            "[limits]\nmax_header_bytes = \"4KiB\"\nmax_headers = \"64\"\nmax_body = \"unlimited\"\n",
        ));
        assert_eq!(config.limits.max_header_bytes, 4096);
        assert_eq!(
            config.limits.max_uri_bytes, 4096,
            "unset: capped at max_header_bytes"
        );
        assert_eq!(
            config.limits.max_headers, 64,
            "digits in a string (from ${{VAR}}) count"
        );
        assert_eq!(config.limits.max_body_bytes, None);
    }

    #[test]
    fn max_headers_range() {
        let e = one_error(&with("[limits]\nmax_headers = 0\n"));
        assert_error(
            &e,
            "limits.max_headers",
            "0",
            "between 1 and 256",
            "default is 100",
        );
        let e = one_error(&with("[limits]\nmax_headers = 300\n"));
        assert_error(
            &e,
            "limits.max_headers",
            "300",
            "between 1 and 256",
            "from 1 to 256",
        );
    }

    #[test]
    fn workers() {
        let e = one_error(&with("[runtime]\nworkers = 0\n"));
        assert_error(
            &e,
            "runtime.workers",
            "0",
            "at least 1",
            "\"auto\" for one per CPU",
        );
        let e = one_error(&with("[runtime]\nworkers = \"atuo\"\n"));
        assert_error(
            &e,
            "runtime.workers",
            "\"atuo\"",
            "not \"auto\" or a number",
            "did you mean `auto`?",
        );
        assert_eq!(
            valid(&with("[runtime]\nworkers = 3\n"))
                .runtime
                .workers
                .get(),
            3
        );
        assert_eq!(
            valid(&with("[runtime]\nworkers = \"2\"\n"))
                .runtime
                .workers
                .get(),
            2
        );
    }

    #[test]
    fn unknown_driver() {
        let e = one_error(&with("[runtime]\ndriver = \"iouring\"\n"));
        assert_error(
            &e,
            "runtime.driver",
            "\"iouring\"",
            "unknown driver",
            "did you mean `io_uring`? use one of `auto`, `io_uring`, `legacy`",
        );
    }

    #[test]
    fn up_settings() {
        let e = one_error(&with(
            "[up]\ncommand = [\"my-api\", \"--port\", \"{prot}\"]\n",
        ));
        assert_error(
            &e,
            "up.command[2]",
            "\"{prot}\"",
            "unknown placeholder `{prot}`",
            "did you mean `port`?",
        );
        let e = one_error(&with("[up]\ncommand = []\n"));
        assert_error(
            &e,
            "up.command",
            "[]",
            "needs a program",
            "bundled demo API",
        );
        let e = one_error(&with("[up]\nready_path = \"health\"\n"));
        assert_error(
            &e,
            "up.ready_path",
            "\"health\"",
            "must start with \"/\"",
            "\"/health\"",
        );
        let config = valid(&with(
            "[up]\ncommand = [\"api\", \"--listen\", \"{address}\", \"--json={\\\"a\\\":1}\"]\n",
        ));
        assert_eq!(config.up.command.as_ref().map(Vec::len), Some(4));
        assert_eq!(config.up.upstream, Some(0));
        let only = valid(&format!(
            "{}[upstream.web]\nbackends = [\"127.0.0.1:8001\"]\n",
            LISTENER.replace("\"api\"", "\"web\"")
        ));
        assert_eq!(only.up.upstream, Some(0), "the only group");
    }
}
