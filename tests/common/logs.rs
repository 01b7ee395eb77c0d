//! Captures this test process's log lines (the process-wide tracing subscriber), so tests can
//! assert on what the proxy logged: health flips, ejections, fast failures. Under nextest every
//! test runs in its own process, so the lines are the test's own; a test must still only look
//! for lines it can tell apart (its own backend addresses or request ids).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Every captured line containing all of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

/// Installs the capturing subscriber (level `info` for lbproxy) once for this test binary and
/// returns the capture. Call it before starting a proxy.
pub fn capture() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,lbproxy=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        logs
    })
}
