//! A route's header rules applied to a head being written ([`HeaderEdits`]: remove, set, add):
//! which of the message's own field lines are dropped ([`drops`]: removed, or replaced by a
//! `set`), and the lines the rules write after them ([`write_fields`]), values expanded from the
//! request's [`TemplateVars`]. The names were validated as tokens and the values' literal text
//! has no control characters; the variables expand to parts of a head this codec validated.

use crate::config::{HeaderEdits, Template, TemplateVars};

/// Whether a field line of the message named `name` is dropped: removed, or set anew.
pub(crate) fn drops(edits: &HeaderEdits, name: &[u8]) -> bool {
    edits
        .remove
        .iter()
        .any(|removed| removed.as_bytes().eq_ignore_ascii_case(name))
        || edits
            .set
            .iter()
            .any(|(set, _)| set.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether the rules remove, set or add the field `name` (the proxy then leaves it to them).
pub(crate) fn names(edits: &HeaderEdits, name: &[u8]) -> bool {
    drops(edits, name)
        || edits
            .add
            .iter()
            .any(|(added, _)| added.as_bytes().eq_ignore_ascii_case(name))
}

/// The `set` rule for `name`, if there is one.
pub(crate) fn set_value<'e>(edits: &'e HeaderEdits, name: &[u8]) -> Option<&'e Template> {
    edits
        .set
        .iter()
        .find(|(set, _)| set.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Writes the `set` fields, then the `add` fields, in the order configured; a `set` of `skip`
/// is left out (written elsewhere: the request's `Host`).
pub(crate) fn write_fields(
    edits: &HeaderEdits,
    vars: &TemplateVars<'_>,
    skip: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    for (name, value) in &edits.set {
        if skip.is_some_and(|skip| name.as_bytes().eq_ignore_ascii_case(skip)) {
            continue;
        }
        write_field(name, value, vars, out);
    }
    for (name, value) in &edits.add {
        write_field(name, value, vars, out);
    }
}

/// `Name: value` with the value expanded, CRLF.
pub(crate) fn write_field(
    name: &str,
    value: &Template,
    vars: &TemplateVars<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let start = out.len();
    value.expand(vars, out);
    debug_assert!(
        !out[start..].iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
        "a header rule expanded to a line break"
    );
    out.extend_from_slice(b"\r\n");
}
