//! Field-level helpers shared by requests, responses and chunked trailers: the header names the
//! codec gives a meaning to, list-valued fields, the lines of an already validated header section,
//! a per-field mask, and the small writers used to rebuild heads.
//!
//! Flow: a parser [`classify`]s every field name once; each field it does not forward unchanged
//! gets its bit set in a [`FieldMask`]; when the head is rebuilt, [`FieldLines`] walks the original
//! bytes again and skips the masked fields. Nothing is stored per field and nothing is allocated:
//! a second pass over a few hundred bytes costs less than keeping 256 field slices alive.

/// Header names the codec acts on. Everything else is `Other` and forwarded untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KnownField {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
    Traceparent,
    /// The proxy's own mTLS fields: a client's are always dropped, so a backend can trust them.
    XClientCertSubject,
    XClientCertFingerprint,
    /// `Forwarded` (RFC 7239): copied upstream only from a trusted proxy.
    Forwarded,
    /// One of the fields above whose name has a `-`, spelled with `_` instead (`Content_Length`,
    /// `Transfer_Encoding`, `X_Forwarded_For`, …). Never forwarded: a backend behind CGI, WSGI or
    /// PHP maps both spellings to the same variable (`HTTP_CONTENT_LENGTH`), so it could read a
    /// second framing or a forged forwarding field the proxy never validated (nginx drops every
    /// name with `_` by default; this drops only those that could pass for a field the proxy
    /// owns).
    Underscored,
    Other,
}

impl KnownField {
    /// Fields that describe one connection and never cross the proxy (RFC 9110 §7.6.1), plus
    /// `Proxy-Connection` and `Keep-Alive`, which old clients still send.
    pub(crate) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            KnownField::Connection
                | KnownField::KeepAlive
                | KnownField::ProxyConnection
                | KnownField::Te
                | KnownField::Trailer
                | KnownField::TransferEncoding
                | KnownField::Upgrade
        )
    }
}

/// Case-insensitive lookup of a field name.
pub(crate) fn classify(name: &[u8]) -> KnownField {
    use KnownField::*;
    // Dispatch on the length (and, for clashes, the first letter) so that the common case, a
    // field we do not know, costs one comparison of lengths and no byte comparison.
    let first = name.first().map_or(0, u8::to_ascii_lowercase);
    let (kind, lowercase): (KnownField, &[u8]) = match (name.len(), first) {
        (2, _) => (Te, b"te"),
        (4, _) => (Host, b"host"),
        (6, _) => (Expect, b"expect"),
        (9, _) => (Forwarded, b"forwarded"),
        (7, b'u') => (Upgrade, b"upgrade"),
        (7, b't') => (Trailer, b"trailer"),
        (10, b'c') => (Connection, b"connection"),
        (10, b'k') => (KeepAlive, b"keep-alive"),
        (11, _) => (Traceparent, b"traceparent"),
        (12, _) => (XRequestId, b"x-request-id"),
        (14, _) => (ContentLength, b"content-length"),
        (15, _) => (XForwardedFor, b"x-forwarded-for"),
        (16, b'p') => (ProxyConnection, b"proxy-connection"),
        (16, b'x') => (XForwardedHost, b"x-forwarded-host"),
        (17, b't') => (TransferEncoding, b"transfer-encoding"),
        (17, b'x') => (XForwardedProto, b"x-forwarded-proto"),
        (21, _) => (XClientCertSubject, b"x-client-cert-subject"),
        (25, _) => (XClientCertFingerprint, b"x-client-cert-fingerprint"),
        _ => return Other,
    };
    if name.eq_ignore_ascii_case(lowercase) {
        kind
    } else if is_underscore_spelling(name, lowercase) {
        Underscored
    } else {
        Other
    }
}

