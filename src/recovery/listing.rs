//! `lbproxy config history`: the kept entries, oldest first, as a table (ID, time, short hash,
//! who, path) or as JSON.

use super::HistoryArgs;
use crate::history::{self, Entry, Store, Who};

pub fn run(args: &HistoryArgs) -> anyhow::Result<()> {
    let dir = args.state.resolve()?;
    let store = Store::new(&dir);
    let entries = store.entries()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no configuration recorded in {} yet (each start and reload of lbproxy serve records \
             one there){}",
            store.dir().display(),
            hint_for_old_systemd(&dir)
        );
        return Ok(());
    }
    print!("{}", table(&entries));
    if let Some(running) = history::running(&entries) {
        println!(
            "the last configuration that served: {} (texts in {})",
            running.id,
            store.dir().display()
        );
    }
    Ok(())
}

/// The entries as a table.
fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.id.to_string(),
                e.time.clone(),
                e.short_hash().to_owned(),
                who(e),
                e.path.as_ref().map_or_else(
                    || "<embedded default config>".to_owned(),
                    |p| p.display().to_string(),
                ) + &e
                    .env
                    .as_ref()
                    .map(|env| format!(" (--env {env})"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "TIME", "HASH", "WHO", "PATH"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == cells.len() - 1 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

/// WHO: why it was recorded, and for a rollback from what to what.
fn who(entry: &Entry) -> String {
    match (entry.who, entry.via) {
        (Who::Reload, Some(via)) => format!("reload ({})", via_name(via)),
        (Who::Rollback, _) => {
            let mut text = "rollback".to_owned();
            if let (Some(from), Some(restores)) = (entry.from, entry.restores) {
                text.push_str(&format!(" ({from} → text of {restores})"));
            }
            text
        }
        (who, _) => who.as_str().to_owned(),
    }
}

fn via_name(via: history::Via) -> &'static str {
    match via {
        history::Via::Signal => "signal",
        history::Via::Api => "api",
    }
}

/// Where the user unit keeps the history on systemd before 254 (its `StateDirectory=` is then
/// under ~/.config), when that is where one is and the shell looked elsewhere.
pub(super) fn hint_for_old_systemd(looked_in: &std::path::Path) -> String {
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")));
    let Some(old) = config_home.map(|c| c.join("lbproxy")) else {
        return String::new();
    };
    if old != looked_in && Store::new(&old).dir().join("history.jsonl").is_file() {
        format!(
            "; the user unit on systemd before 254 keeps it in {}: pass --state-dir {}",
            old.display(),
            old.display()
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, Via};
    use std::path::Path;

    #[test]
    fn the_table_says_who_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let path = Path::new("/etc/lbproxy/lbproxy.toml");
        let mut event = Event {
            text: "a",
            who: Who::Start,
            via: None,
            from: None,
            restores: None,
            path: Some(path),
            env: None,
        };
        store.record(event).unwrap();
        event.text = "b";
        event.who = Who::Reload;
        event.via = Some(Via::Api);
        store.record(event).unwrap();
        event.text = "a";
        event.who = Who::Rollback;
        event.from = Some(2);
        event.restores = Some(1);
        event.path = None;
        store.record(event).unwrap();
        let text = table(&store.entries().unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  TIME"), "{text}");
        assert!(lines[1].starts_with("1   20"), "{text}");
        assert!(lines[1].contains(" start "), "{text}");
        assert!(lines[1].ends_with("  /etc/lbproxy/lbproxy.toml"), "{text}");
        assert!(lines[2].contains("reload (api)"), "{text}");
        assert!(
            lines[3].ends_with("rollback (2 → text of 1)  <embedded default config>"),
            "{text}"
        );
        assert!(lines[1].contains(&crate::history::sha256_hex(b"a")[..12]));
    }
}
