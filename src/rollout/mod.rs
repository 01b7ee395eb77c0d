//! `lbproxy rollout`: a rolling restart of the API instances behind an upstream group, through
//! systemd and the proxy's admin API, with no failed request.
//!
//! Flow: read the group from `/api/backends` ([`group`]); refuse without active health checks
//! (nothing else can say when a restarted instance is ready); map each backend to its unit
//! ([`plan`]: `api@{n}` by default) and read each unit from systemd over D-Bus; print the plan
//! (`--dry-run` stops there). Then one backend at a time ([`step`]): check that another backend
//! is up, drain it, wait until nothing is in flight, restart it and wait for systemd's job
//! ([`instances`], the only place that acts on units, echoing each action with the `systemctl`
//! command that does the same), wait for the proxy's probes to pass again, enable it, and let
//! it settle (or finish its slow start). Any failure stops the
//! rollout with the instance drained and the command that enables it again; exit status 1.
//!
//! The proxy keeps serving throughout: a drained backend gets no new requests, the others take
//! them, and systemd's `Type=notify` restart returns once the new instance has said READY=1.

pub mod group;
pub mod instances;
pub mod plan;
pub mod step;

use crate::admin::client::AdminClient;
use crate::admin::ctl::AdminTargetArgs;
use crate::config::parse_duration_arg;
use anyhow::Context;
use clap::Args;
use instances::Instances;
use plan::{Plan, UnitRule, UnitTemplate};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use step::{Runner, StepError, Timing};

/// `--unit`'s default. A group that discovers its backends from systemd needs none: the
/// proxy's inventory (`/api/instances`) names each backend's unit.
const DEFAULT_UNIT: &str = "api@{n}";

/// `ADDR=UNIT` of `--map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub address: SocketAddr,
    pub unit: String,
}

fn map_entry(text: &str) -> Result<MapEntry, String> {
    plan::parse_map_entry(text).map(|(address, unit)| MapEntry { address, unit })
}

/// `--unit`'s help (the man page shows the same text).
const UNIT_HELP: &str = "The unit of each backend. `{n}` is the backend's position in the group, \
    from 1 (the default group 127.0.0.1:8001..8003 → api@1..api@3, as the shipped api@.service \
    maps instance N to port 8000+N); `{port}` is its port and `{port-N}` its port minus N \
    (`api@{port-8000}`: 127.0.0.1:8003 → api@3, whatever its position). A group that discovers \
    its backends from systemd ([upstream.NAME.discover]) needs no template: the proxy names each \
    backend's unit.";

