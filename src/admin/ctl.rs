//! `lbproxy ctl`: the admin API from the command line — `status`, `backends`, `drain`, `enable`,
//! `weight`, `reload` — with readable tables, or the API's JSON with `--json` for scripts.
//!
//! The admin address comes from `--admin`, else `LBPROXY_ADMIN`, else `127.0.0.1:9901`; the
//! token from `--token-file`, else `LBPROXY_ADMIN_TOKEN` (the token itself), else
//! `LBPROXY_ADMIN_TOKEN_FILE`. Exit status 0 on success, 1 with the reason otherwise.

use super::client::{backend_path, AdminClient, Reply};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The admin address when neither `--admin` nor `LBPROXY_ADMIN` says otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    /// The admin server, HOST:PORT. Default: $LBPROXY_ADMIN, else 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// A file holding the admin token. Default: $LBPROXY_ADMIN_TOKEN (the token itself), else
    /// the file named by $LBPROXY_ADMIN_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// The proxy at a glance: totals, every backend, every worker.
    Status,
    /// Every backend of every upstream group: state, health, circuit, weight, rates, latency.
    Backends,
    /// Send a backend no new requests (those in flight finish), until `enable` or the next reload.
    Drain(BackendArgs),
    /// Let a backend take requests again (also one the configuration drains), until the next
    /// reload.
    Enable(BackendArgs),
    /// Give a backend another weight, until the next reload.
    Weight(WeightArgs),
    /// Reload the configuration (as SIGHUP would) and wait until every worker serves it.
    Reload,
}

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// The upstream group, e.g. `api`.
    pub upstream: String,
    /// The backend's IP:PORT, e.g. `127.0.0.1:8001`.
    pub backend: String,
}

#[derive(Debug, Clone, Args)]
pub struct WeightArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// The new weight (1 or more).
    pub weight: u32,
}

/// Runs `lbproxy ctl`, printing to stdout.
pub fn run(args: &CtlArgs) -> anyhow::Result<()> {
    let address = admin_address(args.admin.as_deref());
    let client = AdminClient::new(&address, admin_token(args.token_file.as_deref())?);
    let output = match &args.command {
        CtlCommand::Status => {
            let reply = client.get("/api/status")?;
            render(args.json, &reply, status_text)?
        }
        CtlCommand::Backends => {
            let reply = client.get("/api/backends")?;
            render(args.json, &reply, backends_table)?
        }
        CtlCommand::Drain(b) => change(&client, args.json, b, "drain", b"")?,
        CtlCommand::Enable(b) => change(&client, args.json, b, "enable", b"")?,
        CtlCommand::Weight(w) => {
            let body = w.weight.to_string();
            change(&client, args.json, &w.backend, "weight", body.as_bytes())?
        }
        CtlCommand::Reload => {
            let reply = client.post("/api/reload", b"")?;
            render(args.json, &reply, |v| {
                let mut text = format!("reload {} applied", v["reload"]);
                for warning in v["warnings"].as_array().into_iter().flatten() {
                    text.push_str(&format!("\nwarning: {}", warning.as_str().unwrap_or("")));
                }
                text
            })?
        }
    };
    println!("{}", output.trim_end());
    Ok(())
}

/// The admin address: `flag` (`--admin`), else `$LBPROXY_ADMIN`, else [`DEFAULT_ADMIN`].
pub fn admin_address(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| {
            std::env::var("LBPROXY_ADMIN")
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ADMIN.to_owned())
}

/// The admin token: read from `token_file` (`--token-file`), else `$LBPROXY_ADMIN_TOKEN`, else
/// read from `$LBPROXY_ADMIN_TOKEN_FILE`; `None` without any.
pub fn admin_token(token_file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let from_file = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("reading the admin token from {}", path.display()))
    };
    if let Some(path) = token_file {
        return from_file(path).map(Some);
    }
    if let Some(token) = std::env::var("LBPROXY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    match std::env::var_os("LBPROXY_ADMIN_TOKEN_FILE").filter(|f| !f.is_empty()) {
        Some(path) => from_file(Path::new(&path)).map(Some),
        None => Ok(None),
    }
}

fn change(
    client: &AdminClient,
    json: bool,
    backend: &BackendArgs,
    action: &str,
    body: &[u8],
) -> anyhow::Result<String> {
    let reply = client.post(
        &backend_path(&backend.upstream, &backend.backend, action),
        body,
    )?;
    render(json, &reply, |v| {
        let mut text = format!(
            "{}/{}: {} on {} workers ({}) until the next reload",
            v["upstream"].as_str().unwrap_or(""),
            v["backend"].as_str().unwrap_or(""),
            v["change"].as_str().unwrap_or(""),
            v["workers"],
            v["detail"].as_str().unwrap_or("")
        );
        if let Some(note) = v["note"].as_str() {
            text.push_str(&format!("\nnote: {note}"));
        }
        text
    })
}

fn render(json: bool, reply: &Reply, text: impl Fn(&Value) -> String) -> anyhow::Result<String> {
    if json {
        return Ok(String::from_utf8_lossy(&reply.body).into_owned());
    }
    let value: Value = serde_json::from_slice(&reply.body)
        .context("the admin server's answer is not JSON (is ADDR an lbproxy admin server?)")?;
    Ok(text(&value))
}

fn status_text(v: &Value) -> String {
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

fn backends_table(v: &Value) -> String {
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
    text.push_str("(weight*: set at runtime; runtime changes last until the next reload)\n");
    text
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
struct Table {
    headers: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
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

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
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
}
