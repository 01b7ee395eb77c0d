//! PROXY protocol headers (HAProxy's spec, versions 1 and 2), written to a backend before any
//! byte of the client's, so the backend sees the client's address instead of the proxy's.
//!
//! The source is the client's address, the destination the address it connected to (the
//! listener's). An IPv4 client on a dual-stack listener appears as an IPv4-mapped IPv6 address;
//! it is sent as the IPv4 address it is. [`local`] is the header of a connection the proxy makes
//! on its own behalf (a health probe): it carries no addresses.

use crate::config::ProxyProtocol;
use std::net::{IpAddr, SocketAddr};

/// The fixed first 12 bytes of a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a client at `source` that connected to `destination`.
pub fn header(version: ProxyProtocol, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyProtocol::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyProtocol::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            // Version 2, command PROXY.
            out.push(0x21);
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // AF_INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21); // AF_INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            out
        }
    }
}

/// The header of a connection with no client behind it (v1 `UNKNOWN`, v2 command `LOCAL`): the
/// backend uses the connection's own addresses.
pub fn local(version: ProxyProtocol) -> Vec<u8> {
    match version {
        ProxyProtocol::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

/// Both addresses in one family: IPv4-mapped addresses as IPv4 when both are, otherwise both as
/// IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |addr: SocketAddr| match addr.ip() {
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    };
    let (a, b) = (unmap(a), unmap(b));
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let map = |addr: SocketAddr| SocketAddr::new(IpAddr::V6(v6(addr.ip())), addr.port());
    (map(a), map(b))
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_is_one_text_line() {
        let h = header(
            ProxyProtocol::V1,
            addr("203.0.113.7:51234"),
            addr("10.0.0.1:443"),
        );
        assert_eq!(h, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n");
        let h = header(
            ProxyProtocol::V1,
            addr("[2001:db8::7]:5"),
            addr("[::1]:443"),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::7 ::1 5 443\r\n");
        assert_eq!(local(ProxyProtocol::V1), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_is_the_binary_layout() {
        let h = header(
            ProxyProtocol::V2,
            addr("203.0.113.7:51234"),
            addr("10.0.0.1:443"),
        );
        let mut expected = V2_SIGNATURE.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 7, 10, 0, 0, 1]);
        expected.extend_from_slice(&51234u16.to_be_bytes());
        expected.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(h, expected);

        let h = header(
            ProxyProtocol::V2,
            addr("[2001:db8::7]:5"),
            addr("[::1]:443"),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(
            &h[16..32],
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&h[48..52], &[0, 5, 1, 187]);
        assert_eq!(local(ProxyProtocol::V2)[12..], [0x20, 0, 0, 0]);
    }

    #[test]
    fn mapped_addresses_are_sent_as_ipv4_and_mixed_families_as_ipv6() {
        let h = header(
            ProxyProtocol::V1,
            addr("[::ffff:192.0.2.1]:1000"),
            addr("[::ffff:127.0.0.1]:80"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 80\r\n");
        let h = header(ProxyProtocol::V1, addr("192.0.2.1:1000"), addr("[::1]:80"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1000 80\r\n");
    }
}
