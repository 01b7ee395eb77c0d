//! Request ids: 20 hex digits, unique per process without coordination between workers —
//! a per-process random prefix, the worker id, and the worker's own sequence number. And the
//! W3C trace ids of the traces the proxy starts ([`TraceIds`]): random, from a per-worker
//! generator seeded by the OS.

use crate::http::{TracePrefix, Traceparent};
use crate::upstream::balancer::Rng;
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    pub fn new(worker: usize) -> Self {
        // RandomState is seeded from the OS once per process (then incremented per instance).
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let random = hasher.finish() & 0xffff_ffff;
        Self {
            prefix: (random << 8) | (worker as u64 & 0xff),
            next: Cell::new(0),
        }
    }

    /// The next id, e.g. `3f2a91c0070000000001a`. Written digit by digit: one per request, and
    /// `format!` cost more than the rest of the id's work together (bench/ profile).
    pub fn next_id(&self) -> String {
        let seq = self.next.get();
        self.next.set(seq.wrapping_add(1));
        let mut id = [0u8; 20];
        write_hex(&mut id[..10], self.prefix);
        write_hex(&mut id[10..], seq & 0xff_ffff_ffff);
        // Hex digits are ASCII, so this never falls back to the empty id.
        std::str::from_utf8(&id).unwrap_or_default().to_owned()
    }
}

/// Writes the low `out.len()` hex digits of `n` into `out`, zero-padded, lowercase.
fn write_hex(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// New W3C traces for requests that arrive without a `traceparent`.
#[derive(Debug)]
pub struct TraceIds {
    rng: Rng,
    /// The high half of every trace id this worker starts (random once).
    prefix: TracePrefix,
}

impl TraceIds {
    pub fn new(worker: usize) -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(worker);
        let rng = Rng::seeded(hasher.finish());
        let prefix = TracePrefix::new(rng.next_u64());
        Self { rng, prefix }
    }

    /// A new trace: this worker's random prefix and 64 random bits make the trace id, 64 more
    /// the parent id.
    pub fn start(&self) -> Traceparent {
        Traceparent::start(&self.prefix, self.rng.next_u64(), self.rng.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_traces_differ() {
        let ids = TraceIds::new(0);
        let (a, b) = (ids.start(), ids.start());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(TraceIds::new(0).start(), TraceIds::new(0).start());
    }

    #[test]
    fn ids_are_distinct_fixed_width_hex_and_differ_between_workers() {
        let a = RequestIds::new(0);
        let b = RequestIds::new(1);
        let ids = [a.next_id(), a.next_id(), b.next_id()];
        assert!(ids
            .iter()
            .all(|id| id.len() == 20 && id.bytes().all(|c| c.is_ascii_hexdigit())));
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
    }

    #[test]
    fn ids_are_the_prefix_then_the_sequence_in_zero_padded_hex() {
        let ids = RequestIds::new(7);
        ids.next.set(0x1a);
        let expected = format!("{:010x}{:010x}", ids.prefix, 0x1a);
        assert_eq!(ids.next_id(), expected);
        ids.next.set(0xff_ffff_ffff + 2);
        assert!(
            ids.next_id().ends_with("0000000001"),
            "the sequence wraps at 40 bits"
        );
    }
}
