//! The worker's request rate limits: one [`KeyedGcra`] table per `[rate_limit.NAME]`, checked
//! when a request has been routed to a route that names limits (`l7/session.rs`).
//!
//! Flow: [`RateLimits::new`] builds the tables from the configuration; a committed generation
//! calls [`RateLimits::follow`], which keeps a limit's table (and its counters) when its name and
//! parameters are unchanged and starts it afresh otherwise; [`RateLimits::check`] hashes the
//! request's key for each of the route's limits in order and asks the table; the first limit
//! that refuses (and is not `dry_run`) gives the [`Limited`] the session answers 429 with;
//! [`RateLimits::snapshot`] gives the counters the worker's tick publishes.
//!
//! Across workers. A client-keyed limit is exact when every listener whose routes name it steers
//! each client address to one worker (`worker_steering = "client_address"`) and takes its client
//! addresses from the peer (no `trusted_proxies`, no `accept_proxy_protocol`): each worker then
//! enforces the whole limit for the addresses it sees. Otherwise (and always for header and
//! route keys) each of the W workers enforces its share ([`Gcra::split`]: the rate divided by W,
//! the burst ⌈B/W⌉): together at most `rate·t + W·⌈B/W⌉` in any interval `t`; a key whose
//! requests all land on one worker gets as little as `rate/W`. Each worker remembers at most
//! `max_keys / W` keys of a limit.
//!
//! Keys are hashed with SipHash under a key chosen at random per worker, so a client cannot
//! choose header values that collide in the table.

use super::gcra::{Decision, Gcra};
use super::keyed::KeyedGcra;
use crate::config::{Config, RateKey, RateLimitConfig, WorkerSteering};
use crate::http::Request;
use crate::metrics::rate_limits::RateLimitCounts;
use crate::metrics::stats::ListenerStats;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::time::Instant;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A request a limit refused: what its 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The limit's name.
    pub name: String,
    /// `Retry-After`: whole seconds until the key's next request conforms, rounded up.
    pub retry_after_secs: u64,
    /// `RateLimit-Policy`'s quota and window: the configured rate (`count` per `per`).
    pub quota: u32,
    pub window_secs: u64,
    /// `RateLimit`'s reset: whole seconds until the key is back to a full burst, rounded up.
    pub reset_secs: u64,
}

/// Every configured limit's table on one worker.
#[derive(Debug)]
pub struct RateLimits {
    /// The clock's zero: times are nanoseconds since it.
    epoch: Instant,
    hasher: RandomState,
    /// Same order as `Config::rate_limits`.
    limits: Vec<Limit>,
}

/// One limit's table and counters.
#[derive(Debug)]
struct Limit {
    config: RateLimitConfig,
    /// The GCRA each worker enforces (the whole limit, or its share).
    gcra: Gcra,
    /// Keys this worker may remember.
    capacity: usize,
    table: KeyedGcra,
    allowed: u64,
    limited: u64,
    dry_run: u64,
    /// Evictions of the tables this limit had before its last fresh start.
    evictions_before: u64,
}

impl Limit {
    fn new(config: &RateLimitConfig, gcra: Gcra, capacity: usize) -> Limit {
        Limit {
            config: config.clone(),
            gcra,
            capacity,
            table: KeyedGcra::new(gcra, capacity),
            allowed: 0,
            limited: 0,
            dry_run: 0,
            evictions_before: 0,
        }
    }

