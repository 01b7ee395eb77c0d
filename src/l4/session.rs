//! One connection of a tcp listener, from accept to close.
//!
//! Flow:
//! 1. A listener with `sni` routes first reads the client's ClientHello (at most
//!    [`MAX_CLIENT_HELLO`] bytes, within `timeouts.tls_handshake`) and routes by the name in it
//!    ([`sni::parse`]); no name, no match or not TLS at all goes to the listener's `upstream`, or
//!    the connection is closed. Other tcp listeners read nothing first, so protocols where the
//!    server speaks first work.
//! 2. A backend is chosen and connected by the failover engine HTTP uses too
//!    ([`crate::upstream::failover`]: balancer, health, ejection, drain, backups,
//!    `max_connections` with its queue; `maglev` hashes the client IP), with a leg that only
//!    connects, within `timeouts.upstream_connect`. A failed connect counts against the backend
//!    and the next one is tried, within the group's `retry.max_retries` and retry budget (a
//!    refused connect without counting against either, see [`crate::upstream::retry`]): nothing
//!    was sent yet. Why it gave up is a [`crate::upstream::failover::GaveUp`], the log's `end`.
//! 3. The PROXY protocol header (if the group has `proxy_protocol`) and the bytes read for
//!    routing go to the backend first, untouched.
//! 4. The listener's relay ([`mod@crate::relay`]: `splice` or `copy`) moves bytes both ways until both
//!    sides have closed, one fails (both are then reset), or nothing moved for
//!    `timeouts.tcp_idle`.
//! 5. The connection is counted (listener, group and backend: connections, bytes each way,
//!    connect errors, retries; see [`crate::metrics`]) and one access log line says who, where,
//!    how many bytes each way, how long and how it ended.
//!
//! The attempt is judged a success once the connect succeeds and counts as in flight (for
//! `least_conn` and `p2c`) until the connection closes; what happens inside the relay is the
//! protocol's business and does not count against the backend.

use crate::config::RelayMode;
use crate::l4::record::ConnectionRecord;
use crate::l4::sni::{self, Hello, MAX_CLIENT_HELLO};
use crate::net::io::{read_append, write_all_within};
use crate::net::proxy_protocol;
use crate::net::stream;
use crate::policy::origin::ClientOrigin;
use crate::relay::{self, copy, splice, Direction, Progress, Relayed};
use crate::runtime::context::WorkerContext;
use crate::upstream::backend::Backend;
use crate::upstream::connect::connect_tcp;
use crate::upstream::failover::{self, GaveUp, GiveUp, Leg, Protocol, Retrying, Served};
use crate::upstream::failure::UpstreamFailure;
use crate::upstream::outlier::Verdict;
use crate::upstream::route::find_route;
use crate::upstream::scale_from_zero::{self, scaled_to_zero};
use crate::upstream::select;
use crate::upstream::{Generation, UpstreamGroup};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Serves one accepted connection of tcp listener `listener`, from the client `origin` names.
pub async fn serve(ctx: &WorkerContext, listener: usize, client: TcpStream, origin: ClientOrigin) {
    // The client's address (a PROXY header's source on a listener that reads one) is what the
    // backend's PROXY header, hashing and the log name.
    let peer = origin.addr;
    let mut generation = ctx.generation();
    let mut record = ConnectionRecord::new(Instant::now());
    relay_connection(ctx, &mut generation, listener, client, origin, &mut record).await;
    record.finish(ctx, peer, &generation, listener);
}

