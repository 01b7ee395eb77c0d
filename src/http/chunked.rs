//! Chunked transfer coding (RFC 9112 §7.1): a strict, resumable decoder that re-encodes as it goes.
//!
//! The decoder never forwards a "valid prefix" of something invalid: bytes are written to `out`
//! only once the chunk header they belong to has been fully validated. Feeding the same input in
//! any split produces the same output and the same error.
//!
//! Flow: a small state machine (chunk header → data → CRLF → … → last chunk → trailer lines →
//! done). Line syntax lives in `chunk_lines.rs`; this file decides what is written. Chunk data is
//! streamed as soon as its validated header is out, so no body is ever buffered here; an
//! incomplete header or trailer line is left unconsumed for the caller to feed again.
//!
//! What an error leaves behind: `out` may already hold complete earlier chunks and, for the
//! "data longer or shorter than declared" case, the declared bytes of the current chunk without
//! its closing CRLF. Either way the message is unfinished on the wire, so the caller must close
//! the connection it was writing to (and never reuse it), which is what docs/http.md asks.

use super::chunk_lines::{scan_chunk_header, scan_trailer_line, TrailerLine};
use super::headers::{classify, push_field, push_hex, KnownField};

/// What the decoder writes while it consumes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedOutput {
    /// Re-encode as canonical chunked (`{size:x}\r\n{data}\r\n`, `0\r\n`, trailers, `\r\n`),
    /// chunk extensions dropped. `keep_trailers` forwards trailer fields.
    Chunked { keep_trailers: bool },
    /// Write the payload only (for a client leg that is not chunked).
    Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body: {0}")]
pub struct ChunkedError(pub &'static str);

/// Progress of one `decode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeProgress {
    /// Input bytes consumed; the caller drops them. Bytes not consumed (an incomplete chunk
    /// header or trailer line) must be fed again, with more appended.
    pub consumed: usize,
    /// Payload bytes (chunk data) decoded in this call.
    pub payload: u64,
    /// The last chunk and trailer section are complete; bytes after `consumed` belong to the
    /// next message.
    pub done: bool,
}

/// Resumable chunked decoder. Limits: chunk-size up to 16 hex digits with no overflow, chunk
/// header line and each trailer line at most 4 KiB, trailer section at most 16 KiB.
///
/// Trailer fields that the codec gives a meaning to (framing, Host, hop-by-hop fields,
/// forwarding fields) are never forwarded, even with `keep_trailers`.
#[derive(Debug)]
pub struct ChunkedDecoder {
    output: ChunkedOutput,
    state: State,
}

/// Most bytes of trailer field lines after the last chunk.
const MAX_TRAILER_SECTION: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting `chunk-size [chunk-ext] CRLF`.
    ChunkHeader,
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: field lines, then the empty line. `section` counts field bytes.
    Trailers {
        section: usize,
    },
    Done,
    /// An error was returned; every later call returns it again.
    Failed(&'static str),
}

impl ChunkedDecoder {
    pub fn new(output: ChunkedOutput) -> Self {
        ChunkedDecoder {
            output,
            state: State::ChunkHeader,
        }
    }

    /// Consumes as much of `input` as possible, appending to `out`.
    ///
    /// Returns with `consumed < input.len()` when the rest is an incomplete line (feed it again
    /// with more bytes) or, with `done`, belongs to the next message. After an error, every call
    /// returns that error again.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<DecodeProgress, ChunkedError> {
        let mut consumed = 0;
        let mut payload = 0;
        while let Some(step) = self.step(&input[consumed..], out)? {
            consumed += step.consumed;
            payload += step.payload;
        }
        Ok(DecodeProgress {
            consumed,
            payload,
            done: self.state == State::Done,
        })
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// One transition; `None` when it needs more input (or is done).
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<Step>, ChunkedError> {
        let result = self.transition(input, out);
        if let Err(error) = &result {
            self.state = State::Failed(error.0);
        }
        result
    }

