//! When the control loop's periodic work is due: "next due" scheduling, on whatever clock the
//! caller reads (the loop passes `Instant::now()`, tests a fake one).
//!
//! Each entry runs every `every` from its first due time. A loop that falls behind (a reload's
//! gather held it for a while) runs an overdue entry once and schedules the next run one period
//! from then: missed runs are not replayed in a burst — a status line or a watchdog ping sent
//! twice in a row is worth no more than one.

use std::time::{Duration, Instant};

/// Periodic entries keyed by `K`.
#[derive(Debug)]
pub struct Schedule<K> {
    entries: Vec<Entry<K>>,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    every: Duration,
    next: Instant,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Copy + PartialEq> Schedule<K> {
    /// Adds `key`, first due at `first`, then every `every` (at least 1 ms).
    pub fn add(&mut self, key: K, first: Instant, every: Duration) {
        self.entries.push(Entry {
            key,
            every: every.max(Duration::from_millis(1)),
            next: first,
        });
    }

    /// Takes `key` off the schedule.
    pub fn remove(&mut self, key: K) {
        self.entries.retain(|e| e.key != key);
    }

    /// The earliest due time, if anything is scheduled.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.next).min()
    }

    /// The keys due at `now`, earliest first, each scheduled again one period on.
    pub fn due(&mut self, now: Instant) -> Vec<K> {
        let mut due: Vec<(Instant, K)> = Vec::new();
        for entry in &mut self.entries {
            if entry.next <= now {
                due.push((entry.next, entry.key));
                entry.next += entry.every;
                if entry.next <= now {
                    entry.next = now + entry.every;
                }
            }
        }
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, key)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn entries_run_at_their_period_on_a_fake_clock() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.add("a", t0, SECOND);
        schedule.add("b", t0 + 2 * SECOND, 2 * SECOND);
        assert_eq!(schedule.next_due(), Some(t0));
        assert_eq!(schedule.due(t0), ["a"]);
        assert_eq!(schedule.next_due(), Some(t0 + SECOND));
        assert!(schedule.due(t0 + SECOND / 2).is_empty());
        assert_eq!(schedule.due(t0 + SECOND), ["a"]);
        assert_eq!(schedule.due(t0 + 2 * SECOND), ["a", "b"]);
        assert_eq!(schedule.due(t0 + 3 * SECOND), ["a"]);
        assert_eq!(schedule.due(t0 + 4 * SECOND), ["a", "b"]);
    }

    #[test]
    fn a_late_loop_runs_an_overdue_entry_once_and_keeps_its_period_from_then() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.add("a", t0, SECOND);
        assert_eq!(schedule.due(t0), ["a"]);
        // Held up for 3.5 periods: one run, not three.
        let late = t0 + SECOND * 7 / 2;
        assert_eq!(schedule.due(late), ["a"]);
        assert!(schedule.due(late).is_empty());
        assert_eq!(schedule.next_due(), Some(late + SECOND));
    }

    #[test]
    fn the_earliest_due_runs_first_and_removed_entries_never() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.add("late", t0 + SECOND, SECOND);
        schedule.add("soon", t0, SECOND * 10);
        schedule.add("gone", t0, SECOND);
        schedule.remove("gone");
        assert_eq!(schedule.due(t0 + SECOND), ["soon", "late"]);
        assert_eq!(schedule.next_due(), Some(t0 + 2 * SECOND));
        schedule.remove("late");
        schedule.remove("soon");
        assert_eq!(schedule.next_due(), None);
    }
}