/// `generation`: the one the connection started on, replaced by a newer one when the group was
/// scaled to zero and an instance appeared there ([`scale_from_zero`]).
async fn relay_connection(
    ctx: &WorkerContext,
    generation: &mut Rc<Generation>,
    listener: usize,
    mut client: TcpStream,
    origin: ClientOrigin,
    record: &mut ConnectionRecord,
) {
    let peer = origin.addr;
    let config = &generation.config;
    let listener_config = &config.listeners[listener];
    let mut first_bytes = Vec::new();
    let mut server_name = None;
    if listener_config.routes_by_sni() {
        match read_client_hello(ctx, generation, &mut client).await {
            Ok((bytes, name)) => (first_bytes, server_name) = (bytes, name),
            Err(end) => {
                record.end = end;
                return;
            }
        }
        record.sni = server_name.clone();
    }
    let route = find_route(&listener_config.routes, server_name.as_deref(), "/");
    let Some(upstream) = route.and_then(|route| listener_config.routes[route].upstream()) else {
        tracing::debug!(
            worker = ctx.id,
            client = %peer,
            listener = %listener_config.name,
            sni = server_name.as_deref().unwrap_or("-"),
            "no route for this server name and no default upstream; closing"
        );
        record.end = "no_route";
        return;
    };
    record.upstream = Some(upstream);
    let mut upstream = upstream;
    // Set when the connection first waits for an instance: `queue_timeout` from then.
    let mut instance_deadline = None;
    let Served {
        index,
        mut attempt,
        output: mut backend,
    } = loop {
        let group = &generation.upstreams[upstream];
        let limit = generation.config.timeouts.upstream_connect;
        let mut give_up = match connect_with_failover(ctx, group, peer, limit, record).await {
            Ok(served) => break served,
            Err(give_up) => give_up,
        };
        if give_up.reason == GaveUp::NoUsableBackend && scaled_to_zero(group) {
            let deadline = *instance_deadline
                .get_or_insert_with(|| Instant::now() + group.config.queue_timeout);
            let current = || ctx.generation();
            let found =
                scale_from_zero::wait_for_instance(group, deadline, current, &ctx.commits).await;
            match found {
                Some((next, index)) => {
                    *generation = next;
                    upstream = index;
                    record.upstream = Some(upstream);
                    continue;
                }
                None => give_up = GiveUp::no_instance(group),
            }
        }
        gave_up(ctx, group, peer, record, &give_up);
        return;
    };
    let generation = &**generation;
    let config = &generation.config;
    let listener_config = &config.listeners[listener];
    let group = &generation.upstreams[upstream];
    // Connected: the backend took the connection.
    attempt.judge(ctx.id, Verdict::Success);
    record.connected = Some(index);
    group.backends[index].stats.connection_opened();

    let mut first = match group.config.proxy_protocol {
        // The front the client reached: a PROXY header's destination, else this listener.
        Some(version) => match origin.destination.map_or_else(|| client.local_addr(), Ok) {
            Ok(listening) => proxy_protocol::header(version, peer, listening),
            Err(e) => {
                tracing::debug!(worker = ctx.id, client = %peer, "client socket failed: {e}");
                record.end = "client_reset";
                return;
            }
        },
        None => Vec::new(),
    };
    first.extend_from_slice(&first_bytes);
    record.bytes_received = first_bytes.len() as u64;
    let idle = config.timeouts.tcp_idle;
    if !first.is_empty() && write_all_within(&mut backend, first, idle).await.is_err() {
        tracing::debug!(
            worker = ctx.id,
            client = %peer,
            backend = %group.backends[index].address,
            "backend closed before taking the first bytes"
        );
        record.end = "backend_reset";
        return;
    }

    let relayed = relay(ctx, listener_config.relay, client, backend, idle).await;
    record.bytes_received += relayed.to_backend;
    record.bytes_sent = relayed.to_client;
    record.end = relayed.end.as_str();
    if let relay::End::Failed(fault) = &relayed.end {
        tracing::debug!(
            worker = ctx.id,
            client = %peer,
            backend = %group.backends[index].address,
            "{} failed: {}; both sides reset",
            fault.side.as_str(),
            fault.error
        );
    }
    drop(attempt);
}

/// Reads until the bytes hold a whole ClientHello (or are not TLS, or reach the limit): the bytes
/// and the server name. `Err`: why the connection ends here.
async fn read_client_hello(
    ctx: &WorkerContext,
    generation: &Generation,
    client: &mut TcpStream,
) -> Result<(Vec<u8>, Option<String>), &'static str> {
    let limit = generation.config.timeouts.tls_handshake;
    let deadline = monoio::time::Instant::now() + limit;
    let mut bytes = Vec::with_capacity(2048);
    loop {
        let spare = (MAX_CLIENT_HELLO - bytes.len()).min(4096);
        let read = monoio::time::timeout_at(deadline, read_append(client, bytes, spare));
        let (result, read) = monoio::select! {
            read = read => match read {
                Ok(read) => read,
                Err(_) => return Err("client_hello_timeout"),
            },
            _ = ctx.drain.triggered() => return Err("drain"),
        };
        bytes = read;
        match result {
            Ok(0) | Err(_) => return Err("client_closed"),
            Ok(_) => {}
        }
        match sni::parse(&bytes) {
            Hello::Complete(name) => return Ok((bytes, name)),
            Hello::NotTls => return Ok((bytes, None)),
            Hello::Incomplete if bytes.len() >= MAX_CLIENT_HELLO => return Ok((bytes, None)),
            Hello::Incomplete => {}
        }
    }
}

