//! Finding the `lbproxy-demo-api` binary that `lbproxy up` runs by default.
//!
//! Order: next to the running `lbproxy` (an install, or `target/<profile>/` in a checkout); under
//! `cargo run`, build it first (cargo builds only the binary it was asked to run); then `PATH`.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEMO_API: &str = "lbproxy-demo-api";

pub fn demo_api_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the lbproxy executable")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let sibling = dir.join(DEMO_API);
    if sibling.is_file() {
        return Ok(sibling);
    }
    // `cargo run` sets CARGO; building into the same target directory puts the binary beside us
    // (the demo is a package of its own, demo-api/, in the same workspace).
    if let Ok(cargo) = std::env::var("CARGO") {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        if manifest.is_file() {
            let release = dir.file_name().is_some_and(|name| name == "release");
            eprintln!("lbproxy up: building {DEMO_API} (first run)…");
            let mut build = Command::new(cargo);
            build
                .args([
                    "build",
                    "--package",
                    DEMO_API,
                    "--bin",
                    DEMO_API,
                    "--manifest-path",
                ])
                .arg(&manifest);
            if release {
                build.arg("--release");
            }
            let status = build
                .status()
                .context("running cargo build for the demo API")?;
            anyhow::ensure!(
                status.success(),
                "cargo build --bin {DEMO_API} failed ({status})"
            );
            if sibling.is_file() {
                return Ok(sibling);
            }
        }
    }
    if let Some(found) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|p| p.join(DEMO_API))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    anyhow::bail!(
        "cannot find {DEMO_API} next to {} or on PATH; build it with `cargo build --release --bins`, \
         or run your own API by setting `[up] command = [...]` in the config",
        exe.display()
    )
}
