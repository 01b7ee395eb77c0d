//! The failover engine: one loop for an HTTP request and for a TCP connection, from choosing a
//! backend to an answer or a reason to give up.
//!
//! Flow of [`run`]:
//! 1. Choose a backend ([`select::choose`]: balancer, health, ejection, drain, backups, backends
//!    already tried, the side of a traffic split). When every usable one has `max_connections`
//!    in flight, wait in the group's queue ([`select::wait_for_slot`]) and choose again; past
//!    `queue_timeout`, give up ([`GaveUp::QueueTimeout`]). Nothing left to choose:
//!    [`GaveUp::NoUsableBackend`] when nothing was tried, else [`GaveUp::AllTried`] with the last
//!    failure.
//! 2. Begin an [`Attempt`] (the request counts in flight), and take a connection: an idle one from
//!    the backend's pool when the protocol pools ([`Leg::reuse`]), else a new one
//!    ([`Leg::connect`]). The proxy's own lack of resources ends it at once, with no verdict
//!    ([`GaveUp::LocalResources`]). Any other connect failure counts against the backend, empties
//!    its pool (its idle connections are most likely dead too) and goes to the next backend.
//! 3. Use the connection ([`Leg::exchange`]). An attempt that ends the failover (a response
//!    relayed or cut short, a client at fault, a TCP connection ready to relay) comes back to the
//!    caller with its attempt ([`Served`]), which the caller judges: by the response status for
//!    HTTP; for TCP a success once connected, in flight until the connection closes. A failure
//!    before any response byte reached the client is the engine's to judge, by the
//!    [`RetrySafety`] it carries and whether the request may be sent twice ([`Leg::replayable`]):
//!    - the connection was lost and came from the pool: no verdict (it may just have been
//!      stale); when it may go again, the same backend once more on a fresh connection, which
//!      counts against no limit;
//!    - otherwise a verdict against the backend, then the next backend when it may go again, or
//!      [`GaveUp::NotRetryable`].
//! 4. Every move to another backend asks the retry limits ([`RetryCount::permit_after`]: a
//!    refused connect goes on for free, see [`super::retry`]); a refusal gives up with
//!    [`GaveUp::MaxRetries`] or [`GaveUp::RetryBudget`].
//!
//! What differs between the protocols is a [`Leg`], given as a generic parameter: no boxing and
//! no dynamic dispatch on the request path. The engine allocates only the list of backends tried
//! (when one fails) and the sentence of a [`GiveUp`].

pub mod give_up;
#[cfg(test)]
mod tests;

pub use give_up::{GaveUp, GiveUp, Protocol};

use super::backend::Backend;
use super::failure::{RetrySafety, UpstreamFailure};
use super::outlier::{Attempt, Verdict};
use super::retry::RetryCount;
use super::select::{self, RequestKeys};
use super::UpstreamGroup;
use crate::config::RetryConfig;
use std::fmt;
use std::net::SocketAddr;

/// What one protocol does with the backend the engine chose: HTTP reuses pooled connections and
/// runs the exchange on one, TCP only connects.
// Worker-local futures (thread per core): nobody needs them `Send`, which is all the lint is about.
#[allow(async_fn_in_trait)]
pub trait Leg {
    /// A connection to a backend.
    type Conn;
    /// What an attempt that ends the failover gives the caller.
    type Output;
    /// Whether the protocol keeps idle connections in the backend's pool: then the engine asks
    /// [`Leg::reuse`] first, tries a lost pooled connection's request again on a fresh one, and
    /// empties the pool of a backend that fails a new connection.
    const POOLED: bool;
    /// Whose sentences a give-up uses.
    const PROTOCOL: Protocol;

    /// An attempt to backend `index` of the group begins (the caller records it).
    fn begin(&mut self, index: usize, backend: &Backend);

    /// An idle connection to `backend`, if one may be reused (only called when [`Leg::POOLED`]).
    fn reuse(&mut self, backend: &Backend) -> Option<Self::Conn>;

    /// A new connection to `backend`. Nothing of the request has been sent when this fails.
    async fn connect(&mut self, backend: &Backend) -> Result<Self::Conn, UpstreamFailure>;

    /// Uses the connection. `Err` only for a failure before any byte of a response reached the
    /// client: the engine decides what comes next. Anything else is `Ok`, and ends the failover.
    async fn exchange(
        &mut self,
        backend: &Backend,
        conn: Self::Conn,
    ) -> Result<Self::Output, UpstreamFailure>;

    /// Whether the request may be sent twice (for [`RetrySafety::IfIdempotent`] failures).
    fn replayable(&self) -> bool;

    /// The engine goes on after a failure (a debug line, with what the caller knows).
    fn retrying(&self, retrying: Retrying<'_>);

    /// Retries allowed per request: the group's `retry.max_retries` unless the leg's request
    /// has its own (an HTTP route's resolved setting).
    fn max_retries(&self, group: &UpstreamGroup) -> u32 {
        group.config.retry.max_retries
    }
}

/// An attempt that ended the failover, with what its leg gave back.
#[derive(Debug)]
pub struct Served<'g, T> {
    /// The backend's index in the group.
    pub index: usize,
    /// Not judged yet: the caller judges it, and it counts in flight until dropped.
    pub attempt: Attempt<'g>,
    pub output: T,
}

