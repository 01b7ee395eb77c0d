//! The two line grammars of the chunked coding (RFC 9112 §7.1), scanned strictly over input that
//! may stop anywhere:
//!
//! ```text
//! chunk-header = 1*16HEXDIG *( ";" token [ "=" ( token / quoted-string ) ] ) CRLF
//! trailer-line = token ":" OWS *( field-vchar / SP / HTAB ) CRLF   ; or the empty line CRLF
//! ```
//!
//! Stricter than the RFC on purpose: no whitespace anywhere in a chunk header (the RFC's BWS
//! around `;` and `=` is where parsers disagree), no `0x`/`+`/`-`, no bare LF or bare CR, no obs-fold.
//!
//! Every scan reads left to right and stops at the first invalid byte, so a prefix of a line
//! either fails with the same error as the whole line or asks for more: that is what makes the
//! decoder give the same result for any split of its input. A line that has not ended within
//! [`MAX_LINE`] bytes is refused.

use super::chunked::ChunkedError;
use super::headers::{is_field_value_byte, is_tchar, trim_ows};

/// Longest chunk header or trailer line, CRLF included.
pub(crate) const MAX_LINE: usize = 4096;
/// Most hex digits in a chunk size (leading zeros included): 16 cannot overflow a u64.
const MAX_SIZE_DIGITS: usize = 16;

/// A complete chunk header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) size: u64,
    /// Bytes of the line, CRLF included.
    pub(crate) len: usize,
}

/// A complete trailer line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrailerLine<'a> {
    /// The empty line that ends the message.
    End,
    /// A field; `len` is the bytes of the line, CRLF included.
    Field {
        name: &'a [u8],
        value: &'a [u8],
        len: usize,
    },
}

/// Why a scan stopped before the end of its line.
enum Stop {
    NeedMore,
    Invalid(&'static str),
}

/// `Ok(None)`: the line has not ended yet and may still fit.
pub(crate) fn scan_chunk_header(input: &[u8]) -> Result<Option<ChunkHeader>, ChunkedError> {
    let mut line = Line::new(input);
    finish(chunk_header(&mut line), input, "chunk header line too long")
}

/// `Ok(None)`: the line has not ended yet and may still fit.
pub(crate) fn scan_trailer_line(input: &[u8]) -> Result<Option<TrailerLine<'_>>, ChunkedError> {
    let mut line = Line::new(input);
    finish(trailer_line(&mut line), input, "trailer line too long")
}

fn finish<T>(
    scan: Result<T, Stop>,
    input: &[u8],
    too_long: &'static str,
) -> Result<Option<T>, ChunkedError> {
    match scan {
        Ok(line) => Ok(Some(line)),
        Err(Stop::Invalid(why)) => Err(ChunkedError(why)),
        Err(Stop::NeedMore) if input.len() >= MAX_LINE => Err(ChunkedError(too_long)),
        Err(Stop::NeedMore) => Ok(None),
    }
}

/// A cursor over at most [`MAX_LINE`] bytes of input.
struct Line<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Line<'a> {
    fn new(input: &'a [u8]) -> Self {
        Line {
            bytes: &input[..input.len().min(MAX_LINE)],
            pos: 0,
        }
    }

    fn peek(&self) -> Result<u8, Stop> {
        self.bytes.get(self.pos).copied().ok_or(Stop::NeedMore)
    }

    /// Consumes the byte `peek` returned.
    fn bump(&mut self) {
        self.pos += 1;
    }

    /// At a CR: consumes CRLF, or refuses a bare CR.
    fn crlf(&mut self) -> Result<(), Stop> {
        self.bump();
        match self.peek()? {
            b'\n' => {
                self.bump();
                Ok(())
            }
            _ => Err(Stop::Invalid("bare CR")),
        }
    }

    /// One or more token bytes.
    fn token(&mut self, what: &'static str) -> Result<(), Stop> {
        let start = self.pos;
        while is_tchar(self.peek()?) {
            self.bump();
        }
        if self.pos == start {
            return Err(Stop::Invalid(what));
        }
        Ok(())
    }
}

