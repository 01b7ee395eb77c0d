//! How a failover ends without a backend's answer: why ([`GaveUp`], the one word both access logs
//! print) and what the proxy says about it ([`GiveUp`]: the status an HTTP client gets, the
//! sentence for the log line and the error body, the backend that failed last).
//!
//! The words are the same for HTTP and TCP. Two sentences differ between the protocols and are
//! kept as they were ([`Protocol`]): a TCP connection is "open" at a backend where an HTTP request
//! is "in flight", and only HTTP says "all N backends failed" when every backend was tried.

use crate::config::RetryConfig;
use crate::metrics::stats::GaveUpCount;
use crate::upstream::failure::UpstreamFailure;
use crate::upstream::retry::{Refusal, RetryBudget};
use crate::upstream::select;
use crate::upstream::UpstreamGroup;
use std::net::SocketAddr;

/// Why the proxy gave up: the access log's `gave_up` (HTTP) or `end` (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// No backend was usable at all (down, draining, none left): 503.
    NoUsableBackend,
    /// An autoscaled group had no instance at all, and none became usable within its
    /// `queue_timeout` (see [`crate::upstream::scale_from_zero`]): 503.
    NoInstance,
    /// Backends were tried, and no other one is usable now.
    AllTried,
    /// The request reached `retry.max_retries`.
    MaxRetries,
    /// The worker's retry budget for the group was spent: a fast failure.
    RetryBudget,
    /// The failure was not safe to retry (see [`crate::upstream::failure::RetrySafety`]). HTTP
    /// only: a TCP connection fails only at connect, which is always safe to retry.
    NotRetryable,
    /// The client's request (body) was at fault. HTTP only.
    ClientError,
    /// Every usable backend stayed at `max_connections` for `queue_timeout`: 503.
    QueueTimeout,
    /// The proxy could not open a connection (out of descriptors, memory, local ports): 503.
    LocalResources,
}

impl GaveUp {
    /// The word in both access logs (and the warning's `reason` field).
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::NoUsableBackend => "no_usable_backend",
            GaveUp::NoInstance => "no_instance",
            GaveUp::AllTried => "all_backends_failed",
            GaveUp::MaxRetries => "max_retries",
            GaveUp::RetryBudget => "retry_budget_exhausted",
            GaveUp::NotRetryable => "not_retryable",
            GaveUp::ClientError => "client_error",
            GaveUp::QueueTimeout => "queue_timeout",
            GaveUp::LocalResources => "proxy_out_of_resources",
        }
    }

    /// The group counter it adds to, for the reasons that have one.
    pub fn counted(self) -> Option<GaveUpCount> {
        match self {
            GaveUp::RetryBudget => Some(GaveUpCount::RetryBudget),
            // Counted with the other requests that found no usable backend.
            GaveUp::NoUsableBackend | GaveUp::NoInstance => Some(GaveUpCount::NoUsableBackend),
            GaveUp::QueueTimeout => Some(GaveUpCount::QueueTimeout),
            GaveUp::LocalResources => Some(GaveUpCount::OutOfResources),
            _ => None,
        }
    }
}

/// Which protocol's sentences a [`GiveUp`] uses (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

/// The end of a failover without a backend's answer.
#[derive(Debug)]
pub struct GiveUp {
    pub reason: GaveUp,
    /// The status an HTTP client gets (a TCP client is just closed).
    pub status: u16,
    /// What happened, for the warning and the error body.
    pub detail: String,
    /// The backend that failed last, when the failure is its own; `None` when no backend was
    /// tried or the give-up is not about one (a queue timeout).
    pub backend: Option<SocketAddr>,
}

impl GiveUp {
    pub(super) fn queue_timeout(group: &UpstreamGroup, protocol: Protocol) -> Self {
        let busy = match protocol {
            Protocol::Http => "in flight",
            Protocol::Tcp => "open",
        };
        GiveUp {
            reason: GaveUp::QueueTimeout,
            status: 503,
            detail: format!(
                "upstream \"{}\": every usable backend has its max_connections ({}) {busy}; \
                 waited {:?} in the queue",
                group.name,
                group
                    .config
                    .max_connections
                    .map_or(0, std::num::NonZero::get),
                group.config.queue_timeout
            ),
            backend: None,
        }
    }

