//! The scaling policy, as pure functions of what was observed (no clock, no I/O: the caller
//! passes `now`): the signal per metric ([`signal`]), Kubernetes' HPA recommendation
//! (`ceil(current × signal / target)`, nothing within the tolerance: [`recommend`]), its
//! stabilization windows (a scale-up only to the lowest recommendation of the up-window, a
//! scale-down only to the highest recommendation of the down-window), the step limit, the
//! bounds, Knative's panic mode and scale to zero ([`Policy::decide`]).

use crate::config::{AutoscaleConfig, AutoscaleMetric};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What one routed instance contributes to the signal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstanceSample {
    /// Requests in flight to it (summed over the workers).
    pub in_flight: u64,
    /// Its responses per second in the latest sample.
    pub rps: f64,
    /// Its p99 over the sampler's window; `None` when it answered nothing there.
    pub p99_ms: Option<f64>,
    /// Its cgroup CPU use in percent of one core; `None` before two readings.
    pub cpu_percent: Option<f64>,
}

/// The metric's value for a group whose instances taking requests gave `samples`; `None`
/// without data (no instance; for p99, no response in the window; for cpu, no reading).
///
/// - `in_flight`: the requests in flight summed over the instances, per instance;
/// - `rps`: the responses per second summed, per instance;
/// - `p99`: the **worst** instance's p99 (conservative: the group is as slow as its slowest
///   instance for the requests that land there; an average of p99s is no percentile either);
/// - `cpu`: the mean CPU percent of the instances that have a reading.
pub fn signal(metric: AutoscaleMetric, samples: &[InstanceSample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len() as f64;
    match metric {
        AutoscaleMetric::InFlight => {
            Some(samples.iter().map(|s| s.in_flight as f64).sum::<f64>() / n)
        }
        AutoscaleMetric::Rps => Some(samples.iter().map(|s| s.rps).sum::<f64>() / n),
        AutoscaleMetric::P99 => samples
            .iter()
            .filter_map(|s| s.p99_ms)
            .fold(None, |worst: Option<f64>, p| {
                Some(worst.map_or(p, |w| w.max(p)))
            }),
        AutoscaleMetric::Cpu => {
            let readings: Vec<f64> = samples.iter().filter_map(|s| s.cpu_percent).collect();
            (!readings.is_empty()).then(|| readings.iter().sum::<f64>() / readings.len() as f64)
        }
    }
}

/// HPA's recommendation for `current` instances: `signal / target` within `1 ± tolerance`
/// → `current`; else `ceil(current × signal / target)`. With no instance: 1 when requests wait
/// for one (`demand`), else 0. Without a signal: `current`.
pub fn recommend(
    current: u32,
    signal: Option<f64>,
    target: f64,
    tolerance: f64,
    demand: bool,
) -> u32 {
    if current == 0 {
        return u32::from(demand);
    }
    let Some(signal) = signal else {
        return current;
    };
    let ratio = signal / target;
    if !ratio.is_finite() || (ratio - 1.0).abs() <= tolerance {
        return current;
    }
    let wanted = (f64::from(current) * ratio).ceil();
    // Rounding noise (1.0000000002 × 3) must not add an instance.
    let wanted = if (wanted - 1.0 - f64::from(current) * ratio).abs() < 1e-9 {
        wanted - 1.0
    } else {
        wanted
    };
    wanted.clamp(0.0, f64::from(u32::MAX)) as u32
}

/// What the controller observed at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    /// Instances routed (the one being scaled in excluded).
    pub current: u32,
    /// [`signal`] of the instances taking requests.
    pub signal: Option<f64>,
    /// Requests waiting for an instance (the group has none).
    pub waiting: u64,
    /// No request in flight, no response per second, none waiting.
    pub idle: bool,
}

/// Where a decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Stay,
}

/// One tick's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The count wanted now, after the windows, the step limit and the bounds.
    pub desired: u32,
    /// This tick's raw recommendation (before the windows).
    pub recommendation: u32,
    pub direction: Direction,
    /// Within the panic window of a signal at or past the panic threshold.
    pub panic: bool,
    /// Entered panic at this tick.
    pub panic_began: bool,
    /// Why nothing happens although the recommendation differs (a window holds it back).
    pub held: Option<&'static str>,
    /// The signal, the target and the rule that decided, in a sentence.
    pub reason: String,
}

/// One group's memory: the recommendations of the last windows, the last panic, the start of
/// the current idle stretch.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    recommendations: VecDeque<(Instant, u32)>,
    last_panic: Option<Instant>,
    idle_since: Option<Instant>,
}

impl Policy {
    /// Whether a panic is in force at `now`.
    pub fn panicking(&self, config: &AutoscaleConfig, now: Instant) -> bool {
        self.last_panic
            .is_some_and(|at| now.saturating_duration_since(at) < config.panic_window)
    }

