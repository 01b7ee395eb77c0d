//! Raw configuration types: the TOML file as written, before any checking.
//!
//! Every struct denies unknown fields and every field is optional, so serde only ever rejects a
//! value of the wrong TOML type; whether a key is required, in range or refers to something that
//! exists is decided in `validate`, where each problem gets its own message and fix.
//!
//! Durations, sizes and the like are kept as written ([`FileScalar`]) and parsed in validation.
//! Numbers and booleans are also accepted as strings, so `${VAR}` interpolation (which always
//! yields a string) works for every key: `weight = "${CANARY_WEIGHT:-1}"`.
//!
//! `read` deserializes these section by section; [`FileConfig`] as a whole documents the schema.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub runtime: FileRuntime,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub admin: FileAdmin,
    /// `[listener.NAME]`
    #[serde(default)]
    pub listener: BTreeMap<String, FileListener>,
    /// `[upstream.NAME]`
    #[serde(default)]
    pub upstream: BTreeMap<String, FileUpstream>,
    #[serde(default)]
    pub up: FileUp,
    #[serde(default)]
    pub compression: FileCompression,
    /// `[rate_limit.NAME]`: request rate limits that listeners and routes name.
    #[serde(default)]
    pub rate_limit: BTreeMap<String, FileRateLimit>,
    /// `[env.NAME]` overlays: merged by `overlay`, removed before the rest is typed. Never read
    /// from here; declared so the schema (and the unknown-key check) is complete.
    #[serde(default)]
    #[allow(dead_code)]
    pub env: BTreeMap<String, toml::Table>,
}

/// `[runtime]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRuntime {
    pub workers: Option<FileWorkers>,
    pub driver: Option<String>,
    pub pin_workers: Option<FileBool>,
    pub drain_timeout: Option<FileDuration>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub max_header_bytes: Option<FileSize>,
    pub max_uri_bytes: Option<FileSize>,
    pub max_headers: Option<FileInt>,
    pub max_body: Option<FileSize>,
}

/// `[timeouts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTimeouts {
    pub client_header: Option<FileDuration>,
    pub client_idle: Option<FileDuration>,
    pub client_body: Option<FileDuration>,
    pub upstream_connect: Option<FileDuration>,
    pub upstream_response: Option<FileDuration>,
    pub tls_handshake: Option<FileDuration>,
    pub tcp_idle: Option<FileDuration>,
    pub tunnel_idle: Option<FileDuration>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLog {
    pub access: Option<FileBool>,
    /// `"text"` or `"json"` (stderr only; the journal always gets fields).
    pub format: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAdmin {
    pub enabled: Option<FileBool>,
    pub address: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
}

/// `[listener.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileListener {
    pub address: Option<String>,
    pub protocol: Option<String>,
    /// Catch-all upstream group, tried after every route.
    pub upstream: Option<String>,
    /// `[[listener.NAME.route]]`, in file order.
    #[serde(default)]
    pub route: Vec<FileRoute>,
    /// `[listener.NAME.tls]`, for https listeners.
    pub tls: Option<FileListenerTls>,
    /// `"copy"` or `"splice"`, for tcp listeners.
    pub relay: Option<String>,
    /// `true` or the https port: every request is redirected to https (http listeners).
    pub redirect_https: Option<toml::Value>,
    /// CIDRs whose `X-Forwarded-For` / `Forwarded` fields and PROXY headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Every connection starts with a PROXY protocol header (v1 or v2), as HAProxy's
    /// `accept-proxy` (a group's `proxy_protocol` is the header lbproxy sends to backends).
    pub accept_proxy_protocol: Option<FileBool>,
    /// `access = { allow = [...], deny = [...] }`: who may connect.
    pub access: Option<FileAccess>,
    /// `[listener.NAME.connection_limits]`
    pub connection_limits: Option<FileConnectionLimits>,
    /// `"kernel"` or `"client_address"`: how new connections are spread over the workers.
    pub worker_steering: Option<String>,
    /// `[rate_limit.NAME]`s every route of the listener counts against (a route's own list
    /// replaces it).
    pub rate_limits: Option<Vec<String>>,
}

/// `access = { allow = [...], deny = [...], action = "403" | "reset" }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAccess {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    /// `403` or `"reset"` (routes; a listener resets refused connections).
    pub action: Option<toml::Value>,
}

/// `[listener.NAME.connection_limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConnectionLimits {
    /// Open connections on the listener.
    pub max: Option<FileInt>,
    /// Open connections per client address.
    pub per_client: Option<FileInt>,
    /// New connections per client address: `"20/s"`.
    pub per_client_rate: Option<String>,
    pub per_client_burst: Option<FileInt>,
}