/// `name` is `lowercase` (a known name of the same length) with `_` for at least one `-`.
fn is_underscore_spelling(name: &[u8], lowercase: &[u8]) -> bool {
    // Most mismatches end at the first byte; `contains` runs only for a real look-alike.
    name.len() == lowercase.len()
        && name
            .iter()
            .zip(lowercase)
            .all(|(&n, &l)| n.to_ascii_lowercase() == l || (n == b'_' && l == b'-'))
        && name.contains(&b'_')
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token (field names, codings, methods).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty token.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Bytes allowed inside a field value: VCHAR, obs-text, SP and HTAB (RFC 9110 §5.5). Excludes
/// every other control byte, in particular NUL, CR, LF and DEL.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Elements of a comma-separated list value (RFC 9110 §5.6.1), trimmed of OWS. Empty elements
/// are yielded as empty slices: each caller decides whether its grammar tolerates them.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// `Connection` options (RFC 9110 §7.6.1) that the codec interprets itself; any other token
/// names a field to drop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// At least one token names some other field, which must then be stripped.
    pub(crate) names_fields: bool,
}

impl ConnectionOptions {
    pub(crate) fn add_field(&mut self, value: &[u8]) {
        for token in list_elements(value).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.names_fields = true;
            }
        }
    }
}

/// One bit per field index, for the at most [`FieldMask::CAPACITY`] fields of a head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldMask([u64; 4]);

impl FieldMask {
    /// The most fields a head may have; `HeadLimits::max_headers` is clamped to it.
    pub(crate) const CAPACITY: usize = 256;

    pub(crate) fn insert(&mut self, index: usize) {
        self.0[index / 64] |= 1 << (index % 64);
    }

    pub(crate) fn remove(&mut self, index: usize) {
        self.0[index / 64] &= !(1 << (index % 64));
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        index < Self::CAPACITY && self.0[index / 64] & (1 << (index % 64)) != 0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The fields in either mask.
    pub(crate) fn union(self, other: FieldMask) -> FieldMask {
        let mut out = self;
        for (word, other) in out.0.iter_mut().zip(other.0) {
            *word |= other;
        }
        out
    }
}

/// Walks the field lines of a header section that httparse has already accepted, yielding
/// `(name, value)` with the same trimming httparse applies, so the `i`-th item is the `i`-th
/// parsed field.
///
/// Only sound on validated input: every line is `name ":" OWS value OWS` ending in CRLF or a bare
/// LF, names are tokens (so the first `:` ends the name) and values hold no CR or LF. The walk
/// stops at the empty line that ends the section.
#[derive(Debug, Clone)]
pub(crate) struct FieldLines<'a> {
    rest: &'a [u8],
}

impl<'a> FieldLines<'a> {
    /// `section` starts at the first field line (after the start line).
    pub(crate) fn new(section: &'a [u8]) -> Self {
        FieldLines { rest: section }
    }
}

impl<'a> Iterator for FieldLines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // memchr: the walk runs over every field of every head twice (parse, rebuild), and a
        // byte-at-a-time search was the largest single cost of a request (bench/ profile).
        let newline = memchr::memchr(b'\n', self.rest)?;
        let line = &self.rest[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.rest = &[];
            return None;
        }
        self.rest = &self.rest[newline + 1..];
        let colon = memchr::memchr(b':', line)?;
        Some((&line[..colon], trim_ows(&line[colon + 1..])))
    }
}

