//! What a route matches and what it does besides choosing a group, as validated from
//! `[[listener.NAME.route]]`: the match conditions beyond host and path prefix ([`RouteMatch`]),
//! a redirect answered by the proxy itself ([`Redirect`]), a rewrite of the path sent upstream
//! ([`PathRewrite`]), header rules for the request and the response ([`HeaderRules`]), and the
//! settings a route or a group overrides ([`RouteSettings`]).
//!
//! Values that name request properties (`https://{host}{uri}`, `/v2/{1}`, `{request_id}`) are
//! [`Template`]s, parsed once per configuration and expanded per request.

use super::template::Template;
use std::time::Duration;

/// What a route does with a request it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward it to the upstream group at this index of `Config::upstreams`.
    Forward(usize),
    /// Answer it with a redirect; no backend is contacted.
    Redirect(Redirect),
}

/// The match conditions of a route besides `host` and `path_prefix`. All must hold; the default
/// holds for every request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// `path`: the request's path (without the query) must be exactly this.
    pub exact_path: Option<String>,
    /// `path_regex`: the path must match this (unanchored unless written with `^`/`$`). Its
    /// captures are what `{1}` and `{name}` name in the route's templates.
    pub path_regex: Option<Pattern>,
    /// `methods`: the request's method must be one of these (case-sensitive tokens, as sent).
    /// Empty: any method.
    pub methods: Vec<String>,
    /// `headers`: each named field must be present, absent or have a value, in order.
    pub headers: Vec<FieldMatch>,
    /// `query`: each named query parameter must be present, absent or have a value.
    pub query: Vec<FieldMatch>,
}

impl RouteMatch {
    /// True when the route has no condition besides host and path prefix. One branch: the
    /// router asks it of every route a request reaches.
    pub fn is_empty(&self) -> bool {
        self.exact_path.is_none()
            & self.path_regex.is_none()
            & self.methods.is_empty()
            & self.headers.is_empty()
            & self.query.is_empty()
    }
}

/// One header or query condition: `headers = { "X-Canary" = "1", "X-Debug" = true }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMatch {
    /// A header's name lowercase; a query parameter's name as written (case-sensitive).
    pub name: String,
    pub value: ValueMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// `true`: present, with any value.
    Present,
    /// `false`: absent.
    Absent,
    /// A string: present with exactly this value (for a header: any of its field lines).
    Exact(String),
}

/// A regular expression from the configuration, compiled once. Two are equal when written the
/// same (a new configuration that keeps a route's pattern keeps its route).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// `redirect = "https://{host}{uri}"` with `redirect_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The `Location`, expanded per request.
    pub location: Template,
    /// 301, 302, 307 or 308. Default 302 (308 for the listener's `redirect_https`).
    pub status: u16,
}

/// How the path sent upstream differs from the client's. The query is kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// `rewrite_prefix = "/"`: the route's `path_prefix` is replaced with this (`"/"` strips it).
    Prefix(String),
    /// `rewrite_regex = ["^/old/(.*)$", "/new/{1}"]`: the first match of the pattern in the path
    /// is replaced with the template (captures of this pattern).
    Regex { pattern: Pattern, to: Template },
}

/// `[listener.NAME.route.request_headers]` / `response_headers`: applied in the order
/// remove, set, add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// The edits of one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdits {
    /// Field names (lowercase) removed, every line of each.
    pub remove: Vec<String>,
    /// Fields replaced (any lines of the name removed, this one written), name as written.
    pub set: Vec<(String, Template)>,
    /// Fields appended (after those of the message), name as written.
    pub add: Vec<(String, Template)>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// The settings a route (or its group) may override, resolved when the configuration is
/// validated: route, else the route's group, else the global value. A redirect route has the
/// global ones. (`Default`, all zero, only until the validator resolves them.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSettings {
    /// `timeouts.upstream_response`.
    pub upstream_response: Duration,
    /// `timeouts.client_body`.
    pub client_body: Duration,
    /// `retry.max_retries`.
    pub max_retries: u32,
    /// `limits.max_body` (`None`: unlimited).
    pub max_body_bytes: Option<u64>,
}

/// Per-group overrides of the same settings (`[upstream.NAME]` `timeouts`, `limits`); `None`
/// falls back to the global value. (The group's `retry.max_retries` is its own already.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupSettings {
    pub upstream_response: Option<Duration>,
    pub client_body: Option<Duration>,
    /// `Some(None)`: unlimited for this group.
    pub max_body_bytes: Option<Option<u64>>,
}
