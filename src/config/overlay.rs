//! Environment overlays and `${VAR}` interpolation: the steps between parsing and typing.
//!
//! 1. [`apply_env`] takes `[env]` out of the document and, for `--env NAME`, deep-merges
//!    `[env.NAME]` over what is left: tables merge key by key, any other value (arrays included)
//!    replaces the base's. The base never sees `[env]`, so typing does not have to know about it.
//! 2. [`interpolate`] expands `${VAR}` and `${VAR:-default}` in every string value of the merged
//!    document; `$$` is a literal `$`, and a `$` followed by anything else is kept as is. A
//!    variable that is unset (or set but empty, as in the shell) uses its default; one with no
//!    default is an error naming the key and the variable.
//!
//! Environment variables are read through a lookup function so tests never touch the process
//! environment.

use std::collections::BTreeMap;

use super::error::{list, quote, Issues, KeyPath};

/// Removes `[env]` from `root` and merges `[env.NAME]` over it when `env` is `Some(NAME)`.
pub(crate) fn apply_env(root: &mut toml::Table, env: Option<&str>, issues: &mut Issues) {
    let envs_path = KeyPath::root().key("env");
    let envs = match root.remove("env") {
        None => toml::Table::new(),
        Some(toml::Value::Table(envs)) => envs,
        Some(other) => {
            issues.push(
                envs_path.clone(),
                super::error::render(&other),
                "`env` must be a table of overlays",
                "write each overlay as a table: [env.prod] followed by the keys it changes",
            );
            toml::Table::new()
        }
    };
    let mut overlays = BTreeMap::new();
    for (name, value) in envs {
        match value {
            toml::Value::Table(table) => {
                overlays.insert(name, table);
            }
            other => issues.push(
                envs_path.key(&name),
                super::error::render(&other),
                "an environment overlay must be a table",
                format!("write it as a table: [env.{name}] followed by the keys it changes"),
            ),
        }
    }
    let Some(name) = env else { return };
    match overlays.remove(name) {
        Some(overlay) => merge(root, overlay),
        None => {
            let defined: Vec<&str> = overlays.keys().map(String::as_str).collect();
            let fix = if defined.is_empty() {
                format!("this file defines no environments: add an [env.{name}] table, or leave out --env")
            } else {
                format!(
                    "{}use one of the environments this file defines: {}",
                    super::error::did_you_mean(name, defined.iter().copied()),
                    list(defined.iter().copied())
                )
            };
            issues.push(
                envs_path,
                quote(name),
                format!("--env {name} was given but there is no [env.{name}] overlay"),
                fix,
            );
        }
    }
}

/// Deep merge: tables key by key, everything else replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Expands `${VAR}` in every string value. Returns, for each string that changed, its text as
/// written, so errors about the result can show where it came from. A string that fails to
/// expand is reported and marked failed (left as written).
pub(crate) fn interpolate(
    root: &mut toml::Table,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> BTreeMap<KeyPath, String> {
    let mut written = BTreeMap::new();
    for (key, value) in root.iter_mut() {
        walk(
            value,
            &KeyPath::root().key(key),
            lookup,
            issues,
            &mut written,
        );
    }
    written
}

fn walk(
    value: &mut toml::Value,
    path: &KeyPath,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
    written: &mut BTreeMap<KeyPath, String>,
) {
    match value {
        toml::Value::String(text) if text.contains('$') => match expand(text, lookup) {
            Ok(expanded) => {
                if expanded != *text {
                    written.insert(path.clone(), std::mem::replace(text, expanded));
                }
            }
            Err(problems) => {
                for (problem, fix) in problems {
                    issues.push(path.clone(), quote(text), problem, fix);
                }
                issues.mark_failed(path.clone());
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(i), lookup, issues, written);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                walk(item, &path.key(key), lookup, issues, written);
            }
        }
        _ => {}
    }
}

