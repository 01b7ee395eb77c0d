//! `[listener.NAME.connection_limits]` (open connections on the listener and per client, new
//! connections per client) and `worker_steering`.

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::FileListener;
use crate::config::{ConnectionLimits, ListenerProtocol, WorkerSteering};

impl Validator<'_> {
    pub(super) fn connection_limits(
        &mut self,
        _raw: &FileListener,
        _protocol: Option<ListenerProtocol>,
        _path: &KeyPath,
    ) -> Option<(ConnectionLimits, WorkerSteering)> {
        // SKELETON: the connection-limits helper fills this in.
        Some((ConnectionLimits::default(), WorkerSteering::Kernel))
    }
}
