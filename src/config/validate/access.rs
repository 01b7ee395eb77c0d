//! Access lists: `access = { allow = [...], deny = [...], action = "403" | "reset" }` on a
//! listener (checked when a connection opens) or a route (checked per request).

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::FileAccess;
use crate::config::{AccessList, DenyAction, ListenerProtocol};

impl Validator<'_> {
    /// `Some(None)`: no list; `None`: a problem was reported. `on_route`: a route's list (a
    /// listener's refuses `action`: a connection refused when it opens is always reset).
    pub(super) fn access(
        &mut self,
        raw: Option<&FileAccess>,
        _protocol: Option<ListenerProtocol>,
        on_route: bool,
        path: &KeyPath,
    ) -> Option<Option<AccessList>> {
        // SKELETON: the access helper checks the action, empty lists and the combinations.
        let Some(raw) = raw else { return Some(None) };
        let path = path.key("access");
        let allow = self.cidr_set(raw.allow.as_deref().unwrap_or_default(), &path.key("allow"));
        let deny = self.cidr_set(raw.deny.as_deref().unwrap_or_default(), &path.key("deny"));
        let action = if on_route {
            DenyAction::Forbidden
        } else {
            DenyAction::Reset
        };
        Some(Some(AccessList {
            allow: allow?,
            deny: deny?,
            action,
        }))
    }
}
