//! A deployment's traffic split on the request path: whether a request (or a TCP connection)
//! prefers a group's canary backends (`BackendConfig::canary`: the new version) or its stable
//! ones, by the group's `UpstreamConfig::split` (set by the deployment controller, never by the
//! file).
//!
//! A generation's group holds a [`Split`] only while at least one of its backends is a canary;
//! otherwise the request path pays one `Option` check when it computes a request's keys and one
//! when it chooses a backend ([`super::select::choose`]).
//!
//! - **Buckets.** A client lands in one of [`BUCKETS`] buckets by a hash of its key
//!   (`TrafficSplit::key`): its IP address; or the value of a header or a cookie, and its IP
//!   address when the request has none (a client without the cookie still sticks, by address).
//!   A TCP connection has no header: always its address. The hash is seeded apart from Maglev's
//!   ([`SEED`]), so which side a client is on says nothing of which backend Maglev gives it
//!   within that side. Buckets below `weight_bp` prefer the canary. The bucket does not depend on
//!   the weight: a key stays on its side while the weight stays, and as the weight grows a
//!   client only moves toward the canary (a bucket below w1 is below every w2 ≥ w1).
//! - **Sides.** Each side has its own balancer over its own backends ([`Part`]), built with the
//!   generation, off the request path. One balancer over the whole group with the side as one
//!   more filter would do worse: round robin's cursor, shared by both sides, would land on the
//!   first backend of a side after every pick on the other side (with stable backends A, B and a
//!   canary C at a 50 % split, A would take about twice B's requests), and a Maglev table over
//!   both sides would move some stable clients to other stable backends when the canary joins;
//!   the stable side's own table is the one the group had before the deployment.
//! - **Fallback.** When no backend of the preferred side may take the request, the other side
//!   takes it rather than fail (see [`super::select::choose`]); such choices are counted in
//!   `lbproxy_upstream_split_fallbacks_total`.
//!
//! Everything is computed per request from the request itself: no allocation, no lock, no
//! atomic. A request that moved onto a generation with a split from one without (scale from
//! zero: the scaled-to-zero group had no canary) has no bucket and prefers the stable side.

use super::backend::Backend;
use super::balancer::{hash_bytes, hash_ip_seeded, Balancer};
use crate::config::{BackendConfig, HashKey, UpstreamConfig};
use crate::http::Request;
use std::net::IpAddr;
use std::rc::Rc;

/// Buckets a split divides clients into: one per basis point of `TrafficSplit::weight_bp`.
pub const BUCKETS: u16 = 10_000;

/// The split's hash seed ("split" and 1): any fixed value other than Maglev's (0) and its table
/// seeds. Changing it moves clients between sides in the middle of a deployment: do not.
const SEED: u64 = 0x7370_6c69_7400_0001;

/// A client's place in a split: 0..[`BUCKETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket(u16);

impl Bucket {
    /// The bucket of a client known by its address.
    #[inline]
    pub fn of_ip(ip: IpAddr) -> Self {
        Self::of_hash(hash_ip_seeded(SEED, ip))
    }

    /// The bucket of a client known by a header's or a cookie's value.
    #[inline]
    pub fn of_bytes(value: &[u8]) -> Self {
        Self::of_hash(hash_bytes(SEED, value))
    }

    fn of_hash(hash: u64) -> Self {
        // The modulo's bias is 2^64 mod 10^4 in 2^64: nothing.
        Bucket((hash % u64::from(BUCKETS)) as u16)
    }

    #[inline]
    pub fn get(self) -> u16 {
        self.0
    }
}

/// Which backends of a group a request prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Stable,
    Canary,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Stable => Side::Canary,
            Side::Canary => Side::Stable,
        }
    }
}

/// A group's split in one generation (see the module docs).
#[derive(Debug)]
pub struct Split {
    /// The canary's share of the clients in basis points, 0..=10,000.
    pub weight_bp: u16,
    /// What a client is known by.
    pub key: HashKey,
    stable: Part,
    canary: Part,
}

/// One side's backends and its balancer.
#[derive(Debug)]
pub struct Part {
    /// Over this side's backends only: its indices are positions in `members`.
    pub balancer: Balancer,
    /// Position in this side → index in the group.
    pub members: Box<[usize]>,
    /// Whether any backend of this side is a backup.
    pub has_backups: bool,
}

