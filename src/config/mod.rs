//! Configuration: TOML file → raw serde types (`file`) → overlays and `${VAR}` interpolation
//! (`overlay`) → validated typed [`Config`] (`validate`).
//!
//! Every problem found is reported at once, each naming the file, the key, the bad value and the
//! fix. `lbproxy check` and `lbproxy serve` both go through [`load`].
//!
//! The stages, in order (each in its own module):
//!
//! 1. `source`: the text is parsed as TOML; a syntax error stops here (line and column given).
//! 2. `overlay`: `[env]` is removed and `[env.NAME]` merged over the base for `--env NAME`; then
//!    `${VAR}` references in string values are expanded.
//! 3. `read`: the merged document is typed into the `file` structs, section by section, unknown
//!    keys and wrongly typed values collected rather than fatal.
//! 4. `validate`: values are parsed (`units` for durations and sizes), checked, defaulted and
//!    cross-referenced into [`Config`].
//!
//! Problems from stages 2–4 accumulate in one collector (`error`), which finally sorts them into
//! file order.

mod args;
mod compression;
mod error;
mod file;
mod key_path;
mod overlay;
mod policy;
mod read;
mod routing;
mod source;
mod template;
mod types;
mod units;
mod validate;

pub use args::{load_from_args, ConfigArgs};
/// For other files read the configuration's way (the deployment spec): the same suggestions,
/// lists and duration spelling.
pub(crate) use error::{did_you_mean, list};
pub use types::*;
pub(crate) use units::format_duration;
pub(crate) use validate::parse_hash_key;
pub use validate::{is_loopback, DEFAULT_ADMIN_ADDRESS};

use std::path::Path;

/// The configuration used when `-c` is not given: proxy on 127.0.0.1:8080 → 127.0.0.1:8001..8003.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../packaging/lbproxy.toml");

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the problem is in (or `<embedded default config>`).
    pub file: String,
    /// Dotted key path, e.g. `upstream.api.backends[1].address`.
    pub key: String,
    /// The offending value as written (empty when the problem is a missing key).
    pub value: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Loads, overlays, interpolates and validates. `path = None` uses [`EMBEDDED_DEFAULT`];
/// `env = Some(name)` merges the `[env.NAME]` overlay over the base.
///
/// Environment variables (for `${VAR}` and `LBPROXY_DRIVER`) are read from the process
/// environment.
pub fn load(path: Option<&Path>, env: Option<&str>) -> Result<Config, ConfigErrors> {
    load_with_env(path, env, &|name| std::env::var(name).ok())
}

/// [`load`] of a text not read from `path` (yet): validated exactly as if `path` held it
/// (`None`: as the embedded default), so that errors name the file and the paths it names
/// resolve from its directory. `lbproxy config rollback` and `lbproxy restore` check a stored
/// text with it before they write it there.
pub fn load_text_as(
    text: &str,
    path: Option<&Path>,
    env: Option<&str>,
) -> Result<Config, ConfigErrors> {
    let source = match path {
        Some(path) => ConfigSource::File(path.to_path_buf()),
        None => ConfigSource::Embedded,
    };
    load_text(text, source, env, &|name| std::env::var(name).ok())
}

/// A duration written as in the configuration (`"500ms"`, `"2s"`, `"1m"`), for command-line
/// options (clap's `value_parser`); the error says what to write instead.
pub fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    units::parse_duration(text).map_err(|e| format!("{}; {}", e.problem, e.fix))
}

/// [`load`] with environment variables read through `lookup` (tests must not share the process
/// environment).
pub(crate) fn load_with_env(
    path: Option<&Path>,
    env: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let Some(path) = path else {
        return load_text(EMBEDDED_DEFAULT, ConfigSource::Embedded, env, lookup);
    };
    let source = ConfigSource::File(path.to_path_buf());
    match std::fs::read_to_string(path) {
        Ok(text) => load_text(&text, source, env, lookup),
        Err(io) => Err(ConfigErrors(vec![ConfigError {
            file: source.to_string(),
            key: String::new(),
            value: String::new(),
            problem: format!("cannot read the configuration file: {io}"),
            fix: "check the path and its permissions, or leave out -c to use the built-in \
                  default configuration"
                .to_string(),
        }])),
    }
}

