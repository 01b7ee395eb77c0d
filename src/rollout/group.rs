//! The upstream group as the proxy sees it now, read from the admin API's `GET /api/backends`:
//! each backend's state, health verdict, requests in flight and recent probes, and the group's
//! health-check and slow-start settings. Also the admin calls a rollout makes (drain, enable).

use crate::admin::client::{backend_path, AdminClient};
use anyhow::Context;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Deserialize)]
struct BackendsReply {
    upstreams: Vec<GroupStatus>,
}

/// One upstream group (`upstreams[]` of `/api/backends`).
#[derive(Debug, Clone, Deserialize)]
pub struct GroupStatus {
    pub name: String,
    /// `[upstream.NAME.health]`; `None`: no active health checks.
    pub health_check: Option<HealthCheckInfo>,
    /// Required: an admin server that lacks it predates `lbproxy rollout`.
    pub slow_start_ms: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthCheckInfo {
    /// `http` or `tcp`.
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
    pub interval_ms: u64,
    pub rise: u32,
}

impl HealthCheckInfo {
    /// What is probed: `http /health/ready`, `tcp`.
    pub fn target(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {path}", self.kind),
            None => self.kind.clone(),
        }
    }

    /// `http /health/ready every 2s, up after 2 passing probes`.
    pub fn describe(&self) -> String {
        format!(
            "{} every {}, up after {} passing {}",
            self.target(),
            millis(self.interval_ms),
            self.rise,
            if self.rise == 1 { "probe" } else { "probes" }
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackendStatus {
    pub address: SocketAddr,
    /// up, slow-start, half-open, ejected, down, draining, retired.
    pub state: String,
    /// The active health checks' verdict as the workers apply it: up or down.
    pub health: String,
    /// `Some(true)`: drained at runtime (admin API); `None`: as the configuration says.
    pub drain_override: Option<bool>,
    pub in_flight: u64,
    /// TCP (L4) connections relayed to it now.
    pub open_connections: u64,
    pub ramp_percent: f64,
    pub probes: Option<ProbeStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProbeStatus {
    pub total: u64,
    pub passes_in_a_row: u32,
    pub failures_in_a_row: u32,
    pub last_error: Option<String>,
}

impl BackendStatus {
    /// Takes new requests at (or ramping up to) its full share.
    pub fn is_usable(&self) -> bool {
        matches!(self.state.as_str(), "up" | "slow-start") && self.health == "up"
    }

    /// Drained by the configuration (`drain = true`), not at runtime: a rollout leaves it alone.
    pub fn drained_by_config(&self) -> bool {
        self.state == "draining" && self.drain_override.is_none()
    }

    /// Requests and TCP connections still running on it.
    pub fn busy(&self) -> u64 {
        self.in_flight + self.open_connections
    }

    /// What the last probe said: `3 failures in a row, last: HTTP 503 from /health/ready`.
    pub fn probe_summary(&self) -> String {
        match &self.probes {
            None => "no probe has finished yet".to_owned(),
            Some(p) if p.failures_in_a_row > 0 => format!(
                "{} failed {} in a row, the last: {}",
                p.failures_in_a_row,
                if p.failures_in_a_row == 1 {
                    "probe"
                } else {
                    "probes"
                },
                p.last_error.as_deref().unwrap_or("failed")
            ),
            Some(p) => format!("the last {} probe(s) passed", p.passes_in_a_row),
        }
    }
}

impl GroupStatus {
    pub fn backend(&self, address: SocketAddr) -> anyhow::Result<&BackendStatus> {
        self.backends
            .iter()
            .find(|b| b.address == address)
            .with_context(|| {
                format!(
                    "backend {address} is no longer in upstream \"{}\" (was the proxy reloaded?)",
                    self.name
                )
            })
    }

    /// `127.0.0.1:8001 down, 127.0.0.1:8003 draining` for every backend but `except`.
    pub fn others_described(&self, except: SocketAddr) -> String {
        let others: Vec<String> = self
            .backends
            .iter()
            .filter(|b| b.address != except)
            .map(|b| format!("{} {}", b.address, b.state))
            .collect();
        if others.is_empty() {
            "it is the only one".to_owned()
        } else {
            others.join(", ")
        }
    }
}

/// Reads upstream `group` from the admin API.
pub fn fetch(client: &AdminClient, group: &str) -> anyhow::Result<GroupStatus> {
    let reply = client.get("/api/backends")?;
    let parsed: BackendsReply = serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "the admin server at {} answered /api/backends with something this lbproxy does \
             not read (is it an lbproxy of the same version? `lbproxy rollout` needs one that \
             reports health checks per group)",
            client.address()
        )
    })?;
    let names: Vec<String> = parsed.upstreams.iter().map(|u| u.name.clone()).collect();
    parsed
        .upstreams
        .into_iter()
        .find(|u| u.name == group)
        .with_context(|| {
            format!(
                "the proxy has no upstream group \"{group}\"; its groups are: {} (choose one \
                 with --group)",
                names.join(", ")
            )
        })
}

/// The units of group `group` as the proxy discovered them (`/api/instances`), by backend
/// address: empty when the group does not discover its backends (or the proxy predates
/// discovery).
pub fn discovered_units(client: &AdminClient, group: &str) -> Vec<(SocketAddr, String)> {
    #[derive(serde::Deserialize)]
    struct Reply {
        instances: Vec<Instance>,
    }
    #[derive(serde::Deserialize)]
    struct Instance {
        group: String,
        unit: String,
        address: Option<SocketAddr>,
    }
    let Ok(reply) = client.get("/api/instances") else {
        return Vec::new();
    };
    let Ok(parsed) = serde_json::from_slice::<Reply>(&reply.body) else {
        return Vec::new();
    };
    parsed
        .instances
        .into_iter()
        .filter(|i| i.group == group)
        .filter_map(|i| Some((i.address?, i.unit)))
        .collect()
}

/// `POST /api/backends/{group}/{backend}/{action}` (`drain` or `enable`); the number of workers
/// that applied it.
pub fn change(
    client: &AdminClient,
    group: &str,
    backend: SocketAddr,
    action: &str,
) -> anyhow::Result<u64> {
    let reply = client
        .post(&backend_path(group, &backend.to_string(), action), b"")
        .with_context(|| format!("{action} {backend} through the admin API"))?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.body)
        .with_context(|| format!("the admin server's answer to {action} is not JSON"))?;
    Ok(answer["workers"].as_u64().unwrap_or(0))
}

