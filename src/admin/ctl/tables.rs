//! `lbproxy ctl`'s tables: the admin API's JSON (`/api/status`, `/api/backends`,
//! `/api/instances`, `/api/autoscale`) as plain text for a terminal, numbers right-aligned.

use serde_json::Value;

pub(super) fn status_text(v: &Value) -> String {
    let t = &v["totals"];
    let mut out = format!(
        "lbproxy {}, pid {}, up {}, {} workers ({}), {} reloads, config {}{}\n",
        v["version"].as_str().unwrap_or("?"),
        v["pid"],
        uptime(v["uptime_s"].as_u64().unwrap_or(0)),
        v["workers"].as_array().map_or(0, Vec::len),
        v["driver"].as_str().unwrap_or("?"),
        v["reloads"],
        v["config"].as_str().unwrap_or("?"),
        if v["shutting_down"].as_bool() == Some(true) {
            ", SHUTTING DOWN"
        } else {
            ""
        }
    );
    out.push_str(&format!(
        "requests: {} total, {}/s, 5xx {}, p50 {}, p99 {}; {} open connections, {} in flight; \
         backends up {}/{}\n\n",
        t["requests"],
        rate(&t["rps"]),
        percent(&t["error_rate"]),
        ms(&t["p50_ms"]),
        ms(&t["p99_ms"]),
        t["open_connections"],
        t["in_flight"],
        t["backends_up"],
        t["backends"]
    ));
    out.push_str(&backends_table(v));
    out.push('\n');
    let mut workers = Table::new(&[
        "WORKER",
        "DRIVER",
        ">LOOP LAG",
        ">MAX (1s)",
        ">CONNECTIONS",
        ">REQUESTS",
    ]);
    for w in v["workers"].as_array().into_iter().flatten() {
        workers.row(vec![
            w["worker"].to_string(),
            w["driver"].as_str().unwrap_or("").to_owned(),
            ms(&w["loop_lag_ms"]),
            ms(&w["loop_lag_max_ms"]),
            w["open_connections"].to_string(),
            w["requests"].to_string(),
        ]);
    }
    out.push_str(&workers.render());
    out
}

pub(super) fn backends_table(v: &Value) -> String {
    let mut table = Table::new(&[
        "UPSTREAM",
        "BACKEND",
        "STATE",
        "HEALTH",
        "CIRCUIT",
        ">WEIGHT",
        ">IN-FLIGHT",
        ">REQ/S",
        ">ERRORS",
        ">P50",
        ">P99",
        ">REQUESTS",
    ]);
    let mut runtime_weights = false;
    for u in v["upstreams"].as_array().into_iter().flatten() {
        for b in u["backends"].as_array().into_iter().flatten() {
            let mut state = b["state"].as_str().unwrap_or("?").to_owned();
            let workers = b["state_workers"].as_object();
            if workers.is_some_and(|w| w.len() > 1) {
                let detail: Vec<String> = workers
                    .into_iter()
                    .flatten()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect();
                state = format!("{state} ({})", detail.join(", "));
            }
            let mut weight = b["weight"].to_string();
            if b["weight_override"].is_number() {
                weight.push('*');
                runtime_weights = true;
            }
            table.row(vec![
                u["name"].as_str().unwrap_or("").to_owned(),
                b["address"].as_str().unwrap_or("").to_owned(),
                state,
                b["health"].as_str().unwrap_or("").to_owned(),
                b["circuit"].as_str().unwrap_or("").to_owned(),
                weight,
                b["in_flight"].to_string(),
                rate(&b["rps"]),
                percent(&b["error_rate"]),
                ms(&b["p50_ms"]),
                ms(&b["p99_ms"]),
                match b["connections_total"].as_u64() {
                    Some(connections) if connections > 0 => format!("{connections} conns"),
                    _ => b["requests_total"].to_string(),
                },
            ]);
        }
    }
    let mut text = table.render();
    if runtime_weights {
        text.push_str("(weight*: set at runtime; runtime changes last until the next reload)\n");
    }
    text
}

