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

pub use super::compression::{CompressionConfig, Encoding};
pub use super::policy::{
    AccessList, Cidr, CidrSet, ClientAuthConfig, ConnectionLimits, DenyAction, ListenerPolicy,
    Rate, RateKey, RateLimitConfig, WorkerSteering,
};
pub use super::routing::{
    FieldMatch, GroupSettings, HeaderEdits, HeaderRules, PathRewrite, Pattern, Redirect,
    RouteAction, RouteMatch, RouteSettings, ValueMatch,
};
pub use super::template::{Template, TemplateError, TemplateVars, Var};

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
    pub admin: AdminConfig,
    /// Listeners in file order (sorted by name: TOML tables have no order we can rely on).
    pub listeners: Vec<ListenerConfig>,
    /// Upstream groups, sorted by name. Routes refer to them by index.
    pub upstreams: Vec<UpstreamConfig>,
    /// Settings for `lbproxy up` (the local deployment).
    pub up: UpConfig,
    /// `[compression]`: response compression (routes turn it on or off with `compress`).
    pub compression: CompressionConfig,
    /// `[rate_limit.NAME]`, sorted by name: listeners and routes name them by index.
    pub rate_limits: Vec<RateLimitConfig>,
    /// The text this configuration was loaded from, exactly as read (the file's, or
    /// [`super::EMBEDDED_DEFAULT`]): what the configuration history records when it serves.
    pub text: SourceText,
}

impl Config {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// A configuration's text, shared by every copy of the [`Config`]; its `Debug` gives only the
/// size (a whole file in a log line helps nobody).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceText(Arc<str>);

impl SourceText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SourceText {
    fn from(text: &str) -> Self {
        Self(Arc::from(text))
    }
}

impl std::fmt::Debug for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceText({} bytes)", self.0.len())
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
    /// A TLS client must complete its handshake within this, or the connection is closed; a tcp
    /// listener that routes by SNI waits this long for the ClientHello. Default 10s.
    pub tls_handshake: Duration,
    /// A tcp listener's connection with no byte moving either way for this long is closed.
    /// Default 1h.
    pub tcp_idle: Duration,
    /// The same for a connection relayed after `101 Switching Protocols` (WebSocket). Default 1h.
    pub tunnel_idle: Duration,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One `info` line per request (target `lbproxy::access`): client, request, listener, route,
    /// upstream, backend, status, bytes, duration, retries, request id, trace id. Default false:
    /// at full load a line per request costs more than proxying it; errors the proxy makes are
    /// logged regardless.
    pub access: bool,
    /// How log lines look on stderr. Default `Text`. Under the journal every event's fields are
    /// journal fields whatever this says.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, `key=value` fields.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// `[admin]`: the admin HTTP server (metrics, dashboard, runtime API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Default true.
    pub enabled: bool,
    /// Default `127.0.0.1:9901`. Validation refuses an address other machines can reach unless a
    /// token is set.
    pub address: SocketAddr,
    /// Bearer token every API request must carry (`token` or the contents of `token_file`).
    pub token: Option<AdminToken>,
}

/// The admin API's bearer token. Its `Debug` does not show it, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// At least [`AdminToken::MIN_LEN`] visible ASCII characters (checked by validation).
    pub const MIN_LEN: usize = 16;

    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is the token, compared in time that does not depend on where they
    /// differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut difference = u8::from(expected.len() != offered.len());
        for (i, &byte) in expected.iter().enumerate() {
            difference |= byte ^ offered.get(i).copied().unwrap_or(0);
        }
        difference == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
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
    /// catch-all route to it is appended last. On a tcp listener a route's `host` is the SNI
    /// pattern it matches (`sni` in the file) and its `path_prefix` is always `/`.
    pub routes: Vec<RouteConfig>,
    /// How a tcp listener moves bytes. Validation refuses `relay` on other listeners; their
    /// WebSocket tunnels always copy.
    pub relay: RelayMode,
    /// Trusted proxies, the PROXY protocol, the access list, connection limits and worker
    /// steering.
    pub policy: ListenerPolicy,
}

impl ListenerConfig {
    /// A tcp listener with at least one `sni` route: it reads the ClientHello before choosing.
    pub fn routes_by_sni(&self) -> bool {
        self.protocol == ListenerProtocol::Tcp && self.routes.iter().any(|r| r.host.is_some())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Http,
    /// HTTP/1.1 inside TLS, terminated by the proxy.
    Https,
    /// A TCP byte relay (L4); TLS passes through untouched and may be routed by SNI.
    Tcp,
}

impl ListenerProtocol {
    /// The protocol's name in the configuration (and, for http and https, the URI scheme clients
    /// use, as sent in `X-Forwarded-Proto`).
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Https => "https",
            ListenerProtocol::Tcp => "tcp",
        }
    }
}

