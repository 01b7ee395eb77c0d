//! Durations and sizes as written in the configuration.
//!
//! Durations are a whole number and a unit: `"500ms"`, `"2s"`, `"1m"`, `"1h"`. A number without a
//! unit is refused (is `30` seconds or milliseconds?), and so are fractions and compound forms;
//! each refusal comes with the spelling that would have worked (`"1.5s"` → `"1500ms"`).
//!
//! Sizes are an integer number of bytes or a whole number and a binary unit: `"512B"`, `"16KiB"`,
//! `"8MiB"`, `"1GiB"`. Decimal-looking units (`"16KB"`, `"16k"`) are refused with the binary
//! spelling as the fix, so nobody has to guess whether a kilobyte is 1000 or 1024 bytes.

use std::time::Duration;

/// Why a value did not parse, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitError {
    pub problem: String,
    pub fix: String,
}

fn err(problem: impl Into<String>, fix: impl Into<String>) -> UnitError {
    UnitError {
        problem: problem.into(),
        fix: fix.into(),
    }
}

const DURATION_UNITS: &str = "ms, s, m, h";
const SIZE_UNITS: &str = "B, KiB, MiB, GiB";

/// Milliseconds per duration unit, largest first (for formatting).
const DURATION_SCALE: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)];

/// Bytes per size unit, largest first.
const SIZE_SCALE: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Splits `"16 KiB"` into `("16", "KiB")`.
fn split_number(text: &str) -> (&str, &str) {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == '_'))
        .unwrap_or(text.len());
    (&text[..digits], text[digits..].trim_start())
}

/// The duration unit a common spelling means.
fn duration_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ms" | "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        _ => return None,
    })
}

fn duration_scale(unit: &str) -> Option<u64> {
    DURATION_SCALE
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, ms)| *ms)
}

/// A duration in the largest unit that represents it exactly: 90s → `"90s"`, 120s → `"2m"`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, scale) in DURATION_SCALE {
        let scale = u128::from(scale);
        if ms >= scale && ms % scale == 0 {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// A byte count in the largest binary unit that represents it exactly.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, scale) in SIZE_SCALE {
        if bytes >= scale && bytes % scale == 0 {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

/// Parses `"500ms"`, `"2s"`, `"1m"`, `"1h"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let example = "e.g. \"30s\" or \"500ms\"";
    if text.is_empty() {
        return Err(err(
            "empty duration",
            format!("write a whole number and a unit ({DURATION_UNITS}), {example}"),
        ));
    }
    let (number, unit) = split_number(text);
    if number.starts_with('-') {
        return Err(err(
            "a duration cannot be negative",
            format!("write a positive duration, {example}"),
        ));
    }
    if number.is_empty() {
        return Err(err(
            "not a duration",
            format!("write a whole number and a unit ({DURATION_UNITS}), {example}"),
        ));
    }
    let canonical = duration_unit(unit);
    if number.contains('.') {
        return Err(fraction(number, canonical));
    }
    if unit.is_empty() {
        return Err(err(
            "a duration needs a unit",
            format!("add a unit: \"{number}s\" for seconds, \"{number}ms\" for milliseconds (units: {DURATION_UNITS})"),
        ));
    }
    if let Some(total) = compound_duration(text) {
        return Err(err(
            "a duration is written in a single unit",
            format!("write \"{}\"", format_duration(total)),
        ));
    }
    let Some(canonical) = canonical else {
        let fix = match unit.to_ascii_lowercase().as_str() {
            "d" | "day" | "days" => match number.parse::<u64>() {
                Ok(days) => format!("write it in hours: \"{}h\"", days.saturating_mul(24)),
                Err(_) => format!("use one of the units {DURATION_UNITS}"),
            },
            "us" | "µs" | "ns" => "the smallest unit is ms: write \"1ms\" or more".to_string(),
            _ => format!("use one of the units {DURATION_UNITS}, {example}"),
        };
        return Err(err(format!("unknown duration unit `{unit}`"), fix));
    };
    if canonical != unit {
        return Err(err(
            format!("unknown duration unit `{unit}`"),
            format!("write \"{number}{canonical}\" (units: {DURATION_UNITS})"),
        ));
    }
    let count: u64 = number.parse().map_err(|_| {
        err(
            format!("`{number}` is not a whole number"),
            format!("write a whole number and a unit, {example}"),
        )
    })?;
    let scale = duration_scale(canonical).unwrap_or(1);
    count
        .checked_mul(scale)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            err(
                "duration too large",
                format!("write a smaller duration, {example}"),
            )
        })
}

/// `"1.5s"` → suggest `"1500ms"` when that is exact.
fn fraction(number: &str, unit: Option<&str>) -> UnitError {
    let problem = "a duration is a whole number of a unit";
    let smaller = match unit {
        Some("s") => Some(("ms", 1000.0)),
        Some("m") => Some(("s", 60.0)),
        Some("h") => Some(("m", 60.0)),
        _ => None,
    };
    if let (Some((smaller, factor)), Ok(value)) = (smaller, number.parse::<f64>()) {
        let converted = value * factor;
        if converted >= 0.0 && converted.fract() == 0.0 && converted < 1e15 {
            return err(
                problem,
                format!("use a smaller unit: \"{converted}{smaller}\""),
            );
        }
    }
    err(
        problem,
        "use a smaller unit, e.g. \"1500ms\" instead of \"1.5s\"",
    )
}

/// `"1m30s"` → 90s, when the text is several valid number+unit parts.
fn compound_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let units = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let count: u64 = rest[..digits].parse().ok()?;
        let scale = duration_scale(duration_unit(&rest[digits..units])?)?;
        total = total.checked_add(Duration::from_millis(count.checked_mul(scale)?))?;
        parts += 1;
        rest = &rest[units..];
    }
    (parts > 1).then_some(total)
}

