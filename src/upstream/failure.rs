//! What can go wrong in one exchange with a backend, said by who failed and whether a retry is
//! safe.
//!
//! The retry logic, the status code, the client's error body and the log line all read the same
//! [`UpstreamFailure`], so they cannot disagree. Whether the request may go again is a value the
//! failure carries ([`UpstreamFailure::retry_safety`]: a [`RetrySafety`] with its reason), computed
//! here once from where the failure happened, which each variant says; the failover engine
//! ([`super::failover`]) reads it and matches no variant.

use std::io;
use std::time::Duration;

/// A backend failed us. Each variant belongs to one step of an attempt (connect, writing the
/// head, waiting for the response, reading it), which is what [`Self::retry_safety`] reads.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// TCP connect failed (refused, unreachable). Nothing was sent: always safe to try another.
    Connect(io::Error),
    /// The proxy itself could not open a connection: out of descriptors (`EMFILE`, `ENFILE`),
    /// memory or buffers, or local ports toward that address (`EADDRNOTAVAIL`). Says nothing
    /// about the backend — it is not held against it, and another backend would fail the same way:
    /// the client gets 503 at once.
    LocalResources(io::Error),
    /// TCP connect did not complete in time. Nothing was sent.
    ConnectTimeout(Duration),
    /// The TLS handshake with the backend failed (certificate not trusted or not for the name,
    /// nothing in common, not TLS at all). Nothing was sent: another backend may be tried.
    Tls(String),
    /// The TLS handshake did not complete in time. Nothing was sent.
    TlsTimeout(Duration),
    /// Writing the request failed.
    Send(io::Error),
    /// The backend closed the connection before sending any response byte.
    ClosedBeforeResponse,
    /// Reading from the backend failed (e.g. reset).
    Read(io::Error),
    /// No complete response head within `upstream_response`, or a body read stalled that long.
    Timeout(Duration),
    /// The response was malformed (bad status line, ambiguous framing, bad chunked coding).
    Invalid(String),
}

impl UpstreamFailure {
    /// A failed TCP connect, told apart by whose fault it is: the proxy's own resources, or the
    /// backend (refused, unreachable).
    pub fn from_connect_error(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL,
            ) => UpstreamFailure::LocalResources(e),
            _ => UpstreamFailure::Connect(e),
        }
    }

    /// Whether the backend refused the connection outright: the kernel answered at once that
    /// nothing listens there (`ECONNREFUSED`), or that the address cannot be reached
    /// (`EHOSTUNREACH`, `ENETUNREACH`). Unambiguous and free: nothing was sent, no backend did any
    /// work, and it cost the proxy a round trip on its own network. Such a failure goes to the
    /// next backend without counting against `retry.max_retries` or the retry budget (each
    /// backend is still tried at most once per request), and may eject past
    /// `outlier.max_ejection_percent` (see [`super::retry`] and [`super::outlier`]).
    pub fn is_refusal(&self) -> bool {
        match self {
            UpstreamFailure::Connect(e) => matches!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
            ),
            _ => false,
        }
    }

    /// Whether the request may be tried again after this failure, and why (see [`RetrySafety`]).
    /// A failure is only ever reported before any byte of a response reached the client: one cut
    /// short after that ends the request, whatever this says.
    pub fn retry_safety(&self) -> RetrySafety {
        match self {
            UpstreamFailure::Connect(_)
            | UpstreamFailure::ConnectTimeout(_)
            | UpstreamFailure::Tls(_)
            | UpstreamFailure::TlsTimeout(_) => RetrySafety::Always(Unsent::NotConnected),
            UpstreamFailure::Send(_) => RetrySafety::Always(Unsent::HeadNotWritten),
            UpstreamFailure::ClosedBeforeResponse | UpstreamFailure::Read(_) => {
                RetrySafety::IfIdempotent
            }
            UpstreamFailure::Timeout(_) => RetrySafety::Never(Unsafe::TimedOut),
            UpstreamFailure::Invalid(_) => RetrySafety::Never(Unsafe::InvalidResponse),
            UpstreamFailure::LocalResources(_) => RetrySafety::Never(Unsafe::ProxyResources),
        }
    }

    /// Whether the failure is the proxy's own (see [`UpstreamFailure::LocalResources`]).
    pub fn is_local(&self) -> bool {
        matches!(self, UpstreamFailure::LocalResources(_))
    }

    /// Status the client gets when no response byte has been sent yet.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamFailure::ConnectTimeout(_)
            | UpstreamFailure::TlsTimeout(_)
            | UpstreamFailure::Timeout(_) => 504,
            UpstreamFailure::LocalResources(_) => 503,
            _ => 502,
        }
    }

    /// Short text for the error body and the log, e.g. "refused the connection".
    pub fn describe(&self) -> String {
        match self {
            UpstreamFailure::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                "refused the connection".to_owned()
            }
            UpstreamFailure::Connect(e) => format!("could not be connected to ({e})"),
            UpstreamFailure::LocalResources(e) => format!(
                "could not be connected to: the proxy is out of local resources ({e}); raise \
                 its open-files limit (LimitNOFILE=) or lower max_connections"
            ),
            UpstreamFailure::ConnectTimeout(d) => {
                format!("did not accept the connection within {d:?}")
            }
            UpstreamFailure::Tls(e) => format!("failed the TLS handshake ({e})"),
            UpstreamFailure::TlsTimeout(d) => {
                format!("did not complete the TLS handshake within {d:?}")
            }
            UpstreamFailure::Send(e) => format!("failed while receiving the request ({e})"),
            UpstreamFailure::ClosedBeforeResponse => {
                "closed the connection without responding".to_owned()
            }
            UpstreamFailure::Read(e) => format!("failed while sending the response ({e})"),
            UpstreamFailure::Timeout(d) => format!("did not respond within {d:?}"),
            UpstreamFailure::Invalid(what) => format!("sent an invalid response: {what}"),
        }
    }
}

