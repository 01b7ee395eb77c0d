//! Upstream groups: balance algorithm and its hash key, backends (at least one, no duplicates,
//! weights of at least 1, at least one primary), slow start and the keep-alive pool. The health,
//! outlier and retry sections are checked in `health`.

use std::num::NonZeroU32;
use std::time::Duration;

use super::{all, secs, Validator};
use crate::config::error::{did_you_mean, quote, KeyPath};
use crate::config::file::{FileBackend, FileConfig, FileInt, FileScalar, FileUpstream};
use crate::config::{
    BackendConfig, BalanceAlgorithm, HashKey, PoolConfig, ProxyProtocol, TrafficSplit,
    UpstreamConfig,
};

const BALANCES: [(&str, BalanceAlgorithm); 6] = [
    ("round_robin", BalanceAlgorithm::RoundRobin),
    ("weighted", BalanceAlgorithm::Weighted),
    ("least_conn", BalanceAlgorithm::LeastConn),
    ("p2c", BalanceAlgorithm::P2c),
    ("random", BalanceAlgorithm::Random),
    ("maglev", BalanceAlgorithm::Maglev),
];

const PROXY_PROTOCOLS: [(&str, ProxyProtocol); 2] =
    [("v1", ProxyProtocol::V1), ("v2", ProxyProtocol::V2)];

const HASH_KEY_FIX: &str =
    "write \"client_ip\", \"header:NAME\" (e.g. \"header:X-User\") or \"cookie:NAME\" (e.g. \"cookie:session\")";

