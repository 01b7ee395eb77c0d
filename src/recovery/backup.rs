//! `lbproxy backup`: the configuration file and the state directory in one tar.gz
//! ([`super::archive`]).
//!
//! The configuration file is `-c FILE`, else the one the history's last served entry names (the
//! file the proxy runs), else none (the embedded default: the archive then holds the state
//! only). From the state directory, the folders of [`STATE_PARTS`] are read whole, under the
//! history's lock so that the index and its files agree; the lock file and temporary files are
//! left out.

use super::archive::{
    self, ConfigPart, FileRecord, Manifest, Member, CONFIG_DIR, STATE_DIR, STATE_PARTS,
};
use super::files::hostname;
use super::BackupArgs;
use crate::history::{self, Store};
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn run(args: &BackupArgs) -> anyhow::Result<()> {
    let state_dir = args.state.resolve()?;
    let store = Store::new(&state_dir);
    let (mut members, running) = {
        let _lock = store.dir().is_dir().then(|| store.lock()).transpose()?;
        let running = history::running(&store.entries()?).cloned();
        (state_members(&state_dir)?, running)
    };
    let config_path = args
        .config
        .clone()
        .or_else(|| running.as_ref().and_then(|r| r.path.clone()));
    let env = args
        .env
        .clone()
        .or_else(|| running.as_ref().and_then(|r| r.env.clone()));
    let config = match &config_path {
        Some(path) => {
            let path = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("lbproxy.toml");
            let name = format!("{CONFIG_DIR}/{file_name}");
            members.insert(
                0,
                Member {
                    name: name.clone(),
                    bytes,
                    mode,
                },
            );
            Some(ConfigPart { path, env, name })
        }
        None => None,
    };
    let (unix_ms, time) = history::time::now();
    let host = hostname();
    let manifest = Manifest {
        format: archive::FORMAT,
        lbproxy_version: env!("CARGO_PKG_VERSION").to_owned(),
        time: time.clone(),
        unix_ms,
        hostname: host.clone(),
        home: std::env::var_os("HOME").map(PathBuf::from),
        config,
        state_dir: std::path::absolute(&state_dir).unwrap_or(state_dir.clone()),
        files: members.iter().map(FileRecord::of).collect(),
    };
    let stamp: String = time
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    let default_name = format!("lbproxy-backup-{host}-{stamp}Z.tar.gz");
    let output = match &args.output {
        Some(dir) if dir.is_dir() => dir.join(default_name),
        Some(file) => file.clone(),
        None => PathBuf::from(default_name),
    };
    let mut bytes = Vec::new();
    archive::write(&mut bytes, &manifest, &members)?;
    // Not world-readable: the configuration may hold the admin token.
    write_private(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;

    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    match &manifest.config {
        Some(config) => println!("  configuration: {}", config.path.display()),
        None => println!(
            "  configuration: none (the proxy runs the embedded default; give -c FILE to include one)"
        ),
    }
    let count = |part: &str| {
        members
            .iter()
            .filter(|m| m.name.starts_with(&format!("{STATE_DIR}/{part}/")))
            .count()
    };
    println!(
        "  state directory: {} ({} file(s) of configuration history, {} of deployments, {} \
         version file(s))",
        manifest.state_dir.display(),
        count(STATE_PARTS[0]),
        count(STATE_PARTS[1]),
        count(STATE_PARTS[2])
    );
    println!("restore it with: lbproxy restore {}", output.display());
    Ok(())
}

/// Every regular file under the backed-up folders of `state_dir`, as `state/<PATH>`.
fn state_members(state_dir: &Path) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::new();
    for part in STATE_PARTS {
        collect(state_dir, &state_dir.join(part), &mut members)?;
    }
    Ok(members)
}

fn collect(root: &Path, dir: &Path, members: &mut Vec<Member>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let meta = std::fs::symlink_metadata(&path)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if meta.is_dir() {
            collect(root, &path, members)?;
        } else if meta.is_file() && !skipped(name) {
            let relative = path.strip_prefix(root).expect("under the root");
            let Some(relative) = relative.to_str() else {
                continue;
            };
            members.push(Member {
                name: format!("{STATE_DIR}/{relative}"),
                bytes: std::fs::read(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                mode: meta.permissions().mode() & 0o7777,
            });
        }
    }
    Ok(())
}

/// The lock file and the temporary files of atomic writes in progress.
fn skipped(name: &str) -> bool {
    let temporary = name
        .rsplit_once(".tmp")
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    name == ".lock" || temporary
}

/// Writes `path` readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_parts_without_locks_and_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("configs/history.jsonl", "{}"),
            ("configs/1.toml", "a"),
            ("configs/.lock", ""),
            ("configs/2.toml.tmp123", "half"),
            ("deploy/current.json", "{}"),
            ("versions/api@1.service.env", "VERSION=2"),
            ("other/ignored", "x"),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let names: Vec<String> = state_members(root)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "state/configs/1.toml",
                "state/configs/history.jsonl",
                "state/deploy/current.json",
                "state/versions/api@1.service.env"
            ]
        );
    }
}
