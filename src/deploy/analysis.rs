//! The analysis of one canary step: the canary's figures against stable's over the same window,
//! from the proxy's own per-backend counters, each check with both values and its limit, so
//! every verdict can be shown with the numbers behind it.
//!
//! Verdicts: **hold** when either side answered fewer than `min_requests` in the window (too few
//! to judge: never promoted on silence, never failed on it either); **fail** when any check
//! fails; **pass** otherwise. The controller counts failures in a row against
//! `failure_limit`; a hold neither passes nor resets that count.

use super::spec::AnalysisSpec;
use serde::{Deserialize, Serialize};

/// Below this p99 (ms) the canary's latency is not compared with stable's by ratio: at a few
/// milliseconds the ratio measures noise, not a regression.
pub const P99_RATIO_FLOOR_MS: f64 = 5.0;

/// What one side (canary or stable) did in the window: sums over its backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SideFigures {
    /// Responses from its backends, and tries that got none.
    pub requests: u64,
    /// 5xx responses from its backends.
    pub server_errors: u64,
    /// Tries that got no response (connect errors, resets, timeouts, invalid responses).
    pub failed_attempts: u64,
    /// Of those, connections that could not be made.
    pub connect_errors: u64,
    /// The p99 latency over the window in ms; `None` without a response.
    pub p99_ms: Option<f64>,
}

impl SideFigures {
    /// 5xx and failed tries over requests; 0 without requests.
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        (self.server_errors + self.failed_attempts) as f64 / self.requests as f64
    }
}

/// One check: its name, the canary's value, stable's (where it compares), the limit, and
/// whether it passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub canary: f64,
    pub stable: Option<f64>,
    pub limit: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Hold,
    Fail,
}

/// A step's analysis: the verdict, why, the checks, and both sides' figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub verdict: Verdict,
    /// One line: for a hold, the counts against `min_requests`; for a failure, the failed
    /// checks with their values.
    pub summary: String,
    pub checks: Vec<Check>,
    pub canary: SideFigures,
    pub stable: SideFigures,
}

/// Judges the canary against stable over one window.
pub fn judge(canary: &SideFigures, stable: &SideFigures, spec: &AnalysisSpec) -> Analysis {
    let mut checks = Vec::new();
    let canary_ratio = canary.error_ratio();
    let stable_ratio = stable.error_ratio();
    checks.push(Check {
        name: "error_ratio".into(),
        canary: canary_ratio,
        stable: Some(stable_ratio),
        limit: spec.max_error_ratio,
        passed: canary_ratio <= spec.max_error_ratio,
    });
    checks.push(Check {
        name: "error_ratio_increase".into(),
        canary: canary_ratio - stable_ratio,
        stable: None,
        limit: spec.max_error_ratio_increase,
        passed: canary_ratio - stable_ratio <= spec.max_error_ratio_increase,
    });
    if let Some(p99) = canary.p99_ms {
        checks.push(Check {
            name: "p99_ms".into(),
            canary: p99,
            stable: stable.p99_ms,
            limit: spec.max_p99_ms,
            passed: p99 <= spec.max_p99_ms,
        });
        if let Some(stable_p99) = stable.p99_ms.filter(|p| *p > 0.0) {
            let ratio = p99 / stable_p99;
            checks.push(Check {
                name: "p99_ratio".into(),
                canary: ratio,
                stable: None,
                limit: spec.max_p99_ratio,
                passed: ratio <= spec.max_p99_ratio || p99 <= P99_RATIO_FLOOR_MS,
            });
        }
    }

    let too_few = canary.requests < spec.min_requests || stable.requests < spec.min_requests;
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
    // A canary failing badly is failed even on few requests: its failures are certain.
    let certain_failure = canary.server_errors + canary.failed_attempts >= spec.min_requests;
    let (verdict, summary) = if too_few && !certain_failure {
        (
            Verdict::Hold,
            format!(
                "too few requests to judge: canary {}, stable {} (at least {} each): holding",
                canary.requests, stable.requests, spec.min_requests
            ),
        )
    } else if !failed.is_empty() {
        let parts: Vec<String> = failed.iter().map(|c| describe(c)).collect();
        (Verdict::Fail, parts.join("; "))
    } else {
        (
            Verdict::Pass,
            format!(
                "canary {} requests, error ratio {:.4}, p99 {}; stable {} requests, error \
                 ratio {:.4}, p99 {}",
                canary.requests,
                canary_ratio,
                ms(canary.p99_ms),
                stable.requests,
                stable_ratio,
                ms(stable.p99_ms)
            ),
        )
    };
    Analysis {
        verdict,
        summary,
        checks,
        canary: *canary,
        stable: *stable,
    }
}