impl Validator<'_> {
    pub(super) fn upstreams(
        &mut self,
        file: &FileConfig,
        path: &KeyPath,
    ) -> Option<Vec<UpstreamConfig>> {
        // `lbproxy up`'s group (`[up] upstream`, else a group named `api`): `up --autoscale`
        // scales its own instances, so a static list may autoscale there.
        let up_group = file.up.upstream.as_deref().unwrap_or("api");
        let groups: Vec<Option<UpstreamConfig>> = file
            .upstream
            .iter()
            .map(|(name, raw)| self.upstream(name, raw, &path.key(name), name == up_group))
            .collect();
        all(groups)
    }

    pub(super) fn upstream(
        &mut self,
        name: &str,
        raw: &FileUpstream,
        path: &KeyPath,
        up_group: bool,
    ) -> Option<UpstreamConfig> {
        let named = self.name("upstream group", name, path);
        let balance = match &raw.balance {
            None => Some(BalanceAlgorithm::RoundRobin),
            Some(text) => self.choice(
                text,
                &path.key("balance"),
                "balance",
                &BALANCES,
                " (see docs/config.md: weighted = smooth weighted round robin, maglev = \
                 consistent hashing for session affinity)",
            ),
        };
        let hash_key = self.hash_key(raw, balance, path);
        let slow_start = self.slow_start(raw, balance, path);
        let max_connections = self.int(
            raw.max_connections.as_ref(),
            &path.key("max_connections"),
            1024,
            0,
            1 << 24,
        );
        let queue_timeout = self.duration(
            raw.queue_timeout.as_ref(),
            &path.key("queue_timeout"),
            secs(5),
            true,
        );
        let backends_path = path.key("backends");
        let discover = match &raw.discover {
            None => Some(None),
            Some(discover) => self.discover(discover, &path.key("discover")).map(Some),
        };
        let autoscale = match &raw.autoscale {
            None => Some(None),
            Some(autoscale) => self.autoscale(autoscale, &path.key("autoscale")).map(Some),
        };
        if let (Some(_), Some(None), false) = (&raw.autoscale, &discover, up_group) {
            self.push(
                path.key("autoscale"),
                "",
                "the group's instances are a static list: there is nothing to start or stop",
                "discover them from systemd units ([upstream.NAME.discover] systemd = \
                 \"api@*.service\"), or make it `lbproxy up`'s group ([up] upstream) and run \
                 `lbproxy up --autoscale`",
            );
        }
        if let (Some(Some(_)), Some(Some(discover))) = (&autoscale, &discover) {
            if let crate::config::AddressSource::Template(template) = &discover.address {
                if template.port_offset == 0 {
                    self.push(
                        path.key("discover").key("address"),
                        crate::config::error::quote(&template.text),
                        "the autoscaler numbers the instances it starts from 1: instance 1 \
                         would listen on port 1",
                        "give the port an offset, e.g. \"127.0.0.1:{8000+N}\"",
                    );
                }
            }
            if crate::config::unit_template(&discover.systemd).is_none() {
                self.push(
                    path.key("autoscale"),
                    "",
                    format!(
                        "new instances cannot be named from the pattern \"{}\"",
                        discover.systemd
                    ),
                    "discover a template's instances by number, systemd = \"api@*.service\", so \
                     that instance N is api@N.service",
                );
            }
        }
        let backends = match (raw.backends.as_deref(), &raw.discover) {
            (None, Some(_)) => Some(Vec::new()),
            (Some(list), Some(_)) => {
                self.push(
                    backends_path,
                    format!("[{} entries]", list.len()),
                    "the group takes its backends from systemd (`discover`) and also lists \
                     `backends`",
                    "remove `backends` (the discovered units are the backends) or remove the \
                     [upstream.NAME.discover] table",
                );
                None
            }
            (None | Some([]), None) => {
                self.push(
                    backends_path,
                    if raw.backends.is_some() { "[]" } else { "" },
                    "the upstream group has no backends",
                    "add at least one: backends = [\"127.0.0.1:8001\"], or discover them from \
                     systemd units: [upstream.NAME.discover] systemd = \"api@*.service\"",
                );
                None
            }
            (Some(list), None) => self.backends(list, &backends_path),
        };
        let pool_path = path.key("pool");
        let max_idle = self.int(
            raw.pool.max_idle_per_backend.as_ref(),
            &pool_path.key("max_idle_per_backend"),
            64,
            0,
            1 << 20,
        );
        let idle_timeout = self.duration(
            raw.pool.idle_timeout.as_ref(),
            &pool_path.key("idle_timeout"),
            secs(60),
            true,
        );
        let tls = match &raw.tls {
            None => Some(None),
            Some(tls) => self.upstream_tls(tls, &path.key("tls")).map(Some),
        };
        let health = match &raw.health {
            None => Some(None),
            Some(health) => self.health(health, &path.key("health")).map(Some),
        };
        let outlier = self.outlier(&raw.outlier, &path.key("outlier"));
        let retry = self.retry(&raw.retry, &path.key("retry"));
        let proxy_protocol = match &raw.proxy_protocol {
            None => Some(None),
            Some(text) => self
                .choice(
                    text,
                    &path.key("proxy_protocol"),
                    "PROXY protocol version",
                    &PROXY_PROTOCOLS,
                    " (whichever the backends accept: v2 is binary, v1 text)",
                )
                .map(Some),
        };
        let settings = self.group_settings(raw, path);
        named?;
        Some(UpstreamConfig {
            name: name.to_string(),
            settings: settings?,
            balance: balance?,
            hash_key: hash_key?,
            backends: backends?,
            discover: discover?,
            autoscale: autoscale?,
            pool: PoolConfig {
                max_idle_per_backend: usize::try_from(max_idle?).ok()?,
                idle_timeout: idle_timeout?,
            },
            tls: tls?,
            proxy_protocol: proxy_protocol?,
            split: TrafficSplit::default(),
            slow_start: slow_start?,
            max_connections: NonZeroU32::new(u32::try_from(max_connections?).ok()?),
            queue_timeout: queue_timeout?,
            health: health?,
            outlier: outlier?,
            retry: retry?,
        })
    }

    /// `hash_key`: only with `maglev`, which defaults it to the client IP.
    fn hash_key(
        &mut self,
        raw: &FileUpstream,
        balance: Option<BalanceAlgorithm>,
        path: &KeyPath,
    ) -> Option<Option<HashKey>> {
        let key_path = path.key("hash_key");
        let maglev = balance == Some(BalanceAlgorithm::Maglev);
        let Some(text) = &raw.hash_key else {
            return Some(maglev.then_some(HashKey::ClientIp));
        };
        if balance.is_some() && !maglev {
            self.push(
                key_path,
                quote(text),
                "hash_key only applies to balance = \"maglev\"",
                "set balance = \"maglev\" for session affinity by this key, or remove hash_key",
            );
            return None;
        }
        let parsed = parse_hash_key(text.trim());
        match parsed {
            Ok(key) => Some(maglev.then_some(key)),
            Err((problem, fix)) => {
                self.push(key_path, quote(text), problem, fix);
                None
            }
        }
    }

    /// `slow_start`: a duration, zero (the default) for none; meaningless with `maglev`.
    fn slow_start(
        &mut self,
        raw: &FileUpstream,
        balance: Option<BalanceAlgorithm>,
        path: &KeyPath,
    ) -> Option<Duration> {
        let slow_path = path.key("slow_start");
        let slow_start =
            self.duration(raw.slow_start.as_ref(), &slow_path, Duration::ZERO, false)?;
        if !slow_start.is_zero() && balance == Some(BalanceAlgorithm::Maglev) {
            let written = raw
                .slow_start
                .as_ref()
                .map(|d| d.0.as_written())
                .unwrap_or_default();
            self.push(
                slow_path,
                written,
                "slow_start has no effect with balance = \"maglev\"",
                "remove slow_start: consistent hashing keeps each key on its backend, so a \
                 returning backend gets its keys back at once",
            );
            return None;
        }
        Some(slow_start)
    }

    pub(super) fn backends(
        &mut self,
        raw: &[FileBackend],
        path: &KeyPath,
    ) -> Option<Vec<BackendConfig>> {
        let mut backends = Vec::new();
        for (i, backend) in raw.iter().enumerate() {
            let entry = path.index(i);
            let (text, address_path, weight) = match backend {
                FileBackend::Address(text) => (Some(text), entry.clone(), None),
                FileBackend::Table(table) => (
                    table.address.as_ref(),
                    entry.key("address"),
                    table.weight.as_ref(),
                ),
            };
            let address = match text {
                Some(text) => self.address(text, &address_path, "127.0.0.1:8001", true),
                None => {
                    self.push(
                        address_path.clone(),
                        "",
                        "missing: a backend needs an address",
                        "add address = \"127.0.0.1:8001\" (IP:PORT)",
                    );
                    None
                }
            };
            if let Some(address) = address {
                let first = backends.iter().position(
                    |b: &Option<BackendConfig>| matches!(b, Some(b) if b.address == address),
                );
                if let Some(j) = first {
                    self.push(
                        address_path,
                        quote(text.map(String::as_str).unwrap_or_default()),
                        format!("the same backend as backends[{j}]"),
                        format!(
                            "remove the duplicate; to send it more traffic, give backends[{j}] \
                             a weight (balance = \"weighted\")"
                        ),
                    );
                }
            }
            let weight = self.weight(weight, &entry.key("weight"));
            let (backup, drain) = match backend {
                FileBackend::Address(_) => (Some(false), Some(false)),
                FileBackend::Table(table) => (
                    self.boolean(table.backup.as_ref(), &entry.key("backup"), false),
                    self.boolean(table.drain.as_ref(), &entry.key("drain"), false),
                ),
            };
            backends.push(match (address, weight, backup, drain) {
                (Some(address), Some(weight), Some(backup), Some(drain)) => Some(BackendConfig {
                    address,
                    weight,
                    backup,
                    drain,
                    canary: false,
                }),
                _ => None,
            });
        }
        let backends = all(backends)?;
        if backends.iter().all(|b| b.backup) {
            self.push(
                path.clone(),
                "",
                "every backend is a backup: backups only serve when no primary backend is usable",
                "make at least one backend a primary (remove its backup = true)",
            );
            return None;
        }
        Some(backends)
    }

    pub(super) fn weight(&mut self, raw: Option<&FileInt>, path: &KeyPath) -> Option<NonZeroU32> {
        if let Some(FileInt(scalar)) = raw {
            if matches!(scalar, FileScalar::Int(0))
                || matches!(scalar, FileScalar::Str(s) if s.trim() == "0")
            {
                self.push(
                    path.clone(),
                    scalar.as_written(),
                    "weight 0 would never receive requests",
                    "use a weight of 1 or more; to take a backend out of rotation, remove it",
                );
                return None;
            }
        }
        let weight = self.int(raw, path, 1, 1, i64::from(u32::MAX))?;
        u32::try_from(weight).ok().and_then(NonZeroU32::new)
    }
}