/// `2s`, `200ms`, `1.5s`.
pub fn millis(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> &'static str {
        r#"{"upstreams": [{"name": "api", "balance": "round_robin", "slow_start_ms": 0,
            "health_check": {"type": "http", "path": "/health/ready", "interval_ms": 2000,
                             "timeout_ms": 1000, "rise": 2, "fall": 3},
            "backends": [
              {"address": "127.0.0.1:8001", "state": "up", "health": "up", "drain_override": null,
               "in_flight": 2, "open_connections": 0, "ramp_percent": 100.0,
               "probes": {"total": 7, "passes_in_a_row": 7, "failures_in_a_row": 0,
                          "last_error": null, "last_ms_ago": 300}},
              {"address": "127.0.0.1:8002", "state": "draining", "health": "down",
               "drain_override": true, "in_flight": 0, "open_connections": 1,
               "ramp_percent": 100.0,
               "probes": {"total": 9, "passes_in_a_row": 0, "failures_in_a_row": 3,
                          "last_error": "HTTP 503 from /health/ready", "last_ms_ago": 10}},
              {"address": "127.0.0.1:8003", "state": "draining", "health": "up",
               "drain_override": null, "in_flight": 0, "open_connections": 0,
               "ramp_percent": 100.0, "probes": null}]}]}"#
    }

    #[test]
    fn the_api_answer_reads_into_typed_backends() {
        let parsed: BackendsReply = serde_json::from_str(reply()).unwrap();
        let api = &parsed.upstreams[0];
        assert_eq!(
            api.health_check.as_ref().unwrap().describe(),
            "http /health/ready every 2s, up after 2 passing probes"
        );
        let [one, two, three] = &api.backends[..] else {
            panic!("three backends")
        };
        assert!(one.is_usable() && !two.is_usable() && !three.is_usable());
        assert!(!two.drained_by_config() && three.drained_by_config());
        assert_eq!((one.busy(), two.busy()), (2, 1));
        assert_eq!(
            two.probe_summary(),
            "3 failed probes in a row, the last: HTTP 503 from /health/ready"
        );
        assert_eq!(three.probe_summary(), "no probe has finished yet");
        assert_eq!(
            api.others_described(one.address),
            "127.0.0.1:8002 draining, 127.0.0.1:8003 draining"
        );
    }

    #[test]
    fn an_older_admin_server_is_told_apart() {
        let old = r#"{"upstreams": [{"name": "api", "backends": []}]}"#;
        let error = serde_json::from_str::<BackendsReply>(old).unwrap_err();
        assert!(error.to_string().contains("slow_start_ms"), "{error}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(millis(2000), "2s");
        assert_eq!(millis(200), "200ms");
        assert_eq!(millis(1500), "1.5s");
    }
}
