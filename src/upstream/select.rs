//! Choosing a backend of a group for one request (or one TCP connection), whatever the
//! protocol: the balancer's pick among the backends that may take it, tier by tier.
//!
//! [`choose`] asks the group's balancer with a filter that rejects backends already tried for
//! this request, down (active health), draining, or ejected (passive outlier detection), in
//! this order of preference:
//!
//! 1. primaries that admit requests;
//! 2. backups that admit requests (backups serve only when no primary can);
//! 3. primaries and then backups even if ejected: ejection never takes a whole group out, since
//!    failing every request is worse than trying a backend that failed recently.
//!
//! Down and draining backends are never chosen: with none left the caller answers 503. A backend
//! with `max_connections` requests in flight on this worker is not chosen either; when that is
//! all that stands in the way ([`all_full`]), the caller waits in the group's queue.
//!
//! A group with a traffic split ([`super::split`]: a deployment is in progress) is chosen from
//! by side: the request's bucket names the side it prefers (canary or stable), and that side's
//! own balancer picks among that side's backends. When it has none that admits the request
//! (down, draining, tried, full, or ejected), the other side's admitting backends take it rather
//! than fail: a retry after a failure on one side goes to the other side only this way. Only
//! then come the ejected backends, of the preferred side first: as an ejected primary comes after
//! an admitting backup, an ejected canary must not keep its clients from the stable backends
//! (nor take them past its circuit). So the tiers go: preferred side 1–2, other side 1–2,
//! preferred side 3, other side 3. Every choice on the other side counts as a fallback
//! (`lbproxy_upstream_split_fallbacks_total`).
//!
//! [`request_keys`] and [`connection_keys`] compute what a request or a connection is balanced
//! on: the hash key of `maglev` groups and the bucket of groups with a split, once per request.

use super::backend::{Backend, BackendState};
use super::split::{Bucket, Part};
use crate::config::HashKey;
use crate::http::Request;
use crate::upstream::balancer::{hash_bytes, hash_ip, Balancer, SelectionView};
use crate::upstream::UpstreamGroup;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

/// What a request or a connection is balanced on: the hash key of a `maglev` group and the
/// bucket of a group with a traffic split, each only when the group has a use for it; the
/// default has neither. Packed into the 16 bytes of the `Option<u64>` it replaces, so a pending
/// HTTP request keeps within 128 bytes (see `PendingRequest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestKeys {
    hash: u64,
    has_hash: bool,
    bucket: Option<Bucket>,
}

impl RequestKeys {
    pub fn new(hash: Option<u64>, bucket: Option<Bucket>) -> Self {
        Self {
            hash: hash.unwrap_or(0),
            has_hash: hash.is_some(),
            bucket,
        }
    }

    /// The hash key for the balancer (only Maglev reads it).
    #[inline]
    pub fn hash(self) -> Option<u64> {
        self.has_hash.then_some(self.hash)
    }

    /// The client's bucket in the group's traffic split.
    #[inline]
    pub fn bucket(self) -> Option<Bucket> {
        self.bucket
    }
}

/// The next backend (index into `group.backends`) for a request whose earlier attempts went to
/// `tried`; `None` when no backend may take it. See the module docs for the order.
pub fn choose(group: &UpstreamGroup, keys: RequestKeys, tried: &[usize]) -> Option<usize> {
    let key = keys.hash();
    let Some(split) = group.split.as_deref() else {
        let whole = Tiers {
            group,
            balancer: &group.balancer,
            members: Whole,
            has_backups: group.has_backups,
            key,
            tried,
        };
        return whole.admitting().or_else(|| whole.even_ejected());
    };
    let side = split.side(keys.bucket());
    let preferred = Tiers::of_side(group, split.part(side), key, tried);
    let other = Tiers::of_side(group, split.part(side.other()), key, tried);
    let fallback = |pick: Option<usize>| {
        if pick.is_some() {
            group.state.stats.split_fallback();
        }
        pick
    };
    preferred
        .admitting()
        .or_else(|| fallback(other.admitting()))
        .or_else(|| preferred.even_ejected())
        .or_else(|| fallback(other.even_ejected()))
}

/// Maps a balancer's indices to the group's: the whole group, or one side of a split.
trait Members: Copy {
    fn group_index(self, index: usize) -> usize;
}

/// The balancer is the group's: its indices are the group's.
#[derive(Debug, Clone, Copy)]
struct Whole;

