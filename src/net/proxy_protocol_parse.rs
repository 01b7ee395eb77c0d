//! Reading a PROXY protocol header (HAProxy's spec, versions 1 and 2), sans-io: what a load
//! balancer in front of a listener with `accept_proxy_protocol = true` writes before the
//! client's first byte.
//!
//! Flow: [`parse`] is given the bytes received so far. It answers [`Parsed::Partial`] only
//! while every one of them belongs to a header not yet complete, so the caller may consume them
//! all and read on; [`Parsed::Complete`] says how many leading bytes are the header (the rest
//! is the client's, and must be left unread); an error says what is malformed. Version 1 is one
//! text line of at most [`V1_MAX`] bytes; version 2 a 16-byte fixed part and the length it
//! declares, whose TLVs are skipped. A `LOCAL` command (v2) or `UNKNOWN` family (v1) names no
//! client: the connection's own peer is the client ([`Parsed::Complete`] with `None`).
//!
//! Written here rather than taken from the `ppp` crate: the writer of the same headers lives
//! next door (`proxy_protocol`), the reader needs the exact "every byte so far is header"
//! answer that lets the worker consume the header without reading past it, and the whole
//! format is ~150 lines of checks, each unit-tested below.

use super::proxy_protocol::V2_SIGNATURE;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CRLF included (the spec's 107 bytes).
pub const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_FIXED: usize = 16;

/// Where a header stands in the bytes given to [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte given is part of a header that goes on.
    Partial,
    /// The header is the first `len` bytes; `addresses` are its `(source, destination)`, or
    /// `None` when it names none (v2 `LOCAL`, v1 `UNKNOWN`, v2 `UNSPEC`/`UNIX` families): the
    /// TCP peer is the client.
    Complete {
        len: usize,
        addresses: Option<(SocketAddr, SocketAddr)>,
    },
}

/// Why bytes are not a PROXY header (for a debug log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Where the header in `buf` (the bytes received so far, from the first) stands.
pub fn parse(buf: &[u8]) -> Result<Parsed, Malformed> {
    match buf.first() {
        None => Ok(Parsed::Partial),
        Some(b'P') => v1(buf),
        Some(b'\r') => v2(buf),
        Some(_) => Err(Malformed(
            "no PROXY header: the connection starts with other bytes",
        )),
    }
}

fn v1(buf: &[u8]) -> Result<Parsed, Malformed> {
    let prefix = buf.len().min(V1_PREFIX.len());
    if buf[..prefix] != V1_PREFIX[..prefix] {
        return Err(Malformed("bad v1 signature (not `PROXY `)"));
    }
    let Some(lf) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Malformed("v1 header longer than 107 bytes"))
        } else {
            Ok(Parsed::Partial)
        };
    };
    let len = lf + 1;
    let line = buf[..lf]
        .strip_suffix(b"\r")
        .ok_or(Malformed("v1 header ends in a bare LF"))?;
    let line = std::str::from_utf8(&line[V1_PREFIX.len()..])
        .map_err(|_| Malformed("v1 header is not ASCII"))?;
    let mut words = line.split(' ');
    let family = words.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored (the spec).
        return Ok(Parsed::Complete {
            len,
            addresses: None,
        });
    }
    let v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(Malformed("v1 family is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = words.collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(Malformed("v1 header needs two addresses and two ports"));
    };
    let ip = |text: &str| -> Result<IpAddr, Malformed> {
        if v4 {
            text.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| Malformed("v1 TCP4 address is not an IPv4 address"))
        } else {
            text.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| Malformed("v1 TCP6 address is not an IPv6 address"))
        }
    };
    let port = |text: &str| -> Result<u16, Malformed> {
        let digits =
            !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = text.len() > 1 && text.starts_with('0');
        match text.parse::<u16>() {
            Ok(port) if digits && !leading_zero => Ok(port),
            _ => Err(Malformed("v1 port is not a number from 0 to 65535")),
        }
    };
    Ok(Parsed::Complete {
        len,
        addresses: Some((
            SocketAddr::new(ip(source)?, port(source_port)?),
            SocketAddr::new(ip(destination)?, port(destination_port)?),
        )),
    })
}

