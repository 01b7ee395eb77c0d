//! Upstream groups: balance algorithm, backends (at least one, no duplicates, weights of at
//! least 1) and the keep-alive pool.

use std::num::NonZeroU32;

use super::{all, secs, Validator};
use crate::config::error::{quote, KeyPath};
use crate::config::file::{FileBackend, FileConfig, FileInt, FileScalar, FileUpstream};
use crate::config::{BackendConfig, BalanceAlgorithm, PoolConfig, UpstreamConfig};

const BALANCES: [(&str, BalanceAlgorithm); 2] = [
    ("round_robin", BalanceAlgorithm::RoundRobin),
    ("weighted", BalanceAlgorithm::Weighted),
];

impl Validator<'_> {
    pub(super) fn upstreams(
        &mut self,
        file: &FileConfig,
        path: &KeyPath,
    ) -> Option<Vec<UpstreamConfig>> {
        let groups: Vec<Option<UpstreamConfig>> = file
            .upstream
            .iter()
            .map(|(name, raw)| self.upstream(name, raw, &path.key(name)))
            .collect();
        all(groups)
    }

    pub(super) fn upstream(
        &mut self,
        name: &str,
        raw: &FileUpstream,
        path: &KeyPath,
    ) -> Option<UpstreamConfig> {
        let named = self.name("upstream group", name, path);
        let balance = match &raw.balance {
            None => Some(BalanceAlgorithm::RoundRobin),
            Some(text) => self.choice(
                text,
                &path.key("balance"),
                "balance",
                &BALANCES,
                " (weighted = smooth weighted round robin)",
            ),
        };
        let backends_path = path.key("backends");
        let backends = match raw.backends.as_deref() {
            None | Some([]) => {
                self.push(
                    backends_path,
                    if raw.backends.is_some() { "[]" } else { "" },
                    "the upstream group has no backends",
                    "add at least one: backends = [\"127.0.0.1:8001\"]",
                );
                None
            }
            Some(list) => self.backends(list, &backends_path),
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
        named?;
        Some(UpstreamConfig {
            name: name.to_string(),
            balance: balance?,
            backends: backends?,
            pool: PoolConfig {
                max_idle_per_backend: usize::try_from(max_idle?).ok()?,
                idle_timeout: idle_timeout?,
            },
            tls: tls?,
        })
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
            backends.push(match (address, weight) {
                (Some(address), Some(weight)) => Some(BackendConfig { address, weight }),
                _ => None,
            });
        }
        all(backends)
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
}
