//! The command-line flags that name a configuration (`-c FILE`, `--env NAME`), shared by every
//! subcommand that reads one, and loading what they name.

use super::Config;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML). Without it, the embedded default: 127.0.0.1:8080 →
    /// 127.0.0.1:8001..8003.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Environment overlay to merge over the base: the file's `[env.NAME]` table.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
}

/// Loads and validates the configuration named by `args`, printing every problem.
pub fn load_from_args(args: &ConfigArgs) -> anyhow::Result<Config> {
    super::load(args.config.as_deref(), args.env.as_deref())
        .map_err(|errors| anyhow::anyhow!("invalid configuration\n{errors}"))
}
