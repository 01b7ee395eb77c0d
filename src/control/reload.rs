//! What a reload may change, how it is made on every worker, and how it can fail.
//!
//! Routes, upstream groups, backends, balancing, pools, limits, timeouts and the drain timeout
//! change on reload. Listeners (their set, addresses and protocols) are sockets bound at start:
//! changing them needs a restart, and a reload that tries is refused with the reason, so the
//! running configuration stays whole. `runtime.workers`, `driver` and `pin_workers` shape the
//! threads themselves, and `admin.address` / `admin.enabled` the admin server's socket: a change
//! is reported as a warning and takes effect at the next restart. `admin.token` changes at once;
//! a reload that would leave an admin server reachable from other machines without a token is
//! refused.
//!
//! A deployment's traffic split and canary flags are not the file's: a reload keeps them
//! ([`reconcile`]).
//!
//! [`apply`] makes one on the control loop's thread: [`reconcile`] with the running
//! configuration, `Prepare` on every worker and gather the answers, then `Commit` on every worker
//! (gathered too, so the caller returns once the new configuration serves everywhere) or `Abort`
//! on every worker when any could not prepare. Reloads never interleave: the loop makes one at a
//! time.

use super::broadcast::{Answer, Workers};
use super::shared::Shared;
use crate::config::is_loopback;
use crate::config::{Config, ConfigErrors, WorkerSteering};
use crate::runtime::command::WorkerCommand;
use crate::runtime::TICK;
use std::sync::Arc;
use std::time::Duration;

/// How long every worker together may take to prepare a reload, and to confirm its commit. A
/// worker answers on its next tick, so anything much past [`TICK`] means it is stuck (or
/// draining).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A reload that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// 1 for the first reload since start, then one more each time.
    pub reload: u64,
    /// Changes that were not applied (they need a restart), one sentence each.
    pub warnings: Vec<String>,
}

/// Why a reload did not take effect. In every case the running configuration keeps serving, and
/// trying again is safe.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid; the running one stays\n{0}")]
    Invalid(#[from] ConfigErrors),
    #[error("the new configuration changes what only a restart can change; the running one stays:\n  {}", .0.join("\n  "))]
    NeedsRestart(Vec<String>),
    #[error("worker {worker} cannot run the new configuration ({reason}); the running one stays")]
    Refused { worker: usize, reason: String },
    #[error("worker {worker} did not answer within {waited:?} (stuck?); the running configuration stays")]
    NoAnswer { worker: usize, waited: Duration },
    #[error("the proxy is shutting down")]
    ShuttingDown,
}

/// Switches every worker to `config` as the next reload, and records it as the running
/// configuration. The outcome is logged here, whoever asked, so callers do not log it again.
pub(super) fn apply(
    shared: &Shared,
    workers: &Workers,
    config: Config,
) -> Result<ReloadReport, ReloadError> {
    reload(shared, workers, config).map_err(logged)
}

fn reload(shared: &Shared, workers: &Workers, config: Config) -> Result<ReloadReport, ReloadError> {
    if shared.is_shutting_down() {
        return Err(ReloadError::ShuttingDown);
    }
    let (config, warnings) = reconcile(&shared.config(), config)?;
    let config = Arc::new(config);
    let generation = switch(shared, workers, &config, false)?;
    crate::logging::set_format(config.log.format);
    shared.set_running(config, generation, true);
    let number = shared.reloads();
    for warning in &warnings {
        tracing::warn!(reload = number, "{warning}");
    }
    tracing::info!(reload = number, "configuration reloaded");
    Ok(ReloadReport {
        reload: number,
        warnings,
    })
}

