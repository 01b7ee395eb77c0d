//! Where log events go and how they look: natively to the journal (one journal field per event
//! field) when stderr is the journal stream of a systemd unit, else to stderr as text or, with
//! `[log] format = "json"`, one JSON object per line with the event's fields at the top level.
//!
//! The format is a process-wide switch ([`set_format`]) read per event, so `lbproxy serve` sets
//! it once the configuration is loaded and a reload changes it; the subscriber itself is
//! installed once ([`init`]) before anything else runs. `LBPROXY_LOG` (or `RUST_LOG`) sets the
//! filter, default `info`.

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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .event_format(Switch::default())
        .try_init();
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