    fn transition(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Step>, ChunkedError> {
        let reencode = matches!(self.output, ChunkedOutput::Chunked { .. });
        match self.state {
            State::ChunkHeader => {
                let Some(header) = scan_chunk_header(input)? else {
                    return Ok(None);
                };
                if reencode {
                    push_hex(out, header.size);
                    out.extend_from_slice(b"\r\n");
                }
                self.state = match header.size {
                    0 => State::Trailers { section: 0 },
                    size => State::Data { remaining: size },
                };
                Ok(Some(Step {
                    consumed: header.len,
                    payload: 0,
                }))
            }
            State::Data { remaining } => {
                if input.is_empty() {
                    return Ok(None);
                }
                let taken = remaining.min(input.len() as u64);
                let len = taken as usize;
                out.extend_from_slice(&input[..len]);
                self.state = match remaining - taken {
                    0 => State::DataEnd,
                    remaining => State::Data { remaining },
                };
                Ok(Some(Step {
                    consumed: len,
                    payload: taken,
                }))
            }
            State::DataEnd => match input {
                [b'\r', b'\n', ..] => {
                    if reencode {
                        out.extend_from_slice(b"\r\n");
                    }
                    self.state = State::ChunkHeader;
                    Ok(Some(Step {
                        consumed: 2,
                        payload: 0,
                    }))
                }
                [] | [b'\r'] => Ok(None),
                // Data longer than declared, or shorter (the next header where CRLF should be).
                _ => Err(ChunkedError("chunk data not followed by CRLF")),
            },
            State::Trailers { section } => match scan_trailer_line(input)? {
                None => Ok(None),
                Some(TrailerLine::End) => {
                    if reencode {
                        out.extend_from_slice(b"\r\n");
                    }
                    self.state = State::Done;
                    Ok(Some(Step {
                        consumed: 2,
                        payload: 0,
                    }))
                }
                Some(TrailerLine::Field { name, value, len }) => {
                    let section = section + len;
                    if section > MAX_TRAILER_SECTION {
                        return Err(ChunkedError("trailer section too large"));
                    }
                    let keep = matches!(
                        self.output,
                        ChunkedOutput::Chunked {
                            keep_trailers: true
                        }
                    );
                    if keep
                        && matches!(
                            classify(name),
                            KnownField::Other | KnownField::Traceparent | KnownField::Forwarded
                        )
                    {
                        push_field(out, name, value);
                    }
                    self.state = State::Trailers { section };
                    Ok(Some(Step {
                        consumed: len,
                        payload: 0,
                    }))
                }
            },
            State::Done => Ok(None),
            State::Failed(why) => Err(ChunkedError(why)),
        }
    }
}

/// What one transition consumed.
#[derive(Debug, Clone, Copy)]
struct Step {
    consumed: usize,
    payload: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const KEEP: ChunkedOutput = ChunkedOutput::Chunked {
        keep_trailers: true,
    };
    const DROP: ChunkedOutput = ChunkedOutput::Chunked {
        keep_trailers: false,
    };

    /// Decodes `input` in one call.
    fn decode_all(
        output: ChunkedOutput,
        input: &[u8],
    ) -> (Result<DecodeProgress, ChunkedError>, Vec<u8>) {
        let mut out = Vec::new();
        let result = ChunkedDecoder::new(output).decode(input, &mut out);
        (result, out)
    }

    /// Feeds `input` cut at `cuts`, the way the proxy does: unconsumed bytes stay in a buffer and
    /// the next read is appended. Returns the output, the first error, whether it finished, and
    /// the bytes left over.
    fn decode_split(
        output: ChunkedOutput,
        input: &[u8],
        cuts: &[Index],
    ) -> (Vec<u8>, Option<ChunkedError>, bool, Vec<u8>) {
        let cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
        decode_at(output, input, &cuts)
    }

