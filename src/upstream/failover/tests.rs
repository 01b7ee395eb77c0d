//! Each decision of the engine on scripted streams ([`crate::upstream::testing`]): a leg that
//! writes a request head and reads whatever comes back, against backends that answer, close,
//! reset, stay silent, refuse or never accept. The pooled leg speaks for HTTP (pool, HTTP
//! sentences), the other for TCP.

use super::*;
use crate::config::PoolConfig;
use crate::sys::socket::{peek_idle, IdleState};
use crate::upstream::pool::UpstreamConn;
use crate::upstream::testing::{
    backends, generation, on_both_drivers, refusing, ScriptedBackend, Step, Unaccepting, OK,
};
use crate::upstream::Generation;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::cell::RefCell;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_millis(300);

/// A leg that sends `head` and takes the first bytes back as the answer; pooled (and with
/// HTTP's sentences) when `POOLED`.
struct Scripted<const POOLED: bool> {
    pool: PoolConfig,
    replayable: bool,
    head: Vec<u8>,
    /// Connecting to this address fails as if the proxy were out of descriptors.
    out_of_descriptors: Option<SocketAddr>,
    /// To this backend, writes the head only once it has closed or reset the connection.
    write_when_closed: Option<SocketAddr>,
    /// What the engine told the leg: backends begun, and each move after a failure.
    begun: Vec<usize>,
    moves: RefCell<Vec<Then>>,
}

impl<const POOLED: bool> Scripted<POOLED> {
    fn new(generation: &Generation, replayable: bool) -> Self {
        Scripted {
            pool: generation.upstreams[0].config.pool.clone(),
            replayable,
            head: b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            out_of_descriptors: None,
            write_when_closed: None,
            begun: Vec::new(),
            moves: RefCell::default(),
        }
    }

    fn moves(&self) -> Vec<Then> {
        self.moves.borrow().clone()
    }
}

impl<const POOLED: bool> Leg for Scripted<POOLED> {
    type Conn = UpstreamConn;
    type Output = Vec<u8>;
    const POOLED: bool = POOLED;
    const PROTOCOL: Protocol = if POOLED {
        Protocol::Http
    } else {
        Protocol::Tcp
    };

    fn begin(&mut self, index: usize, _backend: &Backend) {
        self.begun.push(index);
    }

    fn reuse(&mut self, backend: &Backend) -> Option<UpstreamConn> {
        backend.pool.checkout(&self.pool).0
    }

    async fn connect(&mut self, backend: &Backend) -> Result<UpstreamConn, UpstreamFailure> {
        if self.out_of_descriptors == Some(backend.address) {
            let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
            return Err(UpstreamFailure::from_connect_error(emfile));
        }
        crate::upstream::connect::connect(backend.address, None, LIMIT).await
    }

    async fn exchange(
        &mut self,
        backend: &Backend,
        mut conn: UpstreamConn,
    ) -> Result<Vec<u8>, UpstreamFailure> {
        if self.write_when_closed == Some(backend.address) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while peek_idle(conn.fd()) == IdleState::Open && Instant::now() < deadline {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        match monoio::time::timeout(LIMIT, conn.w.write_all(self.head.clone())).await {
            Ok((Ok(_), _)) => {}
            Ok((Err(e), _)) => return Err(UpstreamFailure::Send(e)),
            Err(_) => return Err(UpstreamFailure::Timeout(LIMIT)),
        }
        match monoio::time::timeout(LIMIT, conn.r.read(Vec::with_capacity(1024))).await {
            Ok((Ok(0), _)) => Err(UpstreamFailure::ClosedBeforeResponse),
            Ok((Ok(_), answer)) => {
                if POOLED {
                    backend.checkin(&self.pool, conn);
                }
                Ok(answer)
            }
            Ok((Err(e), _)) => Err(UpstreamFailure::Read(e)),
            Err(_) => Err(UpstreamFailure::Timeout(LIMIT)),
        }
    }

    fn replayable(&self) -> bool {
        self.replayable
    }

    fn retrying(&self, retrying: Retrying<'_>) {
        let sentence = retrying.to_string();
        let failure = retrying.failure.describe();
        assert!(sentence.contains(&failure), "{sentence}");
        self.moves.borrow_mut().push(retrying.then);
    }
}

/// Runs the engine on group 0 of `generation` with `leg`.
async fn run_on<'g, const P: bool>(
    generation: &'g Generation,
    leg: &mut Scripted<P>,
) -> Result<Served<'g, Vec<u8>>, GiveUp> {
    run(0, &generation.upstreams[0], RequestKeys::default(), leg).await
}

