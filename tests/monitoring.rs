//! packaging/monitoring/ against the real thing: Prometheus (Debian's `prometheus` package,
//! installed by tests/run.sh) scrapes a proxy under traffic with the shipped scrape config, and
//! every query of the Grafana dashboard and of the README runs on it without error, the main ones
//! with data, and every alerting rule evaluates without error; `promtool check metrics` finds
//! nothing to say about the exposition; the README's table lists exactly the metric families
//! `/metrics` has. The alerting rules (alerts.yml) pass `promtool check rules` and their unit
//! tests (`promtool test rules alerts.test.yml`: each alert fires, and stays quiet, where it
//! should), and each is in the README's table of alerts. Without promtool these tests fail,
//! naming the package to install; they never skip.

mod common;

use common::admin;
use common::backend::{RawBackend, Reply};
use common::client::{self, Conn};
use common::{config, free_port, wait_until, Proxy};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/monitoring")
}

fn tool(name: &str) -> &str {
    common::require_tool(name, "apt-get install prometheus")
}

/// `lbproxy_…` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("lbproxy_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

/// Every query of the dashboard, with its variables set to match everything.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["gridPos"]["w"].is_u64(), "{panel}");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let title = panel["title"].as_str().unwrap().to_owned();
            queries.push((title, expr.replace("$job", ".*").replace("$instance", ".*")));
        }
    }
    queries
}

/// Every query of the README's ```promql blocks (continuation lines start with spaces).
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(monitoring_dir().join("README.md")).unwrap();
    let mut queries: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        match line {
            "```promql" => in_block = true,
            "```" => in_block = false,
            _ if in_block && line.starts_with(' ') => {
                queries.last_mut().unwrap().push_str(line);
            }
            _ if in_block => queries.push(line.to_owned()),
            _ => {}
        }
    }
    queries
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus with the shipped scrape config and alerting rules, its target set to `admin`
    /// and its intervals shortened for the test.
    fn start(admin: SocketAddr) -> Prometheus {
        let shipped = std::fs::read_to_string(monitoring_dir().join("prometheus.yml")).unwrap();
        assert!(shipped.contains("[\"127.0.0.1:9901\"]"), "{shipped}");
        assert!(shipped.contains("\n  - alerts.yml\n"), "{shipped}");
        let config = shipped
            .replace("[\"127.0.0.1:9901\"]", &format!("[\"{admin}\"]"))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("scrape_timeout: 5s", "scrape_timeout: 1s");
        let dir = tempfile::tempdir().unwrap();
        // rule_files names alerts.yml beside the configuration.
        std::fs::copy(
            monitoring_dir().join("alerts.yml"),
            dir.path().join("alerts.yml"),
        )
        .unwrap();
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let addr = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_until(Duration::from_secs(30), "Prometheus to be ready", || {
            client::try_request(
                addr,
                b"GET /-/ready HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            )
            .is_ok_and(|r| r.status == 200)
        });
        prometheus
    }

    /// An instant query: its `data.result` (panics unless Prometheus says `success`).
    fn query(&self, query: &str) -> Vec<serde_json::Value> {
        let raw = format!(
            "GET /api/v1/query?query={} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            encode(query)
        );
        let response = client::request(self.addr, raw.as_bytes());
        let answer: serde_json::Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| panic!("{query}: {}", response.text()));
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `GET /api/v1/rules`: the rule groups as Prometheus loaded and last evaluated them.
    fn rule_groups(&self) -> Vec<serde_json::Value> {
        let raw = b"GET /api/v1/rules HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
        let response = client::request(self.addr, raw);
        let answer: serde_json::Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| panic!("/api/v1/rules: {}", response.text()));
        assert_eq!(answer["status"], "success", "{answer}");
        answer["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value of a query with one series, if it has one.
    fn value(&self, query: &str) -> Option<f64> {
        let result = self.query(query);
        let value = result.first()?["value"][1].as_str()?.parse().ok()?;
        Some(value)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_proxy_and_every_dashboard_query_runs() {
    let ok = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let failing = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ));
    let proxy = Proxy::start(&config(
        "legacy",
        &[ok.addr, failing.addr],
        "[upstream.api.outlier]\nconsecutive_failures = 0\n",
    ));
    let prometheus = Prometheus::start(proxy.admin_addr());
    wait_until(
        Duration::from_secs(30),
        "Prometheus to scrape lbproxy",
        || prometheus.value("up{job=\"lbproxy\"}") == Some(1.0),
    );

    // Traffic across several scrapes, so that rate() has points to work with.
    let mut sent = 0;
    let mut conn = Conn::open(proxy.addr);
    let mut scraped = 0.0;
    wait_until(
        Duration::from_secs(60),
        "three scrapes with traffic",
        || {
            for _ in 0..20 {
                conn.send(b"GET / HTTP/1.1\r\nHost: monitoring.test\r\n\r\n");
                conn.read_response("GET").unwrap();
                sent += 1;
            }
            scraped = prometheus
                .value("count_over_time(lbproxy_reloads_total[1m])")
                .unwrap_or(0.0);
            scraped >= 3.0
        },
    );
    wait_until(
        Duration::from_secs(30),
        "Prometheus to see every request",
        || prometheus.value("sum(lbproxy_listener_requests_total)") == Some(f64::from(sent)),
    );

    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for (title, query) in &queries {
        prometheus.query(query);
        assert!(!title.is_empty());
    }
    for query in readme_queries() {
        prometheus.query(&query);
    }
    // The panels that matter most show data.
    let rate = "sum by (upstream, code) (rate(lbproxy_upstream_requests_total[1m]))";
    let series = prometheus.query(rate);
    let codes: BTreeSet<&str> = series
        .iter()
        .filter(|s| s["value"][1].as_str() != Some("0"))
        .filter_map(|s| s["metric"]["code"].as_str())
        .collect();
    assert_eq!(codes, BTreeSet::from(["2xx", "5xx"]), "{series:?}");
    let p99 = prometheus
        .value("histogram_quantile(0.99, sum by (le, upstream) (rate(lbproxy_upstream_request_duration_seconds_bucket[1m])))")
        .expect("a p99");
    assert!(p99 > 0.0 && p99 <= 10.0, "{p99}");
    let error_share = prometheus
        .value(
            "sum by (upstream) (rate(lbproxy_upstream_requests_total{code=\"5xx\"}[1m])) \
             / clamp_min(sum by (upstream) (rate(lbproxy_upstream_requests_total[1m])), 1e-9)",
        )
        .expect("an error rate");
    assert!(
        error_share > 0.2 && error_share < 0.8,
        "about half fail: {error_share}"
    );
    assert_eq!(prometheus.value("sum(lbproxy_backend_up)"), Some(2.0));

    // The alerting rules loaded, and each evaluates on the real metrics without an error.
    let alerts = alert_names();
    wait_until(
        Duration::from_secs(30),
        "Prometheus to evaluate every alerting rule",
        || {
            let groups = prometheus.rule_groups();
            let rules = groups
                .iter()
                .filter(|g| g["name"] == "lbproxy")
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default());
            let evaluated = rules
                .filter(|r| {
                    !r["lastEvaluation"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("0001-")
                })
                .inspect(|r| assert_eq!(r["health"], "ok", "{r}"))
                .count();
            evaluated == alerts.len()
        },
    );
}

#[test]
fn promtool_finds_nothing_to_say_and_the_readme_lists_every_family() {
    let api = RawBackend::start(Reply::Fixed(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&config("legacy", &[api.addr], ""));
    assert_eq!(client::get(proxy.addr, "/").status, 204);
    let exposition = admin::get(proxy.admin_addr(), "/metrics", None).text();

    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );

    let families: BTreeMap<String, String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect();
    let readme = std::fs::read_to_string(monitoring_dir().join("README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| name.starts_with("lbproxy_"))
        .map(str::to_owned)
        .collect();
    let exported: BTreeSet<String> = families.keys().cloned().collect();
    assert_eq!(documented, exported, "README.md's table lists every family");
    // Every name the README and the dashboard use is a family or a histogram's series.
    let is_exported = |name: &str| {
        families.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| families.get(base).is_some_and(|k| k == "histogram"))
            })
    };
    let mut used = metric_names(&readme);
    for (_, query) in dashboard_queries() {
        used.extend(metric_names(&query));
    }
    for name in used {
        assert!(
            is_exported(&name),
            "{name} is used but /metrics has no such series"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Alerting rules: alerts.yml and its unit tests, alerts.test.yml
// ---------------------------------------------------------------------------------------------

/// The `alert:` names of alerts.yml, in order.
fn alert_names() -> Vec<String> {
    let rules = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert: "))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// `promtool ARGS` in packaging/monitoring/: its output, after asserting it succeeded.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}:\n{said}", args.join(" "));
    said
}

#[test]
fn promtool_checks_the_alerting_rules_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    let alerts = alert_names();
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{checked}"
    );
    let tested = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&["check", "config", "prometheus.yml"]);
}

