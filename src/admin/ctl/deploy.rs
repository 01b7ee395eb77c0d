//! `lbproxy deploy`: progressive delivery of a group's systemd instances through the admin API
//! — `start` (a spec from a TOML file and flags; `--wait` follows it to its end), `status`,
//! `promote`, `abort`, `rollback`, `history`.
//!
//! Flow: `start` reads the spec ([`crate::deploy::spec_file`]: the file, then each flag over
//! it), checks its values ([`check_spec`]: a mistake is named with the file before anything is
//! sent) and posts its JSON to `POST /api/deploy`; the proxy checks it against its running
//! configuration and queues it for its deploy controller, which drives it from then on: this
//! command may end, or `--wait` polls `GET /api/deploy` every 500 ms and prints each decision
//! until the deployment ends (exit 0 when promoted, 1 when aborted or rolled back). The proxy
//! is found as `lbproxy ctl` finds it ([`AdminTargetArgs`]).

use super::deploy_text::{decision_line, from, history_table, new_decisions, status_text};
use super::AdminTargetArgs;
use crate::admin::client::{AdminClient, ClientError, Reply};
use crate::admin::deploy::DeployOverview;
use crate::config::{parse_duration_arg, HashKey};
use crate::deploy::record::{Decision, Deployment, Outcome};
use crate::deploy::spec::{hash_key, Strategy};
use crate::deploy::spec_check::check_spec;
use crate::deploy::spec_file::{parse_strategy, read, SpecDraft};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(500);
/// How long `--wait` gives the deploy controller to take the deployment up.
const TAKEN_WITHIN: Duration = Duration::from_secs(60);
/// How long `--wait` keeps asking a proxy that does not answer (a restart resumes deployments).
const UNREACHABLE_FOR: Duration = Duration::from_secs(60);

/// A spec with every key, its default and its meaning (as `deploy::spec` documents it).
const SPEC_EXAMPLE: &str =
    "A spec with every key (all but upstream and version have the default shown):

  upstream = \"api\"              # a group with [upstream.api.discover] systemd = \"api@*.service\"
  version = \"v2\"                # its name: the journal, the history, LBPROXY_VERSION
  strategy = \"canary\"           # or \"blue-green\"
  [environment]                 # the new version's environment file, beside LBPROXY_VERSION
  API_VERSION = \"v2\"
  [canary]
  instances = 1                 # canary instances started beside the old ones
  steps = [5, 25, 50, 100]      # percent of the clients, one step per interval
  interval = \"30s\"
  key = \"client_ip\"             # or \"header:x-user\", \"cookie:session\"
  [analysis]                    # canary against stable over each step's window
  min_requests = 50             # fewer on either side: hold (never promote on silence)
  max_error_ratio = 0.05        # canary's 5xx and failed tries over its requests
  max_error_ratio_increase = 0.02   # ... minus stable's
  max_p99_ms = 1000
  max_p99_ratio = 1.5           # canary's p99 over stable's
  failure_limit = 2             # failed analyses in a row that abort
  [blue_green]
  keep_blue = \"5m\"              # the old instances run this long after the switch";

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: AdminTargetArgs,
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeployCommand {
    /// Start deploying a new version of a group's instances: a canary (new instances beside the
    /// old, a rising share of the clients, each step judged against the old version) or
    /// blue-green (every client at once, the old instances kept running for a while).
    ///
    /// The group must follow a template's systemd units (`[upstream.NAME.discover]` with
    /// `systemd = "api@*.service"`) and have health checks. The spec is a TOML file (`upstream`,
    /// `version`, `strategy`, `[environment]`, `[canary]`, `[analysis]`, `[blue_green]`); the
    /// flags override it, and without a file --upstream and --version are enough (the rest
    /// takes its defaults).
    #[command(after_long_help = SPEC_EXAMPLE)]
    Start(StartArgs),
    /// The deployment in progress (or the last one): its phase, step and weight, its old and
    /// new instances, the last analysis's checks against their limits, its last decisions.
    Status(JsonArgs),
    /// Canary: skip the remaining steps and promote the new version now.
    Promote,
    /// Stop the deployment in progress: every client back to the old version, the new
    /// version's instances stopped.
    Abort(ReasonArgs),
    /// Go back to the old version: blue-green, switched: back to blue at once; canary: as
    /// abort.
    Rollback(ReasonArgs),
    /// The ended deployments the proxy keeps (the last 50), oldest first.
    History(JsonArgs),
}

