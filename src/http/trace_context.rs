//! W3C Trace Context (`traceparent`, <https://www.w3.org/TR/trace-context/>): what the proxy
//! forwards so that a request can be followed through the services behind it.
//!
//! The proxy records no spans of its own, so a valid incoming `traceparent` is passed on
//! unchanged; a request without one (or with one that does not parse) starts a trace: a new
//! random trace id and parent id, flagged sampled so that the services behind the proxy record
//! it. Exactly one `traceparent` goes upstream either way (written after `X-Request-Id`), and its
//! trace id goes into the access log next to the request id.

use std::fmt;

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LEN: usize = 55;

/// A valid version-00 `traceparent` value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Traceparent([u8; TRACEPARENT_LEN]);

impl Traceparent {
    /// Parses a received value. A later version is read as version 00 (its first 55 characters,
    /// followed by nothing or `-`), as the specification asks; anything else is `None`.
    pub fn parse(value: &[u8]) -> Option<Self> {
        Self::valid_prefix(value).map(Self::from_valid)
    }

    /// The 55 characters of `value` that make a valid `traceparent` (any version but `ff`), or
    /// `None`. No copy: the request parser keeps this slice.
    pub fn valid_prefix(value: &[u8]) -> Option<&[u8]> {
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = &value[..2];
        if !is_lower_hex(version) || version == b"ff" {
            return None;
        }
        let fits = if version == b"00" {
            value.len() == TRACEPARENT_LEN
        } else {
            value.len() == TRACEPARENT_LEN || value[TRACEPARENT_LEN] == b'-'
        };
        let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
        let valid = fits
            && value[2] == b'-'
            && value[35] == b'-'
            && value[52] == b'-'
            && is_lower_hex(trace_id)
            && is_lower_hex(parent_id)
            && is_lower_hex(flags)
            && trace_id.iter().any(|&b| b != b'0')
            && parent_id.iter().any(|&b| b != b'0');
        valid.then(|| &value[..TRACEPARENT_LEN])
    }

    /// A [`Traceparent::valid_prefix`] as a version-00 value.
    pub fn from_valid(valid: &[u8]) -> Self {
        let mut bytes = [0; TRACEPARENT_LEN];
        bytes.copy_from_slice(valid);
        bytes[..2].copy_from_slice(b"00");
        Self(bytes)
    }

    /// A new trace, sampled: trace id `prefix` then `low`, parent id `parent_id`. Zero ids
    /// (invalid) are replaced by 1.
    pub fn start(prefix: &TracePrefix, low: u64, parent_id: u64) -> Self {
        let low = if low == 0 && prefix.0 == *b"0000000000000000" {
            1
        } else {
            low
        };
        let mut bytes = [b'-'; TRACEPARENT_LEN];
        bytes[..2].copy_from_slice(b"00");
        bytes[3..19].copy_from_slice(&prefix.0);
        bytes[19..35].copy_from_slice(&hex16(low));
        bytes[36..52].copy_from_slice(&hex16(parent_id.max(1)));
        bytes[53..].copy_from_slice(b"01");
        Self(bytes)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a traceparent is ASCII")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.as_str()[3..35]
    }
}

impl fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Traceparent({})", self.as_str())
    }
}

/// The high half of the trace ids one worker starts, as hex: random once per worker, so that a
/// trace costs two random numbers (the low half and the parent id) rather than three. W3C Trace
/// Context level 2 asks for the right-most seven bytes of a trace id to be random; all eight are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracePrefix([u8; 16]);

impl TracePrefix {
    pub fn new(random: u64) -> Self {
        Self(hex16(random))
    }
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `value` as 16 lowercase hex digits, most significant first, without a loop: each half is
/// spread to one nibble per byte, then every byte becomes its digit at once (`'0' + n`, plus
/// `'a' - '0' - 10` where `n >= 10`, which `n + 6` overflowing into bit 4 tells).
fn hex16(value: u64) -> [u8; 16] {
    fn digits(half: u32) -> [u8; 8] {
        let x = u64::from(half);
        let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        let nibbles = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
        let letters = ((nibbles + 0x0606_0606_0606_0606) & 0x1010_1010_1010_1010) >> 4;
        (nibbles + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
    }
    let mut out = [0; 16];
    out[..8].copy_from_slice(&digits((value >> 32) as u32));
    out[8..].copy_from_slice(&digits(value as u32));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_parses_and_keeps_its_value() {
        let parsed = Traceparent::parse(VALID).expect("valid");
        assert_eq!(parsed.as_bytes(), VALID);
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn invalid_values_are_refused() {
        let text = std::str::from_utf8(VALID).unwrap();
        for bad in [
            text.replace(
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "00000000000000000000000000000000",
            ),
            text.replace("00f067aa0ba902b7", "0000000000000000"),
            text.to_uppercase(),
            text.replacen("00-", "ff-", 1),
            format!("{text}-extra"),
            text[..54].to_owned(),
            text.replace('-', "_"),
        ] {
            assert_eq!(Traceparent::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        assert_eq!(Traceparent::parse(later).unwrap().as_bytes(), VALID);
        let glued = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(Traceparent::parse(glued), None);
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        for value in [
            0,
            1,
            9,
            10,
            15,
            0xabcdef,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            0xf0f0_0f0f_a5a5_5a5a,
        ] {
            assert_eq!(
                hex16(value),
                format!("{value:016x}").as_bytes(),
                "{value:#x}"
            );
        }
    }

    #[test]
    fn a_started_trace_is_valid_and_sampled() {
        let started = Traceparent::start(&TracePrefix::new(0x1f), 0xabc, 0x12);
        assert_eq!(
            started.as_str(),
            "00-000000000000001f0000000000000abc-0000000000000012-01"
        );
        assert_eq!(Traceparent::parse(started.as_bytes()), Some(started));
        let zero = Traceparent::start(&TracePrefix::new(0), 0, 0);
        assert!(Traceparent::parse(zero.as_bytes()).is_some(), "{zero:?}");
        let random = Traceparent::start(
            &TracePrefix::new(u64::MAX - 5),
            0x0123_4567_89ab_cdef,
            u64::MAX,
        );
        assert_eq!(
            random.as_str(),
            format!(
                "00-{:016x}{:016x}-{:016x}-01",
                u64::MAX - 5,
                0x0123_4567_89ab_cdef_u64,
                u64::MAX
            )
        );
    }
}