impl Part {
    fn new(group: &UpstreamConfig, canary: bool, worker: usize) -> Self {
        let (members, backends): (Vec<usize>, Vec<BackendConfig>) = group
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.canary == canary)
            .map(|(i, b)| (i, b.clone()))
            .unzip();
        Part {
            balancer: Balancer::new(group.balance, &backends, worker),
            has_backups: backends.iter().any(|b| b.backup),
            members: members.into_boxed_slice(),
        }
    }
}

impl Split {
    /// The split of `group` for worker `worker` (see `Balancer::new`), or `None` when none of
    /// its backends is a canary: then the split does not matter, whatever its weight.
    pub fn new(group: &UpstreamConfig, worker: usize) -> Option<Self> {
        if !group.backends.iter().any(|b| b.canary) {
            return None;
        }
        Some(Split {
            weight_bp: group.split.weight_bp.min(BUCKETS),
            key: group.split.key.clone(),
            stable: Part::new(group, false, worker),
            canary: Part::new(group, true, worker),
        })
    }

    /// The bucket of an HTTP request from `client`: by the split's header or cookie, or by the
    /// client's address when the split is by address or the request lacks the header or cookie.
    #[inline]
    pub fn bucket(&self, request: &Request<'_>, client: IpAddr) -> Bucket {
        let value = match &self.key {
            HashKey::ClientIp => None,
            HashKey::Header(name) => request.header(name),
            HashKey::Cookie(name) => request.cookie(name),
        };
        value.map_or_else(|| Bucket::of_ip(client), Bucket::of_bytes)
    }

    /// The side a request in `bucket` prefers; without a bucket, the stable one (see the module
    /// docs).
    #[inline]
    pub fn side(&self, bucket: Option<Bucket>) -> Side {
        match bucket {
            Some(bucket) if bucket.get() < self.weight_bp => Side::Canary,
            _ => Side::Stable,
        }
    }

    pub fn part(&self, side: Side) -> &Part {
        match side {
            Side::Stable => &self.stable,
            Side::Canary => &self.canary,
        }
    }

    /// The backends' weights changed at runtime: tells the sides' balancers (see
    /// `Balancer::set_weights`). `backends` is the group's list.
    pub fn set_weights(&self, backends: &[Rc<Backend>]) {
        for part in [&self.stable, &self.canary] {
            let weights = part.members.iter().map(|&i| backends[i].weight().get());
            part.balancer.set_weights(weights);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrafficSplit, UpstreamConfig};
    use crate::http::{parse_request, HeadLimits};
    use std::net::Ipv4Addr;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 4096,
        max_uri_bytes: 1024,
        max_headers: 32,
    };

    /// 10,000 distinct synthetic client addresses (10.0.0.0/16 and on).
    fn clients() -> impl Iterator<Item = IpAddr> {
        (0..10_000u32).map(|n| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
    }

    /// A group of `api` with backends on 8001.. (those in `canary` marked so) and `split`.
    fn group(canary: &[u16], split: TrafficSplit) -> UpstreamConfig {
        let config = crate::config::testing::valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\", \
             \"127.0.0.1:8003\"]\n",
        );
        let mut group = config.upstreams[0].clone();
        for backend in &mut group.backends {
            backend.canary = canary.contains(&backend.address.port());
        }
        group.split = split;
        group
    }

    fn split(weight_bp: u16, key: HashKey) -> Split {
        Split::new(&group(&[8003], TrafficSplit { weight_bp, key }), 0).expect("a canary")
    }

    #[test]
    fn no_canary_no_split() {
        let by_ip = TrafficSplit {
            weight_bp: 5000,
            key: HashKey::ClientIp,
        };
        assert!(Split::new(&group(&[], by_ip.clone()), 0).is_none());
        let split = Split::new(&group(&[8001, 8003], by_ip), 0).unwrap();
        assert_eq!(&*split.part(Side::Stable).members, [1]);
        assert_eq!(&*split.part(Side::Canary).members, [0, 2]);
    }

    #[test]
    fn a_key_stays_on_its_side_and_the_bucket_does_not_depend_on_the_weight() {
        let at = |weight| split(weight, HashKey::ClientIp);
        let (low, high) = (at(1500), at(6000));
        for ip in clients().take(2000) {
            let bucket = Bucket::of_ip(ip);
            assert_eq!(bucket, Bucket::of_ip(ip), "the same bucket every time");
            assert!(bucket.get() < BUCKETS);
            assert_eq!(low.side(Some(bucket)), low.side(Some(Bucket::of_ip(ip))));
            // Growing weight: only toward the canary.
            if low.side(Some(bucket)) == Side::Canary {
                assert_eq!(high.side(Some(bucket)), Side::Canary, "{ip} moved back");
            }
        }
    }

