//! `Accept-Encoding` (RFC 9110 §12.5.3): which of the configured codings a client takes.
//!
//! Each element is `coding *( OWS ";" OWS parameter )`; only the `q` parameter means anything
//! (`0`..`1`, up to three decimals; `q=0` refuses). `*` stands for every coding not named
//! elsewhere; `identity` is always acceptable, so it never decides anything here (an
//! `identity;q=0` with nothing else acceptable still gets the uncompressed response: the proxy
//! has nothing else to send). Tokens compare case-insensitively. An element whose syntax is bad
//! is skipped, never the whole field: junk never makes the proxy send a coding the client did
//! not ask for.
//!
//! The choice: the configured coding with the highest q above 0; ties go to the configured order
//! (the proxy's preference). Several field lines form one list.

use crate::config::Encoding;
use crate::http::headers::{is_token, list_elements, trim_ows};

/// A q-value in thousandths: `q=0.5` is 500, absent is 1000.
type Quality = u16;

/// The coding to use for a client whose `Accept-Encoding` field lines are `fields` (all of
/// them, in order), among `offered` (the proxy's preference first). `None`: send the response
/// as it is.
pub fn negotiate<'a>(
    fields: impl IntoIterator<Item = &'a [u8]>,
    offered: &[Encoding],
) -> Option<Encoding> {
    // Explicit q per offered coding (index into `offered`), and the q of `*`.
    let mut explicit: [Option<Quality>; 3] = [None; 3];
    let mut any: Option<Quality> = None;
    for field in fields {
        for element in list_elements(field) {
            let Some((coding, q)) = parse_element(element) else {
                continue;
            };
            if coding == b"*" {
                any = Some(any.map_or(q, |known| known.max(q)));
            } else if let Some(i) = offered
                .iter()
                .position(|e| e.token().as_bytes().eq_ignore_ascii_case(coding))
                .filter(|&i| i < explicit.len())
            {
                // Named twice: the client's best word for it counts.
                explicit[i] = Some(explicit[i].map_or(q, |known| known.max(q)));
            } else if coding.eq_ignore_ascii_case(b"x-gzip") {
                // RFC 9110 §8.4.1.3: a recipient should treat `x-gzip` as `gzip`.
                if let Some(i) = offered.iter().position(|&e| e == Encoding::Gzip) {
                    explicit[i] = Some(explicit[i].map_or(q, |known| known.max(q)));
                }
            }
        }
    }
    let mut best: Option<(Encoding, Quality)> = None;
    for (i, &encoding) in offered.iter().enumerate().take(explicit.len()) {
        let q = explicit[i].or(any).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, top)| q > top) {
            best = Some((encoding, q));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// `coding[;q=value][;other=params]`: the coding token and its quality; `None` when the element
/// is empty or malformed.
fn parse_element(element: &[u8]) -> Option<(&[u8], Quality)> {
    let mut parts = element.split(|&b| b == b';');
    let coding = trim_ows(parts.next()?);
    if !is_token(coding) {
        return None;
    }
    let mut q = 1000;
    for parameter in parts {
        let parameter = trim_ows(parameter);
        let (name, value) = match parameter.iter().position(|&b| b == b'=') {
            Some(at) => (trim_ows(&parameter[..at]), trim_ows(&parameter[at + 1..])),
            None => return None,
        };
        if name.eq_ignore_ascii_case(b"q") {
            q = parse_quality(value)?;
        }
    }
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_quality(value: &[u8]) -> Option<Quality> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Quality = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| Quality::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Brotli, Gzip, Zstd};

    const ALL: &[Encoding] = &[Zstd, Brotli, Gzip];

    fn choose(field: &str, offered: &[Encoding]) -> Option<Encoding> {
        negotiate([field.as_bytes()], offered)
    }

    #[test]
    fn the_highest_q_wins_and_ties_go_to_the_configured_order() {
        for (field, offered, expected) in [
            ("gzip", ALL, Some(Gzip)),
            ("gzip, deflate, br", ALL, Some(Brotli)),
            ("gzip, deflate, br, zstd", ALL, Some(Zstd)),
            ("gzip, br", &[Gzip, Brotli][..], Some(Gzip)),
            ("br;q=0.9, gzip", ALL, Some(Gzip)),
            ("zstd;q=0.5, br;q=0.501, gzip;q=0.2", ALL, Some(Brotli)),
            ("gzip;q=1.000, br;q=1", ALL, Some(Brotli)),
            ("deflate", ALL, None),
            ("", ALL, None),
            ("br", &[Gzip][..], None),
            ("GZIP", ALL, Some(Gzip)),
            ("Br ; Q=0.8", ALL, Some(Brotli)),
            ("x-gzip", ALL, Some(Gzip)),
        ] {
            assert_eq!(choose(field, offered), expected, "{field:?} of {offered:?}");
        }
    }

    #[test]
    fn a_star_covers_what_is_not_named_and_q0_refuses() {
        for (field, expected) in [
            ("*", Some(Zstd)),
            ("*;q=0.5, gzip", Some(Gzip)),
            ("zstd;q=0, *", Some(Brotli)),
            ("zstd;q=0, br;q=0, *;q=0.1", Some(Gzip)),
            ("*;q=0", None),
            ("gzip;q=0", None),
            ("gzip;q=0.000", None),
            ("gzip;q=0, *;q=0", None),
            ("identity", None),
            ("identity;q=0", None),
            ("identity;q=0, gzip;q=0.1", Some(Gzip)),
            ("gzip;q=0.001", Some(Gzip)),
        ] {
            assert_eq!(choose(field, ALL), expected, "{field:?}");
        }
    }

    #[test]
    fn several_field_lines_make_one_list() {
        let fields: [&[u8]; 2] = [b"gzip;q=0.5", b"br;q=0.7"];
        assert_eq!(negotiate(fields, ALL), Some(Brotli));
        let fields: [&[u8]; 2] = [b"gzip", b"gzip;q=0"];
        assert_eq!(negotiate(fields, ALL), Some(Gzip), "the better word counts");
        assert_eq!(negotiate(std::iter::empty(), ALL), None);
    }

    #[test]
    fn bad_elements_are_skipped_alone() {
        for (field, expected) in [
            ("gzip;q=2, br", Some(Brotli)),
            ("gzip;q=0.0001, br;q=0.1", Some(Brotli)),
            ("gzip;q=, br;q=0.1", Some(Brotli)),
            ("gzip;q=abc", None),
            ("gzip;q=1.5", None),
            ("gzip;q=-1", None),
            ("gzip;q=.5", None),
            ("gzip;level", None),
            ("gz ip, zstd", Some(Zstd)),
            ("\"gzip\"", None),
            (",,, ,gzip,", Some(Gzip)),
            (";q=1, br", Some(Brotli)),
            ("gzip;foo=bar;q=0.3, br;q=0.2", Some(Gzip)),
            ("gzip ;q=0.3", Some(Gzip)),
        ] {
            assert_eq!(choose(field, ALL), expected, "{field:?}");
        }
    }
}
