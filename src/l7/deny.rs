//! Access lists checked per request: the route's list (`access` on a route), and the listener's
//! when it could not be checked as the connection opened (the connection comes from a trusted
//! proxy, so each request names its own client: see `worker/admission.rs`).
//!
//! Flow: [`check`] runs in the session's `prepare`, after routing, on the request's client
//! address; a route without a list on a connection that is not from a trusted proxy pays one
//! branch. A denied request becomes a [`Denied`], which [`answer`] refuses: `403 Forbidden`
//! answered by the proxy and the connection closed, or (`action = "reset"`) the connection reset
//! without an answer. Either is counted on the listener (`denied_requests`, responses) and the
//! route, and logged like any answer of the proxy ([`super::answered`]; a reset with status 0).

use super::answered::{OwnAnswer, Why};
use super::client::{respond_and_close, ClientConn};
use crate::config::{Config, DenyAction, RouteConfig};
use crate::runtime::context::WorkerContext;
use crate::sys;
use std::net::IpAddr;

/// A request an access list refused.
#[derive(Debug)]
pub struct Denied {
    pub answer: OwnAnswer,
    pub action: DenyAction,
    /// Whose list refused it, for the 403's text: `"listener"` or `"route"`.
    pub list: &'static str,
    pub client_ip: IpAddr,
    pub head_only: bool,
}

/// Which list refuses `client_ip` on `route` of `listener`, and how: `None` when it may pass.
/// `trust_forwarded`: the connection's requests name their client, so the listener's list
/// (skipped when the connection opened) is checked here too; a request it refuses is answered
/// 403 (resetting would cut the trusted proxy's connection, shared by its other clients).
#[inline]
pub fn check(
    config: &Config,
    listener: usize,
    route: &RouteConfig,
    client_ip: IpAddr,
    trust_forwarded: bool,
) -> Option<(DenyAction, &'static str)> {
    if trust_forwarded {
        if let Some(access) = &config.listeners[listener].policy.access {
            if !access.allows(client_ip) {
                return Some((DenyAction::Forbidden, "listener"));
            }
        }
    }
    match &route.access {
        Some(access) if !access.allows(client_ip) => Some((access.action, "route")),
        _ => None,
    }
}

/// Refuses `denied` on `client`: a 403 and a graceful close, or a reset. The connection is not
/// used afterwards.
pub async fn answer(ctx: &WorkerContext, client: &mut ClientConn, denied: Denied) {
    let answer = &denied.answer;
    ctx.listeners[answer.listener].request_denied();
    let (status, sent) = match denied.action {
        DenyAction::Forbidden => {
            let detail = format!(
                "{} is not allowed by the {}'s access list",
                denied.client_ip, denied.list
            );
            let write_limit = answer.generation.config.timeouts.client_idle;
            let sent = respond_and_close(
                client,
                write_limit,
                403,
                &detail,
                &answer.request_id,
                denied.head_only,
            )
            .await;
            (if sent > 0 { 403 } else { 0 }, sent as u64)
        }
        DenyAction::Reset => {
            // Now, not at close: the split connection's write half sends a FIN when dropped,
            // which would reach the client first (see `sys::pipe::reset`).
            let _ = sys::pipe::reset(client.fd);
            (0, 0)
        }
    };
    let why = Why::Denied {
        reset: denied.action == DenyAction::Reset,
    };
    answer.finish(ctx, client.logged(), status, (sent, 0), why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{valid, with, API};

    #[test]
    fn the_route_s_list_and_with_trusted_proxies_the_listener_s_decide() {
        let config = valid(&format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             access = {{ deny = [\"192.0.2.0/24\"] }}\n\
             [[listener.http.route]]\npath_prefix = \"/admin\"\nupstream = \"api\"\n\
             access = {{ allow = [\"10.0.0.0/8\"], action = \"reset\" }}\n{API}"
        ));
        let (admin, other) = (
            &config.listeners[0].routes[0],
            &config.listeners[0].routes[1],
        );
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(check(&config, 0, admin, ip("10.1.1.1"), false), None);
        assert_eq!(
            check(&config, 0, admin, ip("203.0.113.9"), false),
            Some((DenyAction::Reset, "route"))
        );
        // Without trust the listener's list was checked at connection time, not here.
        assert_eq!(check(&config, 0, other, ip("192.0.2.1"), false), None);
        assert_eq!(
            check(&config, 0, other, ip("192.0.2.1"), true),
            Some((DenyAction::Forbidden, "listener"))
        );
        assert_eq!(check(&config, 0, other, ip("203.0.113.9"), true), None);
        let plain = valid(&with(""));
        assert_eq!(
            check(
                &plain,
                0,
                &plain.listeners[0].routes[0],
                ip("192.0.2.1"),
                true
            ),
            None
        );
    }
}
