//! Error plumbing shared by every configuration stage.
//!
//! Stages record [`Issue`]s against a structured [`KeyPath`] into one [`Issues`] collector and keep
//! going, so a single load reports every problem. [`Issues::finish`] then turns them into the
//! public [`ConfigErrors`]: it points keys set by the `--env` overlay at `env.NAME.…`, notes the
//! `${VAR}` text a bad value came from, and puts the errors in file order using the source
//! positions from `source`.
//!
//! A value that failed to type or to interpolate is marked failed: later errors about the same key
//! (or a key under it) would only repeat the first one, so they are dropped.

use std::collections::BTreeMap;
use std::fmt;

pub(crate) use super::key_path::{is_bare_key, quote, KeyPath, Seg};
use super::source::Positions;
use super::{ConfigError, ConfigErrors};

impl fmt::Display for ConfigError {
    /// `error: FILE: KEY = VALUE: PROBLEM` then `  fix: FIX`; `KEY = VALUE` shrinks to `KEY` for a
    /// missing value and disappears when the problem is not about one key (a syntax error).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}: ", self.file)?;
        match (self.key.is_empty(), self.value.is_empty()) {
            (false, false) => write!(f, "{} = {}: ", self.key, self.value)?,
            (false, true) => write!(f, "{}: ", self.key)?,
            (true, false) => write!(f, "{}: ", self.value)?,
            (true, true) => {}
        }
        write!(f, "{}\n  fix: {}", self.problem, self.fix)
    }
}

impl fmt::Display for ConfigErrors {
    /// Every error as a block, blocks separated by a blank line, then `N errors in FILE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            write!(f, "{error}\n\n")?;
        }
        let count = self.0.len();
        let noun = if count == 1 { "error" } else { "errors" };
        match self.0.first() {
            Some(first) => write!(f, "{count} {noun} in {}", first.file),
            None => write!(f, "0 errors"),
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// A value as TOML, shortened to one readable line.
pub(crate) fn render(value: &toml::Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string().replace('\n', " ");
    if text.chars().count() <= MAX {
        return text;
    }
    let mut short: String = text.chars().take(MAX).collect();
    short.push('…');
    short
}

/// One problem, before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: KeyPath,
    /// As written, already rendered as TOML (`"2s"`, `0`); empty for a missing value.
    pub value: String,
    pub problem: String,
    pub fix: String,
}

/// Collects issues from every stage.
#[derive(Debug, Default)]
pub(crate) struct Issues {
    list: Vec<Issue>,
    failed: Vec<KeyPath>,
}