/// Switches every worker to `config`, the running configuration with other backends in
/// discovered groups (`what` says which, for the log): not a reload (runtime overrides stay,
/// the reload count does not move). Logged here when it fails.
pub(super) fn apply_discovered(
    shared: &Shared,
    workers: &Workers,
    config: Config,
    what: &str,
) -> Result<(), ReloadError> {
    if shared.is_shutting_down() {
        return Err(ReloadError::ShuttingDown);
    }
    let config = Arc::new(config);
    match switch(shared, workers, &config, true) {
        Ok(generation) => {
            shared.set_running(config, generation, false);
            tracing::info!(generation, "discovered backends applied: {what}");
            Ok(())
        }
        Err(error) => {
            tracing::error!("discovered backends not applied ({what}): {error}");
            Err(error)
        }
    }
}

/// Prepares `config` on every worker, then commits it everywhere (or aborts everywhere when
/// one could not prepare); returns its generation number.
fn switch(
    shared: &Shared,
    workers: &Workers,
    config: &Arc<Config>,
    keep_overrides: bool,
) -> Result<u64, ReloadError> {
    let number = shared.generations() + 1;
    let prepared = workers.gather(ANSWER_WITHIN.max(TICK * 10), |_, reply| {
        WorkerCommand::Prepare {
            reload: number,
            config: config.clone(),
            keep_overrides,
            reply,
        }
    });
    if !prepared.all_replied() || prepared.replies().any(|(_, r)| r.is_err()) {
        workers.broadcast(|_| WorkerCommand::Abort { reload: number });
        let refusal = prepared.replies().find_map(|(worker, reply)| {
            let reason = reply.as_ref().err()?;
            Some(ReloadError::Refused {
                worker,
                reason: reason.clone(),
            })
        });
        let silent = prepared.silent().first().copied();
        return Err(match (refusal, silent) {
            (Some(refused), _) => refused,
            (None, Some(worker)) if !shared.is_shutting_down() => ReloadError::NoAnswer {
                worker,
                waited: ANSWER_WITHIN,
            },
            // A worker has exited, or stopped answering because it drains.
            (None, _) => ReloadError::ShuttingDown,
        });
    }

    // Wait until every worker serves the new configuration, so that the caller (systemctl
    // reload, the admin API) returns only once it is in effect.
    let committed = workers.gather(ANSWER_WITHIN, |_, done| WorkerCommand::Commit {
        reload: number,
        done,
    });
    if !committed.all_replied() {
        let missing: Vec<usize> = (0..committed.answers.len())
            .filter(|&w| !matches!(committed.answers[w], Answer::Replied(_)))
            .collect();
        tracing::warn!(
            generation = number,
            committed = committed.replies().count(),
            workers = workers.len(),
            "not every worker confirmed the new configuration in time (workers {missing:?})"
        );
    }
    Ok(number)
}

/// Logs a failed reload: every reason, each with its fix; the running configuration stays.
pub(super) fn logged(error: ReloadError) -> ReloadError {
    tracing::error!("reload failed: {error}");
    error
}

