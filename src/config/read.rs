//! Typing: the merged, interpolated `toml::Table` → [`FileConfig`], section by section.
//!
//! serde stops at the first error, which would hide every other mistake in the file. So each
//! section (`[runtime]`, each `[listener.NAME]`, each route, each upstream, each backend, …) is
//! deserialized on its own, and within a section:
//!
//! 1. keys the struct does not have are reported (with the closest valid key) and removed;
//! 2. the section is deserialized; if that fails, every key is tried alone so each wrongly typed
//!    value is reported (with its path, via `serde_path_to_error`), and the section is built from
//!    the keys that typed.
//!
//! A value that could not be typed is marked failed, so validation does not report it again as
//! missing. Array entries that could not be typed are kept as defaults so that indexes in later
//! error messages still match the file.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::error::{closest, list, render, Issues, KeyPath};
use super::file::{
    fields_of, FileBackend, FileBackendTable, FileCertificate, FileConfig, FileHealth,
    FileListener, FileListenerTls, FileOutlier, FilePool, FileRetry, FileUpstream, FileUpstreamTls,
};

/// Types the whole document. `[env]` must already be gone (see `overlay::apply_env`).
pub(crate) fn read(mut root: toml::Table, issues: &mut Issues) -> FileConfig {
    let root_path = KeyPath::root();
    drop_unknown_keys::<FileConfig>(&mut root, &root_path, issues);
    let mut file = FileConfig {
        runtime: section(root.remove("runtime"), &root_path.key("runtime"), issues),
        limits: section(root.remove("limits"), &root_path.key("limits"), issues),
        timeouts: section(root.remove("timeouts"), &root_path.key("timeouts"), issues),
        log: section(root.remove("log"), &root_path.key("log"), issues),
        admin: section(root.remove("admin"), &root_path.key("admin"), issues),
        up: section(root.remove("up"), &root_path.key("up"), issues),
        compression: section(
            root.remove("compression"),
            &root_path.key("compression"),
            issues,
        ),
        ..FileConfig::default()
    };
    let listeners = root_path.key("listener");
    for (name, value) in named_tables(root.remove("listener"), &listeners, issues) {
        let listener = listener(value, &listeners.key(&name), issues);
        file.listener.insert(name, listener);
    }
    let upstreams = root_path.key("upstream");
    for (name, value) in named_tables(root.remove("upstream"), &upstreams, issues) {
        let upstream = upstream(value, &upstreams.key(&name), issues);
        file.upstream.insert(name, upstream);
    }
    let rate_limits = root_path.key("rate_limit");
    for (name, value) in named_tables(root.remove("rate_limit"), &rate_limits, issues) {
        let limit = section(Some(value), &rate_limits.key(&name), issues);
        file.rate_limit.insert(name, limit);
    }
    file
}

/// `[listener]`/`[upstream]`: a table of named tables.
fn named_tables(
    value: Option<toml::Value>,
    path: &KeyPath,
    issues: &mut Issues,
) -> Vec<(String, toml::Value)> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Table(table)) => table.into_iter().collect(),
        Some(other) => {
            issues.fail(
                path.clone(),
                render(&other),
                format!("`{path}` must be a table of named tables"),
                format!("write each one as its own table: [{path}.NAME]"),
            );
            Vec::new()
        }
    }
}

/// A table-valued key, typed as `T`; absent → `T::default()`.
fn section<T: DeserializeOwned + Default>(
    value: Option<toml::Value>,
    path: &KeyPath,
    issues: &mut Issues,
) -> T {
    match value {
        None => T::default(),
        Some(toml::Value::Table(table)) => typed(table, path, issues),
        Some(other) => {
            not_a_table(&other, path, issues);
            T::default()
        }
    }
}

fn not_a_table(value: &toml::Value, path: &KeyPath, issues: &mut Issues) {
    issues.fail(
        path.clone(),
        render(value),
        format!("expected a table, found {}", kind(value)),
        format!("write it as a table: [{path}] followed by its keys on their own lines"),
    );
}