/// Picks and connects backends until one accepts, or retrying stops (`Err`: why, for
/// [`gave_up`]): the failover engine with the TCP leg.
async fn connect_with_failover<'g>(
    ctx: &WorkerContext,
    group: &'g UpstreamGroup,
    peer: SocketAddr,
    limit: Duration,
    record: &mut ConnectionRecord,
) -> Result<Served<'g, TcpStream>, GiveUp> {
    let keys = select::connection_keys(group, peer);
    let mut leg = TcpLeg {
        worker: ctx.id,
        peer,
        limit,
        record,
    };
    failover::run(ctx.id, group, keys, &mut leg).await
}

/// The TCP side of the failover engine: connect only (no pool, no exchange: once connected, the
/// connection is the relay's).
struct TcpLeg<'a> {
    worker: usize,
    peer: SocketAddr,
    limit: Duration,
    record: &'a mut ConnectionRecord,
}

impl Leg for TcpLeg<'_> {
    type Conn = TcpStream;
    type Output = TcpStream;
    const POOLED: bool = false;
    const PROTOCOL: Protocol = Protocol::Tcp;

    fn begin(&mut self, _index: usize, backend: &Backend) {
        self.record.backend = Some(backend.address);
        self.record.attempts += 1;
    }

    fn reuse(&mut self, _backend: &Backend) -> Option<TcpStream> {
        None
    }

    async fn connect(&mut self, backend: &Backend) -> Result<TcpStream, UpstreamFailure> {
        connect_tcp(backend.address, self.limit).await
    }

    async fn exchange(
        &mut self,
        _backend: &Backend,
        tcp: TcpStream,
    ) -> Result<TcpStream, UpstreamFailure> {
        Ok(tcp)
    }

    fn replayable(&self) -> bool {
        // Never asked: a connection fails only at connect, which is always safe to retry.
        false
    }

    fn retrying(&self, retrying: Retrying<'_>) {
        tracing::debug!(
            worker = self.worker,
            client = %self.peer,
            backend = %retrying.backend,
            "{retrying}"
        );
    }
}

/// Logs why the connection gets no backend; the client is then closed (TCP has no way to say
/// why).
fn gave_up(
    ctx: &WorkerContext,
    group: &UpstreamGroup,
    peer: SocketAddr,
    record: &mut ConnectionRecord,
    give_up: &GiveUp,
) {
    let reason = give_up.reason.as_str();
    record.end = reason;
    record.gave_up = Some(give_up.reason);
    tracing::warn!(
        worker = ctx.id,
        client = %peer,
        upstream = %group.name,
        backend = %record.backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        reason,
        "tcp connection closed: {}",
        give_up.detail
    );
}

/// Relays `client` ↔ `backend` with the listener's relay mode (falling back to copy when the
/// sockets cannot be made non-blocking for splicing).
async fn relay(
    ctx: &WorkerContext,
    mode: RelayMode,
    client: TcpStream,
    backend: TcpStream,
    idle: Duration,
) -> Relayed {
    let fds = (client.as_raw_fd(), backend.as_raw_fd());
    let progress = Progress::new();
    if mode == RelayMode::Splice {
        match splice::prepare(&client, &backend) {
            Ok(()) => {
                let up = splice::direction(
                    &client,
                    &backend,
                    Direction::ToBackend,
                    &ctx.pipes,
                    &progress,
                );
                let down = splice::direction(
                    &backend,
                    &client,
                    Direction::ToClient,
                    &ctx.pipes,
                    &progress,
                );
                return relay::run(up, down, &progress, idle, fds).await;
            }
            Err(e) => tracing::warn!(worker = ctx.id, "cannot splice ({e}); copying instead"),
        }
    }
    let (mut client_r, mut client_w) = stream::plain(client);
    let (mut backend_r, mut backend_w) = stream::plain(backend);
    let up = copy::direction(
        &mut client_r,
        &mut backend_w,
        Direction::ToBackend,
        Vec::new(),
        &progress,
    );
    let down = copy::direction(
        &mut backend_r,
        &mut client_w,
        Direction::ToClient,
        Vec::new(),
        &progress,
    );
    relay::run(up, down, &progress, idle, fds).await
}

