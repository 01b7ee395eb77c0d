//! Passive outlier detection and circuit breaking, per worker, from the outcomes of real
//! requests.
//!
//! Flow: every try of a backend is an [`Attempt`] (it counts the request in flight while it
//! lives). When it ends, [`Attempt::finish`] judges it: a connect error, a timeout, a lost
//! connection, an invalid response or a response status in `outlier.statuses` is a failure;
//! anything else is a success. An attempt dropped without a verdict (the client went away, a
//! stale pooled connection) counts as neither.
//!
//! - `consecutive_failures` failures in a row **eject** the backend (circuit open) for
//!   `base_ejection_time` × the number of ejections in a row, at most `max_ejection_time` —
//!   unless `max_ejection_percent` of the group is already ejected on this worker (at least one
//!   backend always may be). The cap guards against ejecting on ambiguous evidence (5xx, timeouts
//!   that may be the proxy's own trouble); a backend whose last failure was a refused connection
//!   is ejected past it, since nothing listens there. Ejection never denies service anyway:
//!   [`super::select`] falls back to ejected backends when nothing else is left.
//! - When the time is up ([`tick`]), the circuit is **half-open**: the next request to it is a
//!   trial, and no other goes to it meanwhile. Success closes the circuit (with slow start, if
//!   configured); failure ejects it again, for longer.
//! - While the circuit stays closed, the ejection count decays by one every
//!   `base_ejection_time`, so an old incident does not lengthen the next ejection forever.
//!
//! Nothing here reads the clock on success; an ejection reads it once, and the worker's tick
//! (every 100 ms) moves expired ejections to half-open.

use super::backend::{Backend, Circuit};
use super::failure::UpstreamFailure;
use crate::upstream::UpstreamGroup;
use std::time::{Duration, Instant};

/// How an attempt ended, as far as the backend's health is concerned.
#[derive(Debug)]
pub enum Verdict<'a> {
    /// The backend answered (with a status outlier detection does not count).
    Success,
    /// The backend failed us.
    Failed(&'a UpstreamFailure),
    /// The backend answered with this status, which `outlier.statuses` counts as a failure.
    FailedStatus(u16),
}

/// One try of one backend for one request.
#[derive(Debug)]
pub struct Attempt<'a> {
    group: &'a UpstreamGroup,
    index: usize,
    /// This attempt is the half-open trial.
    trial: bool,
    judged: bool,
}

impl Verdict<'_> {
    /// The backend refused the connection ([`UpstreamFailure::is_refusal`]): it is certainly not
    /// serving, so ejecting it is never a guess, and `max_ejection_percent` does not hold it
    /// back.
    fn is_refusal(&self) -> bool {
        matches!(self, Verdict::Failed(failure) if failure.is_refusal())
    }
}

impl<'a> Attempt<'a> {
    /// Counts a request in flight to backend `index` of `group`; when the backend is half-open
    /// and offers its trial, this attempt takes it.
    pub fn begin(group: &'a UpstreamGroup, index: usize) -> Self {
        let backend = &group.backends[index];
        backend.add_in_flight(1);
        let trial = matches!(
            backend.circuit(),
            Circuit::HalfOpen {
                trial_in_flight: false
            }
        );
        if trial {
            backend.set_circuit(Circuit::HalfOpen {
                trial_in_flight: true,
            });
        }
        Attempt {
            group,
            index,
            trial,
            judged: false,
        }
    }