/// Appends `name: value\r\n`.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal (no `fmt` machinery on the hot path).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `n` in lowercase hexadecimal without leading zeros (a canonical chunk size).
pub(crate) fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(n % 16) as usize];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classify_is_case_insensitive_and_exact() {
        assert_eq!(classify(b"Content-Length"), KnownField::ContentLength);
        assert_eq!(classify(b"TRANSFER-ENCODING"), KnownField::TransferEncoding);
        assert_eq!(classify(b"x-forwarded-proto"), KnownField::XForwardedProto);
        assert_eq!(classify(b"X-Forwarded-Host"), KnownField::XForwardedHost);
        assert_eq!(classify(b"Proxy-Connection"), KnownField::ProxyConnection);
        assert_eq!(classify(b"keep-alive"), KnownField::KeepAlive);
        assert_eq!(classify(b"TE"), KnownField::Te);
        assert_eq!(classify(b"Traceparent"), KnownField::Traceparent);
        // Same length as a known name but different bytes.
        assert_eq!(classify(b"Content-Lengtx"), KnownField::Other);
        for underscored in [
            "Content_Length",
            "TRANSFER_ENCODING",
            "transfer_encoding",
            "X_Forwarded_For",
            "x-forwarded_proto",
            "X_Forwarded_Host",
            "X_Request_Id",
            "Keep_Alive",
            "Proxy_Connection",
        ] {
            assert_eq!(
                classify(underscored.as_bytes()),
                KnownField::Underscored,
                "{underscored}"
            );
        }
        // Only look-alikes of fields the proxy owns; other names with `_` are forwarded.
        assert_eq!(classify(b"X_Custom_Field"), KnownField::Other);
        assert_eq!(classify(b"Content_Lengtx"), KnownField::Other);
        assert_eq!(classify(b"Content-Type"), KnownField::Other);
        assert_eq!(classify(b"Hostx"), KnownField::Other);
        assert_eq!(classify(b""), KnownField::Other);
    }

    #[test]
    fn trim_and_list_elements() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let elements: Vec<&[u8]> = list_elements(b"a , b,,c ").collect();
        assert_eq!(elements, [&b"a"[..], b"b", b"", b"c"]);
    }

    #[test]
    fn connection_options_split_known_tokens_from_field_names() {
        let mut options = ConnectionOptions::default();
        options.add_field(b"Keep-Alive, x-secret");
        options.add_field(b"UPGRADE");
        assert!(options.keep_alive && options.upgrade && options.names_fields && !options.close);
        let mut options = ConnectionOptions::default();
        options.add_field(b"close, ,");
        assert!(options.close && !options.names_fields);
    }

    #[test]
    fn field_mask_bits_are_independent() {
        let mut mask = FieldMask::default();
        assert!(mask.is_empty());
        mask.insert(0);
        mask.insert(255);
        mask.insert(64);
        assert!(mask.contains(0) && mask.contains(64) && mask.contains(255));
        assert!(!mask.contains(1) && !mask.contains(63) && !mask.contains(256));
        mask.remove(64);
        assert!(!mask.contains(64));
    }

    #[test]
    fn number_writers() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, u64::MAX);
        out.push(b' ');
        push_hex(&mut out, 0);
        out.push(b' ');
        push_hex(&mut out, 0x1a2b);
        out.push(b' ');
        push_hex(&mut out, u64::MAX);
        assert_eq!(out, b"0 18446744073709551615 0 1a2b ffffffffffffffff");
    }

    #[test]
    fn field_lines_handle_crlf_bare_lf_and_empty_values() {
        let section = b"A: 1\r\nB:\t two  \nEmpty:\r\n\r\nbody: no";
        let lines: Vec<_> = FieldLines::new(section).collect();
        assert_eq!(
            lines,
            [(&b"A"[..], &b"1"[..]), (b"B", b"two"), (b"Empty", b"")]
        );
    }

    fn field_line() -> impl Strategy<Value = Vec<u8>> {
        let name = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
        let value = "[ \\t]{0,2}[ -~\\t\u{80}-\u{ff}]{0,16}[ \\t]{0,2}";
        let ending = prop_oneof![Just("\r\n"), Just("\n")];
        (name, value, ending).prop_map(|(name, value, ending)| {
            // Non-ASCII chars in the value strategy stand for single obs-text bytes.
            let value: Vec<u8> = value.chars().map(|c| c as u32 as u8).collect();
            let mut line = name.into_bytes();
            line.push(b':');
            line.extend_from_slice(&value);
            line.extend_from_slice(ending.as_bytes());
            line
        })
    }

    proptest! {
        /// The second pass must see exactly the fields httparse saw, or the drop mask would
        /// strip the wrong field.
        #[test]
        fn field_lines_agree_with_httparse(lines in prop::collection::vec(field_line(), 0..12)) {
            let mut section: Vec<u8> = lines.concat();
            section.extend_from_slice(b"\r\n");
            let mut parsed = [httparse::EMPTY_HEADER; 16];
            let status = httparse::parse_headers(&section, &mut parsed).unwrap();
            let (_, fields) = status.unwrap();
            let ours: Vec<_> = FieldLines::new(&section).collect();
            prop_assert_eq!(ours.len(), fields.len());
            for ((name, value), field) in ours.iter().zip(fields) {
                prop_assert_eq!(*name, field.name.as_bytes());
                prop_assert_eq!(*value, field.value);
            }
        }
    }
}
