//! What the probes of each backend found lately, for the admin plane: how many probes ran, the
//! current run of passes or failures, and the last result. The workers only hear of verdict flips
//! ([`super::HealthTable`]); this says what happened between them, so that `lbproxy rollout` can
//! tell a probe made *after* a restart from one made before it (the verdict alone may never flip
//! when an instance restarts faster than `fall` probes).
//!
//! Written by the `lbproxy-health` thread after each probe, read by admin requests: a short
//! mutex on the control side, never touched by a worker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// One backend's probes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// Probes that reached a result (those the proxy could not even start are not counted).
    pub total: u64,
    /// The current run: passes in a row (0 after a failure) …
    pub passes_in_a_row: u32,
    /// … or failures in a row (0 after a pass).
    pub failures_in_a_row: u32,
    /// Why the last probe failed; `None` when it passed.
    pub last_error: Option<String>,
    /// When the last probe ended.
    pub last_at: Instant,
}

/// Every probed backend's [`ProbeRecord`], by group and address.
#[derive(Debug, Default)]
pub struct ProbeLog {
    records: Mutex<BTreeMap<(String, SocketAddr), ProbeRecord>>,
}

impl ProbeLog {
    /// Records one probe result of `address` in `group`.
    pub fn record(&self, group: &str, address: SocketAddr, result: Result<(), String>) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let record = records
            .entry((group.to_owned(), address))
            .or_insert_with(|| ProbeRecord {
                total: 0,
                passes_in_a_row: 0,
                failures_in_a_row: 0,
                last_error: None,
                last_at: Instant::now(),
            });
        record.total += 1;
        record.last_at = Instant::now();
        match result {
            Ok(()) => {
                record.passes_in_a_row += 1;
                record.failures_in_a_row = 0;
                record.last_error = None;
            }
            Err(why) => {
                record.failures_in_a_row += 1;
                record.passes_in_a_row = 0;
                record.last_error = Some(why);
            }
        }
    }

    /// Forgets a backend that is no longer probed.
    pub fn remove(&self, group: &str, address: SocketAddr) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(group.to_owned(), address));
    }

    /// The record of `address` in `group`; `None` before its first probe ended.
    pub fn get(&self, group: &str, address: SocketAddr) -> Option<ProbeRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(group.to_owned(), address))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_passes_and_failures_are_counted() {
        let log = ProbeLog::default();
        let a: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        assert_eq!(log.get("api", a), None);
        log.record("api", a, Ok(()));
        log.record("api", a, Ok(()));
        let r = log.get("api", a).unwrap();
        assert_eq!((r.total, r.passes_in_a_row, r.failures_in_a_row), (2, 2, 0));
        log.record("api", a, Err("HTTP 503".into()));
        let r = log.get("api", a).unwrap();
        assert_eq!((r.total, r.passes_in_a_row, r.failures_in_a_row), (3, 0, 1));
        assert_eq!(r.last_error.as_deref(), Some("HTTP 503"));
        log.record("api", a, Ok(()));
        let r = log.get("api", a).unwrap();
        assert_eq!((r.total, r.passes_in_a_row, r.last_error), (4, 1, None));
        assert_eq!(log.get("other", a), None);
        log.remove("api", a);
        assert_eq!(log.get("api", a), None);
    }
}
