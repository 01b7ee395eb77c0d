//! The autoscale controller: for every group with `[upstream.NAME.autoscale]`, the number of
//! instances from the proxy's own signals (see `crate::control::autoscale::policy`), carried out
//! as actions: start the next unit; drain one, wait for its requests, stop it.

use crate::control::autoscale::AutoscaleBoard;
use crate::control::controller::{Action, Controller, View};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct AutoscaleController {
    board: Arc<AutoscaleBoard>,
}

impl AutoscaleController {
    pub fn new(board: Arc<AutoscaleBoard>) -> Self {
        Self { board }
    }
}

impl Controller for AutoscaleController {
    fn name(&self) -> &str {
        "autoscale"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn follows_units(&self) -> bool {
        true
    }

    fn tick(&mut self, _now: Instant, view: &View) -> Vec<Action> {
        self.board.retain(|group| {
            view.config
                .upstreams
                .iter()
                .any(|g| g.name == group && g.autoscale.is_some())
        });
        Vec::new()
    }
}