/// `[rate_limit.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRateLimit {
    /// `"client"`, `"header:NAME"` or `"route"`.
    pub key: Option<String>,
    /// `"100/s"`, `"6000/min"`, `"10/h"`.
    pub rate: Option<String>,
    pub burst: Option<FileInt>,
    pub dry_run: Option<FileBool>,
    pub max_keys: Option<FileInt>,
}

/// `[listener.NAME.tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileListenerTls {
    /// `[[listener.NAME.tls.certificate]]`, in file order: the first is the default.
    #[serde(default)]
    pub certificate: Vec<FileCertificate>,
    /// PEM bundle of the CAs client certificates must chain to.
    pub client_ca: Option<String>,
    /// `"required"` or `"optional"` (with `client_ca`).
    pub client_auth: Option<String>,
}

/// `[[listener.NAME.tls.certificate]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCertificate {
    /// PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM private key.
    pub key: Option<String>,
    /// SNI names served with it; default: the certificate's own DNS names.
    pub server_names: Option<Vec<String>>,
}

/// `[[listener.NAME.route]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoute {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    /// The TLS server name a tcp listener's route matches.
    pub sni: Option<String>,
    pub upstream: Option<String>,
    /// `CONNECT host:port` requests may open a tunnel through this route (http/https only).
    pub allow_connect: Option<bool>,
    /// The path must be exactly this.
    pub path: Option<String>,
    /// The path must match this regular expression.
    pub path_regex: Option<String>,
    /// The method must be one of these.
    pub methods: Option<Vec<String>>,
    /// `{ "X-Name" = "value" | true | false }`
    pub headers: Option<toml::Table>,
    /// `{ name = "value" | true | false }`
    pub query: Option<toml::Table>,
    /// Answer with a redirect to this (a template) instead of forwarding.
    pub redirect: Option<String>,
    /// 301, 302, 307 or 308.
    pub redirect_status: Option<FileInt>,
    /// Replace the matched `path_prefix` with this before forwarding.
    pub rewrite_prefix: Option<String>,
    /// `[pattern, replacement]`
    pub rewrite_regex: Option<Vec<String>>,
    /// `[listener.NAME.route.request_headers]`
    pub request_headers: Option<FileHeaderEdits>,
    /// `[listener.NAME.route.response_headers]`
    pub response_headers: Option<FileHeaderEdits>,
    /// `timeouts = { upstream_response = "…", client_body = "…" }`
    pub timeouts: Option<FileSettingsTimeouts>,
    /// `[listener.NAME.route.retry]`: only `max_retries`.
    pub retry: Option<FileRouteRetry>,
    /// The request body limit for this route (`"10MiB"`, `"unlimited"`).
    pub max_body: Option<FileSize>,
    /// Compress this route's responses (`[compression]`); default `compression.enabled`.
    pub compress: Option<bool>,
    /// `access = { allow = [...], deny = [...], action = "403" | "reset" }`
    pub access: Option<FileAccess>,
    /// `[rate_limit.NAME]`s this route's requests count against (`[]`: none), instead of the
    /// listener's.
    pub rate_limits: Option<Vec<String>>,
}

/// `[listener.NAME.route.request_headers]` / `response_headers`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileHeaderEdits {
    pub remove: Option<Vec<String>>,
    pub set: Option<toml::Table>,
    pub add: Option<toml::Table>,
}

/// The timeouts a route or a group overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSettingsTimeouts {
    pub upstream_response: Option<FileDuration>,
    pub client_body: Option<FileDuration>,
}

/// A route's `retry` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRouteRetry {
    pub max_retries: Option<FileInt>,
}

/// `[compression]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCompression {
    pub enabled: Option<FileBool>,
    pub algorithms: Option<Vec<String>>,
    pub min_size: Option<FileSize>,
    pub content_types: Option<Vec<String>>,
    pub gzip_level: Option<FileInt>,
    pub brotli_level: Option<FileInt>,
    pub zstd_level: Option<FileInt>,
}

