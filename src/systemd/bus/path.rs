//! systemd's object paths for units: `/org/freedesktop/systemd1/unit/` + the unit's name with
//! every byte that is not an ASCII letter or digit (and a leading digit) written as `_xx`,
//! lowercase hex (sd-bus's `bus_label_escape`): `api@2.service` →
//! `/org/freedesktop/systemd1/unit/api_402_2eservice`.
//!
//! The calls get a unit's path from `GetUnit`; the escaping is needed the other way, to name the
//! unit of a `PropertiesChanged` signal from the path it came from.

/// Where systemd puts its unit objects (`path_namespace` of the PropertiesChanged match rule).
pub const UNIT_PREFIX: &str = "/org/freedesktop/systemd1/unit";

/// One path element for `name`; `_` for the empty name.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len() * 3);
    for (i, byte) in name.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (i > 0 && byte.is_ascii_digit()) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// The name an element of [`escape`] stands for; `None` when it is not one (a `_` without two
/// hex digits, or bytes that are not UTF-8).
pub fn unescape(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The object path of unit `name`.
pub fn unit_path(name: &str) -> String {
    format!("{UNIT_PREFIX}/{}", escape(name))
}

/// The unit a path under [`UNIT_PREFIX`] names; `None` for any other path.
pub fn unit_of_path(path: &str) -> Option<String> {
    let label = path.strip_prefix(UNIT_PREFIX)?.strip_prefix('/')?;
    if label.contains('/') {
        return None;
    }
    unescape(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_as_systemd_writes_them() {
        assert_eq!(escape("api@2.service"), "api_402_2eservice");
        assert_eq!(escape("dbus.socket"), "dbus_2esocket");
        assert_eq!(escape("a-b_c"), "a_2db_5fc");
        // A leading digit is escaped, later ones are not.
        assert_eq!(escape("1a2"), "_31a2");
        assert_eq!(escape(""), "_");
        assert_eq!(escape("é"), "_c3_a9");
        assert_eq!(
            unit_path("api@12.service"),
            "/org/freedesktop/systemd1/unit/api_4012_2eservice"
        );
    }

    #[test]
    fn paths_unescape_to_the_names_they_stand_for() {
        for name in ["api@2.service", "x-y_z@a:b.socket", "1a2", "", "é.service"] {
            assert_eq!(unescape(&escape(name)).as_deref(), Some(name), "{name}");
            assert_eq!(unit_of_path(&unit_path(name)).as_deref(), Some(name));
        }
        assert_eq!(
            unit_of_path("/org/freedesktop/systemd1/unit/api_402_2eservice").as_deref(),
            Some("api@2.service")
        );
        // Uppercase hex, as systemd never writes it, still reads.
        assert_eq!(unescape("a_2Eb").as_deref(), Some("a.b"));
        assert_eq!(unescape("a_2"), None);
        assert_eq!(unescape("a_zz"), None);
        assert_eq!(unescape("_ff"), None, "not UTF-8");
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/job/42"), None);
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/unit"), None);
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/unit/a/b"), None);
    }
}