/// Everything after reading the file; `source` is only used to name it.
pub(crate) fn load_text(
    text: &str,
    source: ConfigSource,
    env: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = source.to_string();
    let mut root = source::parse(text, &file).map_err(|error| ConfigErrors(vec![error]))?;
    let mut issues = error::Issues::default();
    overlay::apply_env(&mut root, env, &mut issues);
    let interpolated = overlay::interpolate(&mut root, lookup, &mut issues);
    let raw = read::read(root, &mut issues);
    let context = validate::Context {
        source,
        env: env.map(str::to_string),
        text: SourceText::from(text),
        driver_override: lookup(validate::DRIVER_VAR),
    };
    match validate::validate(raw, context, &mut issues) {
        Some(config) if issues.is_empty() => Ok(config),
        _ => {
            let positions = source::Positions::index(text);
            Err(issues.finish(&file, positions.as_ref(), env, &interpolated))
        }
    }
}

/// Loading a TOML text from a real temporary file, with a fixed environment.
#[cfg(test)]
pub(crate) mod testing {
    use super::{load_with_env, Config, ConfigError, ConfigErrors, RouteConfig};
    use std::io::Write as _;

    /// Loads `text` from a temporary file; returns the file's name and the result.
    pub(crate) fn load_toml(
        text: &str,
        env: Option<&str>,
        vars: &[(&str, &str)],
    ) -> (String, Result<Config, ConfigErrors>) {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temporary file");
        file.write_all(text.as_bytes()).expect("write config");
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let result = load_with_env(Some(file.path()), env, &lookup);
        (file.path().display().to_string(), result)
    }

    /// A text that must load.
    pub(crate) fn valid(text: &str) -> Config {
        match load_toml(text, None, &[]).1 {
            Ok(config) => config,
            Err(errors) => panic!("expected a valid config, got:\n{errors}"),
        }
    }

    /// A text that must not load: its errors, each checked to name the file.
    pub(crate) fn invalid(text: &str) -> Vec<ConfigError> {
        let (file, result) = load_toml(text, None, &[]);
        let errors = result.expect_err("expected errors").0;
        assert!(errors.iter().all(|e| e.file == file), "{errors:?}");
        errors
    }

    /// A minimal valid file's listener and upstream group; tests add to them.
    pub(crate) const LISTENER: &str =
        "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n";
    pub(crate) const API: &str = "[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n";

    /// A listener with one route of `body` (the catch-all `api` after it).
    pub(crate) fn one_route(body: &str) -> String {
        format!("{LISTENER}{API}[[listener.http.route]]\n{body}\n")
    }

    /// The route `body` of [`one_route`], validated.
    pub(crate) fn first_route(body: &str) -> RouteConfig {
        valid(&one_route(body)).listeners[0].routes[0].clone()
    }

    /// The minimal valid file followed by `extra`.
    pub(crate) fn with(extra: &str) -> String {
        format!("{LISTENER}{API}{extra}")
    }

    /// `error` is at `key` with `value` as written, and its problem and fix say these things.
    pub(crate) fn assert_error(
        error: &ConfigError,
        key: &str,
        value: &str,
        problem: &str,
        fix: &str,
    ) {
        assert_eq!(error.key, key, "{error}");
        assert_eq!(error.value, value, "{error}");
        assert!(error.problem.contains(problem), "problem: {error}");
        assert!(error.fix.contains(fix), "fix: {error}");
    }

