//! The backup archive: a tar.gz of `manifest.json` (first), `config/<NAME>` (the configuration
//! file, when there is one) and `state/<PATH>` (the state directory's `configs/`, `deploy/` and
//! `versions/`). Every name is relative; the manifest says where each part came from, and the
//! SHA-256, size and mode of every file, so that [`read`] can refuse an archive that is
//! incomplete, has more than it says, or was changed.

use crate::history::sha256_hex;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest's format; [`read`] refuses others.
pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
/// The folder of the configuration file in the archive.
pub const CONFIG_DIR: &str = "config";
/// The folder of the state directory in the archive.
pub const STATE_DIR: &str = "state";
/// The state directory's folders that are backed up (history, deployments, version files).
pub const STATE_PARTS: [&str; 3] = [crate::history::DIR, "deploy", "versions"];
/// The most an archive may unpack to: state directories are small, and a restore reads it all
/// before it writes anything.
const MAX_UNPACKED: u64 = 512 << 20;

/// What a backup holds and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The lbproxy that wrote it.
    pub lbproxy_version: String,
    /// When, RFC 3339 (UTC) and ms since the epoch.
    pub time: String,
    pub unix_ms: u64,
    pub hostname: String,
    /// `$HOME` when it was written: a path under it moves to the restoring user's `$HOME`.
    pub home: Option<PathBuf>,
    /// The configuration file, if one was backed up.
    pub config: Option<ConfigPart>,
    /// The state directory it was read from.
    pub state_dir: PathBuf,
    /// Every file in the archive but the manifest, by name.
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPart {
    /// Where it was read from (absolute).
    pub path: PathBuf,
    /// Its `--env` overlay.
    pub env: Option<String>,
    /// Its name in the archive (`config/NAME`).
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    pub mode: u32,
}

/// A file to archive: its name in the archive, its bytes and mode.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl FileRecord {
    pub fn of(member: &Member) -> Self {
        FileRecord {
            name: member.name.clone(),
            sha256: sha256_hex(&member.bytes),
            bytes: member.bytes.len() as u64,
            mode: member.mode,
        }
    }
}

