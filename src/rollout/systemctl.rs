//! The rollout's only way to touch the instances: the real `systemctl`, run through
//! [`Systemctl::run`], which prints each command line before running it (`$ systemctl --user
//! restart api@1`), so the output shows exactly what was done — and a person can repeat it.

use anyhow::Context;
use std::process::{Command, Stdio};

/// `systemctl`, or `systemctl --user`.
#[derive(Debug, Clone, Copy)]
pub struct Systemctl {
    user: bool,
}

/// What `systemctl show` says about a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitInfo {
    /// `loaded`, `not-found`, `masked`, …
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, …
    pub active_state: String,
    pub sub_state: String,
    /// 0 when no process runs.
    pub main_pid: u32,
}

impl UnitInfo {
    /// `active (running), pid 4242`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} ({})", self.active_state, self.sub_state);
        if self.main_pid != 0 {
            text.push_str(&format!(", pid {}", self.main_pid));
        }
        text
    }

    fn parse(show: &str) -> UnitInfo {
        let mut info = UnitInfo::default();
        for line in show.lines() {
            match line.split_once('=') {
                Some(("LoadState", v)) => info.load_state = v.to_owned(),
                Some(("ActiveState", v)) => info.active_state = v.to_owned(),
                Some(("SubState", v)) => info.sub_state = v.to_owned(),
                Some(("MainPID", v)) => info.main_pid = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        info
    }
}

impl Systemctl {
    /// `user`: the user's service manager (`--user`); else the system's.
    pub fn new(user: bool) -> Self {
        Self { user }
    }

    /// `systemctl` or `systemctl --user`, as a person would type it.
    pub fn command_name(&self) -> &'static str {
        if self.user {
            "systemctl --user"
        } else {
            "systemctl"
        }
    }

    /// How to read a unit's log: `journalctl --user-unit api@1 -n 50`.
    pub fn journal_hint(&self, unit: &str) -> String {
        if self.user {
            format!("journalctl --user-unit {unit} -n 50")
        } else {
            format!("journalctl -u {unit} -n 50")
        }
    }

    /// Prints `  $ systemctl [--user] ARGS`, runs it and returns its standard output; a failure
    /// (it could not run, or exited non-zero) carries its standard error.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let line = format!("{} {}", self.command_name(), args.join(" "));
        println!("  $ {line}");
        let mut command = Command::new("systemctl");
        if self.user {
            command.arg("--user");
        }
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "cannot run `{line}` (lbproxy rollout restarts the instances through \
                     systemd; is systemctl installed and on PATH?)"
                )
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            anyhow::bail!("`{line}` failed ({}): {}", output.status, stderr.trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `systemctl show` of the unit's load and active states and main PID.
    pub fn unit_info(&self, unit: &str) -> anyhow::Result<UnitInfo> {
        let show = self.run(&[
            "show",
            "--property=LoadState,ActiveState,SubState,MainPID",
            unit,
        ])?;
        Ok(UnitInfo::parse(&show))
    }

    /// `systemctl restart UNIT`: returns once the new instance is started (for `Type=notify`,
    /// once it sent `READY=1`).
    pub fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.run(&["restart", unit]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_is_read_whatever_the_order() {
        let info = UnitInfo::parse(
            "MainPID=4242\nLoadState=loaded\nSubState=running\nActiveState=active\n",
        );
        assert_eq!(
            info,
            UnitInfo {
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
                main_pid: 4242,
            }
        );
        assert_eq!(info.describe(), "active (running), pid 4242");
        let stopped =
            UnitInfo::parse("LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\n");
        assert_eq!(stopped.describe(), "inactive (dead)");
    }

    #[test]
    fn commands_read_as_typed() {
        assert_eq!(Systemctl::new(true).command_name(), "systemctl --user");
        assert_eq!(Systemctl::new(false).command_name(), "systemctl");
        assert_eq!(
            Systemctl::new(true).journal_hint("api@2"),
            "journalctl --user-unit api@2 -n 50"
        );
    }
}
