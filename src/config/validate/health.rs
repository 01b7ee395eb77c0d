//! The resilience sections of an upstream group: `[upstream.NAME.health]` (active probes),
//! `[upstream.NAME.outlier]` (passive outlier detection) and `[upstream.NAME.retry]`, and the
//! status sets they share (`"200-399"`, `"502,503,504"`, `"5xx"`).

use super::{secs, Validator};
use crate::config::error::{quote, KeyPath};
use crate::config::file::{FileHealth, FileOutlier, FileRetry};
use crate::config::{HealthCheck, HealthConfig, OutlierConfig, RetryConfig, StatusSet};

const CHECKS: [(&str, bool); 2] = [("http", true), ("tcp", false)];

impl Validator<'_> {
    pub(super) fn health(&mut self, raw: &FileHealth, path: &KeyPath) -> Option<HealthConfig> {
        let http = match &raw.kind {
            None => Some(true),
            Some(text) => self.choice(
                text,
                &path.key("type"),
                "health check type",
                &CHECKS,
                " (http = GET path and check the status, tcp = connect only)",
            ),
        };
        let interval = self.duration(raw.interval.as_ref(), &path.key("interval"), secs(2), true);
        let timeout = self.duration(raw.timeout.as_ref(), &path.key("timeout"), secs(1), true);
        let rise = self.int(raw.rise.as_ref(), &path.key("rise"), 2, 1, 100);
        let fall = self.int(raw.fall.as_ref(), &path.key("fall"), 3, 1, 100);
        let check = match http? {
            true => {
                let path_key = path.key("path");
                let probe_path = match &raw.path {
                    None => Some("/health/ready".to_owned()),
                    Some(text) => self.path(text, &path_key, "/health/ready"),
                };
                let expect = match &raw.expect {
                    None => Some(StatusSet::range(200, 399)),
                    Some(text) => self.status_set(text, &path.key("expect"), 100, "200-399"),
                };
                let host = match &raw.host {
                    None => Some(None),
                    Some(text) => self.host_header(text, &path.key("host")).map(Some),
                };
                HealthCheck::Http {
                    path: probe_path?,
                    expect: expect?,
                    host: host?,
                }
            }
            false => {
                let http_only = [
                    ("path", raw.path.as_ref()),
                    ("expect", raw.expect.as_ref()),
                    ("host", raw.host.as_ref()),
                ];
                let mut ok = true;
                for (key, value) in http_only {
                    if let Some(value) = value {
                        ok = false;
                        self.push(
                            path.key(key),
                            quote(value),
                            format!("`{key}` is only used by type = \"http\" checks"),
                            "remove it, or set type = \"http\" to probe with an HTTP request",
                        );
                    }
                }
                ok.then_some(HealthCheck::Tcp)?
            }
        };
        Some(HealthConfig {
            check,
            interval: interval?,
            timeout: timeout?,
            rise: u32::try_from(rise?).ok()?,
            fall: u32::try_from(fall?).ok()?,
        })
    }

    pub(super) fn outlier(&mut self, raw: &FileOutlier, path: &KeyPath) -> Option<OutlierConfig> {
        let consecutive = self.int(
            raw.consecutive_failures.as_ref(),
            &path.key("consecutive_failures"),
            5,
            0,
            1000,
        );
        let statuses = match &raw.statuses {
            None => Some(StatusSet::range(500, 599)),
            Some(text) => self.status_set(text, &path.key("statuses"), 400, "500-599"),
        };
        let base = self.duration(
            raw.base_ejection_time.as_ref(),
            &path.key("base_ejection_time"),
            secs(30),
            true,
        );
        let max_path = path.key("max_ejection_time");
        let max = self.duration(raw.max_ejection_time.as_ref(), &max_path, secs(300), true);
        let percent = self.int(
            raw.max_ejection_percent.as_ref(),
            &path.key("max_ejection_percent"),
            10,
            1,
            100,
        );
        let (base, max) = (base?, max?);
        if max < base {
            let written = raw
                .max_ejection_time
                .as_ref()
                .map_or_else(|| "\"300s\" (the default)".to_owned(), |d| d.0.as_written());
            self.push(
                max_path,
                written,
                format!("shorter than base_ejection_time ({base:?})"),
                "make max_ejection_time at least base_ejection_time: it caps the growing \
                 ejection time",
            );
            return None;
        }
        Some(OutlierConfig {
            consecutive_failures: u32::try_from(consecutive?).ok()?,
            statuses: statuses?,
            base_ejection_time: base,
            max_ejection_time: max,
            max_ejection_percent: u32::try_from(percent?).ok()?,
        })
    }

    pub(super) fn retry(&mut self, raw: &FileRetry, path: &KeyPath) -> Option<RetryConfig> {
        let max = self.int(raw.max_retries.as_ref(), &path.key("max_retries"), 2, 0, 10);
        let percent = self.int(
            raw.budget_percent.as_ref(),
            &path.key("budget_percent"),
            20,
            0,
            100,
        );
        let floor = self.int(
            raw.budget_min_per_second.as_ref(),
            &path.key("budget_min_per_second"),
            10,
            0,
            100_000,
        );
        Some(RetryConfig {
            max_retries: u32::try_from(max?).ok()?,
            budget_percent: u32::try_from(percent?).ok()?,
            budget_min_per_second: u32::try_from(floor?).ok()?,
        })
    }

    /// A status set whose statuses are all in `lowest..=599`.
    fn status_set(
        &mut self,
        text: &str,
        path: &KeyPath,
        lowest: u16,
        example: &str,
    ) -> Option<StatusSet> {
        match parse_status_set(text, lowest) {
            Ok(set) => Some(set),
            Err(problem) => {
                self.push(
                    path.clone(),
                    quote(text),
                    problem,
                    format!(
                        "write statuses from {lowest} to 599 as ranges, single codes or classes, \
                         separated by commas, e.g. \"{example}\", \"502,503,504\" or \"5xx\""
                    ),
                );
                None
            }
        }
    }

    /// The `Host` header of HTTP probes: a host name or address, optionally with a port.
    fn host_header(&mut self, text: &str, path: &KeyPath) -> Option<String> {
        let valid = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if valid {
            return Some(text.to_owned());
        }
        self.push(
            path.clone(),
            quote(text),
            "not a host name or address",
            "write the host the backend expects, e.g. \"api.internal\" or \"api.internal:8080\" \
             (without scheme or path); leave it out to send the backend's IP:PORT",
        );
        None
    }
}