fn v2(buf: &[u8]) -> Result<Parsed, Malformed> {
    let prefix = buf.len().min(V2_SIGNATURE.len());
    if buf[..prefix] != V2_SIGNATURE[..prefix] {
        return Err(Malformed("bad v2 signature"));
    }
    if buf.len() <= V2_SIGNATURE.len() {
        return Ok(Parsed::Partial);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(Malformed("v2 header of a version other than 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Malformed("v2 command is neither LOCAL nor PROXY")),
    };
    let Some(&family_protocol) = buf.get(13) else {
        return Ok(Parsed::Partial);
    };
    let (family, protocol) = (family_protocol >> 4, family_protocol & 0x0f);
    if family > 3 || protocol > 2 {
        return Err(Malformed("v2 address family or protocol is unknown"));
    }
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Partial);
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = V2_FIXED + body_len;
    if buf.len() < len {
        return Ok(Parsed::Partial);
    }
    let body = &buf[V2_FIXED..len];
    if local {
        // The proxy's own connection (a health check): addresses, if any, are ignored.
        return Ok(Parsed::Complete {
            len,
            addresses: None,
        });
    }
    if protocol == 2 {
        return Err(Malformed(
            "v2 header of a datagram connection on a TCP listener",
        ));
    }
    let addresses = match family {
        1 => {
            let a = body
                .get(..12)
                .ok_or(Malformed("v2 AF_INET header shorter than its addresses"))?;
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(Malformed("v2 AF_INET6 header shorter than its addresses"))?;
            let ip = |i: usize| {
                let octets: [u8; 16] = a[i..i + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        // UNSPEC or a UNIX socket: no address the proxy can use; the peer stands in.
        _ => None,
    };
    Ok(Parsed::Complete { len, addresses })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyProtocol;
    use crate::net::proxy_protocol::{header, local};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> (usize, Option<(SocketAddr, SocketAddr)>) {
        match parse(buf) {
            Ok(Parsed::Complete { len, addresses }) => (len, addresses),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn malformed(buf: &[u8]) -> &'static str {
        match parse(buf) {
            Err(Malformed(why)) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// Every prefix of a header is `Partial`, the header and anything after it `Complete` with
    /// the header's length.
    fn round_trip(bytes: &[u8], expected: Option<(SocketAddr, SocketAddr)>) {
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(Parsed::Partial), "cut at {cut}");
        }
        let mut with_request = bytes.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(complete(&with_request), (bytes.len(), expected));
        assert_eq!(complete(bytes), (bytes.len(), expected));
    }

    #[test]
    fn the_headers_the_proxy_writes_read_back() {
        for version in [ProxyProtocol::V1, ProxyProtocol::V2] {
            for (source, destination) in [
                ("203.0.113.7:51234", "10.0.0.1:443"),
                ("[2001:db8::7]:5", "[::1]:443"),
                ("192.0.2.1:0", "192.0.2.2:65535"),
            ] {
                let (source, destination) = (addr(source), addr(destination));
                let bytes = header(version, source, destination);
                round_trip(&bytes, Some((source, destination)));
            }
            round_trip(&local(version), None);
        }
    }

    #[test]
    fn v1_unknown_names_no_client_whatever_follows() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (15, None));
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET";
        assert_eq!(complete(line), (line.len() - 3, None));
    }

    #[test]
    fn v1_longest_header_fits_and_one_byte_more_does_not() {
        // The spec's worst case: UNKNOWN followed by the longest TCP6 addresses and ports.
        let longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                       ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX);
        assert_eq!(complete(longest.as_bytes()), (V1_MAX, None));
        let too_long = format!("PROXY UNKNOWN {}", "x".repeat(V1_MAX));
        assert_eq!(
            malformed(too_long.as_bytes()),
            "v1 header longer than 107 bytes"
        );
        // One byte short of the limit with no end yet: still a header going on.
        assert_eq!(
            parse(&too_long.as_bytes()[..V1_MAX - 1]),
            Ok(Parsed::Partial)
        );
    }

    #[test]
    fn malformed_v1_headers_are_refused() {
        for (bytes, why) in [
            (
                &b"GET / HTTP/1.1\r\n"[..],
                "no PROXY header: the connection starts with other bytes",
            ),
            (b"PROXX TCP4", "bad v1 signature (not `PROXY `)"),
            (
                b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ),
            (
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "v1 header ends in a bare LF",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "v1 header needs two addresses and two ports",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                "v1 header needs two addresses and two ports",
            ),
            (
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                "v1 header needs two addresses and two ports",
            ),
            (
                b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
                "v1 TCP4 address is not an IPv4 address",
            ),
            (
                b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
                "v1 TCP4 address is not an IPv4 address",
            ),
            (
                b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
                "v1 TCP6 address is not an IPv6 address",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                "v1 port is not a number from 0 to 65535",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
                "v1 port is not a number from 0 to 65535",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
                "v1 port is not a number from 0 to 65535",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n",
                "v1 header is not ASCII",
            ),
        ] {
            assert_eq!(
                malformed(bytes),
                why,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    fn v2_bytes(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(version_command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v2_tlvs_are_skipped_and_local_names_no_client() {
        let mut body = vec![192, 0, 2, 1, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb];
        // PP2_TYPE_AUTHORITY "a.example" and a NOOP: skipped.
        body.extend_from_slice(&[0x02, 0, 9]);
        body.extend_from_slice(b"a.example");
        body.extend_from_slice(&[0x04, 0, 2, 0, 0]);
        let bytes = v2_bytes(0x21, 0x11, &body);
        round_trip(&bytes, Some((addr("192.0.2.1:8080"), addr("10.0.0.1:443"))));
        // LOCAL with addresses: they are ignored.
        round_trip(&v2_bytes(0x20, 0x11, &body), None);
        // PROXY over UNSPEC or a UNIX socket: no usable address, the peer stands in.
        round_trip(&v2_bytes(0x21, 0x00, &[]), None);
        round_trip(&v2_bytes(0x21, 0x31, &[0; 216]), None);
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        let mut bad_signature = V2_SIGNATURE.to_vec();
        bad_signature[11] = b'X';
        for (bytes, why) in [
            (bad_signature, "bad v2 signature"),
            (b"\r\n\r\n\0\r\nQUIT\r".to_vec(), "bad v2 signature"),
            (
                v2_bytes(0x11, 0x11, &[0; 12]),
                "v2 header of a version other than 2",
            ),
            (
                v2_bytes(0x31, 0x11, &[0; 12]),
                "v2 header of a version other than 2",
            ),
            (
                v2_bytes(0x22, 0x11, &[0; 12]),
                "v2 command is neither LOCAL nor PROXY",
            ),
            (
                v2_bytes(0x21, 0x41, &[0; 12]),
                "v2 address family or protocol is unknown",
            ),
            (
                v2_bytes(0x21, 0x13, &[0; 12]),
                "v2 address family or protocol is unknown",
            ),
            (
                v2_bytes(0x21, 0x12, &[0; 12]),
                "v2 header of a datagram connection on a TCP listener",
            ),
            (
                v2_bytes(0x21, 0x11, &[0; 11]),
                "v2 AF_INET header shorter than its addresses",
            ),
            (
                v2_bytes(0x21, 0x21, &[0; 12]),
                "v2 AF_INET6 header shorter than its addresses",
            ),
        ] {
            assert_eq!(malformed(&bytes), why, "{bytes:?}");
        }
        // A header that declares more bytes than came: incomplete (the deadline ends it).
        let truncated = v2_bytes(0x21, 0x11, &[0; 12]);
        assert_eq!(parse(&truncated[..20]), Ok(Parsed::Partial));
    }
}