#[derive(Debug, Clone, Args)]
pub struct JsonArgs {
    /// Print the API's JSON instead of text (`history`: every deployment in full).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReasonArgs {
    /// Why, for the journal and the history. Default: "… by the operator".
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct StartArgs {
    /// The deployment spec, a TOML file (every key is shown below, with --help).
    #[arg(value_name = "SPEC.toml")]
    pub spec: Option<PathBuf>,
    /// The upstream group to deploy (`upstream`).
    #[arg(long, value_name = "GROUP")]
    pub upstream: Option<String>,
    /// The new version's name (`version`): letters, digits, `.`, `_`, `-`.
    #[arg(long, value_name = "NAME")]
    pub version: Option<String>,
    /// `canary` or `blue-green` (`strategy`). Default canary.
    #[arg(long, value_name = "STRATEGY", value_parser = parse_strategy)]
    pub strategy: Option<Strategy>,
    /// A variable of the new version's environment file (`[environment]`), added to the
    /// file's; repeat it for more. (The proxy's own `--env NAME` goes before `start`.)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE", value_parser = env_pair)]
    pub environment: Vec<(String, String)>,
    /// Canary instances started beside the old ones (`canary.instances`). Default 1.
    #[arg(long, value_name = "N")]
    pub instances: Option<u32>,
    /// The canary's share of the clients at each step, in percent (`canary.steps`). Default
    /// 5,25,50,100.
    #[arg(long, value_name = "PERCENT,…", value_delimiter = ',')]
    pub steps: Option<Vec<f64>>,
    /// How long each step lasts, its analysis window (`canary.interval`). Default 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub interval: Option<Duration>,
    /// What a client is recognized by for the split: `client_ip`, `header:NAME`,
    /// `cookie:NAME` (`canary.key`). Default client_ip.
    #[arg(long, value_name = "KEY", value_parser = hash_key::from_text)]
    pub key: Option<HashKey>,
    /// Blue-green: how long the old instances keep running after the switch
    /// (`blue_green.keep_blue`). Default 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub keep_blue: Option<Duration>,
    /// Follow the deployment to its end, a line per decision; exit 0 when promoted, 1 when
    /// aborted or rolled back. Interrupting it leaves the deployment running.
    #[arg(long)]
    pub wait: bool,
}

/// Runs `lbproxy deploy`, printing to stdout.
pub fn run(args: &DeployArgs) -> anyhow::Result<()> {
    let target = args.target.resolve()?;
    let client = AdminClient::new(&target.address, target.token);
    let again = format!("lbproxy deploy{}", args.target.echo(&target.address));
    match &args.command {
        DeployCommand::Start(start) => run_start(&client, start, &again),
        DeployCommand::Status(json) => {
            let reply = client.get("/api/deploy")?;
            if json.json {
                return print_raw(&reply);
            }
            print(&status_text(&typed(&reply)?));
            Ok(())
        }
        DeployCommand::History(json) => {
            if json.json {
                return print_raw(&client.get("/api/deploy/history")?);
            }
            let overview = typed(&client.get("/api/deploy")?)?;
            print(&history_table(&overview.history));
            Ok(())
        }
        DeployCommand::Promote => {
            let answer = command(&client, "promote", None)?;
            print(&format!(
                "deployment {} will be promoted (on the deploy controller's next tick); \
                 `{again} status` follows it",
                answer["id"]
            ));
            Ok(())
        }
        DeployCommand::Abort(why) | DeployCommand::Rollback(why) => {
            let action = match &args.command {
                DeployCommand::Abort(_) => "abort",
                _ => "rollback",
            };
            let answer = command(&client, action, why.reason.as_deref())?;
            let done = if action == "abort" {
                "aborted"
            } else {
                "rolled back"
            };
            print(&format!(
                "deployment {} will be {done}: {} (on the deploy controller's next tick); \
                 `{again} status` follows it",
                answer["id"],
                answer["reason"].as_str().unwrap_or("")
            ));
            Ok(())
        }
    }
}

fn run_start(client: &AdminClient, args: &StartArgs, again: &str) -> anyhow::Result<()> {
    let (mut draft, source) = match &args.spec {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the deployment spec {name}"))?;
            (read(&text, &name).map_err(|e| problems(&name, &e))?, name)
        }
        None => (SpecDraft::default(), "the command line".to_owned()),
    };
    args.apply(&mut draft);
    let spec = draft.finish(&source).map_err(|e| problems(&source, &e))?;
    let errors = check_spec(&spec, &source);
    if !errors.is_empty() {
        return Err(problems(&source, &errors));
    }
    let body = serde_json::to_vec(&spec).context("encoding the spec")?;
    let reply = match client.post("/api/deploy", &body) {
        Ok(reply) => reply,
        Err(ClientError::Refused {
            status: 400,
            message,
        }) => bail!("the proxy refused the deployment:\n\n{message}"),
        Err(e) => return Err(e.into()),
    };
    let answer: serde_json::Value =
        serde_json::from_slice(&reply.body).context("the admin server's answer is not JSON")?;
    let id = answer["id"]
        .as_u64()
        .context("the answer has no deployment id")?;
    println!(
        "deployment {id} accepted: {} to {} ({})",
        spec.upstream,
        spec.version,
        spec.strategy.as_str()
    );
    if !args.wait {
        println!("follow it with `{again} status`, or `{again} abort`");
        return Ok(());
    }
    wait(client, id, again, POLL, &mut std::io::stdout())
}

