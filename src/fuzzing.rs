//! What the fuzz targets (`fuzz/`, see fuzz/README.md) need beyond the public API, re-exported
//! so that they exercise the code the proxy runs instead of a copy of it.
//!
//! Hidden from the docs and not an API: it follows whatever the crate-private items it wraps
//! become.

use crate::config::{self, Config, ConfigErrors, ConfigSource};

/// The TLS ClientHello reader of tcp listeners that route by SNI.
pub use crate::l4::sni;
use std::path::PathBuf;

/// Loads a configuration from its text as `lbproxy check` would load a file of that text, with
/// environment variables (`${VAR}`, `LBPROXY_DRIVER`) read through `lookup` instead of the
/// process environment. Files it names (certificates, token files) are resolved against the
/// directory of `path`, which need not exist.
pub fn load_config_text(
    text: &str,
    path: PathBuf,
    env: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    config::load_text(text, ConfigSource::File(path), env, lookup)
}