fn group_of(addresses: &[SocketAddr], extra: &str) -> String {
    format!("[upstream.api]\n{}{extra}", backends(addresses))
}

/// No retry allowed at all: neither by count nor by budget.
const NO_RETRIES: &str =
    "[upstream.api.retry]\nmax_retries = 0\nbudget_percent = 0\nbudget_min_per_second = 0\n";

#[test]
fn a_refused_connect_goes_to_the_next_backend_without_counting_against_the_limits() {
    on_both_drivers(|| async {
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let generation = generation("tcp", &group_of(&[refusing(), ok.address], NO_RETRIES));
        let mut leg = Scripted::<false>::new(&generation, false);
        let served = run_on(&generation, &mut leg).await.expect("served");
        assert_eq!(served.index, 1);
        assert_eq!(served.output, OK);
        assert_eq!(leg.begun, [0, 1]);
        assert_eq!(leg.moves(), [Then::OtherBackend]);
        let refused = generation.upstreams[0].backends[0].stats.snapshot();
        assert_eq!((refused.connect_errors, refused.failed_attempts), (1, 1));
    });
}

#[test]
fn every_backend_failing_gives_up_with_the_last_failure() {
    on_both_drivers(|| async {
        let generation = generation("http", &group_of(&[refusing(), refusing()], ""));
        let mut leg = Scripted::<true>::new(&generation, true);
        let give_up = run_on(&generation, &mut leg)
            .await
            .expect_err("nothing listens");
        assert_eq!(give_up.reason, GaveUp::AllTried);
        assert_eq!(give_up.reason.as_str(), "all_backends_failed");
        assert_eq!(give_up.status, 502);
        assert_eq!(
            give_up.detail,
            "upstream \"api\": all 2 backends failed; the last one refused the connection"
        );
        assert_eq!(
            give_up.backend,
            Some(generation.upstreams[0].backends[1].address)
        );

        // TCP says it the way it always did.
        let mut leg = Scripted::<false>::new(&generation, false);
        let give_up = run_on(&generation, &mut leg)
            .await
            .expect_err("nothing listens");
        assert_eq!(give_up.reason, GaveUp::AllTried);
        assert!(
            give_up.detail.starts_with(
                "upstream \"api\": no other backend is usable after 2 failed attempts"
            ),
            "{}",
            give_up.detail
        );
    });
}

#[test]
fn with_no_usable_backend_nothing_is_tried() {
    on_both_drivers(|| async {
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let generation = generation("tcp", &group_of(&[ok.address], ""));
        let backend = &generation.upstreams[0].backends[0];
        backend.set_healthy(false, Instant::now(), Duration::ZERO);
        let mut leg = Scripted::<false>::new(&generation, false);
        let give_up = run_on(&generation, &mut leg).await.expect_err("down");
        assert_eq!(give_up.reason, GaveUp::NoUsableBackend);
        assert_eq!((give_up.status, give_up.backend), (503, None));
        assert_eq!(
            give_up.detail,
            "upstream \"api\" has no usable backend (1 backend: 1 down)"
        );
        assert!(leg.begun.is_empty());
        assert_eq!(ok.connections(), 0);
    });
}

#[test]
fn a_connection_lost_after_the_head_goes_again_only_for_a_replayable_request() {
    on_both_drivers(|| async {
        let closing = ScriptedBackend::start(vec![vec![Step::CloseAfterHead]]);
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let group = group_of(&[closing.address, ok.address], "");

        let replayed = generation("http", &group);
        let mut leg = Scripted::<true>::new(&replayed, true);
        let served = run_on(&replayed, &mut leg).await.expect("replayed");
        assert_eq!((served.index, leg.moves()), (1, vec![Then::Retry]));

        let generation = generation("http", &group);
        let mut leg = Scripted::<true>::new(&generation, false);
        let give_up = run_on(&generation, &mut leg)
            .await
            .expect_err("not replayable");
        assert_eq!(give_up.reason, GaveUp::NotRetryable);
        assert_eq!(give_up.status, 502);
        assert_eq!(
            give_up.detail,
            "upstream \"api\" closed the connection without responding"
        );
        assert_eq!(
            leg.begun,
            [0],
            "the backend may have acted on it: not sent elsewhere"
        );
        let stats = generation.upstreams[0].backends[0].stats.snapshot();
        assert_eq!(
            stats.failed_attempts, 1,
            "the loss counts against the backend"
        );
    });
}