#[cfg(test)]
mod tests {
    //! The TCP leg's decisions on scripted streams: which backend a connection gets, or the word
    //! its log line ends with, and the group counters that word adds to.
    use super::*;
    use crate::upstream::outlier::Attempt;
    use crate::upstream::testing::{
        autoscaled, backends, generation, on_both_drivers, refusing, ScriptedBackend, Step,
        Unaccepting,
    };

    const LIMIT: Duration = Duration::from_millis(200);
    const NO_RETRIES: &str =
        "[upstream.api.retry]\nmax_retries = 0\nbudget_percent = 0\nbudget_min_per_second = 0\n";

    fn context(addresses: &[SocketAddr], extra: &str) -> WorkerContext {
        let group = format!("[upstream.api]\n{}{extra}", backends(addresses));
        WorkerContext::new(0, generation("tcp", &group))
    }

    /// Connects one client connection with failover and counts it as it ends: the backend's
    /// index, if one took it, and the record.
    async fn connect_one(ctx: &WorkerContext) -> (Option<usize>, ConnectionRecord) {
        let generation = ctx.generation();
        let group = &generation.upstreams[0];
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut record = ConnectionRecord::new(Instant::now());
        record.upstream = Some(0);
        let served = connect_with_failover(ctx, group, client, LIMIT, &mut record).await;
        let index = match served {
            Ok(served) => Some(served.index),
            Err(give_up) => {
                gave_up(ctx, group, client, &mut record, &give_up);
                None
            }
        };
        record.finish(ctx, client, &generation, 0);
        (index, record)
    }

    #[test]
    fn a_refused_backend_is_skipped_without_counting() {
        on_both_drivers(|| async {
            let open = ScriptedBackend::start(vec![vec![Step::Silent]]);
            let ctx = context(&[refusing(), open.address], NO_RETRIES);
            let (index, record) = connect_one(&ctx).await;
            assert_eq!(index, Some(1));
            assert_eq!(record.attempts, 2);
            assert_eq!(record.backend, Some(open.address));
            assert_eq!((record.end, record.gave_up), ("-", None));
        });
    }

    #[test]
    fn every_backend_refusing_ends_all_backends_failed() {
        on_both_drivers(|| async {
            let ctx = context(&[refusing(), refusing()], "");
            let (index, record) = connect_one(&ctx).await;
            assert_eq!(index, None);
            assert_eq!(record.end, "all_backends_failed");
            assert_eq!(record.gave_up, Some(GaveUp::AllTried));
            assert_eq!(record.attempts, 2);
        });
    }

    #[test]
    fn with_no_usable_backend_it_ends_no_usable_backend_and_is_counted() {
        on_both_drivers(|| async {
            let open = ScriptedBackend::start(vec![vec![Step::Silent]]);
            let ctx = context(&[open.address], "");
            ctx.generation().upstreams[0].backends[0].override_drain(Some(true));
            let (index, record) = connect_one(&ctx).await;
            assert_eq!((index, record.end), (None, "no_usable_backend"));
            assert_eq!((record.attempts, record.backend), (0, None));
            let counts = ctx.generation().upstreams[0].state.stats.snapshot();
            assert_eq!(counts.no_usable_backend, 1);
        });
    }

    #[test]
    fn a_connect_timeout_is_a_counted_retry_within_max_retries_and_the_budget() {
        on_both_drivers(|| async {
            let hanging = [Unaccepting::start(), Unaccepting::start()];
            let open = ScriptedBackend::start(vec![vec![Step::Silent]]);
            let addresses = [hanging[0].address, hanging[1].address, open.address];

            let ctx = context(&addresses, "[upstream.api.retry]\nmax_retries = 1\n");
            let (index, record) = connect_one(&ctx).await;
            assert_eq!((index, record.end), (None, "max_retries"));
            assert_eq!(record.attempts, 2);

            let spent = "[upstream.api.retry]\nbudget_percent = 0\nbudget_min_per_second = 0\n";
            let ctx = context(&addresses, spent);
            let (index, record) = connect_one(&ctx).await;
            assert_eq!((index, record.end), (None, "retry_budget_exhausted"));
            assert_eq!(record.gave_up, Some(GaveUp::RetryBudget));
            let counts = ctx.generation().upstreams[0].state.stats.snapshot();
            assert_eq!(counts.budget_rejections, 1);
            assert_eq!(open.connections(), 0);
        });
    }

