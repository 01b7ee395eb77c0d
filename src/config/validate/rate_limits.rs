//! `[rate_limit.NAME]` tables (key, rate, burst, dry run, how many keys to remember) and the
//! `rate_limits = [...]` lists of listeners and routes that name them.

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::FileConfig;
use crate::config::{ListenerProtocol, RateLimitConfig};

impl Validator<'_> {
    /// Every `[rate_limit.NAME]`, sorted by name (as `self.rate_limit_names`).
    pub(super) fn rate_limits(
        &mut self,
        _file: &FileConfig,
        _path: &KeyPath,
    ) -> Option<Vec<RateLimitConfig>> {
        // SKELETON: the rate-limit helper fills this in.
        Some(Vec::new())
    }

    /// A `rate_limits = [...]` list of a listener or route: the indexes of the limits it names.
    /// `Some(None)` when the key is absent.
    pub(super) fn rate_limit_refs(
        &mut self,
        _raw: Option<&Vec<String>>,
        _protocol: Option<ListenerProtocol>,
        _path: &KeyPath,
    ) -> Option<Option<Vec<usize>>> {
        // SKELETON: the rate-limit helper resolves the names (self.rate_limit_names).
        Some(None)
    }
}