fn listener(value: toml::Value, path: &KeyPath, issues: &mut Issues) -> FileListener {
    let mut table = match value {
        toml::Value::Table(table) => table,
        other => {
            not_a_table(&other, path, issues);
            return FileListener::default();
        }
    };
    let routes = table.remove("route");
    let tls = table.remove("tls");
    let group = match table.get("upstream") {
        Some(toml::Value::String(name)) => format!("[upstream.{name}]"),
        _ => "the [upstream.NAME] it sends to".to_owned(),
    };
    drop_misplaced_keys::<FileListener, FileUpstream>(
        &mut table,
        path,
        issues,
        ("listeners", "upstream groups"),
        &group,
    );
    let mut listener: FileListener = typed(table, path, issues);
    listener.route = array_of_tables(
        routes,
        &path.key("route"),
        issues,
        "write each route as [[{path}]] (double brackets), first match wins",
    );
    listener.tls = tls.map(|value| listener_tls(value, &path.key("tls"), issues));
    listener
}

/// `[listener.NAME.tls]` and its `[[…certificate]]` tables.
fn listener_tls(value: toml::Value, path: &KeyPath, issues: &mut Issues) -> FileListenerTls {
    let mut table = match value {
        toml::Value::Table(table) => table,
        other => {
            not_a_table(&other, path, issues);
            return FileListenerTls::default();
        }
    };
    let certificates = table.remove("certificate");
    let mut tls: FileListenerTls = typed(table, path, issues);
    tls.certificate = array_of_tables::<FileCertificate>(
        certificates,
        &path.key("certificate"),
        issues,
        "write each certificate as [[{path}]] (double brackets), the default first",
    );
    tls
}

/// An array of tables (`[[path]]`), each typed on its own; entries that are not tables are
/// reported and kept as defaults so later indexes still match the file. `fix` is said when the
/// key is not an array at all; `{path}` in it becomes the key.
fn array_of_tables<T: DeserializeOwned + Default>(
    value: Option<toml::Value>,
    path: &KeyPath,
    issues: &mut Issues,
    fix: &str,
) -> Vec<T> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let item_path = path.index(i);
                match item {
                    toml::Value::Table(table) => typed::<T>(table, &item_path, issues),
                    other => {
                        not_a_table(&other, &item_path, issues);
                        T::default()
                    }
                }
            })
            .collect(),
        Some(other) => {
            let name = path.0.last().map(|seg| match seg {
                super::error::Seg::Key(key) => key.clone(),
                super::error::Seg::Index(i) => i.to_string(),
            });
            issues.fail(
                path.clone(),
                render(&other),
                format!("`{}` must be an array of tables", name.unwrap_or_default()),
                fix.replace("{path}", &path.to_string()),
            );
            Vec::new()
        }
    }
}

fn upstream(value: toml::Value, path: &KeyPath, issues: &mut Issues) -> FileUpstream {
    let mut table = match value {
        toml::Value::Table(table) => table,
        other => {
            not_a_table(&other, path, issues);
            return FileUpstream::default();
        }
    };
    let backends = table.remove("backends");
    let pool = table.remove("pool");
    let tls = table.remove("tls");
    let health = table.remove("health");
    let outlier = table.remove("outlier");
    let retry = table.remove("retry");
    let mut upstream: FileUpstream = typed(table, path, issues);
    upstream.pool = section::<FilePool>(pool, &path.key("pool"), issues);
    upstream.tls = tls.map(|tls| section::<FileUpstreamTls>(Some(tls), &path.key("tls"), issues));
    upstream.health =
        health.map(|health| section::<FileHealth>(Some(health), &path.key("health"), issues));
    upstream.outlier = section::<FileOutlier>(outlier, &path.key("outlier"), issues);
    upstream.retry = section::<FileRetry>(retry, &path.key("retry"), issues);
    let backends_path = path.key("backends");
    upstream.backends = match backends {
        None => None,
        Some(toml::Value::Array(items)) => Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| backend(item, &backends_path.index(i), issues))
                .collect(),
        ),
        Some(other) => {
            issues.fail(
                backends_path,
                render(&other),
                format!("`backends` must be an array, found {}", kind(&other)),
                "write backends = [\"127.0.0.1:8001\", { address = \"127.0.0.1:8002\", weight = 2 }]",
            );
            None
        }
    };
    upstream
}