impl Members for Whole {
    #[inline(always)]
    fn group_index(self, index: usize) -> usize {
        index
    }
}

/// A side's balancer: its indices are positions in this list of group indices.
impl Members for &[usize] {
    #[inline(always)]
    fn group_index(self, index: usize) -> usize {
        self[index]
    }
}

/// One balancer's tiers over its members, for one choice.
struct Tiers<'a, M> {
    group: &'a UpstreamGroup,
    balancer: &'a Balancer,
    members: M,
    has_backups: bool,
    key: Option<u64>,
    tried: &'a [usize],
}

impl<'a> Tiers<'a, &'a [usize]> {
    fn of_side(
        group: &'a UpstreamGroup,
        part: &'a Part,
        key: Option<u64>,
        tried: &'a [usize],
    ) -> Self {
        Tiers {
            group,
            balancer: &part.balancer,
            members: &part.members,
            has_backups: part.has_backups,
            key,
            tried,
        }
    }
}

impl<M: Members> Tiers<'_, M> {
    /// Tiers 1 and 2: primaries, then backups, that admit requests.
    #[inline]
    fn admitting(&self) -> Option<usize> {
        self.pick(false, false)
            .or_else(|| self.has_backups.then(|| self.pick(true, false)).flatten())
    }

    /// Tier 3: primaries, then backups, even if ejected.
    #[inline]
    fn even_ejected(&self) -> Option<usize> {
        self.pick(false, true)
            .or_else(|| self.has_backups.then(|| self.pick(true, true)).flatten())
    }

    #[inline]
    fn pick(&self, backup: bool, ignore_circuit: bool) -> Option<usize> {
        let (group, members) = (self.group, self.members);
        let view = GroupView {
            backends: &group.backends,
            members,
        };
        let pick = self.balancer.select(&view, self.key, |i| {
            let index = members.group_index(i);
            let backend = &group.backends[index];
            backend.is_backup() == backup
                && backend.admits(ignore_circuit)
                && !self.tried.contains(&index)
                && has_room(group, backend)
        });
        pick.map(|i| members.group_index(i))
    }
}

fn has_room(group: &UpstreamGroup, backend: &Backend) -> bool {
    (backend.in_flight() as usize) < group.max_in_flight_per_backend
}

/// Whether [`choose`] found nothing only because every backend that could take the request has
/// `max_connections` in flight: then it is worth waiting for a slot.
pub fn all_full(group: &UpstreamGroup, tried: &[usize]) -> bool {
    group
        .backends
        .iter()
        .enumerate()
        .any(|(i, b)| b.admits(true) && !tried.contains(&i) && !has_room(group, b))
}

/// Waits in `group`'s queue for a connection slot, until the deadline set at the first wait of
/// this request or connection (`group.queue_timeout` from then; kept in `queue_deadline`).
/// `true`: a slot was freed, choose again; `false`: the queue timed out.
pub async fn wait_for_slot(group: &UpstreamGroup, queue_deadline: &mut Option<Instant>) -> bool {
    let deadline =
        *queue_deadline.get_or_insert_with(|| Instant::now() + group.config.queue_timeout);
    let wait = group.state.queue.wait();
    monoio::time::timeout_at(deadline.into(), wait)
        .await
        .is_ok()
}

/// Why no backend of `group` is usable, e.g. "3 backends: 2 down, 1 draining".
pub fn why_none_usable(group: &UpstreamGroup) -> String {
    let mut counts: Vec<(BackendState, usize)> = Vec::new();
    for backend in &group.backends {
        let state = backend.state();
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(state, n)| format!("{n} {}", state.as_str()))
        .collect();
    let total = group.backends.len();
    let noun = if total == 1 { "backend" } else { "backends" };
    format!("{total} {noun}: {}", parts.join(", "))
}

/// What an HTTP request from `client_ip` (its client address, after trusted proxies) is balanced on in `group`: its hash key (a `maglev` group)
/// and its bucket (a group with a traffic split). Nothing is hashed for a group that uses
/// neither.
#[inline]
pub fn request_keys(
    group: &UpstreamGroup,
    request: &Request<'_>,
    client_ip: IpAddr,
) -> RequestKeys {
    let hash = request_key(group.config.hash_key.as_ref(), request, client_ip);
    let bucket = group.split.as_deref().map(|s| s.bucket(request, client_ip));
    RequestKeys::new(hash, bucket)
}