/// `relay` of a tcp listener: how bytes move between client and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// `read` into a buffer, `write` it out (two copies through user space).
    Copy,
    /// `splice(2)` socket → pipe → socket, never through user space.
    Splice,
}

impl RelayMode {
    /// The default for tcp listeners (see docs/config.md and bench/results/L4-RELAY.md).
    pub const DEFAULT: RelayMode = RelayMode::Splice;

    pub fn as_str(self) -> &'static str {
        match self {
            RelayMode::Copy => "copy",
            RelayMode::Splice => "splice",
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
    /// Client certificates asked for in the handshake (mTLS); `None`: none asked for.
    pub client_auth: Option<ClientAuthConfig>,
    /// The rustls configuration built from them, shared by every worker.
    pub rustls: Arc<rustls::ServerConfig>,
}

impl PartialEq for ServerTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.certificates == other.certificates && self.client_auth == other.client_auth
    }
}

impl std::fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("certificates", &self.certificates)
            .field("client_auth", &self.client_auth)
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
    /// The other conditions (exact path, pattern, methods, headers, query).
    pub matches: RouteMatch,
    /// Forward to a group, or answer with a redirect.
    pub action: RouteAction,
    /// `CONNECT host:port` requests that match are sent to the upstream and, on a 2xx answer,
    /// become a two-way tunnel (as after `101 Switching Protocols`). Off by default: a CONNECT
    /// anywhere else is answered 501.
    pub allow_connect: bool,
    /// The path sent upstream, when it is not the client's.
    pub rewrite: Option<PathRewrite>,
    /// Fields added, set and removed on the request and the response.
    pub headers: HeaderRules,
    /// Timeouts, retries and the body limit for requests of this route, resolved.
    pub settings: RouteSettings,
    /// Responses to this route's requests are compressed (`[compression]`, resolved with the
    /// route's `compress`).
    pub compress: bool,
    /// Who may send requests to this route (the client address after `trusted_proxies`).
    pub access: Option<AccessList>,
    /// The rate limits its requests count against (indexes into `Config::rate_limits`): the
    /// route's `rate_limits`, or the listener's when it names none.
    pub rate_limits: Vec<usize>,
}

impl RouteConfig {
    /// A route that forwards what matches `host` and `path_prefix` to group `upstream`, with
    /// nothing else set: the catch-all, tcp listeners' routes, tests.
    pub fn forward(
        host: Option<String>,
        path_prefix: &str,
        upstream: usize,
        settings: RouteSettings,
    ) -> Self {
        RouteConfig {
            host,
            path_prefix: path_prefix.to_owned(),
            matches: RouteMatch::default(),
            action: RouteAction::Forward(upstream),
            allow_connect: false,
            rewrite: None,
            headers: HeaderRules::default(),
            settings,
            compress: false,
            access: None,
            rate_limits: Vec::new(),
        }
    }

    /// The group it forwards to; `None` for a redirect.
    pub fn upstream(&self) -> Option<usize> {
        match self.action {
            RouteAction::Forward(upstream) => Some(upstream),
            RouteAction::Redirect(_) => None,
        }
    }
}

impl RouteSettings {
    /// The global settings, for a route neither it nor its group overrides.
    pub fn global(timeouts: &TimeoutsConfig, limits: &LimitsConfig, retry: &RetryConfig) -> Self {
        RouteSettings {
            upstream_response: timeouts.upstream_response,
            client_body: timeouts.client_body,
            max_retries: retry.max_retries,
            max_body_bytes: limits.max_body_bytes,
        }
    }
}

