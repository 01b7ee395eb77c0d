//! `[upstream.NAME.autoscale]`: bounds, the metric and its target, tolerance, windows, step,
//! panic mode and the drain timeout of a scale-in. Whether the group can be scaled (its units
//! are discovered from a template, or it is `lbproxy up`'s group) is checked with the group.

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::file::{FileAutoscale, FileNumber};
use crate::config::{AutoscaleConfig, AutoscaleMetric};

const METRICS: [(&str, AutoscaleMetric); 4] = [
    ("in_flight", AutoscaleMetric::InFlight),
    ("rps", AutoscaleMetric::Rps),
    ("p99", AutoscaleMetric::P99),
    ("cpu", AutoscaleMetric::Cpu),
];

/// The most instances a group may scale to (systemd units and child processes alike).
const MAX_INSTANCES: i64 = 1000;

impl Validator<'_> {
    pub(super) fn autoscale(
        &mut self,
        raw: &FileAutoscale,
        path: &KeyPath,
    ) -> Option<AutoscaleConfig> {
        // The defaults, written once (`AutoscaleConfig::defaults`, also `lbproxy up`'s).
        let d = AutoscaleConfig::defaults(1, 8);
        let min = self.int(
            raw.min.as_ref(),
            &path.key("min"),
            d.min.into(),
            0,
            MAX_INSTANCES,
        );
        let max = match &raw.max {
            None => {
                self.push(
                    path.key("max"),
                    "",
                    "no upper bound for the number of instances",
                    "write the most instances the machine can run, e.g. max = 8",
                );
                None
            }
            Some(raw) => self.int(Some(raw), &path.key("max"), d.max.into(), 1, MAX_INSTANCES),
        };
        let metric = match &raw.metric {
            None => Some(d.metric),
            Some(text) => self.choice(
                text,
                &path.key("metric"),
                "autoscale metric",
                &METRICS,
                " (in_flight: requests in flight per instance; rps: responses per second per \
                 instance; p99: the group's p99 in ms; cpu: percent of one core per instance)",
            ),
        };
        let target = metric.and_then(|metric| self.target(raw.target, metric, &path.key("target")));
        let tolerance = self.percent(
            raw.tolerance.as_deref(),
            &path.key("tolerance"),
            percent_of(d.tolerance),
            0,
            100,
        );
        let scale_up_window = self.duration(
            raw.scale_up_window.as_ref(),
            &path.key("scale_up_window"),
            d.scale_up_window,
            false,
        );
        let scale_down_window = self.duration(
            raw.scale_down_window.as_ref(),
            &path.key("scale_down_window"),
            d.scale_down_window,
            false,
        );
        let max_step = self.int(
            raw.max_step.as_ref(),
            &path.key("max_step"),
            d.max_step.into(),
            1,
            MAX_INSTANCES,
        );
        let panic_threshold = self.percent(
            raw.panic_threshold.as_deref(),
            &path.key("panic_threshold"),
            percent_of(d.panic_threshold),
            101,
            10_000,
        );
        let panic_window = self.duration(
            raw.panic_window.as_ref(),
            &path.key("panic_window"),
            d.panic_window,
            true,
        );
        let drain_timeout = self.duration(
            raw.drain_timeout.as_ref(),
            &path.key("drain_timeout"),
            d.drain_timeout,
            true,
        );
        let (min, max) = (min?, max?);
        if min > max {
            self.push(
                path.key("min"),
                min.to_string(),
                format!("more than max ({max})"),
                format!("write min ≤ max, e.g. min = {}", max.min(1)),
            );
            return None;
        }
        Some(AutoscaleConfig {
            min: min as u32,
            max: max as u32,
            metric: metric?,
            target: target?,
            tolerance: tolerance? as f64 / 100.0,
            scale_up_window: scale_up_window?,
            scale_down_window: scale_down_window?,
            max_step: max_step? as u32,
            panic_threshold: panic_threshold? as f64 / 100.0,
            panic_window: panic_window?,
            drain_timeout: drain_timeout?,
        })
    }

    /// `target`, defaulting by metric (10 in flight; the others have no sensible default).
    fn target(
        &mut self,
        raw: Option<FileNumber>,
        metric: AutoscaleMetric,
        path: &KeyPath,
    ) -> Option<f64> {
        let example = match metric {
            AutoscaleMetric::InFlight => "target = 10 (requests in flight per instance)",
            AutoscaleMetric::Rps => "target = 500 (responses per second per instance)",
            AutoscaleMetric::P99 => "target = 200 (milliseconds)",
            AutoscaleMetric::Cpu => "target = 70 (percent of one core per instance)",
        };
        let value = match raw {
            None if metric == AutoscaleMetric::InFlight => {
                return Some(AutoscaleConfig::defaults(1, 1).target)
            }
            None => {
                self.push(
                    path.clone(),
                    "",
                    format!("metric \"{}\" has no default target", metric.as_str()),
                    format!("write one: {example}"),
                );
                return None;
            }
            Some(FileNumber::Int(n)) => n as f64,
            Some(FileNumber::Float(x)) => x,
        };
        if value.is_finite() && value > 0.0 {
            return Some(value);
        }
        self.push(
            path.clone(),
            value.to_string(),
            "must be a positive number",
            format!("write {example}"),
        );
        None
    }

    /// `"10%"` as 10, within `lowest..=highest`.
    fn percent(
        &mut self,
        text: Option<&str>,
        path: &KeyPath,
        default: u32,
        lowest: u32,
        highest: u32,
    ) -> Option<u32> {
        let Some(text) = text else {
            return Some(default);
        };
        let value = text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| (lowest..=highest).contains(n));
        if value.is_none() {
            self.push(
                path.clone(),
                quote(text),
                format!("not a percentage from {lowest}% to {highest}%"),
                format!("write e.g. \"{default}%\" (the default)"),
            );
        }
        value
    }
}