/// Writes `manifest` and `members` to `out` as a tar.gz.
pub fn write(
    out: impl std::io::Write,
    manifest: &Manifest,
    members: &[Member],
) -> anyhow::Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let manifest_json = serde_json::to_vec_pretty(manifest)?;
    let mut all = vec![Member {
        name: MANIFEST.to_owned(),
        bytes: manifest_json,
        mode: 0o644,
    }];
    all.extend(members.iter().cloned());
    for member in &all {
        let mut header = tar::Header::new_gnu();
        header.set_size(member.bytes.len() as u64);
        header.set_mode(member.mode);
        header.set_mtime(manifest.unix_ms / 1000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &member.name, member.bytes.as_slice())
            .with_context(|| format!("archiving {}", member.name))?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

/// An archive read back: its manifest and every file by name, each checked against it.
#[derive(Debug)]
pub struct Unpacked {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Reads and checks an archive: regular files only, relative names without `..`, the manifest
/// of a known format, every file it lists present with its hash and size, nothing else.
pub fn read(input: impl std::io::Read) -> anyhow::Result<Unpacked> {
    let gz = flate2::read::GzDecoder::new(input);
    let mut tar = tar::Archive::new(gz.take(MAX_UNPACKED + 1));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in tar.entries().context("not a tar.gz archive")? {
        let mut entry = entry.context("reading the archive (a tar.gz from lbproxy backup?)")?;
        let name = entry.path().context("a name in the archive")?.into_owned();
        if !entry.header().entry_type().is_file() {
            bail!("{} in the archive is not a regular file", name.display());
        }
        let name = safe_name(&name)?;
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {name} from the archive"))?;
        total += bytes.len() as u64;
        if total > MAX_UNPACKED {
            bail!("the archive unpacks to more than {MAX_UNPACKED} bytes: not an lbproxy backup");
        }
        if files.insert(name.clone(), bytes).is_some() {
            bail!("{name} is in the archive twice");
        }
    }
    let manifest_bytes = files
        .remove(MANIFEST)
        .with_context(|| format!("the archive has no {MANIFEST}: not an lbproxy backup"))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).with_context(|| format!("reading {MANIFEST}"))?;
    if manifest.format != FORMAT {
        bail!(
            "the archive's manifest is format {}, this lbproxy ({}) reads format {FORMAT}",
            manifest.format,
            env!("CARGO_PKG_VERSION")
        );
    }
    for record in &manifest.files {
        let bytes = files.get(&record.name).with_context(|| {
            format!("{} is in the manifest but not in the archive", record.name)
        })?;
        let sha256 = sha256_hex(bytes);
        if sha256 != record.sha256 || bytes.len() as u64 != record.bytes {
            bail!(
                "{} does not match the manifest (SHA-256 {sha256}, {} bytes; the manifest says \
                 {}, {} bytes): the archive was changed or damaged",
                record.name,
                bytes.len(),
                record.sha256,
                record.bytes
            );
        }
    }
    if let Some(extra) = files
        .keys()
        .find(|name| !manifest.files.iter().any(|r| &r.name == *name))
    {
        bail!("{extra} is in the archive but not in its manifest");
    }
    if let Some(config) = &manifest.config {
        if !files.contains_key(&config.name) {
            bail!(
                "the manifest names {} as the configuration but the archive lacks it",
                config.name
            );
        }
    }
    Ok(Unpacked { manifest, files })
}

/// A name as stored: relative, plain components, `/`-separated.
fn safe_name(name: &Path) -> anyhow::Result<String> {
    use std::path::Component;
    let mut parts = Vec::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => parts.push(
                part.to_str()
                    .with_context(|| format!("{} is not UTF-8", name.display()))?,
            ),
            Component::CurDir => {}
            _ => bail!(
                "{} in the archive is not a plain relative name: refused",
                name.display()
            ),
        }
    }
    if parts.is_empty() {
        bail!("an empty name in the archive");
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(members: &[Member]) -> Manifest {
        Manifest {
            format: FORMAT,
            lbproxy_version: "0.1.0".into(),
            time: "2026-12-07T18:47:00.123Z".into(),
            unix_ms: 1_796_669_220_123,
            hostname: "h".into(),
            home: None,
            config: Some(ConfigPart {
                path: "/etc/lbproxy/lbproxy.toml".into(),
                env: None,
                name: "config/lbproxy.toml".into(),
            }),
            state_dir: "/var/lib/lbproxy".into(),
            files: members.iter().map(FileRecord::of).collect(),
        }
    }

    fn members() -> Vec<Member> {
        vec![
            Member {
                name: "config/lbproxy.toml".into(),
                bytes: b"[listener.http]\n".to_vec(),
                mode: 0o640,
            },
            Member {
                name: "state/configs/history.jsonl".into(),
                bytes: b"{}\n".to_vec(),
                mode: 0o600,
            },
        ]
    }

    #[test]
    fn an_archive_reads_back_as_written() {
        let members = members();
        let manifest = manifest(&members);
        let mut bytes = Vec::new();
        write(&mut bytes, &manifest, &members).unwrap();
        let unpacked = read(bytes.as_slice()).unwrap();
        assert_eq!(unpacked.manifest, manifest);
        assert_eq!(unpacked.files.len(), 2);
        assert_eq!(unpacked.files["config/lbproxy.toml"], b"[listener.http]\n");
    }

    #[test]
    fn a_changed_incomplete_or_padded_archive_is_refused() {
        let members = members();
        let mut changed = manifest(&members);
        changed.files[0].sha256 = sha256_hex(b"other");
        let mut bytes = Vec::new();
        write(&mut bytes, &changed, &members).unwrap();
        let refused = read(bytes.as_slice()).unwrap_err().to_string();
        assert!(refused.contains("does not match the manifest"), "{refused}");

        let mut bytes = Vec::new();
        write(&mut bytes, &manifest(&members), &members[..1]).unwrap();
        let refused = read(bytes.as_slice()).unwrap_err().to_string();
        assert!(
            refused.contains("in the manifest but not in the archive"),
            "{refused}"
        );

        let mut bytes = Vec::new();
        write(&mut bytes, &manifest(&members[..1]), &members).unwrap();
        let refused = read(bytes.as_slice()).unwrap_err().to_string();
        assert!(refused.contains("not in its manifest"), "{refused}");

        let refused = read(&b"not gzip"[..]).unwrap_err();
        assert!(format!("{refused:#}").contains("tar.gz"), "{refused:#}");
        assert!(safe_name(Path::new("../etc/passwd")).is_err());
        assert!(safe_name(Path::new("/etc/passwd")).is_err());
        assert_eq!(safe_name(Path::new("./state/a")).unwrap(), "state/a");
    }
}