/// `[upstream.NAME]`
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub balance: BalanceAlgorithm,
    /// What `maglev` hashes. `Some` exactly when `balance` is `Maglev` (default `ClientIp`).
    pub hash_key: Option<HashKey>,
    /// At least one is not a backup — except in a group with `discover`, whose backends are the
    /// discovered instances (the file's own list is empty there) and may be none at all.
    pub backends: Vec<BackendConfig>,
    /// `[upstream.NAME.discover]`: the backends are systemd units, followed over D-Bus by the
    /// control loop; `None`: the static `backends` list.
    pub discover: Option<DiscoverConfig>,
    /// `[upstream.NAME.autoscale]`: the number of instances follows the load; `None`: fixed.
    /// Only with `discover` (systemd units) or as `lbproxy up`'s group.
    pub autoscale: Option<AutoscaleConfig>,
    pub pool: PoolConfig,
    /// A backend that becomes usable again (health check passes, readmitted after an ejection,
    /// added by a reload) ramps its weight from 10% to 100% over this long. Zero (the default)
    /// turns slow start off.
    pub slow_start: Duration,
    /// Requests (or TCP connections) in flight to one backend at once, for the whole proxy: each
    /// of the `runtime.workers` workers allows its even share (rounded up). More wait in the
    /// group's queue. `None` (`max_connections = 0`): no limit. Default 1024.
    pub max_connections: Option<NonZeroU32>,
    /// How long a request waits for a connection slot before it is answered 503. Default 5s.
    pub queue_timeout: Duration,
    /// `[upstream.NAME.health]`: active probes; `None` when the section is absent.
    pub health: Option<HealthConfig>,
    /// `[upstream.NAME.outlier]`: passive outlier detection (per worker).
    pub outlier: OutlierConfig,
    /// `[upstream.NAME.retry]`: retry limits.
    pub retry: RetryConfig,
    /// `timeouts` and `max_body` the group overrides for its routes.
    pub settings: GroupSettings,
    /// TLS to the backends; `None`: plain TCP.
    pub tls: Option<UpstreamTlsConfig>,
    /// A PROXY protocol header sent first on every connection to a backend (tcp listeners
    /// only), so the backend sees the real client address. `None` (the default): none.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// How requests are split between the backends marked `canary` (a deployment's new
    /// version) and the rest. Set at runtime by the deployment controller, never by the file;
    /// it only matters while some backend is a canary.
    pub split: TrafficSplit,
}

/// A deployment's traffic split of one group: a share of the clients goes to the new version's
/// backends (`BackendConfig::canary`), the rest to the stable ones. A client is known by its key
/// (its address, a header or a cookie; without the header or cookie, its address) and lands in
/// one of 10,000 buckets by a hash of it; buckets below `weight_bp` go to the canary. As the
/// weight only grows during a deployment, a client moves only toward the canary, never back
/// and forth; an abort sets it to 0 in one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSplit {
    /// The canary's share in basis points, 0..=10_000 (10_000: every client).
    pub weight_bp: u16,
    /// What a client is recognized by.
    pub key: HashKey,
}

impl TrafficSplit {
    /// Every client: `weight_bp` 10,000.
    pub const ALL_BP: u16 = 10_000;
}

impl Default for TrafficSplit {
    /// No client to the canary, clients known by their address.
    fn default() -> Self {
        Self {
            weight_bp: 0,
            key: HashKey::ClientIp,
        }
    }
}

/// `[upstream.NAME.discover]`: backends discovered from systemd units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverConfig {
    /// A unit name pattern as `systemctl list-units` takes it: `api@*.service`.
    pub systemd: String,
    /// Which service manager runs the units.
    pub bus: SystemdBus,
    /// Where each instance's address comes from.
    pub address: AddressSource,
    /// A full re-read of the units this often (D-Bus signals can be missed). Default 30s.
    pub resync: Duration,
    /// cgroup limits applied to every discovered instance at runtime (SetUnitProperties).
    pub resources: UnitResources,
    /// The instances are `lbproxy up`'s child processes, which `up` reports itself (set by
    /// `lbproxy up --autoscale`, never by the file): no bus is read for this group.
    pub children: bool,
}

/// The unit of instance N for a discover pattern `PREFIX@*.service`: `(PREFIX@, .service)`;
/// `None` for any other pattern (an autoscaled group needs to name the units it starts).
pub fn unit_template(pattern: &str) -> Option<(&str, &str)> {
    let (prefix, suffix) = pattern.split_once('*')?;
    (prefix.ends_with('@') && suffix == ".service" && !prefix.contains(['*', '?', '[']))
        .then_some((prefix, suffix))
}