#[test]
fn a_head_that_could_not_be_written_goes_again_for_any_request() {
    on_both_drivers(|| async {
        // Resets every connection just after accepting it; the leg writes once it sees that.
        let resetting = ScriptedBackend::start(vec![vec![Step::ResetSoon]]);
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let generation = generation("http", &group_of(&[resetting.address, ok.address], ""));
        let mut leg = Scripted::<true>::new(&generation, false);
        leg.write_when_closed = Some(resetting.address);
        let served = run_on(&generation, &mut leg).await.expect("sent elsewhere");
        assert_eq!(served.index, 1);
        assert_eq!(leg.moves(), [Then::Retry]);
    });
}

#[test]
fn a_timeout_is_never_retried() {
    on_both_drivers(|| async {
        let silent = ScriptedBackend::start(vec![vec![Step::Silent]]);
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let generation = generation("http", &group_of(&[silent.address, ok.address], ""));
        let mut leg = Scripted::<true>::new(&generation, true);
        let give_up = run_on(&generation, &mut leg).await.expect_err("timed out");
        assert_eq!(
            (give_up.reason, give_up.status),
            (GaveUp::NotRetryable, 504)
        );
        assert_eq!(leg.begun, [0]);
        assert_eq!(ok.connections(), 0);
    });
}

#[test]
fn a_lost_pooled_connection_goes_once_more_on_a_fresh_one_to_the_same_backend() {
    on_both_drivers(|| async {
        // The first connection answers, is pooled, then resets under the next request.
        let backend = ScriptedBackend::start(vec![
            vec![Step::Answer(OK), Step::ResetAfterHead],
            vec![Step::Answer(OK)],
        ]);
        let generation = generation("http", &group_of(&[backend.address], NO_RETRIES));
        let mut leg = Scripted::<true>::new(&generation, true);
        run_on(&generation, &mut leg).await.expect("first");
        assert_eq!(generation.upstreams[0].backends[0].pool.idle_count(), 1);

        let mut leg = Scripted::<true>::new(&generation, true);
        let served = run_on(&generation, &mut leg).await.expect("again, fresh");
        assert_eq!(served.output, OK);
        assert_eq!(leg.begun, [0, 0], "the same backend");
        assert_eq!(
            leg.moves(),
            [Then::FreshConnection],
            "free: no retry was allowed"
        );
        assert_eq!(backend.connections(), 2);
        let stats = generation.upstreams[0].backends[0].stats.snapshot();
        assert_eq!(
            stats.failed_attempts, 0,
            "a stale connection is not the backend's fault"
        );
    });
}

#[test]
fn a_lost_pooled_connection_is_not_replayed_for_a_request_that_may_not_go_twice() {
    on_both_drivers(|| async {
        let backend = ScriptedBackend::start(vec![
            vec![Step::Answer(OK), Step::ResetAfterHead],
            vec![Step::Answer(OK)],
        ]);
        let generation = generation("http", &group_of(&[backend.address], ""));
        let mut leg = Scripted::<true>::new(&generation, true);
        run_on(&generation, &mut leg).await.expect("first");

        let mut leg = Scripted::<true>::new(&generation, false);
        let give_up = run_on(&generation, &mut leg)
            .await
            .expect_err("not replayable");
        assert_eq!(
            (give_up.reason, give_up.status),
            (GaveUp::NotRetryable, 502)
        );
        assert_eq!(leg.begun, [0]);
        assert_eq!(backend.connections(), 1, "no fresh connection");
        assert_eq!(backend.requests(), 2, "the second one reached it");
        let stats = generation.upstreams[0].backends[0].stats.snapshot();
        assert_eq!(stats.failed_attempts, 0, "no verdict on a stale connection");
    });
}

