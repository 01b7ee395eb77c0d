//! Logging to the journal natively when the proxy runs under it, with every event field as a
//! journal field: `journalctl -u lbproxy BACKEND=127.0.0.1:8002` or `REQUEST_ID=…` finds the
//! access-log entries ([`crate::l7`]'s and [`crate::l4`]'s `lbproxy::access` events: `WORKER`, `REQUEST_ID`,
//! `TRACE_ID`, `CLIENT`, `REQUEST`, `LISTENER`, `ROUTE`, `UPSTREAM`, `BACKEND`, `STATUS`,
//! `BYTES_SENT`, `BYTES_RECEIVED`, `DURATION_US`, `RETRIES`), and every other event keeps its
//! fields too (`TARGET`, `WORKER`,
//! `RELOAD`, …), with its level as `PRIORITY`.
//!
//! "Under the journal" means what sd_journal_stream_fd(3) promises: `JOURNAL_STREAM` names the
//! device and inode of the stream systemd connected stderr to, and stderr still is that stream
//! (a program started from a unit and redirected elsewhere must not log to the journal behind
//! its user's back). Otherwise logs go to stderr as text.
//!
//! The writer is `tracing-journald` (tokio-rs/tracing, maintained with `tracing` itself): it speaks
//! the native protocol over `/run/systemd/journal/socket`, falls back to a sealed memfd for large
//! entries, and uppercases field names as journal fields must be. Its default `F_` prefix for
//! event fields is turned off, so the fields carry their own names.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Whether stderr is the journal stream systemd set up for this process.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// `JOURNAL_STREAM=DEV:INODE`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The journal layer: native protocol, field names as they are (uppercased), identifier
/// `lbproxy`.
pub fn layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier("lbproxy".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_is_device_and_inode() {
        assert_eq!(parse_journal_stream("8:1234"), Some((8, 1234)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
    }

    #[test]
    fn a_stream_that_is_not_stderr_is_not_the_journal() {
        // Whatever stderr is here (a pipe or a terminal), it is not /dev/null's inode.
        let null = std::fs::metadata("/dev/null").unwrap();
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", null.dev(), null.ino()));
        let is_journal = stderr_is_journal();
        std::env::remove_var("JOURNAL_STREAM");
        let stderr = std::fs::File::from(std::io::stderr().as_fd().try_clone_to_owned().unwrap())
            .metadata()
            .unwrap();
        let stderr_is_null = stderr.dev() == null.dev() && stderr.ino() == null.ino();
        assert_eq!(is_journal, stderr_is_null);
        assert!(!stderr_is_journal(), "no JOURNAL_STREAM, no journal");
    }
}