impl StartArgs {
    /// Lays the flags over the file's values.
    fn apply(&self, draft: &mut SpecDraft) {
        if let Some(upstream) = &self.upstream {
            draft.upstream = Some(upstream.clone());
        }
        if let Some(version) = &self.version {
            draft.version = Some(version.clone());
        }
        if let Some(strategy) = self.strategy {
            draft.strategy = strategy;
        }
        for (name, value) in &self.environment {
            draft.environment.insert(name.clone(), value.clone());
        }
        if let Some(instances) = self.instances {
            draft.canary.instances = instances;
        }
        if let Some(steps) = &self.steps {
            draft.canary.steps = steps.clone();
        }
        if let Some(interval) = self.interval {
            draft.canary.interval = interval;
        }
        if let Some(key) = &self.key {
            draft.canary.key = key.clone();
        }
        if let Some(keep_blue) = self.keep_blue {
            draft.blue_green.keep_blue = keep_blue;
        }
    }
}

/// Polls every `poll` until deployment `id` ends, writing each new decision to `out`; `Err`
/// unless it was promoted.
fn wait(
    client: &AdminClient,
    id: u64,
    again: &str,
    poll: Duration,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last: Option<Decision> = None;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        match follow(client, id) {
            Ok(Some(d)) => {
                unreachable_since = None;
                for decision in new_decisions(&d.decisions, last.as_ref()) {
                    writeln!(out, "{}", decision_line(decision))?;
                }
                last = d.decisions.last().cloned().or(last);
                // The outcome is known as soon as it is decided; the deployment has ended once
                // the leaving instances are gone (the old version alone serves again).
                if let (Some(outcome), false) = (&d.outcome, d.in_progress()) {
                    return ended(&d, outcome, out);
                }
            }
            Ok(None) if started.elapsed() > TAKEN_WITHIN => bail!(
                "the proxy has not taken up deployment {id} within {}s: is its deploy \
                 controller running? `{again} status` shows what it runs",
                TAKEN_WITHIN.as_secs()
            ),
            Ok(None) => unreachable_since = None,
            Err(ClientError::NotRunning { .. } | ClientError::Broken { .. })
                if unreachable_since.is_none_or(|t| t.elapsed() < UNREACHABLE_FOR) =>
            {
                if unreachable_since.is_none() {
                    eprintln!(
                        "the admin server does not answer; asking again for {}s (the \
                         deployment goes on without this command)",
                        UNREACHABLE_FOR.as_secs()
                    );
                    unreachable_since = Some(Instant::now());
                }
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(poll);
    }
}

/// Deployment `id` as the proxy has it now: the current one, or from the history once it
/// ended; `None` before the controller took it up.
fn follow(client: &AdminClient, id: u64) -> Result<Option<Deployment>, ClientError> {
    let overview = typed(&client.get("/api/deploy")?).map_err(|e| ClientError::Broken {
        address: client.address().to_owned(),
        why: format!("{e:#}"),
    })?;
    if let Some(d) = overview.current.filter(|d| d.id == id) {
        return Ok(Some(d));
    }
    if !overview.history.iter().any(|h| h.id == id) {
        return Ok(None);
    }
    // It ended and another started between two polls: its last decisions are in the history.
    let reply = client.get("/api/deploy/history")?;
    let history: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let full: Option<Vec<Deployment>> = serde_json::from_value(history["history"].clone()).ok();
    Ok(full.into_iter().flatten().find(|d| d.id == id))
}

fn ended(d: &Deployment, outcome: &Outcome, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let old = from(d.from_version.as_deref());
    let (upstream, version) = (&d.spec.upstream, &d.spec.version);
    match outcome {
        Outcome::Promoted => {
            writeln!(
                out,
                "deployment {} promoted: every instance of {upstream} runs {version}",
                d.id
            )?;
            Ok(())
        }
        Outcome::Aborted { reason } => {
            bail!(
                "deployment {} aborted: {reason}; {upstream} runs {old}",
                d.id
            )
        }
        Outcome::RolledBack { reason } => {
            bail!(
                "deployment {} rolled back: {reason}; {upstream} runs {old}",
                d.id
            )
        }
    }
}

/// `POST /api/deploy/{action}` with `reason`; the answer.
fn command(
    client: &AdminClient,
    action: &str,
    reason: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let body = reason.map(|r| serde_json::json!({ "reason": r }).to_string());
    let reply = client.post(
        &format!("/api/deploy/{action}"),
        body.as_deref().unwrap_or("").as_bytes(),
    )?;
    serde_json::from_slice(&reply.body).context("the admin server's answer is not JSON")
}

fn typed(reply: &Reply) -> anyhow::Result<DeployOverview> {
    serde_json::from_slice(&reply.body).context(
        "the admin server's answer is not a deployment overview (is ADDR an lbproxy admin server?)",
    )
}

fn print_raw(reply: &Reply) -> anyhow::Result<()> {
    print(&String::from_utf8_lossy(&reply.body));
    Ok(())
}

fn print(text: &str) {
    println!("{}", text.trim_end());
}

/// Every problem of the spec from `source`, as one error.
fn problems(source: &str, errors: &[String]) -> anyhow::Error {
    let noun = if errors.len() == 1 {
        "problem"
    } else {
        "problems"
    };
    anyhow::anyhow!(
        "the deployment spec ({source}) has {} {noun}:\n\n{}",
        errors.len(),
        errors.join("\n\n")
    )
}

/// `NAME=VALUE` of `--env`.
fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "\"{text}\" is not NAME=VALUE: write e.g. --env API_VERSION=v2"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(words: &[&str]) -> Result<DeployArgs, clap::Error> {
        let cli = crate::cli::Cli::try_parse_from(["lbproxy", "deploy"].iter().chain(words))?;
        match cli.command {
            crate::cli::Command::Deploy(args) => Ok(args),
            other => panic!("{other:?}"),
        }
    }

    fn start(words: &[&str]) -> StartArgs {
        match parse(words).unwrap().command {
            DeployCommand::Start(start) => start,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file_and_alone_need_the_group_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.toml");
        std::fs::write(
            &path,
            "upstream = \"api\"\nversion = \"v2\"\n[environment]\nA = \"1\"\nB = \"2\"\n\
             [canary]\nsteps = [10, 100]\ninterval = \"1m\"\n",
        )
        .unwrap();
        let path_text = path.display().to_string();
        let args = start(&[
            "start",
            &path_text,
            "--version",
            "v3",
            "--env",
            "B=two=2",
            "-e",
            "C=",
            "--steps",
            "5,50,100",
            "--key",
            "header:X-User",
            "--keep-blue",
            "90s",
            "--wait",
        ]);
        assert!(args.wait);
        let mut draft = read(&std::fs::read_to_string(&path).unwrap(), &path_text).unwrap();
        args.apply(&mut draft);
        let spec = draft.finish(&path_text).unwrap();
        assert_eq!(
            (spec.upstream.as_str(), spec.version.as_str()),
            ("api", "v3")
        );
        let env: Vec<(&str, &str)> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "1"), ("B", "two=2"), ("C", "")]);
        assert_eq!(spec.canary.steps, [5.0, 50.0, 100.0]);
        assert_eq!(spec.canary.interval, Duration::from_secs(60), "the file's");
        assert_eq!(spec.canary.key, HashKey::Header("x-user".into()));
        assert_eq!(spec.blue_green.keep_blue, Duration::from_secs(90));

        let mut alone = SpecDraft::default();
        start(&["start", "--upstream", "api", "--strategy", "blue-green"]).apply(&mut alone);
        let errors = alone.finish("the command line").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("error: the command line: version"),
            "{errors:?}"
        );
        assert!(errors[0].contains("--version v2"), "{errors:?}");
    }

    #[test]
    fn flag_values_are_checked_as_they_are_parsed() {
        for (flag, value, says) in [
            ("--strategy", "rolling", "not a strategy"),
            ("--interval", "30", "unit"),
            ("--key", "ip", "not a client key"),
            ("--env", "NOVALUE", "not NAME=VALUE"),
            ("--steps", "5,x", "invalid"),
        ] {
            let error = parse(&["start", flag, value]).unwrap_err().to_string();
            assert!(error.contains(says), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn the_proxys_flags_go_before_the_subcommand() {
        let args = parse(&[
            "-c",
            "/etc/lbproxy/lb.toml",
            "--env",
            "prod",
            "start",
            "--upstream",
            "api",
            "--version",
            "v2",
            "--env",
            "API_VERSION=v2",
        ])
        .unwrap();
        assert_eq!(args.target.env.as_deref(), Some("prod"));
        let DeployCommand::Start(start) = args.command else {
            panic!()
        };
        assert_eq!(start.environment, [("API_VERSION".into(), "v2".into())]);
        for words in [
            &["status", "--json"][..],
            &["history"],
            &["promote"],
            &["abort", "--reason", "p99"],
            &["rollback"],
        ] {
            assert!(parse(words).is_ok(), "{words:?}");
        }
    }

    #[test]
    fn the_example_in_the_help_is_a_spec_of_the_defaults() {
        let text: String = SPEC_EXAMPLE
            .lines()
            .skip(2)
            .map(|line| format!("{}\n", line.trim_start()))
            .collect();
        let spec = crate::deploy::spec_file::parse(&text, "help").unwrap();
        let defaults = SpecDraft::default();
        assert_eq!(spec.canary, defaults.canary);
        assert_eq!(spec.analysis, defaults.analysis);
        assert_eq!(spec.blue_green, defaults.blue_green);
        assert_eq!(spec.strategy, defaults.strategy);
    }

    /// An admin server that answers the `GET /api/deploy`s of `wait` from `script`, one body
    /// per request (the last one again once they run out).
    fn scripted(script: Vec<serde_json::Value>) -> AdminClient {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut script = script.into_iter().peekable();
            let mut last = serde_json::Value::Null;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = [0; 4096];
                let _ = stream.read(&mut head);
                if let Some(next) = script.next() {
                    last = next;
                }
                let body = last.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        AdminClient::new(&address, None)
    }

    /// Deployment 3 of the fixture with its first `decisions`, ended with `outcome`.
    fn at(decisions: usize, outcome: Option<Outcome>) -> serde_json::Value {
        let mut d = crate::admin::deploy::fixture::board().current().unwrap();
        d.decisions.truncate(decisions);
        if outcome.is_some() {
            d.phase = crate::deploy::record::Phase::Ended;
            d.outcome = outcome;
        }
        serde_json::json!({"current": d, "history": []})
    }

    #[test]
    fn wait_prints_each_decision_once_and_fails_unless_promoted() {
        let before = serde_json::json!({"current": null, "history": []});
        let aborted = Outcome::Aborted {
            reason: "p99_ratio 4.0000 > 1.5000, twice".into(),
        };
        let client = scripted(vec![
            before,
            at(1, None),
            at(3, None),
            at(3, None),
            at(4, Some(aborted)),
        ]);
        let mut out = Vec::new();
        let error = wait(
            &client,
            3,
            "lbproxy deploy",
            Duration::from_millis(1),
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "deployment 3 aborted: p99_ratio 4.0000 > 1.5000, twice; api runs v1"
        );
        let printed = String::from_utf8(out).unwrap();
        let events: Vec<&str> = printed
            .lines()
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        assert_eq!(
            events,
            ["started", "step", "analysis-failed", "step"],
            "{printed}"
        );

        let client = scripted(vec![at(4, Some(Outcome::Promoted))]);
        let mut out = Vec::new();
        wait(
            &client,
            3,
            "lbproxy deploy",
            Duration::from_millis(1),
            &mut out,
        )
        .unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(
            printed.ends_with("deployment 3 promoted: every instance of api runs v3\n"),
            "{printed}"
        );
    }

    #[test]
    fn spec_problems_are_counted_and_listed() {
        let error = problems("v2.toml", &["error: a".into(), "error: b".into()]).to_string();
        assert_eq!(
            error,
            "the deployment spec (v2.toml) has 2 problems:\n\nerror: a\n\nerror: b"
        );
    }
}