    #[test]
    fn every_weight_from_one_up_only_moves_clients_toward_the_canary() {
        let buckets: Vec<Bucket> = clients().take(500).map(Bucket::of_ip).collect();
        let mut canary = vec![false; buckets.len()];
        for weight in (0..=BUCKETS).step_by(250) {
            let split = split(weight, HashKey::ClientIp);
            for (i, &bucket) in buckets.iter().enumerate() {
                let now = split.side(Some(bucket)) == Side::Canary;
                assert!(now || !canary[i], "client {i} left the canary at {weight}");
                canary[i] = now;
            }
        }
        assert!(canary.iter().all(|&c| c), "10,000: every client");
    }

    #[test]
    fn the_canary_share_of_distinct_clients_is_the_weight_within_two_percent() {
        for weight in [0, 100, 500, 1000, 2500, 5000, 7500, 9900, 10_000] {
            let split = split(weight, HashKey::ClientIp);
            let canary = clients()
                .filter(|&ip| split.side(Some(Bucket::of_ip(ip))) == Side::Canary)
                .count();
            let share = canary as f64 / 10_000.0;
            let expected = f64::from(weight) / 10_000.0;
            assert!(
                (share - expected).abs() <= 0.02,
                "weight {weight}: {share} of the clients on the canary"
            );
            match weight {
                0 => assert_eq!(canary, 0, "weight 0: nobody"),
                10_000 => assert_eq!(canary, 10_000, "weight 10,000: everybody"),
                _ => {}
            }
        }
    }

    #[test]
    fn the_split_does_not_follow_maglevs_hash() {
        // The same address in bucket order and in Maglev-key order: independent seeds, so the
        // clients of the canary half are spread over all of Maglev's key space.
        let split = split(5000, HashKey::ClientIp);
        let canary_keys: Vec<u64> = clients()
            .filter(|&ip| split.side(Some(Bucket::of_ip(ip))) == Side::Canary)
            .map(|ip| crate::upstream::balancer::hash_ip(ip) % 4)
            .collect();
        let mut quarters = [0usize; 4];
        for key in canary_keys {
            quarters[key as usize] += 1;
        }
        let total: usize = quarters.iter().sum();
        for quarter in quarters {
            let share = quarter as f64 / total as f64;
            assert!((share - 0.25).abs() < 0.03, "{quarters:?}");
        }
    }

    #[test]
    fn header_and_cookie_keys_with_the_address_when_absent() {
        let peer: IpAddr = "10.9.8.7".parse().unwrap();
        let by_cookie = split(5000, HashKey::Cookie("session".to_owned()));
        let by_header = split(5000, HashKey::Header("x-user".to_owned()));
        let with = |raw: &str, split: &Split| {
            let request = parse_request(raw.as_bytes(), &LIMITS).unwrap().unwrap();
            split.bucket(&request, peer)
        };
        let cookie = "GET / HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; session=abc123\r\n\r\n";
        assert_eq!(with(cookie, &by_cookie), Bucket::of_bytes(b"abc123"));
        let header = "GET / HTTP/1.1\r\nHost: a\r\nX-User: alice\r\n\r\n";
        assert_eq!(with(header, &by_header), Bucket::of_bytes(b"alice"));
        let neither = "GET / HTTP/1.1\r\nHost: a\r\nCookie: theme=dark\r\n\r\n";
        assert_eq!(with(neither, &by_cookie), Bucket::of_ip(peer));
        assert_eq!(with(neither, &by_header), Bucket::of_ip(peer));
        // Whatever the client's address, the cookie decides.
        let request = parse_request(cookie.as_bytes(), &LIMITS).unwrap().unwrap();
        for ip in clients().take(100) {
            assert_eq!(by_cookie.bucket(&request, ip), Bucket::of_bytes(b"abc123"));
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_the_same_client() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(Bucket::of_ip(v4), Bucket::of_ip(mapped));
    }

    #[test]
    fn buckets_are_pinned_across_builds() {
        // Every process of a deployment (several proxies, a restart in the middle) must agree on
        // every client's side. Changing these values moves clients between sides: do not.
        assert_eq!(Bucket::of_bytes(b"user-1").get(), 8875);
        assert_eq!(Bucket::of_ip("10.0.0.1".parse().unwrap()).get(), 1138);
    }
}
