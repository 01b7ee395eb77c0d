//! Where log events go and how they look: natively to the journal (one journal field per event
//! field) when stderr is the journal stream of a systemd unit, else to stderr as text or, with
//! `[log] format = "json"`, one JSON object per line with the event's fields at the top level.
//!
//! The format is a process-wide switch ([`set_format`]) read per event, so `lbproxy serve` sets
//! it once the configuration is loaded and a reload changes it; the subscriber itself is
//! installed once ([`init`]) before anything else runs. `LBPROXY_LOG` (or `RUST_LOG`) sets the
//! filter, default `info`.
//!
//! Text lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>): `lbproxy serve 2>log.txt` or `lbproxy up | tee` get plain text.

use crate::config::LogFormat;
use crate::systemd as sd;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr lines are JSON (false: text).
static JSON: AtomicBool = AtomicBool::new(false);

/// Switches the stderr format (no effect on the journal).
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// Installs the process-wide subscriber (once; later calls do nothing).
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = std::env::var("LBPROXY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    if sd::journal::stderr_is_journal() {
        match sd::journal::layer() {
            Ok(journal) => {
                let _ = tracing_subscriber::registry()
                    .with(tracing_subscriber::EnvFilter::new(&filter))
                    .with(journal)
                    .try_init();
                return;
            }
            Err(e) => eprintln!("lbproxy: cannot log to the journal natively ({e}); using stderr"),
        }
    }
    let colour = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .event_format(Switch::default())
        .try_init();
}

/// Colour escapes only for a person at a terminal: never into a file or a pipe, and never when
/// `NO_COLOR` is set to anything but the empty string.
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// Text or JSON, as [`JSON`] says at the time of each event.
struct Switch {
    text: Format<Full>,
    json: Format<Json>,
}

impl Default for Switch {
    fn default() -> Self {
        Self {
            text: Format::default().with_thread_names(true),
            json: Format::default()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_thread_names(true),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Switch
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if JSON.load(Ordering::Relaxed) {
            self.json.format_event(ctx, writer, event)
        } else {
            self.text.format_event(ctx, writer, event)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
