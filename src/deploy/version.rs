//! What a version is: the environment file an instance unit reads at its start.
//!
//! The instance template names one file per instance in the proxy's state directory,
//! `EnvironmentFile=-%S/lbproxy/versions/%n.env` (`%S`: `/var/lib` for system units,
//! `~/.local/state` for user units — `~/.config` before systemd 254 —, which the proxy's unit
//! passes as `$STATE_DIRECTORY` with `StateDirectory=lbproxy`; `%n`: `api@4.service`; the `-`:
//! no file, no error). A unit
//! without a file runs what its template says (the version it was installed with). A deployment
//! writes the file of each instance it starts or restarts for the new version — `LBPROXY_VERSION=`
//! the version's name, then the spec's `[environment]` — before systemd starts it, and removes
//! the file of each instance it stops. The template uses the variables as it likes: the demo
//! API's passes `$DEMO_API_ARGS` to the program; an ordinary API's could run
//! `/opt/api/${API_VERSION}/bin/api`. The same template thus runs either version, and the proxy
//! needs no write access to unit files (only to its own state directory).

use super::spec::DeploySpec;
use std::path::{Path, PathBuf};

/// The directory, under the state directory, of the version files.
pub const DIR: &str = "versions";

/// Instance `unit`'s version file under state directory `state_dir`.
pub fn file_for(state_dir: &Path, unit: &str) -> PathBuf {
    state_dir.join(DIR).join(format!("{unit}.env"))
}

/// The version file's text for the spec's version, written by deployment `deployment`.
pub fn content(spec: &DeploySpec, deployment: &str) -> String {
    let mut text = format!(
        "# Written by lbproxy for deployment {deployment} (upstream \"{}\"): the version this \
         instance runs.\nLBPROXY_VERSION={}\n",
        spec.upstream,
        quote(&spec.version)
    );
    for (name, value) in &spec.environment {
        text.push_str(&format!("{name}={}\n", quote(value)));
    }
    text
}

/// A value as systemd's `EnvironmentFile=` reads it: in double quotes, with `\` and `"` escaped.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The version a group's instances run after a promotion, and where its files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StableVersion {
    pub state_dir: PathBuf,
    /// The version file's text.
    pub content: String,
}

/// What happens to an instance's version file with a start, stop or restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChange {
    /// Left as it is.
    Keep,
    /// Written (before a start or restart).
    Write { path: PathBuf, content: String },
    /// Removed (after a stop: a later start of the same unit runs the template's version).
    Remove { path: PathBuf },
}

impl VersionChange {
    /// Carries it out; `Err` says which file and why.
    pub fn apply(&self) -> Result<(), String> {
        match self {
            VersionChange::Keep => Ok(()),
            VersionChange::Write { path, content } => {
                crate::sys::state_dir::write_atomically(path, content.as_bytes())
                    .map_err(|e| format!("cannot write the version file {}: {e}", path.display()))
            }
            VersionChange::Remove { path } => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!(
                    "cannot remove the version file {}: {e}",
                    path.display()
                )),
            },
        }
    }
}

/// The version `unit` runs, from its file under `state_dir`: `None` without a file (the
/// template's own).
pub fn running(state_dir: &Path, unit: &str) -> Option<String> {
    let text = std::fs::read_to_string(file_for(state_dir, unit)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("LBPROXY_VERSION="))
        .map(|v| {
            v.trim_matches('"')
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::spec::{AnalysisSpec, BlueGreenSpec, CanarySpec, Strategy};

    #[test]
    fn the_file_names_the_version_and_its_environment_quoted() {
        let spec = DeploySpec {
            upstream: "api".into(),
            version: "v2".into(),
            strategy: Strategy::Canary,
            environment: [(
                "DEMO_API_ARGS".to_owned(),
                "--fail-ratio \"0.2\"".to_owned(),
            )]
            .into(),
            canary: CanarySpec::default(),
            analysis: AnalysisSpec::default(),
            blue_green: BlueGreenSpec::default(),
        };
        let text = content(&spec, "7");
        assert!(text.contains("\nLBPROXY_VERSION=\"v2\"\n"), "{text}");
        assert!(
            text.contains("\nDEMO_API_ARGS=\"--fail-ratio \\\"0.2\\\"\"\n"),
            "{text}"
        );
        let dir = std::env::temp_dir().join(format!("lbproxy-version-{}", std::process::id()));
        let path = file_for(&dir, "api@4.service");
        assert!(path.ends_with("versions/api@4.service.env"));
        VersionChange::Write {
            path: path.clone(),
            content: text,
        }
        .apply()
        .unwrap();
        assert_eq!(running(&dir, "api@4.service").as_deref(), Some("v2"));
        VersionChange::Remove { path }.apply().unwrap();
        assert_eq!(running(&dir, "api@4.service"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
