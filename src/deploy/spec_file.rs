//! The deployment spec as `lbproxy deploy start` reads it: a TOML file ([`super::spec`]'s
//! module docs show one) with the command line's flags over it.
//!
//! Flow: [`read`] types the file into a [`SpecDraft`] (every key it leaves out takes its
//! default; unknown keys are refused with the nearest valid one, as the configuration's are);
//! the flags overwrite fields of the draft; [`SpecDraft::finish`] requires the two values
//! without a default (`upstream`, `version`); then [`super::spec_check`] checks the values'
//! ranges, and the admin API the deployment against the running configuration. Every problem
//! is reported at once, each naming the file, the key, the value and the fix, in the
//! configuration's format (`error: FILE: KEY = VALUE: PROBLEM` then `  fix: FIX`).

use super::spec::{hash_key, AnalysisSpec, BlueGreenSpec, CanarySpec, DeploySpec, Strategy};
use super::spec_check::{problem, quote};
use crate::config::{did_you_mean, list, parse_duration_arg};
use std::collections::BTreeMap;
use std::time::Duration;

const TOP_KEYS: &[&str] = &[
    "upstream",
    "version",
    "strategy",
    "environment",
    "canary",
    "analysis",
    "blue_green",
];
const CANARY_KEYS: &[&str] = &["instances", "steps", "interval", "key"];
const ANALYSIS_KEYS: &[&str] = &[
    "min_requests",
    "max_error_ratio",
    "max_error_ratio_increase",
    "max_p99_ms",
    "max_p99_ratio",
    "failure_limit",
];
const BLUE_GREEN_KEYS: &[&str] = &["keep_blue"];
const KEY_FORMS: &str = "write \"client_ip\" (the client's address), \"header:NAME\" or \
                         \"cookie:NAME\" (without the header or cookie: the address)";

/// A spec as read, before the flags: what it leaves out has its default, but `upstream` and
/// `version` have none.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDraft {
    pub upstream: Option<String>,
    pub version: Option<String>,
    /// Default canary.
    pub strategy: Strategy,
    pub environment: BTreeMap<String, String>,
    pub canary: CanarySpec,
    pub analysis: AnalysisSpec,
    pub blue_green: BlueGreenSpec,
}

impl Default for SpecDraft {
    fn default() -> Self {
        Self {
            upstream: None,
            version: None,
            strategy: Strategy::Canary,
            environment: BTreeMap::new(),
            canary: CanarySpec::default(),
            analysis: AnalysisSpec::default(),
            blue_green: BlueGreenSpec::default(),
        }
    }
}

impl SpecDraft {
    /// The spec, once it names its group and version; `source` names the file (or the command
    /// line) in the errors.
    pub fn finish(self, source: &str) -> Result<DeploySpec, Vec<String>> {
        let mut errors = Vec::new();
        if self.upstream.is_none() {
            errors.push(problem(
                source,
                "upstream",
                "",
                "no upstream group named: which group's instances does it deploy?",
                "add `upstream = \"NAME\"` (a group with [upstream.NAME.discover]), or pass \
                 --upstream NAME",
            ));
        }
        if self.version.is_none() {
            errors.push(problem(
                source,
                "version",
                "",
                "no version named: the new version needs a name (the journal, the history and \
                 LBPROXY_VERSION in its instances' environment carry it)",
                "add `version = \"v2\"`, or pass --version v2",
            ));
        }
        let (Some(upstream), Some(version)) = (self.upstream, self.version) else {
            return Err(errors);
        };
        Ok(DeploySpec {
            upstream,
            version,
            strategy: self.strategy,
            environment: self.environment,
            canary: self.canary,
            analysis: self.analysis,
            blue_green: self.blue_green,
        })
    }
}

/// A strategy's name: `canary` or `blue-green`.
pub fn parse_strategy(text: &str) -> Result<Strategy, String> {
    match text {
        "canary" => Ok(Strategy::Canary),
        "blue-green" => Ok(Strategy::BlueGreen),
        _ => Err(format!(
            "\"{text}\" is not a strategy: {}write \"canary\" (stepped weights, each step \
             analysed) or \"blue-green\" (every client at once, the old version kept warm)",
            did_you_mean(text, ["canary", "blue-green"])
        )),
    }
}