/// Checks `new` against `running` and returns the configuration to commit (with the runtime
/// settings that need a restart kept as they run, and a deployment's split and canary flags as
/// they run) and the warnings about them.
pub(super) fn reconcile(
    running: &Config,
    mut new: Config,
) -> Result<(Config, Vec<String>), ReloadError> {
    let mut restart = Vec::new();
    for listener in &running.listeners {
        match new.listeners.iter().find(|l| l.name == listener.name) {
            None => restart.push(format!(
                "listener \"{}\" ({}) was removed",
                listener.name, listener.address
            )),
            Some(l) if l.address != listener.address => restart.push(format!(
                "listener \"{}\" moves from {} to {}",
                listener.name, listener.address, l.address
            )),
            Some(l) if l.protocol != listener.protocol => restart.push(format!(
                "listener \"{}\" changes protocol from {:?} to {:?}",
                listener.name, listener.protocol, l.protocol
            )),
            Some(_) => {}
        }
    }
    for listener in &new.listeners {
        if !running.listeners.iter().any(|l| l.name == listener.name) {
            restart.push(format!(
                "listener \"{}\" ({}) is new",
                listener.name, listener.address
            ));
        }
    }
    if !restart.is_empty() {
        restart.push("restart the proxy to change listeners (with lbproxy.socket, `systemctl restart lbproxy` refuses no connection)".to_owned());
        return Err(ReloadError::NeedsRestart(restart));
    }

    let mut warnings = Vec::new();
    let (was, now) = (&running.runtime, &mut new.runtime);
    if was.workers != now.workers {
        warnings.push(format!(
            "runtime.workers changed from {} to {}: takes effect at the next restart",
            was.workers, now.workers
        ));
        now.workers = was.workers;
    }
    if was.driver != now.driver {
        warnings.push(format!(
            "runtime.driver changed from {:?} to {:?}: takes effect at the next restart",
            was.driver, now.driver
        ));
        now.driver = was.driver;
    }
    if was.pin_workers != now.pin_workers {
        warnings.push(format!(
            "runtime.pin_workers changed from {} to {}: takes effect at the next restart",
            was.pin_workers, now.pin_workers
        ));
        now.pin_workers = was.pin_workers;
    }
    // The steering program is attached when the sockets are bound.
    for listener in &mut new.listeners {
        let Some(was) = running.listeners.iter().find(|l| l.name == listener.name) else {
            continue;
        };
        if was.policy.steering != listener.policy.steering {
            warnings.push(format!(
                "listener \"{}\": worker_steering changes from \"{}\" to \"{}\": takes effect at \
                 the next restart",
                listener.name,
                steering_name(was.policy.steering),
                steering_name(listener.policy.steering)
            ));
            listener.policy.steering = was.policy.steering;
        }
    }
    let (was, now) = (&running.admin, &mut new.admin);
    if (was.enabled, was.address) != (now.enabled, now.address) {
        let describe = |enabled: bool, address| match enabled {
            true => format!("on {address}"),
            false => "off".to_owned(),
        };
        warnings.push(format!(
            "the admin server changes from {} to {}: takes effect at the next restart",
            describe(was.enabled, was.address),
            describe(now.enabled, now.address)
        ));
        now.enabled = was.enabled;
        now.address = was.address;
    }
    if now.enabled && now.token.is_none() && !is_loopback(now.address) {
        return Err(ReloadError::NeedsRestart(vec![format!(
            "the admin server listens on {} (until a restart), which other machines can reach: \
             it keeps needing a token; keep admin.token or admin.token_file until then",
            now.address
        )]));
    }
    keep_deployments(running, &mut new);
    Ok((new, warnings))
}

fn steering_name(steering: WorkerSteering) -> &'static str {
    match steering {
        WorkerSteering::Kernel => "kernel",
        WorkerSteering::ClientAddress => "client_address",
    }
}

