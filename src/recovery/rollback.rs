//! `lbproxy config rollback [ID]`: put back a configuration that served before.
//!
//! Flow, stopping at the first refusal with nothing changed:
//!
//! 1. the history names the running entry (the last that served) and the target (`ID`, or the
//!    last entry before the running one with another text); the target's stored text must
//!    still match its hash;
//! 2. the text is loaded exactly as `lbproxy check -c FILE` loads the file it will be written
//!    to (same loader, same `--env`, this process's environment for `${VAR}`); errors refuse;
//! 3. the proxy's admin API must answer (unless `--no-reload`);
//! 4. the file's current text, when no kept entry has it (edited, never served), is recorded as
//!    a `saved` entry, so that the rollback can be undone; a [`RollbackMark`] tells the proxy
//!    that the next reload serving this text is the rollback; the file is replaced (mode and
//!    owner kept);
//! 5. `POST /api/reload`, which answers once every worker serves it (the proxy records the
//!    `rollback` entry before answering). Refused (a change that needs a restart, a worker that
//!    cannot run it), the file is put back as it was and the mark removed.

use super::files::{self, Owner};
use super::{diff, RollbackArgs};
use crate::admin::client::{AdminClient, ClientError};
use crate::admin::ctl::AdminTargetArgs;
use crate::history::{self, Entry, Event, RollbackMark, Store, Who};
use anyhow::{bail, Context};
use std::path::PathBuf;

pub fn run(args: &RollbackArgs) -> anyhow::Result<()> {
    let store = Store::new(&args.state.resolve()?);
    let entries = store.entries()?;
    let Some(running) = history::running(&entries).cloned() else {
        bail!(
            "no configuration has served from the state directory {} (its history is empty): \
             nothing to roll back to{}",
            store.dir().display(),
            super::listing::hint_for_old_systemd(store.dir().parent().unwrap_or(store.dir()))
        );
    };
    let target = choose(&entries, &running, args.id)?;
    let text = store
        .text(&target)
        .map_err(|why| anyhow::anyhow!("cannot roll back to entry {}: {why}", target.id))?;
    if target.sha256 == running.sha256 {
        println!(
            "entry {}'s configuration is the one that serves (entry {}): nothing to do",
            target.id, running.id
        );
        return Ok(());
    }
    let Some(path) = args.target.config.clone().or_else(|| running.path.clone()) else {
        bail!(
            "the running configuration (entry {}) is the embedded default: the proxy reads no \
             file that a rollback could write. Start it with -c FILE, or give -c FILE here",
            running.id
        );
    };
    let env = args.target.env.clone().or_else(|| running.env.clone());
    // The file itself when `path` is a link: a rename over the link would replace the link.
    let file = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());

    // 2. Checked as `lbproxy check` checks the file it goes to.
    if let Err(errors) = crate::config::load_text_as(&text, Some(&path), env.as_deref()) {
        bail!(
            "entry {}'s configuration is invalid (as `lbproxy check -c {}` would say); nothing \
             was changed:\n{errors}",
            target.id,
            path.display()
        );
    }

    // 3. The proxy must answer before anything is written.
    let client = if args.no_reload {
        None
    } else {
        let client = admin_client(&args.target, &path, env.as_deref())?;
        client.get("/api/status").map_err(|e| {
            anyhow::anyhow!(
                "{e}\nnothing was changed (with --no-reload the file is written, and the proxy \
                 serves it when it next starts or reloads)"
            )
        })?;
        Some(client)
    };

    // 4. Keep what the file holds, mark the rollback, write.
    let before = match std::fs::read(&file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let owner = Owner::of(&file);
    if let Some(saved) =
        keep_unrecorded(&store, &entries, before.as_deref(), &path, env.as_deref())?
    {
        println!(
            "kept {}'s own text (no kept history entry has it) as history entry {}",
            path.display(),
            saved.id
        );
    }
    let mark = RollbackMark {
        from: running.id,
        restores: target.id,
        sha256: target.sha256.clone(),
        unix_ms: history::time::now().0,
    };
    if client.is_some() {
        store.mark_rollback(&mark)?;
    }
    files::replace(&file, text.as_bytes(), owner)
        .with_context(|| format!("writing {}", path.display()))?;
    let running_text = store.text(&running).unwrap_or_default();
    let changes = diff::changed_lines(&running_text, &text);

    let Some(client) = client else {
        println!(
            "wrote entry {}'s configuration to {} (not reloaded: --no-reload); next: start the \
             proxy (systemctl start lbproxy, or lbproxy serve -c {}) or reload it",
            target.id,
            path.display(),
            path.display()
        );
        print_changes(&running, &target, &changes);
        return Ok(());
    };

    // 5. Reload, or put everything back.
    match client.post("/api/reload", b"") {
        Ok(reply) => {
            let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            let recorded = store
                .entries()
                .ok()
                .and_then(|all| {
                    all.into_iter().rev().find(|e| {
                        e.who == Who::Rollback && e.restores == Some(target.id) && e.id > running.id
                    })
                })
                .map_or_else(
                    || {
                        " (the proxy recorded no history entry: is its state directory this one?)"
                            .to_owned()
                    },
                    |e| format!(", history entry {}", e.id),
                );
            println!(
                "rolled back: {} now serves entry {}'s configuration instead of entry {}'s \
                 (reload {} applied{recorded})",
                path.display(),
                target.id,
                running.id,
                value["reload"]
            );
            for warning in value["warnings"].as_array().into_iter().flatten() {
                println!("warning: {}", warning.as_str().unwrap_or_default());
            }
            print_changes(&running, &target, &changes);
            println!("undo: lbproxy config rollback {}", running.id);
            Ok(())
        }
        Err(ClientError::Refused { status, message }) => {
            store.clear_rollback();
            put_back(&file, before.as_deref(), owner)?;
            bail!(
                "the proxy refused entry {}'s configuration ({status}): {message}\n{} is back as \
                 it was; the running configuration (entry {}) stays",
                target.id,
                path.display(),
                running.id
            )
        }
        Err(e) => bail!(
            "{e}\n{} holds entry {}'s configuration now, but whether the proxy reloaded it is \
             unknown: see `lbproxy ctl status` and `lbproxy config history`",
            path.display(),
            target.id
        ),
    }
}