/// Reads the spec file `file` whose text is `text`, and checks the values' ranges
/// ([`super::spec_check::check_spec`]). The tests' shortcut: `lbproxy deploy start` lays its
/// flags over [`read`]'s draft before it checks.
#[cfg(test)]
pub fn parse(text: &str, file: &str) -> Result<DeploySpec, Vec<String>> {
    let spec = read(text, file)?.finish(file)?;
    let errors = super::spec_check::check_spec(&spec, file);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

/// Types the spec file `file` whose text is `text` into a draft: every problem at once.
pub fn read(text: &str, file: &str) -> Result<SpecDraft, Vec<String>> {
    let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        vec![problem(
            file,
            "",
            "",
            &format!("not a TOML file: {}", e.message()),
            &format!(
                "fix the syntax{}; the format is `upstream = \"api\"`, `version = \"v2\"`, then \
                 [canary], [analysis], [blue_green] sections (docs: `lbproxy deploy start --help`)",
                e.span()
                    .map(|span| format!(" at line {}", line_of(text, span.start)))
                    .unwrap_or_default()
            ),
        )]
    })?;
    let mut r = Reader {
        file,
        errors: Vec::new(),
    };
    let mut draft = SpecDraft::default();
    r.unknown_keys(&root, "", TOP_KEYS);
    if let Some(v) = root.remove("upstream") {
        draft.upstream = r.string("upstream", &v);
    }
    if let Some(v) = root.remove("version") {
        draft.version = r.string("version", &v);
    }
    if let Some(v) = root.remove("strategy") {
        if let Some(text) = r.string("strategy", &v) {
            match parse_strategy(&text) {
                Ok(strategy) => draft.strategy = strategy,
                Err(_) => r.error(
                    "strategy",
                    &v,
                    "not a strategy",
                    &format!(
                        "{}write \"canary\" (stepped weights, each step analysed) or \
                         \"blue-green\" (every client at once, the old version kept warm)",
                        did_you_mean(&text, ["canary", "blue-green"])
                    ),
                ),
            }
        }
    }
    if let Some(table) = r.table(&mut root, "environment", None) {
        for (name, v) in table {
            let key = format!("environment.{name}");
            match v {
                toml::Value::String(value) => {
                    draft.environment.insert(name, value);
                }
                other => r.error(
                    &key,
                    &other,
                    &format!("{} where the environment file needs a string", kind(&other)),
                    &format!("quote it: {name} = {}", quote(&scalar_text(&other))),
                ),
            }
        }
    }
    if let Some(mut t) = r.table(&mut root, "canary", Some(CANARY_KEYS)) {
        let c = &mut draft.canary;
        if let Some(v) = t.remove("instances") {
            r.integer("canary.instances", &v, &mut c.instances);
        }
        if let Some(v) = t.remove("steps") {
            if let Some(steps) = r.numbers("canary.steps", &v) {
                c.steps = steps;
            }
        }
        if let Some(v) = t.remove("interval") {
            r.duration("canary.interval", &v, &mut c.interval);
        }
        if let Some(v) = t.remove("key") {
            if let Some(text) = r.string("canary.key", &v) {
                match hash_key::from_text(&text) {
                    Ok(key) => c.key = key,
                    Err(_) => r.error("canary.key", &v, "not a client key", KEY_FORMS),
                }
            }
        }
    }
    if let Some(mut t) = r.table(&mut root, "analysis", Some(ANALYSIS_KEYS)) {
        let a = &mut draft.analysis;
        if let Some(v) = t.remove("min_requests") {
            r.integer("analysis.min_requests", &v, &mut a.min_requests);
        }
        for (key, field) in [
            ("max_error_ratio", &mut a.max_error_ratio),
            ("max_error_ratio_increase", &mut a.max_error_ratio_increase),
            ("max_p99_ms", &mut a.max_p99_ms),
            ("max_p99_ratio", &mut a.max_p99_ratio),
        ] {
            if let Some(v) = t.remove(key) {
                if let Some(x) = r.number(&format!("analysis.{key}"), &v) {
                    *field = x;
                }
            }
        }
        if let Some(v) = t.remove("failure_limit") {
            r.integer("analysis.failure_limit", &v, &mut a.failure_limit);
        }
    }
    if let Some(mut t) = r.table(&mut root, "blue_green", Some(BLUE_GREEN_KEYS)) {
        if let Some(v) = t.remove("keep_blue") {
            r.duration("blue_green.keep_blue", &v, &mut draft.blue_green.keep_blue);
        }
    }
    if r.errors.is_empty() {
        Ok(draft)
    } else {
        Err(r.errors)
    }
}

