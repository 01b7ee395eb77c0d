//! A stable 64-bit hash for consistent hashing: the same bytes give the same value in every
//! process, on every build, forever (std's `DefaultHasher` promises none of that). FNV-1a over
//! the bytes, then the SplitMix64 finalizer so that similar inputs ("user-1", "user-2") land far
//! apart.

use std::net::IpAddr;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hash of `bytes` under `seed` (different seeds give independent hashes of the same bytes).
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET ^ mix(seed);
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    mix(hash)
}

/// Hash of a client address (its octets, not its text form).
pub fn hash_ip(ip: IpAddr) -> u64 {
    hash_ip_seeded(0, ip)
}

/// Hash of a client address under `seed` (see [`hash_bytes`]).
pub fn hash_ip_seeded(seed: u64, ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(seed, &v4.octets()),
        // An IPv4-mapped IPv6 address is the same client as the IPv4 one.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(seed, &v4.octets()),
            None => hash_bytes(seed, &v6.octets()),
        },
    }
}

/// SplitMix64's finalizer: a bijection that spreads every input bit over the output.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned_across_builds() {
        // These exact values make the Maglev tables, and so session affinity, identical across
        // lbproxy versions and processes. Changing them moves every key: do not, lightly.
        assert_eq!(hash_bytes(0, b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(hash_bytes(0, b"user-1"), 0xc499_b5f8_a721_df58);
        assert_ne!(hash_bytes(0, b"user-1"), hash_bytes(0, b"user-2"));
        assert_ne!(hash_bytes(1, b"user-1"), hash_bytes(0, b"user-1"));
    }

    #[test]
    fn mapped_ipv4_hashes_as_ipv4() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(hash_ip(v4), hash_ip(mapped));
        assert_ne!(hash_ip(v4), hash_ip("10.1.2.4".parse().unwrap()));
    }
}
