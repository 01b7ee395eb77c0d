//! The checks a deployment spec passes before anything starts: [`check_spec`], the values'
//! ranges (whatever the proxy runs: `lbproxy deploy start` runs it on the file before sending
//! it), and [`check`], that and the deployment against the running configuration (the admin
//! API runs it before it hands the spec to the deploy controller): the group exists, follows
//! the instances of a template unit over systemd (not `lbproxy up`'s children), and has health
//! checks, which a new instance must pass before it gets traffic. Every problem is reported, in
//! the configuration's format, with its fix.

use super::spec::DeploySpec;
use crate::config::{did_you_mean, format_duration, list, unit_template, Config, ConfigError};
use std::time::Duration;

/// Where [`check`]'s problems say they are (the API's spec has no file).
pub const SPEC: &str = "deployment spec";
/// Canary instances a deployment may start at once.
pub const MAX_CANARY_INSTANCES: u32 = 16;
/// The longest version name (it is in unit environments, the journal, the history).
pub const MAX_VERSION_LEN: usize = 64;
/// The shortest step: shorter windows hold too few requests to judge.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The rules a spec follows whatever the proxy runs; `source` names where it came from.
pub fn check_spec(spec: &DeploySpec, source: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, value: String, what: &str, fix: &str| {
        errors.push(problem(source, key, &value, what, fix));
    };
    let version = &spec.version;
    if version.is_empty() || version.len() > MAX_VERSION_LEN || !version.bytes().all(name_byte) {
        fail(
            "version",
            quote(version),
            &format!(
                "not a version name: 1 to {MAX_VERSION_LEN} letters, digits, `.`, `_` or `-` \
                 (it names the version in the journal, the history and LBPROXY_VERSION)"
            ),
            "name it e.g. \"v2\", \"1.4.0\" or \"2026-12-07.1\"",
        );
    }
    for (name, value) in &spec.environment {
        let key = format!("environment.{name}");
        if name == "LBPROXY_VERSION" {
            fail(
                &key,
                quote(value),
                "LBPROXY_VERSION is the version's name, set from `version`",
                "remove it: the instances get LBPROXY_VERSION = the spec's `version`",
            );
        } else if !is_variable_name(name) {
            fail(
                &key,
                quote(value),
                "not an environment variable name: a letter or `_`, then letters, digits or `_`",
                &format!("rename it, e.g. {}", variable_name_like(name)),
            );
        }
        if value.contains(['\n', '\r', '\0']) {
            fail(
                &key,
                quote(value),
                "a line break or NUL in a value: the version file has one variable a line",
                "put the value on one line",
            );
        }
    }
    let c = &spec.canary;
    if !(1..=MAX_CANARY_INSTANCES).contains(&c.instances) {
        fail(
            "canary.instances",
            c.instances.to_string(),
            &format!("canary instances are 1 to {MAX_CANARY_INSTANCES}"),
            "start 1 (the default) or a few beside the stable instances",
        );
    }
    if let Some((what, fix)) = steps_problem(&c.steps) {
        fail("canary.steps", steps_text(&c.steps), &what, fix);
    }
    if c.interval < MIN_INTERVAL {
        fail(
            "canary.interval",
            quote(&format_duration(c.interval)),
            "shorter than 1s: a step's window must hold enough requests to judge",
            "make it at least \"1s\" (the default is \"30s\")",
        );
    }
    let a = &spec.analysis;
    if a.min_requests == 0 {
        fail(
            "analysis.min_requests",
            "0".into(),
            "0 requests would judge a silent canary, and pass it",
            "make it at least 1 (the default is 50)",
        );
    }
    for (key, x, range, fix) in [
        (
            "max_error_ratio",
            a.max_error_ratio,
            0.0..=1.0,
            "a share of the canary's requests, 0 to 1: 0.05 is 5% (the default)",
        ),
        (
            "max_error_ratio_increase",
            a.max_error_ratio_increase,
            0.0..=1.0,
            "a difference of two shares, 0 to 1: 0.02 is 2 points over stable (the default)",
        ),
        (
            "max_p99_ms",
            a.max_p99_ms,
            f64::MIN_POSITIVE..=f64::MAX,
            "milliseconds, more than 0 (the default is 1000)",
        ),
        (
            "max_p99_ratio",
            a.max_p99_ratio,
            1.0..=f64::MAX,
            "the canary's p99 over stable's, at least 1 (below 1 the canary would have to be \
             faster; the default is 1.5)",
        ),
    ] {
        if !range.contains(&x) {
            fail(
                &format!("analysis.{key}"),
                number_text(x),
                "out of range",
                &format!("make it {fix}"),
            );
        }
    }
    if a.failure_limit == 0 {
        fail(
            "analysis.failure_limit",
            "0".into(),
            "0 failed analyses would abort before any",
            "make it at least 1: the failed analyses in a row that abort (the default is 2)",
        );
    }
    errors
}

