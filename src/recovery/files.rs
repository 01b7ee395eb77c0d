//! Writing a file that someone else owns: the configuration file (`/etc/lbproxy/lbproxy.toml`,
//! perhaps readable only by the proxy's group because it holds the admin token) and the state
//! directory's files (owned by the service's user, `DynamicUser=` for the system unit).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Who a written file belongs to and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Owner {
    /// The owner and mode of `path`, if it exists.
    pub fn of(path: &Path) -> Option<Owner> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        })
    }
}

/// Replaces `path` with `bytes` atomically ([`crate::sys::state_dir::write_atomically`]) and
/// gives it `owner`'s mode, and its user and group where this process may (root; otherwise
/// they stay this process's, and the mode says who may read it).
pub fn replace(path: &Path, bytes: &[u8], owner: Option<Owner>) -> std::io::Result<()> {
    crate::sys::state_dir::write_atomically(path, bytes)?;
    if let Some(owner) = owner {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(owner.mode))?;
        let meta = std::fs::metadata(path)?;
        if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
            // Only root may give a file away; anyone else keeps it (not an error).
            let _ = std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid));
        }
    }
    Ok(())
}

/// This machine's name (for the backup's manifest and default file name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_keeps_the_mode_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbproxy.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let owner = Owner::of(&path);
        replace(&path, b"new", owner).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(Owner::of(&path), owner);
        assert_eq!(owner.unwrap().mode, 0o640);
        assert!(!hostname().is_empty());
    }
}
