//! Traffic policy and edge security, as validated: which peers are trusted to say who the client
//! is (`trusted_proxies`, `accept_proxy_protocol`), who may connect (`access`), how many connections a
//! listener and a client may hold (`connection_limits`), how fast requests may come
//! (`[rate_limit.NAME]`), and client certificates on https listeners (`tls.client_auth`).
//!
//! Address lists are [`CidrSet`]s: merged, sorted ranges searched in O(log n), so an access list
//! of thousands of networks costs a request the same as one of two.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// One network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`; a bare address
/// is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/PREFIX]`. The error says what is wrong, for `check`'s problem line.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`/{p}` is not a prefix length from 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        let (start, _) = cidr.range();
        if start != to_u128(network) {
            return Err(format!(
                "`{text}` has bits set past its /{prefix} prefix (the network is {})",
                Cidr {
                    network: from_u128(start, network.is_ipv4()),
                    prefix
                }
            ));
        }
        Ok(cidr)
    }

    /// The first and last address, in the IPv6 space (IPv4 as `::ffff:a.b.c.d`).
    fn range(&self) -> (u128, u128) {
        let bits = if self.network.is_ipv4() {
            u32::from(self.prefix) + 96
        } else {
            u32::from(self.prefix)
        };
        let host_mask = u128::MAX.checked_shr(bits).unwrap_or(0);
        let start = to_u128(self.network) & !host_mask;
        (start, start | host_mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An address in the IPv6 space: IPv4 addresses (and IPv4-mapped IPv6 ones, as a dual-stack
/// listener reports IPv4 peers) as `::ffff:a.b.c.d`, so one list holds both families.
fn to_u128(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(value: u128, v4: bool) -> IpAddr {
    let v6 = Ipv6Addr::from(value);
    match (v4, v6.to_ipv4_mapped()) {
        (true, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

/// A set of networks: what they were written as (for `check` and docs) and their merged ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    /// As written, in file order.
    pub written: Vec<Cidr>,
    /// Disjoint, sorted, merged `(first, last)` ranges.
    ranges: Vec<(u128, u128)>,
}

impl CidrSet {
    pub fn new(cidrs: Vec<Cidr>) -> Self {
        let mut ranges: Vec<(u128, u128)> = cidrs.iter().map(Cidr::range).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        CidrSet {
            written: cidrs,
            ranges: merged,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether every address of `cidr` is in the set (within one merged range: they are
    /// disjoint and not adjacent, so a network spanning two would have a gap).
    pub fn covers(&self, cidr: &Cidr) -> bool {
        let (start, end) = cidr.range();
        let after = self.ranges.partition_point(|&(first, _)| first <= start);
        after > 0 && end <= self.ranges[after - 1].1
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as IPv4).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.ranges.is_empty() {
            return false;
        }
        let value = to_u128(ip);
        let after = self.ranges.partition_point(|&(start, _)| start <= value);
        after > 0 && value <= self.ranges[after - 1].1
    }
}

/// `access = { allow = [...], deny = [...], action = "403" | "reset" }` on a listener or a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessList {
    /// When not empty, only these may pass.
    pub allow: CidrSet,
    /// Never pass (checked first: a denied address inside an allowed network is denied).
    pub deny: CidrSet,
    /// What a denied request gets (a connection refused when it opens is always reset: there
    /// is no request yet to answer).
    pub action: DenyAction,
}

impl AccessList {
    /// Whether `ip` may pass.
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
    }
}

/// How a denied request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAction {
    /// `403 Forbidden`.
    Forbidden,
    /// The connection is reset (`SO_LINGER` 0): the client learns nothing.
    Reset,
}

/// A rate: `count` events per `per` (`"100/s"`, `"6000/min"`, `"10/h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The time one event "uses" (GCRA's emission interval), in nanoseconds; at least 1.
    pub fn interval_nanos(&self) -> u64 {
        ((self.per.as_nanos() / u128::from(self.count.max(1))) as u64).max(1)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            86400 => "day",
            _ => return write!(f, "{}/{:?}", self.count, self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// `[listener.NAME.connection_limits]`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open client connections on the listener (all workers); more are closed at accept.
    pub max: Option<u32>,
    /// Open connections per client address.
    pub per_client: Option<u32>,
    /// New connections per client address (GCRA, with `per_client_burst`).
    pub per_client_rate: Option<Rate>,
    /// Connections a client may open at once before `per_client_rate` applies. Default: the
    /// rate's count per second, at least 1.
    pub per_client_burst: u32,
}

impl ConnectionLimits {
    /// Whether any limit keeps state per client address.
    pub fn per_client_state(&self) -> bool {
        self.per_client.is_some() || self.per_client_rate.is_some()
    }
}

/// How the kernel spreads a listener's new connections over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSteering {
    /// The kernel's own `SO_REUSEPORT` hash of the connection (address and port).
    Kernel,
    /// A reuseport BPF program hashing the client's address only: every connection of one address
    /// lands on one worker, so per-client limits are exact.
    ClientAddress,
}

/// What a listener's requests and connections are checked against, besides routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPolicy {
    /// Peers whose `X-Forwarded-For` / `Forwarded` fields (and PROXY headers) are believed.
    /// Empty: nobody's; those fields from clients are dropped.
    pub trusted_proxies: CidrSet,
    /// Every connection starts with a PROXY protocol header (v1 or v2), from a trusted proxy.
    pub accept_proxy_protocol: bool,
    /// Who may connect (checked on the connection's client address).
    pub access: Option<AccessList>,
    pub connection_limits: ConnectionLimits,
    /// How connections are spread over the workers.
    pub steering: WorkerSteering,
}

impl Default for ListenerPolicy {
    fn default() -> Self {
        ListenerPolicy {
            trusted_proxies: CidrSet::default(),
            accept_proxy_protocol: false,
            access: None,
            connection_limits: ConnectionLimits::default(),
            steering: WorkerSteering::Kernel,
        }
    }
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's address (after `trusted_proxies`).
    Client,
    /// A request field's value, name lowercase; a request without it is not limited.
    Header(String),
    /// The route: one budget shared by every client of each route it applies to.
    Route,
}

/// `[rate_limit.NAME]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub name: String,
    pub key: RateKey,
    pub rate: Rate,
    /// Requests a key may send at once before the rate applies (at least 1).
    pub burst: u32,
    /// Only count what would be refused; refuse nothing.
    pub dry_run: bool,
    /// The most keys remembered (all workers together); past it the least recently seen go.
    pub max_keys: usize,
}

/// `[listener.NAME.tls] client_auth = "required" | "optional"` with `client_ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    /// PEM bundle of the certificate authorities a client certificate must chain to.
    pub ca: PathBuf,
    /// A client without a valid certificate fails the handshake (else it may connect without
    /// one, and backends see that it sent none).
    pub required: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cidrs: &[&str]) -> CidrSet {
        CidrSet::new(cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    }

    #[test]
    fn networks_contain_their_addresses_of_both_families() {
        let s = set(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
        for ip in [
            "10.1.2.3",
            "10.255.255.255",
            "192.168.1.7",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(s.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "11.0.0.0",
            "9.255.255.255",
            "192.168.1.8",
            "2001:db9::",
            "::1",
        ] {
            assert!(!s.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!CidrSet::default().contains("1.2.3.4".parse().unwrap()));
        assert!(set(&["0.0.0.0/0"]).contains("8.8.8.8".parse().unwrap()));
        assert!(!set(&["0.0.0.0/0"]).contains("2001:db8::1".parse().unwrap()));
        assert!(set(&["::/0"]).contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge() {
        let s = set(&["10.0.0.0/9", "10.128.0.0/9", "10.1.0.0/16"]);
        assert_eq!(s.ranges.len(), 1);
        assert!(s.contains("10.200.0.1".parse().unwrap()));
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("example.com")
            .unwrap_err()
            .contains("not an IPv4"));
    }

    #[test]
    fn a_set_covers_a_network_only_without_gaps() {
        let s = set(&[
            "10.0.0.0/9",
            "10.128.0.0/9",
            "192.168.0.0/24",
            "192.168.2.0/24",
        ]);
        assert!(s.covers(&Cidr::parse("10.64.0.0/16").unwrap()));
        assert!(s.covers(&Cidr::parse("10.0.0.0/8").unwrap()));
        assert!(!s.covers(&Cidr::parse("192.168.0.0/22").unwrap()));
        assert!(!s.covers(&Cidr::parse("11.0.0.1").unwrap()));
    }

    #[test]
    fn deny_wins_over_allow() {
        let list = AccessList {
            allow: set(&["10.0.0.0/8"]),
            deny: set(&["10.0.0.66"]),
            action: DenyAction::Forbidden,
        };
        assert!(list.allows("10.0.0.1".parse().unwrap()));
        assert!(!list.allows("10.0.0.66".parse().unwrap()));
        assert!(!list.allows("192.0.2.1".parse().unwrap()));
    }
}
