//! The crash `--crash-after N` asks for: once the Nth ordinary request is answered, the process
//! exits at once with [`CRASH_EXIT_STATUS`], without draining — to systemd a failed main process
//! like any crash (`Restart=on-failure` restarts it), to a proxy connections that close unanswered.
//!
//! "Answered" means the response has left: the Nth response's body is wrapped in [`CrashOnceSent`],
//! and the crash is set off when hyper drops that body (all of it written, or the client gone).
//! Hyper drops it just before it writes the last bytes out, so the exit waits [`WRITE_GRACE`]
//! more; the requests that arrive meanwhile get no answer ([`crate::faults::Verdict::Unanswered`]).
//! A plain exit rather than `abort()`: a crash to systemd all the same, without a core dump.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tracing::error;

/// The exit status of the crash (EX_SOFTWARE, "internal software error"): apart from 1 (a
/// startup error, or a second signal during the drain), so `systemctl status` tells them apart.
pub const CRASH_EXIT_STATUS: i32 = 70;

/// How long after the Nth body is dropped the process exits: time for hyper to write the last
/// bytes of the answer (on loopback, microseconds).
const WRITE_GRACE: Duration = Duration::from_millis(100);

/// `response`, set to crash the process once it has been sent.
pub fn once_sent(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let body = CrashOnceSent {
        inner: body,
        _crash: CrashWhenDropped,
    };
    Response::from_parts(parts, Body::new(body))
}

/// The Nth response's body: the body as it was, and the crash, set off when it is dropped.
struct CrashOnceSent {
    inner: Body,
    _crash: CrashWhenDropped,
}

impl http_body::Body for CrashOnceSent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct CrashWhenDropped;

impl Drop for CrashWhenDropped {
    fn drop(&mut self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async {
                    tokio::time::sleep(WRITE_GRACE).await;
                    crash();
                });
            }
            // Dropped outside the runtime (it is shutting down): nothing is left to write.
            Err(_) => crash(),
        }
    }
}

fn crash() -> ! {
    error!(
        "crashing on purpose: the last ordinary request --crash-after allows is answered; \
         exiting with status {CRASH_EXIT_STATUS}, without draining"
    );
    std::process::exit(CRASH_EXIT_STATUS)
}
