//! Reading a field or a cookie of a parsed request by name: what consistent hashing on a header
//! or a cookie needs, the query and fields a route's conditions test, and compression's
//! `Accept-Encoding`. A second pass over the head's field lines (see [`FieldLines`]), done only for
//! groups that hash on one, routes that test one and routes that compress; nothing is allocated.

use super::headers::{trim_ows, FieldLines};
use super::request::Request;
use super::target::TargetForm;

impl<'a> Request<'a> {
    /// The value of the first field named `name` (case-insensitive), trimmed, as received.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        FieldLines::new(self.fields)
            .find(|(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// The values of every field named `name` (case-insensitive), trimmed, in order: each field
    /// line is one value, as received (a list in one line is not split).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        FieldLines::new(self.fields)
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// The query of the target, after its `?`, as sent (`None` without a `?`, and for
    /// authority-form and `*` targets).
    pub fn query(&self) -> Option<&'a str> {
        let origin = match self.target_form {
            TargetForm::Origin => self.target,
            TargetForm::Absolute { origin_start, .. } => &self.target[origin_start..],
            TargetForm::Authority | TargetForm::Asterisk => return None,
        };
        origin.split_once('?').map(|(_, query)| query)
    }

    /// The target has a path to rewrite: origin-form, or absolute-form (not `*`, not CONNECT's
    /// authority-form).
    pub fn has_path(&self) -> bool {
        matches!(
            self.target_form,
            TargetForm::Origin | TargetForm::Absolute { .. }
        )
    }

    /// The value of the first cookie named `name` (case-sensitive, RFC 6265 §5.4) in the
    /// `Cookie` fields: `Cookie: a=1; session=xyz` gives `xyz` for `session`.
    pub fn cookie(&self, name: &str) -> Option<&'a [u8]> {
        FieldLines::new(self.fields)
            .filter(|(field, _)| field.eq_ignore_ascii_case(b"cookie"))
            .flat_map(|(_, value)| value.split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = trim_ows(pair);
                let equals = pair.iter().position(|&b| b == b'=')?;
                (trim_ows(&pair[..equals]) == name.as_bytes())
                    .then(|| trim_ows(&pair[equals + 1..]))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::complete;

    #[test]
    fn headers_by_name_any_case_first_one_wins() {
        let request =
            complete("GET / HTTP/1.1\r\nHost: a\r\nX-User:  alice \r\nx-user: bob\r\n\r\n");
        assert_eq!(request.header("x-user"), Some(&b"alice"[..]));
        assert_eq!(request.header("X-USER"), Some(&b"alice"[..]));
        assert_eq!(request.header("x-other"), None);
        let all: Vec<_> = request.header_values("X-User").collect();
        assert_eq!(all, [&b"alice"[..], &b"bob"[..]]);
    }

    #[test]
    fn every_value_of_a_field_and_the_query() {
        let request = complete(
            "GET /a?x=1&y HTTP/1.1\r\nHost: a\r\nX-Tag: one\r\nx-tag:  two, three \r\n\r\n",
        );
        let values: Vec<&[u8]> = request.header_values("X-TAG").collect();
        assert_eq!(values, [&b"one"[..], &b"two, three"[..]]);
        assert_eq!(request.query(), Some("x=1&y"));
        assert!(request.has_path());
        assert_eq!(complete("GET / HTTP/1.1\r\nHost: a\r\n\r\n").query(), None);
        let absolute = complete("GET http://a/p?q HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(absolute.query(), Some("q"));
        let star = complete("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!star.has_path());
    }

    #[test]
    fn cookies_by_exact_name_across_cookie_fields() {
        let request = complete(
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; Session=no\r\n\
             cookie: session=abc123;x=1\r\n\r\n",
        );
        assert_eq!(request.cookie("session"), Some(&b"abc123"[..]));
        assert_eq!(request.cookie("theme"), Some(&b"dark"[..]));
        assert_eq!(request.cookie("Session"), Some(&b"no"[..]));
        assert_eq!(request.cookie("missing"), None);
    }
}