    fn counts(&self) -> RateLimitCounts {
        RateLimitCounts {
            name: self.config.name.clone(),
            allowed: self.allowed,
            limited: self.limited,
            dry_run: self.dry_run,
            keys: self.table.keys() as u64,
            evictions: self.evictions_before + self.table.evictions(),
        }
    }
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        let mut limits = RateLimits {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            limits: Vec::new(),
        };
        limits.follow(config);
        limits
    }

    /// Takes the limits of a newly committed `config`: a limit whose name, parameters and share
    /// are unchanged keeps its table; a changed one starts afresh (keeping its counters, which
    /// only grow); a removed one is dropped.
    pub fn follow(&mut self, config: &Config) {
        let mut old = std::mem::take(&mut self.limits);
        self.limits = config
            .rate_limits
            .iter()
            .enumerate()
            .map(|(index, limit)| {
                let (gcra, capacity) = share(config, index);
                let kept = old.iter().position(|o| o.config.name == limit.name);
                match kept.map(|i| old.swap_remove(i)) {
                    Some(o) if o.config == *limit && o.gcra == gcra && o.capacity == capacity => o,
                    Some(o) => Limit {
                        allowed: o.allowed,
                        limited: o.limited,
                        dry_run: o.dry_run,
                        evictions_before: o.evictions_before + o.table.evictions(),
                        ..Limit::new(limit, gcra, capacity)
                    },
                    None => Limit::new(limit, gcra, capacity),
                }
            })
            .collect();
    }

    /// Checks `request` against the limits at `indexes` (the route's, in order). A `dry_run`
    /// limit that would refuse is counted (on the limit and on `listener_stats`) and passed; the
    /// first other one that refuses is counted and returned. Limits after it are not checked.
    pub fn check(
        &mut self,
        indexes: &[usize],
        request: &Request<'_>,
        client: IpAddr,
        (listener, route): (usize, usize),
        listener_stats: &ListenerStats,
    ) -> Option<Limited> {
        let now = self.now();
        for &index in indexes {
            let Some(limit) = self.limits.get_mut(index) else {
                continue;
            };
            let mut hasher = self.hasher.build_hasher();
            match &limit.config.key {
                RateKey::Client => client.to_canonical().hash(&mut hasher),
                RateKey::Header(name) => match request.header(name) {
                    Some(value) => value.hash(&mut hasher),
                    // Not limited by this limit.
                    None => continue,
                },
                RateKey::Route => (listener, route).hash(&mut hasher),
            }
            let key = hasher.finish();
            let retry_after = match limit.table.check(key, now) {
                Decision::Allowed { .. } => {
                    limit.allowed += 1;
                    continue;
                }
                Decision::Limited { retry_after } => retry_after,
            };
            if limit.config.dry_run {
                limit.dry_run += 1;
                listener_stats.rate_limited(true);
                continue;
            }
            limit.limited += 1;
            listener_stats.rate_limited(false);
            let reset = limit.gcra.reset_after(limit.table.tat(key), now);
            return Some(Limited {
                name: limit.config.name.clone(),
                retry_after_secs: retry_after.div_ceil(NANOS_PER_SECOND).max(1),
                quota: limit.config.rate.count,
                window_secs: limit.config.rate.per.as_secs().max(1),
                reset_secs: reset.div_ceil(NANOS_PER_SECOND).max(1),
            });
        }
        None
    }

    /// Each limit's counters, in the configuration's order.
    pub fn snapshot(&self) -> Vec<RateLimitCounts> {
        self.limits.iter().map(Limit::counts).collect()
    }

    fn now(&self) -> u64 {
        // Nanoseconds fit a u64 for 584 years.
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// The GCRA each worker enforces for limit `index` of `config`, and how many keys it remembers.
fn share(config: &Config, index: usize) -> (Gcra, usize) {
    let limit = &config.rate_limits[index];
    let workers = config.runtime.workers.get();
    let capacity = (limit.max_keys / workers).max(2);
    let gcra = if exact(config, index) {
        Gcra::new(limit.rate, limit.burst)
    } else {
        Gcra::split(limit.rate, limit.burst, workers)
    };
    (gcra, capacity)
}

/// Whether every request limit `index` sees for a key reaches the same worker: a client-keyed
/// limit named only on listeners that steer each client address to one worker and take the
/// address from the peer.
fn exact(config: &Config, index: usize) -> bool {
    if config.rate_limits[index].key != RateKey::Client {
        return false;
    }
    config
        .listeners
        .iter()
        .filter(|l| l.routes.iter().any(|r| r.rate_limits.contains(&index)))
        .all(|l| {
            l.policy.steering == WorkerSteering::ClientAddress
                && l.policy.trusted_proxies.is_empty()
                && !l.policy.accept_proxy_protocol
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{valid, with};
    use crate::http::{parse_request, HeadLimits};
    use std::num::NonZeroUsize;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_uri_bytes: 4096,
        max_headers: 100,
    };

    fn config(limit: &str, workers: usize) -> Config {
        let mut config = valid(&format!(
            "{}[rate_limit.x]\n{limit}\n",
            with("").replace(
                "upstream = \"api\"\n",
                "upstream = \"api\"\nrate_limits = [\"x\"]\n"
            )
        ));
        config.runtime.workers = NonZeroUsize::new(workers).unwrap();
        config
    }

    /// Checks one request with `head`'s fields from `client`; `true`: allowed.
    fn allowed(limits: &mut RateLimits, fields: &str, client: [u8; 4]) -> bool {
        let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let request = parse_request(head.as_bytes(), &LIMITS).unwrap().unwrap();
        let stats = ListenerStats::default();
        limits
            .check(&[0], &request, IpAddr::from(client), (0, 0), &stats)
            .is_none()
    }

    #[test]
    fn a_client_gets_its_burst_then_a_429_that_says_when() {
        let config = config("rate = \"1/min\"\nburst = 2", 1);
        let mut limits = RateLimits::new(&config);
        assert!(allowed(&mut limits, "", [10, 0, 0, 1]));
        assert!(allowed(&mut limits, "", [10, 0, 0, 1]));
        let head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let request = parse_request(head.as_bytes(), &LIMITS).unwrap().unwrap();
        let stats = ListenerStats::default();
        let limited = limits
            .check(&[0], &request, [10, 0, 0, 1].into(), (0, 0), &stats)
            .unwrap();
        assert_eq!(limited.name, "x");
        assert_eq!((limited.quota, limited.window_secs), (1, 60));
        // The next request conforms within a minute; a full burst is back within two.
        assert!((59..=60).contains(&limited.retry_after_secs), "{limited:?}");
        assert!((119..=120).contains(&limited.reset_secs), "{limited:?}");
        // Another client has its own budget.
        assert!(allowed(&mut limits, "", [10, 0, 0, 2]));
        let counts = &limits.snapshot()[0];
        assert_eq!((counts.allowed, counts.limited, counts.keys), (3, 1, 2));
    }

    #[test]
    fn a_header_key_limits_only_requests_that_carry_it() {
        let config = config("key = \"header:X-Key\"\nrate = \"1/min\"", 1);
        let mut limits = RateLimits::new(&config);
        assert!(allowed(&mut limits, "X-Key: a\r\n", [10, 0, 0, 1]));
        assert!(!allowed(&mut limits, "x-key: a\r\n", [10, 0, 0, 2]));
        assert!(allowed(&mut limits, "X-Key: b\r\n", [10, 0, 0, 1]));
        for _ in 0..3 {
            assert!(allowed(&mut limits, "", [10, 0, 0, 1]));
        }
    }

    #[test]
    fn dry_run_counts_and_passes() {
        let config = config("rate = \"1/min\"\ndry_run = true", 1);
        let mut limits = RateLimits::new(&config);
        for _ in 0..3 {
            assert!(allowed(&mut limits, "", [10, 0, 0, 1]));
        }
        let counts = &limits.snapshot()[0];
        assert_eq!((counts.allowed, counts.limited, counts.dry_run), (1, 0, 2));
    }

    #[test]
    fn split_across_workers_unless_clients_are_steered() {
        let split = config("rate = \"60/min\"\nburst = 10\nmax_keys = 1000", 4);
        let (gcra, capacity) = share(&split, 0);
        assert_eq!(gcra, Gcra::split(split.rate_limits[0].rate, 10, 4));
        assert_eq!(capacity, 250);
        let mut steered = split.clone();
        steered.listeners[0].policy.steering = WorkerSteering::ClientAddress;
        assert_eq!(
            share(&steered, 0).0,
            Gcra::new(split.rate_limits[0].rate, 10)
        );
        // Behind a PROXY header the peer is not the client: back to the split.
        steered.listeners[0].policy.accept_proxy_protocol = true;
        assert_eq!(share(&steered, 0).0, gcra);
    }

    #[test]
    fn a_reload_keeps_unchanged_tables_and_restarts_changed_ones() {
        let before = config("rate = \"1/min\"", 1);
        let mut limits = RateLimits::new(&before);
        assert!(allowed(&mut limits, "", [10, 0, 0, 1]));
        limits.follow(&before);
        assert!(
            !allowed(&mut limits, "", [10, 0, 0, 1]),
            "the table was kept"
        );
        let changed = config("rate = \"2/min\"", 1);
        limits.follow(&changed);
        assert!(allowed(&mut limits, "", [10, 0, 0, 1]), "a fresh table");
        let counts = &limits.snapshot()[0];
        assert_eq!((counts.allowed, counts.limited, counts.keys), (2, 1, 1));
    }
}
