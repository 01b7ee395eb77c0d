//! The configuration history: every configuration that served, kept in the state directory
//! ([`crate::sys::state_dir`]) so that a bad one can be rolled back and a lost machine rebuilt.
//!
//! Flow: the control loop records an [`Entry`] through its [`Recorder`] each time a
//! configuration starts serving — when `lbproxy serve` or `lbproxy up` starts, after every
//! successful reload (SIGHUP, `POST /api/reload` and so `lbproxy ctl reload`), and as a
//! `rollback` when the reload serves the text `lbproxy config rollback` asked for (its
//! [`RollbackMark`]). `lbproxy config history` lists the entries, `lbproxy config rollback` reads
//! one's text back, `lbproxy backup` archives the whole directory.
//!
//! On disk, under `configs/` of the state directory:
//!
//! - `history.jsonl`: one [`Entry`] a line, oldest first, ids increasing by one. Replaced
//!   atomically at each record (read, add, keep the last [`KEEP`], write), so a crash never leaves
//!   half a line.
//! - `<ID>.toml`: the exact text of the entry `ID` that stored it. **A text is stored once while
//!   an entry still points to it**: an event whose text (by SHA-256) equals a kept entry's is
//!   still recorded, with an id of its own, but its `stored` names the earlier file instead of
//!   writing the same bytes again — a reload of an unchanged file, a rollback to a text kept
//!   before. Ids name events (what `config rollback ID` takes); `stored` names files.
//! - `rollback.json`: a [`RollbackMark`] while `config rollback` waits for its reload.
//! - `.lock`: the `flock(2)` every writer takes (the proxy, `config rollback`, `restore`).
//!
//! Only the last [`KEEP`] entries stay in the index; a file no kept entry points to is deleted
//! at the next record. Recording runs on the control loop's thread, never on a worker; a failure
//! is a warning in the log and never fails the start or the reload it records.

pub mod time;

use crate::config::{Config, ConfigSource};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Entries kept in the index (and the files they point to).
pub const KEEP: usize = 100;
/// The history's folder in the state directory.
pub const DIR: &str = "configs";
const INDEX: &str = "history.jsonl";
const LOCK: &str = ".lock";
const MARK: &str = "rollback.json";
/// How long a [`RollbackMark`] waits for its reload before it is ignored.
const MARK_VALID_MS: u64 = 10 * 60 * 1000;

/// Why a configuration was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    /// The proxy started with it (`lbproxy serve`, `lbproxy up`).
    Start,
    /// A reload made it serve (`via` says how it was asked).
    Reload,
    /// `lbproxy config rollback` made it serve (`from`: the entry it replaced; `restores`: the
    /// entry whose text it is).
    Rollback,
    /// Not served: the file's text that `config rollback` replaced, kept so that it can be
    /// restored (it differed from the running configuration: edited, never reloaded).
    Saved,
}

impl Who {
    pub fn as_str(self) -> &'static str {
        match self {
            Who::Start => "start",
            Who::Reload => "reload",
            Who::Rollback => "rollback",
            Who::Saved => "saved",
        }
    }
}

/// How a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// SIGHUP (`systemctl reload`, `lbproxy reload`, `kill -HUP`).
    Signal,
    /// The admin API's `POST /api/reload` (`lbproxy ctl reload`, `lbproxy config rollback`).
    Api,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, then one more than the last entry (also across pruning).
    pub id: u64,
    /// When it was recorded, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// The same instant, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// SHA-256 of the text, lowercase hex.
    pub sha256: String,
    pub who: Who,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Rollback: the entry that served before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Rollback: the entry whose text it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// The configuration file; `None` for the embedded default (no `-c`).
    pub path: Option<PathBuf>,
    /// The `--env` overlay it ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The entry whose `<ID>.toml` holds the text: its own id, or an earlier one's.
    pub stored: u64,
    /// The text's size in bytes.
    pub bytes: usize,
    /// The process that recorded it.
    pub pid: u32,
}

impl Entry {
    /// Whether it is a configuration that served (all but [`Who::Saved`]).
    pub fn served(&self) -> bool {
        self.who != Who::Saved
    }

    /// The first 12 hex digits of its hash, as the history table shows it.
    pub fn short_hash(&self) -> &str {
        &self.sha256[..self.sha256.len().min(12)]
    }
}

