//! Progressive delivery on systemd: what a deployment is asked ([`spec`]), what a version is
//! ([`version`]: an environment file per instance), how a canary step is judged ([`analysis`]),
//! how a deployment is kept and survives a restart ([`record`]), and where the admin side and
//! the control loop meet ([`board`]).
//!
//! Flow: `lbproxy deploy start` (or `POST /api/deploy`) checks the spec against the running
//! configuration and submits it to the [`board::DeployBoard`]; the control loop's deploy
//! controller (`control/controllers/deploy.rs`) takes it on its next tick and drives it, one
//! decision per tick, through the instance actions (start, stop, restart units over D-Bus, each
//! with its version file) and the group's traffic split ([`crate::config::TrafficSplit`]: a
//! share of the clients, by a hash of their key, to the backends marked `canary`). Canary:
//! start the canary instances → wait until routed and healthy → each step, set the weight and
//! let the window run → judge it ([`analysis::judge`]) → next step, hold, or abort → promote:
//! restart the stable instances on the new version, then stop the canaries. Blue-green: start
//! green → wait → switch every client at once → keep blue for `keep_blue` (an instant switch
//! back) → stop blue. Every decision, with its figures, goes to the journal, the board (the
//! admin API, the dashboard, `lbproxy deploy status`) and the state directory ([`record`]).
//!
//! Nothing here runs on a worker; nothing here does I/O but [`record::Store`] and
//! [`version::VersionChange::apply`], which the control side calls.

pub mod analysis;
pub mod board;
pub mod record;
pub mod spec;
pub mod spec_check;
pub mod spec_file;
pub mod spec_json;
pub mod version;
