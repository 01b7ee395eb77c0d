//! The client address of a request that came through trusted proxies: its `X-Forwarded-For`
//! chain (or, without one, its `Forwarded` `for=` nodes) walked from the right, as nginx's
//! `real_ip_recursive on` does.
//!
//! Flow: the caller asks only when the sender (the TCP peer, or a PROXY header's source) is in
//! `trusted_proxies`. Starting from the sender, each address from the right that is trusted too
//! is skipped; the first untrusted one is the client. A value that is not an address (a typo,
//! `unknown`, an obfuscated `_node`) stops the walk: the last good address is the answer, never
//! one further left that such a hop may have forged. Accepted forms: `192.0.2.1`,
//! `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`, and in `Forwarded`
//! each of those quoted (`for="[2001:db8::1]:80"`).

use super::headers::{trim_ows, FieldLines};
use super::request::Request;
use crate::config::CidrSet;
use std::net::{IpAddr, SocketAddr};

impl Request<'_> {
    /// The client address of this request from a trusted `sender` (see the module doc).
    pub fn client_address(&self, sender: IpAddr, trusted: &CidrSet) -> IpAddr {
        let mut forwarded_for: Vec<&[u8]> = Vec::new();
        let mut forwarded: Vec<&[u8]> = Vec::new();
        for (index, (_, value)) in FieldLines::new(self.fields).enumerate() {
            if self.forwarded_for.contains(index) {
                forwarded_for.push(value);
            } else if self.forwarded.contains(index) {
                forwarded.push(value);
            }
        }
        resolve_client(&forwarded_for, &forwarded, sender, trusted)
    }
}

/// The client behind the trusted `sender`, from the values of the `X-Forwarded-For` fields
/// (in order) or, when there are none, of the `Forwarded` fields.
pub fn resolve_client(
    forwarded_for: &[&[u8]],
    forwarded: &[&[u8]],
    sender: IpAddr,
    trusted: &CidrSet,
) -> IpAddr {
    let mut client = sender.to_canonical();
    if forwarded_for.iter().any(|v| !trim_ows(v).is_empty()) {
        for element in from_the_right(forwarded_for) {
            match node(element) {
                Some(ip) => client = ip,
                None => break,
            }
            if !trusted.contains(client) {
                break;
            }
        }
    } else {
        for element in from_the_right(forwarded) {
            match forwarded_for_node(element).and_then(node) {
                Some(ip) => client = ip,
                None => break,
            }
            if !trusted.contains(client) {
                break;
            }
        }
    }
    client
}

/// The list elements of `values` (the lines of one field, in order), last first; empty lines
/// (`X-Forwarded-For:`) are not elements.
fn from_the_right<'a>(values: &'a [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> + 'a {
    values
        .iter()
        .rev()
        .filter(|value| !trim_ows(value).is_empty())
        .flat_map(|value| value.rsplit(|&b| b == b',').map(trim_ows))
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=http`), unquoted.
fn forwarded_for_node(element: &[u8]) -> Option<&[u8]> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_ows(pair);
        let (name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        if !name.eq_ignore_ascii_case(b"for") {
            return None;
        }
        let value = &value[1..];
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

/// An address as a forwarding field writes a node, with or without a port.
fn node(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let ip = if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else if let Ok(with_port) = text.parse::<SocketAddr>() {
        with_port.ip()
    } else {
        // `[2001:db8::1]` without a port.
        text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn trusted(list: &[&str]) -> CidrSet {
        CidrSet::new(list.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str], proxies: &[&str]) -> IpAddr {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        resolve_client(&values, &[], ip("10.0.0.1"), &trusted(proxies))
    }

    fn fwd(values: &[&str], proxies: &[&str]) -> IpAddr {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        resolve_client(&[], &values, ip("10.0.0.1"), &trusted(proxies))
    }

    #[test]
    fn the_first_untrusted_address_from_the_right_is_the_client() {
        let proxies = ["10.0.0.0/8"];
        assert_eq!(xff(&["203.0.113.9"], &proxies), ip("203.0.113.9"));
        // The left one may be forged by the client itself: the right one is who reached us.
        assert_eq!(
            xff(&["6.6.6.6, 203.0.113.9, 10.0.0.7"], &proxies),
            ip("203.0.113.9")
        );
        // Fields folded in order: the last field's last value is the nearest hop.
        assert_eq!(
            xff(&["6.6.6.6", "203.0.113.9, 10.0.0.7", ""], &proxies),
            ip("203.0.113.9")
        );
        // All trusted: the leftmost.
        assert_eq!(xff(&["10.1.1.1, 10.2.2.2"], &proxies), ip("10.1.1.1"));
        // No chain: the sender.
        assert_eq!(xff(&[], &proxies), ip("10.0.0.1"));
        assert_eq!(xff(&[" "], &proxies), ip("10.0.0.1"));
    }

    #[test]
    fn a_value_that_is_not_an_address_stops_the_walk_at_the_last_good_one() {
        let proxies = ["10.0.0.0/8"];
        assert_eq!(
            xff(&["203.0.113.9, garbage, 10.0.0.7"], &proxies),
            ip("10.0.0.7")
        );
        assert_eq!(xff(&["203.0.113.9, garbage"], &proxies), ip("10.0.0.1"));
        assert_eq!(xff(&["203.0.113.9,,10.0.0.7"], &proxies), ip("10.0.0.7"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let proxies = ["10.0.0.0/8", "2001:db8:ffff::/48"];
        assert_eq!(xff(&["203.0.113.9:5555"], &proxies), ip("203.0.113.9"));
        assert_eq!(xff(&["[2001:db8::1]:80"], &proxies), ip("2001:db8::1"));
        assert_eq!(xff(&["[2001:db8::1]"], &proxies), ip("2001:db8::1"));
        assert_eq!(
            xff(&["2001:db8::1, 2001:db8:ffff::2"], &proxies),
            ip("2001:db8::1")
        );
        assert_eq!(xff(&["::ffff:192.0.2.1"], &proxies), ip("192.0.2.1"));
        // A trusted address written as a mapped one is still trusted.
        assert_eq!(
            xff(&["192.0.2.1, ::ffff:10.0.0.9"], &proxies),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let proxies = ["10.0.0.0/8"];
        assert_eq!(
            fwd(&["for=192.0.2.60;proto=http;by=203.0.113.43"], &proxies),
            ip("192.0.2.60")
        );
        assert_eq!(
            fwd(
                &["for=6.6.6.6, For=\"[2001:db8::1]:80\", for=10.0.0.5"],
                &proxies
            ),
            ip("2001:db8::1")
        );
        // Obfuscated, unknown, or no `for=`: stop at the last good one.
        assert_eq!(
            fwd(&["for=192.0.2.1, for=_hidden"], &proxies),
            ip("10.0.0.1")
        );
        assert_eq!(
            fwd(&["for=192.0.2.1, for=unknown, for=10.0.0.5"], &proxies),
            ip("10.0.0.5")
        );
        assert_eq!(fwd(&["proto=https"], &proxies), ip("10.0.0.1"));
        // X-Forwarded-For wins when both came.
        let values: [&[u8]; 1] = [b"203.0.113.1"];
        let forwarded: [&[u8]; 1] = [b"for=198.51.100.1"];
        assert_eq!(
            resolve_client(&values, &forwarded, ip("10.0.0.1"), &trusted(&proxies)),
            ip("203.0.113.1")
        );
    }
}
