//! `[listener.NAME.connection_limits]` (open connections on the listener and per client, new
//! connections per client) and `worker_steering`.
//!
//! Flow: each limit is read (counts at least 1, the rate as `"COUNT/UNIT"`); `per_client_burst`
//! needs `per_client_rate` and defaults to the rate's count per second (at least 1). Then the
//! steering: `"client_address"` by default when a per-client limit is set and the listener's
//! clients connect directly (no `trusted_proxies`, no `accept_proxy_protocol`), else `"kernel"`;
//! `"client_address"` behind a load balancer is refused (its few addresses would pile every
//! connection onto one worker).

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::file::{FileBool, FileConnectionLimits, FileListener};
use crate::config::{ConnectionLimits, ListenerProtocol, Rate, WorkerSteering};

/// The largest count a limit takes.
const MAX_COUNT: i64 = u32::MAX as i64;

const STEERINGS: [(&str, WorkerSteering); 2] = [
    ("kernel", WorkerSteering::Kernel),
    ("client_address", WorkerSteering::ClientAddress),
];

/// `per_client_burst` when it is not written: the rate's count per second, at least 1.
pub(crate) fn default_burst(rate: Rate) -> u32 {
    let per_second = u128::from(rate.count) * 1_000_000_000 / rate.per.as_nanos().max(1);
    u32::try_from(per_second).unwrap_or(u32::MAX).max(1)
}

/// A boolean written true (a mistyped one is reported where it is read).
fn is_true(raw: &FileBool) -> bool {
    match raw {
        FileBool::Bool(b) => *b,
        FileBool::Str(text) => text.trim() == "true",
    }
}

