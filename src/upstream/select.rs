//! Choosing a backend of a group for one request (or one TCP connection), whatever the
//! protocol: the balancer's pick among the backends that may take it, tier by tier.
//!
//! [`choose`] asks the group's balancer with a filter that rejects backends already tried for
//! this request, down (active health), draining, or ejected (passive outlier detection), in
//! this order of preference:
//!
//! 1. primaries that admit requests;
//! 2. backups that admit requests (backups serve only when no primary can);
//! 3. primaries and then backups even if ejected: ejection never takes a whole group out, since
//!    failing every request is worse than trying a backend that failed recently.
//!
//! Down and draining backends are never chosen: with none left the caller answers 503. A backend
//! with `max_connections` requests in flight on this worker is not chosen either; when that is
//! all that stands in the way ([`all_full`]), the caller waits in the group's queue.
//! [`request_key`] computes the hash key `maglev` groups balance on.

use super::backend::{Backend, BackendState};
use crate::config::HashKey;
use crate::http::Request;
use crate::upstream::balancer::{hash_bytes, hash_ip, SelectionView};
use crate::upstream::UpstreamGroup;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// The next backend (index into `group.backends`) for a request whose earlier attempts went to
/// `tried`; `None` when no backend may take it.
pub fn choose(group: &UpstreamGroup, key: Option<u64>, tried: &[usize]) -> Option<usize> {
    let view = GroupView(&group.backends);
    let pick = |backup: bool, ignore_circuit: bool| {
        group.balancer.select(&view, key, |i| {
            let backend = &group.backends[i];
            backend.is_backup() == backup
                && backend.admits(ignore_circuit)
                && !tried.contains(&i)
                && has_room(group, backend)
        })
    };
    pick(false, false)
        .or_else(|| group.has_backups.then(|| pick(true, false)).flatten())
        .or_else(|| pick(false, true))
        .or_else(|| group.has_backups.then(|| pick(true, true)).flatten())
}

fn has_room(group: &UpstreamGroup, backend: &Backend) -> bool {
    (backend.in_flight() as usize) < group.max_in_flight_per_backend
}

/// Whether [`choose`] found nothing only because every backend that could take the request has
/// `max_connections` in flight: then it is worth waiting for a slot.
pub fn all_full(group: &UpstreamGroup, tried: &[usize]) -> bool {
    group
        .backends
        .iter()
        .enumerate()
        .any(|(i, b)| b.admits(true) && !tried.contains(&i) && !has_room(group, b))
}

/// Waits in `group`'s queue for a connection slot, until the deadline set at the first wait of
/// this request or connection (`group.queue_timeout` from then; kept in `queue_deadline`).
/// `true`: a slot was freed, choose again; `false`: the queue timed out.
pub async fn wait_for_slot(group: &UpstreamGroup, queue_deadline: &mut Option<Instant>) -> bool {
    let deadline =
        *queue_deadline.get_or_insert_with(|| Instant::now() + group.config.queue_timeout);
    let wait = group.state.queue.wait();
    monoio::time::timeout_at(deadline.into(), wait)
        .await
        .is_ok()
}

/// Why no backend of `group` is usable, e.g. "3 backends: 2 down, 1 draining".
pub fn why_none_usable(group: &UpstreamGroup) -> String {
    let mut counts: Vec<(BackendState, usize)> = Vec::new();
    for backend in &group.backends {
        let state = backend.state();
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(state, n)| format!("{n} {}", state.as_str()))
        .collect();
    let total = group.backends.len();
    let noun = if total == 1 { "backend" } else { "backends" };
    format!("{total} {noun}: {}", parts.join(", "))
}

/// The hash key of a request for `group`'s balancer: `None` unless the group balances with
/// `maglev`, or when the header or cookie it hashes is absent.
pub fn request_key(
    hash_key: Option<&HashKey>,
    request: &Request<'_>,
    peer: SocketAddr,
) -> Option<u64> {
    match hash_key? {
        HashKey::ClientIp => Some(hash_ip(peer.ip())),
        HashKey::Header(name) => request.header(name).map(|value| hash_bytes(0, value)),
        HashKey::Cookie(name) => request.cookie(name).map(|value| hash_bytes(0, value)),
    }
}

/// What the balancers read about a group's backends.
struct GroupView<'a>(&'a [Rc<Backend>]);

impl SelectionView for GroupView<'_> {
    fn weight(&self, index: usize) -> u64 {
        self.0[index].effective_weight()
    }

    fn in_flight(&self, index: usize) -> u32 {
        self.0[index].in_flight()
    }

    fn ramp(&self, index: usize) -> u32 {
        self.0[index].ramp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;
    use crate::upstream::backend::Circuit;
    use crate::upstream::Generation;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Backends 0 and 1 primaries, 2 a backup.
    fn generation() -> Generation {
        let config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\", \"127.0.0.1:8002\", \
             { address = \"127.0.0.1:8003\", backup = true }]\n",
        );
        Generation::first(Arc::new(config), 0)
    }

    fn eject(backend: &Backend) {
        backend.set_circuit(Circuit::Open {
            until: Instant::now() + Duration::from_secs(30),
        });
    }

    #[test]
    fn primaries_first_then_backups_then_ejected_never_down() {
        let generation = generation();
        let group = &generation.upstreams[0];
        let picks: Vec<_> = (0..4).map(|_| choose(group, None, &[]).unwrap()).collect();
        assert_eq!(
            picks,
            [0, 1, 0, 1],
            "the backup is idle while primaries serve"
        );
        assert_eq!(
            choose(group, None, &[0, 1]),
            Some(2),
            "backup after the primaries"
        );

        eject(&group.backends[0]);
        group.backends[1].set_healthy(false, Instant::now(), Duration::ZERO);
        assert_eq!(
            choose(group, None, &[]),
            Some(2),
            "the backup before an ejected primary"
        );
        assert_eq!(
            choose(group, None, &[2]),
            Some(0),
            "ejected rather than nothing"
        );
        assert_eq!(choose(group, None, &[2, 0]), None, "a down backend never");
        assert_eq!(
            why_none_usable(group),
            "3 backends: 1 ejected, 1 down, 1 up"
        );
    }

    #[test]
    fn draining_backends_take_no_new_requests() {
        let config = valid(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [{ address = \"127.0.0.1:8001\", drain = true }, \
             \"127.0.0.1:8002\"]\n",
        );
        let generation = Generation::first(Arc::new(config), 0);
        let group = &generation.upstreams[0];
        for _ in 0..4 {
            assert_eq!(choose(group, None, &[]), Some(1));
        }
        assert_eq!(choose(group, None, &[1]), None);
    }
}