/// Parses `"200-399"`, `"502,503,504"`, `"5xx"` (and mixes) into a set of statuses in
/// `lowest..=599`; the error says which element is wrong.
pub(crate) fn parse_status_set(text: &str, lowest: u16) -> Result<StatusSet, String> {
    let mut set = StatusSet::default();
    let mut any = false;
    for element in text.split(',').map(str::trim) {
        let (low, high) = if let Some(class) = element.strip_suffix("xx") {
            match class.parse::<u16>() {
                Ok(digit @ 1..=5) => (digit * 100, digit * 100 + 99),
                _ => return Err(format!("`{element}` is not a status class such as 5xx")),
            }
        } else if let Some((low, high)) = element.split_once('-') {
            match (low.trim().parse::<u16>(), high.trim().parse::<u16>()) {
                (Ok(low), Ok(high)) if low <= high => (low, high),
                (Ok(_), Ok(_)) => return Err(format!("the range `{element}` is backwards")),
                _ => return Err(format!("`{element}` is not a range such as 500-599")),
            }
        } else {
            match element.parse::<u16>() {
                Ok(status) => (status, status),
                Err(_) if element.is_empty() => {
                    return Err("an empty element (a stray comma?)".to_owned())
                }
                Err(_) => return Err(format!("`{element}` is not a status code")),
            }
        };
        if low < lowest || high > 599 {
            return Err(format!("`{element}` is outside {lowest}-599"));
        }
        set.insert_range(low, high);
        any = true;
    }
    if any {
        Ok(set)
    } else {
        Err("no status".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{assert_error, invalid, one_error, valid, with};
    use std::time::Duration;

    #[test]
    fn status_sets() {
        let set = parse_status_set("200-204, 3xx,404", 100).unwrap();
        assert!(set.contains(200) && set.contains(204) && set.contains(399) && set.contains(404));
        assert!(!set.contains(205) && !set.contains(400) && !set.contains(500));
        assert_eq!(set.describe(), "200-204,300-399,404");
        assert_eq!(
            parse_status_set("399", 400).unwrap_err(),
            "`399` is outside 400-599"
        );
        assert_eq!(
            parse_status_set("504-502", 100).unwrap_err(),
            "the range `504-502` is backwards"
        );
        assert_eq!(
            parse_status_set("6xx", 100).unwrap_err(),
            "`6xx` is not a status class such as 5xx"
        );
        assert_eq!(
            parse_status_set("500,", 100).unwrap_err(),
            "an empty element (a stray comma?)"
        );
        assert_eq!(
            parse_status_set("ok", 100).unwrap_err(),
            "`ok` is not a status code"
        );
    }

    #[test]
    fn health_defaults_and_values() {
        let config = valid(&with("[upstream.api.health]\n"));
        let health = config.upstreams[0].health.clone().expect("section present");
        assert_eq!(
            health,
            HealthConfig {
                check: HealthCheck::Http {
                    path: "/health/ready".into(),
                    expect: StatusSet::range(200, 399),
                    host: None,
                },
                interval: secs(2),
                timeout: secs(1),
                rise: 2,
                fall: 3,
            }
        );
        assert_eq!(valid(&with("")).upstreams[0].health, None);
        let tcp = valid(&with(
            "[upstream.api.health]\ntype = \"tcp\"\ninterval = \"100ms\"\nrise = 1\n",
        ));
        let health = tcp.upstreams[0].health.clone().unwrap();
        assert_eq!(health.check, HealthCheck::Tcp);
        assert_eq!(health.interval, Duration::from_millis(100));
        assert_eq!(health.rise, 1);
    }

    #[test]
    fn bad_health_values_name_the_key_and_the_fix() {
        let e = one_error(&with("[upstream.api.health]\ntype = \"htttp\"\n"));
        assert_error(
            &e,
            "upstream.api.health.type",
            "\"htttp\"",
            "unknown health check type",
            "did you mean `http`?",
        );
        let e = one_error(&with("[upstream.api.health]\npath = \"health\"\n"));
        assert_error(
            &e,
            "upstream.api.health.path",
            "\"health\"",
            "must start with \"/\"",
            "\"/health\"",
        );
        let e = one_error(&with("[upstream.api.health]\nexpect = \"200-700\"\n"));
        assert_error(
            &e,
            "upstream.api.health.expect",
            "\"200-700\"",
            "outside 100-599",
            "\"200-399\"",
        );
        let e = one_error(&with("[upstream.api.health]\nhost = \"http://api/\"\n"));
        assert_error(
            &e,
            "upstream.api.health.host",
            "\"http://api/\"",
            "not a host name",
            "without scheme or path",
        );
        let e = one_error(&with("[upstream.api.health]\ninterval = \"0s\"\n"));
        assert_error(
            &e,
            "upstream.api.health.interval",
            "\"0s\"",
            "greater than zero",
            "\"2s\"",
        );
        let e = one_error(&with("[upstream.api.health]\ntimeout = \"5\"\n"));
        assert_error(&e, "upstream.api.health.timeout", "\"5\"", "unit", "\"5s\"");
        let e = one_error(&with("[upstream.api.health]\nfall = 0\n"));
        assert_error(
            &e,
            "upstream.api.health.fall",
            "0",
            "between 1 and 100",
            "default is 3",
        );
        let e = one_error(&with("[upstream.api.health]\nrise = 101\n"));
        assert_error(
            &e,
            "upstream.api.health.rise",
            "101",
            "between 1 and 100",
            "default is 2",
        );
        let errors = invalid(&with(
            "[upstream.api.health]\ntype = \"tcp\"\npath = \"/ping\"\nexpect = \"200\"\n",
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_error(
            &errors[0],
            "upstream.api.health.path",
            "\"/ping\"",
            "only used by type = \"http\"",
            "set type = \"http\"",
        );
        let e = one_error(&with("[upstream.api.health]\nintervall = \"1s\"\n"));
        assert_error(
            &e,
            "upstream.api.health.intervall",
            "\"1s\"",
            "unknown key",
            "did you mean `interval`?",
        );
    }

    #[test]
    fn outlier_defaults_and_bad_values() {
        let outlier = valid(&with("")).upstreams[0].outlier.clone();
        assert_eq!(
            outlier,
            OutlierConfig {
                consecutive_failures: 5,
                statuses: StatusSet::range(500, 599),
                base_ejection_time: secs(30),
                max_ejection_time: secs(300),
                max_ejection_percent: 10,
            }
        );
        let e = one_error(&with("[upstream.api.outlier]\nstatuses = \"404,2xx\"\n"));
        assert_error(
            &e,
            "upstream.api.outlier.statuses",
            "\"404,2xx\"",
            "`2xx` is outside 400-599",
            "\"500-599\"",
        );
        let e = one_error(&with(
            "[upstream.api.outlier]\nbase_ejection_time = \"1m\"\nmax_ejection_time = \"10s\"\n",
        ));
        assert_error(
            &e,
            "upstream.api.outlier.max_ejection_time",
            "\"10s\"",
            "shorter than base_ejection_time",
            "at least base_ejection_time",
        );
        let e = one_error(&with(
            "[upstream.api.outlier]\nbase_ejection_time = \"10m\"\n",
        ));
        assert_error(
            &e,
            "upstream.api.outlier.max_ejection_time",
            "\"300s\" (the default)",
            "shorter than base_ejection_time",
            "at least base_ejection_time",
        );
        let e = one_error(&with("[upstream.api.outlier]\nmax_ejection_percent = 0\n"));
        assert_error(
            &e,
            "upstream.api.outlier.max_ejection_percent",
            "0",
            "between 1 and 100",
            "default is 10",
        );
        let e = one_error(&with("[upstream.api.outlier]\nconsecutive_failures = -1\n"));
        assert_error(
            &e,
            "upstream.api.outlier.consecutive_failures",
            "-1",
            "between 0 and 1000",
            "default is 5",
        );
        let off = valid(&with("[upstream.api.outlier]\nconsecutive_failures = 0\n"));
        assert_eq!(off.upstreams[0].outlier.consecutive_failures, 0);
    }

    #[test]
    fn retry_defaults_and_bad_values() {
        let retry = valid(&with("")).upstreams[0].retry.clone();
        assert_eq!(
            retry,
            RetryConfig {
                max_retries: 2,
                budget_percent: 20,
                budget_min_per_second: 10,
            }
        );
        let e = one_error(&with("[upstream.api.retry]\nmax_retries = 11\n"));
        assert_error(
            &e,
            "upstream.api.retry.max_retries",
            "11",
            "between 0 and 10",
            "default is 2",
        );
        let e = one_error(&with("[upstream.api.retry]\nbudget_percent = 120\n"));
        assert_error(
            &e,
            "upstream.api.retry.budget_percent",
            "120",
            "between 0 and 100",
            "default is 20",
        );
        let e = one_error(&with(
            "[upstream.api.retry]\nbudget_min_per_second = \"many\"\n",
        ));
        assert_error(
            &e,
            "upstream.api.retry.budget_min_per_second",
            "\"many\"",
            "not an integer",
            "e.g. 10",
        );
    }
}