/// `[upstream.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUpstream {
    pub balance: Option<String>,
    /// `"client_ip"`, `"header:NAME"` or `"cookie:NAME"` (maglev only).
    pub hash_key: Option<String>,
    pub slow_start: Option<FileDuration>,
    pub max_connections: Option<FileInt>,
    pub queue_timeout: Option<FileDuration>,
    pub backends: Option<Vec<FileBackend>>,
    /// `[upstream.NAME.discover]`: the backends are systemd units.
    pub discover: Option<FileDiscover>,
    /// `[upstream.NAME.autoscale]`: the number of instances follows the load.
    pub autoscale: Option<FileAutoscale>,
    #[serde(default)]
    pub pool: FilePool,
    /// Present: active health checks on. Read by `read` (absent stays `None`).
    pub health: Option<FileHealth>,
    #[serde(default)]
    pub outlier: FileOutlier,
    #[serde(default)]
    pub retry: FileRetry,
    /// `timeouts = { upstream_response = "…", client_body = "…" }` for the group's requests.
    pub timeouts: Option<FileSettingsTimeouts>,
    /// The request body limit for the group's requests.
    pub max_body: Option<FileSize>,
    /// `[upstream.NAME.tls]`: TLS to the backends.
    pub tls: Option<FileUpstreamTls>,
    /// `"v1"` or `"v2"`: a PROXY protocol header toward the backends.
    pub proxy_protocol: Option<String>,
}

/// `[upstream.NAME.tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUpstreamTls {
    /// PEM CA certificate(s) the backends' certificates must chain to.
    pub ca: Option<String>,
    /// Name sent as SNI and verified in the backends' certificates; default: the backend's IP.
    pub server_name: Option<String>,
}

/// One entry of `backends`: `"IP:PORT"` or `{ address = "IP:PORT", weight = N }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum FileBackend {
    Address(String),
    Table(FileBackendTable),
}

/// The table form of a backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileBackendTable {
    pub address: Option<String>,
    pub weight: Option<FileInt>,
    pub backup: Option<FileBool>,
    pub drain: Option<FileBool>,
}

/// `[upstream.NAME.discover]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDiscover {
    /// A unit pattern: `"api@*.service"`.
    pub systemd: Option<String>,
    /// `"user"` or `"system"`.
    pub bus: Option<String>,
    /// `"127.0.0.1:{8000+N}"` or `"socket"`.
    pub address: Option<String>,
    pub resync: Option<FileDuration>,
    /// `"50%"`: percent of one CPU.
    pub cpu_quota: Option<String>,
    pub memory_max: Option<FileSize>,
    pub tasks_max: Option<FileInt>,
}

/// `[upstream.NAME.autoscale]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAutoscale {
    pub min: Option<FileInt>,
    pub max: Option<FileInt>,
    /// `"in_flight"`, `"rps"`, `"p99"` or `"cpu"`.
    pub metric: Option<String>,
    /// A number (`10`, `2.5`) or a string of one.
    pub target: Option<FileNumber>,
    /// `"10%"`.
    pub tolerance: Option<String>,
    pub scale_up_window: Option<FileDuration>,
    pub scale_down_window: Option<FileDuration>,
    pub max_step: Option<FileInt>,
    /// `"200%"`.
    pub panic_threshold: Option<String>,
    pub panic_window: Option<FileDuration>,
    pub drain_timeout: Option<FileDuration>,
}

/// A number written as an integer, a float or a string of one.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum FileNumber {
    Int(i64),
    Float(f64),
}

/// `[upstream.NAME.pool]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePool {
    pub max_idle_per_backend: Option<FileInt>,
    pub idle_timeout: Option<FileDuration>,
}

/// `[upstream.NAME.health]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileHealth {
    /// `"http"` or `"tcp"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    /// A status set: `"200-399"`, `"200,204"`, `"2xx"`.
    pub expect: Option<String>,
    pub host: Option<String>,
    pub interval: Option<FileDuration>,
    pub timeout: Option<FileDuration>,
    pub rise: Option<FileInt>,
    pub fall: Option<FileInt>,
}

/// `[upstream.NAME.outlier]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOutlier {
    pub consecutive_failures: Option<FileInt>,
    pub statuses: Option<String>,
    pub base_ejection_time: Option<FileDuration>,
    pub max_ejection_time: Option<FileDuration>,
    pub max_ejection_percent: Option<FileInt>,
}

/// `[upstream.NAME.retry]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRetry {
    pub max_retries: Option<FileInt>,
    pub budget_percent: Option<FileInt>,
    pub budget_min_per_second: Option<FileInt>,
}

/// `[up]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUp {
    pub upstream: Option<String>,
    pub command: Option<Vec<String>>,
    pub ready_path: Option<String>,
    pub ready_timeout: Option<FileDuration>,
}

/// A value written as an integer or as a string, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileScalar {
    Int(i64),
    Str(String),
}

impl FileScalar {
    /// As written, in TOML syntax, for error messages.
    pub fn as_written(&self) -> String {
        match self {
            FileScalar::Int(n) => n.to_string(),
            FileScalar::Str(s) => super::error::quote(s),
        }
    }
}

