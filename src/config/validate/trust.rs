//! Who says who the client is: `trusted_proxies` (the peers whose `X-Forwarded-For` and
//! `Forwarded` fields are believed) and `accept_proxy_protocol` (every connection starts with a PROXY
//! header, from one of them).

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::FileListener;
use crate::config::{CidrSet, ListenerProtocol};

impl Validator<'_> {
    /// `(trusted_proxies, accept_proxy_protocol)` of a listener.
    pub(super) fn trust(
        &mut self,
        raw: &FileListener,
        _protocol: Option<ListenerProtocol>,
        path: &KeyPath,
    ) -> Option<(CidrSet, bool)> {
        // SKELETON: the trust helper checks the combinations and fills this in.
        let trusted = match &raw.trusted_proxies {
            Some(list) => self.cidr_set(list, &path.key("trusted_proxies"))?,
            None => CidrSet::default(),
        };
        let proxy_protocol = self.boolean(
            raw.accept_proxy_protocol.as_ref(),
            &path.key("accept_proxy_protocol"),
            false,
        )?;
        Some((trusted, proxy_protocol))
    }
}