/// `"client_ip"`, `"header:NAME"` or `"cookie:NAME"`; `Err((problem, fix))`. Also the
/// deployment spec's client key (`crate::deploy::spec::hash_key`).
pub(crate) fn parse_hash_key(text: &str) -> Result<HashKey, (String, String)> {
    const FORMS: [&str; 3] = ["client_ip", "header", "cookie"];
    let (kind, name) = match text.split_once(':') {
        Some((kind, name)) => (kind.trim(), Some(name.trim())),
        None => (text, None),
    };
    match (kind, name) {
        ("client_ip", None) => Ok(HashKey::ClientIp),
        ("header" | "cookie", Some(name)) if is_token(name) => Ok(if kind == "header" {
            HashKey::Header(name.to_ascii_lowercase())
        } else {
            HashKey::Cookie(name.to_owned())
        }),
        ("header" | "cookie", _) => Err((
            format!("the {kind} name is missing or not a valid name"),
            format!(
                "write \"{kind}:NAME\" with a name of letters, digits and -_. (e.g. \"{}\")",
                if kind == "header" {
                    "header:X-User"
                } else {
                    "cookie:session"
                }
            ),
        )),
        ("client_ip", Some(_)) => Err((
            "client_ip takes no name".to_owned(),
            "write \"client_ip\"".to_owned(),
        )),
        _ => Err((
            "not a hash key".to_owned(),
            format!("{}{HASH_KEY_FIX}", did_you_mean(kind, FORMS)),
        )),
    }
}

