//! Which request goes where, and who may send it.
//!
//! Access: with a token configured (required for a non-loopback address), every request but the
//! dashboard's static files needs `Authorization: Bearer TOKEN` (401 otherwise); the page asks
//! for the token and sends it with its API calls. Without a token the server listens on loopback
//! only, and refuses what a web page in the operator's browser could send it: a `Host` that is
//! a DNS name (DNS rebinding) and a POST from another origin (403).

use super::http::{AdminRequest, AdminResponse};
use super::{api, autoscale, dashboard, deploy, instances, prometheus, AdminState};
use crate::config::AdminToken;
use crate::http::Method;
use crate::runtime::now_ms;

/// Answers `request`.
pub fn route(request: &AdminRequest, state: &AdminState) -> AdminResponse {
    let token = state.control.config().admin.token.clone();
    if let Err(refusal) = check_access(request, token.as_ref()) {
        return refusal;
    }
    let path = request.path.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (request.method, path) {
        (Method::Get, "/" | "/index.html") => dashboard::page(),
        (Method::Get, _) if path.starts_with("/assets/") => dashboard::asset(&path[8..]),
        (Method::Get, "/metrics") => {
            let aggregate = state.control.aggregate();
            let instances = instances::view(
                &state.control.inventory(),
                &state.control.config(),
                &aggregate,
                &state.sampler.latest().unwrap_or_default(),
                std::time::SystemTime::now(),
            );
            let autoscale = autoscale::view(state.control.autoscale());
            let deployments = deploy::metrics(state.control.deploy());
            let text = prometheus::render(
                &aggregate,
                &instances.instances,
                &autoscale.groups,
                &deployments,
                &state.info,
                prometheus::Reloads {
                    applied: state.control.reloads(),
                    failed: state.control.failed_reloads(),
                },
                now_ms(),
            );
            AdminResponse::new(200, prometheus::CONTENT_TYPE, text)
        }
        (Method::Get, "/api/status") => api::status(state),
        (Method::Get, "/api/backends") => api::backends(state),
        (Method::Get, "/api/instances") => instances::instances(state),
        (Method::Get, "/api/autoscale") => autoscale::autoscale(state),
        (Method::Get, "/api/deploy") => deploy::deploy(state),
        (Method::Get, "/api/deploy/history") => deploy::history(state),
        (Method::Post, "/api/deploy") => deploy::start(
            state.control.deploy(),
            &state.control.config(),
            &request.body,
        ),
        (Method::Post, "/api/deploy/promote" | "/api/deploy/abort" | "/api/deploy/rollback") => {
            deploy::command(state.control.deploy(), segments[2], &request.body)
        }
        (Method::Post, "/api/reload") => api::reload(state),
        (Method::Post, _) if segments.len() == 5 && segments[..2] == ["api", "backends"] => {
            let force = request.flag("force");
            api::change_backend(
                state,
                segments[2],
                segments[3],
                segments[4],
                &request.body,
                force,
            )
        }
        (
            _,
            "/"
            | "/index.html"
            | "/metrics"
            | "/api/status"
            | "/api/backends"
            | "/api/instances"
            | "/api/autoscale"
            | "/api/deploy/history",
        ) => not_allowed("GET"),
        (_, "/api/deploy") => not_allowed("GET, POST"),
        (
            _,
            "/api/reload" | "/api/deploy/promote" | "/api/deploy/abort" | "/api/deploy/rollback",
        ) => not_allowed("POST"),
        (_, _) if segments.len() == 5 && segments[..2] == ["api", "backends"] => {
            not_allowed("POST")
        }
        _ => AdminResponse::error(
            404,
            format!(
                "no {path} here: the admin server serves / (dashboard), /metrics, \
                 /api/status, /api/backends, /api/instances, /api/autoscale, /api/deploy, \
                 /api/deploy/history, POST /api/backends/GROUP/BACKEND/drain|enable|weight, \
                 POST /api/reload, POST /api/deploy (a deployment spec) and POST \
                 /api/deploy/promote|abort|rollback"
            ),
        ),
    }
}

fn not_allowed(allow: &'static str) -> AdminResponse {
    AdminResponse::error(405, format!("use {allow} here")).with_header("Allow", allow)
}

