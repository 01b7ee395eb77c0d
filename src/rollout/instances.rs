//! The rollout's only way to touch the instances: systemd's manager over D-Bus
//! ([`crate::systemd::bus`]), the user's (`--user`) or the system's. Each action prints what it
//! does before doing it, with the `systemctl` command that does the same (`  restart
//! api@1.service over D-Bus (as `systemctl --user restart api@1`)`), so the output shows exactly
//! what was done, and a person can repeat it.
//!
//! A restart returns once systemd removed its job: for `Type=notify`, once the new instance sent
//! `READY=1`, as `systemctl restart` would.

use crate::config::SystemdBus;
use crate::systemd::bus::{self, BusError, Manager, UnitState};
use std::time::Duration;

/// How long a restart's job may take before the rollout stops waiting for it. A safety net
/// only: systemd ends the job itself once the unit exceeds its `TimeoutStopSec=` and
/// `TimeoutStartSec=` (30 s and 90 s for the shipped api@.service).
const RESTART_WITHIN: Duration = Duration::from_secs(600);

/// The service manager of the instances.
#[derive(Debug, Clone)]
pub struct Instances {
    manager: Manager,
}

impl Instances {
    /// Connects to the user's service manager (`user`) or the system's; the error says how to
    /// make the bus reachable.
    pub fn connect(user: bool) -> Result<Self, BusError> {
        let bus = if user {
            SystemdBus::User
        } else {
            SystemdBus::System
        };
        Ok(Self {
            manager: Manager::connect(bus)?,
        })
    }

    /// `systemctl` or `systemctl --user`, as a person would type it.
    pub fn command_name(&self) -> &'static str {
        bus::systemctl_command(self.manager.bus())
    }

    /// Whether these are the user's units.
    pub fn user(&self) -> bool {
        self.manager.bus() == SystemdBus::User
    }

    /// How to read a unit's log: `journalctl --user-unit api@1 -n 50`.
    pub fn journal_hint(&self, unit: &str) -> String {
        bus::journal_hint(self.manager.bus(), unit)
    }

    /// The unit's state, loaded from its file if systemd has not (as `systemctl show` reads
    /// it): `load_state` says `not-found` for a unit without one.
    pub fn unit_info(&self, unit: &str) -> Result<UnitState, BusError> {
        self.manager.load_unit(&bus::unit_name(unit))
    }

    /// Prints `  restart api@1.service over D-Bus (as `systemctl --user restart api@1`)`,
    /// restarts the unit and waits for its job.
    pub fn restart(&self, unit: &str) -> Result<(), BusError> {
        let name = bus::unit_name(unit);
        println!(
            "  restart {name} over D-Bus (as `{} restart {unit}`)",
            self.command_name()
        );
        self.manager.restart(&name, RESTART_WITHIN)
    }
}

/// `active (running), pid 4242`.
pub fn describe(unit: &UnitState) -> String {
    let mut text = format!("{} ({})", unit.active_state, unit.sub_state);
    if unit.main_pid != 0 {
        text.push_str(&format!(", pid {}", unit.main_pid));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_is_described_by_its_states_and_process() {
        let running = UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            main_pid: 4242,
            ..UnitState::default()
        };
        assert_eq!(describe(&running), "active (running), pid 4242");
        let stopped = UnitState {
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            ..UnitState::default()
        };
        assert_eq!(describe(&stopped), "inactive (dead)");
    }
}