/// What happened, for [`Store::record`].
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub text: &'a str,
    pub who: Who,
    pub via: Option<Via>,
    pub from: Option<u64>,
    pub restores: Option<u64>,
    pub path: Option<&'a Path>,
    pub env: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// `who` happened to `config` (its text, file and overlay).
    pub fn of(config: &'a Config, who: Who) -> Self {
        Event {
            text: config.text.as_str(),
            who,
            via: None,
            from: None,
            restores: None,
            path: match &config.source {
                ConfigSource::File(path) => Some(path.as_path()),
                ConfigSource::Embedded => None,
            },
            env: config.env.as_deref(),
        }
    }
}

/// `config rollback`'s note to the proxy: the next reload that serves the text with this hash
/// is a rollback, from entry `from` to the text of entry `restores`. The admin API's reload
/// carries no reason, so the reason travels through the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackMark {
    pub from: u64,
    pub restores: u64,
    pub sha256: String,
    /// When it was written, ms since the epoch: older than ten minutes, it is ignored.
    pub unix_ms: u64,
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The running configuration's entry: the last one that served.
pub fn running(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().rev().find(|e| e.served())
}

/// `config rollback`'s default: the last entry before the running one that served another
/// text than the running one.
pub fn previous_distinct(entries: &[Entry]) -> Option<&Entry> {
    let now = running(entries)?;
    entries
        .iter()
        .rev()
        .filter(|e| e.served() && e.id < now.id)
        .find(|e| e.sha256 != now.sha256)
}

/// The history in one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The history under state directory `state_dir` (`configs/`).
    pub fn new(state_dir: &Path) -> Self {
        Store {
            dir: state_dir.join(DIR),
        }
    }

    /// The history in the state directory of the process environment.
    pub fn from_env() -> Result<Self, String> {
        crate::sys::state_dir::state_dir().map(|dir| Store::new(&dir))
    }

    /// `configs/` of the state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every kept entry, oldest first; none when nothing was recorded. A line that does not
    /// parse (edited by hand) is skipped with a warning.
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let text = match std::fs::read_to_string(self.dir.join(INDEX)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) => entries.push(entry),
                Err(e) => tracing::warn!(
                    "configuration history: line {} of {} skipped: {e}",
                    number + 1,
                    self.dir.join(INDEX).display()
                ),
            }
        }
        Ok(entries)
    }

    /// The entry `id`, among the kept ones.
    pub fn entry(&self, id: u64) -> std::io::Result<Option<Entry>> {
        Ok(self.entries()?.into_iter().find(|e| e.id == id))
    }

    /// Where the text of `entry` is stored.
    pub fn file_of(&self, entry: &Entry) -> PathBuf {
        self.dir.join(format!("{}.toml", entry.stored))
    }

    /// The text of `entry`, checked against its hash.
    pub fn text(&self, entry: &Entry) -> Result<String, String> {
        let path = self.file_of(entry);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let hash = sha256_hex(text.as_bytes());
        if hash != entry.sha256 {
            return Err(format!(
                "{} does not hold entry {}'s text (its SHA-256 is {hash}, the history says {}): \
                 it was changed after it was recorded",
                path.display(),
                entry.id,
                entry.sha256
            ));
        }
        Ok(text)
    }

    /// Records `event` as the next entry (storing its text unless a kept entry already has it),
    /// keeps the last [`KEEP`] entries and deletes the files none of them points to. Waits for
    /// other writers ([`crate::sys::state_dir::lock`]).
    pub fn record(&self, event: Event<'_>) -> std::io::Result<Entry> {
        use crate::sys::state_dir::write_atomically;
        let _lock = self.lock()?;
        let mut entries = self.entries()?;
        let id = entries.last().map_or(1, |e| e.id + 1);
        let sha256 = sha256_hex(event.text.as_bytes());
        let (unix_ms, time) = time::now();
        let earlier = entries
            .iter()
            .rev()
            .find(|e| e.sha256 == sha256 && self.file_of(e).is_file())
            .map(|e| e.stored);
        let stored = match earlier {
            Some(stored) => stored,
            None => {
                write_atomically(&self.dir.join(format!("{id}.toml")), event.text.as_bytes())?;
                id
            }
        };
        let entry = Entry {
            id,
            time,
            unix_ms,
            sha256,
            who: event.who,
            via: event.via,
            from: event.from,
            restores: event.restores,
            // Absolute: `config rollback` may run from another directory than the proxy.
            path: event
                .path
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            env: event.env.map(str::to_owned),
            stored,
            bytes: event.text.len(),
            pid: std::process::id(),
        };
        entries.push(entry.clone());
        let drop = entries.len().saturating_sub(KEEP);
        entries.drain(..drop);
        let mut index = String::new();
        for e in &entries {
            index.push_str(&serde_json::to_string(e).map_err(std::io::Error::other)?);
            index.push('\n');
        }
        write_atomically(&self.dir.join(INDEX), index.as_bytes())?;
        self.prune(&entries);
        Ok(entry)
    }

    /// Deletes every `<ID>.toml` no kept entry points to (best effort: the next record tries
    /// again).
    fn prune(&self, kept: &[Entry]) {
        let Ok(files) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !kept.iter().any(|e| e.stored == id) {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }

    /// Takes the history's lock (held until dropped).
    pub fn lock(&self) -> std::io::Result<crate::sys::state_dir::FileLock> {
        crate::sys::state_dir::lock(&self.dir.join(LOCK))
    }

    /// Leaves `mark` for the proxy's next reload.
    pub fn mark_rollback(&self, mark: &RollbackMark) -> std::io::Result<()> {
        let json = serde_json::to_vec(mark).map_err(std::io::Error::other)?;
        crate::sys::state_dir::write_atomically(&self.dir.join(MARK), &json)
    }

    /// Removes the rollback mark, if any.
    pub fn clear_rollback(&self) {
        let _ = std::fs::remove_file(self.dir.join(MARK));
    }

    /// The rollback mark for a text with hash `sha256`, if one is there and recent; a stale
    /// one is removed.
    fn take_rollback(&self, sha256: &str, now_ms: u64) -> Option<RollbackMark> {
        let bytes = std::fs::read(self.dir.join(MARK)).ok()?;
        let mark = serde_json::from_slice::<RollbackMark>(&bytes).ok();
        match mark {
            Some(mark) if now_ms.saturating_sub(mark.unix_ms) > MARK_VALID_MS => {
                self.clear_rollback();
                None
            }
            Some(mark) if mark.sha256 == sha256 => {
                self.clear_rollback();
                Some(mark)
            }
            Some(_) => None,
            None => {
                self.clear_rollback();
                None
            }
        }
    }
}