fn chunk_header(line: &mut Line<'_>) -> Result<ChunkHeader, Stop> {
    let mut size: u64 = 0;
    let mut digits = 0;
    while let Some(digit) = (line.peek()? as char).to_digit(16) {
        digits += 1;
        if digits > MAX_SIZE_DIGITS {
            return Err(Stop::Invalid("chunk size too long"));
        }
        size = size << 4 | u64::from(digit);
        line.bump();
    }
    if digits == 0 {
        // `+5`, `-5`, ` 5`, `;ext` or nothing at all.
        return Err(Stop::Invalid("missing chunk size"));
    }
    loop {
        match line.peek()? {
            b';' => {
                line.bump();
                chunk_extension(line)?;
            }
            b'\r' => {
                line.crlf()?;
                return Ok(ChunkHeader {
                    size,
                    len: line.pos,
                });
            }
            b'\n' => return Err(Stop::Invalid("bare LF in chunk header")),
            // `0x5`, `5 `, `5 ;a`, `5z`...
            _ => return Err(Stop::Invalid("invalid byte in chunk header")),
        }
    }
}

/// After `;`: `token [ "=" ( token / quoted-string ) ]`.
fn chunk_extension(line: &mut Line<'_>) -> Result<(), Stop> {
    line.token("invalid chunk extension name")?;
    if line.peek()? != b'=' {
        return Ok(());
    }
    line.bump();
    if line.peek()? == b'"' {
        quoted_string(line)
    } else {
        line.token("invalid chunk extension value")
    }
}

/// At `"`: `DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110 §5.6.4).
fn quoted_string(line: &mut Line<'_>) -> Result<(), Stop> {
    line.bump();
    loop {
        let byte = line.peek()?;
        line.bump();
        match byte {
            b'"' => return Ok(()),
            b'\\' => {
                let escaped = line.peek()?;
                if !matches!(escaped, b'\t' | b' '..=b'~' | 0x80..=0xff) {
                    return Err(Stop::Invalid("invalid quoted-pair in chunk extension"));
                }
                line.bump();
            }
            b'\t' | b' ' | b'!' | b'#'..=b'[' | b']'..=b'~' | 0x80..=0xff => {}
            _ => return Err(Stop::Invalid("invalid byte in chunk extension")),
        }
    }
}