/// `[upstream.NAME.autoscale]`: how many instances the group runs, from the proxy's own
/// signals (Kubernetes' HPA algorithm with Knative's panic mode).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleConfig {
    /// Never fewer instances (0: scale to zero). Default 1.
    pub min: u32,
    /// Never more. Required.
    pub max: u32,
    /// What is compared with `target`. Default in-flight requests per instance.
    pub metric: AutoscaleMetric,
    /// The wanted value of `metric` per instance (requests in flight, req/s, p99 milliseconds
    /// or CPU percent of one core). Default 10 for `in_flight`.
    pub target: f64,
    /// No change while `signal / target` is within 1 ± tolerance. Default 0.1.
    pub tolerance: f64,
    /// A scale-up needs every recommendation of this window to be higher (HPA: 0 s).
    pub scale_up_window: Duration,
    /// A scale-down takes the highest recommendation of this window (HPA: 300 s).
    pub scale_down_window: Duration,
    /// Instances added or removed by one decision at most. Default 4.
    pub max_step: u32,
    /// Panic when `signal / target` reaches this (Knative: 2.0): scale up at once, ignoring the
    /// scale-up window, and no scale-down until `panic_window` has passed without it.
    pub panic_threshold: f64,
    pub panic_window: Duration,
    /// How long a drained instance may keep requests in flight before it is stopped anyway.
    pub drain_timeout: Duration,
}

impl AutoscaleConfig {
    /// Every key's default (those `[upstream.NAME.autoscale]` documents) within `min..=max`.
    pub fn defaults(min: u32, max: u32) -> Self {
        AutoscaleConfig {
            min,
            max,
            metric: AutoscaleMetric::InFlight,
            target: 10.0,
            tolerance: 0.1,
            scale_up_window: Duration::ZERO,
            scale_down_window: Duration::from_secs(300),
            max_step: 4,
            panic_threshold: 2.0,
            panic_window: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// `metric` of an `autoscale` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoscaleMetric {
    /// Requests in flight per routed instance (the default; Knative's concurrency).
    InFlight,
    /// Responses per second per routed instance.
    Rps,
    /// The group's p99 latency over the sampler's window, in milliseconds.
    P99,
    /// The instances' CPU use (cgroup CPUUsageNSec rate), in percent of one core, on average.
    Cpu,
}

impl AutoscaleMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoscaleMetric::InFlight => "in_flight",
            AutoscaleMetric::Rps => "rps",
            AutoscaleMetric::P99 => "p99",
            AutoscaleMetric::Cpu => "cpu",
        }
    }
}

/// `bus` of a `discover` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SystemdBus {
    /// The user's service manager (`systemctl --user`), on the session bus.
    User,
    /// The system's service manager (`systemctl`), on the system bus.
    System,
}

impl SystemdBus {
    /// `user` or `system`, as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemdBus::User => "user",
            SystemdBus::System => "system",
        }
    }
}

/// `address` of a `discover` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// A template on the instance name: `127.0.0.1:{8000+N}` (N: the instance as a number),
    /// or `[::1]:{9000+N}`.
    Template(AddressTemplate),
    /// `"socket"`: the `ListenStream=` of the instance's socket unit (`api@N.socket`).
    Socket,
}

/// A validated address template: `HOST:{OFFSET+N}` or `HOST:{N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTemplate {
    /// As written, for messages.
    pub text: String,
    /// The IP address before the port.
    pub ip: std::net::IpAddr,
    /// Added to the instance number.
    pub port_offset: u16,
}

impl AddressTemplate {
    /// The address of instance `instance` (`api@3` → "3"); `None` when the instance is not a
    /// number or the port would not fit.
    pub fn address(&self, instance: &str) -> Option<SocketAddr> {
        let n: u16 = instance.parse().ok()?;
        let port = self.port_offset.checked_add(n)?;
        (port != 0).then(|| SocketAddr::new(self.ip, port))
    }
}

/// `cpu_quota`, `memory_max`, `tasks_max` of a `discover` table: systemd's `CPUQuota=`,
/// `MemoryMax=`, `TasksMax=`, set at runtime on every discovered instance. `None`: left as the
/// unit file says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitResources {
    /// Percent of one CPU (`CPUQuota=50%`): systemd's `CPUQuotaPerSecUSec` = percent × 10 000.
    pub cpu_quota_percent: Option<u32>,
    /// Bytes (`MemoryMax=`).
    pub memory_max: Option<u64>,
    /// Tasks (`TasksMax=`).
    pub tasks_max: Option<u64>,
}

impl UnitResources {
    pub fn is_empty(&self) -> bool {
        *self == UnitResources::default()
    }
}

/// `proxy_protocol` of an upstream group: the header's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// The text header: `PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n`.
    V1,
    /// The binary header.
    V2,
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
    /// Fewest requests in flight on this worker (weighted).
    LeastConn,
    /// Power of two random choices on requests in flight.
    P2c,
    /// Weighted random.
    Random,
    /// Consistent hashing with a Maglev lookup table.
    Maglev,
}