/// The proxy's side: records each configuration that starts serving, on the control loop's
/// thread; failures are warnings.
#[derive(Debug, Clone)]
pub struct Recorder {
    store: Store,
}

impl Recorder {
    /// Records in the state directory of the process environment; `None` (with a warning) when
    /// there is none.
    pub fn from_env() -> Option<Self> {
        match Store::from_env() {
            Ok(store) => Some(Recorder { store }),
            Err(why) => {
                tracing::warn!("configuration history off: {why}");
                None
            }
        }
    }

    /// Records in `store`.
    pub fn new(store: Store) -> Self {
        Recorder { store }
    }

    /// The proxy started serving `config`.
    pub fn started(&self, config: &Config) {
        self.record(Event::of(config, Who::Start));
    }

    /// A reload asked `via` made `config` serve; a rollback when `config rollback` marked its
    /// text.
    pub fn reloaded(&self, config: &Config, via: Via) {
        let mut event = Event::of(config, Who::Reload);
        event.via = Some(via);
        let sha256 = sha256_hex(event.text.as_bytes());
        if let Some(mark) = self.store.take_rollback(&sha256, time::now().0) {
            event.who = Who::Rollback;
            event.from = Some(mark.from);
            event.restores = Some(mark.restores);
        }
        self.record(event);
    }