/// Reads typed values out of TOML, collecting problems.
struct Reader<'a> {
    file: &'a str,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn error(&mut self, key: &str, value: &toml::Value, what: &str, fix: &str) {
        self.errors
            .push(problem(self.file, key, &shown(value), what, fix));
    }

    fn unknown_keys(&mut self, table: &toml::Table, prefix: &str, known: &[&str]) {
        for (key, value) in table {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = did_you_mean(key, known.iter().copied());
            let valid = list(known.iter().copied());
            let fix = if hint.is_empty() {
                format!("remove it (valid keys here: {valid})")
            } else {
                format!("{hint}(valid keys here: {valid})")
            };
            self.error(
                &format!("{prefix}{key}"),
                value,
                &format!("unknown key `{key}`"),
                &fix,
            );
        }
    }

    /// Takes the sub-table `key` out of `root`; `known`: its keys (`None`: any).
    fn table(
        &mut self,
        root: &mut toml::Table,
        key: &str,
        known: Option<&[&str]>,
    ) -> Option<toml::Table> {
        match root.remove(key)? {
            toml::Value::Table(table) => {
                if let Some(known) = known {
                    self.unknown_keys(&table, &format!("{key}."), known);
                }
                Some(table)
            }
            other => {
                self.error(
                    key,
                    &other,
                    &format!("{} where a section is expected", kind(&other)),
                    &format!("write it as a section, [{key}], with its keys below it"),
                );
                None
            }
        }
    }

    fn string(&mut self, key: &str, value: &toml::Value) -> Option<String> {
        match value {
            toml::Value::String(text) => Some(text.clone()),
            other => {
                self.error(
                    key,
                    other,
                    &format!("{} where a string is expected", kind(other)),
                    &format!("quote it: {key} = {}", quote(&scalar_text(other))),
                );
                None
            }
        }
    }

    /// A whole number that fits `T` (a count: never negative).
    fn integer<T: TryFrom<i64>>(&mut self, key: &str, value: &toml::Value, into: &mut T) {
        match value {
            toml::Value::Integer(n) => match T::try_from(*n) {
                Ok(n) => *into = n,
                Err(_) => self.error(
                    key,
                    value,
                    "out of range for a count",
                    "write a whole number, 0 or more",
                ),
            },
            other => self.error(
                key,
                other,
                &format!("{} where a whole number is expected", kind(other)),
                "write a whole number without quotes, e.g. 2",
            ),
        }
    }

    fn number(&mut self, key: &str, value: &toml::Value) -> Option<f64> {
        match value {
            toml::Value::Integer(n) => Some(*n as f64),
            toml::Value::Float(x) => Some(*x),
            other => {
                self.error(
                    key,
                    other,
                    &format!("{} where a number is expected", kind(other)),
                    "write a number without quotes, e.g. 0.05",
                );
                None
            }
        }
    }

    fn numbers(&mut self, key: &str, value: &toml::Value) -> Option<Vec<f64>> {
        let toml::Value::Array(items) = value else {
            self.error(
                key,
                value,
                &format!("{} where a list of percentages is expected", kind(value)),
                "write a list, e.g. [5, 25, 50, 100]",
            );
            return None;
        };
        let numbers: Vec<f64> = items
            .iter()
            .filter_map(|item| match item {
                toml::Value::Integer(n) => Some(*n as f64),
                toml::Value::Float(x) => Some(*x),
                _ => None,
            })
            .collect();
        if numbers.len() != items.len() {
            self.error(
                key,
                value,
                "not every step is a number",
                "write percentages without quotes or `%`, e.g. [5, 25, 50, 100]",
            );
            return None;
        }
        Some(numbers)
    }

    fn duration(&mut self, key: &str, value: &toml::Value, into: &mut Duration) {
        match value {
            toml::Value::String(text) => match parse_duration_arg(text) {
                Ok(duration) => *into = duration,
                Err(why) => self.error(key, value, "not a duration", &why),
            },
            toml::Value::Integer(n) => self.error(
                key,
                value,
                "a number without a unit",
                &format!("write it with its unit, e.g. \"{n}s\" or \"{n}m\""),
            ),
            other => self.error(
                key,
                other,
                &format!("{} where a duration is expected", kind(other)),
                "write a duration as a string, e.g. \"30s\" or \"5m\"",
            ),
        }
    }
}