/// `Ok` when `request` may be served (see the module docs).
pub fn check_access(
    request: &AdminRequest,
    token: Option<&AdminToken>,
) -> Result<(), AdminResponse> {
    let public = request.method == Method::Get
        && (matches!(request.path.as_str(), "/" | "/index.html")
            || request.path.starts_with("/assets/"));
    if let Some(token) = token {
        let offered = request
            .authorization
            .as_deref()
            .and_then(|value| bearer(value));
        if public || offered.is_some_and(|offered| token.matches(offered)) {
            return Ok(());
        }
        let why = if offered.is_some() {
            "the bearer token is wrong"
        } else {
            "this needs `Authorization: Bearer TOKEN`"
        };
        return Err(AdminResponse::error(
            401,
            format!(
                "{why}: the token is the proxy's [admin] token (or the contents of token_file); \
                 lbproxy ctl reads it from LBPROXY_ADMIN_TOKEN or --token-file"
            ),
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"lbproxy admin\""));
    }
    if let Some(host) = request.host.as_deref() {
        if !is_local_name(host) {
            return Err(AdminResponse::error(
                403,
                format!(
                    "Host {host:?} is not an IP address or localhost: without an [admin] token the \
                     admin server only answers requests addressed to it by IP"
                ),
            ));
        }
    }
    if request.method != Method::Get {
        if let Some(origin) = request.origin.as_deref() {
            let origin_host = origin_host(origin);
            if origin_host != request.host.as_deref().map(str::to_ascii_lowercase) {
                return Err(AdminResponse::error(
                    403,
                    format!("a request from the web page at {origin} may not change the proxy"),
                ));
            }
        }
    }
    Ok(())
}

/// The token of `Bearer TOKEN` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.len().min(7));
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

fn is_local_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
}

/// The host of an `Origin` (`http://host:port`), lowercased, without its port.
fn origin_host(origin: &str) -> Option<String> {
    let authority = origin.split_once("://")?.1;
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next()?
    } else {
        authority.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, host: &str) -> AdminRequest {
        AdminRequest {
            method,
            path: path.into(),
            query: String::new(),
            host: Some(host.into()),
            authorization: None,
            origin: None,
            body: Vec::new(),
        }
    }

    fn token() -> AdminToken {
        AdminToken::new("0123456789abcdef-secret".into())
    }

    #[test]
    fn query_flags() {
        let mut drain = request(
            Method::Post,
            "/api/backends/api/127.0.0.1:1/drain",
            "127.0.0.1",
        );
        assert!(!drain.flag("force"));
        for query in ["force", "force=true", "x=1&force=1", "force=yes"] {
            drain.query = query.into();
            assert!(drain.flag("force"), "{query}");
        }
        for query in ["force=false", "forced=1", "force=0"] {
            drain.query = query.into();
            assert!(!drain.flag("force"), "{query}");
        }
    }

    #[test]
    fn with_a_token_only_the_page_is_public() {
        let token = token();
        let page = request(Method::Get, "/", "proxy.example.com");
        assert!(check_access(&page, Some(&token)).is_ok());
        let mut metrics = request(Method::Get, "/metrics", "proxy.example.com");
        let refused = check_access(&metrics, Some(&token)).unwrap_err();
        assert_eq!(refused.status, 401);
        metrics.authorization = Some(b"Bearer wrong-token-0123456".to_vec());
        let refused = check_access(&metrics, Some(&token)).unwrap_err();
        assert!(String::from_utf8_lossy(&refused.body).contains("wrong"));
        metrics.authorization = Some(b"bearer 0123456789abcdef-secret".to_vec());
        assert!(check_access(&metrics, Some(&token)).is_ok());
    }

    #[test]
    fn without_a_token_web_pages_cannot_reach_in() {
        assert!(check_access(&request(Method::Get, "/api/status", "127.0.0.1"), None).is_ok());
        assert!(check_access(&request(Method::Get, "/", "localhost"), None).is_ok());
        assert!(check_access(&request(Method::Get, "/", "[::1]"), None).is_ok());
        let rebound = request(Method::Get, "/api/status", "evil.example");
        assert_eq!(check_access(&rebound, None).unwrap_err().status, 403);
        let mut post = request(Method::Post, "/api/reload", "127.0.0.1");
        post.origin = Some("http://evil.example".into());
        assert_eq!(check_access(&post, None).unwrap_err().status, 403);
        post.origin = Some("http://127.0.0.1:9901".into());
        assert!(
            check_access(&post, None).is_ok(),
            "the dashboard's own origin"
        );
    }
}
