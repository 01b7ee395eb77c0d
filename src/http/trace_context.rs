//! W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/): what the proxy
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

    /// A new trace, sampled, from a 128-bit trace id (two halves) and a 64-bit parent id. Zero
    /// ids (invalid) are replaced by 1.
    pub fn start(trace_id: (u64, u64), parent_id: u64) -> Self {
        let trace_id = if trace_id == (0, 0) { (0, 1) } else { trace_id };
        let mut bytes = *b"00-00000000000000000000000000000000-0000000000000000-01";
        write_hex(&mut bytes[3..19], trace_id.0);
        write_hex(&mut bytes[19..35], trace_id.1);
        write_hex(&mut bytes[36..52], parent_id.max(1));
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

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Two lowercase hex digits for every byte value (a table: a started trace costs 24 lookups
/// rather than 48 divisions of a nibble).
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
        byte += 1;
    }
    pairs
};

/// Writes `value` as 16 lowercase hex digits into `out` (16 bytes), most significant first.
fn write_hex(out: &mut [u8], value: u64) {
    for (digits, byte) in out.chunks_exact_mut(2).zip(value.to_be_bytes()) {
        digits.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
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
    fn a_started_trace_is_valid_and_sampled() {
        let started = Traceparent::start((0x1f, 0xabc), 0x12);
        assert_eq!(
            started.as_str(),
            "00-000000000000001f0000000000000abc-0000000000000012-01"
        );
        assert_eq!(Traceparent::parse(started.as_bytes()), Some(started));
        assert!(Traceparent::parse(Traceparent::start((0, 0), 0).as_bytes()).is_some());
        let random = Traceparent::start((u64::MAX - 5, 0x0123_4567_89ab_cdef), u64::MAX);
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