    fn decode_at(
        output: ChunkedOutput,
        input: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, Option<ChunkedError>, bool, Vec<u8>) {
        let mut decoder = ChunkedDecoder::new(output);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut bounds = cuts.to_vec();
        bounds.sort_unstable();
        bounds.push(input.len());
        let mut start = 0;
        for end in bounds {
            pending.extend_from_slice(&input[start..end]);
            start = end;
            match decoder.decode(&pending, &mut out) {
                Ok(progress) => {
                    pending.drain(..progress.consumed);
                    if progress.done {
                        pending.extend_from_slice(&input[start..]);
                        return (out, None, true, pending);
                    }
                }
                Err(error) => return (out, Some(error), false, pending),
            }
        }
        (out, None, decoder.is_done(), pending)
    }

    #[test]
    fn reencodes_canonically_and_drops_extensions() {
        let input = b"000A;name=val;q=\"x \\\" y\"\r\n0123456789\r\n3\r\nabc\r\n0;last\r\nX-Trace: 1 \r\n\r\nGET /next";
        let (result, out) = decode_all(KEEP, input);
        let progress = result.unwrap();
        assert_eq!(
            out,
            b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\nX-Trace: 1\r\n\r\n"
        );
        assert_eq!(
            progress,
            DecodeProgress {
                consumed: input.len() - b"GET /next".len(),
                payload: 13,
                done: true
            }
        );
    }

    #[test]
    fn trailers_are_forwarded_only_when_asked() {
        let input = b"1\r\na\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
        assert_eq!(
            decode_all(KEEP, input).1,
            b"1\r\na\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
        );
        assert_eq!(decode_all(DROP, input).1, b"1\r\na\r\n0\r\n\r\n");
        assert_eq!(decode_all(ChunkedOutput::Payload, input).1, b"a");
    }

    #[test]
    fn trailer_fields_with_a_meaning_to_the_proxy_are_never_forwarded() {
        let input = b"0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nConnection: close\r\nX-Ok: 1\r\n\r\n";
        let (result, out) = decode_all(KEEP, input);
        assert!(result.unwrap().done);
        assert_eq!(out, b"0\r\nX-Ok: 1\r\n\r\n");
    }

    #[test]
    fn empty_body_is_just_the_last_chunk() {
        let (result, out) = decode_all(DROP, b"0\r\n\r\n");
        assert_eq!(
            result.unwrap(),
            DecodeProgress {
                consumed: 5,
                payload: 0,
                done: true
            }
        );
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn incomplete_lines_are_left_unconsumed() {
        let mut decoder = ChunkedDecoder::new(DROP);
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(b"5;ext", &mut out).unwrap(),
            DecodeProgress {
                consumed: 0,
                payload: 0,
                done: false
            }
        );
        assert!(out.is_empty());
        assert_eq!(
            decoder.decode(b"5;ext\r\nhel", &mut out).unwrap(),
            DecodeProgress {
                consumed: 10,
                payload: 3,
                done: false
            }
        );
        assert_eq!(
            decoder.decode(b"lo\r", &mut out).unwrap(),
            DecodeProgress {
                consumed: 2,
                payload: 2,
                done: false
            }
        );
        assert_eq!(
            decoder.decode(b"\r\n0\r\n\r", &mut out).unwrap(),
            DecodeProgress {
                consumed: 5,
                payload: 0,
                done: false
            }
        );
        assert!(!decoder.is_done());
        assert_eq!(
            decoder.decode(b"\r\n", &mut out).unwrap(),
            DecodeProgress {
                consumed: 2,
                payload: 0,
                done: true
            }
        );
        assert!(decoder.is_done());
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
        // Done: nothing more is consumed.
        assert_eq!(
            decoder.decode(b"5\r\n", &mut out).unwrap(),
            DecodeProgress {
                consumed: 0,
                payload: 0,
                done: true
            }
        );
    }