/// A ratio as the whole percent the configuration writes (0.1 → 10).
fn percent_of(ratio: f64) -> u32 {
    (ratio * 100.0).round() as u32
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{one_error, valid};
    use crate::config::AutoscaleMetric;
    use std::time::Duration;

    const GROUP: &str = "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                         [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
                         address = \"127.0.0.1:{8000+N}\"\n";

    fn table(text: &str) -> String {
        format!("{GROUP}[upstream.api.autoscale]\n{text}")
    }

    #[test]
    fn defaults_follow_hpa_and_knative() {
        let config = valid(&table("max = 8\n"));
        let autoscale = config.upstreams[0].autoscale.clone().unwrap();
        assert_eq!((autoscale.min, autoscale.max), (1, 8));
        assert_eq!(autoscale.metric, AutoscaleMetric::InFlight);
        assert_eq!(autoscale.target, 10.0);
        assert_eq!(autoscale.tolerance, 0.1);
        assert_eq!(autoscale.scale_up_window, Duration::ZERO);
        assert_eq!(autoscale.scale_down_window, Duration::from_secs(300));
        assert_eq!(autoscale.max_step, 4);
        assert_eq!(autoscale.panic_threshold, 2.0);
        let rps = valid(&table("min = 0\nmax = 4\nmetric = \"rps\"\ntarget = 2.5\n"));
        let rps = rps.upstreams[0].autoscale.clone().unwrap();
        assert_eq!(
            (rps.min, rps.metric, rps.target),
            (0, AutoscaleMetric::Rps, 2.5)
        );
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let cases = [
            ("min = 1\n", "autoscale.max", "no upper bound", "max = 8"),
            (
                "min = 5\nmax = 2\n",
                "autoscale.min",
                "more than max",
                "min ≤ max",
            ),
            (
                "max = 4\nmetric = \"rps\"\n",
                "autoscale.target",
                "no default target",
                "target = 500",
            ),
            (
                "max = 4\nmetric = \"load\"\n",
                "autoscale.metric",
                "unknown autoscale metric",
                "in_flight",
            ),
            (
                "max = 4\ntarget = 0\n",
                "autoscale.target",
                "positive",
                "target = 10",
            ),
            (
                "max = 4\ntolerance = \"0.1\"\n",
                "autoscale.tolerance",
                "percentage",
                "10%",
            ),
            (
                "max = 4\npanic_threshold = \"50%\"\n",
                "autoscale.panic_threshold",
                "101%",
                "200%",
            ),
        ];
        for (text, key, problem, fix) in cases {
            let e = one_error(&table(text)).to_string();
            assert!(e.contains(&format!("upstream.api.{key}")), "{key}: {e}");
            assert!(e.contains(problem), "{key}: {e}");
            assert!(e.contains(fix), "{key}: {e}");
        }
    }

    #[test]
    fn only_a_group_whose_units_can_be_started_scales() {
        let static_group = one_error(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"web\"\n\
             [upstream.web]\nbackends = [\"127.0.0.1:8001\"]\n[upstream.web.autoscale]\nmax = 4\n",
        )
        .to_string();
        assert!(
            static_group.contains("upstream.web.autoscale"),
            "{static_group}"
        );
        assert!(static_group.contains("discover"), "{static_group}");
        assert!(
            static_group.contains("lbproxy up --autoscale"),
            "{static_group}"
        );
        // `lbproxy up`'s group (a group named api, or [up] upstream) may: `up --autoscale`
        // scales its own instances.
        let up = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n[upstream.api.autoscale]\nmax = 4\n",
        );
        assert_eq!(up.upstreams[0].autoscale.as_ref().map(|a| a.max), Some(4));
        let socket = one_error(&format!(
            "{}[upstream.api.autoscale]\nmax = 4\n",
            GROUP.replace("api@*.service", "api-*.service")
        ))
        .to_string();
        assert!(socket.contains("api@*.service"), "{socket}");
    }
}
