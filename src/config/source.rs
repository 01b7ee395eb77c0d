//! The configuration text: parsing it as TOML, and knowing where each key was written.
//!
//! [`parse`] turns the text into a `toml::Table`; a syntax error is fatal (nothing after it can be
//! trusted) and is reported with its line and column. [`Positions`] indexes the same text by key
//! path → byte offset, so errors found later (on the merged, typed values, which carry no spans)
//! can be sorted into file order and keys set by an `[env.NAME]` overlay can be named as such.
//!
//! The index is built by deserializing the text into a tree whose nodes ask toml for their span.
//! toml gives spans only to values it has one for (implicit tables such as `listener` in
//! `[listener.http]` have none), so the visitor accepts both answers. If indexing fails for any
//! reason the errors are still reported, in the order they were found.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::key_path::{KeyPath, Seg};
use super::ConfigError;

/// Parses the text as a TOML document. The error (line and column in the problem) is the only one
/// reported: after a syntax error the rest of the document cannot be read reliably.
pub(crate) fn parse(text: &str, file: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
        ConfigError {
            file: file.to_string(),
            key: String::new(),
            value: String::new(),
            problem: format!(
                "invalid TOML at line {line}, column {column}: {}",
                error.message().trim().replace('\n', "; ")
            ),
            fix: format!(
                "correct the TOML syntax of line {line} (`{source_line}`); \
                 strings need double quotes, tables are written [name]"
            ),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Byte offset of every value in the document, by key path.
#[derive(Debug)]
pub(crate) struct Positions {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    start: Option<usize>,
    children: Children,
}

#[derive(Debug, Default)]
enum Children {
    #[default]
    Leaf,
    Table(BTreeMap<String, Node>),
    Array(Vec<Node>),
}

/// Deepest node on a path: how many segments matched, and the node.
struct Found<'a> {
    depth: usize,
    node: &'a Node,
}

impl Positions {
    /// `None` when the text cannot be indexed (it is then reported unsorted).
    pub fn index(text: &str) -> Option<Positions> {
        let root = toml::from_str::<Node>(text).ok()?;
        Some(Positions { root })
    }

    fn find(&self, path: &[Seg]) -> Found<'_> {
        let mut node = &self.root;
        let mut depth = 0;
        for seg in path {
            let next = match (seg, &node.children) {
                (Seg::Key(key), Children::Table(table)) => table.get(key),
                (Seg::Index(i), Children::Array(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(next) => {
                    node = next;
                    depth += 1;
                }
                None => break,
            }
        }
        Found { depth, node }
    }

    /// Where an error about `path` (a key of the merged configuration) should point: the key as
    /// written (under `env.NAME.` when the `--env NAME` overlay set it) and the byte offset of the
    /// nearest value written on that path.
    pub fn locate(&self, path: &KeyPath, env: Option<&str>) -> (KeyPath, usize) {
        let base = self.find(&path.0);
        let base_offset = self.offset_of(&path.0[..base.depth], base.node);
        let Some(env) = env else {
            return (path.clone(), base_offset);
        };
        let prefix = KeyPath::root().key("env").key(env);
        let mut overlay_path = prefix.0.clone();
        overlay_path.extend(path.0.iter().cloned());
        let overlay = self.find(&overlay_path);
        let overlay_depth = overlay.depth.saturating_sub(prefix.0.len());
        if overlay.depth < prefix.0.len() || overlay_depth == 0 {
            return (path.clone(), base_offset);
        }
        let complete = overlay_depth == path.0.len();
        let overlay_wins = if complete {
            // The overlay wrote this very value; when both wrote a table, the base's is the one
            // the problem is about unless only the overlay has it.
            base.depth < path.0.len() || !matches!(overlay.node.children, Children::Table(_))
        } else {
            overlay_depth > base.depth
        };
        if overlay_wins {
            let offset = self.offset_of(&overlay_path[..overlay.depth], overlay.node);
            (
                KeyPath(prefix.0.into_iter().chain(path.0.clone()).collect()),
                offset,
            )
        } else {
            (path.clone(), base_offset)
        }
    }

    /// The node's own offset; for an implicit table (no span), where its first key was written;
    /// else that of the nearest ancestor that has one.
    fn offset_of(&self, path: &[Seg], node: &Node) -> usize {
        if let Some(start) = node.first_start() {
            return start;
        }
        (0..path.len())
            .rev()
            .find_map(|depth| self.find(&path[..depth]).node.start)
            .unwrap_or(0)
    }
}

impl Node {
    fn first_start(&self) -> Option<usize> {
        self.start.or_else(|| match &self.children {
            Children::Leaf => None,
            Children::Table(table) => table.values().filter_map(Node::first_start).min(),
            Children::Array(items) => items.iter().filter_map(Node::first_start).min(),
        })
    }
}

// The private protocol toml uses to hand out spans (`toml::Spanned` is built on it). It is
// spoken directly because `Spanned` fails outright on values toml has no span for.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];

impl<'de> Deserialize<'de> for Node {
    /// Asks for a span; gets either the span protocol or the plain value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor { spanned: true })
    }
}

/// The value inside the span protocol, which must not ask for a span again.
struct Plain;

impl<'de> DeserializeSeed<'de> for Plain {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor { spanned: false })
    }
}

