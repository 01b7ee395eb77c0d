//! The streaming encoders: gzip (flate2 on zlib-rs), brotli and zstd behind one type.
//!
//! Each call to [`Encoder::compress`] takes the next piece of the body and, when asked, flushes
//! (zlib's sync flush, brotli's and zstd's flush): what it appends then decodes to every byte
//! given so far, so a streamed response reaches the client as it comes, never held back by the
//! encoder's window. Without a flush the encoder gives out whole blocks as they fill, which
//! compresses better and costs less (a body whose length is known is not a stream to hurry).
//! [`Encoder::finish`] ends the stream (gzip's trailer, brotli's last block, zstd's epilogue).

use crate::config::{CompressionConfig, Encoding};
use std::io::{self, Write};

/// brotli's window: 4 MiB (its default, as `brotli` the tool).
const BROTLI_WINDOW_BITS: u32 = 22;
/// brotli's internal output buffer.
const BROTLI_BUFFER: usize = 16 * 1024;

/// One response's encoder. The compressed bytes collect in the encoder's own `Vec` and are moved
/// out after each flush.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    // Boxed: brotli's state is a few KiB, the others hold a pointer.
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Encoder").field(&self.encoding()).finish()
    }
}

impl Encoder {
    /// An encoder for `encoding` at the level `config` gives it.
    pub fn new(encoding: Encoding, config: &CompressionConfig) -> io::Result<Self> {
        let inner = match encoding {
            Encoding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(config.gzip_level),
            )),
            Encoding::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                config.brotli_level,
                BROTLI_WINDOW_BITS,
            ))),
            Encoding::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                config.zstd_level,
            )?),
        };
        Ok(Self { inner })
    }

    pub fn encoding(&self) -> Encoding {
        match self.inner {
            Inner::Gzip(_) => Encoding::Gzip,
            Inner::Brotli(_) => Encoding::Brotli,
            Inner::Zstd(_) => Encoding::Zstd,
        }
    }

    /// Compresses `input`, appending what the encoder gives out to `out`; with `flush`, all of
    /// it so far (the client can decode every byte given up to now).
    pub fn compress(&mut self, input: &[u8], flush: bool, out: &mut Vec<u8>) -> io::Result<()> {
        let produced = match &mut self.inner {
            Inner::Gzip(e) => {
                e.write_all(input)?;
                if flush {
                    e.flush()?;
                }
                e.get_mut()
            }
            Inner::Brotli(e) => {
                e.write_all(input)?;
                if flush {
                    e.flush()?;
                }
                e.get_mut()
            }
            Inner::Zstd(e) => {
                e.write_all(input)?;
                if flush {
                    e.flush()?;
                }
                e.get_mut()
            }
        };
        out.extend_from_slice(produced);
        produced.clear();
        Ok(())
    }

    /// Ends the stream, appending its last bytes to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> io::Result<()> {
        let last = match self.inner {
            Inner::Gzip(e) => e.finish()?,
            Inner::Brotli(e) => e.into_inner(),
            Inner::Zstd(e) => e.finish()?,
        };
        out.extend_from_slice(&last);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{valid, with};
    use std::io::Read;

    fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        match encoding {
            Encoding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut decoded),
            Encoding::Brotli => brotli::Decompressor::new(data, 4096).read_to_end(&mut decoded),
            Encoding::Zstd => zstd::stream::read::Decoder::new(data)
                .unwrap()
                .read_to_end(&mut decoded),
        }
        .expect("decodes");
        decoded
    }

    /// A body that compresses well but not trivially.
    fn body() -> Vec<u8> {
        (0..4000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {}\"}},", i % 97).into_bytes())
            .collect()
    }

    #[test]
    fn each_coding_round_trips_through_its_reference_decoder() {
        let config = valid(&with("")).compression;
        let body = body();
        for encoding in Encoding::ALL {
            let mut encoder = Encoder::new(encoding, &config).unwrap();
            assert_eq!(encoder.encoding(), encoding);
            let mut out = Vec::new();
            // Flushed at some pieces only: both kinds of call make one stream.
            for (i, piece) in body.chunks(7000).enumerate() {
                encoder.compress(piece, i % 2 == 0, &mut out).unwrap();
            }
            encoder.finish(&mut out).unwrap();
            assert!(
                out.len() < body.len() / 4,
                "{encoding:?}: {} bytes",
                out.len()
            );
            assert_eq!(decode(encoding, &out), body, "{encoding:?}");
        }
    }

    #[test]
    fn each_flush_makes_everything_so_far_decodable() {
        let config = valid(&with("")).compression;
        for encoding in Encoding::ALL {
            let mut encoder = Encoder::new(encoding, &config).unwrap();
            let mut out = Vec::new();
            encoder
                .compress(b"data: first event\n\n", true, &mut out)
                .unwrap();
            assert!(!out.is_empty(), "{encoding:?}: the flush produced nothing");
            // A streaming decoder given only the bytes so far yields the first event.
            let mut decoded = vec![0u8; 64];
            let n = match encoding {
                Encoding::Gzip => flate2::read::GzDecoder::new(&out[..]).read(&mut decoded),
                Encoding::Brotli => brotli::Decompressor::new(&out[..], 4096).read(&mut decoded),
                Encoding::Zstd => zstd::stream::read::Decoder::new(&out[..])
                    .unwrap()
                    .read(&mut decoded),
            }
            .expect("a prefix decodes");
            assert_eq!(&decoded[..n], b"data: first event\n\n", "{encoding:?}");
            encoder.compress(b"", true, &mut out).unwrap();
            encoder.finish(&mut out).unwrap();
            assert_eq!(decode(encoding, &out), b"data: first event\n\n");
        }
    }

    #[test]
    fn an_empty_body_is_a_valid_empty_stream() {
        let config = valid(&with("")).compression;
        for encoding in Encoding::ALL {
            let mut out = Vec::new();
            Encoder::new(encoding, &config)
                .unwrap()
                .finish(&mut out)
                .unwrap();
            assert_eq!(decode(encoding, &out), b"");
        }
    }
}
