//! Configuration: TOML file → raw serde types (`file`) → overlays and `${VAR}` interpolation
//! (`overlay`) → validated typed [`Config`] (`validate`).
//!
//! Every problem found is reported at once, each naming the file, the key, the bad value and the
//! fix. `lbproxy check` and `lbproxy serve` both go through [`load`].

mod types;

pub use types::*;

use std::path::Path;

/// The configuration used when `-c` is not given: proxy on 127.0.0.1:8080 → 127.0.0.1:8001..8003.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../packaging/lbproxy.toml");

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the problem is in (or `<embedded default config>`).
    pub file: String,
    /// Dotted key path, e.g. `upstream.api.backends[1].address`.
    pub key: String,
    /// The offending value as written (empty when the problem is a missing key).
    pub value: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Loads, overlays, interpolates and validates. `path = None` uses [`EMBEDDED_DEFAULT`];
/// `env = Some(name)` merges the `[env.NAME]` overlay over the base.
pub fn load(path: Option<&Path>, env: Option<&str>) -> Result<Config, ConfigErrors> {
    let _ = (path, env);
    todo!()
}

// TEMPORARY until the config branch lands.
impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.0 {
            writeln!(f, "error: {}: {} = {:?}: {}\n  fix: {}", e.file, e.key, e.value, e.problem, e.fix)?;
        }
        Ok(())
    }
}