/// Expands one string; every problem in it is returned as (problem, fix).
fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(String, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(close) = inner.find('}') else {
                problems.push((
                    "`${` without a closing `}`".to_string(),
                    "close the reference as ${NAME} (write $$ for a literal $)".to_string(),
                ));
                rest = "";
                break;
            };
            let reference = &inner[..close];
            rest = &inner[close + 1..];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if !is_variable_name(name) {
                problems.push((
                    format!("`${{{reference}}}` is not a valid variable reference"),
                    "write ${NAME} or ${NAME:-default}; NAME is letters, digits and _, not \
                     starting with a digit"
                        .to_string(),
                ));
                continue;
            }
            match (lookup(name), default) {
                (Some(value), _) if !value.is_empty() => out.push_str(&value),
                (_, Some(default)) => out.push_str(default),
                (Some(empty), None) => out.push_str(&empty),
                (None, None) => problems.push((
                    format!("environment variable {name} is not set"),
                    format!(
                        "export {name} before starting lbproxy (systemd: Environment= or \
                         EnvironmentFile= in the unit), or give a default: ${{{name}:-value}}"
                    ),
                )),
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn table(text: &str) -> toml::Table {
        text.parse().expect("valid TOML")
    }

    #[test]
    fn overlay_merges_tables_and_replaces_other_values() {
        let mut root = table(
            r#"
            [listener.http]
            address = "127.0.0.1:8080"
            upstream = "api"
            [upstream.api]
            backends = ["127.0.0.1:8001", "127.0.0.1:8002"]
            [env.prod.listener.http]
            address = "0.0.0.0:80"
            [env.prod.upstream.api]
            backends = ["10.0.0.1:8001"]
            [env.dev.runtime]
            workers = 1
            "#,
        );
        let mut issues = Issues::default();
        apply_env(&mut root, Some("prod"), &mut issues);
        assert!(issues.is_empty());
        assert!(!root.contains_key("env"), "[env] is removed");
        assert!(
            !root.contains_key("runtime"),
            "other overlays are not applied"
        );
        let http = &root["listener"]["http"];
        assert_eq!(http["address"].as_str(), Some("0.0.0.0:80"));
        assert_eq!(
            http["upstream"].as_str(),
            Some("api"),
            "untouched keys stay"
        );
        let backends = root["upstream"]["api"]["backends"]
            .as_array()
            .expect("array");
        assert_eq!(backends.len(), 1, "arrays are replaced, not appended");
    }

    #[test]
    fn without_env_the_overlays_are_just_removed() {
        let mut root = table("[runtime]\nworkers = 2\n[env.prod.runtime]\nworkers = 8\n");
        let mut issues = Issues::default();
        apply_env(&mut root, None, &mut issues);
        assert!(issues.is_empty());
        assert_eq!(root["runtime"]["workers"].as_integer(), Some(2));
        assert!(!root.contains_key("env"));
    }

    #[test]
    fn unknown_env_lists_the_defined_ones() {
        let mut root = table("[env.prod]\n[env.staging]\n");
        let mut issues = Issues::default();
        apply_env(&mut root, Some("stagin"), &mut issues);
        let issue = &issues.list()[0];
        assert_eq!(issue.path.to_string(), "env");
        assert_eq!(issue.value, "\"stagin\"");
        assert!(
            issue.problem.contains("no [env.stagin] overlay"),
            "{}",
            issue.problem
        );
        assert!(
            issue.fix.contains("did you mean `staging`?"),
            "{}",
            issue.fix
        );
        assert!(issue.fix.contains("`prod`, `staging`"), "{}", issue.fix);

        let mut bare = table("");
        let mut issues = Issues::default();
        apply_env(&mut bare, Some("prod"), &mut issues);
        assert!(issues.list()[0].fix.contains("defines no environments"));
    }

    #[test]
    fn interpolation_with_defaults_and_escapes() {
        let lookup = vars(&[("HOST", "10.0.0.5"), ("EMPTY", "")]);
        let ok = |text: &str| expand(text, &lookup).expect(text);
        assert_eq!(ok("${HOST}:8001"), "10.0.0.5:8001");
        assert_eq!(ok("${PORT:-8080}"), "8080");
        assert_eq!(ok("${HOST:-127.0.0.1}"), "10.0.0.5");
        assert_eq!(ok("${EMPTY:-fallback}"), "fallback");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("${UNSET:-}"), "");
        assert_eq!(ok("cost $$5"), "cost $5");
        assert_eq!(ok("$$${HOST}"), "$10.0.0.5");
        assert_eq!(ok("$HOME stays"), "$HOME stays");
        assert_eq!(ok("trailing $"), "trailing $");
    }

    #[test]
    fn interpolation_errors_name_the_variable() {
        let lookup = vars(&[]);
        let problems = expand("${A}-${B:-x}-${C}", &lookup).unwrap_err();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].0, "environment variable A is not set");
        assert!(problems[1].1.contains("export C"), "{}", problems[1].1);
        assert!(problems[1].1.contains("${C:-value}"), "{}", problems[1].1);
        assert!(expand("${1X}", &lookup).unwrap_err()[0]
            .0
            .contains("not a valid"));
        assert!(expand("${OPEN", &lookup).unwrap_err()[0]
            .0
            .contains("closing"));
    }

    #[test]
    fn interpolation_walks_every_string_and_remembers_the_original() {
        let mut root = table(
            r#"
            [listener.http]
            address = "${LISTEN}"
            [up]
            command = ["api", "--token", "${TOKEN}"]
            "#,
        );
        let lookup = vars(&[("LISTEN", "0.0.0.0:80")]);
        let mut issues = Issues::default();
        let written = interpolate(&mut root, &lookup, &mut issues);
        assert_eq!(
            root["listener"]["http"]["address"].as_str(),
            Some("0.0.0.0:80")
        );
        let address = KeyPath::root().key("listener").key("http").key("address");
        assert_eq!(written.get(&address).map(String::as_str), Some("${LISTEN}"));
        let issue = &issues.list()[0];
        assert_eq!(issue.path.to_string(), "up.command[2]");
        assert_eq!(issue.value, "\"${TOKEN}\"");
        assert_eq!(issues.list().len(), 1, "the failure marker adds no error");
    }
}