/// Accepts an integer or a string; `expecting` names what the key really wants.
struct ScalarVisitor(&'static str);

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = FileScalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<FileScalar, E> {
        Ok(FileScalar::Int(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<FileScalar, E> {
        i64::try_from(n)
            .map(FileScalar::Int)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<FileScalar, E> {
        Ok(FileScalar::Str(s.to_string()))
    }
}

macro_rules! scalar {
    ($(#[$doc:meta])* $name:ident, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct $name(pub FileScalar);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(ScalarVisitor($expecting)).map($name)
            }
        }
    };
}

scalar!(
    /// `"30s"`, `"500ms"`: parsed by `units::parse_duration`.
    FileDuration,
    "a duration such as \"30s\" or \"500ms\""
);
scalar!(
    /// A byte count or `"16KiB"`: parsed by `units::parse_size`.
    FileSize,
    "a size such as \"16KiB\" or a number of bytes"
);
scalar!(
    /// `"auto"` or a positive integer.
    FileWorkers,
    "\"auto\" or a positive integer"
);
scalar!(
    /// An integer (or the same digits as a string).
    FileInt,
    "an integer"
);

/// A boolean (or `"true"`/`"false"` as a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileBool {
    Bool(bool),
    Str(String),
}

impl<'de> Deserialize<'de> for FileBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoolVisitor;
        impl<'de> Visitor<'de> for BoolVisitor {
            type Value = FileBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<FileBool, E> {
                Ok(FileBool::Bool(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FileBool, E> {
                Ok(FileBool::Str(s.to_string()))
            }
        }
        deserializer.deserialize_any(BoolVisitor)
    }
}

/// The field names serde accepts for `T`, taken from its derived `Deserialize` (which passes them
/// to `deserialize_struct`), so the unknown-key check and its suggestions never drift from the
/// struct definitions.
pub(crate) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut capture = FieldCapture(&[]);
    let _ = T::deserialize(&mut capture);
    capture.0
}

struct FieldCapture(&'static [&'static str]);

#[derive(Debug)]
struct Captured;

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names captured")
    }
}

impl std::error::Error for Captured {}

impl de::Error for Captured {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Captured
    }
}

impl<'de> Deserializer<'de> for &mut FieldCapture {
    type Error = Captured;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Captured> {
        self.0 = fields;
        Err(Captured)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_from_the_structs() {
        assert_eq!(
            fields_of::<FileListener>(),
            [
                "address",
                "protocol",
                "upstream",
                "route",
                "tls",
                "relay",
                "redirect_https",
                "trusted_proxies",
                "accept_proxy_protocol",
                "access",
                "connection_limits",
                "worker_steering",
                "rate_limits"
            ]
        );
        assert_eq!(
            fields_of::<FileConfig>(),
            [
                "runtime",
                "limits",
                "timeouts",
                "log",
                "admin",
                "listener",
                "upstream",
                "up",
                "compression",
                "rate_limit",
                "env"
            ]
        );
        assert_eq!(
            fields_of::<FileBackendTable>(),
            ["address", "weight", "backup", "drain"]
        );
        assert_eq!(
            fields_of::<FileHealth>(),
            ["type", "path", "expect", "host", "interval", "timeout", "rise", "fall"]
        );
    }

    #[test]
    fn the_embedded_default_reads_as_one_document() {
        let file: FileConfig = toml::from_str(crate::config::EMBEDDED_DEFAULT).expect("typed");
        assert_eq!(file.listener.len(), 1);
        let api = &file.upstream["api"];
        assert_eq!(api.backends.as_ref().map(Vec::len), Some(3));
        assert_eq!(
            file.runtime.workers,
            Some(FileWorkers(FileScalar::Str("auto".into())))
        );
        assert_eq!(file.limits.max_headers, Some(FileInt(FileScalar::Int(100))));
    }

    #[test]
    fn scalars_keep_what_was_written() {
        #[derive(Deserialize)]
        struct T {
            a: FileDuration,
            b: FileSize,
            c: FileBool,
        }
        let t: T = toml::from_str("a = 30\nb = \"16KiB\"\nc = \"true\"").expect("typed");
        assert_eq!(t.a.0, FileScalar::Int(30));
        assert_eq!(t.b.0.as_written(), "\"16KiB\"");
        assert_eq!(t.c, FileBool::Str("true".into()));
        let err = toml::from_str::<T>("a = 1.5\nb = 1\nc = true")
            .err()
            .expect("float refused");
        assert!(
            err.message().contains("expected a duration such as"),
            "{}",
            err.message()
        );
    }
}