fn backend(value: toml::Value, path: &KeyPath, issues: &mut Issues) -> FileBackend {
    match value {
        toml::Value::String(address) => FileBackend::Address(address),
        toml::Value::Table(table) => {
            FileBackend::Table(typed::<FileBackendTable>(table, path, issues))
        }
        other => {
            issues.fail(
                path.clone(),
                render(&other),
                format!(
                    "a backend is an address string or a table, found {}",
                    kind(&other)
                ),
                "write \"127.0.0.1:8001\" or { address = \"127.0.0.1:8001\", weight = 2 }",
            );
            FileBackend::Table(FileBackendTable::default())
        }
    }
}

/// One table as `T`, every problem reported (see the module docs).
fn typed<T: DeserializeOwned + Default>(
    mut table: toml::Table,
    path: &KeyPath,
    issues: &mut Issues,
) -> T {
    drop_unknown_keys::<T>(&mut table, path, issues);
    if let Ok(value) = deserialize::<T>(table.clone()) {
        return value;
    }
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let single: toml::Table = [(key.clone(), table[&key].clone())].into_iter().collect();
        if let Err(error) = deserialize::<T>(single) {
            report_type_error(&error, &table, path, issues);
            table.remove(&key);
        }
    }
    deserialize::<T>(table).unwrap_or_default()
}

fn deserialize<T: DeserializeOwned>(
    table: toml::Table,
) -> Result<T, serde_path_to_error::Error<toml::de::Error>> {
    serde_path_to_error::deserialize(toml::Value::Table(table))
}

fn report_type_error(
    error: &serde_path_to_error::Error<toml::de::Error>,
    table: &toml::Table,
    path: &KeyPath,
    issues: &mut Issues,
) {
    let mut at = path.clone();
    let mut value = None::<&toml::Value>;
    for segment in error.path() {
        match segment {
            Segment::Map { key } => {
                value = match value {
                    None => table.get(key),
                    Some(parent) => parent.get(key.as_str()),
                };
                at = at.key(key);
            }
            Segment::Seq { index } => {
                value = value.and_then(|parent| parent.get(*index));
                at = at.index(*index);
            }
            Segment::Enum { .. } | Segment::Unknown => break,
        }
    }
    let (problem, fix) = type_problem(error.inner().message());
    issues.fail(at, value.map(render).unwrap_or_default(), problem, fix);
}

/// serde's "invalid type: integer `5`, expected a string" → ("expected a string, found an
/// integer", "write a string here").
fn type_problem(message: &str) -> (String, String) {
    let message = message.trim();
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    if let Some((found, expected)) = rest.and_then(|rest| rest.split_once(", expected ")) {
        let expected = match expected {
            "i64" | "u64" | "i32" | "u32" | "usize" => "an integer",
            "a sequence" => "an array",
            "a map" => "a table",
            e if e.starts_with("struct ") => "a table",
            e => e,
        };
        let found = match found.split_whitespace().next().unwrap_or("") {
            "string" => "a string",
            "integer" => "an integer",
            "floating" => "a float",
            "boolean" => "a boolean",
            "map" => "a table",
            "sequence" => "an array",
            other => other,
        };
        return (
            format!("expected {expected}, found {found}"),
            format!("write {expected} here"),
        );
    }
    (
        message.to_string(),
        "see docs/config.md for what this key takes".to_string(),
    )
}