    /// The verdict for a response with `status`.
    pub fn verdict_for_status(&self, status: u16) -> Verdict<'static> {
        if self.group.config.outlier.statuses.contains(status) {
            Verdict::FailedStatus(status)
        } else {
            Verdict::Success
        }
    }

    /// Judges the attempt (see the module docs) on worker `worker`; it stops counting as in
    /// flight as it ends.
    pub fn finish(mut self, worker: usize, verdict: Verdict<'_>) {
        self.judge(worker, verdict);
    }

    /// Judges the attempt now, while it goes on counting as in flight until dropped: a TCP
    /// connection is judged when its connect succeeds, and is in flight until it closes. Only
    /// the first verdict counts.
    pub fn judge(&mut self, worker: usize, verdict: Verdict<'_>) {
        if std::mem::replace(&mut self.judged, true) {
            return;
        }
        let settings = &self.group.config.outlier;
        if settings.consecutive_failures == 0 {
            return;
        }
        let backend = &self.group.backends[self.index];
        match (backend.circuit(), verdict) {
            (Circuit::Closed { failures: 0 }, Verdict::Success) => {}
            (Circuit::Closed { .. }, Verdict::Success) => {
                backend.set_circuit(Circuit::Closed { failures: 0 });
            }
            (Circuit::HalfOpen { .. }, Verdict::Success) if self.trial => {
                backend.set_circuit(Circuit::Closed { failures: 0 });
                backend.set_ejections(backend.ejections(), Some(Instant::now()));
                backend.start_ramp(Instant::now(), self.group.config.slow_start);
                tracing::info!(
                    worker,
                    upstream = %self.group.name,
                    backend = %backend.address,
                    "backend {} of upstream {} readmitted: the half-open trial request succeeded",
                    backend.address,
                    self.group.name
                );
            }
            (Circuit::Closed { failures }, failed) => {
                let failures = failures + 1;
                if failures < settings.consecutive_failures {
                    backend.set_circuit(Circuit::Closed { failures });
                } else if ejected_share_allows(self.group) || failed.is_refusal() {
                    let why = format!("{failures} consecutive failures");
                    eject(self.group, backend, worker, &failed, &why);
                } else {
                    backend.set_circuit(Circuit::Closed { failures });
                    tracing::debug!(
                        worker,
                        upstream = %self.group.name,
                        backend = %backend.address,
                        "not ejected: max_ejection_percent of the group is already ejected"
                    );
                }
            }
            (Circuit::HalfOpen { .. }, failed) if self.trial => {
                eject(
                    self.group,
                    backend,
                    worker,
                    &failed,
                    "a failed half-open trial",
                );
            }
            // A request that started before the ejection, or not the trial: it says nothing new.
            _ => {}
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let backend = &self.group.backends[self.index];
        backend.add_in_flight(-1);
        if (backend.in_flight() as usize) < self.group.max_in_flight_per_backend {
            // A slot under `max_connections` is free: the oldest queued request may take it.
            self.group.state.queue.notify_one();
        }
        if self.trial
            && !self.judged
            && matches!(
                backend.circuit(),
                Circuit::HalfOpen {
                    trial_in_flight: true
                }
            )
        {
            // No verdict (the client left, or the pooled connection was stale): offer the trial
            // to the next request.
            backend.set_circuit(Circuit::HalfOpen {
                trial_in_flight: false,
            });
        }
    }
}

/// Whether one more backend of `group` may be ejected on this worker.
fn ejected_share_allows(group: &UpstreamGroup) -> bool {
    let ejected = group
        .backends
        .iter()
        .filter(|b| !matches!(b.circuit(), Circuit::Closed { .. }))
        .count();
    let allowed =
        (group.backends.len() * group.config.outlier.max_ejection_percent as usize / 100).max(1);
    ejected < allowed
}

fn eject(group: &UpstreamGroup, backend: &Backend, worker: usize, cause: &Verdict<'_>, why: &str) {
    let settings = &group.config.outlier;
    let ejections = backend.ejections().saturating_add(1);
    let duration = ejection_time(
        settings.base_ejection_time,
        settings.max_ejection_time,
        ejections,
    );
    let now = Instant::now();
    backend.set_circuit(Circuit::Open {
        until: now + duration,
    });
    backend.set_ejections(ejections, None);
    backend.stats.ejected();
    backend.pool.clear();
    let cause = match cause {
        Verdict::Failed(failure) => failure.describe(),
        Verdict::FailedStatus(status) => format!("answered {status}"),
        Verdict::Success => "succeeded".to_owned(),
    };
    tracing::warn!(
        worker,
        upstream = %group.name,
        backend = %backend.address,
        ejections,
        "backend {} of upstream {} ejected for {duration:?} after {why} (last: {cause}); \
         ejection {ejections} in a row",
        backend.address,
        group.name,
    );
}

/// `base` × `ejections`, at most `max`.
pub fn ejection_time(base: Duration, max: Duration, ejections: u32) -> Duration {
    base.saturating_mul(ejections.max(1)).min(max)
}

