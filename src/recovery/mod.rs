//! Recovery from the command line: `lbproxy config history` and `lbproxy config rollback` over
//! the configuration history ([`crate::history`]), `lbproxy backup` and `lbproxy restore` of the
//! configuration file and the state directory. docs/disaster-recovery.md is the runbook.
//!
//! - `config history` ([`listing`]): the entries, as a table or JSON.
//! - `config rollback [ID]` ([`rollback`]): a stored text, checked as `lbproxy check` would,
//!   written over the file the proxy reads (the file's text kept first when it never served),
//!   then the proxy's admin API asked to reload it; refused, the file is put back.
//! - `backup` / `restore` ([`backup`], [`restore`]): one tar.gz with a manifest ([`archive`]);
//!   restore checks the manifest and the configuration before it writes anything.
//!
//! Every command here runs outside the proxy and talks to it only through files (the state
//! directory, under its lock) and its admin API.

mod archive;
mod backup;
mod diff;
mod files;
mod listing;
mod restore;
mod rollback;

use crate::admin::ctl::AdminTargetArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The recovery commands, as `lbproxy`'s own subcommands (flattened into its list).
#[derive(Debug, Subcommand)]
pub enum RecoveryCommand {
    /// The configuration history: every configuration that served, and rolling back to one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write one archive (tar.gz) of the configuration file and the state directory (the
    /// configuration history, the deployment state, the instances' version files), with a
    /// manifest of what it holds.
    Backup(BackupArgs),
    /// Put back what `lbproxy backup` archived: the manifest and the configuration are checked
    /// first, then the files are written (never over different ones without --force).
    Restore(RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List the configurations that served (start, reload, rollback), oldest first.
    History(HistoryArgs),
    /// Put back a configuration that served before — by default the last one before the
    /// running one whose text differs — and reload the proxy into it through its admin API.
    ///
    /// The stored text is checked as `lbproxy check` checks a file, written over the file the
    /// proxy reads (whose own text is kept in the history first, when it never served), and the
    /// proxy is asked to reload; if it refuses, the file is put back. An invalid stored
    /// configuration is refused with its errors and nothing changes.
    Rollback(RollbackArgs),
}

/// Where the state directory is: `--state-dir`, else the environment's.
#[derive(Debug, Clone, Default, Args)]
pub struct StateDirArgs {
    /// The state directory. Default: $STATE_DIRECTORY, else $XDG_STATE_HOME/lbproxy, else
    /// ~/.local/state/lbproxy (where `lbproxy serve` keeps it; /var/lib/lbproxy for the system
    /// unit).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateDirArgs {
    /// The directory named, not created.
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => crate::sys::state_dir::state_dir_from(&|name| std::env::var(name).ok())
                .map_err(anyhow::Error::msg),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub state: StateDirArgs,
    /// Print the entries as a JSON array (the lines of configs/history.jsonl).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The history entry whose configuration to put back (`lbproxy config history` lists
    /// them). Default: the last one before the running configuration whose text differs.
    #[arg(value_name = "ID")]
    pub id: Option<u64>,
    /// The admin server to ask for the reload, and the file to write: `-c FILE` is the
    /// configuration the proxy reads (default: the file the history's running entry names).
    #[command(flatten)]
    pub target: AdminTargetArgs,
    #[command(flatten)]
    pub state: StateDirArgs,
    /// Only write the file, without asking the proxy to reload (for a proxy that is stopped
    /// because its configuration is bad: start it next).
    #[arg(long)]
    pub no_reload: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The archive to write, or a directory to write lbproxy-backup-HOST-TIME.tar.gz in (the
    /// systemd timer's way). Default: that name in this directory.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The configuration file to include (the proxy's `-c FILE`). Default: the file the
    /// configuration history's last entry names (the one the proxy runs); none when it runs
    /// the embedded default.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The `--env` overlay the proxy runs with (recorded in the manifest; restore checks the
    /// file with it).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    #[command(flatten)]
    pub state: StateDirArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The archive `lbproxy backup` wrote.
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,
    /// Where to write the configuration file. Default: the path it was backed up from (a path
    /// under the backup's $HOME moves to this $HOME).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The `--env` overlay to check the configuration with. Default: the manifest's.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    #[command(flatten)]
    pub state: StateDirArgs,
    /// Overwrite files that exist and differ from the archive's.
    #[arg(long)]
    pub force: bool,
}

/// Runs one recovery command.
pub fn run(command: &RecoveryCommand) -> anyhow::Result<()> {
    match command {
        RecoveryCommand::Config(ConfigCommand::History(args)) => listing::run(args),
        RecoveryCommand::Config(ConfigCommand::Rollback(args)) => rollback::run(args),
        RecoveryCommand::Backup(args) => backup::run(args),
        RecoveryCommand::Restore(args) => restore::run(args),
    }
}