/// A value as written, on one line, shortened.
fn shown(value: &toml::Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string().replace('\n', " ");
    if text.chars().count() <= MAX {
        return text;
    }
    let mut short: String = text.chars().take(MAX).collect();
    short.push('…');
    short
}

/// A scalar's text without TOML's quotes (for a fix that quotes it).
fn scalar_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a section",
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// What the spec tests of this file and of `spec_check.rs` share.
#[cfg(test)]
pub(crate) mod testing {
    use super::parse;

    pub const FILE: &str = "v2.toml";

    /// The errors of a text that must not read, each checked to name the file.
    pub fn errors(text: &str) -> Vec<String> {
        let errors = parse(text, FILE).expect_err("expected errors");
        assert!(
            errors
                .iter()
                .all(|e| e.starts_with(&format!("error: {FILE}: "))),
            "{errors:#?}"
        );
        errors
    }

    /// The only error of a text with exactly one, and it says each of `says`.
    pub fn one_error(text: &str, says: &[&str]) -> String {
        let mut errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let error = errors.remove(0);
        for part in says {
            assert!(error.contains(part), "{part:?} in:\n{error}");
        }
        error
    }

    pub const MINIMAL: &str = "upstream = \"api\"\nversion = \"v2\"\n";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashKey;

    use super::testing::{errors, one_error, FILE, MINIMAL};

    #[test]
    fn the_documented_example_reads_in_full() {
        let text = "upstream = \"api\"\nversion = \"v2\"\nstrategy = \"canary\"\n\
                    [environment]\nAPI_VERSION = \"v2\"\n\
                    [canary]\ninstances = 2\nsteps = [10, 50.5, 100]\ninterval = \"1m\"\n\
                    key = \"header:X-User\"\n\
                    [analysis]\nmin_requests = 100\nmax_error_ratio = 0.01\n\
                    max_error_ratio_increase = 0\nmax_p99_ms = 250\nmax_p99_ratio = 2.0\n\
                    failure_limit = 3\n\
                    [blue_green]\nkeep_blue = \"10m\"\n";
        let spec = parse(text, FILE).unwrap();
        assert_eq!(spec.upstream, "api");
        assert_eq!(spec.version, "v2");
        assert_eq!(spec.strategy, Strategy::Canary);
        assert_eq!(spec.environment["API_VERSION"], "v2");
        assert_eq!(spec.canary.instances, 2);
        assert_eq!(spec.canary.steps, [10.0, 50.5, 100.0]);
        assert_eq!(spec.canary.interval, Duration::from_secs(60));
        assert_eq!(spec.canary.key, HashKey::Header("x-user".into()));
        assert_eq!(
            spec.analysis,
            AnalysisSpec {
                min_requests: 100,
                max_error_ratio: 0.01,
                max_error_ratio_increase: 0.0,
                max_p99_ms: 250.0,
                max_p99_ratio: 2.0,
                failure_limit: 3,
            }
        );
        assert_eq!(spec.blue_green.keep_blue, Duration::from_secs(600));
    }

    #[test]
    fn what_is_left_out_takes_its_default() {
        let spec = parse(MINIMAL, FILE).unwrap();
        assert_eq!(spec.strategy, Strategy::Canary);
        assert!(spec.environment.is_empty());
        assert_eq!(spec.canary, CanarySpec::default());
        assert_eq!(spec.analysis, AnalysisSpec::default());
        assert_eq!(spec.blue_green, BlueGreenSpec::default());
        let blue_green = parse(&format!("{MINIMAL}strategy = \"blue-green\"\n"), FILE).unwrap();
        assert_eq!(blue_green.strategy, Strategy::BlueGreen);
    }