#[test]
fn a_counted_retry_stops_at_max_retries_or_at_the_budget() {
    on_both_drivers(|| async {
        let hanging = [Unaccepting::start(), Unaccepting::start()];
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let addresses = [hanging[0].address, hanging[1].address, ok.address];

        let limited = "[upstream.api.retry]\nmax_retries = 1\n";
        let counted = generation("tcp", &group_of(&addresses, limited));
        let mut leg = Scripted::<false>::new(&counted, false);
        let give_up = run_on(&counted, &mut leg).await.expect_err("two timeouts");
        assert_eq!(give_up.reason, GaveUp::MaxRetries);
        assert_eq!(give_up.status, 504);
        assert!(
            give_up
                .detail
                .ends_with("gave up after 2 attempts (retry.max_retries = 1)"),
            "{}",
            give_up.detail
        );
        assert_eq!(leg.begun, [0, 1]);

        let spent = "[upstream.api.retry]\nbudget_percent = 0\nbudget_min_per_second = 0\n";
        let budgeted = generation("tcp", &group_of(&addresses, spent));
        let mut leg = Scripted::<false>::new(&budgeted, false);
        let give_up = run_on(&budgeted, &mut leg).await.expect_err("no budget");
        assert_eq!(give_up.reason, GaveUp::RetryBudget);
        assert_eq!(give_up.reason.as_str(), "retry_budget_exhausted");
        assert!(
            give_up
                .detail
                .contains("not retried: the retry budget is exhausted"),
            "{}",
            give_up.detail
        );
        assert_eq!(leg.begun, [0]);
        assert_eq!(ok.connections(), 0);
    });
}

#[test]
fn waiting_for_a_slot_ends_at_the_queue_timeout_or_when_one_frees_up() {
    on_both_drivers(|| async {
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let limited = "max_connections = 1\nqueue_timeout = \"100ms\"\n";
        let generation = generation("http", &group_of(&[ok.address], limited));
        let group = &generation.upstreams[0];

        let busy = Attempt::begin(group, 0);
        let mut leg = Scripted::<true>::new(&generation, true);
        let give_up = run_on(&generation, &mut leg).await.expect_err("full");
        assert_eq!(
            (give_up.reason, give_up.status),
            (GaveUp::QueueTimeout, 503)
        );
        assert_eq!(
            give_up.detail,
            "upstream \"api\": every usable backend has its max_connections (1) in flight; \
             waited 100ms in the queue"
        );
        assert!(leg.begun.is_empty());
        let mut leg = Scripted::<false>::new(&generation, false);
        let give_up = run_on(&generation, &mut leg).await.expect_err("full");
        assert!(give_up.detail.contains("(1) open;"), "{}", give_up.detail);

        let mut leg = Scripted::<true>::new(&generation, true);
        let release = async {
            monoio::time::sleep(Duration::from_millis(20)).await;
            drop(busy);
        };
        let (served, ()) = monoio::join!(run_on(&generation, &mut leg), release);
        assert_eq!(served.expect("the freed slot").output, OK);
    });
}

#[test]
fn the_proxys_own_lack_of_descriptors_ends_it_at_once_without_a_verdict() {
    on_both_drivers(|| async {
        let ok = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let other = ScriptedBackend::start(vec![vec![Step::Answer(OK)]]);
        let generation = generation("http", &group_of(&[ok.address, other.address], ""));
        let mut leg = Scripted::<true>::new(&generation, true);
        leg.out_of_descriptors = Some(ok.address);
        let give_up = run_on(&generation, &mut leg).await.expect_err("EMFILE");
        assert_eq!(
            (give_up.reason, give_up.status),
            (GaveUp::LocalResources, 503)
        );
        assert_eq!(give_up.reason.as_str(), "proxy_out_of_resources");
        assert_eq!(leg.begun, [0], "another backend would fail the same way");
        let stats = generation.upstreams[0].backends[0].stats.snapshot();
        assert_eq!(stats.failed_attempts, 0);
        assert_eq!(other.connections(), 0);
    });
}

#[test]
fn the_words_are_the_access_logs_and_some_are_counted() {
    use crate::metrics::stats::GaveUpCount;
    let all = [
        (
            GaveUp::NoUsableBackend,
            "no_usable_backend",
            Some(GaveUpCount::NoUsableBackend),
        ),
        (
            GaveUp::NoInstance,
            "no_instance",
            Some(GaveUpCount::NoUsableBackend),
        ),
        (GaveUp::AllTried, "all_backends_failed", None),
        (GaveUp::MaxRetries, "max_retries", None),
        (
            GaveUp::RetryBudget,
            "retry_budget_exhausted",
            Some(GaveUpCount::RetryBudget),
        ),
        (GaveUp::NotRetryable, "not_retryable", None),
        (GaveUp::ClientError, "client_error", None),
        (
            GaveUp::QueueTimeout,
            "queue_timeout",
            Some(GaveUpCount::QueueTimeout),
        ),
        (
            GaveUp::LocalResources,
            "proxy_out_of_resources",
            Some(GaveUpCount::OutOfResources),
        ),
    ];
    for (reason, word, counted) in all {
        assert_eq!(reason.as_str(), word);
        assert_eq!(reason.counted(), counted, "{word}");
    }
}