    /// Decides at `now` from `input` (called once a tick, `now` never going back).
    pub fn decide(&mut self, config: &AutoscaleConfig, input: Input, now: Instant) -> Outcome {
        let Input {
            current,
            signal,
            waiting,
            idle,
        } = input;
        let metric = config.metric.as_str();
        let target = config.target;
        let ratio = signal.map(|s| s / target);
        let recommendation = recommend(current, signal, target, config.tolerance, waiting > 0);
        // Idle stretch (scale to zero).
        if idle {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        // Panic.
        let was_panicking = self.panicking(config, now);
        if current > 0 && ratio.is_some_and(|r| r >= config.panic_threshold) {
            self.last_panic = Some(now);
        }
        let panic = self.panicking(config, now);
        let panic_began = panic && !was_panicking;
        // The windows' memory.
        self.recommendations.push_back((now, recommendation));
        let keep = config
            .scale_up_window
            .max(config.scale_down_window)
            .max(Duration::from_secs(1));
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > keep)
        {
            self.recommendations.pop_front();
        }
        let within = |window: Duration| {
            self.recommendations
                .iter()
                .filter(move |&&(at, _)| now.saturating_duration_since(at) <= window)
                .map(|&(_, r)| r)
        };
        let up_to = if panic {
            recommendation
        } else {
            within(config.scale_up_window)
                .min()
                .unwrap_or(recommendation)
        };
        let down_to = within(config.scale_down_window)
            .max()
            .unwrap_or(recommendation);
        let ratio_text = match (signal, ratio) {
            (Some(s), Some(r)) => format!("{metric} {s:.2} vs target {target} (ratio {r:.2})"),
            _ => format!("{metric}: no signal"),
        };
        let mut held = None;
        let (mut desired, mut reason);
        if current == 0 {
            desired = recommendation;
            reason = if waiting > 0 {
                format!("{waiting} request(s) wait for an instance: scale from zero")
            } else {
                "no instance and no request waiting".to_owned()
            };
        } else if up_to > current {
            desired = up_to;
            reason = if panic {
                format!(
                    "{ratio_text}: panic (ratio ≥ {:.2}), up at once to {recommendation}",
                    config.panic_threshold
                )
            } else {
                format!(
                    "{ratio_text}: every recommendation of the {}s up-window is ≥ {up_to}",
                    config.scale_up_window.as_secs()
                )
            };
        } else if down_to < current && panic {
            desired = current;
            reason = format!("{ratio_text}: panicking, no scale-down");
            held = Some("panic: no scale-down until the panic window passes");
        } else if down_to < current {
            desired = down_to;
            reason = format!(
                "{ratio_text}: the highest recommendation of the {}s down-window is {down_to}",
                config.scale_down_window.as_secs()
            );
        } else {
            desired = current;
            reason = if recommendation > current {
                held = Some("the scale-up window has not passed");
                format!("{ratio_text}: recommends {recommendation}, the up-window holds")
            } else if recommendation < current {
                held = Some("the scale-down window has not passed");
                format!("{ratio_text}: recommends {recommendation}, the down-window holds")
            } else {
                format!("{ratio_text}: within tolerance")
            };
        }
        // Never to zero but after a whole idle down-window with min = 0.
        if current > 0 && desired == 0 {
            let idle_long = self.idle_since.is_some_and(|since| {
                now.saturating_duration_since(since) >= config.scale_down_window
            });
            if config.min == 0 && idle_long && !panic {
                reason = format!(
                    "no request for the whole {}s down-window: scale to zero",
                    config.scale_down_window.as_secs()
                );
            } else {
                desired = 1;
                if current == 1 {
                    held = Some("idle, but not for the whole scale-down window");
                }
            }
        }
        // Step limit, then the bounds (which always win).
        let step = config.max_step;
        desired = desired.clamp(current.saturating_sub(step), current.saturating_add(step));
        let bounded = desired.clamp(config.min, config.max);
        if bounded != desired {
            reason = format!(
                "{reason}; bounded to {bounded} (min {}, max {})",
                config.min, config.max
            );
            desired = bounded;
        }
        if desired == current && held.is_none() && recommendation != current {
            held = Some("at the bounds");
        }
        let direction = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => Direction::Up,
            std::cmp::Ordering::Less => Direction::Down,
            std::cmp::Ordering::Equal => Direction::Stay,
        };
        if direction != Direction::Stay {
            held = None;
        }
        Outcome {
            desired,
            recommendation,
            direction,
            panic,
            panic_began,
            held,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AutoscaleConfig {
        AutoscaleConfig::defaults(1, 10)
    }

    /// A fake timeline: one decision per second.
    struct Timeline {
        policy: Policy,
        config: AutoscaleConfig,
        t0: Instant,
        second: u64,
        current: u32,
    }

    impl Timeline {
        fn new(config: AutoscaleConfig, current: u32) -> Self {
            Self {
                policy: Policy::default(),
                config,
                t0: Instant::now(),
                second: 0,
                current,
            }
        }

        /// One tick with `per_instance` in flight per instance; the count follows at once.
        fn tick(&mut self, per_instance: f64) -> Outcome {
            self.tick_with(per_instance, 0)
        }

        fn tick_with(&mut self, per_instance: f64, waiting: u64) -> Outcome {
            let now = self.t0 + Duration::from_secs(self.second);
            self.second += 1;
            let signal = (self.current > 0).then_some(per_instance);
            let input = Input {
                current: self.current,
                signal,
                waiting,
                idle: per_instance == 0.0 && waiting == 0,
            };
            let outcome = self.policy.decide(&self.config, input, now);
            self.current = outcome.desired;
            outcome
        }

        /// `seconds` ticks at a total load of `load` in flight, spread over the instances.
        fn run(&mut self, seconds: u64, load: f64) -> Vec<u32> {
            (0..seconds)
                .map(|_| {
                    let per = if self.current == 0 {
                        0.0
                    } else {
                        load / f64::from(self.current)
                    };
                    self.tick(per).desired
                })
                .collect()
        }
    }

    fn sample(in_flight: u64, rps: f64, p99: Option<f64>, cpu: Option<f64>) -> InstanceSample {
        InstanceSample {
            in_flight,
            rps,
            p99_ms: p99,
            cpu_percent: cpu,
        }
    }

    #[test]
    fn the_signal_per_metric() {
        let samples = [
            sample(4, 100.0, Some(50.0), Some(30.0)),
            sample(8, 300.0, Some(250.0), None),
            sample(0, 200.0, None, Some(50.0)),
        ];
        assert_eq!(signal(AutoscaleMetric::InFlight, &samples), Some(4.0));
        assert_eq!(signal(AutoscaleMetric::Rps, &samples), Some(200.0));
        assert_eq!(signal(AutoscaleMetric::P99, &samples), Some(250.0), "worst");
        assert_eq!(
            signal(AutoscaleMetric::Cpu, &samples),
            Some(40.0),
            "mean of readings"
        );
        assert_eq!(signal(AutoscaleMetric::InFlight, &[]), None);
        assert_eq!(
            signal(AutoscaleMetric::P99, &[sample(0, 0.0, None, None)]),
            None
        );
        assert_eq!(
            signal(AutoscaleMetric::Cpu, &[sample(0, 0.0, None, None)]),
            None
        );
    }

    #[test]
    fn the_hpa_recommendation() {
        // Within 1 ± 10%: no change.
        assert_eq!(recommend(4, Some(10.9), 10.0, 0.1, false), 4);
        assert_eq!(recommend(4, Some(9.1), 10.0, 0.1, false), 4);
        // Outside: ceil(current × ratio).
        assert_eq!(recommend(4, Some(12.0), 10.0, 0.1, false), 5);
        assert_eq!(recommend(4, Some(25.0), 10.0, 0.1, false), 10);
        assert_eq!(recommend(4, Some(5.0), 10.0, 0.1, false), 2);
        assert_eq!(recommend(4, Some(0.1), 10.0, 0.1, false), 1);
        assert_eq!(recommend(4, Some(0.0), 10.0, 0.1, false), 0);
        assert_eq!(
            recommend(3, Some(20.0), 10.0, 0.0, false),
            6,
            "exact, no extra"
        );
        // No data: stay.
        assert_eq!(recommend(3, None, 10.0, 0.1, false), 3);
        // From zero: demand decides.
        assert_eq!(recommend(0, None, 10.0, 0.1, true), 1);
        assert_eq!(recommend(0, None, 10.0, 0.1, false), 0);
    }

    #[test]
    fn a_ramp_scales_up_in_steps_at_once_with_a_zero_up_window() {
        let mut config = config();
        config.panic_threshold = 100.0; // no panic here
        let mut t = Timeline::new(config, 1);
        assert_eq!(t.run(3, 10.0), [1, 1, 1], "on target");
        // 30 in flight over 1 instance: ratio 3 → 3.
        assert_eq!(t.run(1, 30.0), [3]);
        assert_eq!(t.run(2, 30.0), [3, 3], "on target again");
        // 80: ratio 80/30 → ceil(3 × 2.67) = 8, but at most 4 a step: 7, then 8.
        assert_eq!(t.run(3, 80.0), [7, 8, 8]);
        // 200: bounded by max 10.
        let out = t.run(3, 200.0);
        assert_eq!(out, [10, 10, 10]);
    }

    #[test]
    fn a_scale_up_window_takes_the_lowest_recommendation() {
        let mut config = config();
        config.scale_up_window = Duration::from_secs(3);
        config.panic_threshold = 100.0;
        let mut t = Timeline::new(config, 2);
        t.run(5, 20.0);
        // A one-second spike does not scale up.
        assert_eq!(t.run(1, 60.0), [2]);
        assert_eq!(t.run(3, 20.0), [2, 2, 2]);
        // A sustained rise does, once the whole window recommends more.
        assert_eq!(t.run(4, 40.0), [2, 2, 2, 4]);
        let held = t.tick(15.0);
        assert_eq!(held.desired, 4);
    }

    #[test]
    fn a_load_oscillating_faster_than_the_down_window_never_scales_down() {
        let mut config = config();
        config.panic_threshold = 100.0;
        let mut t = Timeline::new(config, 1);
        let mut counts = Vec::new();
        // 60 s high (40 in flight), 60 s low (5), for 20 minutes.
        for _ in 0..10 {
            counts.extend(t.run(60, 40.0));
            counts.extend(t.run(60, 5.0));
        }
        assert_eq!(counts[0], 4);
        assert!(counts[1..].iter().all(|&c| c == 4), "no flapping");
        // Once the load stays low for the whole window: down, after 300 s, not before.
        let low = t.run(301, 5.0);
        assert!(low[..239].iter().all(|&c| c == 4), "{low:?}");
        assert_eq!(*low.last().unwrap(), 1);
    }

    #[test]
    fn scale_down_waits_for_the_window_and_holds_with_a_reason() {
        let mut t = Timeline::new(config(), 4);
        t.run(10, 40.0);
        let out = t.tick(2.0);
        assert_eq!(out.desired, 4);
        assert_eq!(out.held, Some("the scale-down window has not passed"));
        // Window: 300 s after the last high recommendation.
        let counts = t.run(300, 8.0);
        assert_eq!(counts[..288], [4; 288]);
        assert_eq!(*counts.last().unwrap(), 1);
    }

    #[test]
    fn the_step_limit_and_the_bounds() {
        let mut config = config();
        config.min = 2;
        config.max = 5;
        config.max_step = 1;
        config.scale_down_window = Duration::ZERO;
        config.panic_threshold = 100.0;
        let mut t = Timeline::new(config, 2);
        assert_eq!(t.run(5, 100.0), [3, 4, 5, 5, 5]);
        assert_eq!(t.run(5, 0.0), [4, 3, 2, 2, 2]);
        // Below min (instances died): up to min at once, past the step limit.
        t.current = 0;
        assert_eq!(t.tick(0.0).desired, 2);
    }

    #[test]
    fn panic_scales_up_at_once_and_blocks_scale_down_for_the_window() {
        let mut config = config();
        config.scale_up_window = Duration::from_secs(30);
        config.scale_down_window = Duration::ZERO;
        config.max = 20;
        config.max_step = 10;
        let mut t = Timeline::new(config, 2);
        t.run(10, 20.0);
        // 3× target: panic, up at once despite the 30 s up-window.
        let out = t.tick(30.0);
        assert!(out.panic && out.panic_began);
        assert_eq!(out.desired, 6);
        assert_eq!(out.direction, Direction::Up);
        // Load gone: no scale-down while panicking (60 s from the last panic tick).
        let counts = t.run(59, 0.5);
        assert!(counts.iter().all(|&c| c == 6), "{counts:?}");
        let out = t.tick(0.5);
        assert!(!out.panic);
        assert_eq!(out.desired, 1);
        // Below the threshold the 30 s up-window is back.
        let out = t.tick(1.5);
        assert!(!out.panic);
        assert_eq!(out.desired, 1, "1.5× is no panic: the up-window holds");
    }

    #[test]
    fn scale_to_zero_only_after_a_whole_idle_down_window() {
        let mut config = config();
        config.min = 0;
        config.scale_down_window = Duration::from_secs(60);
        let mut t = Timeline::new(config, 2);
        t.run(5, 20.0);
        // A trickle (never quite idle) keeps one.
        let counts = t.run(200, 0.2);
        assert_eq!(*counts.last().unwrap(), 1);
        // Idle: down to zero only once idle for 60 s.
        let counts = t.run(61, 0.0);
        assert!(counts[..60].iter().all(|&c| c == 1), "{counts:?}");
        assert_eq!(counts[60], 0);
        // Zero and nobody waits: stays zero.
        assert_eq!(t.tick_with(0.0, 0).desired, 0);
        // A request waits: one at once.
        let out = t.tick_with(0.0, 3);
        assert_eq!(out.desired, 1);
        assert!(out.reason.contains("scale from zero"), "{}", out.reason);
    }

    #[test]
    fn min_one_never_goes_to_zero() {
        let mut t = Timeline::new(config(), 3);
        let counts = t.run(400, 0.0);
        assert_eq!(*counts.last().unwrap(), 1);
        assert!(counts.iter().all(|&c| c >= 1));
    }
}
