//! `lbproxy up`: the local deployment (API instances + proxy) in one foreground command.

use crate::cli::UpArgs;

pub fn run(args: &UpArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`lbproxy up` is not implemented yet")
}
