//! Rates as written in the file: `"100/s"`, `"6000/min"`, `"10/h"`, `"1000/day"` — a count of
//! at least 1 per one unit of time. Rate limits and the per-client connection rate use them.

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::Rate;
use std::time::Duration;

const UNITS: [(&[&str], u64); 4] = [
    (&["s", "sec", "second"], 1),
    (&["m", "min", "minute"], 60),
    (&["h", "hour"], 3600),
    (&["d", "day"], 86400),
];

/// Parses `COUNT/UNIT`; the error is the problem to report.
pub(crate) fn parse_rate(text: &str) -> Result<Rate, String> {
    let Some((count, unit)) = text.trim().split_once('/') else {
        return Err("not a rate: it has no `/`".to_owned());
    };
    let count: u32 = match count.trim().parse() {
        Ok(0) => return Err("the count must be at least 1".to_owned()),
        Ok(n) => n,
        Err(_) => return Err(format!("`{}` is not a whole number", count.trim())),
    };
    let unit = unit.trim();
    let seconds = UNITS
        .iter()
        .find(|(names, _)| names.contains(&unit))
        .map(|(_, seconds)| *seconds)
        .ok_or_else(|| format!("`{unit}` is not a unit of time (s, min, h or day)"))?;
    Ok(Rate {
        count,
        per: Duration::from_secs(seconds),
    })
}

impl Validator<'_> {
    /// The rate at `path`, or `None` after reporting why it is not one.
    pub(super) fn rate(&mut self, text: &str, path: &KeyPath) -> Option<Rate> {
        match parse_rate(text) {
            Ok(rate) => Some(rate),
            Err(problem) => {
                self.push(
                    path.clone(),
                    quote(text),
                    problem,
                    "write a count per unit of time: \"100/s\", \"6000/min\", \"10/h\" or \
                     \"1000/day\"",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_written() {
        let rate = parse_rate("100/s").unwrap();
        assert_eq!((rate.count, rate.per), (100, Duration::from_secs(1)));
        assert_eq!(
            parse_rate(" 6000 / min ").unwrap().per,
            Duration::from_secs(60)
        );
        assert_eq!(parse_rate("10/hour").unwrap().to_string(), "10/h");
        assert_eq!(parse_rate("1000/day").unwrap().to_string(), "1000/day");
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert!(parse_rate("100").unwrap_err().contains("no `/`"));
        assert!(parse_rate("0/s").unwrap_err().contains("at least 1"));
        assert!(parse_rate("ten/s").unwrap_err().contains("whole number"));
        assert!(parse_rate("10/week").unwrap_err().contains("unit of time"));
    }
}