/// What a TCP connection from `peer` is balanced on in `group`: its address, for a `maglev`
/// group (validation refuses other hash keys on tcp listeners) and for a traffic split, whatever
/// the split's key (a TCP connection has no header).
#[inline]
pub fn connection_keys(group: &UpstreamGroup, peer: SocketAddr) -> RequestKeys {
    let hash = match group.config.hash_key {
        Some(HashKey::ClientIp) => Some(hash_ip(peer.ip())),
        _ => None,
    };
    let bucket = group.split.as_ref().map(|_| Bucket::of_ip(peer.ip()));
    RequestKeys::new(hash, bucket)
}

/// The hash key of a request for `group`'s balancer: `None` unless the group balances with
/// `maglev`, or when the header or cookie it hashes is absent.
pub fn request_key(
    hash_key: Option<&HashKey>,
    request: &Request<'_>,
    client_ip: IpAddr,
) -> Option<u64> {
    match hash_key? {
        HashKey::ClientIp => Some(hash_ip(client_ip)),
        HashKey::Header(name) => request.header(name).map(|value| hash_bytes(0, value)),
        HashKey::Cookie(name) => request.cookie(name).map(|value| hash_bytes(0, value)),
    }
}

/// What the balancers read about a group's backends, by the balancer's index.
struct GroupView<'a, M> {
    backends: &'a [Rc<Backend>],
    members: M,
}