/// Whether a failed attempt's request may go again: the value [`UpstreamFailure::retry_safety`]
/// computes once, and the only thing the failover engine reads to decide (besides whether the
/// request may be sent twice, and the retry limits of [`super::retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySafety {
    /// Nothing of the request reached the backend: any request may go again.
    Always(Unsent),
    /// The head was sent and the connection was lost before any response byte: the backend may
    /// have received the request and acted on it. Again only for a request that may be sent
    /// twice: an idempotent method without a body (RFC 9110 §9.2.2; a streamed body cannot be
    /// replayed).
    IfIdempotent,
    /// Never, whatever the method (see [`Unsafe`]).
    Never(Unsafe),
}

/// Why nothing of the request reached the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The connection (TCP, or its TLS handshake) never opened.
    NotConnected,
    /// Writing the head failed: the backend cannot have a complete request, and no byte of the
    /// body has left the client's buffer yet.
    HeadNotWritten,
}

/// Why a failure is never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// No response within `upstream_response`: the backend may still be working on it, and a
    /// retry would add load to a slow group.
    TimedOut,
    /// The backend answered, wrongly: it had the request.
    InvalidResponse,
    /// The proxy's own descriptors, memory or ports ran out: another backend would fail the same
    /// way.
    ProxyResources,
}

impl RetrySafety {
    /// Whether a request that may (`replayable`) or may not be sent twice may go again.
    pub fn permits(self, replayable: bool) -> bool {
        match self {
            RetrySafety::Always(_) => true,
            RetrySafety::IfIdempotent => replayable,
            RetrySafety::Never(_) => false,
        }
    }

