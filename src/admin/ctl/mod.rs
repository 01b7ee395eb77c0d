//! `lbproxy ctl`: the admin API from the command line — `status`, `backends`, `instances`,
//! `autoscale`, `drain`, `enable`, `weight`, `reload` — with readable tables ([`tables`]), or the API's JSON with `--json` for
//! scripts; and `lbproxy deploy` ([`deploy`]), the deployments through the same API.
//!
//! Which proxy: `--admin ADDR`, or `-c FILE` (the proxy's configuration: its `[admin]` address
//! and token), or the environment, or `127.0.0.1:9901` ([`target`] has the order). Exit status
//! 0 on success, 1 with the reason otherwise.

pub mod deploy;
mod deploy_text;
mod tables;
mod target;

pub use deploy::DeployArgs;
pub use target::{command_for, AdminTargetArgs};

use super::client::{backend_path, AdminClient, Reply};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use tables::{autoscale_table, backends_table, instances_table, status_text};

#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    #[command(flatten)]
    pub target: AdminTargetArgs,
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
    /// Every systemd unit a `discover` group follows: systemd's state, PID, uptime, restarts,
    /// CPU, memory and tasks, beside how the proxy routes to it and its req/s, p99, error rate
    /// and requests in flight. Needs a group with `[upstream.NAME.discover]`, e.g.
    /// `systemd = "api@*.service"`.
    Instances,
    /// Every autoscaled group: its metric, the signal measured against its target, the instances
    /// routed and the count the policy wants, its bounds, its mode and its last decision. Needs a
    /// group with `[upstream.NAME.autoscale]`, e.g. `min = 1`, `max = 8`.
    Autoscale,
    /// Send a backend no new requests (those in flight finish), until `enable` or the next reload.
    /// Refused for the last backend of its group that serves, unless --force.
    Drain(DrainArgs),
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
pub struct DrainArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Drain it even if no other backend of the group serves (every request then gets 503).
    #[arg(long)]
    pub force: bool,
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
    let client = client(args)?;
    let output = match &args.command {
        CtlCommand::Status => {
            let reply = client.get("/api/status")?;
            render(args.json, &reply, status_text)?
        }
        CtlCommand::Backends => {
            let reply = client.get("/api/backends")?;
            render(args.json, &reply, backends_table)?
        }
        CtlCommand::Instances => {
            let reply = client.get("/api/instances")?;
            render(args.json, &reply, instances_table)?
        }
        CtlCommand::Autoscale => {
            let reply = client.get("/api/autoscale")?;
            render(args.json, &reply, autoscale_table)?
        }
        CtlCommand::Drain(d) => {
            let action = if d.force { "drain?force=true" } else { "drain" };
            change(&client, args.json, &d.backend, action, b"")?
        }
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

/// The client for the admin server and token `args` lead to ([`target`]).
fn client(args: &CtlArgs) -> anyhow::Result<AdminClient> {
    let target = args.target.resolve()?;
    Ok(AdminClient::new(&target.address, target.token))
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