/// What a group that discovers its backends is configured with.
pub(super) const HOW_TO_DISCOVER: &str = "to follow systemd units, give a group \
     `[upstream.NAME.discover]` with `systemd = \"api@*.service\"` (docs/config.md)";

/// `/api/instances`: one line per discovered unit (the instance as `i`, the proxy's figures for
/// it as a backend as `f`), or why there is none.
pub(super) fn instances_table(v: &Value) -> String {
    let instances = v["instances"].as_array().map_or(&[][..], Vec::as_slice);
    if instances.is_empty() {
        let discovering: Vec<String> = v["discover"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "group {} follows {} ({} bus)",
                    d["group"].as_str().unwrap_or("?"),
                    d["systemd"].as_str().unwrap_or("?"),
                    d["bus"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if discovering.is_empty() {
            return format!("no instances: no upstream group uses `discover`; {HOW_TO_DISCOVER}\n");
        }
        let when = if v["read_at_ms"].is_null() {
            "the units have not been read yet"
        } else {
            "no unit matches"
        };
        return format!("no instances: {when} ({})\n", discovering.join("; "));
    }
    let mut table = Table::new(&[
        "GROUP",
        "UNIT",
        "STATE",
        ">PID",
        ">UPTIME",
        ">RESTARTS",
        ">CPU",
        ">MEM",
        ">TASKS",
        "ADDRESS",
        "ROUTING",
        ">REQ/S",
        ">P99",
        ">ERR",
        ">INFLIGHT",
    ]);
    let mut flapping = false;
    for i in instances {
        let f = &i["backend"];
        let mut restarts = i["restarts"].to_string();
        if i["flapping"].as_bool() == Some(true) {
            restarts.push('!');
            flapping = true;
        }
        table.row(vec![
            i["group"].as_str().unwrap_or("").to_owned(),
            i["unit"].as_str().unwrap_or("").to_owned(),
            format!(
                "{}/{}",
                i["active_state"].as_str().unwrap_or("?"),
                i["sub_state"].as_str().unwrap_or("?")
            ),
            i["pid"].as_u64().map_or("-".into(), |pid| pid.to_string()),
            i["uptime_seconds"].as_u64().map_or("-".into(), uptime),
            restarts,
            i["cpu_percent"]
                .as_f64()
                .map_or("-".into(), |c| format!("{c:.1}%")),
            i["memory_bytes"].as_u64().map_or("-".into(), bytes),
            i["tasks"].as_u64().map_or("-".into(), |t| t.to_string()),
            i["address"].as_str().unwrap_or("-").to_owned(),
            i["routing"].as_str().unwrap_or("?").to_owned(),
            rate(&f["rps"]),
            ms(&f["p99_ms"]),
            percent(&f["error_rate"]),
            f["in_flight"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
        ]);
    }
    let mut text = table.render();
    if flapping {
        text.push_str("(restarts!: flapping, the unit restarted within the flapping window)\n");
    }
    text
}

/// What a group the proxy autoscales is configured with.
pub(super) const HOW_TO_AUTOSCALE: &str = "to scale a group's instances with its load, give a \
     group that discovers its units from a template (`systemd = \"api@*.service\"`), or \
     `lbproxy up`'s group, `[upstream.NAME.autoscale]` with `min` and `max` (and `metric`, \
     `target`; docs/config.md)";

/// `/api/autoscale`: one line per autoscaled group (`a`), or why there is none.
pub(super) fn autoscale_table(v: &Value) -> String {
    let groups = v["groups"].as_array().map_or(&[][..], Vec::as_slice);
    if groups.is_empty() {
        return format!(
            "no autoscaling: no upstream group has [upstream.NAME.autoscale]; {HOW_TO_AUTOSCALE}\n"
        );
    }
    let mut table = Table::new(&[
        "GROUP",
        "METRIC",
        ">SIGNAL",
        ">TARGET",
        ">CURRENT",
        ">DESIRED",
        ">MIN",
        ">MAX",
        "MODE",
        "LAST-DECISION",
    ]);
    let mut reasons = Vec::new();
    for a in groups {
        let mut current = a["current"].to_string();
        let (starting, stopping) = (
            a["starting"].as_u64().unwrap_or(0),
            a["stopping"].as_u64().unwrap_or(0),
        );
        if starting > 0 {
            current.push_str(&format!(" +{starting}"));
        }
        if stopping > 0 {
            current.push_str(&format!(" -{stopping}"));
        }
        let mut mode = a["mode"].as_str().unwrap_or("?").to_owned();
        if let Some(reason) = a["holding_reason"].as_str() {
            mode = format!("{mode} ({reason})");
        }
        let waiting = a["waiting"].as_u64().unwrap_or(0);
        if waiting > 0 {
            mode.push_str(&format!(", {waiting} waiting"));
        }
        let d = &a["last_decision"];
        let last = if d.is_object() {
            let group = a["group"].as_str().unwrap_or("?");
            reasons.push(format!("{group}: {}", d["reason"].as_str().unwrap_or("")));
            format!("{} -> {} at {}", d["from"], d["to"], clock(&d["at_ms"]))
        } else {
            "-".to_owned()
        };
        table.row(vec![
            a["group"].as_str().unwrap_or("").to_owned(),
            a["metric"].as_str().unwrap_or("-").to_owned(),
            a["signal"].as_f64().map_or("-".into(), figure),
            a["target"].as_f64().map_or("-".into(), figure),
            current,
            a["desired"].to_string(),
            a["min"].to_string(),
            a["max"].to_string(),
            mode,
            last,
        ]);
    }
    let mut text = table.render();
    if groups
        .iter()
        .any(|a| a["starting"].as_u64().unwrap_or(0) + a["stopping"].as_u64().unwrap_or(0) > 0)
    {
        text.push_str("(current +N -M: N instances starting, M stopping)\n");
    }
    for reason in reasons {
        text.push_str(&format!("last decision of {reason}\n"));
    }
    text
}

/// A signal or a target: up to two decimals, no trailing zeros (`10`, `2.5`, `0.33`).
pub(super) fn figure(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Milliseconds since the Unix epoch as the UTC time of day, `12:00:05`.
pub(super) fn clock(ms: &Value) -> String {
    ms.as_u64().map_or("?".into(), |ms| {
        let s = ms / 1000 % 86_400;
        format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
    })
}

/// Bytes in binary units: `512 B`, `50.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |r| format!("{r:.1}"))
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |m| format!("{m:.2} ms"))
}

fn uptime(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {s}s")
    }
}

/// A plain-text table: headers starting with `>` are right-aligned (numbers).
pub(super) struct Table {
    headers: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|h| match h.strip_prefix('>') {
                    Some(h) => (h.to_owned(), true),
                    None => ((*h).to_owned(), false),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(super) fn render(&self) -> String {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([h.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&self.headers)
                .zip(&widths)
                .map(|((cell, (_, right)), width)| {
                    if *right {
                        format!("{cell:>width$}")
                    } else {
                        format!("{cell:<width$}")
                    }
                })
                .collect();
            format!("{}\n", parts.join("  ").trim_end())
        };
        let mut out = line(self.headers.iter().map(|(h, _)| h.as_str()).collect());
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let mut table = Table::new(&["NAME", ">N"]);
        table.row(vec!["a".into(), "1".into()]);
        table.row(vec!["longer".into(), "100".into()]);
        assert_eq!(table.render(), "NAME      N\na         1\nlonger  100\n");
    }

    fn instances_json() -> Value {
        serde_json::to_value(crate::admin::instances::fixture::view()).unwrap()
    }

    #[test]
    fn instances_show_systemd_and_the_proxy_side_by_side() {
        let mut v = instances_json();
        v["instances"][0]["backend"] = serde_json::json!({
            "state": "up", "health": "up", "in_flight": 3, "requests_total": 40,
            "rps": 20.0, "errors_per_s": 1.0, "error_rate": 0.05, "p99_ms": 3.5,
        });
        let text = instances_table(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            5,
            "a head, three units, the flapping note:\n{text}"
        );
        let head: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            head,
            [
                "GROUP", "UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "TASKS",
                "ADDRESS", "ROUTING", "REQ/S", "P99", "ERR", "INFLIGHT"
            ]
        );
        let up: Vec<&str> = lines[1]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            up,
            [
                "api",
                "api@1.service",
                "active/running",
                "4242",
                "1h 1m",
                "1",
                "12.5%",
                "50.0 MiB",
                "7",
                "127.0.0.1:8001",
                "routed",
                "20.0",
                "3.50 ms",
                "5.0%",
                "3"
            ],
            "{text}"
        );
        let failed: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            failed,
            [
                "api",
                "api@2.service",
                "failed/failed",
                "-",
                "-",
                "5!",
                "-",
                "-",
                "-",
                "127.0.0.1:8002",
                "out",
                "-",
                "-",
                "-",
                "-"
            ],
            "{text}"
        );
        assert!(lines[3].contains("activating/start") && lines[3].contains("waiting"));
        assert!(lines[4].starts_with("(restarts!: flapping"), "{text}");
    }

    fn autoscale_json() -> Value {
        serde_json::to_value(crate::admin::autoscale::fixture::view()).unwrap()
    }

    #[test]
    fn autoscale_shows_the_signal_against_the_target_and_the_last_decision() {
        let text = autoscale_table(&autoscale_json());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "GROUP  METRIC     SIGNAL  TARGET  CURRENT  DESIRED  MIN  MAX  MODE                                     LAST-DECISION"
        );
        assert_eq!(
            lines[1],
            "api    in_flight      25      10     2 +1        5    1    8  panic                                    1 -> 2 at 11:59:50 UTC"
        );
        assert_eq!(
            lines[2],
            "batch  cpu             -      60        0        0    0    3  holding (a start is pending), 4 waiting  -"
        );
        assert_eq!(
            lines[3],
            "(current +N -M: N instances starting, M stopping)"
        );
        assert_eq!(
            lines[4],
            "last decision of api: in_flight 25.0 per instance, target 10: panic"
        );
        assert_eq!(lines.len(), 5, "{text}");
    }

    #[test]
    fn no_autoscaling_says_what_to_configure() {
        let text = autoscale_table(&serde_json::json!({"groups": []}));
        assert!(
            text.starts_with("no autoscaling: no upstream group has [upstream.NAME.autoscale]; ")
                && text.contains("`min` and `max`"),
            "{text}"
        );
    }

    #[test]
    fn figures_drop_trailing_zeros() {
        assert_eq!(figure(10.0), "10");
        assert_eq!(figure(2.5), "2.5");
        assert_eq!(figure(1.0 / 3.0), "0.33");
        assert_eq!(figure(0.0), "0");
    }

    #[test]
    fn no_instances_says_why_and_what_to_configure() {
        let mut v = instances_json();
        v["instances"] = serde_json::json!([]);
        let text = instances_table(&v);
        assert!(
            text.contains("no upstream group uses `discover`")
                && text.contains("[upstream.NAME.discover]")
                && text.contains("systemd = \"api@*.service\""),
            "{text}"
        );
        v["discover"] =
            serde_json::json!([{"group": "api", "systemd": "api@*.service", "bus": "user"}]);
        let text = instances_table(&v);
        assert_eq!(
            text,
            "no instances: no unit matches (group api follows api@*.service (user bus))\n"
        );
        v["read_at_ms"] = Value::Null;
        assert!(instances_table(&v).contains("not been read yet"));
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(50 * 1024 * 1024), "50.0 MiB");
    }

    #[test]
    fn the_runtime_weight_note_shows_only_with_a_runtime_weight() {
        let backends = |override_: Value| {
            serde_json::json!({"upstreams": [{"name": "api", "backends": [
                {"address": "127.0.0.1:8001", "weight": 1, "weight_override": Value::Null},
                {"address": "127.0.0.1:8002", "weight": 3, "weight_override": override_},
            ]}]})
        };
        let plain = backends_table(&backends(Value::Null));
        assert!(!plain.contains("weight*"), "{plain}");
        let changed = backends_table(&backends(serde_json::json!(3)));
        assert!(changed.contains("  3*"), "{changed}");
        assert!(changed.contains("(weight*: set at runtime"), "{changed}");
    }
}