    /// http.md: chunk size overflow, `0x`/`+`/`-` prefixes, whitespace, bad chunk-ext, data
    /// longer/shorter than declared, bare LF in chunked framing: 400, never a valid prefix.
    #[test]
    fn malformed_chunked_bodies_are_refused() {
        let cases: [(&[u8], &str); 17] = [
            (b"10000000000000000\r\n", "chunk size too long"),
            (b"0x5\r\nhello\r\n0\r\n\r\n", "invalid byte in chunk header"),
            (b"+5\r\nhello\r\n0\r\n\r\n", "missing chunk size"),
            (b"-5\r\nhello\r\n0\r\n\r\n", "missing chunk size"),
            (b" 5\r\nhello\r\n0\r\n\r\n", "missing chunk size"),
            (b"5 \r\nhello\r\n0\r\n\r\n", "invalid byte in chunk header"),
            (
                b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
                "invalid byte in chunk header",
            ),
            (
                b"5;a b\r\nhello\r\n0\r\n\r\n",
                "invalid byte in chunk header",
            ),
            (b"5;\r\nhello\r\n0\r\n\r\n", "invalid chunk extension name"),
            (
                b"5\r\nhelloworld\r\n0\r\n\r\n",
                "chunk data not followed by CRLF",
            ),
            (b"5\r\nhel\r\n0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"5\nhello\r\n0\r\n\r\n", "bare LF in chunk header"),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"5\r\nhello\r\n0\n\n", "bare LF in chunk header"),
            (b"5\r\nhello\r\n0\r\n\n", "bare LF in trailer section"),
            (
                b"0\r\nX-T: 1\r\n folded\r\n\r\n",
                "invalid trailer field name",
            ),
            (
                b"0\r\nX-T: a\0\r\n\r\n",
                "invalid byte in trailer field value",
            ),
        ];
        for (input, error) in cases {
            let (result, _) = decode_all(KEEP, input);
            assert_eq!(
                result,
                Err(ChunkedError(error)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn nothing_of_a_chunk_with_an_invalid_header_is_written() {
        let (result, out) = decode_all(KEEP, b"5\r\nhello\r\n5 \r\nworld\r\n0\r\n\r\n");
        assert_eq!(result, Err(ChunkedError("invalid byte in chunk header")));
        assert_eq!(out, b"5\r\nhello\r\n");
        // Data longer than declared: the chunk is never closed, so it never looks complete.
        let (result, out) = decode_all(KEEP, b"5\r\nhelloEXTRA\r\n0\r\n\r\n");
        assert!(result.is_err());
        assert_eq!(out, b"5\r\nhello");
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = ChunkedDecoder::new(DROP);
        let mut out = Vec::new();
        assert!(decoder.decode(b"z\r\n", &mut out).is_err());
        assert_eq!(
            decoder.decode(b"0\r\n\r\n", &mut out),
            Err(ChunkedError("missing chunk size"))
        );
        assert!(out.is_empty() && !decoder.is_done());
    }

    #[test]
    fn trailer_section_is_limited() {
        let mut input = b"0\r\n".to_vec();
        let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
        while input.len() <= MAX_TRAILER_SECTION {
            input.extend_from_slice(line.as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let (result, out) = decode_all(DROP, &input);
        assert_eq!(result, Err(ChunkedError("trailer section too large")));
        assert_eq!(out, b"0\r\n");
    }

    /// A valid chunked body from generated parts, with the three outputs expected from it.
    #[derive(Debug, Clone)]
    struct Body {
        wire: Vec<u8>,
        keep: Vec<u8>,
        drop: Vec<u8>,
        payload: Vec<u8>,
    }

    fn chunk() -> impl Strategy<Value = (Vec<u8>, usize, bool, Option<String>)> {
        let data = prop::collection::vec(any::<u8>(), 1..300);
        let extension = prop::option::of(prop_oneof![
            "[a-z]{1,6}",
            "[a-z]{1,6}=[A-Za-z0-9]{1,6}",
            "[a-z]{1,6}=\"[ a-z\\\\;=]{0,8}\"".prop_map(|s| s.replace('\\', "\\\\")),
        ]);
        (data, 0..3usize, any::<bool>(), extension)
    }

    fn body() -> impl Strategy<Value = Body> {
        let chunks = prop::collection::vec(chunk(), 0..6);
        let trailers = prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,20}"), 0..4);
        (chunks, trailers).prop_map(|(chunks, trailers)| {
            let mut body = Body {
                wire: Vec::new(),
                keep: Vec::new(),
                drop: Vec::new(),
                payload: Vec::new(),
            };
            for (data, zeros, upper, extension) in chunks {
                let size = format!("{}{:x}", "0".repeat(zeros), data.len());
                let size = if upper { size.to_uppercase() } else { size };
                body.wire.extend_from_slice(size.as_bytes());
                if let Some(extension) = extension {
                    body.wire
                        .extend_from_slice(format!(";{extension}").as_bytes());
                }
                body.wire.extend_from_slice(b"\r\n");
                body.wire.extend_from_slice(&data);
                body.wire.extend_from_slice(b"\r\n");
                for out in [&mut body.keep, &mut body.drop] {
                    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
                body.payload.extend_from_slice(&data);
            }
            body.wire.extend_from_slice(b"0\r\n");
            body.keep.extend_from_slice(b"0\r\n");
            body.drop.extend_from_slice(b"0\r\n");
            for (name, value) in trailers {
                body.wire
                    .extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
                let trimmed = value.trim_matches(' ');
                body.keep
                    .extend_from_slice(format!("{name}: {trimmed}\r\n").as_bytes());
            }
            for wire in [&mut body.wire, &mut body.keep, &mut body.drop] {
                wire.extend_from_slice(b"\r\n");
            }
            body
        })
    }

    proptest! {
        #[test]
        fn any_split_of_a_valid_body_gives_the_same_output(
            body in body(),
            cuts in prop::collection::vec(any::<Index>(), 0..8),
        ) {
            let mut input = body.wire.clone();
            input.extend_from_slice(b"NEXT");
            // Byte by byte: every boundary at once.
            let every_byte: Vec<usize> = (0..input.len()).collect();
            prop_assert_eq!(decode_at(KEEP, &input, &every_byte).0, body.keep.clone());
            for (output, expected) in [(KEEP, &body.keep), (DROP, &body.drop), (ChunkedOutput::Payload, &body.payload)] {
                let (result, whole) = decode_all(output, &input);
                let progress = result.unwrap();
                prop_assert!(progress.done);
                prop_assert_eq!(progress.consumed, body.wire.len());
                prop_assert_eq!(progress.payload, body.payload.len() as u64);
                prop_assert_eq!(&whole, expected);
                let (split, error, done, rest) = decode_split(output, &input, &cuts);
                prop_assert_eq!(error, None);
                prop_assert!(done);
                prop_assert_eq!(&split, expected);
                prop_assert_eq!(rest, b"NEXT".to_vec());
            }
        }

        /// Mangled bodies too: any split gives the same bytes out and the same error.
        #[test]
        fn any_split_of_any_input_gives_the_same_result(
            body in body(),
            edits in prop::collection::vec((0..2000usize, prop::sample::select(b"\r\n ;=\"0aF+-x\t\0".to_vec())), 1..4),
            cuts in prop::collection::vec(any::<Index>(), 0..8),
        ) {
            let mut input = body.wire.clone();
            for (at, byte) in edits {
                let at = at % (input.len() + 1);
                input.insert(at, byte);
            }
            let (whole_result, whole_out) = decode_all(KEEP, &input);
            let (split_out, split_error, split_done, _) = decode_split(KEEP, &input, &cuts);
            prop_assert_eq!(whole_out, split_out);
            match whole_result {
                Ok(progress) => {
                    prop_assert_eq!(split_error, None);
                    prop_assert_eq!(progress.done, split_done);
                }
                Err(error) => prop_assert_eq!(split_error, Some(error)),
            }
        }
    }
}