fn describe(check: &Check) -> String {
    match check.stable {
        Some(stable) => format!(
            "{} {:.4} > {:.4} (stable {:.4})",
            check.name, check.canary, check.limit, stable
        ),
        None => format!("{} {:.4} > {:.4}", check.name, check.canary, check.limit),
    }
}

fn ms(p99: Option<f64>) -> String {
    p99.map_or_else(|| "-".to_owned(), |p| format!("{p:.1} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(requests: u64, server_errors: u64, p99_ms: f64) -> SideFigures {
        SideFigures {
            requests,
            server_errors,
            p99_ms: Some(p99_ms),
            ..SideFigures::default()
        }
    }

    #[test]
    fn a_good_canary_passes_with_its_figures() {
        let a = judge(
            &side(100, 0, 3.0),
            &side(900, 1, 2.5),
            &AnalysisSpec::default(),
        );
        assert_eq!(a.verdict, Verdict::Pass, "{a:?}");
        assert!(a.summary.contains("canary 100 requests"), "{}", a.summary);
        assert!(a.checks.iter().all(|c| c.passed));
    }

    #[test]
    fn too_few_requests_hold_rather_than_pass_or_fail() {
        let a = judge(
            &side(10, 0, 3.0),
            &side(900, 0, 2.5),
            &AnalysisSpec::default(),
        );
        assert_eq!(a.verdict, Verdict::Hold);
        assert!(a.summary.contains("canary 10, stable 900"), "{}", a.summary);
        let silent = judge(
            &SideFigures::default(),
            &SideFigures::default(),
            &AnalysisSpec::default(),
        );
        assert_eq!(silent.verdict, Verdict::Hold, "no traffic is never a pass");
    }

    #[test]
    fn errors_fail_by_ratio_and_by_increase_over_stable() {
        let a = judge(
            &side(200, 40, 3.0),
            &side(800, 0, 3.0),
            &AnalysisSpec::default(),
        );
        assert_eq!(a.verdict, Verdict::Fail);
        assert!(
            a.summary
                .contains("error_ratio 0.2000 > 0.0500 (stable 0.0000)"),
            "{}",
            a.summary
        );
        // Stable failing as much: the increase passes, the absolute ratio still fails.
        let both = judge(
            &side(200, 40, 3.0),
            &side(800, 160, 3.0),
            &AnalysisSpec::default(),
        );
        let increase = both
            .checks
            .iter()
            .find(|c| c.name == "error_ratio_increase");
        assert!(increase.unwrap().passed);
        assert_eq!(both.verdict, Verdict::Fail);
    }

    #[test]
    fn a_canary_failing_every_request_fails_even_on_few() {
        let a = judge(
            &side(60, 60, 1.0),
            &side(10, 0, 1.0),
            &AnalysisSpec::default(),
        );
        assert_eq!(a.verdict, Verdict::Fail, "{}", a.summary);
    }

    #[test]
    fn latency_fails_by_absolute_bound_and_by_ratio_above_the_floor() {
        let spec = AnalysisSpec::default();
        let slow = judge(&side(100, 0, 40.0), &side(900, 0, 10.0), &spec);
        assert_eq!(slow.verdict, Verdict::Fail);
        assert!(
            slow.summary.contains("p99_ratio 4.0000 > 1.5000"),
            "{}",
            slow.summary
        );
        let noise = judge(&side(100, 0, 3.0), &side(900, 0, 1.0), &spec);
        assert_eq!(noise.verdict, Verdict::Pass, "3 ms vs 1 ms is noise");
        let bound = judge(&side(100, 0, 1500.0), &side(900, 0, 1400.0), &spec);
        assert!(
            bound.summary.contains("p99_ms 1500.0000 > 1000.0000"),
            "{}",
            bound.summary
        );
    }
}