/// [`check_spec`], then the deployment against the running configuration `config`: its group
/// exists, follows the instances of a template unit over systemd, and has health checks.
pub fn check(spec: &DeploySpec, config: &Config) -> Result<(), Vec<String>> {
    let mut errors = check_spec(spec, SPEC);
    if let Some(error) = group_problem(spec, config) {
        errors.push(error);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn group_problem(spec: &DeploySpec, config: &Config) -> Option<String> {
    let name = &spec.upstream;
    let source = config.source.to_string();
    let fail =
        |what: String, fix: String| Some(problem(SPEC, "upstream", &quote(name), &what, &fix));
    let Some(group) = config.upstreams.iter().find(|u| &u.name == name) else {
        let deployable: Vec<&str> = config
            .upstreams
            .iter()
            .filter(|u| {
                u.discover
                    .as_ref()
                    .is_some_and(|d| !d.children && unit_template(&d.systemd).is_some())
            })
            .map(|u| u.name.as_str())
            .collect();
        let hint = did_you_mean(name, config.upstreams.iter().map(|u| u.name.as_str()));
        let fix = if deployable.is_empty() {
            format!(
                "{hint}no group of the proxy can be deployed: give one [upstream.NAME.discover] \
                 with systemd = \"NAME@*.service\" and [upstream.NAME.health] in {source}"
            )
        } else {
            format!(
                "{hint}the groups that can be deployed: {}",
                list(deployable)
            )
        };
        return fail(
            format!("the proxy ({source}) has no upstream group \"{name}\""),
            fix,
        );
    };
    let Some(discover) = &group.discover else {
        return fail(
            format!(
                "group \"{name}\" has a fixed list of backends: a deployment starts and stops \
                 the group's systemd units"
            ),
            format!(
                "let the group follow its instances' units, in {source}:\n    \
                 [upstream.{name}.discover]\n    systemd = \"{name}@*.service\""
            ),
        );
    };
    if discover.children {
        return fail(
            format!(
                "group \"{name}\"'s instances are `lbproxy up`'s own child processes: they \
                 cannot be deployed"
            ),
            "run the instances as systemd units (`lbproxy systemd install --user`, or the \
             packaged api@.service) behind `lbproxy serve`, whose [upstream.NAME.discover] \
             follows them"
                .into(),
        );
    }
    if unit_template(&discover.systemd).is_none() {
        return fail(
            format!(
                "group \"{name}\" follows systemd = \"{}\", not the instances of a template \
                 unit: a deployment starts its new instances by name",
                discover.systemd
            ),
            format!(
                "follow a template's instances, systemd = \"PREFIX@*.service\" (e.g. \
                 \"{name}@*.service\"), in {source}"
            ),
        );
    }
    if group.health.is_none() {
        return fail(
            format!(
                "group \"{name}\" has no health checks: a deployment sends a new instance \
                 traffic only once its health checks pass"
            ),
            format!(
                "add them to {source}:\n    [upstream.{name}.health]\n    path = \
                 \"/health/ready\"\n    interval = \"2s\""
            ),
        );
    }
    None
}

/// What is wrong with canary steps, and the fix.
fn steps_problem(steps: &[f64]) -> Option<(String, &'static str)> {
    const FIX: &str =
        "give rising percentages of the clients ending at 100, e.g. [5, 25, 50, 100] \
                       (the default)";
    if steps.is_empty() {
        return Some(("no steps".into(), FIX));
    }
    if let Some(bad) = steps.iter().find(|s| !(**s >= 0.01 && **s <= 100.0)) {
        return Some((
            format!(
                "step {} is not a percentage from 0.01 to 100",
                number_text(*bad)
            ),
            FIX,
        ));
    }
    let bp: Vec<u32> = steps.iter().map(|s| (s * 100.0).round() as u32).collect();
    if let Some(i) = bp.windows(2).position(|w| w[1] <= w[0]) {
        return Some((
            format!(
                "step {} does not rise above {}: each step sends more clients to the canary",
                number_text(steps[i + 1]),
                number_text(steps[i])
            ),
            FIX,
        ));
    }
    if bp.last() != Some(&10_000) {
        return Some((
            "the last step is not 100: the canary is promoted after the step that sends it \
             every client"
                .into(),
            FIX,
        ));
    }
    None
}

/// One problem in the configuration's format (`error: FILE: KEY = VALUE: PROBLEM`, `  fix: …`).
pub(super) fn problem(source: &str, key: &str, value: &str, what: &str, fix: &str) -> String {
    ConfigError {
        file: source.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
        problem: what.to_owned(),
        fix: fix.to_owned(),
    }
    .to_string()
}

pub(super) fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `5`, `2.5`: a number as a person writes it.
fn number_text(x: f64) -> String {
    format!("{x}")
}

fn steps_text(steps: &[f64]) -> String {
    let parts: Vec<String> = steps.iter().map(|s| number_text(*s)).collect();
    format!("[{}]", parts.join(", "))
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `name` made into a variable name (`api-version` → `API_VERSION`).
fn variable_name_like(name: &str) -> String {
    let mut fixed: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if !fixed.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        fixed.insert(0, '_');
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::valid;

    use crate::deploy::spec_file::parse;
    use crate::deploy::spec_file::testing::{one_error, FILE, MINIMAL};

    #[test]
    fn version_names_are_short_and_plain() {
        let (longest, too_long) = ("x".repeat(64), "x".repeat(65));
        for good in ["v2", "1.4.0", "2026-12-07_1", &longest] {
            let text = format!("upstream = \"api\"\nversion = \"{good}\"\n");
            assert!(parse(&text, FILE).is_ok(), "{good}");
        }
        for bad in ["", "v 2", "v2/a", "é", &too_long] {
            let text = format!("upstream = \"api\"\nversion = \"{bad}\"\n");
            one_error(&text, &["not a version name", "e.g. \"v2\""]);
        }
    }

    #[test]
    fn environment_names_are_variables_and_not_the_version() {
        one_error(
            &format!("{MINIMAL}[environment]\napi-version = \"2\"\n"),
            &["not an environment variable name", "e.g. API_VERSION"],
        );
        one_error(
            &format!("{MINIMAL}[environment]\n2FAST = \"1\"\n"),
            &["e.g. _2FAST"],
        );
        one_error(
            &format!("{MINIMAL}[environment]\nLBPROXY_VERSION = \"v3\"\n"),
            &["set from `version`", "remove it"],
        );
        one_error(
            &format!("{MINIMAL}[environment]\nA = \"one\\ntwo\"\n"),
            &["a line break", "one line"],
        );
        assert!(parse(&format!("{MINIMAL}[environment]\n_a1 = \"x y\"\n"), FILE).is_ok());
    }

    #[test]
    fn steps_rise_to_100() {
        for (steps, says) in [
            ("[]", "no steps"),
            ("[0, 50, 100]", "step 0 is not a percentage"),
            ("[50, 150]", "step 150 is not a percentage"),
            ("[5, 25, 25, 100]", "step 25 does not rise above 25"),
            ("[50, 10, 100]", "step 10 does not rise above 50"),
            ("[5, 25, 50]", "the last step is not 100"),
        ] {
            one_error(
                &format!("{MINIMAL}[canary]\nsteps = {steps}\n"),
                &[
                    &format!("canary.steps = {steps}: {says}"),
                    "e.g. [5, 25, 50, 100]",
                ],
            );
        }
        assert!(parse(&format!("{MINIMAL}[canary]\nsteps = [100]\n"), FILE).is_ok());
        assert!(parse(&format!("{MINIMAL}[canary]\nsteps = [0.5, 100]\n"), FILE).is_ok());
    }

    #[test]
    fn instances_interval_and_thresholds_stay_in_range() {
        for (section, key_value, says) in [
            ("canary", "instances = 0", "canary instances are 1 to 16"),
            ("canary", "instances = 17", "canary instances are 1 to 16"),
            ("canary", "interval = \"500ms\"", "shorter than 1s"),
            ("analysis", "min_requests = 0", "judge a silent canary"),
            ("analysis", "max_error_ratio = 1.5", "0 to 1"),
            ("analysis", "max_error_ratio = -0.1", "0 to 1"),
            ("analysis", "max_error_ratio_increase = 2", "0 to 1"),
            ("analysis", "max_p99_ms = 0", "more than 0"),
            ("analysis", "max_p99_ratio = 0.9", "at least 1"),
            ("analysis", "failure_limit = 0", "at least 1"),
        ] {
            let (key, value) = key_value.split_once(" = ").unwrap();
            one_error(
                &format!("{MINIMAL}[{section}]\n{key_value}\n"),
                &[&format!("{section}.{key} = {value}"), says],
            );
        }
    }

    #[test]
    fn a_threshold_that_is_not_a_number_is_out_of_range() {
        let mut spec = spec();
        spec.analysis.max_error_ratio = f64::NAN;
        let errors = check_spec(&spec, "x.toml");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("analysis.max_error_ratio = NaN: out of range"));
    }

    fn config(group: &str) -> Config {
        valid(&format!(
            "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
             [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
             address = \"127.0.0.1:{{8000+N}}\"\n\
             [upstream.api.health]\npath = \"/health/ready\"\n{group}"
        ))
    }

    fn spec() -> DeploySpec {
        parse(MINIMAL, FILE).unwrap()
    }

    /// The one problem `check` finds with `spec` against `config`.
    fn refused(spec: &DeploySpec, config: &Config, says: &[&str]) {
        let errors = check(spec, config).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("error: deployment spec: upstream = "));
        for part in says {
            assert!(errors[0].contains(part), "{part:?} in:\n{}", errors[0]);
        }
    }

    #[test]
    fn a_group_of_template_units_with_health_checks_can_be_deployed() {
        assert_eq!(check(&spec(), &config("")), Ok(()));
    }

    #[test]
    fn the_group_must_exist() {
        let mut spec = spec();
        spec.upstream = "apj".into();
        refused(
            &spec,
            &config(""),
            &[
                "has no upstream group \"apj\"",
                "did you mean `api`?",
                "can be deployed: `api`",
            ],
        );
    }

    #[test]
    fn a_group_of_fixed_backends_cannot_be_deployed() {
        let config = config(
            "[upstream.web]\nbackends = [\"127.0.0.1:9000\"]\n[upstream.web.health]\npath = \"/\"\n",
        );
        let mut spec = spec();
        spec.upstream = "web".into();
        refused(
            &spec,
            &config,
            &[
                "fixed list of backends",
                "[upstream.web.discover]",
                "systemd = \"web@*.service\"",
            ],
        );
    }

    #[test]
    fn the_units_must_be_a_templates_instances() {
        let mut config = config("");
        config.upstreams[0].discover.as_mut().unwrap().systemd = "api-*.service".into();
        refused(
            &spec(),
            &config,
            &["not the instances of a template unit", "\"api@*.service\""],
        );
    }

    #[test]
    fn lbproxy_ups_own_children_cannot_be_deployed() {
        let mut config = config("");
        config.upstreams[0].discover.as_mut().unwrap().children = true;
        refused(
            &spec(),
            &config,
            &["`lbproxy up`'s own child processes", "systemd units"],
        );
    }

    #[test]
    fn the_group_needs_health_checks_and_is_shown_the_section() {
        let mut config = config("");
        config.upstreams[0].health = None;
        refused(
            &spec(),
            &config,
            &[
                "no health checks",
                "[upstream.api.health]\n    path = \"/health/ready\"",
            ],
        );
    }

    #[test]
    fn check_also_checks_the_spec_itself() {
        let mut spec = spec();
        spec.version = "v 2".into();
        spec.canary.steps = vec![50.0];
        let errors = check(&spec, &config("")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("error: deployment spec: version = \"v 2\""));
        assert!(errors[1].starts_with("error: deployment spec: canary.steps = [50]"));
    }
}
