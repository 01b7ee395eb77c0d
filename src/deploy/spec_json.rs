//! The deployment spec as the admin API takes it (`POST /api/deploy`): the JSON of a
//! [`DeploySpec`] — the shape `GET /api/deploy` shows under `spec`, durations in seconds — in
//! which every key but `upstream` and `version` may be left out for its default.
//!
//! Flow: the body's keys are laid over the JSON of the defaults, section by section (a key
//! unknown to the spec is refused, with the nearest known one), and the result is typed with
//! serde; the admin API then checks it ([`super::spec_check::check`]). `lbproxy deploy start`
//! sends a whole spec, read from its file and flags.

use super::spec::{AnalysisSpec, BlueGreenSpec, CanarySpec, DeploySpec, Strategy};
use super::spec_check::{problem, SPEC};
use crate::config::{did_you_mean, list};
use serde_json::{Map, Value};

const EXAMPLE: &str = "send a JSON object, e.g. {\"upstream\": \"api\", \"version\": \"v2\", \
                       \"canary\": {\"steps\": [5, 25, 50, 100], \"interval\": 30}} (durations \
                       in seconds; what is left out takes its default)";

/// The spec in `body`; `Err`: every problem, each with its fix.
pub fn from_json(body: &[u8]) -> Result<DeploySpec, Vec<String>> {
    let one =
        |key: &str, value: &str, what: &str, fix: &str| vec![problem(SPEC, key, value, what, fix)];
    let given: Value = serde_json::from_slice(body)
        .map_err(|e| one("", "", &format!("the body is not JSON ({e})"), EXAMPLE))?;
    let Value::Object(given) = given else {
        return Err(one("", &shown(&given), "not a JSON object", EXAMPLE));
    };
    let mut merged = defaults();
    let top: Vec<String> = ["upstream", "version"]
        .into_iter()
        .map(str::to_owned)
        .chain(merged.keys().cloned())
        .collect();
    let mut errors = Vec::new();
    for (key, value) in given {
        match (merged.get_mut(&key), value) {
            (Some(Value::Object(section)), Value::Object(fields)) if key != "environment" => {
                for (field, value) in fields {
                    if let Some(slot) = section.get_mut(&field) {
                        *slot = value;
                        continue;
                    }
                    let known: Vec<&str> = section.keys().map(String::as_str).collect();
                    errors.push(unknown(&format!("{key}.{field}"), &field, &value, &known));
                }
            }
            (Some(Value::Object(_)), value) if key != "environment" => errors.push(problem(
                SPEC,
                &key,
                &shown(&value),
                "not an object",
                &format!("send \"{key}\" as an object of its settings, or leave it out"),
            )),
            (Some(slot), value) => *slot = value,
            (None, value) if key == "upstream" || key == "version" => {
                merged.insert(key, value);
            }
            (None, value) => {
                let known: Vec<&str> = top.iter().map(String::as_str).collect();
                errors.push(unknown(&key, &key, &value, &known));
            }
        }
    }
    for (key, example) in [("upstream", "\"api\""), ("version", "\"v2\"")] {
        if !merged.contains_key(key) {
            errors.push(problem(
                SPEC,
                key,
                "",
                "missing: it has no default",
                &format!("send \"{key}\": {example}"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_path_to_error::deserialize(Value::Object(merged)).map_err(|e| {
        let key = e.path().to_string();
        one(&key, "", &e.inner().to_string(), EXAMPLE)
    })
}

/// The JSON of a spec with every default, without `upstream` and `version`.
fn defaults() -> Map<String, Value> {
    let spec = DeploySpec {
        upstream: String::new(),
        version: String::new(),
        strategy: Strategy::Canary,
        environment: Default::default(),
        canary: CanarySpec::default(),
        analysis: AnalysisSpec::default(),
        blue_green: BlueGreenSpec::default(),
    };
    let Ok(Value::Object(mut map)) = serde_json::to_value(spec) else {
        unreachable!("a spec is a JSON object");
    };
    map.remove("upstream");
    map.remove("version");
    map
}

fn unknown(key: &str, name: &str, value: &Value, known: &[&str]) -> String {
    let hint = did_you_mean(name, known.iter().copied());
    let valid = list(known.iter().copied());
    let fix = if hint.is_empty() {
        format!("remove it (valid keys here: {valid})")
    } else {
        format!("{hint}(valid keys here: {valid})")
    };
    problem(
        SPEC,
        key,
        &shown(value),
        &format!("unknown key `{name}`"),
        &fix,
    )
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    text.chars().take(60).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashKey;
    use std::time::Duration;

    #[test]
    fn the_group_and_version_are_enough() {
        let spec = from_json(br#"{"upstream": "api", "version": "v2"}"#).unwrap();
        assert_eq!(
            (spec.upstream.as_str(), spec.version.as_str()),
            ("api", "v2")
        );
        assert_eq!(spec.strategy, Strategy::Canary);
        assert_eq!(spec.canary, CanarySpec::default());
        assert_eq!(spec.analysis, AnalysisSpec::default());
    }

    #[test]
    fn given_keys_override_the_defaults_one_by_one() {
        let spec = from_json(
            br#"{"upstream": "api", "version": "v2", "strategy": "blue-green",
                 "environment": {"API_VERSION": "2"},
                 "canary": {"interval": 60, "key": "cookie:session"},
                 "analysis": {"max_p99_ms": 250},
                 "blue_green": {"keep_blue": 90.5}}"#,
        )
        .unwrap();
        assert_eq!(spec.strategy, Strategy::BlueGreen);
        assert_eq!(spec.environment["API_VERSION"], "2");
        assert_eq!(spec.canary.interval, Duration::from_secs(60));
        assert_eq!(spec.canary.key, HashKey::Cookie("session".into()));
        assert_eq!(spec.canary.steps, CanarySpec::default().steps, "kept");
        assert_eq!(spec.analysis.max_p99_ms, 250.0);
        assert_eq!(spec.analysis.min_requests, 50, "kept");
        assert_eq!(spec.blue_green.keep_blue, Duration::from_millis(90_500));
    }

    #[test]
    fn a_whole_spec_goes_there_and_back() {
        let mut spec = from_json(br#"{"upstream": "api", "version": "v2"}"#).unwrap();
        spec.canary.steps = vec![1.0, 100.0];
        spec.environment.insert("A".into(), "b".into());
        let json = serde_json::to_vec(&spec).unwrap();
        assert_eq!(from_json(&json).unwrap(), spec);
    }

    #[test]
    fn unknown_and_missing_keys_are_each_reported() {
        let errors = from_json(br#"{"upstrem": "api", "canary": {"step": [100]}}"#).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        let said = |parts: &[&str]| {
            assert!(
                errors.iter().any(|e| parts.iter().all(|p| e.contains(p))),
                "{parts:?} in {errors:#?}"
            );
        };
        said(&[
            "upstrem = \"api\": unknown key `upstrem`",
            "did you mean `upstream`?",
        ]);
        said(&[
            "canary.step = [100]: unknown key `step`",
            "did you mean `steps`?",
        ]);
        said(&["error: deployment spec: upstream: missing"]);
        said(&["version: missing", "\"version\": \"v2\""]);
    }

    #[test]
    fn values_of_the_wrong_kind_name_their_key() {
        let errors =
            from_json(br#"{"upstream": "api", "version": "v2", "canary": {"interval": "30s"}}"#)
                .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("canary.interval"), "{}", errors[0]);
        assert!(errors[0].contains("in seconds"), "{}", errors[0]);
        let errors =
            from_json(br#"{"upstream": "api", "version": "v2", "canary": 5}"#).unwrap_err();
        assert!(
            errors[0].contains("canary = 5: not an object"),
            "{errors:#?}"
        );
        for body in [&b"upstream=api"[..], b"[1, 2]"] {
            let errors = from_json(body).unwrap_err();
            assert!(errors[0].contains("{\"upstream\": \"api\""), "{errors:#?}");
        }
    }
}