impl Validator<'_> {
    pub(super) fn connection_limits(
        &mut self,
        raw: &FileListener,
        _protocol: Option<ListenerProtocol>,
        path: &KeyPath,
    ) -> Option<(ConnectionLimits, WorkerSteering)> {
        let limits = match &raw.connection_limits {
            Some(file) => self.connection_limit_values(file, &path.key("connection_limits")),
            None => Some(ConnectionLimits::default()),
        };
        let steering = self.steering(raw, limits.as_ref(), path);
        Some((limits?, steering?))
    }

    fn connection_limit_values(
        &mut self,
        file: &FileConnectionLimits,
        path: &KeyPath,
    ) -> Option<ConnectionLimits> {
        let count = |v: &mut Self, raw, key: &str| match raw {
            None => Some(None),
            Some(raw) => v
                .int(Some(raw), &path.key(key), 1, 1, MAX_COUNT)
                .map(|n| Some(n as u32)),
        };
        let max = count(self, file.max.as_ref(), "max");
        let per_client = count(self, file.per_client.as_ref(), "per_client");
        let per_client_rate = match &file.per_client_rate {
            Some(text) => self.rate(text, &path.key("per_client_rate")).map(Some),
            None => Some(None),
        };
        let burst = count(self, file.per_client_burst.as_ref(), "per_client_burst");
        if let (Some(Some(burst)), Some(None)) = (&burst, &per_client_rate) {
            self.push(
                path.key("per_client_burst"),
                burst.to_string(),
                "a burst without a rate: per_client_burst is how many new connections a \
                 client may open at once before per_client_rate applies",
                format!(
                    "add per_client_rate = \"{burst}/s\" (new connections per client address), \
                     or remove per_client_burst"
                ),
            );
            return None;
        }
        let per_client_rate = per_client_rate?;
        let burst = burst?;
        Some(ConnectionLimits {
            max: max?,
            per_client: per_client?,
            per_client_rate,
            per_client_burst: burst.or(per_client_rate.map(default_burst)).unwrap_or(1),
        })
    }

    fn steering(
        &mut self,
        raw: &FileListener,
        limits: Option<&ConnectionLimits>,
        path: &KeyPath,
    ) -> Option<WorkerSteering> {
        let behind_proxy = raw.trusted_proxies.as_ref().is_some_and(|l| !l.is_empty())
            || (raw.accept_proxy_protocol.as_ref()).is_some_and(is_true);
        let Some(text) = &raw.worker_steering else {
            let per_client = limits.is_some_and(ConnectionLimits::per_client_state);
            return Some(match per_client && !behind_proxy {
                true => WorkerSteering::ClientAddress,
                false => WorkerSteering::Kernel,
            });
        };
        let key = path.key("worker_steering");
        let steering = self.choice(
            text,
            &key,
            "worker steering",
            &STEERINGS,
            " (\"client_address\" sends every connection of one client address to one worker)",
        )?;
        if steering == WorkerSteering::ClientAddress && behind_proxy {
            self.push(
                key,
                quote(text),
                "every connection comes from the proxies in front (trusted_proxies, \
                 accept_proxy_protocol): steering by their few addresses would pile the \
                 connections onto one or two workers",
                "write worker_steering = \"kernel\" (per-client limits are then enforced per \
                 worker, each allowing its share)",
            );
            return None;
        }
        Some(steering)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, valid, API, LISTENER};
    use crate::config::{ConnectionLimits, WorkerSteering};
    use std::time::Duration;

    fn listener(extra: &str) -> String {
        format!("{LISTENER}{extra}\n{API}")
    }

    fn limits(table: &str) -> String {
        listener(&format!("[listener.http.connection_limits]\n{table}"))
    }

    fn policy(text: &str) -> (ConnectionLimits, WorkerSteering) {
        let policy = valid(text).listeners[0].policy.clone();
        (policy.connection_limits, policy.steering)
    }

    #[test]
    fn without_limits_the_kernel_spreads_connections() {
        assert_eq!(
            policy(&listener("")),
            (ConnectionLimits::default(), WorkerSteering::Kernel)
        );
        // A cap on the listener alone keeps nothing per client.
        assert_eq!(policy(&limits("max = 100")).1, WorkerSteering::Kernel);
    }

    #[test]
    fn limits_read_with_their_defaults() {
        let (l, steering) = policy(&limits(
            "max = 1000\nper_client = 10\nper_client_rate = \"20/s\"",
        ));
        assert_eq!(
            (l.max, l.per_client, l.per_client_burst),
            (Some(1000), Some(10), 20)
        );
        assert_eq!(l.per_client_rate.unwrap().per, Duration::from_secs(1));
        assert_eq!(steering, WorkerSteering::ClientAddress);
        // A slow rate's default burst is 1; a written one wins.
        assert_eq!(
            policy(&limits("per_client_rate = \"30/min\""))
                .0
                .per_client_burst,
            1
        );
        let (l, _) = policy(&limits("per_client_rate = \"1/min\"\nper_client_burst = 2"));
        assert_eq!(l.per_client_burst, 2);
    }

    #[test]
    fn behind_a_proxy_the_default_is_the_kernel() {
        let text = format!(
            "{LISTENER}trusted_proxies = [\"10.0.0.0/8\"]\n\
             [listener.http.connection_limits]\nper_client = 5\n{API}"
        );
        assert_eq!(policy(&text).1, WorkerSteering::Kernel);
        let text = format!("{LISTENER}worker_steering = \"client_address\"\n{API}");
        assert_eq!(policy(&text).1, WorkerSteering::ClientAddress);
    }

    #[test]
    fn counts_must_be_at_least_one() {
        for key in ["max", "per_client"] {
            let e = one_error(&limits(&format!("{key} = 0")));
            assert_error(
                &e,
                &format!("listener.http.connection_limits.{key}"),
                "0",
                "must be between 1 and",
                "write a whole number from 1",
            );
        }
        let e = one_error(&limits("per_client_rate = \"1/s\"\nper_client_burst = 0"));
        assert_error(
            &e,
            "listener.http.connection_limits.per_client_burst",
            "0",
            "must be between 1 and",
            "from 1",
        );
    }

    #[test]
    fn a_rate_must_read_as_one() {
        let e = one_error(&limits("per_client_rate = \"20\""));
        assert_error(
            &e,
            "listener.http.connection_limits.per_client_rate",
            "\"20\"",
            "no `/`",
            "\"100/s\"",
        );
    }

    #[test]
    fn a_burst_needs_a_rate() {
        let e = one_error(&limits("per_client = 4\nper_client_burst = 5"));
        assert_error(
            &e,
            "listener.http.connection_limits.per_client_burst",
            "5",
            "a burst without a rate",
            "add per_client_rate = \"5/s\"",
        );
    }

    #[test]
    fn an_unknown_steering_is_named_with_the_choices() {
        let e = one_error(&listener("worker_steering = \"client-address\""));
        assert_error(
            &e,
            "listener.http.worker_steering",
            "\"client-address\"",
            "unknown worker steering `client-address`",
            "did you mean `client_address`?",
        );
    }

    #[test]
    fn steering_by_address_behind_a_proxy_is_refused() {
        for trust in [
            "trusted_proxies = [\"10.0.0.0/8\"]",
            "accept_proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
        ] {
            let e = one_error(&listener(&format!(
                "{trust}\nworker_steering = \"client_address\""
            )));
            assert_error(
                &e,
                "listener.http.worker_steering",
                "\"client_address\"",
                "every connection comes from the proxies in front",
                "worker_steering = \"kernel\"",
            );
        }
    }
}