struct NodeVisitor {
    spanned: bool,
}

impl NodeVisitor {
    fn table<'de, A: MapAccess<'de>>(mut map: A, first: Option<String>) -> Result<Node, A::Error> {
        let mut table = BTreeMap::new();
        if let Some(key) = first {
            table.insert(key, map.next_value::<Node>()?);
        }
        while let Some(key) = map.next_key::<String>()? {
            table.insert(key, map.next_value::<Node>()?);
        }
        Ok(Node {
            start: None,
            children: Children::Table(table),
        })
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node {
            start: None,
            children: Children::Array(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let first = map.next_key::<String>()?;
        if !(self.spanned && first.as_deref() == Some(SPANNED_START)) {
            return NodeVisitor::table(map, first);
        }
        let start: usize = map.next_value()?;
        let mut node = Node::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == SPANNED_VALUE {
                node = map.next_value_seed(Plain)?;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        node.start = Some(start);
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> KeyPath {
        let mut path = KeyPath::root();
        for key in keys {
            path = match key.parse::<usize>() {
                Ok(i) => path.index(i),
                Err(_) => path.key(key),
            };
        }
        path
    }

    const DOC: &str = r#"[listener.http]
address = "127.0.0.1:8080"

[[listener.http.route]]
upstream = "api"

[upstream.api]
backends = ["127.0.0.1:8001", { address = "127.0.0.1:8002", weight = 2 }]

[env.prod.listener.http]
address = "0.0.0.0:80"
"#;

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse("[runtime]\nworkers = \n", "f.toml").unwrap_err();
        assert_eq!(err.file, "f.toml");
        assert!(
            err.problem.starts_with("invalid TOML at line 2, column 11"),
            "{}",
            err.problem
        );
        assert!(err.fix.contains("line 2"), "{}", err.fix);
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn positions_follow_the_text() {
        let positions = Positions::index(DOC).expect("indexable");
        let at = |keys: &[&str]| positions.locate(&path(keys), None).1;
        let address = at(&["listener", "http", "address"]);
        assert_eq!(&DOC[address..address + 11], "\"127.0.0.1:");
        let route = at(&["listener", "http", "route", "0", "upstream"]);
        assert!(route > address);
        let weight = at(&["upstream", "api", "backends", "1", "weight"]);
        assert_eq!(&DOC[weight..weight + 1], "2");
        // A missing key points at its nearest written ancestor.
        let missing = at(&["upstream", "api", "pool", "idle_timeout"]);
        assert!(missing > route && missing < weight, "{missing}");
        // An implicit table (`env`, `env.prod`) is where its first key was written.
        let env = at(&["env"]);
        assert_eq!(&DOC[env..env + 3], "[en", "{env}");
        assert!(at(&["listener"]) < route);
    }

    #[test]
    fn keys_set_by_the_overlay_are_named_under_env() {
        let positions = Positions::index(DOC).expect("indexable");
        let (key, offset) = positions.locate(&path(&["listener", "http", "address"]), Some("prod"));
        assert_eq!(key.to_string(), "env.prod.listener.http.address");
        assert_eq!(&DOC[offset..offset + 3], "\"0.");
        // Not touched by the overlay: keeps its own name.
        let (key, _) = positions.locate(&path(&["listener", "http", "route"]), Some("prod"));
        assert_eq!(key.to_string(), "listener.http.route");
        // A table both wrote is the base's.
        let (key, _) = positions.locate(&path(&["listener", "http"]), Some("prod"));
        assert_eq!(key.to_string(), "listener.http");
        // Another environment is not applied.
        let (key, _) = positions.locate(&path(&["listener", "http", "address"]), Some("dev"));
        assert_eq!(key.to_string(), "listener.http.address");
    }
}
