//! The settings a route or its group overrides (timeouts, retries, the body limit), resolved
//! into each route once the global values and the groups are known: route, else group, else
//! global.

use super::Validator;
use crate::config::file::FileUpstream;
use crate::config::key_path::KeyPath;
use crate::config::{
    GroupSettings, LimitsConfig, ListenerConfig, RouteSettings, TimeoutsConfig, UpstreamConfig,
};

impl Validator<'_> {
    /// `[upstream.NAME]` `timeouts` and `max_body`.
    pub(super) fn group_settings(
        &mut self,
        _raw: &FileUpstream,
        _path: &KeyPath,
    ) -> Option<GroupSettings> {
        Some(GroupSettings::default())
    }
}

/// Fills every route's [`RouteSettings`].
pub(super) fn resolve(
    listeners: &mut [ListenerConfig],
    upstreams: &[UpstreamConfig],
    timeouts: &TimeoutsConfig,
    limits: &LimitsConfig,
) {
    for listener in listeners {
        for route in &mut listener.routes {
            let mut settings = RouteSettings {
                upstream_response: timeouts.upstream_response,
                client_body: timeouts.client_body,
                max_retries: 0,
                max_body_bytes: limits.max_body_bytes,
            };
            if let Some(group) = route.upstream().map(|u| &upstreams[u]) {
                settings.max_retries = group.retry.max_retries;
                let overrides = &group.settings;
                if let Some(t) = overrides.upstream_response {
                    settings.upstream_response = t;
                }
                if let Some(t) = overrides.client_body {
                    settings.client_body = t;
                }
                if let Some(max) = overrides.max_body_bytes {
                    settings.max_body_bytes = max;
                }
            }
            route.settings = settings;
        }
    }
}
