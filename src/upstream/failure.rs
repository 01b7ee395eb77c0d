//! What can go wrong in one exchange with a backend, said by who failed and whether a retry is
//! safe.
//!
//! The retry logic, the status code, the client's error body and the log line all read the same
//! [`UpstreamFailure`], so they cannot disagree.

use std::io;
use std::time::Duration;

/// A backend failed us. Whether the request may go elsewhere depends on [`Self::nothing_sent`]
/// and on the method (see `exchange`).
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
}