/// Parses a size string: `"512B"`, `"16KiB"`, `"8MiB"`, `"1GiB"`, or plain digits (bytes, for
/// values that arrive as strings through `${VAR}`).
pub(crate) fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let example = "e.g. \"16KiB\" or \"8MiB\"";
    let (number, unit) = split_number(text);
    if number.starts_with('-') {
        return Err(err(
            "a size cannot be negative",
            format!("write a positive size, {example}"),
        ));
    }
    if number.is_empty() {
        return Err(err(
            "not a size",
            format!(
                "write a number of bytes or a whole number and a unit ({SIZE_UNITS}), {example}"
            ),
        ));
    }
    if number.contains('.') {
        return Err(size_fraction(number, unit));
    }
    let scale = if unit.is_empty() {
        1
    } else {
        match SIZE_SCALE.iter().find(|(name, _)| *name == unit) {
            Some((_, scale)) => *scale,
            None => {
                let fix = match binary_spelling(unit) {
                    Some(binary) => format!(
                        "write \"{number}{binary}\" (sizes use binary units: 1 KiB = 1024 bytes; units: {SIZE_UNITS})"
                    ),
                    None => format!("use one of the units {SIZE_UNITS}, {example}"),
                };
                return Err(err(format!("unknown size unit `{unit}`"), fix));
            }
        }
    };
    let count: u64 = number.parse().map_err(|_| {
        err(
            format!("`{number}` is not a whole number"),
            format!("write a whole number and a unit, {example}"),
        )
    })?;
    count
        .checked_mul(scale)
        .ok_or_else(|| err("size too large", format!("write a smaller size, {example}")))
}

/// `"1.5MiB"` → suggest `"1536KiB"` when that is exact.
fn size_fraction(number: &str, unit: &str) -> UnitError {
    let problem = "a size is a whole number of a unit";
    let smaller = match unit {
        "GiB" => Some("MiB"),
        "MiB" => Some("KiB"),
        "KiB" => Some("B"),
        _ => None,
    };
    if let (Some(smaller), Ok(value)) = (smaller, number.parse::<f64>()) {
        let converted = value * 1024.0;
        if converted >= 0.0 && converted.fract() == 0.0 && converted < 1e15 {
            return err(
                problem,
                format!("use a smaller unit: \"{converted}{smaller}\""),
            );
        }
    }
    err(
        problem,
        format!("use a smaller unit, e.g. \"1536KiB\" instead of \"1.5MiB\" (units: {SIZE_UNITS})"),
    )
}

/// `"KB"`, `"k"`, `"kib"` → `"KiB"`.
fn binary_spelling(unit: &str) -> Option<&'static str> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "b" | "byte" | "bytes" => "B",
        "k" | "kb" | "kib" => "KiB",
        "m" | "mb" | "mib" => "MiB",
        "g" | "gb" | "gib" => "GiB",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration_fix(text: &str) -> String {
        parse_duration(text).expect_err(text).fix
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn a_bare_number_needs_a_unit() {
        let error = parse_duration("30").unwrap_err();
        assert_eq!(error.problem, "a duration needs a unit");
        assert!(
            error.fix.starts_with("add a unit: \"30s\""),
            "{}",
            error.fix
        );
    }

    #[test]
    fn duration_mistakes_get_the_right_spelling() {
        assert!(duration_fix("1.5s").contains("\"1500ms\""));
        assert!(duration_fix("1.5m").contains("\"90s\""));
        assert!(duration_fix("1m30s").contains("\"90s\""));
        assert!(duration_fix("5sec").contains("\"5s\""));
        assert!(duration_fix("10 minutes").contains("\"10m\""));
        assert!(duration_fix("2d").contains("\"48h\""));
        assert!(duration_fix("10us").contains("smallest unit is ms"));
        assert!(duration_fix("").contains("ms, s, m, h"));
        assert!(duration_fix("s").contains("ms, s, m, h"));
        assert!(duration_fix("1.5").contains("smaller unit"));
        assert!(parse_duration("-5s")
            .unwrap_err()
            .problem
            .contains("negative"));
        assert!(parse_duration("5x").unwrap_err().problem.contains("`x`"));
        assert!(parse_duration("99999999999999999h")
            .unwrap_err()
            .problem
            .contains("too large"));
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16 KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("4096"), Ok(4096));
    }

    #[test]
    fn size_mistakes_get_the_binary_spelling() {
        let error = parse_size("16KB").unwrap_err();
        assert_eq!(error.problem, "unknown size unit `KB`");
        assert!(error.fix.starts_with("write \"16KiB\""), "{}", error.fix);
        assert!(parse_size("2m").unwrap_err().fix.contains("\"2MiB\""));
        assert!(parse_size("1.5MiB")
            .unwrap_err()
            .fix
            .contains("\"1536KiB\""));
        assert!(parse_size("1.5GiB")
            .unwrap_err()
            .fix
            .contains("\"1536MiB\""));
        assert!(parse_size("0.3KiB").unwrap_err().fix.contains("e.g."));
        assert!(parse_size("-1KiB")
            .unwrap_err()
            .problem
            .contains("negative"));
        assert!(parse_size("lots")
            .unwrap_err()
            .problem
            .contains("not a size"));
        assert!(parse_size("5TB")
            .unwrap_err()
            .fix
            .contains("B, KiB, MiB, GiB"));
        assert!(parse_size("99999999999999GiB")
            .unwrap_err()
            .problem
            .contains("too large"));
    }

    #[test]
    fn formatting_picks_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_size(16 * 1024), "16KiB");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1000), "1000B");
    }
}