/// What the engine does next after a failure, for [`Leg::retrying`]; displays as the debug
/// line's sentence.
#[derive(Debug)]
pub struct Retrying<'a> {
    pub backend: SocketAddr,
    pub failure: &'a UpstreamFailure,
    pub then: Then,
}

/// Where a failed attempt's request goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The connect failed: the next backend.
    OtherBackend,
    /// The exchange failed: the next backend.
    Retry,
    /// A pooled connection was lost: the same backend, on a fresh connection.
    FreshConnection,
}

impl fmt::Display for Retrying<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failure = self.failure.describe();
        match self.then {
            Then::OtherBackend => write!(f, "backend {failure}; trying the next one"),
            Then::Retry => write!(f, "backend {failure}; retrying"),
            Then::FreshConnection => {
                write!(f, "pooled connection {failure}; again on a fresh one")
            }
        }
    }
}

/// Picks backends for one request or connection of `group` (balanced on `keys`: its hash key
/// and its traffic-split bucket) until one serves it or retrying stops; `worker` names the
/// worker in outlier logs. See the module doc.
pub async fn run<'g, L: Leg>(
    worker: usize,
    group: &'g UpstreamGroup,
    keys: RequestKeys,
    leg: &mut L,
) -> Result<Served<'g, L::Output>, GiveUp> {
    group.state.retry_budget.record_request();
    let mut retries = RetryCount::default();
    let mut tried: Vec<usize> = Vec::new();
    let mut attempts: u32 = 0;
    let mut last_failure: Option<(SocketAddr, UpstreamFailure)> = None;
    // Set after a pooled connection was lost: the same backend again, on a fresh connection.
    let mut again_fresh: Option<usize> = None;
    // Set when the request first has to wait for a backend under its `max_connections`.
    let mut queue_deadline = None;
    // Asks the retry limits before another backend is tried. The budget is the group's; the
    // number of retries may be the request's own.
    let retry = RetryConfig {
        max_retries: leg.max_retries(group),
        ..group.config.retry.clone()
    };
    let mut permit = |failure: &UpstreamFailure, address: SocketAddr, attempts: u32| {
        retries
            .permit_after(failure, &retry, &group.state.retry_budget)
            .map_err(|refusal| {
                GiveUp::not_retried(group, &retry, address, failure, refusal, attempts)
            })
    };

    loop {
        let fresh_only = again_fresh.is_some();
        let chosen = again_fresh
            .take()
            .or_else(|| select::choose(group, keys, &tried));
        if chosen.is_none() && select::all_full(group, &tried) {
            if select::wait_for_slot(group, &mut queue_deadline).await {
                continue;
            }
            return Err(GiveUp::queue_timeout(group, L::PROTOCOL));
        }
        let Some(index) = chosen else {
            return Err(match &last_failure {
                None => GiveUp::no_usable_backend(group),
                Some(last) => GiveUp::all_tried(group, L::PROTOCOL, last, attempts, tried.len()),
            });
        };
        let backend = &group.backends[index];
        let address = backend.address;
        attempts += 1;
        leg.begin(index, backend);
        let attempt = Attempt::begin(group, index);
        let pooled = if L::POOLED && !fresh_only {
            leg.reuse(backend)
        } else {
            None
        };
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(conn) => conn,
            None => match leg.connect(backend).await {
                Ok(conn) => conn,
                Err(failure) if failure.is_local() => {
                    // The proxy's own limit, not the backend's fault: no verdict, no retry.
                    drop(attempt);
                    return Err(GiveUp::local_resources(group, address, &failure));
                }
                Err(failure) => {
                    backend.stats.connect_error();
                    attempt.finish(worker, Verdict::Failed(&failure));
                    if L::POOLED {
                        // It refuses new connections: its idle ones are most likely dead too.
                        backend.pool.clear();
                    }
                    tried.push(index);
                    // Nothing was sent: any request may go to the next backend.
                    permit(&failure, address, attempts)?;
                    leg.retrying(Retrying {
                        backend: address,
                        failure: &failure,
                        then: Then::OtherBackend,
                    });
                    last_failure = Some((address, failure));
                    continue;
                }
            },
        };
        let failure = match leg.exchange(backend, conn).await {
            Ok(output) => {
                return Ok(Served {
                    index,
                    attempt,
                    output,
                })
            }
            Err(failure) => failure,
        };
        let safety: RetrySafety = failure.retry_safety();
        let again = safety.permits(leg.replayable());
        if reused && safety.connection_lost() {
            // A stale pooled connection says nothing about the backend: no verdict.
            drop(attempt);
            if again {
                leg.retrying(Retrying {
                    backend: address,
                    failure: &failure,
                    then: Then::FreshConnection,
                });
                again_fresh = Some(index);
                last_failure = Some((address, failure));
                continue;
            }
        } else {
            backend.stats.failed_attempt();
            attempt.finish(worker, Verdict::Failed(&failure));
            if again {
                tried.push(index);
                permit(&failure, address, attempts)?;
                leg.retrying(Retrying {
                    backend: address,
                    failure: &failure,
                    then: Then::Retry,
                });
                last_failure = Some((address, failure));
                continue;
            }
        }
        return Err(GiveUp::not_retryable(group, address, &failure));
    }
}