/// A deployment's traffic split and its canary flags are set at runtime (by the deployment
/// controller and discovery), never by the file: a reload keeps the split of every group that
/// stays (same name), and the canary flag of every backend that stays in it (same address), so
/// a reload in the middle of a deployment moves no client. A discovered group's backends are
/// kept whole before this (the control loop's `keep_discovered`), flags included.
fn keep_deployments(running: &Config, new: &mut Config) {
    for group in &mut new.upstreams {
        let Some(was) = running.upstreams.iter().find(|g| g.name == group.name) else {
            continue;
        };
        group.split = was.split.clone();
        for backend in &mut group.backends {
            backend.canary = was
                .backends
                .iter()
                .any(|b| b.address == backend.address && b.canary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;

    fn config(listener: &str, runtime: &str) -> Config {
        valid(&format!(
            "[runtime]\n{runtime}\n[listener.http]\naddress = \"{listener}\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n"
        ))
    }

    #[test]
    fn moving_a_listener_needs_a_restart() {
        let running = config("127.0.0.1:8080", "");
        let err = reconcile(&running, config("127.0.0.1:9090", "")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("listener \"http\" moves from 127.0.0.1:8080 to 127.0.0.1:9090"),
            "{text}"
        );
        assert!(text.contains("restart the proxy"), "{text}");
    }

    #[test]
    fn admin_address_waits_for_a_restart_and_its_token_stays_needed() {
        let with_admin = |admin: &str| {
            valid(&format!(
                "[admin]\n{admin}\n[listener.http]\naddress = \"127.0.0.1:8080\"\n\
                 upstream = \"api\"\n[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n"
            ))
        };
        let token = "token = \"0123456789abcdef0123\"";
        let running = with_admin(&format!("address = \"0.0.0.0:9901\"\n{token}"));
        let (applied, warnings) = reconcile(
            &running,
            with_admin(&format!("address = \"0.0.0.0:9902\"\n{token}")),
        )
        .unwrap();
        assert_eq!(applied.admin.address.port(), 9901);
        assert_eq!(
            warnings,
            [
                "the admin server changes from on 0.0.0.0:9901 to on 0.0.0.0:9902: takes effect \
              at the next restart"
            ]
        );
        let err = reconcile(&running, with_admin("address = \"127.0.0.1:9901\"")).unwrap_err();
        assert!(err.to_string().contains("keeps needing a token"), "{err}");
    }

    #[test]
    fn runtime_changes_warn_and_keep_the_running_values() {
        let running = config("127.0.0.1:8080", "workers = 2\ndrain_timeout = \"5s\"");
        let (applied, warnings) = reconcile(
            &running,
            config("127.0.0.1:8080", "workers = 4\ndrain_timeout = \"9s\""),
        )
        .unwrap();
        assert_eq!(applied.runtime.workers.get(), 2);
        assert_eq!(applied.runtime.drain_timeout, Duration::from_secs(9));
        assert_eq!(
            warnings,
            ["runtime.workers changed from 2 to 4: takes effect at the next restart"]
        );
    }

    #[test]
    fn worker_steering_waits_for_a_restart_and_the_limits_apply_at_once() {
        let with_limits = |limits: &str| {
            valid(&format!(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [listener.http.connection_limits]\n{limits}\n\
                 [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n"
            ))
        };
        let running = with_limits("max = 10");
        let (applied, warnings) = reconcile(&running, with_limits("per_client = 4")).unwrap();
        let policy = &applied.listeners[0].policy;
        assert_eq!(policy.steering, WorkerSteering::Kernel);
        assert_eq!(policy.connection_limits.per_client, Some(4));
        assert_eq!(
            warnings,
            [
                "listener \"http\": worker_steering changes from \"kernel\" to \"client_address\": \
                 takes effect at the next restart"
            ]
        );
    }

    #[test]
    fn a_reload_keeps_a_deployments_split_and_canary_flags() {
        use crate::config::{HashKey, TrafficSplit};
        let file = |backends: &str| {
            valid(&format!(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [upstream.api]\nbackends = [{backends}]\n\
                 [upstream.web]\nbackends = [\"127.0.0.1:9001\"]\n"
            ))
        };
        let split = TrafficSplit {
            weight_bp: 2500,
            key: HashKey::Cookie("session".to_owned()),
        };
        let mut running = file("\"127.0.0.1:8001\", \"127.0.0.1:8002\"");
        running.upstreams[0].split = split.clone();
        running.upstreams[0].backends[1].canary = true;

        let reloaded = file("\"127.0.0.1:8002\", \"127.0.0.1:8003\"");
        assert_eq!(
            reloaded.upstreams[0].split,
            TrafficSplit::default(),
            "not in the file"
        );
        let (applied, warnings) = reconcile(&running, reloaded).unwrap();
        assert!(warnings.is_empty());
        let api = &applied.upstreams[0];
        assert_eq!(api.split, split, "the deployment's weight and key stay");
        let canary: Vec<(u16, bool)> = api
            .backends
            .iter()
            .map(|b| (b.address.port(), b.canary))
            .collect();
        assert_eq!(canary, [(8002, true), (8003, false)]);
        assert_eq!(applied.upstreams[1].split, TrafficSplit::default());
    }
}