    #[test]
    fn upstream_and_version_have_no_default() {
        let errors = errors("strategy = \"canary\"\n");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("error: v2.toml: upstream: no upstream group named"));
        assert!(errors[0].contains("--upstream NAME"), "{}", errors[0]);
        assert!(errors[1].contains("error: v2.toml: version: no version named"));
        assert!(errors[1].contains("version = \"v2\""), "{}", errors[1]);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_nearest_one() {
        one_error(
            &format!("{MINIMAL}[canary]\nintervall = \"30s\"\n"),
            &[
                "canary.intervall = \"30s\": unknown key `intervall`",
                "fix: did you mean `interval`? (valid keys here: `instances`, `steps`, \
                 `interval`, `key`)",
            ],
        );
        one_error(
            &format!("{MINIMAL}[analysis]\nmax_eror_ratio = 0.1\n"),
            &["analysis.max_eror_ratio = 0.1: unknown key", "did you mean"],
        );
        one_error(
            &format!("{MINIMAL}colour = \"blue\"\n"),
            &["colour = \"blue\": unknown key `colour`", "fix: remove it"],
        );
        one_error(
            &format!("{MINIMAL}[bluegreen]\nkeep_blue = \"1m\"\n"),
            &["did you mean `blue_green`?"],
        );
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let errors = errors(
            "upstream = 1\nversion = \"v2\"\nstrategy = \"rolling\"\n[canary]\n\
             interval = 30\nsteps = [\"5%\", 100]\n[analysis]\nfailure_limit = -1\n",
        );
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn values_of_the_wrong_kind_say_how_to_write_them() {
        one_error(
            "upstream = \"api\"\nversion = 2\n",
            &[
                "version = 2: a whole number where a string is expected",
                "version = \"2\"",
            ],
        );
        one_error(
            &format!("{MINIMAL}strategy = \"blue_green\"\n"),
            &[
                "strategy = \"blue_green\": not a strategy",
                "did you mean `blue-green`?",
            ],
        );
        one_error(
            &format!("{MINIMAL}[canary]\ninterval = 30\n"),
            &["canary.interval = 30: a number without a unit", "\"30s\""],
        );
        one_error(
            &format!("{MINIMAL}[canary]\ninterval = \"1.5s\"\n"),
            &["canary.interval = \"1.5s\": not a duration", "1500ms"],
        );
        one_error(
            &format!("{MINIMAL}[canary]\nsteps = [\"5%\", 100]\n"),
            &["not every step is a number", "without quotes or `%`"],
        );
        one_error(
            &format!("{MINIMAL}[canary]\nsteps = 100\n"),
            &["a whole number where a list of percentages is expected"],
        );
        one_error(
            &format!("{MINIMAL}[canary]\nkey = \"ip\"\n"),
            &["canary.key = \"ip\": not a client key", "\"header:NAME\""],
        );
        one_error(
            &format!("{MINIMAL}[canary]\ninstances = -1\n"),
            &["canary.instances = -1: out of range"],
        );
        one_error(
            &format!("{MINIMAL}[analysis]\nmax_p99_ms = \"1s\"\n"),
            &["a string where a number is expected"],
        );
        one_error(
            &format!("{MINIMAL}[environment]\nWORKERS = 4\n"),
            &["environment.WORKERS = 4", "quote it: WORKERS = \"4\""],
        );
        one_error(
            &format!("{MINIMAL}canary = 5\n"),
            &[
                "canary = 5: a whole number where a section is expected",
                "[canary]",
            ],
        );
        one_error(
            &format!("{MINIMAL}[blue_green]\nkeep_blue = true\n"),
            &["a boolean where a duration is expected", "\"5m\""],
        );
    }

    #[test]
    fn a_syntax_error_gives_its_line() {
        one_error(
            "upstream = \"api\"\nversion = v2\n",
            &["not a TOML file", "at line 2"],
        );
    }

    #[test]
    fn strategies_are_named_as_written() {
        assert_eq!(parse_strategy("canary"), Ok(Strategy::Canary));
        assert_eq!(parse_strategy("blue-green"), Ok(Strategy::BlueGreen));
        let wrong = parse_strategy("bluegreen").unwrap_err();
        assert!(wrong.contains("did you mean `blue-green`?"), "{wrong}");
    }
}