/// An HTTP token (header field names; cookie names use the same grammar).
pub(super) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{assert_error, invalid, one_error, valid, LISTENER};

    #[test]
    fn bad_addresses_get_a_fix_that_fits() {
        let text = format!(
            "{LISTENER}[upstream.api]\nbackends = [\"127.0.0.1:8001\", {{ address = \"127.0.0.1:80x1\" }}, \
             \"localhost:8003\", \"10.0.0.4\", \"::1:8005\", \"127.0.0.1:80000\", \"127.0.0.1:0\"]\n"
        );
        let errors = invalid(&text);
        assert_eq!(errors.len(), 6, "{errors:#?}");
        let key = |i: usize| format!("upstream.api.backends[{i}]");
        assert_error(
            &errors[0],
            &format!("{}.address", key(1)),
            "\"127.0.0.1:80x1\"",
            "not an IP:PORT socket address",
            "write it as IP:PORT, e.g. \"127.0.0.1:8001\"",
        );
        assert_error(
            &errors[1],
            &key(2),
            "\"localhost:8003\"",
            "not an IP:PORT",
            "write \"127.0.0.1:8003\"",
        );
        assert_error(
            &errors[2],
            &key(3),
            "\"10.0.0.4\"",
            "not an IP:PORT",
            "add the port: \"10.0.0.4:8001\"",
        );
        assert_error(
            &errors[3],
            &key(4),
            "\"::1:8005\"",
            "not an IP:PORT",
            "brackets: \"[::1]:8005\"",
        );
        assert_error(
            &errors[4],
            &key(5),
            "\"127.0.0.1:80000\"",
            "port 80000 is out of range",
            "65535",
        );
        assert_error(
            &errors[5],
            &key(6),
            "\"127.0.0.1:0\"",
            "port 0 cannot be connected to",
            "the port the backend listens on",
        );
    }

    #[test]
    fn backend_groups_need_distinct_backends_with_weights() {
        let e = one_error(&format!("{LISTENER}[upstream.api]\nbackends = []\n"));
        assert_error(
            &e,
            "upstream.api.backends",
            "[]",
            "no backends",
            "backends = [\"127.0.0.1:8001\"]",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbalance = \"weighted\"\n"
        ));
        assert_error(
            &e,
            "upstream.api.backends",
            "",
            "no backends",
            "add at least one",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbackends = [\"127.0.0.1:8001\", {{ address = \"127.0.0.1:8001\", weight = 2 }}]\n"
        ));
        assert_error(
            &e,
            "upstream.api.backends[1].address",
            "\"127.0.0.1:8001\"",
            "the same backend as backends[0]",
            "remove the duplicate",
        );
        let e = one_error(&format!("{LISTENER}[upstream.api]\nbackends = [{{ address = \"127.0.0.1:8001\", weight = 0 }}]\n"));
        assert_error(
            &e,
            "upstream.api.backends[0].weight",
            "0",
            "weight 0",
            "1 or more",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbackends = [{{ weight = 2 }}]\n"
        ));
        assert_error(
            &e,
            "upstream.api.backends[0].address",
            "",
            "needs an address",
            "address = \"127.0.0.1:8001\"",
        );
    }

    #[test]
    fn weights_and_balance() {
        let config = valid(&format!(
            "{LISTENER}[upstream.api]\nbalance = \"weighted\"\n\
             backends = [\"127.0.0.1:8001\", {{ address = \"127.0.0.1:8002\", weight = 3 }}]\n"
        ));
        let api = &config.upstreams[0];
        assert_eq!(api.balance, BalanceAlgorithm::Weighted);
        let weights: Vec<u32> = api.backends.iter().map(|b| b.weight.get()).collect();
        assert_eq!(weights, [1, 3]);
        let e = one_error(&format!("{LISTENER}[upstream.api]\nbalance = \"round-robin\"\nbackends = [\"127.0.0.1:8001\"]\n"));
        assert_error(
            &e,
            "upstream.api.balance",
            "\"round-robin\"",
            "unknown balance",
            "did you mean `round_robin`?",
        );
    }

    #[test]
    fn every_algorithm_by_name() {
        for (name, algorithm) in BALANCES {
            let config = valid(&format!(
                "{LISTENER}[upstream.api]\nbalance = \"{name}\"\nbackends = [\"127.0.0.1:8001\"]\n"
            ));
            assert_eq!(config.upstreams[0].balance, algorithm);
            let maglev = algorithm == BalanceAlgorithm::Maglev;
            assert_eq!(
                config.upstreams[0].hash_key,
                maglev.then_some(HashKey::ClientIp),
                "maglev hashes the client IP unless told otherwise"
            );
        }
    }

    #[test]
    fn hash_keys() {
        let group = |key: &str| {
            format!(
                "{LISTENER}[upstream.api]\nbalance = \"maglev\"\nhash_key = \"{key}\"\n\
                 backends = [\"127.0.0.1:8001\"]\n"
            )
        };
        assert_eq!(
            valid(&group("header:X-User")).upstreams[0].hash_key,
            Some(HashKey::Header("x-user".into()))
        );
        assert_eq!(
            valid(&group("cookie:Session")).upstreams[0].hash_key,
            Some(HashKey::Cookie("Session".into()))
        );
        let e = one_error(&group("heade:X-User"));
        assert_error(
            &e,
            "upstream.api.hash_key",
            "\"heade:X-User\"",
            "not a hash key",
            "did you mean `header`?",
        );
        let e = one_error(&group("header:"));
        assert_error(
            &e,
            "upstream.api.hash_key",
            "\"header:\"",
            "header name is missing",
            "\"header:X-User\"",
        );
        let e = one_error(&group("cookie:my session"));
        assert_error(
            &e,
            "upstream.api.hash_key",
            "\"cookie:my session\"",
            "not a valid name",
            "\"cookie:session\"",
        );
        let e = one_error(&group("client_ip:v4"));
        assert_error(
            &e,
            "upstream.api.hash_key",
            "\"client_ip:v4\"",
            "takes no name",
            "\"client_ip\"",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nhash_key = \"client_ip\"\nbackends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_error(
            &e,
            "upstream.api.hash_key",
            "\"client_ip\"",
            "only applies to balance = \"maglev\"",
            "set balance = \"maglev\"",
        );
    }

    #[test]
    fn max_connections_and_queue_timeout() {
        let config = valid(&with_api(""));
        assert_eq!(config.upstreams[0].max_connections, NonZeroU32::new(1024));
        assert_eq!(config.upstreams[0].queue_timeout, Duration::from_secs(5));
        let config = valid(&format!(
            "{LISTENER}[upstream.api]\nmax_connections = 0\nqueue_timeout = \"250ms\"\n\
             backends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_eq!(config.upstreams[0].max_connections, None);
        assert_eq!(
            config.upstreams[0].queue_timeout,
            Duration::from_millis(250)
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nmax_connections = -1\nbackends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_error(
            &e,
            "upstream.api.max_connections",
            "-1",
            "must be between 0 and 16777216",
            "the default is 1024",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nqueue_timeout = \"0s\"\nbackends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_error(
            &e,
            "upstream.api.queue_timeout",
            "\"0s\"",
            "greater than zero",
            "default is \"5s\"",
        );
    }

    #[test]
    fn slow_start() {
        let config = valid(&format!(
            "{LISTENER}[upstream.api]\nslow_start = \"30s\"\nbackends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_eq!(config.upstreams[0].slow_start, Duration::from_secs(30));
        assert_eq!(valid(&with_api("")).upstreams[0].slow_start, Duration::ZERO);
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbalance = \"maglev\"\nslow_start = \"30s\"\n\
             backends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_error(
            &e,
            "upstream.api.slow_start",
            "\"30s\"",
            "no effect with balance = \"maglev\"",
            "remove slow_start",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nslow_start = \"soon\"\nbackends = [\"127.0.0.1:8001\"]\n"
        ));
        assert_error(
            &e,
            "upstream.api.slow_start",
            "\"soon\"",
            "not a duration",
            "e.g. \"30s\"",
        );
    }

    fn with_api(extra: &str) -> String {
        format!("{LISTENER}[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n{extra}")
    }

    #[test]
    fn backups_and_drain() {
        let config = valid(&format!(
            "{LISTENER}[upstream.api]\nbackends = [\"127.0.0.1:8001\", \
             {{ address = \"127.0.0.1:8002\", backup = true }}, \
             {{ address = \"127.0.0.1:8003\", drain = \"true\" }}]\n"
        ));
        let flags: Vec<(bool, bool)> = config.upstreams[0]
            .backends
            .iter()
            .map(|b| (b.backup, b.drain))
            .collect();
        assert_eq!(flags, [(false, false), (true, false), (false, true)]);
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbackends = [{{ address = \"127.0.0.1:8001\", backup = true }}]\n"
        ));
        assert_error(
            &e,
            "upstream.api.backends",
            "",
            "every backend is a backup",
            "make at least one backend a primary",
        );
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbackends = [{{ address = \"127.0.0.1:8001\", drain = \"yes\" }}]\n"
        ));
        assert_error(
            &e,
            "upstream.api.backends[0].drain",
            "\"yes\"",
            "not true or false",
            "the default is false",
        );
    }
}