    /// The only error of a text that must have exactly one.
    pub(crate) fn one_error(text: &str) -> ConfigError {
        let mut errors = invalid(text);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        errors.remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{invalid, load_toml, valid};
    use super::*;
    use std::num::{NonZeroU32, NonZeroUsize};
    use std::time::Duration;

    fn no_vars(_: &str) -> Option<String> {
        None
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn backend(address: &str, weight: u32) -> BackendConfig {
        BackendConfig {
            address: address.parse().expect("address"),
            weight: NonZeroU32::new(weight).expect("weight"),
            backup: false,
            drain: false,
            canary: false,
        }
    }

    const MINIMAL: &str = "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                           [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n";

    #[test]
    fn the_embedded_default_is_exactly_this() {
        let config = load_with_env(None, None, &no_vars).expect("the embedded default is valid");
        let cpus = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        let expected = Config {
            source: ConfigSource::Embedded,
            env: None,
            runtime: RuntimeConfig {
                workers: cpus,
                driver: DriverChoice::Auto,
                pin_workers: true,
                drain_timeout: secs(30),
            },
            limits: LimitsConfig {
                max_header_bytes: 16 * 1024,
                max_uri_bytes: 8 * 1024,
                max_headers: 100,
                max_body_bytes: Some(100 * 1024 * 1024),
            },
            timeouts: TimeoutsConfig {
                client_header: secs(10),
                client_idle: secs(60),
                client_body: secs(60),
                upstream_connect: secs(2),
                upstream_response: secs(30),
                tls_handshake: secs(10),
                tcp_idle: secs(3600),
                tunnel_idle: secs(3600),
            },
            log: LogConfig {
                access: false,
                format: LogFormat::Text,
            },
            admin: AdminConfig {
                enabled: true,
                address: "127.0.0.1:9901".parse().expect("address"),
                token: None,
            },
            listeners: vec![ListenerConfig {
                name: "http".into(),
                address: "127.0.0.1:8080".parse().expect("address"),
                protocol: ListenerProtocol::Http,
                tls: None,
                routes: vec![RouteConfig::forward(
                    None,
                    "/",
                    0,
                    RouteSettings {
                        upstream_response: secs(30),
                        client_body: secs(60),
                        max_retries: 2,
                        max_body_bytes: Some(100 * 1024 * 1024),
                    },
                )],
                relay: RelayMode::DEFAULT,
                policy: ListenerPolicy::default(),
            }],
            upstreams: vec![UpstreamConfig {
                name: "api".into(),
                settings: GroupSettings::default(),
                balance: BalanceAlgorithm::RoundRobin,
                backends: vec![
                    backend("127.0.0.1:8001", 1),
                    backend("127.0.0.1:8002", 1),
                    backend("127.0.0.1:8003", 1),
                ],
                discover: None,
                autoscale: None,
                pool: PoolConfig {
                    max_idle_per_backend: 64,
                    idle_timeout: secs(60),
                },
                tls: None,
                proxy_protocol: None,
                hash_key: None,
                split: TrafficSplit::default(),
                slow_start: Duration::ZERO,
                max_connections: NonZeroU32::new(1024),
                queue_timeout: secs(5),
                health: Some(HealthConfig {
                    check: HealthCheck::Http {
                        path: "/health/ready".into(),
                        expect: StatusSet::range(200, 399),
                        host: None,
                    },
                    interval: secs(2),
                    timeout: secs(1),
                    rise: 2,
                    fall: 3,
                }),
                outlier: OutlierConfig {
                    consecutive_failures: 5,
                    statuses: StatusSet::range(500, 599),
                    base_ejection_time: secs(30),
                    max_ejection_time: secs(300),
                    max_ejection_percent: 10,
                },
                retry: RetryConfig {
                    max_retries: 2,
                    budget_percent: 20,
                    budget_min_per_second: 10,
                },
            }],
            up: UpConfig {
                upstream: Some(0),
                command: None,
                ready_path: "/health/ready".into(),
                ready_timeout: secs(30),
            },
            compression: CompressionConfig {
                enabled: false,
                algorithms: vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip],
                min_size: 1024,
                content_types: validate::DEFAULT_CONTENT_TYPES
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect(),
                gzip_level: 2,
                brotli_level: 4,
                zstd_level: 3,
            },
            rate_limits: Vec::new(),
            text: SourceText::from(EMBEDDED_DEFAULT),
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn the_embedded_default_writes_out_the_built_in_defaults() {
        let embedded = load_with_env(None, None, &no_vars).expect("valid");
        let minimal = valid(MINIMAL);
        assert_eq!(embedded.runtime, minimal.runtime);
        assert_eq!(embedded.limits, minimal.limits);
        assert_eq!(embedded.timeouts, minimal.timeouts);
        assert_eq!(embedded.upstreams[0].pool, minimal.upstreams[0].pool);
        assert_eq!(embedded.upstreams[0].outlier, minimal.upstreams[0].outlier);
        assert_eq!(embedded.upstreams[0].retry, minimal.upstreams[0].retry);
        let with_health = valid(&format!("{MINIMAL}[upstream.api.health]\n"));
        assert_eq!(
            embedded.upstreams[0].health,
            with_health.upstreams[0].health
        );
        assert_eq!(embedded.up, minimal.up);
        assert_eq!(embedded.log, minimal.log);
        assert_eq!(embedded.admin, minimal.admin);
        assert!(matches!(minimal.source, ConfigSource::File(_)));
    }

    fn example(env: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/routes.toml");
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        load_with_env(Some(&path), env, &lookup)
    }

    #[test]
    fn the_routing_example_validates() {
        let config = example(None, &[]).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        let public = &config.listeners[0];
        assert_eq!(public.address, "127.0.0.1:8080".parse().unwrap());
        let routes: Vec<(Option<&str>, &str, Option<usize>)> = public
            .routes
            .iter()
            .map(|r| (r.host.as_deref(), r.path_prefix.as_str(), r.upstream()))
            .collect();
        assert_eq!(
            routes,
            [
                (Some("api.example.com"), "/v1/", Some(0)),
                (Some("api.example.com"), "/", Some(0)),
                (Some("*.example.com"), "/static/", Some(1)),
                (None, "/", None),
                (None, "/", Some(1))
            ]
        );
        assert_eq!(public.routes[0].matches.methods, ["POST", "PUT", "DELETE"]);
        assert!(public.routes[0].rewrite.is_some());
        assert!(matches!(&public.routes[3].action, RouteAction::Redirect(r) if r.status == 301));
        assert_eq!(config.upstreams[0].balance, BalanceAlgorithm::Weighted);
        assert_eq!(
            config.upstreams[0].backends[1],
            backend("127.0.0.1:8002", 3)
        );
        assert_eq!(config.timeouts.upstream_response, secs(45));
    }

    #[test]
    fn the_routing_example_in_prod() {
        let config = example(Some("prod"), &[("API_BACKEND_3", "10.0.0.13:8001")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.env.as_deref(), Some("prod"));
        assert_eq!(config.listeners[0].address, "0.0.0.0:80".parse().unwrap());
        assert_eq!(
            config.upstreams[0].backends,
            [
                backend("10.0.0.11:8001", 2),
                backend("10.0.0.12:8001", 2),
                backend("10.0.0.13:8001", 1)
            ]
        );
        assert_eq!(
            config.upstreams[0].pool.max_idle_per_backend, 32,
            "base kept"
        );

        let errors = example(Some("prod"), &[])
            .expect_err("API_BACKEND_3 unset")
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "env.prod.upstream.api.backends[2]");
        assert_eq!(errors[0].value, "\"${API_BACKEND_3}\"");
        assert!(errors[0].problem.contains("API_BACKEND_3 is not set"));
        assert!(errors[0].fix.contains("export API_BACKEND_3"));
    }

    /// Three mistakes of three kinds (unknown key, wrong type, bad value), found by three
    /// different stages, reported together in file order.
    const THREE_MISTAKES: &str = r#"[runtime]
wokers = 4

[listener.http]
address = "127.0.0.1:8080"
upstream = "api"

[upstream.api]
backends = ["127.0.0.1:8001", { address = "127.0.0.1:80x2" }]

[upstream.api.pool]
max_idle_per_backend = true
"#;

    #[test]
    fn all_errors_at_once_in_file_order() {
        let errors = invalid(THREE_MISTAKES);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "runtime.wokers",
                "upstream.api.backends[1].address",
                "upstream.api.pool.max_idle_per_backend"
            ]
        );
    }

    #[test]
    fn the_display_of_several_errors() {
        let (file, result) = load_toml(THREE_MISTAKES, None, &[]);
        let shown = result.expect_err("invalid").to_string();
        let expected = format!(
            "error: {file}: runtime.wokers = 4: unknown key `wokers`\n  \
             fix: did you mean `workers`? (valid keys here: `workers`, `driver`, `pin_workers`, `drain_timeout`)\n\n\
             error: {file}: upstream.api.backends[1].address = \"127.0.0.1:80x2\": not an IP:PORT socket address\n  \
             fix: write it as IP:PORT, e.g. \"127.0.0.1:8001\"\n\n\
             error: {file}: upstream.api.pool.max_idle_per_backend = true: expected an integer, found a boolean\n  \
             fix: write an integer here\n\n\
             3 errors in {file}"
        );
        assert_eq!(shown, expected);
    }

    #[test]
    fn overlays_merge_and_their_errors_point_into_env() {
        let text = format!(
            "{MINIMAL}[env.staging.listener.http]\naddress = \"0.0.0.0:8080\"\n\
             [env.staging.runtime]\nworkers = 2\n\
             [env.broken.upstream.api]\nbackends = [\"127.0.0.1:99999\"]\n"
        );
        let (_, result) = load_toml(&text, Some("staging"), &[]);
        let config = result.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.env.as_deref(), Some("staging"));
        assert_eq!(config.listeners[0].address, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.runtime.workers.get(), 2);
        assert_eq!(config.upstreams[0].backends, [backend("127.0.0.1:8001", 1)]);

        let base = valid(&text);
        assert_eq!(base.env, None);
        assert_eq!(base.listeners[0].address, "127.0.0.1:8080".parse().unwrap());

        let (_, result) = load_toml(&text, Some("broken"), &[]);
        let errors = result.expect_err("bad port").0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "env.broken.upstream.api.backends[0]");
        assert!(errors[0].problem.contains("port 99999 is out of range"));
    }

    #[test]
    fn unknown_env_is_an_error_listing_the_defined_ones() {
        let text = format!("{MINIMAL}[env.staging]\n[env.prod.runtime]\nworkers = 1\n");
        let (file, result) = load_toml(&text, Some("production"), &[]);
        let errors = result.expect_err("no such env").0;
        assert_eq!(errors.len(), 1);
        let error = &errors[0];
        assert_eq!(
            (error.file.as_str(), error.key.as_str()),
            (file.as_str(), "env")
        );
        assert_eq!(error.value, "\"production\"");
        assert!(
            error.problem.contains("--env production"),
            "{}",
            error.problem
        );
        assert!(error.fix.contains("`prod`, `staging`"), "{}", error.fix);
    }

    #[test]
    fn interpolation_through_load() {
        let text = "[listener.http]\naddress = \"${LISTEN:-127.0.0.1:8080}\"\nupstream = \"api\"\n\
                    [upstream.api]\nbackends = [\"${BACKEND}\", { address = \"127.0.0.1:8002\", weight = \"${W:-4}\" }]\n\
                    [up]\ncommand = [\"api\", \"--price=$$5\", \"--port\", \"{port}\"]\n";
        let vars = [("BACKEND", "10.1.1.1:8001")];
        let config = load_toml(text, None, &vars)
            .1
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            config.upstreams[0].backends,
            [backend("10.1.1.1:8001", 1), backend("127.0.0.1:8002", 4)]
        );
        let command = config.up.command.expect("command");
        assert_eq!(command, ["api", "--price=$5", "--port", "{port}"]);

        let errors = load_toml(text, None, &[]).1.expect_err("BACKEND unset").0;
        assert_eq!(
            errors.len(),
            1,
            "no follow-up error for the same value: {errors:?}"
        );
        assert_eq!(errors[0].key, "upstream.api.backends[0]");
        assert_eq!(errors[0].value, "\"${BACKEND}\"");
        assert_eq!(errors[0].problem, "environment variable BACKEND is not set");
        assert!(
            errors[0].fix.contains("${BACKEND:-value}"),
            "{}",
            errors[0].fix
        );

        let bad = [("BACKEND", "10.1.1.1:80x1")];
        let errors = load_toml(text, None, &bad).1.expect_err("bad address").0;
        assert_eq!(errors[0].value, "\"10.1.1.1:80x1\" (from \"${BACKEND}\")");
    }

    #[test]
    fn lbproxy_driver_overrides_the_file() {
        let text = format!("{MINIMAL}[runtime]\ndriver = \"io_uring\"\n");
        let config = load_toml(&text, None, &[]).1.expect("valid");
        assert_eq!(config.runtime.driver, DriverChoice::IoUring);
        let config = load_toml(&text, None, &[("LBPROXY_DRIVER", "legacy")])
            .1
            .expect("valid");
        assert_eq!(config.runtime.driver, DriverChoice::Legacy);
        let config = load_toml(&text, None, &[("LBPROXY_DRIVER", "")])
            .1
            .expect("valid");
        assert_eq!(
            config.runtime.driver,
            DriverChoice::IoUring,
            "empty = unset"
        );

        let errors = load_toml(&text, None, &[("LBPROXY_DRIVER", "epoll")])
            .1
            .expect_err("bad")
            .0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "LBPROXY_DRIVER");
        assert_eq!(errors[0].value, "\"epoll\"");
        assert!(errors[0]
            .problem
            .contains("environment variable LBPROXY_DRIVER"));
        assert!(
            errors[0].fix.contains("`auto`, `io_uring`, `legacy`"),
            "{}",
            errors[0].fix
        );
    }

    #[test]
    fn a_syntax_error_stops_everything_else() {
        let text = "[runtime]\nworkers = 0\naddress = \"127.0.0.1:8080\nupstream = 1\n";
        let errors = invalid(text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].key.is_empty());
        assert!(
            errors[0].problem.starts_with("invalid TOML at line 3"),
            "{}",
            errors[0].problem
        );
    }

    #[test]
    fn an_unreadable_file_is_one_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = dir.path().join("nope.toml");
        let errors = load(Some(&missing), None).expect_err("missing file").0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, missing.display().to_string());
        assert!(errors[0]
            .problem
            .starts_with("cannot read the configuration file"));
        assert!(errors[0].fix.contains("leave out -c"));
    }
}