/// Reports and removes the keys `Here` does not have but `There` does: a setting of another
/// kind of section (`there_name`, e.g. "upstream groups") written in one of `here_name` (e.g.
/// "listeners"), with where it goes (`there`, e.g. `[upstream.api]`). What is left unknown goes
/// to [`drop_unknown_keys`].
fn drop_misplaced_keys<Here: DeserializeOwned, There: DeserializeOwned>(
    table: &mut toml::Table,
    path: &KeyPath,
    issues: &mut Issues,
    (here_name, there_name): (&str, &str),
    there: &str,
) {
    let (here, elsewhere) = (fields_of::<Here>(), fields_of::<There>());
    let misplaced: Vec<String> = table
        .keys()
        .filter(|key| !here.contains(&key.as_str()) && elsewhere.contains(&key.as_str()))
        .cloned()
        .collect();
    for key in misplaced {
        let Some(value) = table.remove(&key) else {
            continue;
        };
        let shown = shown(&value);
        let mut fix = format!("move it to {there}");
        if key == "proxy_protocol" && here_name == "listeners" {
            // The group key writes PROXY headers to backends; the listener's reads them.
            fix.push_str(
                "; to accept PROXY headers from a load balancer in front of this listener, \
                 write `accept_proxy_protocol = true` here (with its addresses in \
                 `trusted_proxies`)",
            );
        }
        issues.fail(
            path.key(&key),
            shown,
            format!("`{key}` is a setting of {there_name}, not of {here_name}"),
            fix,
        );
    }
}

/// A value as an error shows it: a table is not repeated (the key names it).
fn shown(value: &toml::Value) -> String {
    if value.is_table() {
        String::new()
    } else {
        render(value)
    }
}

/// Reports and removes the keys `T` does not have.
fn drop_unknown_keys<T: DeserializeOwned>(
    table: &mut toml::Table,
    path: &KeyPath,
    issues: &mut Issues,
) {
    let fields = fields_of::<T>();
    let unknown: Vec<String> = table
        .keys()
        .filter(|key| !fields.contains(&key.as_str()))
        .cloned()
        .collect();
    let valid = list(fields.iter().copied().filter(|field| *field != "env"));
    for key in unknown {
        let Some(value) = table.remove(&key) else {
            continue;
        };
        let shown = shown(&value);
        let fix = match closest(&key, fields.iter().copied()) {
            Some(candidate) => format!("did you mean `{candidate}`? (valid keys here: {valid})"),
            None => format!("remove it (valid keys here: {valid})"),
        };
        issues.fail(path.key(&key), shown, format!("unknown key `{key}`"), fix);
    }
}