impl Issues {
    /// Records a problem, unless it is about a value already reported as failed.
    pub fn push(
        &mut self,
        path: KeyPath,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        if self.failed.iter().any(|failed| failed.contains(&path)) {
            return;
        }
        self.list.push(Issue {
            path,
            value: value.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// Records a problem and marks the value failed: later problems at or under `path` are
    /// consequences of this one and are not reported.
    pub fn fail(
        &mut self,
        path: KeyPath,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(path.clone(), value, problem, fix);
        self.mark_failed(path);
    }

    /// Marks a value failed without a message of its own (its problems were already pushed).
    pub fn mark_failed(&mut self, path: KeyPath) {
        self.failed.push(path);
    }

    /// `path` (or a value under it) was marked failed.
    pub fn has_failed(&self, path: &KeyPath) -> bool {
        self.failed.iter().any(|failed| path.contains(failed))
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    #[cfg(test)]
    pub fn list(&self) -> &[Issue] {
        &self.list
    }

    /// The public errors, in file order. `positions` (when the source could be indexed) orders
    /// them and tells which keys the `env` overlay set; `interpolated` maps a key to the
    /// `${VAR}` text its value was expanded from.
    pub fn finish(
        self,
        file: &str,
        positions: Option<&Positions>,
        env: Option<&str>,
        interpolated: &BTreeMap<KeyPath, String>,
    ) -> ConfigErrors {
        let mut placed: Vec<(usize, ConfigError)> = self
            .list
            .into_iter()
            .map(|issue| {
                let (path, offset) = match positions {
                    Some(positions) => positions.locate(&issue.path, env),
                    None => (issue.path.clone(), 0),
                };
                let mut value = issue.value;
                if let Some(raw) = interpolated.get(&issue.path) {
                    if !value.is_empty() {
                        value = format!("{value} (from {})", quote(raw));
                    }
                }
                let error = ConfigError {
                    file: file.to_string(),
                    key: path.to_string(),
                    value,
                    problem: issue.problem,
                    fix: issue.fix,
                };
                (offset, error)
            })
            .collect();
        placed.sort_by_key(|(offset, _)| *offset);
        ConfigErrors(placed.into_iter().map(|(_, error)| error).collect())
    }
}

/// The candidate closest to `word` when it is plausibly a typo of it: small edit distance
/// (ignoring case, `-` versus `_`), or `word` is part of the candidate (`uring` for `io_uring`).
/// A word that merely contains a candidate is another name, not a typo of it: `proxy_protocol`
/// is not `protocol`.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word = norm(word);
    if word.is_empty() {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let cand = norm(candidate);
        let substring = word.len() >= 3 && cand.contains(&word);
        let distance = if substring {
            cand.len().abs_diff(word.len()).min(1)
        } else {
            edit_distance(&word, &cand)
        };
        let limit = (word.len().min(cand.len()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Edit distance over chars, a swap of two neighbours counting as one edit (optimal string
/// alignment): `atuo` is one edit from `auto`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j] = distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// "did you mean `x`? " or nothing.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    match closest(word, candidates) {
        Some(candidate) => format!("did you mean `{candidate}`? "),
        None => String::new(),
    }
}

/// `a`, `b`, `c` for listing valid choices.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(key: &str, value: &str) -> ConfigError {
        ConfigError {
            file: "/etc/lbproxy/lbproxy.toml".into(),
            key: key.into(),
            value: value.into(),
            problem: "not an IP:PORT socket address".into(),
            fix: "write it as IP:PORT, e.g. \"127.0.0.1:8001\"".into(),
        }
    }

    #[test]
    fn display_of_one_error() {
        let e = error("upstream.api.backends[1].address", "\"127.0.0.1:80x1\"");
        assert_eq!(
            e.to_string(),
            "error: /etc/lbproxy/lbproxy.toml: upstream.api.backends[1].address = \
             \"127.0.0.1:80x1\": not an IP:PORT socket address\n  \
             fix: write it as IP:PORT, e.g. \"127.0.0.1:8001\""
        );
        let missing = error("listener.http.address", "");
        assert!(missing
            .to_string()
            .starts_with("error: /etc/lbproxy/lbproxy.toml: listener.http.address: not"));
        let keyless = error("", "");
        assert!(keyless
            .to_string()
            .starts_with("error: /etc/lbproxy/lbproxy.toml: not an IP:PORT"));
    }

    #[test]
    fn display_of_many_errors_ends_with_a_count() {
        let errors = ConfigErrors(vec![error("a", "1"), error("b", "2")]);
        let text = errors.to_string();
        assert!(
            text.ends_with("\n\n2 errors in /etc/lbproxy/lbproxy.toml"),
            "{text}"
        );
        assert_eq!(text.matches("error: ").count(), 2);
        let one = ConfigErrors(vec![error("a", "1")]);
        assert!(one
            .to_string()
            .ends_with("1 error in /etc/lbproxy/lbproxy.toml"));
    }

    #[test]
    fn key_paths_quote_keys_that_are_not_bare() {
        let path = KeyPath::root()
            .key("listener")
            .key("my site")
            .key("route")
            .index(2)
            .key("host");
        assert_eq!(path.to_string(), "listener.\"my site\".route[2].host");
        assert!(KeyPath::root().key("listener").contains(&path));
        assert!(!path.contains(&KeyPath::root().key("listener")));
    }

    #[test]
    fn failed_values_suppress_their_consequences() {
        let mut issues = Issues::default();
        let at = KeyPath::root().key("up").key("ready_timeout");
        issues.fail(at.clone(), "x", "first", "fix");
        issues.push(at.clone(), "x", "consequence", "fix");
        issues.push(
            KeyPath::root().key("up").key("ready_path"),
            "y",
            "other",
            "fix",
        );
        let problems: Vec<_> = issues.list().iter().map(|i| i.problem.as_str()).collect();
        assert_eq!(problems, ["first", "other"]);
    }

    #[test]
    fn suggestions_catch_typos_but_not_strangers() {
        let keys = ["address", "protocol", "upstream", "route"];
        assert_eq!(closest("adress", keys), Some("address"));
        assert_eq!(closest("routes", keys), Some("route"));
        assert_eq!(closest("Upstream", keys), Some("upstream"));
        assert_eq!(closest("weight", keys), None);
        assert_eq!(closest("proxy_protocol", keys), None);
        assert_eq!(closest("upstream_group", keys), None);
        assert_eq!(
            closest("uring", ["auto", "io_uring", "legacy"]),
            Some("io_uring")
        );
        assert_eq!(
            closest("round-robin", ["round_robin", "weighted"]),
            Some("round_robin")
        );
        assert_eq!(closest("atuo", ["auto"]), Some("auto"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("prot", "port"), 1);
    }

    #[test]
    fn long_values_are_shortened() {
        let long = toml::Value::String("x".repeat(100));
        let shown = render(&long);
        assert!(shown.ends_with('…'));
        assert_eq!(shown.chars().count(), 61);
        assert_eq!(render(&toml::Value::Integer(3)), "3");
    }
}