    pub(super) fn no_usable_backend(group: &UpstreamGroup) -> Self {
        GiveUp {
            reason: GaveUp::NoUsableBackend,
            status: 503,
            detail: format!(
                "upstream \"{}\" has no usable backend ({})",
                group.name,
                select::why_none_usable(group)
            ),
            backend: None,
        }
    }

    /// `group` (autoscaled) had no instance, and none became usable within its `queue_timeout`.
    pub fn no_instance(group: &UpstreamGroup) -> Self {
        GiveUp {
            reason: GaveUp::NoInstance,
            status: 503,
            detail: format!(
                "upstream \"{}\" has no instance: scaled to zero and none became ready within \
                 {:?}",
                group.name, group.config.queue_timeout
            ),
            backend: None,
        }
    }

    /// Nothing left to choose after `attempts` attempts, `tried` backends among them, the last
    /// one to `backend` failing with `failure`.
    pub(super) fn all_tried(
        group: &UpstreamGroup,
        protocol: Protocol,
        (backend, failure): &(SocketAddr, UpstreamFailure),
        attempts: u32,
        tried: usize,
    ) -> Self {
        let detail = if protocol == Protocol::Http && tried == group.backends.len() {
            format!(
                "upstream \"{}\": all {tried} backends failed; the last one {}",
                group.name,
                failure.describe()
            )
        } else {
            format!(
                "upstream \"{}\": no other backend is usable after {attempts} failed attempts \
                 ({}); the last one {}",
                group.name,
                select::why_none_usable(group),
                failure.describe()
            )
        };
        GiveUp {
            reason: GaveUp::AllTried,
            status: failure.status(),
            detail,
            backend: Some(*backend),
        }
    }

    /// The proxy could not open a connection to `backend` (see
    /// [`UpstreamFailure::LocalResources`]).
    pub(super) fn local_resources(
        group: &UpstreamGroup,
        backend: SocketAddr,
        failure: &UpstreamFailure,
    ) -> Self {
        GiveUp {
            reason: GaveUp::LocalResources,
            status: failure.status(),
            detail: format!(
                "upstream \"{}\": backend {backend} {}",
                group.name,
                failure.describe()
            ),
            backend: Some(backend),
        }
    }

    /// A retry was due after `attempts` attempts but the limits refused it.
    pub(super) fn not_retried(
        group: &UpstreamGroup,
        retry: &RetryConfig,
        backend: SocketAddr,
        failure: &UpstreamFailure,
        refusal: Refusal,
        attempts: u32,
    ) -> Self {
        let (why, reason) = match refusal {
            Refusal::MaxRetries => (
                format!(
                    "gave up after {attempts} attempts (retry.max_retries = {})",
                    retry.max_retries
                ),
                GaveUp::MaxRetries,
            ),
            Refusal::Budget => (
                format!(
                    "not retried: the retry budget is exhausted ({})",
                    RetryBudget::describe(&group.config.retry)
                ),
                GaveUp::RetryBudget,
            ),
        };
        GiveUp {
            reason,
            status: failure.status(),
            detail: format!(
                "upstream \"{}\": backend {backend} {}; {why}",
                group.name,
                failure.describe()
            ),
            backend: Some(backend),
        }
    }

    /// The failure was not safe to retry for this request.
    pub(super) fn not_retryable(
        group: &UpstreamGroup,
        backend: SocketAddr,
        failure: &UpstreamFailure,
    ) -> Self {
        GiveUp {
            reason: GaveUp::NotRetryable,
            status: failure.status(),
            detail: format!("upstream \"{}\" {}", group.name, failure.describe()),
            backend: Some(backend),
        }
    }

    /// The client's request was at fault (HTTP: its body), while `backend` served it.
    pub fn client_error(backend: SocketAddr, status: u16, detail: String) -> Self {
        GiveUp {
            reason: GaveUp::ClientError,
            status,
            detail,
            backend: Some(backend),
        }
    }
}
