//! Response compression, counted per coding: responses compressed to their end, the bytes the
//! encoder took (the backend's body) and gave (what went to the client, before chunk framing).
//!
//! Like the other statistics, a worker owns its [`CompressionStats`] (`Cell`s only) and adds to
//! it once per compressed response, when the request's record is counted (`l7/record.rs`); its
//! tick publishes a [`CompressionCounts`], which the control side sums over the workers and
//! `/metrics` shows as `lbproxy_compression_*{algorithm}`.

use super::counters::Counter;
use crate::config::Encoding;

/// The codings in the order of the counts' arrays.
pub const CODINGS: [Encoding; 3] = [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd];

fn index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gzip => 0,
        Encoding::Brotli => 1,
        Encoding::Zstd => 2,
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct CompressionStats {
    responses: [Counter; 3],
    bytes_in: [Counter; 3],
    bytes_out: [Counter; 3],
}

impl CompressionStats {
    /// A response compressed with `encoding` from `bytes_in` to `bytes_out` bytes.
    pub fn count(&self, encoding: Encoding, bytes_in: u64, bytes_out: u64) {
        let i = index(encoding);
        self.responses[i].inc();
        self.bytes_in[i].add(bytes_in);
        self.bytes_out[i].add(bytes_out);
    }

    pub fn snapshot(&self) -> CompressionCounts {
        let read = |counters: &[Counter; 3]| counters.each_ref().map(Counter::get);
        CompressionCounts {
            responses: read(&self.responses),
            bytes_in: read(&self.bytes_in),
            bytes_out: read(&self.bytes_out),
        }
    }
}

/// Published counts, per coding in [`CODINGS`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompressionCounts {
    pub responses: [u64; 3],
    pub bytes_in: [u64; 3],
    pub bytes_out: [u64; 3],
}

impl CompressionCounts {
    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &CompressionCounts) {
        for i in 0..CODINGS.len() {
            self.responses[i] += other.responses[i];
            self.bytes_in[i] += other.bytes_in[i];
            self.bytes_out[i] += other.bytes_out[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_to_their_coding_and_sum_over_workers() {
        let one = CompressionStats::default();
        one.count(Encoding::Brotli, 1000, 200);
        one.count(Encoding::Brotli, 500, 100);
        one.count(Encoding::Gzip, 10, 30);
        let two = CompressionStats::default();
        two.count(Encoding::Zstd, 7, 5);
        let mut total = one.snapshot();
        total.merge(&two.snapshot());
        assert_eq!(total.responses, [1, 2, 1]);
        assert_eq!(total.bytes_in, [10, 1500, 7]);
        assert_eq!(total.bytes_out, [30, 300, 5]);
    }
}
