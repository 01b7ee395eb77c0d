//! The two fields that frame a message body, `Content-Length` and `Transfer-Encoding`, read one
//! strict way for requests and responses alike (RFC 9112 §6).
//!
//! Both accumulate over every field line of their name, in order, because a smuggling attempt
//! typically splits a value over two lines (`Content-Length: 5` then `Content-Length: 6`,
//! `Transfer-Encoding: gzip` then `Transfer-Encoding: chunked`). What to answer when both appear,
//! and which status a rejected coding gets, is decided by the request and response parsers.

use super::headers::{is_token, list_elements};

/// Content-Length over all its field lines: every element must be the same decimal number.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ContentLength {
    value: Option<u64>,
}

impl ContentLength {
    /// Adds one field line. Identical repeats (`5, 5`, or two `5` lines) collapse into one value;
    /// anything else that is not a plain decimal (`+5`, `-1`, `0x5`, empty, overflow) is refused.
    pub(crate) fn add_field(&mut self, value: &[u8]) -> Result<(), &'static str> {
        for element in list_elements(value) {
            let n = parse_decimal(element).ok_or("invalid Content-Length")?;
            match self.value {
                Some(previous) if previous != n => return Err("conflicting Content-Length values"),
                _ => self.value = Some(n),
            }
        }
        Ok(())
    }

    pub(crate) fn value(&self) -> Option<u64> {
        self.value
    }
}

/// `1*DIGIT` as a u64: no sign, no base prefix, no whitespace, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Transfer-Encoding over all its field lines, in order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TransferCodings {
    present: bool,
    malformed: bool,
    chunked_count: u32,
    /// The last coding seen is `chunked`.
    chunked_last: bool,
    /// A coding other than `chunked` was seen.
    other_coding: bool,
}

/// Why a Transfer-Encoding is refused, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodingError {
    /// Empty element, parameters, or bytes outside a token.
    Malformed,
    /// `chunked, chunked`: a body cannot be chunked twice.
    ChunkedTwice,
    /// `chunked` is missing or not the final coding: the length cannot be determined.
    ChunkedNotLast,
    /// A well-formed framing (`gzip, chunked`) with a coding we do not implement.
    Unsupported,
}

impl TransferCodings {
    pub(crate) fn add_field(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list_elements(value) {
            // Transfer-coding parameters are legal syntax, but `chunked` takes none and we decode
            // no other coding, so any `;` is refused along with non-token bytes.
            if !is_token(coding) {
                self.malformed = true;
            } else if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked_count += 1;
                self.chunked_last = true;
            } else {
                self.other_coding = true;
                self.chunked_last = false;
            }
        }
    }

    pub(crate) fn is_present(&self) -> bool {
        self.present
    }

    /// `Ok` only for exactly one `chunked` and nothing else: the one framing we decode.
    pub(crate) fn check(&self) -> Result<(), CodingError> {
        if self.malformed {
            Err(CodingError::Malformed)
        } else if self.chunked_count > 1 {
            Err(CodingError::ChunkedTwice)
        } else if !self.chunked_last {
            Err(CodingError::ChunkedNotLast)
        } else if self.other_coding {
            Err(CodingError::Unsupported)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_length(fields: &[&str]) -> Result<Option<u64>, &'static str> {
        let mut cl = ContentLength::default();
        for field in fields {
            cl.add_field(field.as_bytes())?;
        }
        Ok(cl.value())
    }

    #[test]
    fn content_length_accepts_plain_decimals_and_identical_repeats() {
        assert_eq!(content_length(&["42"]), Ok(Some(42)));
        assert_eq!(content_length(&["007"]), Ok(Some(7)));
        assert_eq!(content_length(&["5, 5"]), Ok(Some(5)));
        assert_eq!(content_length(&["5", "5"]), Ok(Some(5)));
        assert_eq!(
            content_length(&["18446744073709551615"]),
            Ok(Some(u64::MAX))
        );
        assert_eq!(content_length(&[]), Ok(None));
    }

    #[test]
    fn content_length_refuses_everything_else() {
        for bad in [
            "+5",
            "-1",
            "0x5",
            "",
            " ",
            "5 5",
            "5,",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(
                content_length(&[bad]),
                Err("invalid Content-Length"),
                "{bad:?}"
            );
        }
        assert_eq!(
            content_length(&["5, 6"]),
            Err("conflicting Content-Length values")
        );
        assert_eq!(
            content_length(&["5", "6"]),
            Err("conflicting Content-Length values")
        );
    }

    fn codings(fields: &[&str]) -> Result<(), CodingError> {
        let mut te = TransferCodings::default();
        for field in fields {
            te.add_field(field.as_bytes());
        }
        te.check()
    }

    #[test]
    fn only_a_single_final_chunked_is_accepted() {
        assert_eq!(codings(&["chunked"]), Ok(()));
        assert_eq!(codings(&["Chunked"]), Ok(()));
        assert_eq!(
            codings(&["chunked, chunked"]),
            Err(CodingError::ChunkedTwice)
        );
        assert_eq!(
            codings(&["chunked", "chunked"]),
            Err(CodingError::ChunkedTwice)
        );
        assert_eq!(
            codings(&["chunked, gzip"]),
            Err(CodingError::ChunkedNotLast)
        );
        assert_eq!(codings(&["gzip"]), Err(CodingError::ChunkedNotLast));
        assert_eq!(codings(&["gzip, chunked"]), Err(CodingError::Unsupported));
        assert_eq!(codings(&["gzip", "chunked"]), Err(CodingError::Unsupported));
        assert_eq!(codings(&["foo, chunked"]), Err(CodingError::Unsupported));
        for malformed in [
            "",
            ",chunked",
            "chunked;q=1",
            "chunked\"",
            "chunked ,",
            "chu nked",
        ] {
            assert_eq!(
                codings(&[malformed]),
                Err(CodingError::Malformed),
                "{malformed:?}"
            );
        }
    }
}
