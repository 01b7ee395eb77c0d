//! Validated configuration: the types the rest of lbproxy trusts.
//!
//! Nothing here is built by hand outside `config::validate` (and tests): every value has already
//! been checked, so the data plane never re-validates. Raw serde types live in `config::file`.

use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A fully validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the configuration came from (a file path, or the embedded default).
    pub source: ConfigSource,
    /// The `--env` overlay applied, if any.
    pub env: Option<String>,
    pub runtime: RuntimeConfig,
    pub limits: LimitsConfig,
    pub timeouts: TimeoutsConfig,
    pub log: LogConfig,
    /// Listeners in file order (sorted by name: TOML tables have no order we can rely on).
    pub listeners: Vec<ListenerConfig>,
    /// Upstream groups, sorted by name. Routes refer to them by index.
    pub upstreams: Vec<UpstreamConfig>,
    /// Settings for `lbproxy up` (the local deployment).
    pub up: UpConfig,
}

impl Config {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// The configuration compiled into the binary (`lbproxy serve` without `-c`).
    Embedded,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Embedded => f.write_str("<embedded default config>"),
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `workers = "auto"` resolves to the number of CPUs this process may run on.
    pub workers: NonZeroUsize,
    /// Which io driver the workers use. Default `Auto`. `LBPROXY_DRIVER=legacy|io_uring|auto` in
    /// the environment overrides the file.
    pub driver: DriverChoice,
    /// Pin worker N to the N-th allowed CPU. Default true.
    pub pin_workers: bool,
    /// Time given to in-flight requests on shutdown before connections are cut. Default 30s.
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel allows it, else the legacy (epoll) driver.
    Auto,
    /// io_uring or fail to start.
    IoUring,
    /// The epoll-based legacy driver.
    Legacy,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Request line + header section, in bytes. Over → 431 (414 when the request line alone is
    /// over `max_uri_bytes`). Default 16 KiB.
    pub max_header_bytes: usize,
    /// Request target length. Over → 414. Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Number of request header fields. Over → 431. Default 100.
    pub max_headers: usize,
    /// Request body size. Over → 413. Default 100 MiB. `None` = unlimited (`max_body = "unlimited"`).
    pub max_body_bytes: Option<u64>,
}

/// `[timeouts]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutsConfig {
    /// Whole request head must arrive within this (slowloris → 408). Default 10s.
    pub client_header: Duration,
    /// Idle keep-alive client connection closed after this. Default 60s.
    pub client_idle: Duration,
    /// Whole request body must arrive within this. Default 60s.
    pub client_body: Duration,
    /// TCP connect to a backend. Default 2s.
    pub upstream_connect: Duration,
    /// From request sent to response head received (→ 504), and between response body reads.
    /// Default 30s.
    pub upstream_response: Duration,
    /// A TLS client must complete its handshake within this, or the connection is closed.
    /// Default 10s.
    pub tls_handshake: Duration,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One `info` line per request (target `lbproxy::access`): client, request, upstream,
    /// backend, status, bytes, duration, retries, request id. Default false: at full load a line
    /// per request costs more than proxying it; errors the proxy makes are logged regardless.
    pub access: bool,
}

/// `[listener.NAME]`
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: ListenerProtocol,
    /// The certificates of an https listener (`Some` exactly when `protocol` is `Https`).
    pub tls: Option<ServerTlsConfig>,
    /// Routes in file order, first match wins. When the listener has `upstream = "..."`, a
    /// catch-all route to it is appended last.
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Http,
    /// HTTP/1.1 inside TLS, terminated by the proxy.
    Https,
}

impl ListenerProtocol {
    /// The URI scheme clients use, as sent in `X-Forwarded-Proto`.
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Https => "https",
        }
    }
}

/// `[listener.NAME.tls]`: the certificates of an https listener, read and checked by validation.
///
/// Two are equal when they name the same files and server names (file contents are not compared).
#[derive(Clone)]
pub struct ServerTlsConfig {
    /// In file order; the first is the default, served when the client's SNI names no
    /// certificate (or it sends none).
    pub certificates: Vec<CertificateConfig>,
    /// The rustls configuration built from them, shared by every worker.
    pub rustls: Arc<rustls::ServerConfig>,
}

impl PartialEq for ServerTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.certificates == other.certificates
    }
}

impl std::fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

/// `[[listener.NAME.tls.certificate]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    /// PEM chain, leaf first (resolved against the configuration file's directory).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// SNI names it is served for, lowercase (`*.example.com` for a wildcard): `server_names`, or
    /// the certificate's own DNS names.
    pub server_names: Vec<String>,
}

/// `[[listener.NAME.route]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Host to match, lowercase, without port. `None` = any host. A leading `*.` matches any
    /// subdomain (`*.example.com` matches `a.example.com`, not `example.com`).
    pub host: Option<String>,
    /// Path prefix, always starting with `/`. Default `/`.
    pub path_prefix: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
}

/// `[upstream.NAME]`
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub balance: BalanceAlgorithm,
    /// Never empty.
    pub backends: Vec<BackendConfig>,
    pub pool: PoolConfig,
    /// TLS to the backends; `None`: plain TCP.
    pub tls: Option<UpstreamTlsConfig>,
}

/// `[upstream.NAME.tls]`: TLS to the backends, verified against a CA.
///
/// Two are equal when they name the same CA file and server name.
#[derive(Clone)]
pub struct UpstreamTlsConfig {
    /// PEM CA certificate(s).
    pub ca: PathBuf,
    /// Sent as SNI and verified in the backend's certificate. `None`: each backend's IP address
    /// (verified against the certificate's IP addresses; no SNI is sent).
    pub server_name: Option<ServerName<'static>>,
    /// The rustls configuration (roots from `ca`), shared by every worker.
    pub rustls: Arc<rustls::ClientConfig>,
}

impl PartialEq for UpstreamTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca && self.server_name == other.server_name
    }
}

impl std::fmt::Debug for UpstreamTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsConfig")
            .field("ca", &self.ca)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceAlgorithm {
    RoundRobin,
    /// Smooth weighted round robin.
    Weighted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: SocketAddr,
    /// Default 1.
    pub weight: NonZeroU32,
}

/// `[upstream.NAME.pool]`: per worker, per backend keep-alive pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle connections kept per backend per worker. 0 disables keep-alive upstream. Default 64.
    pub max_idle_per_backend: usize,
    /// An idle pooled connection older than this is closed. Default 60s.
    pub idle_timeout: Duration,
}

/// `[up]`: how `lbproxy up` runs the API instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpConfig {
    /// Index into `Config::upstreams`: the group whose backends `up` starts (one instance per
    /// backend). Default: the group named `api`, else the only group.
    pub upstream: Option<usize>,
    /// Instance command as argv; `{instance}`, `{port}`, `{address}` are replaced per instance.
    /// `None` = the bundled `lbproxy-demo-api --listen {address} --instance {instance}`.
    pub command: Option<Vec<String>>,
    /// HTTP path polled until it answers 2xx before the proxy starts. Default `/health/ready`.
    pub ready_path: String,
    /// How long one instance may take to become ready. Default 30s.
    pub ready_timeout: Duration,
}
