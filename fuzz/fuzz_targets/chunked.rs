//! Chunked bodies: `lbproxy::http::ChunkedDecoder`, split-point invariance.
//!
//! Input: one flags byte, then as many cut bytes as the flags say, then the body bytes.
//! - flags bits 0-1: the output (re-chunked with trailers, re-chunked without, payload only);
//! - bits 2-4: how many cut bytes follow (0 to 7); each cuts the body at `byte * len / 256`.
//!
//! The body is decoded in one call, and again fed in the pieces the cuts make (and, for short
//! bodies, one byte at a time) the way the proxy feeds reads: unconsumed bytes kept, the next
//! read appended. Every way must give the same output, the same verdict (error, done, or needs
//! more) and the same bytes left over. Then, for a finished body, the output is checked: payload
//! only is as long as the payload counted; a re-chunked body decodes again to itself (a second
//! parser reads the same, and the encoding is canonical).

#![no_main]

use lbproxy::http::{ChunkedDecoder, ChunkedError, ChunkedOutput};
use libfuzzer_sys::fuzz_target;

const OUTPUTS: [ChunkedOutput; 3] = [
    ChunkedOutput::Chunked {
        keep_trailers: true,
    },
    ChunkedOutput::Chunked {
        keep_trailers: false,
    },
    ChunkedOutput::Payload,
];

/// Bodies up to this long are also fed one byte at a time.
const BYTEWISE_MAX: usize = 512;

/// What feeding a body gave.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    out: Vec<u8>,
    error: Option<ChunkedError>,
    done: bool,
    /// Input not consumed: after `done`, the next message; otherwise an incomplete line. Empty
    /// after an error (`decode` then says nothing of what it consumed).
    rest: Vec<u8>,
    /// Payload bytes counted; 0 after an error, for the same reason.
    payload: u64,
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let output = OUTPUTS[usize::from(flags & 3) % OUTPUTS.len()];
    let cut_count = usize::from((flags >> 2) & 7).min(data.len());
    let (cut_bytes, body) = data.split_at(cut_count);
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&b| usize::from(b) * body.len() / 256)
        .collect();
    cuts.sort_unstable();

    let whole = feed(output, body, &[]);
    let split = feed(output, body, &cuts);
    assert_eq!(split, whole, "cuts {cuts:?}");
    if body.len() <= BYTEWISE_MAX {
        let every: Vec<usize> = (1..body.len()).collect();
        assert_eq!(feed(output, body, &every), whole, "one byte at a time");
    }

    if whole.done {
        assert!(whole.error.is_none());
        match output {
            ChunkedOutput::Payload => assert_eq!(whole.out.len() as u64, whole.payload),
            ChunkedOutput::Chunked { .. } => {
                let again = feed(output, &whole.out, &[]);
                assert_eq!(again.out, whole.out, "re-chunked output is not canonical");
                assert!(again.done && again.error.is_none() && again.rest.is_empty());
                assert_eq!(again.payload, whole.payload);
            }
        }
    }
});

/// Feeds `body` cut at `cuts` (sorted), as the proxy feeds its reads.
fn feed(output: ChunkedOutput, body: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = ChunkedDecoder::new(output);
    let mut outcome = Outcome {
        out: Vec::new(),
        error: None,
        done: false,
        rest: Vec::new(),
        payload: 0,
    };
    let mut start = 0;
    for end in cuts.iter().copied().chain([body.len()]) {
        outcome.rest.extend_from_slice(&body[start..end]);
        start = end;
        match decoder.decode(&outcome.rest, &mut outcome.out) {
            Ok(progress) => {
                assert!(progress.consumed <= outcome.rest.len());
                outcome.payload += progress.payload;
                outcome.rest.drain(..progress.consumed);
                if progress.done {
                    assert!(decoder.is_done());
                    outcome.done = true;
                    outcome.rest.extend_from_slice(&body[start..]);
                    return outcome;
                }
            }
            Err(error) => {
                // Errors are sticky.
                let mut scratch = Vec::new();
                assert_eq!(
                    decoder.decode(b"0\r\n\r\n", &mut scratch),
                    Err(error.clone())
                );
                assert!(scratch.is_empty());
                outcome.error = Some(error);
                outcome.rest.clear();
                outcome.payload = 0;
                return outcome;
            }
        }
    }
    outcome
}