/// Each alert has a test where it fires (expected alerts listed) and one where it stays quiet
/// (`exp_alerts: []`), a `for:`, a severity and both annotations; the README's table of alerts
/// lists it; every metric it uses is one `/metrics` has (the README's table of metrics, which
/// the test above holds to the exposition).
#[test]
fn every_alert_is_tested_both_ways_documented_and_on_real_metrics() {
    let alerts = alert_names();
    for expected in [
        "LbproxyUpstreamErrorRatioHigh",
        "LbproxyUpstreamLatencyP99High",
        "LbproxyBackendDown",
        "LbproxyDeploymentAborted",
        "LbproxyRestarted",
    ] {
        assert!(
            alerts.iter().any(|a| a == expected),
            "{expected}: {alerts:?}"
        );
    }

    let rules = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    let blocks: Vec<&str> = rules.split("      - alert: ").skip(1).collect();
    assert_eq!(blocks.len(), alerts.len(), "one block per rule");
    for block in &blocks {
        let name = block.lines().next().unwrap();
        for needed in [
            "\n        for: ",
            "\n          severity: ",
            "\n          summary: ",
            "\n          description: ",
        ] {
            assert!(block.contains(needed), "{name} lacks {needed:?}");
        }
    }

    // Per alert: (fires somewhere, stays quiet somewhere).
    let tests = std::fs::read_to_string(monitoring_dir().join("alerts.test.yml")).unwrap();
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname: ") {
            current = Some(name.to_owned());
        } else if let (Some(name), Some(expected)) = (&current, line.strip_prefix("exp_alerts:")) {
            let entry = seen.entry(name.clone()).or_default();
            if expected.trim() == "[]" {
                entry.1 = true;
            } else {
                entry.0 = true;
            }
        }
    }
    for alert in &alerts {
        assert_eq!(
            seen.get(alert),
            Some(&(true, true)),
            "{alert}: alerts.test.yml must make it fire and keep it quiet"
        );
    }

    let readme = std::fs::read_to_string(monitoring_dir().join("README.md")).unwrap();
    for alert in &alerts {
        assert!(
            readme.contains(&format!("| `{alert}` |")),
            "the README's table of alerts lacks {alert}"
        );
    }

    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `lbproxy_"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("lbproxy_{name}"))
        .collect();
    for name in metric_names(&rules) {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| documented.contains(*base))
            .unwrap_or(&name);
        assert!(
            documented.contains(family),
            "alerts.yml uses {name}, which /metrics does not have"
        );
    }
}
