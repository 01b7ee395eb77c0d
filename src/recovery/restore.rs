//! `lbproxy restore FILE`: put back what `lbproxy backup` archived.
//!
//! Nothing is written until everything is checked: the archive against its manifest
//! ([`archive::read`]), the configuration as `lbproxy check -c` would check it at the place it
//! goes, and every file that exists there already (one that differs is a conflict, refused
//! without `--force`; an identical one is left alone).
//!
//! Where things go: the configuration file to `-c FILE`, else to the path it was backed up from
//! — moved to this `$HOME` when it was under the backup's (`~/.config/lbproxy/lbproxy.toml` of a
//! user unit) —; the state directory's files under `--state-dir`, else under the state
//! directory this environment resolves ([`crate::sys::state_dir`]), which is the one a proxy
//! started here uses. Files written in a state directory owned by another user (the system
//! unit's) are given to that user when this runs as root.

use super::archive::{self, Unpacked, CONFIG_DIR, STATE_DIR};
use super::files::{self, Owner};
use super::RestoreArgs;
use crate::history::Store;
use anyhow::{bail, Context};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file to write.
#[derive(Debug)]
struct Planned<'a> {
    path: PathBuf,
    bytes: &'a [u8],
    mode: u32,
}

pub fn run(args: &RestoreArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.archive)
        .with_context(|| format!("opening {}", args.archive.display()))?;
    let Unpacked { manifest, files } = archive::read(std::io::BufReader::new(file))
        .with_context(|| format!("{} is refused; nothing was written", args.archive.display()))?;
    println!(
        "{}: lbproxy {} backup of {} taken {}",
        args.archive.display(),
        manifest.lbproxy_version,
        manifest.hostname,
        manifest.time
    );
    let mode_of = |name: &str| {
        manifest
            .files
            .iter()
            .find(|r| r.name == name)
            .map_or(0o644, |r| r.mode)
    };

    // The configuration: where it goes, and valid there.
    let mut plan = Vec::new();
    let config_path = match &manifest.config {
        Some(config) => {
            let path = match &args.config {
                Some(path) => path.clone(),
                None => rebased(&config.path, manifest.home.as_deref()),
            };
            let bytes = &files[&config.name];
            let text = std::str::from_utf8(bytes)
                .with_context(|| format!("{} in the archive is not UTF-8 text", config.name))?;
            let env = args.env.clone().or_else(|| config.env.clone());
            if let Err(errors) = crate::config::load_text_as(text, Some(&path), env.as_deref()) {
                bail!(
                    "the archived configuration is invalid at {} (as `lbproxy check -c {}` would \
                     say); nothing was written:\n{errors}",
                    path.display(),
                    path.display()
                );
            }
            plan.push(Planned {
                path: path.clone(),
                bytes,
                mode: mode_of(&config.name),
            });
            Some(path)
        }
        None => {
            if args.config.is_some() {
                bail!("the archive holds no configuration file (it was backed up from a proxy running the embedded default); nothing was written");
            }
            None
        }
    };

    // The state directory's files.
    let state_dir = args.state.resolve()?;
    for (name, bytes) in &files {
        if let Some(relative) = name.strip_prefix(&format!("{STATE_DIR}/")) {
            plan.push(Planned {
                path: state_dir.join(relative),
                bytes,
                mode: mode_of(name),
            });
        } else if !name.starts_with(&format!("{CONFIG_DIR}/")) {
            bail!("{name} in the archive is neither configuration nor state; nothing was written");
        }
    }

    // Conflicts, before anything is written.
    let mut conflicts = Vec::new();
    let mut same = 0;
    for planned in &plan {
        match std::fs::read(&planned.path) {
            Ok(existing) if existing == planned.bytes => same += 1,
            Ok(_) => conflicts.push(planned.path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", planned.path.display())),
        }
    }
    if !conflicts.is_empty() && !args.force {
        let shown = conflicts.len().min(10);
        bail!(
            "{} file(s) exist and differ from the archive's; nothing was written (--force \
             overwrites them):\n  {}{}",
            conflicts.len(),
            conflicts[..shown].join("\n  "),
            if conflicts.len() > shown {
                "\n  …"
            } else {
                ""
            }
        );
    }

    // Write: the configuration, then the state under the history's lock.
    let state_owner = state_owner(&state_dir)?;
    let mut written = 0;
    let store = Store::new(&state_dir);
    let _lock = store.lock().context("taking the history's lock")?;
    for planned in &plan {
        if std::fs::read(&planned.path).is_ok_and(|b| b == planned.bytes) {
            continue;
        }
        let owner = match Owner::of(&planned.path) {
            Some(existing) => Some(Owner {
                mode: planned.mode,
                ..existing
            }),
            None if planned.path.starts_with(&state_dir) => state_owner.map(|(uid, gid)| Owner {
                uid,
                gid,
                mode: planned.mode,
            }),
            None => {
                let (uid, gid) = me();
                Some(Owner {
                    uid,
                    gid,
                    mode: planned.mode,
                })
            }
        };
        files::replace(&planned.path, planned.bytes, owner)
            .with_context(|| format!("writing {}", planned.path.display()))?;
        written += 1;
    }
    if let Some((uid, gid)) = state_owner {
        give_dirs(&state_dir, uid, gid);
    }

    println!(
        "restored {written} file(s) ({same} already identical, {} overwritten)",
        if args.force { conflicts.len() } else { 0 }
    );
    match &config_path {
        Some(path) => println!("  configuration: {}", path.display()),
        None => println!("  configuration: none in the archive (the embedded default)"),
    }
    println!("  state directory: {}", state_dir.display());
    let check = config_path
        .as_ref()
        .map(|p| format!("lbproxy check -c {}", p.display()))
        .unwrap_or_else(|| "lbproxy check".to_owned());
    println!(
        "next: {check}, then start the proxy (systemctl start lbproxy, systemctl --user start \
         lbproxy, or lbproxy serve{}); if it is running already, reload it (systemctl reload \
         lbproxy, or lbproxy ctl reload)",
        config_path
            .as_ref()
            .map(|p| format!(" -c {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// `path` moved from the backup's `$HOME` to this one when it was under it.
fn rebased(path: &Path, backup_home: Option<&Path>) -> PathBuf {
    let here = std::env::var_os("HOME").map(PathBuf::from);
    match (backup_home, here) {
        (Some(then), Some(now)) if then != Path::new("/") => match path.strip_prefix(then) {
            Ok(rest) => now.join(rest),
            Err(_) => path.to_path_buf(),
        },
        _ => path.to_path_buf(),
    }
}

/// The user and group of the state directory when they are not this process's (the system
/// unit's `DynamicUser=`/`lbproxy`) and this process may give files away (root).
fn state_owner(state_dir: &Path) -> anyhow::Result<Option<(u32, u32)>> {
    let Ok(meta) = std::fs::metadata(state_dir) else {
        return Ok(None);
    };
    let me = me();
    let owner = (meta.uid(), meta.gid());
    Ok((owner != me && me.0 == 0).then_some(owner))
}

/// This process's user and group (what a file it creates gets).
fn me() -> (u32, u32) {
    std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()))
}

/// Gives the folders under the state directory's backed-up parts to its owner.
fn give_dirs(state_dir: &Path, uid: u32, gid: u32) {
    fn give(dir: &Path, uid: u32, gid: u32) {
        let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                give(&path, uid, gid);
            } else if entry.file_name() == ".lock" {
                let _ = std::os::unix::fs::chown(&path, Some(uid), Some(gid));
            }
        }
    }
    for part in archive::STATE_PARTS {
        let dir = state_dir.join(part);
        if dir.is_dir() {
            give(&dir, uid, gid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_under_the_backup_home_moves_to_this_home() {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        if home.as_os_str().is_empty() {
            return;
        }
        assert_eq!(
            rebased(
                Path::new("/home/old/.config/lbproxy/lbproxy.toml"),
                Some(Path::new("/home/old"))
            ),
            home.join(".config/lbproxy/lbproxy.toml")
        );
        assert_eq!(
            rebased(
                Path::new("/etc/lbproxy/lbproxy.toml"),
                Some(Path::new("/home/old"))
            ),
            Path::new("/etc/lbproxy/lbproxy.toml")
        );
        assert_eq!(
            rebased(Path::new("/etc/lbproxy/lbproxy.toml"), Some(Path::new("/"))),
            Path::new("/etc/lbproxy/lbproxy.toml")
        );
    }
}