/// `help` with each `{n}` shown as written. clap renders `{n}` in help text as a line break and
/// has no escape for it, so an empty style reset (`ESC[0m`) goes between `{` and `n`: clap no
/// longer sees `{n}`, a terminal shows `{n}` unchanged, and clap strips the escape where the
/// help goes to a file or a pipe, as do the man page and markdown generators (which print the
/// help's text without styles).
fn literal_braces(help: &str) -> clap::builder::StyledStr {
    help.replace("{n}", "{\x1b[0mn}").into()
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
A backend is never restarted while no other backend of the group is up. Ready again means \
`rise` passing probes of the proxy's active health checks, all made after the restart, so the \
group needs an [upstream.NAME.health] section (without one the rollout refuses: a fixed wait \
would be a guess). With `slow_start` set, an enabled backend ramps up and the rollout waits for \
the ramp to end instead of --settle.

On a failure the rollout stops, leaves that instance drained, prints what happened and the \
`lbproxy ctl enable` command that brings it back, and exits 1. Backends the configuration drains \
(drain = true) are left alone; those drained at runtime (by a stopped rollout, say) are \
restarted and enabled like the others.

Examples:
  lbproxy rollout --user --dry-run        the plan for api@1..3, changing nothing
  lbproxy rollout --user                  the user units (lbproxy systemd install --user)
  sudo lbproxy rollout                    the system units (.deb/.rpm)
  lbproxy rollout --unit 'api@{port-8000}'
                                          instance N listens on port 8000+N
  lbproxy rollout --map 10.0.0.5:8001=blue@1,10.0.0.5:8002=blue@2")]
pub struct RolloutArgs {
    /// Restart the instances through the user's service manager (`systemctl --user`), as
    /// installed by `lbproxy systemd install --user`. Without it: the system's.
    #[arg(long)]
    pub user: bool,
    #[command(flatten)]
    pub target: AdminTargetArgs,
    /// The upstream group whose backends are restarted, in the order the configuration lists
    /// them.
    #[arg(long, value_name = "NAME", default_value = "api")]
    pub group: String,
    // The help is `UNIT_HELP`, through `literal_braces`: clap turns a `{n}` in help text into a
    // line break.
    #[arg(long, value_name = "TEMPLATE", default_value = DEFAULT_UNIT, help = literal_braces(UNIT_HELP), value_parser = clap::value_parser!(UnitTemplate))]
    pub unit: UnitTemplate,
    /// Name each backend's unit instead of --unit: `ADDR=UNIT`, comma-separated or repeated.
    /// Backends left out are not restarted.
    #[arg(long, value_name = "ADDR=UNIT", value_delimiter = ',', value_parser = map_entry, conflicts_with = "unit")]
    pub map: Vec<MapEntry>,
    /// How long a drained backend's requests in flight may take to finish before the rollout
    /// stops (it stays drained).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_arg)]
    pub drain_timeout: Duration,
    /// How long a restarted instance may take to pass the proxy's health checks.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_arg)]
    pub wait_ready: Duration,
    /// How long an enabled backend must stay up before the next one is drained. With
    /// `slow_start` set for the group, the rollout waits for the slow start to end instead.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration_arg)]
    pub settle: Duration,
    /// Print the plan (units, their state, the commands) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `lbproxy rollout`; an `Err` is a refusal or a failure, already explained in full.
pub fn run(args: &RolloutArgs) -> anyhow::Result<()> {
    let target = args.target.resolve()?;
    let address = target.address;
    let client = AdminClient::new(&address, target.token);
    let group = group::fetch(&client, &args.group)?;
    let Some(health) = &group.health_check else {
        anyhow::bail!("{}", no_health_checks(&args.group));
    };
    let instances = Instances::connect(args.user)?;
    let discovered = group::discovered_units(&client, &args.group);
    let default_unit: UnitTemplate = DEFAULT_UNIT.parse().map_err(anyhow::Error::msg)?;
    let rule = if args.map.is_empty() && !discovered.is_empty() && args.unit == default_unit {
        // The group discovers its backends from systemd: the proxy knows each one's unit.
        println!(
            "units: as the proxy discovered them ({} of upstream \"{}\")",
            discovered.len(),
            args.group
        );
        UnitRule::Map(discovered)
    } else if args.map.is_empty() {
        UnitRule::Template(args.unit.clone())
    } else {
        UnitRule::Map(
            args.map
                .iter()
                .map(|m| (m.address, m.unit.clone()))
                .collect(),
        )
    };
    let plan = plan::plan(&args.group, &group.backends, &rule).map_err(anyhow::Error::msg)?;

    println!(
        "lbproxy rollout: upstream \"{}\" through the admin server at {}: {} of {} backends, one \
         at a time",
        args.group,
        client.address(),
        plan.steps.len(),
        group.backends.len()
    );
    let mut pids = Vec::new();
    for step in &plan.steps {
        let unit = instances.unit_info(&step.unit)?;
        if unit.load_state != "loaded" {
            anyhow::bail!(
                "unit {} (for backend {}) is {}: {} does not know it. Check --unit/--map, and \
                 `{} list-units '{}'`{}",
                step.unit,
                step.address,
                unit.load_state,
                instances.command_name(),
                instances.command_name(),
                unit_pattern(&step.unit),
                if args.user {
                    ""
                } else {
                    " (user units need --user)"
                }
            );
        }
        pids.push(unit);
    }
    let total = plan.steps.len();
    println!("plan:");
    for ((n, step), unit) in plan.steps.iter().enumerate().zip(&pids) {
        let backend = group.backend(step.address)?;
        println!(
            "  [{}/{total}] {} → {}: unit {}; backend {}, {} in flight",
            n + 1,
            step.address,
            step.unit,
            instances::describe(unit),
            backend.state,
            backend.busy()
        );
    }
    for (address, why) in &plan.left_alone {
        println!("  left alone: {address} ({why})");
    }
    println!(
        "  each: drain → nothing in flight (at most {}) → {} restart UNIT → health checks pass \
         ({}; at most {}) → enable → {}",
        fmt(args.drain_timeout),
        instances.command_name(),
        health.describe(),
        fmt(args.wait_ready),
        if group.slow_start_ms > 0 {
            format!("slow start ({})", group::millis(group.slow_start_ms))
        } else {
            format!("settle {}", fmt(args.settle))
        }
    );
    if args.dry_run {
        if group.backends.iter().filter(|b| b.is_usable()).count() < 2 {
            println!(
                "note: fewer than two backends are up now; the rollout would refuse to restart \
                 the last one that is"
            );
        }
        println!("dry run: nothing changed");
        return Ok(());
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .context("installing the SIGINT/SIGTERM handlers")?;
    }
    let runner = Runner {
        client: &client,
        instances,
        group: &args.group,
        timing: Timing {
            drain_timeout: args.drain_timeout,
            wait_ready: args.wait_ready,
            settle: args.settle,
        },
        interrupted: &interrupted,
    };
    let started = Instant::now();
    for (n, (step, unit)) in plan.steps.iter().zip(&pids).enumerate() {
        let label = format!("[{}/{total}] {} {}", n + 1, step.unit, step.address);
        if let Err(error) = runner.run(step, &label, unit.main_pid) {
            anyhow::bail!("{}", stopped(args, &plan, n, &label, error, &address));
        }
    }
    let units: Vec<&str> = plan.steps.iter().map(|s| s.unit.as_str()).collect();
    println!(
        "lbproxy rollout: restarted {} in {:.1}s",
        units.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The refusal without a `[health]` section, with the section to add.
fn no_health_checks(group: &str) -> String {
    format!(
        "upstream \"{group}\" has no active health checks, so nothing can tell when a restarted \
         instance is ready again (waiting a fixed time would be a guess). Add to the proxy's \
         configuration:\n\n  [upstream.{group}.health]\n  path = \"/health/ready\"   # \
         answers 2xx once the instance serves\n  interval = \"2s\"\n\nthen reload the proxy \
         (`systemctl --user reload lbproxy`, or `lbproxy ctl reload`) and run the rollout again"
    )
}

/// What a stopped rollout says: what failed, what state it left, and how to undo it.
fn stopped(
    args: &RolloutArgs,
    plan: &Plan,
    failed_at: usize,
    label: &str,
    error: StepError,
    address: &str,
) -> String {
    let step = &plan.steps[failed_at];
    let done: Vec<&str> = plan.steps[..failed_at]
        .iter()
        .map(|s| s.unit.as_str())
        .collect();
    let not_started: Vec<&str> = plan.steps[failed_at + 1..]
        .iter()
        .map(|s| s.unit.as_str())
        .collect();
    let mut text = match error {
        StepError::Refused(why) => format!(
            "rollout stopped at {label}: {why}\nnothing changed for {}",
            step.unit
        ),
        StepError::Failed { what, hint } => {
            let ctl = format!("lbproxy ctl{}", args.target.echo(address));
            let mut text = format!(
                "rollout stopped at {label}: {what}\n{} stays drained (no new requests). Once it \
                 is fixed, enable it with:\n  {ctl} enable {} {}",
                step.unit, args.group, step.address
            );
            if let Some(hint) = hint {
                text.push_str(&format!("\n{hint}"));
            }
            text
        }
    };
    text.push_str(&format!(
        "\nrestarted: {}; not started: {}",
        list_or_none(&done),
        list_or_none(&not_started)
    ));
    text
}

fn list_or_none(units: &[&str]) -> String {
    if units.is_empty() {
        "none".to_owned()
    } else {
        units.join(", ")
    }
}

/// `api@*` for `api@3`: what `list-units` should be asked for.
fn unit_pattern(unit: &str) -> String {
    match unit.split_once('@') {
        Some((prefix, _)) => format!("{prefix}@*"),
        None => unit.to_owned(),
    }
}

/// `60s`, `500ms`, `1.5s` (as the options are written).
fn fmt(duration: Duration) -> String {
    format!("{duration:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        rollout: RolloutArgs,
    }

    fn parse(args: &[&str]) -> Result<RolloutArgs, clap::Error> {
        Cli::try_parse_from([&["rollout"], args].concat()).map(|c| c.rollout)
    }

    #[test]
    fn defaults_are_the_shipped_units_and_the_default_group() {
        let args = parse(&["--user"]).unwrap();
        assert!(args.user && !args.dry_run);
        assert_eq!(args.group, "api");
        assert_eq!(args.unit, "api@{n}".parse().unwrap());
        assert!(args.map.is_empty());
        assert_eq!(args.wait_ready, Duration::from_secs(60));
        assert_eq!(args.drain_timeout, Duration::from_secs(60));
        assert_eq!(args.settle, Duration::from_secs(2));
    }

    #[test]
    fn options_parse_and_conflicts_are_refused() {
        let args = parse(&[
            "--map",
            "127.0.0.1:8001=a@1,127.0.0.1:8002=a@2",
            "--map",
            "127.0.0.1:8003=a@3",
            "--settle",
            "500ms",
            "--wait-ready",
            "1m",
        ])
        .unwrap();
        assert_eq!(args.map.len(), 3);
        assert_eq!(args.map[2].unit, "a@3");
        assert_eq!(args.settle, Duration::from_millis(500));
        assert_eq!(args.wait_ready, Duration::from_secs(60));
        assert!(parse(&["--unit", "x@{n}", "--map", "127.0.0.1:8001=a@1"]).is_err());
        let error = parse(&["--unit", "x@{i}"]).unwrap_err().to_string();
        assert!(error.contains("unknown placeholder {i}"), "{error}");
        let error = parse(&["--settle", "2"]).unwrap_err().to_string();
        assert!(error.contains("needs a unit"), "{error}");
    }

    #[test]
    fn the_refusal_without_health_checks_shows_the_section_to_add() {
        let text = no_health_checks("web");
        assert!(text.contains("[upstream.web.health]"), "{text}");
        assert!(text.contains("path = \"/health/ready\""), "{text}");
    }

    #[test]
    fn a_failed_step_says_what_stays_drained_and_how_to_undo_it() {
        let args = parse(&["--user", "--admin", "127.0.0.1:9911"]).unwrap();
        let backends: Vec<group::BackendStatus> = (1..=3)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "address": format!("127.0.0.1:800{i}"), "state": "up", "health": "up",
                    "drain_override": null, "in_flight": 0, "open_connections": 0,
                    "ramp_percent": 100.0, "probes": null
                }))
                .unwrap()
            })
            .collect();
        let plan = plan::plan("api", &backends, &UnitRule::Template(args.unit.clone())).unwrap();
        let failed = StepError::Failed {
            what: "not healthy".into(),
            hint: Some("see `systemctl --user status api@2`".into()),
        };
        let text = stopped(&args, &plan, 1, "[2/3] api@2", failed, "127.0.0.1:9911");
        assert!(
            text.contains("lbproxy ctl --admin 127.0.0.1:9911 enable api 127.0.0.1:8002"),
            "{text}"
        );
        assert!(text.contains("api@2 stays drained"), "{text}");
        assert!(
            text.contains("restarted: api@1; not started: api@3"),
            "{text}"
        );
        let refused = StepError::Refused("no other backend is up".into());
        let text = stopped(&args, &plan, 0, "[1/3] api@1", refused, "127.0.0.1:9911");
        assert!(text.contains("nothing changed for api@1"), "{text}");
        assert!(!text.contains("ctl"), "{text}");
        assert_eq!(unit_pattern("api@3"), "api@*");
    }
}
