//! Talking to the admin server in tests: requests with or without a token, `lbproxy ctl` as a
//! real process, and `/metrics` parsed by a real Prometheus parser (Python's `prometheus_client`,
//! installed by tests/run.sh).

use super::client::{self, Response};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

/// `GET path` on the admin server, with `Authorization: Bearer token` when given.
pub fn get(admin: SocketAddr, path: &str, token: Option<&str>) -> Response {
    request(admin, "GET", path, token, "")
}

/// One request to the admin server, addressed by IP as a local tool would.
pub fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Response {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    client::request(admin, raw.as_bytes())
}

/// `GET /api/…` as JSON (panics unless 200).
pub fn json(admin: SocketAddr, path: &str, token: Option<&str>) -> serde_json::Value {
    let response = get(admin, path, token);
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    serde_json::from_slice(&response.body).expect("the API answers JSON")
}

/// The backend `address` of group `upstream` in an `/api/backends` (or `/api/status`) answer.
pub fn backend<'a>(
    api: &'a serde_json::Value,
    upstream: &str,
    address: SocketAddr,
) -> &'a serde_json::Value {
    api["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == upstream)
        .flat_map(|u| u["backends"].as_array().into_iter().flatten())
        .find(|b| b["address"] == address.to_string())
        .unwrap_or_else(|| panic!("no backend {address} of {upstream} in {api:#}"))
}

/// Runs `lbproxy ctl ARGS` with the environment `env` (and nothing of the test's own
/// `LBPROXY_ADMIN*` variables).
pub fn ctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbproxy"));
    command
        .arg("ctl")
        .args(args)
        .env_remove("LBPROXY_ADMIN")
        .env_remove("LBPROXY_ADMIN_TOKEN")
        .env_remove("LBPROXY_ADMIN_TOKEN_FILE")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run lbproxy ctl")
}

/// stdout, then stderr, of a finished command, for assertions and failure messages.
pub fn said(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses an exposition with `prometheus_client`'s parser (which refuses what Prometheus would
/// refuse); the samples come back as JSON lines.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    const PARSER: &str = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       print(json.dumps({'family': family.name, 'type': family.type, 'name': s.name, 'labels': s.labels, 'value': s.value}))\n";
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/run.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "Python's prometheus_client is missing: tests/run.sh installs it \
         (python3 -m pip install prometheus_client)"
    );
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {stderr}\n{text}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}