fn trailer_line<'a>(line: &mut Line<'a>) -> Result<TrailerLine<'a>, Stop> {
    match line.peek()? {
        b'\r' => {
            line.crlf()?;
            return Ok(TrailerLine::End);
        }
        b'\n' => return Err(Stop::Invalid("bare LF in trailer section")),
        _ => {}
    }
    let name_start = line.pos;
    // A leading space (obs-fold) and a space before the colon both fail here.
    line.token("invalid trailer field name")?;
    let name_end = line.pos;
    if line.peek()? != b':' {
        return Err(Stop::Invalid("invalid trailer field name"));
    }
    line.bump();
    let value_start = line.pos;
    loop {
        match line.peek()? {
            b'\r' => break,
            b'\n' => return Err(Stop::Invalid("bare LF in trailer section")),
            byte if is_field_value_byte(byte) => line.bump(),
            _ => return Err(Stop::Invalid("invalid byte in trailer field value")),
        }
    }
    let value_end = line.pos;
    line.crlf()?;
    let bytes = line.bytes;
    Ok(TrailerLine::Field {
        name: &bytes[name_start..name_end],
        value: trim_ows(&bytes[value_start..value_end]),
        len: line.pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(line: &str) -> Result<Option<ChunkHeader>, ChunkedError> {
        scan_chunk_header(line.as_bytes())
    }

    #[test]
    fn chunk_headers_we_accept() {
        let ok = |size, len| Ok(Some(ChunkHeader { size, len }));
        assert_eq!(header("5\r\nhello"), ok(5, 3));
        assert_eq!(header("fF\r\n"), ok(255, 4));
        assert_eq!(header("000a\r\n"), ok(10, 6));
        assert_eq!(header("ffffffffffffffff\r\n"), ok(u64::MAX, 18));
        assert_eq!(header("1;a\r\n"), ok(1, 5));
        assert_eq!(header("1;a=b;c=\"x \\\" y\"\r\n"), ok(1, 18));
    }

    #[test]
    fn incomplete_chunk_headers_ask_for_more() {
        for prefix in ["", "5", "5\r", "5;", "5;a=", "5;a=\"x", "5;a=\"\\"] {
            assert_eq!(header(prefix), Ok(None), "{prefix:?}");
        }
    }

    #[test]
    fn chunk_headers_we_refuse() {
        let cases = [
            ("1ffffffffffffffff\r\n", "chunk size too long"),
            ("00000000000000001\r\n", "chunk size too long"),
            ("0x5\r\n", "invalid byte in chunk header"),
            ("+5\r\n", "missing chunk size"),
            ("-5\r\n", "missing chunk size"),
            (" 5\r\n", "missing chunk size"),
            ("\r\n", "missing chunk size"),
            ("5 \r\n", "invalid byte in chunk header"),
            ("5 ;a\r\n", "invalid byte in chunk header"),
            ("5; a\r\n", "invalid chunk extension name"),
            ("5;a =b\r\n", "invalid byte in chunk header"),
            ("5;=b\r\n", "invalid chunk extension name"),
            ("5;a=\r\n", "invalid chunk extension value"),
            ("5;a=b c\r\n", "invalid byte in chunk header"),
            ("5;a=\"\0\"\r\n", "invalid byte in chunk extension"),
            ("5;a=\"\\\n\"\r\n", "invalid quoted-pair in chunk extension"),
            ("5\n", "bare LF in chunk header"),
            ("5\rx", "bare CR"),
            ("5\0\r\n", "invalid byte in chunk header"),
        ];
        for (line, error) in cases {
            assert_eq!(header(line), Err(ChunkedError(error)), "{line:?}");
        }
    }

    #[test]
    fn chunk_header_line_limit() {
        let mut line = b"1;a=".to_vec();
        line.resize(MAX_LINE - 2, b'b');
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            scan_chunk_header(&line),
            Ok(Some(ChunkHeader {
                size: 1,
                len: MAX_LINE
            }))
        );
        line.insert(4, b'b');
        assert_eq!(
            scan_chunk_header(&line),
            Err(ChunkedError("chunk header line too long"))
        );
        assert_eq!(
            scan_chunk_header(&line[..MAX_LINE]),
            Err(ChunkedError("chunk header line too long"))
        );
        assert_eq!(scan_chunk_header(&line[..MAX_LINE - 1]), Ok(None));
    }

    #[test]
    fn trailer_lines() {
        let field = |name: &'static str, value: &'static str, len| {
            Ok(Some(TrailerLine::Field {
                name: name.as_bytes(),
                value: value.as_bytes(),
                len,
            }))
        };
        assert_eq!(scan_trailer_line(b"\r\n"), Ok(Some(TrailerLine::End)));
        assert_eq!(
            scan_trailer_line(b"X-T: a b \r\nmore"),
            field("X-T", "a b", 11)
        );
        assert_eq!(scan_trailer_line(b"X-T:\r\n"), field("X-T", "", 6));
        assert_eq!(scan_trailer_line(b"X-T: a"), Ok(None));
        assert_eq!(scan_trailer_line(b"\r"), Ok(None));
        let refused = [
            (&b"\n"[..], "bare LF in trailer section"),
            (b"X-T: a\n", "bare LF in trailer section"),
            (b" X-T: a\r\n", "invalid trailer field name"),
            (b"X-T : a\r\n", "invalid trailer field name"),
            (b": a\r\n", "invalid trailer field name"),
            (b"X-T: a\0b\r\n", "invalid byte in trailer field value"),
            (b"X-T: a\rb\r\n", "bare CR"),
            (b"\rX", "bare CR"),
        ];
        for (line, error) in refused {
            assert_eq!(
                scan_trailer_line(line),
                Err(ChunkedError(error)),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