    fn record(&self, event: Event<'_>) {
        match self.store.record(event) {
            Ok(entry) => tracing::info!(
                history = entry.id,
                "configuration history: entry {} ({}), text in {}",
                entry.id,
                entry.who.as_str(),
                self.store.file_of(&entry).display()
            ),
            Err(e) => tracing::warn!(
                "configuration history: cannot record the configuration in {}: {e}",
                self.store.dir().display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str, who: Who) -> Event<'_> {
        Event {
            text,
            who,
            via: None,
            from: None,
            restores: None,
            path: Some(Path::new("/etc/lbproxy/lbproxy.toml")),
            env: None,
        }
    }

    fn stored_files(store: &Store) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn each_event_is_an_entry_and_each_text_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.entries().unwrap().is_empty());
        let a = store.record(event("a = 1\n", Who::Start)).unwrap();
        let b = store.record(event("b = 2\n", Who::Reload)).unwrap();
        let same = store.record(event("b = 2\n", Who::Reload)).unwrap();
        let back = store.record(event("a = 1\n", Who::Rollback)).unwrap();
        assert_eq!((a.id, b.id, same.id, back.id), (1, 2, 3, 4));
        assert_eq!((a.stored, b.stored, same.stored, back.stored), (1, 2, 2, 1));
        assert_eq!(stored_files(&store), ["1.toml", "2.toml"]);
        assert_eq!(store.text(&back).unwrap(), "a = 1\n");
        assert_eq!(a.sha256, sha256_hex(b"a = 1\n"));
        assert_eq!(a.sha256.len(), 64);
        assert_eq!(store.entries().unwrap(), vec![a, b, same, back]);
    }

    #[test]
    fn the_running_entry_and_the_previous_distinct_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        for (text, who) in [
            ("a", Who::Start),
            ("b", Who::Reload),
            ("b", Who::Reload),
            ("c", Who::Saved),
        ] {
            store.record(event(text, who)).unwrap();
        }
        let entries = store.entries().unwrap();
        assert_eq!(
            running(&entries).unwrap().id,
            3,
            "a saved text never served"
        );
        assert_eq!(previous_distinct(&entries).unwrap().id, 1);
        assert_eq!(previous_distinct(&entries[..1]), None);
        assert_eq!(running(&[]), None);
    }

    #[test]
    fn only_the_last_entries_and_their_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let text = "kept by a later entry";
        store.record(event(text, Who::Start)).unwrap();
        for n in 0..10 {
            store
                .record(event(&format!("n = {n}\n"), Who::Reload))
                .unwrap();
        }
        let again = store.record(event(text, Who::Reload)).unwrap();
        assert_eq!((again.id, again.stored), (12, 1));
        for n in 10..KEEP + 5 {
            store
                .record(event(&format!("n = {n}\n"), Who::Reload))
                .unwrap();
        }
        let entries = store.entries().unwrap();
        assert_eq!(entries.len(), KEEP);
        assert_eq!(entries.first().unwrap().id, 8);
        assert_eq!(entries.last().unwrap().id, 107);
        // Entry 1 is gone from the index, but its file stays: entry 12 points to it.
        assert_eq!(store.text(&again).unwrap(), text);
        let files = stored_files(&store);
        assert_eq!(files.len(), KEEP, "{files:?}");
        assert!(files.contains(&"1.toml".to_owned()), "{files:?}");
        assert!(!files.contains(&"2.toml".to_owned()), "{files:?}");
    }

    #[test]
    fn a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let entry = store.record(event("a = 1\n", Who::Start)).unwrap();
        std::fs::write(store.file_of(&entry), "a = 2\n").unwrap();
        let refused = store.text(&entry).unwrap_err();
        assert!(
            refused.contains("changed after it was recorded"),
            "{refused}"
        );
    }

    #[test]
    fn a_marked_reload_is_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (now, _) = time::now();
        let mark = RollbackMark {
            from: 7,
            restores: 3,
            sha256: sha256_hex(b"x"),
            unix_ms: now,
        };
        store.mark_rollback(&mark).unwrap();
        assert_eq!(store.take_rollback(&sha256_hex(b"y"), now), None);
        assert_eq!(store.take_rollback(&mark.sha256, now), Some(mark.clone()));
        assert_eq!(store.take_rollback(&mark.sha256, now), None, "taken once");
        store.mark_rollback(&mark).unwrap();
        let late = now + MARK_VALID_MS + 1;
        assert_eq!(store.take_rollback(&mark.sha256, late), None, "stale");
        assert!(!store.dir().join(MARK).exists());
    }
}
