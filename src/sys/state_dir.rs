//! Where the proxy keeps what must outlive its process (the deployment in progress and its
//! history, the configurations that served, the instances' version files), how a file
//! there is replaced without a reader ever seeing half of it, and how writers from several
//! processes take turns ([`lock`]).
//!
//! The directory is, first found: `$STATE_DIRECTORY` (systemd's `StateDirectory=lbproxy`:
//! `/var/lib/lbproxy` for the system unit; for the user unit `~/.local/state/lbproxy`, or
//! `~/.config/lbproxy` before systemd 254; the first path when it lists several),
//! `$XDG_STATE_HOME/lbproxy`, `$HOME/.local/state/lbproxy`. Instance units name the unit's
//! place as `%S/lbproxy` (systemd's state root), so deployments need the proxy run by its unit
//! (`StateDirectory=` keeps the two in step whatever the systemd version).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The state directory, from the process environment (see the module docs); created if
/// missing. `Err` names what was tried.
pub fn state_dir() -> Result<PathBuf, String> {
    let dir = state_dir_from(&|name| std::env::var(name).ok())?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The state directory `lookup` (an environment) names, not created.
pub fn state_dir_from(lookup: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(dirs) = set("STATE_DIRECTORY") {
        let first = dirs.split(':').next().unwrap_or(&dirs);
        return Ok(PathBuf::from(first));
    }
    if let Some(xdg) = set("XDG_STATE_HOME") {
        return Ok(Path::new(&xdg).join("lbproxy"));
    }
    if let Some(home) = set("HOME") {
        return Ok(Path::new(&home).join(".local/state/lbproxy"));
    }
    Err(
        "no state directory: none of STATE_DIRECTORY (systemd's StateDirectory=), \
         XDG_STATE_HOME or HOME is set"
            .to_owned(),
    )
}

/// Replaces `path` with `bytes` atomically: written to a temporary file beside it, flushed to
/// disk, then renamed over it (a crash leaves the old file or the new one, never a mix). The
/// parent directory is created if missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// An exclusive lock on a file, held until dropped (closing the file releases it).
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

/// Takes an exclusive `flock(2)` on `path` (created if missing, with its parent), waiting while
/// another process holds it: several processes may write the same files of the state
/// directory (the proxy, `lbproxy config rollback`, `lbproxy restore`), one at a time.
pub fn lock(path: &Path) -> std::io::Result<FileLock> {
    use std::os::fd::AsRawFd;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    loop {
        // SAFETY: flock(2) on a descriptor this function owns, open for the whole call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if locked == 0 {
            return Ok(FileLock { _file: file });
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn systemd_first_then_xdg_then_home() {
        let all = [
            ("STATE_DIRECTORY", "/var/lib/lbproxy:/var/lib/other"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            state_dir_from(&env(&all)).unwrap(),
            Path::new("/var/lib/lbproxy")
        );
        assert_eq!(
            state_dir_from(&env(&all[1..])).unwrap(),
            Path::new("/x/lbproxy")
        );
        assert_eq!(
            state_dir_from(&env(&all[2..])).unwrap(),
            Path::new("/home/u/.local/state/lbproxy")
        );
        let none = state_dir_from(&env(&[])).unwrap_err();
        assert!(none.contains("STATE_DIRECTORY"), "{none}");
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("lbproxy-state-{}", std::process::id()));
        let path = dir.join("sub/file.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let leftovers = std::fs::read_dir(dir.join("sub")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lock_waits_for_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/.lock");
        let held = lock(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _second = lock(&path).unwrap();
            tx.send(()).unwrap();
        });
        // flock locks belong to the open file, so a second open in this process waits too.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("taken once released");
        waiter.join().unwrap();
    }
}