/// "a string", "an array", … for messages.
fn kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::{FileDuration, FileScalar};

    fn read_text(text: &str) -> (FileConfig, Issues) {
        let mut issues = Issues::default();
        let file = read(text.parse().expect("valid TOML"), &mut issues);
        (file, issues)
    }

    fn summary(issues: &Issues) -> Vec<(String, String, String)> {
        issues
            .list()
            .iter()
            .map(|i| (i.path.to_string(), i.value.clone(), i.problem.clone()))
            .collect()
    }

    #[test]
    fn unknown_keys_are_reported_with_the_closest_valid_key() {
        let (file, issues) = read_text(
            "[listener.http]\nadress = \"127.0.0.1:8080\"\nupstream = \"api\"\n[runtim]\n",
        );
        let list = issues.list();
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0].path.to_string(), "runtim");
        assert!(
            list[0].fix.starts_with("did you mean `runtime`?"),
            "{}",
            list[0].fix
        );
        assert!(
            !list[0].fix.contains("`env`"),
            "env is not offered: {}",
            list[0].fix
        );
        assert_eq!(list[1].path.to_string(), "listener.http.adress");
        assert_eq!(list[1].value, "\"127.0.0.1:8080\"");
        assert_eq!(list[1].problem, "unknown key `adress`");
        assert!(
            list[1].fix.starts_with("did you mean `address`?"),
            "{}",
            list[1].fix
        );
        assert_eq!(
            file.listener["http"].upstream.as_deref(),
            Some("api"),
            "rest still read"
        );
    }

    #[test]
    fn a_group_setting_on_a_listener_is_sent_to_the_group() {
        let (_, issues) = read_text(
            "[listener.db]\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\n\
             upstream = \"pg\"\nproxy_protocol = \"v2\"\n",
        );
        let list = issues.list();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].path.to_string(), "listener.db.proxy_protocol");
        assert_eq!(
            list[0].problem,
            "`proxy_protocol` is a setting of upstream groups, not of listeners"
        );
        assert_eq!(
            list[0].fix,
            "move it to [upstream.pg]; to accept PROXY headers from a load balancer in front of \
             this listener, write `accept_proxy_protocol = true` here (with its addresses in \
             `trusted_proxies`)"
        );
        assert!(!list[0].fix.contains("did you mean"), "{}", list[0].fix);
    }

    #[test]
    fn every_wrongly_typed_key_in_a_section_is_reported() {
        let (file, issues) = read_text(
            "[runtime]\ndriver = 1\npin_workers = [true]\ndrain_timeout = \"5s\"\n\
             [up]\ncommand = [\"api\", 5]\n",
        );
        assert_eq!(
            summary(&issues),
            [
                (
                    "runtime.driver".into(),
                    "1".into(),
                    "expected a string, found an integer".into()
                ),
                (
                    "runtime.pin_workers".into(),
                    "[true]".into(),
                    "expected true or false, found an array".into()
                ),
                (
                    "up.command[1]".into(),
                    "5".into(),
                    "expected a string, found an integer".into()
                ),
            ]
        );
        assert_eq!(issues.list()[0].fix, "write a string here");
        assert_eq!(
            file.runtime.drain_timeout,
            Some(FileDuration(FileScalar::Str("5s".into()))),
            "well-typed keys of the same section survive"
        );
    }

    #[test]
    fn routes_and_backends_are_typed_one_by_one() {
        let (file, issues) = read_text(
            r#"
            [[listener.http.route]]
            upstream = 1
            [[listener.http.route]]
            upstream = "api"
            hots = "x"
            [upstream.api]
            backends = ["127.0.0.1:1", { address = "127.0.0.1:2", wieght = 2 }, 7]
            pool = { max_idle_per_backend = "lots", idle_timeout = true }
            "#,
        );
        let keys: Vec<String> = issues.list().iter().map(|i| i.path.to_string()).collect();
        assert_eq!(
            keys,
            [
                "listener.http.route[0].upstream",
                "listener.http.route[1].hots",
                "upstream.api.pool.idle_timeout",
                "upstream.api.backends[1].wieght",
                "upstream.api.backends[2]",
            ]
        );
        assert_eq!(file.listener["http"].route.len(), 2);
        assert_eq!(
            file.upstream["api"].backends.as_ref().map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn a_single_route_table_asks_for_double_brackets() {
        let (_, issues) = read_text("[listener.http.route]\nupstream = \"api\"\n");
        let issue = &issues.list()[0];
        assert_eq!(issue.path.to_string(), "listener.http.route");
        assert!(
            issue.fix.contains("[[listener.http.route]]"),
            "{}",
            issue.fix
        );
    }

    #[test]
    fn sections_that_are_not_tables() {
        let (_, issues) = read_text("runtime = 4\nlistener = \"http\"\n");
        let keys: Vec<String> = issues.list().iter().map(|i| i.path.to_string()).collect();
        assert_eq!(keys, ["runtime", "listener"]);
        assert_eq!(
            issues.list()[0].problem,
            "expected a table, found an integer"
        );
    }
}