impl BalanceAlgorithm {
    /// The configuration's name for it (`balance = "…"`).
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceAlgorithm::RoundRobin => "round_robin",
            BalanceAlgorithm::Weighted => "weighted",
            BalanceAlgorithm::LeastConn => "least_conn",
            BalanceAlgorithm::P2c => "p2c",
            BalanceAlgorithm::Random => "random",
            BalanceAlgorithm::Maglev => "maglev",
        }
    }
}

/// What a consistent-hashing balancer hashes to pick a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address (not the port).
    ClientIp,
    /// The value of this request header (name stored lowercase). Requests without it are spread
    /// as by round robin.
    Header(String),
    /// The value of this cookie. Requests without it are spread as by round robin.
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: SocketAddr,
    /// Default 1.
    pub weight: NonZeroU32,
    /// Receives requests only when no primary (non-backup) backend is usable. Default false.
    pub backup: bool,
    /// Draining: no new requests; requests in flight finish; idle connections to it are closed.
    /// Default false.
    pub drain: bool,
    /// Runs the new version of a deployment in progress: it takes the clients the group's
    /// [`UpstreamConfig::split`] sends to the canary. Set by discovery for the units a
    /// deployment started, never by the file. Default false.
    pub canary: bool,
}

/// `[upstream.NAME.health]`: active health probes, run once per backend by the control side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub check: HealthCheck,
    /// Time between the end of one probe and the start of the next. Default 2s.
    pub interval: Duration,
    /// A probe that takes longer fails. Default 1s.
    pub timeout: Duration,
    /// Consecutive passing probes that bring a down backend up. Default 2.
    pub rise: u32,
    /// Consecutive failing probes that take an up backend down. Default 3.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `GET path` must answer a status in `expect`.
    Http {
        /// Default `/health/ready`.
        path: String,
        /// Default `200-399`.
        expect: StatusSet,
        /// `Host` header; default the backend's `IP:PORT`.
        host: Option<String>,
    },
    /// A TCP connect must succeed.
    Tcp,
}

/// `[upstream.NAME.outlier]`: passive outlier detection, per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failures (connect errors, timeouts, lost connections, invalid responses and
    /// responses with a status in `statuses`) that eject a backend. 0 turns detection off.
    /// Default 5.
    pub consecutive_failures: u32,
    /// Response statuses that count as failures. Default `500-599`.
    pub statuses: StatusSet,
    /// First ejection time; the n-th consecutive ejection lasts n times this. Default 30s.
    pub base_ejection_time: Duration,
    /// Ejections never last longer than this. Default 300s.
    pub max_ejection_time: Duration,
    /// At most this share of the group's backends is ejected at once (at least one may always
    /// be). Default 10.
    pub max_ejection_percent: u32,
}

/// `[upstream.NAME.retry]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries per request after the first attempt. Default 2.
    pub max_retries: u32,
    /// Retry budget, per worker and group: over the last 10 seconds, retries may number at most
    /// this percentage of the requests received, plus `budget_min_per_second` × 10. Default 20.
    pub budget_percent: u32,
    /// The budget's floor, so that a quiet group can still retry. Default 10.
    pub budget_min_per_second: u32,
}

/// A set of HTTP status codes (100..=599), written `"200-399"`, `"502,503,504"`, `"5xx"`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    /// Every status from `low` to `high` inclusive (both within 0..640).
    pub fn range(low: u16, high: u16) -> Self {
        let mut set = StatusSet::default();
        set.insert_range(low, high);
        set
    }

    pub fn insert_range(&mut self, low: u16, high: u16) {
        for status in low..=high.min(639) {
            self.0[usize::from(status / 64)] |= 1 << (status % 64);
        }
    }

    pub fn contains(&self, status: u16) -> bool {
        status < 640 && self.0[usize::from(status / 64)] & (1 << (status % 64)) != 0
    }

    /// The set as ranges, e.g. `"200-399"` or `"502-504,507"`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut status = 0u16;
        while status < 640 {
            if self.contains(status) {
                let start = status;
                while status + 1 < 640 && self.contains(status + 1) {
                    status += 1;
                }
                parts.push(if start == status {
                    start.to_string()
                } else {
                    format!("{start}-{status}")
                });
            }
            status += 1;
        }
        parts.join(",")
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StatusSet({})", self.describe())
    }
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