/// The worker's periodic pass over `group`: ejections whose time is up turn half-open, and
/// the ejection count of backends that stayed well decays.
pub fn tick(group: &UpstreamGroup, now: Instant, worker: usize) {
    let settings = &group.config.outlier;
    for backend in &group.backends {
        match backend.circuit() {
            Circuit::Open { until } if now >= until => {
                backend.set_circuit(Circuit::HalfOpen {
                    trial_in_flight: false,
                });
                tracing::info!(
                    worker,
                    upstream = %group.name,
                    backend = %backend.address,
                    "backend {} of upstream {} is half-open: the next request to it is a trial",
                    backend.address,
                    group.name
                );
            }
            Circuit::Closed { .. } if backend.ejections() > 0 => match backend.calm_since() {
                Some(since)
                    if now.saturating_duration_since(since) >= settings.base_ejection_time =>
                {
                    backend.set_ejections(backend.ejections() - 1, Some(now));
                }
                Some(_) => {}
                None => backend.set_ejections(backend.ejections(), Some(now)),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::upstream::Generation;
    use std::sync::Arc;

    fn generation(outlier: &str, backends: usize) -> Generation {
        let list: Vec<String> = (0..backends)
            .map(|i| format!("\"127.0.0.1:{}\"", 8001 + i))
            .collect();
        let config = valid(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [{}]\n[upstream.api.outlier]\n{outlier}\n",
            list.join(", ")
        ));
        Generation::first(Arc::new(config), 0)
    }

    fn fail(group: &UpstreamGroup, index: usize) {
        Attempt::begin(group, index).finish(0, Verdict::FailedStatus(503));
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_in_between_resets() {
        let generation = generation("consecutive_failures = 3", 2);
        let group = &generation.upstreams[0];
        fail(group, 0);
        fail(group, 0);
        Attempt::begin(group, 0).finish(0, Verdict::Success);
        fail(group, 0);
        fail(group, 0);
        assert_eq!(group.backends[0].circuit(), Circuit::Closed { failures: 2 });
        fail(group, 0);
        assert!(matches!(group.backends[0].circuit(), Circuit::Open { .. }));
        assert_eq!(group.backends[0].ejections(), 1);
        assert_eq!(group.backends[0].in_flight(), 0);
    }

    #[test]
    fn half_open_trial_readmits_on_success_and_re_ejects_longer_on_failure() {
        let generation = generation(
            "consecutive_failures = 1\nbase_ejection_time = \"10s\"\nmax_ejection_time = \"25s\"",
            2,
        );
        let group = &generation.upstreams[0];
        let backend = &group.backends[0];
        fail(group, 0);
        let Circuit::Open { until } = backend.circuit() else {
            panic!("ejected")
        };
        tick(group, until - Duration::from_millis(1), 0);
        assert!(matches!(backend.circuit(), Circuit::Open { .. }));
        tick(group, until, 0);
        assert_eq!(
            backend.circuit(),
            Circuit::HalfOpen {
                trial_in_flight: false
            }
        );

        // One trial at a time; one dropped without a verdict offers the trial again.
        let trial = Attempt::begin(group, 0);
        assert!(!backend.admits(false));
        drop(trial);
        assert!(backend.admits(false));

        // A failed trial ejects again, for twice as long.
        let before = Instant::now();
        Attempt::begin(group, 0).finish(0, Verdict::FailedStatus(500));
        let Circuit::Open { until } = backend.circuit() else {
            panic!("re-ejected")
        };
        assert!(until - before >= Duration::from_secs(20));
        assert_eq!(backend.ejections(), 2);

        tick(group, until, 0);
        Attempt::begin(group, 0).finish(0, Verdict::Success);
        assert_eq!(backend.circuit(), Circuit::Closed { failures: 0 });
        // The ejection count decays while it stays well.
        let calm = Instant::now() + Duration::from_secs(10);
        tick(group, calm, 0);
        assert_eq!(backend.ejections(), 1);
    }

    #[test]
    fn ejection_time_grows_and_is_capped() {
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(300));
        assert_eq!(ejection_time(base, max, 1), Duration::from_secs(30));
        assert_eq!(ejection_time(base, max, 3), Duration::from_secs(90));
        assert_eq!(ejection_time(base, max, 50), max);
    }

    #[test]
    fn max_ejection_percent_keeps_most_of_the_group() {
        // 10% of 4 rounds down to 0, but one backend may always be ejected.
        let generation = generation("consecutive_failures = 1", 4);
        let group = &generation.upstreams[0];
        fail(group, 0);
        fail(group, 1);
        assert!(matches!(group.backends[0].circuit(), Circuit::Open { .. }));
        assert_eq!(group.backends[1].circuit(), Circuit::Closed { failures: 1 });

        let generation = generation_with_percent(50, 4);
        let group = &generation.upstreams[0];
        for i in 0..4 {
            fail(group, i);
        }
        let ejected = group
            .backends
            .iter()
            .filter(|b| matches!(b.circuit(), Circuit::Open { .. }))
            .count();
        assert_eq!(ejected, 2);
    }

    #[test]
    fn refused_connections_eject_past_the_cap() {
        // The default cap lets one of three be ejected; two refuse connections: both go.
        let generation = generation("consecutive_failures = 2", 3);
        let group = &generation.upstreams[0];
        let refused =
            UpstreamFailure::Connect(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        for index in [0, 1] {
            for _ in 0..2 {
                Attempt::begin(group, index).finish(0, Verdict::Failed(&refused));
            }
        }
        assert!(matches!(group.backends[0].circuit(), Circuit::Open { .. }));
        assert!(matches!(group.backends[1].circuit(), Circuit::Open { .. }));
        assert_eq!(group.backends[2].circuit(), Circuit::Closed { failures: 0 });
        // An ambiguous failure still respects it.
        for _ in 0..2 {
            fail(group, 2);
        }
        assert_eq!(group.backends[2].circuit(), Circuit::Closed { failures: 2 });
    }

    fn generation_with_percent(percent: u32, backends: usize) -> Generation {
        generation(
            &format!("consecutive_failures = 1\nmax_ejection_percent = {percent}"),
            backends,
        )
    }

    #[test]
    fn detection_off_never_ejects() {
        let generation = generation("consecutive_failures = 0", 2);
        let group = &generation.upstreams[0];
        for _ in 0..100 {
            fail(group, 0);
        }
        assert_eq!(group.backends[0].circuit(), Circuit::Closed { failures: 0 });
    }
}
