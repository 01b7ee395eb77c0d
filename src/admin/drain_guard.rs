//! Refusing a drain that would take a group's last serving backend out: every request to the
//! group would then get 503, a full outage from one command. `lbproxy ctl drain` and the API both
//! come through here (`POST …/drain`); `--force` (`?force=true`) drains anyway, for the operator
//! who means it (the group is being retired, or its traffic moved elsewhere).
//!
//! The check lives in the admin API, not in `ctl`, so that every client — `ctl`, scripts with
//! curl, a future dashboard button — gets it. It reads the workers' published snapshots: a
//! backend change is confirmed only once the workers have published it, so back-to-back drains
//! (`for b in …; do lbproxy ctl drain api $b; done`) each see the ones before.
//!
//! "Serving" is what the request path may still pick: up, slow start, half-open, or ejected
//! (ejection never takes a whole group out); down (failing health checks) and draining backends
//! are never picked. A backend that does not serve now may always be drained: that changes
//! nothing for the clients.

use crate::metrics::aggregate::UpstreamRow;
use crate::metrics::BackendState;
use std::net::SocketAddr;

/// Why draining `address` of `group` is refused, or `None` when it may go ahead.
pub fn refusal(group: &UpstreamRow, address: SocketAddr) -> Option<String> {
    let states: Vec<(SocketAddr, BackendState)> = group
        .backends
        .iter()
        .map(|b| (b.address, b.state))
        .collect();
    refusal_among(&group.name, &states, address)
}

fn serves(state: BackendState) -> bool {
    !matches!(
        state,
        BackendState::Retired | BackendState::Draining | BackendState::Down
    )
}

fn refusal_among(
    group: &str,
    backends: &[(SocketAddr, BackendState)],
    address: SocketAddr,
) -> Option<String> {
    let me = backends.iter().find(|(a, _)| *a == address)?;
    let others: Vec<&(SocketAddr, BackendState)> =
        backends.iter().filter(|(a, _)| *a != address).collect();
    if !serves(me.1) || others.iter().any(|(_, state)| serves(*state)) {
        return None;
    }
    let why = if others.is_empty() {
        format!("it is the only backend of upstream \"{group}\"")
    } else {
        let described: Vec<String> = others
            .iter()
            .map(|(a, state)| format!("{a} {}", state.as_str()))
            .collect();
        format!(
            "no other backend of upstream \"{group}\" serves ({})",
            described.join(", ")
        )
    };
    Some(format!(
        "not draining {address}: {why}, so every request to the group would get 503. Bring \
         another backend back first, or drain it anyway with `lbproxy ctl drain --force` \
         (API: POST …/drain?force=true)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendState::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_last_serving_backend_is_kept() {
        let only = refusal_among("api", &[(at(1), Up)], at(1)).unwrap();
        assert!(
            only.starts_with(
                "not draining 127.0.0.1:1: it is the only backend of upstream \"api\""
            ),
            "{only}"
        );
        assert!(only.contains("--force"), "{only}");
        let group = [(at(1), Up), (at(2), Down), (at(3), Draining)];
        let last = refusal_among("api", &group, at(1)).unwrap();
        assert!(
            last.contains("no other backend of upstream \"api\" serves (127.0.0.1:2 down, 127.0.0.1:3 draining)"),
            "{last}"
        );
    }

    #[test]
    fn a_drain_that_leaves_a_backend_serving_goes_ahead() {
        assert_eq!(
            refusal_among("api", &[(at(1), Up), (at(2), SlowStart)], at(1)),
            None
        );
        assert_eq!(
            refusal_among("api", &[(at(1), Up), (at(2), Ejected)], at(1)),
            None
        );
        // Draining one that serves nothing changes nothing for the clients.
        assert_eq!(
            refusal_among("api", &[(at(1), Down), (at(2), Down)], at(1)),
            None
        );
        assert_eq!(refusal_among("api", &[(at(1), Draining)], at(1)), None);
        // Unknown to the snapshot (just added by a reload): the workers decide.
        assert_eq!(refusal_among("api", &[(at(1), Up)], at(2)), None);
    }
}
