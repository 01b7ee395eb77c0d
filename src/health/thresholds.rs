//! From probe results to verdicts: a backend goes down after `fall` failing probes in a row and
//! comes back after `rise` passing ones, so one lost probe does not flap it.
//!
//! A backend starts up, but on probation, as HAProxy does: until its first probe passes, one
//! failure is enough to take it down, so a backend that is dead when lbproxy starts (or is added
//! by a reload) leaves rotation after one probe instead of `fall`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    healthy: bool,
    /// Consecutive results contradicting the current verdict.
    streak: u32,
    probation: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            healthy: true,
            streak: 0,
            probation: true,
        }
    }
}

impl Thresholds {
    /// Records one probe result; `Some(verdict)` when the verdict flips, with how many results
    /// in a row flipped it.
    pub fn record(&mut self, passed: bool, rise: u32, fall: u32) -> Option<(bool, u32)> {
        if passed == self.healthy {
            self.streak = 0;
            self.probation = false;
            return None;
        }
        self.streak += 1;
        let needed = match (self.healthy, self.probation) {
            (true, true) => 1,
            (true, false) => fall,
            (false, _) => rise,
        };
        if self.streak < needed {
            return None;
        }
        let streak = self.streak;
        self.healthy = passed;
        self.streak = 0;
        self.probation = false;
        Some((passed, streak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(results: &[bool]) -> Vec<Option<(bool, u32)>> {
        let mut t = Thresholds::default();
        results.iter().map(|&r| t.record(r, 2, 3)).collect()
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down_and_rise_passes_bring_it_back() {
        let flips = run(&[
            true, false, false, true, false, false, false, true, false, true, true,
        ]);
        assert_eq!(
            flips,
            [
                None,
                None,
                None,
                None, // a pass resets the streak
                None,
                None,
                Some((false, 3)),
                None,
                None, // a failure resets the rise streak
                None,
                Some((true, 2)),
            ]
        );
    }

    #[test]
    fn a_backend_dead_from_the_start_goes_down_at_its_first_probe() {
        assert_eq!(run(&[false]), [Some((false, 1))]);
        assert_eq!(
            run(&[true, false]),
            [None, None],
            "probation ends at the first pass"
        );
    }
}
