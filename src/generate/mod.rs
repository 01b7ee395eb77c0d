//! `lbproxy generate man|completions DIR`: the manual pages and shell completions that the
//! packages install, written from the command-line definitions themselves (hidden from `--help`;
//! `packaging/build.sh` runs it).
//!
//! Generated here rather than in a build script so that ordinary builds do not pay for it, and
//! from the code rather than kept by hand so that they cannot drift from the flags:
//! - lbproxy(8) and one page per subcommand (lbproxy-serve(8), …) from [`crate::cli::Cli`];
//! - lbproxy-demo-api(1) from the demo API's own `Cli` (its `cli.rs`, compiled in here too);
//! - lbproxy.toml(5) from docs/config.md, the one reference for the configuration
//!   ([`markdown`] turns it into roff);
//! - bash, zsh and fish completions for both binaries.

mod man;
mod markdown;

use anyhow::Context;
use clap::{Args, CommandFactory, Subcommand};
use std::path::{Path, PathBuf};

/// The demo API's command-line definition, shared with its binary so its manual page and
/// completions describe exactly the flags it parses.
#[allow(dead_code)] // the binary uses the helpers; here only the clap definition is needed
#[path = "../../demo-api/src/cli.rs"]
mod demo_api_cli;

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generated,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Generated {
    /// Manual pages: lbproxy.8, lbproxy-SUBCOMMAND.8, lbproxy.toml.5, lbproxy-demo-api.1.
    Man {
        /// Directory to write them into (created if missing).
        dir: PathBuf,
    },
    /// Shell completions for lbproxy and lbproxy-demo-api: bash, zsh and fish.
    Completions {
        /// Directory to write them into (created if missing).
        dir: PathBuf,
    },
}

/// Writes what `args` asks for and prints each file written, one per line.
pub fn run(args: &GenerateArgs, proxy: clap::Command) -> anyhow::Result<()> {
    let written = match &args.what {
        Generated::Man { dir } => write_man_pages(dir, proxy)?,
        Generated::Completions { dir } => write_completions(dir, proxy)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes every manual page into `dir`; returns their paths.
pub fn write_man_pages(dir: &Path, proxy: clap::Command) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut pages = man::proxy_pages(proxy);
    pages.push(man::demo_api_page(demo_api_cli::Cli::command()));
    pages.push(man::config_page(include_str!("../../docs/config.md")));
    pages
        .into_iter()
        .map(|page| {
            let path = dir.join(&page.file_name);
            std::fs::write(&path, page.roff)
                .with_context(|| format!("writing the manual page {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Writes bash, zsh and fish completions for both binaries into `dir`; returns their paths.
pub fn write_completions(dir: &Path, proxy: clap::Command) -> anyhow::Result<Vec<PathBuf>> {
    use clap_complete::Shell;
    create_dir(dir)?;
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        for (mut command, name) in [
            (proxy.clone(), "lbproxy"),
            (demo_api_cli::Cli::command(), "lbproxy-demo-api"),
        ] {
            let path = clap_complete::generate_to(shell, &mut command, name, dir)
                .with_context(|| format!("writing the {shell} completion of {name}"))?;
            written.push(path);
        }
    }
    Ok(written)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        let mut names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn man_pages_cover_both_binaries_every_subcommand_and_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages(dir.path(), crate::cli::Cli::command()).unwrap();
        let names = names(&written);
        for expected in [
            "lbproxy.8",
            "lbproxy-serve.8",
            "lbproxy-check.8",
            "lbproxy-up.8",
            "lbproxy-rollout.8",
            "lbproxy-demo-api.1",
            "lbproxy.toml.5",
        ] {
            assert!(
                names.contains(&expected.to_owned()),
                "{expected} in {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains("generate")),
            "the hidden generate command gets no page: {names:?}"
        );
        let rollout = std::fs::read_to_string(dir.path().join("lbproxy-rollout.8")).unwrap();
        for documented in [
            "\\-\\-wait\\-ready",
            "{port\\-N}",
            "lbproxy ctl enable",
            "`{n}` is",
        ] {
            assert!(rollout.contains(documented), "{documented} in {rollout}");
        }
        assert!(!rollout.contains('\x1b'), "no terminal escapes: {rollout}");
        let demo = std::fs::read_to_string(dir.path().join("lbproxy-demo-api.1")).unwrap();
        assert!(demo.contains("instance"), "{demo}");
        for flag in [
            "\\-\\-fail\\-ratio",
            "\\-\\-delay",
            "\\-\\-crash\\-after",
            "LBPROXY_VERSION",
        ] {
            assert!(demo.contains(flag), "{flag} in {demo}");
        }
    }

    #[test]
    fn completions_for_three_shells_and_two_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_completions(dir.path(), crate::cli::Cli::command()).unwrap();
        assert_eq!(
            names(&written),
            [
                "_lbproxy",
                "_lbproxy-demo-api",
                "lbproxy-demo-api.bash",
                "lbproxy-demo-api.fish",
                "lbproxy.bash",
                "lbproxy.fish"
            ]
        );
        let bash = std::fs::read_to_string(dir.path().join("lbproxy.bash")).unwrap();
        assert!(
            bash.contains("serve") && bash.contains("--config"),
            "{bash}"
        );
    }
}