    #[test]
    fn a_group_at_its_limit_ends_queue_timeout_and_is_counted() {
        on_both_drivers(|| async {
            let open = ScriptedBackend::start(vec![vec![Step::Silent]]);
            let ctx = context(
                &[open.address],
                "max_connections = 1\nqueue_timeout = \"50ms\"\n",
            );
            let generation = ctx.generation();
            let busy = Attempt::begin(&generation.upstreams[0], 0);
            let (index, record) = connect_one(&ctx).await;
            assert_eq!((index, record.end), (None, "queue_timeout"));
            let counts = generation.upstreams[0].state.stats.snapshot();
            assert_eq!(counts.queue_timeouts, 1);
            drop(busy);
            assert_eq!(connect_one(&ctx).await.0, Some(0));
        });
    }

    #[test]
    fn a_connection_to_a_group_scaled_to_zero_waits_for_an_instance() {
        on_both_drivers(|| async {
            let open = ScriptedBackend::start(vec![vec![Step::Silent]]);
            let ctx = std::rc::Rc::new(WorkerContext::new(
                0,
                Generation::first(autoscaled("tcp", &[], ""), 0),
            ));
            let first = ctx.generation();
            let waiting = || {
                first.upstreams[0]
                    .state
                    .stats
                    .snapshot()
                    .waiting_for_instance
            };
            let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = proxy.local_addr().unwrap();
            let client = std::thread::spawn(move || std::net::TcpStream::connect(address));
            let (accepted, peer) = proxy.accept().unwrap();
            let accepted = TcpStream::from_std(accepted).unwrap();
            let _client = client.join().unwrap().unwrap();
            let serving = monoio::spawn({
                let ctx = ctx.clone();
                async move {
                    let mut generation = ctx.generation();
                    let mut record = ConnectionRecord::new(Instant::now());
                    let origin = ClientOrigin::peer(peer);
                    relay_connection(&ctx, &mut generation, 0, accepted, origin, &mut record).await;
                    (generation.number, record)
                }
            });
            monoio::time::sleep(Duration::from_millis(30)).await;
            assert_eq!(waiting(), 1);
            ctx.commit(first.next(autoscaled("tcp", &[open.address], ""), 0), true);
            // The backend took it; the relay then ends on the idle timeout or the close.
            let deadline = Instant::now() + Duration::from_secs(5);
            while open.connections() == 0 && Instant::now() < deadline {
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(open.connections(), 1);
            assert_eq!(waiting(), 0);
            drop(_client);
            let (number, record) = serving.await;
            assert_eq!(
                (number, record.connected, record.gave_up),
                (1, Some(0), None)
            );
        });
    }

    #[test]
    fn a_group_scaled_to_zero_ends_no_instance_after_the_queue_timeout() {
        on_both_drivers(|| async {
            let config = autoscaled("tcp", &[], "queue_timeout = \"50ms\"\n");
            let ctx = WorkerContext::new(0, Generation::first(config, 0));
            let generation = ctx.generation();
            let group = &generation.upstreams[0];
            assert!(scaled_to_zero(group));
            let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
            let mut record = ConnectionRecord::new(Instant::now());
            let give_up = connect_with_failover(&ctx, group, client, LIMIT, &mut record)
                .await
                .expect_err("no backend");
            assert_eq!(give_up.reason, GaveUp::NoUsableBackend, "the engine's word");
            let deadline = Instant::now() + group.config.queue_timeout;
            let found = scale_from_zero::wait_for_instance(
                group,
                deadline,
                || ctx.generation(),
                &ctx.commits,
            )
            .await;
            assert!(found.is_none());
            assert_eq!(GiveUp::no_instance(group).reason.as_str(), "no_instance");
        });
    }
}