impl<M: Members> SelectionView for GroupView<'_, M> {
    #[inline]
    fn weight(&self, index: usize) -> u64 {
        self.backends[self.members.group_index(index)].effective_weight()
    }

    #[inline]
    fn in_flight(&self, index: usize) -> u32 {
        self.backends[self.members.group_index(index)].in_flight()
    }

    #[inline]
    fn ramp(&self, index: usize) -> u32 {
        self.backends[self.members.group_index(index)].ramp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::upstream::backend::Circuit;
    use crate::upstream::Generation;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Backends 0 and 1 primaries, 2 a backup.
    fn generation() -> Generation {
        let config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\", \
             { address = \"127.0.0.1:8003\", backup = true }]\n",
        );
        Generation::first(Arc::new(config), 0)
    }

    fn eject(backend: &Backend) {
        backend.set_circuit(Circuit::Open {
            until: Instant::now() + Duration::from_secs(30),
        });
    }

    #[test]
    fn primaries_first_then_backups_then_ejected_never_down() {
        let generation = generation();
        let group = &generation.upstreams[0];
        let picks: Vec<_> = (0..4)
            .map(|_| choose(group, RequestKeys::default(), &[]).unwrap())
            .collect();
        assert_eq!(
            picks,
            [0, 1, 0, 1],
            "the backup is idle while primaries serve"
        );
        assert_eq!(
            choose(group, RequestKeys::default(), &[0, 1]),
            Some(2),
            "backup after the primaries"
        );

        eject(&group.backends[0]);
        group.backends[1].set_healthy(false, Instant::now(), Duration::ZERO);
        assert_eq!(
            choose(group, RequestKeys::default(), &[]),
            Some(2),
            "the backup before an ejected primary"
        );
        assert_eq!(
            choose(group, RequestKeys::default(), &[2]),
            Some(0),
            "ejected rather than nothing"
        );
        assert_eq!(
            choose(group, RequestKeys::default(), &[2, 0]),
            None,
            "a down backend never"
        );
        assert_eq!(
            why_none_usable(group),
            "3 backends: 1 ejected, 1 down, 1 up"
        );
    }

    #[test]
    fn draining_backends_take_no_new_requests() {
        let config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [{ address = \"127.0.0.1:8001\", drain = true }, \
             \"127.0.0.1:8002\"]\n",
        );
        let generation = Generation::first(Arc::new(config), 0);
        let group = &generation.upstreams[0];
        for _ in 0..4 {
            assert_eq!(choose(group, RequestKeys::default(), &[]), Some(1));
        }
        assert_eq!(choose(group, RequestKeys::default(), &[1]), None);
    }

    /// Stable backends 0 (8001) and 1 (8002), canary 2 (8003), round robin; the split at
    /// `weight_bp` by `key`.
    fn deployment(weight_bp: u16, key: HashKey) -> Generation {
        let mut config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\", \
             \"127.0.0.1:8003\"]\n",
        );
        config.upstreams[0].backends[2].canary = true;
        config.upstreams[0].split = crate::config::TrafficSplit { weight_bp, key };
        Generation::first(Arc::new(config), 0)
    }

    fn peer(n: u32) -> SocketAddr {
        SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + n).into(), 40_000)
    }

    /// A bucket below (`canary`) or at least 5,000, found among synthetic cookie values.
    fn bucket(canary: bool) -> Bucket {
        (0..)
            .map(|n| Bucket::of_bytes(format!("session-{n}").as_bytes()))
            .find(|b| (b.get() < 5000) == canary)
            .unwrap()
    }

    fn keys(bucket: Bucket) -> RequestKeys {
        RequestKeys::new(None, Some(bucket))
    }

    fn fallbacks(group: &UpstreamGroup) -> u64 {
        group.state.stats.snapshot().split_fallbacks
    }

    #[test]
    fn without_a_canary_a_split_is_nothing_and_clients_get_no_bucket() {
        let mut config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n",
        );
        config.upstreams[0].split.weight_bp = 10_000;
        let generation = Generation::first(Arc::new(config), 0);
        let group = &generation.upstreams[0];
        assert!(group.split.is_none());
        assert_eq!(connection_keys(group, peer(1)), RequestKeys::default());
        let picks: Vec<_> = (0..4)
            .map(|_| choose(group, RequestKeys::default(), &[]).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn each_client_goes_to_its_side_every_time_in_the_weights_share() {
        let generation = deployment(3000, HashKey::ClientIp);
        let group = &generation.upstreams[0];
        let mut on_canary = 0;
        for n in 0..10_000 {
            let keys = connection_keys(group, peer(n));
            let bucket = keys.bucket().expect("a bucket: the group has a split");
            let canary = bucket.get() < 3000;
            for _ in 0..3 {
                let chosen = choose(group, keys, &[]).unwrap();
                assert_eq!(chosen == 2, canary, "client {n} off its side");
            }
            on_canary += usize::from(canary);
        }
        assert!((2800..=3200).contains(&on_canary), "{on_canary} of 10,000");
        assert_eq!(fallbacks(group), 0);
    }

    #[test]
    fn weight_zero_sends_nobody_to_the_canary_and_ten_thousand_everybody() {
        let none = deployment(0, HashKey::ClientIp);
        let all = deployment(10_000, HashKey::ClientIp);
        for n in 0..2000 {
            let keys = connection_keys(&none.upstreams[0], peer(n));
            assert_ne!(choose(&none.upstreams[0], keys, &[]), Some(2));
            let keys = connection_keys(&all.upstreams[0], peer(n));
            assert_eq!(choose(&all.upstreams[0], keys, &[]), Some(2));
        }
    }

    #[test]
    fn a_side_with_no_backend_left_falls_back_to_the_other_and_counts_it() {
        let generation = deployment(5000, HashKey::ClientIp);
        let group = &generation.upstreams[0];
        let (canary, stable) = (keys(bucket(true)), keys(bucket(false)));

        // The canary is tried (a retry after its failure) or down: its clients go to the stable
        // backends rather than fail.
        assert_eq!(choose(group, canary, &[]), Some(2));
        assert!(matches!(choose(group, canary, &[2]), Some(0 | 1)));
        assert_eq!(fallbacks(group), 1);
        group.backends[2].set_healthy(false, Instant::now(), Duration::ZERO);
        assert!(matches!(choose(group, canary, &[]), Some(0 | 1)));
        assert_eq!(fallbacks(group), 2);
        group.backends[2].set_healthy(true, Instant::now(), Duration::ZERO);

        // Both stable backends draining or tried: the stable clients go to the canary.
        assert_eq!(choose(group, stable, &[0, 1]), Some(2));
        group.backends[0].override_drain(Some(true));
        group.backends[1].override_drain(Some(true));
        assert_eq!(choose(group, stable, &[]), Some(2));
        assert_eq!(choose(group, stable, &[2]), None, "nothing left at all");
        assert_eq!(fallbacks(group), 4);
    }

    #[test]
    fn a_full_side_falls_back_before_the_request_would_wait() {
        let mut config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nmax_connections = 1\n\
             backends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n",
        );
        config.upstreams[0].backends[1].canary = true;
        config.upstreams[0].split.weight_bp = 5000;
        let generation = Generation::first(Arc::new(config), 0);
        let group = &generation.upstreams[0];
        let held = crate::upstream::outlier::Attempt::begin(group, 1);
        assert_eq!(choose(group, keys(bucket(true)), &[]), Some(0));
        let other = crate::upstream::outlier::Attempt::begin(group, 0);
        assert_eq!(choose(group, keys(bucket(true)), &[]), None);
        assert!(all_full(group, &[]), "then it waits for a slot");
        drop((held, other));
    }

    #[test]
    fn an_ejected_canary_yields_to_the_stable_backends_before_its_circuit_is_ignored() {
        let generation = deployment(5000, HashKey::ClientIp);
        let group = &generation.upstreams[0];
        let canary = keys(bucket(true));
        eject(&group.backends[2]);
        assert!(matches!(choose(group, canary, &[]), Some(0 | 1)));
        eject(&group.backends[0]);
        group.backends[1].set_healthy(false, Instant::now(), Duration::ZERO);
        assert_eq!(
            choose(group, canary, &[]),
            Some(2),
            "every one ejected: its own side's first"
        );
        assert_eq!(choose(group, canary, &[2]), Some(0));
    }

    #[test]
    fn round_robin_stays_even_within_a_side_whatever_the_other_side_takes() {
        let generation = deployment(5000, HashKey::ClientIp);
        let group = &generation.upstreams[0];
        let (canary, stable) = (keys(bucket(true)), keys(bucket(false)));
        let mut counts = [0; 3];
        for _ in 0..100 {
            counts[choose(group, stable, &[]).unwrap()] += 1;
            counts[choose(group, canary, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [50, 50, 100]);
    }

    #[test]
    fn maglev_keeps_stable_clients_where_they_were_before_the_canary_joined() {
        let text = |backends: &str| {
            valid(&format!(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [upstream.api]\nbalance = \"maglev\"\nbackends = [{backends}]\n"
            ))
        };
        let before = Generation::first(Arc::new(text("\"127.0.0.1:8001\", \"127.0.0.1:8002\"")), 0);
        let mut config = text("\"127.0.0.1:8001\", \"127.0.0.1:8002\", \"127.0.0.1:8003\"");
        config.upstreams[0].backends[2].canary = true;
        config.upstreams[0].split.weight_bp = 2000;
        let during = before.next(Arc::new(config), 0);
        let (was, is) = (&before.upstreams[0], &during.upstreams[0]);
        for n in 0..2000 {
            let keys = connection_keys(is, peer(n));
            let chosen = choose(is, keys, &[]).unwrap();
            if chosen != 2 {
                assert_eq!(
                    chosen,
                    choose(was, connection_keys(was, peer(n)), &[]).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_cookie_pins_an_http_client_and_without_it_its_address() {
        let generation = deployment(5000, HashKey::Cookie("session".to_owned()));
        let group = &generation.upstreams[0];
        let limits = crate::http::HeadLimits {
            max_head_bytes: 4096,
            max_uri_bytes: 1024,
            max_headers: 32,
        };
        let keys_of = |raw: &str, n: u32| {
            let request = crate::http::parse_request(raw.as_bytes(), &limits)
                .unwrap()
                .unwrap();
            request_keys(group, &request, peer(n).ip())
        };
        let with_cookie = "GET / HTTP/1.1\r\nHost: a\r\nCookie: session=s-42\r\n\r\n";
        let side = choose(group, keys_of(with_cookie, 0), &[]) == Some(2);
        for n in 0..200 {
            let keys = keys_of(with_cookie, n);
            assert_eq!(keys.hash(), None, "round robin: no hash key");
            assert_eq!(keys.bucket(), Some(Bucket::of_bytes(b"s-42")));
            assert_eq!(
                choose(group, keys, &[]) == Some(2),
                side,
                "from address {n}"
            );
        }
        let without = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            keys_of(without, 7).bucket(),
            Some(Bucket::of_ip(peer(7).ip()))
        );
    }

    #[test]
    fn request_keys_fit_where_an_option_of_u64_did() {
        assert_eq!(
            std::mem::size_of::<RequestKeys>(),
            std::mem::size_of::<Option<u64>>()
        );
        let keys = RequestKeys::new(Some(7), None);
        assert_eq!((keys.hash(), keys.bucket()), (Some(7), None));
    }
}