    /// Whether the connection broke under the request (writing the head failed, or it closed or
    /// failed before a response byte). On a connection taken from the pool that says nothing
    /// about the backend: the backend may just have closed it while it was idle.
    pub fn connection_lost(self) -> bool {
        matches!(
            self,
            RetrySafety::Always(Unsent::HeadNotWritten) | RetrySafety::IfIdempotent
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_the_proxys_fault_and_503() {
        let emfile =
            UpstreamFailure::from_connect_error(io::Error::from_raw_os_error(libc::EMFILE));
        assert!(emfile.is_local());
        assert_eq!(emfile.status(), 503);
        assert!(
            emfile.describe().contains("LimitNOFILE"),
            "{}",
            emfile.describe()
        );
        let refused =
            UpstreamFailure::from_connect_error(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(!refused.is_local());
        assert_eq!(refused.describe(), "refused the connection");
    }

    #[test]
    fn only_an_immediate_refusal_is_a_refusal() {
        for errno in [libc::ECONNREFUSED, libc::EHOSTUNREACH, libc::ENETUNREACH] {
            let failure = UpstreamFailure::from_connect_error(io::Error::from_raw_os_error(errno));
            assert!(failure.is_refusal(), "{errno}");
        }
        let not_refusals = [
            UpstreamFailure::ConnectTimeout(Duration::from_secs(1)),
            UpstreamFailure::from_connect_error(io::Error::from_raw_os_error(libc::EMFILE)),
            UpstreamFailure::Connect(io::Error::from_raw_os_error(libc::ECONNRESET)),
            UpstreamFailure::Send(io::ErrorKind::ConnectionRefused.into()),
            UpstreamFailure::ClosedBeforeResponse,
            UpstreamFailure::Tls("bad certificate".to_owned()),
        ];
        for failure in not_refusals {
            assert!(!failure.is_refusal(), "{failure:?}");
        }
    }

    #[test]
    fn timeouts_are_504_and_the_rest_502() {
        let refused = UpstreamFailure::Connect(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.status(), 502);
        assert_eq!(refused.describe(), "refused the connection");
        assert_eq!(
            UpstreamFailure::Timeout(Duration::from_secs(1)).status(),
            504
        );
        assert_eq!(
            UpstreamFailure::ConnectTimeout(Duration::from_secs(1)).status(),
            504
        );
        assert_eq!(UpstreamFailure::ClosedBeforeResponse.status(), 502);
    }

    #[test]
    fn what_may_go_again_follows_where_the_failure_happened() {
        let e = || io::Error::from(io::ErrorKind::ConnectionReset);
        let second = Duration::from_secs(1);
        let cases = [
            (
                UpstreamFailure::Connect(e()),
                RetrySafety::Always(Unsent::NotConnected),
            ),
            (
                UpstreamFailure::ConnectTimeout(second),
                RetrySafety::Always(Unsent::NotConnected),
            ),
            (
                UpstreamFailure::Tls("bad".to_owned()),
                RetrySafety::Always(Unsent::NotConnected),
            ),
            (
                UpstreamFailure::TlsTimeout(second),
                RetrySafety::Always(Unsent::NotConnected),
            ),
            (
                UpstreamFailure::Send(e()),
                RetrySafety::Always(Unsent::HeadNotWritten),
            ),
            (
                UpstreamFailure::ClosedBeforeResponse,
                RetrySafety::IfIdempotent,
            ),
            (UpstreamFailure::Read(e()), RetrySafety::IfIdempotent),
            (
                UpstreamFailure::Timeout(second),
                RetrySafety::Never(Unsafe::TimedOut),
            ),
            (
                UpstreamFailure::Invalid("x".to_owned()),
                RetrySafety::Never(Unsafe::InvalidResponse),
            ),
            (
                UpstreamFailure::LocalResources(io::Error::from_raw_os_error(libc::EMFILE)),
                RetrySafety::Never(Unsafe::ProxyResources),
            ),
        ];
        for (failure, safety) in cases {
            assert_eq!(failure.retry_safety(), safety, "{failure:?}");
        }
    }

    #[test]
    fn a_request_that_may_have_arrived_goes_again_only_if_it_may_be_sent_twice() {
        for replayable in [true, false] {
            assert!(RetrySafety::Always(Unsent::NotConnected).permits(replayable));
            assert!(RetrySafety::Always(Unsent::HeadNotWritten).permits(replayable));
            assert_eq!(RetrySafety::IfIdempotent.permits(replayable), replayable);
            assert!(!RetrySafety::Never(Unsafe::TimedOut).permits(replayable));
        }
    }

    #[test]
    fn a_lost_connection_is_one_that_broke_under_the_request() {
        assert!(RetrySafety::Always(Unsent::HeadNotWritten).connection_lost());
        assert!(RetrySafety::IfIdempotent.connection_lost());
        assert!(!RetrySafety::Always(Unsent::NotConnected).connection_lost());
        assert!(!RetrySafety::Never(Unsafe::TimedOut).connection_lost());
        assert!(!RetrySafety::Never(Unsafe::InvalidResponse).connection_lost());
    }
}