/// The entry to put back: `id`, or the last before `running` with another text.
fn choose(entries: &[Entry], running: &Entry, id: Option<u64>) -> anyhow::Result<Entry> {
    match id {
        Some(id) => entries.iter().find(|e| e.id == id).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "no history entry {id} (kept: {}); `lbproxy config history` lists them",
                match (entries.first(), entries.last()) {
                    (Some(first), Some(last)) => format!("{} to {}", first.id, last.id),
                    _ => "none".to_owned(),
                }
            )
        }),
        None => history::previous_distinct(entries).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "no configuration before the running one (entry {}) differs from it: nothing \
                 to roll back to",
                running.id
            )
        }),
    }
}

/// The admin client: `--admin`/`--token-file` when given, else what the file the proxy reads
/// says (as `lbproxy ctl -c FILE`).
fn admin_client(
    target: &AdminTargetArgs,
    path: &std::path::Path,
    env: Option<&str>,
) -> anyhow::Result<AdminClient> {
    let mut target = target.clone();
    if target.admin.is_none() && target.config.is_none() {
        target.config = Some(PathBuf::from(path));
        target.env = env.map(str::to_owned);
    }
    let resolved = target.resolve().context(
        "finding the proxy's admin server (pass --admin ADDR, and --token-file FILE when it \
         needs a token)",
    )?;
    Ok(AdminClient::new(&resolved.address, resolved.token))
}

/// Records the file's current text as a `saved` entry when no kept entry has it.
fn keep_unrecorded(
    store: &Store,
    entries: &[Entry],
    before: Option<&[u8]>,
    path: &std::path::Path,
    env: Option<&str>,
) -> anyhow::Result<Option<Entry>> {
    let Some(bytes) = before else {
        return Ok(None);
    };
    let sha256 = history::sha256_hex(bytes);
    if entries.iter().any(|e| e.sha256 == sha256) {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        bail!(
            "{} is not UTF-8 text; nothing was changed (move it away first)",
            path.display()
        );
    };
    let entry = store
        .record(Event {
            text,
            who: Who::Saved,
            via: None,
            from: None,
            restores: None,
            path: Some(path),
            env,
        })
        .with_context(|| format!("keeping {}'s text in the history", path.display()))?;
    Ok(Some(entry))
}

/// The file as it was before the rollback wrote it (removed when there was none).
fn put_back(
    path: &std::path::Path,
    before: Option<&[u8]>,
    owner: Option<Owner>,
) -> anyhow::Result<()> {
    match before {
        Some(bytes) => files::replace(path, bytes, owner),
        None => std::fs::remove_file(path),
    }
    .with_context(|| format!("putting {} back as it was", path.display()))
}

fn print_changes(running: &Entry, target: &Entry, changes: &[String]) {
    if changes.is_empty() {
        println!("changes: none line by line (the texts differ only in line endings)");
        return;
    }
    println!("changes (entry {} → entry {}):", running.id, target.id);
    for line in changes {
        println!("  {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn entries(texts: &[(&str, Who)]) -> (tempfile::TempDir, Vec<Entry>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        for (text, who) in texts {
            store
                .record(Event {
                    text,
                    who: *who,
                    via: None,
                    from: None,
                    restores: None,
                    path: Some(Path::new("/x.toml")),
                    env: None,
                })
                .unwrap();
        }
        let all = store.entries().unwrap();
        (dir, all)
    }

    #[test]
    fn the_default_target_is_the_last_other_text() {
        let (_dir, all) = entries(&[("a", Who::Start), ("b", Who::Reload), ("b", Who::Reload)]);
        let running = history::running(&all).unwrap();
        assert_eq!(choose(&all, running, None).unwrap().id, 1);
        assert_eq!(choose(&all, running, Some(2)).unwrap().id, 2);
        let missing = choose(&all, running, Some(9)).unwrap_err().to_string();
        assert!(
            missing.contains("no history entry 9 (kept: 1 to 3)"),
            "{missing}"
        );
        let (_dir, one) = entries(&[("a", Who::Start), ("a", Who::Reload)]);
        let nothing = choose(&one, history::running(&one).unwrap(), None).unwrap_err();
        assert!(
            nothing.to_string().contains("nothing to roll back to"),
            "{nothing}"
        );
    }

    #[test]
    fn an_unrecorded_file_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let path = Path::new("/x.toml");
        let kept = keep_unrecorded(&store, &[], Some(b"edited"), path, None).unwrap();
        let kept = kept.expect("recorded");
        assert_eq!(kept.who, Who::Saved);
        let all = store.entries().unwrap();
        assert_eq!(
            keep_unrecorded(&store, &all, Some(b"edited"), path, None).unwrap(),
            None
        );
        assert_eq!(
            keep_unrecorded(&store, &all, None, path, None).unwrap(),
            None
        );
    }
}
